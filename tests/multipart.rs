//! Multipart uploads through the core, on every byte store: parts, completion without copying
//! bytes, reads of segmented objects (whole and ranged across part boundaries), and what frees
//! their bytes (replaced parts, abort, expiry, overwrite, delete), under RLS.

mod common;

use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use md5::{Digest, Md5};
use pgstorage::bytes::{ByteRange, ByteStream};
use pgstorage::config::Backend;
use pgstorage::core::multipart::{CompletePart, CreateMultipart, ListUploads, PartSource, Segment};
use pgstorage::core::objects::{CopyRequest, Upload};
use pgstorage::core::{Caller, Error, Limits, Operation, Storage};

use common::{Options, TestServer, caller};

/// Parts of at least this many bytes (but the last) in these tests.
const MIN_PART: u64 = 1000;

fn data(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// A body in pieces of 700 bytes, so parts never arrive as one chunk.
fn body(bytes: &[u8]) -> ByteStream {
    let pieces: Vec<std::io::Result<bytes::Bytes>> = bytes
        .chunks(700)
        .map(|c| Ok(bytes::Bytes::copy_from_slice(c)))
        .collect();
    futures::stream::iter(pieces).boxed()
}

async fn collect(stream: ByteStream) -> Vec<u8> {
    stream
        .try_fold(Vec::new(), |mut all, chunk| async move {
            all.extend_from_slice(&chunk);
            Ok(all)
        })
        .await
        .unwrap()
}

fn service() -> Caller {
    caller("service_role", None)
}

struct Setup {
    server: TestServer,
    storage: Storage,
}

async fn setup(backend: Backend) -> Setup {
    let server = TestServer::start_with(Options {
        backend,
        ..Options::default()
    })
    .await;
    server.create_bucket("mp", false).await;
    let storage = server.storage.with_limits(Limits {
        multipart_min_part_size: MIN_PART,
        ..server.storage.limits().clone()
    });
    Setup { server, storage }
}

fn create(name: &str) -> CreateMultipart {
    CreateMultipart {
        bucket: "mp".into(),
        name: name.into(),
        content_type: Some("application/x-test".into()),
        upsert: true,
        ..CreateMultipart::default()
    }
}

/// Creates an upload of `parts` and completes it; returns the upload id and the whole content.
async fn upload_parts(storage: &Storage, who: &Caller, name: &str, parts: &[Vec<u8>]) -> Vec<u8> {
    let upload = storage.create_multipart(who, create(name)).await.unwrap();
    let mut named = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let info = storage
            .upload_part(
                who,
                &upload.id,
                i as u32 + 1,
                body(part),
                Some(part.len() as u64),
            )
            .await
            .unwrap();
        assert_eq!(info.size, part.len() as u64);
        assert_eq!(info.etag, format!("\"{}\"", hex::encode(Md5::digest(part))));
        named.push(CompletePart {
            part_number: i as u32 + 1,
            etag: Some(info.etag),
        });
    }
    let done = storage
        .complete_multipart(who, &upload.id, &named)
        .await
        .unwrap();
    let all = parts.concat();
    assert_eq!(done.size, all.len() as u64);
    all
}

async fn read(storage: &Storage, name: &str, range: Option<ByteRange>) -> Vec<u8> {
    let row = storage
        .object(&service(), Operation::Download, "mp", name)
        .await
        .unwrap();
    collect(storage.read(&row, range).await.unwrap()).await
}

async fn journal(setup: &Setup) -> Vec<(String, String)> {
    setup
        .server
        .db
        .admin_client()
        .await
        .query(
            "select key, state from storage.byte_journal order by key",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

async fn gc(setup: &Setup) {
    let report = setup.storage.collect_garbage(Duration::ZERO).await.unwrap();
    assert!(report.ran);
    assert_eq!(report.failed, 0);
}

mod cases {
    use super::*;

    pub async fn parts_complete_and_read_back(backend: Backend) {
        let s = setup(backend).await;
        let parts = vec![data(1500, 1), data(1000, 2), data(321, 3)];
        let all = upload_parts(&s.storage, &service(), "dir/big.bin", &parts).await;
        assert_eq!(read(&s.storage, "dir/big.bin", None).await, all);
        // Ranges inside a part, across one and two boundaries, the last byte, the first byte.
        for (start, end) in [
            (10, 20),
            (1490, 1510),
            (1400, 2600),
            (0, 0),
            (2820, 2820),
            (0, 2820),
        ] {
            let got = read(&s.storage, "dir/big.bin", Some(ByteRange { start, end })).await;
            assert_eq!(
                got,
                all[start as usize..=end as usize],
                "range {start}-{end}"
            );
        }
        // The REST routes go through the same core.
        let key = s.server.service_key();
        let response = s
            .server
            .request(reqwest::Method::GET, "/object/mp/dir/big.bin", Some(&key))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let etag = response.headers()["etag"].to_str().unwrap().to_string();
        assert!(etag.ends_with("-3\""), "multipart ETag, got {etag}");
        assert_eq!(response.bytes().await.unwrap().as_ref(), &all[..]);
        let response = s
            .server
            .request(reqwest::Method::GET, "/object/mp/dir/big.bin", Some(&key))
            .header("range", "bytes=1499-1500")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 206);
        assert_eq!(response.bytes().await.unwrap().as_ref(), &all[1499..=1500]);
        let (status, info) = common::json_of(
            s.server
                .request(
                    reqwest::Method::GET,
                    "/object/info/mp/dir/big.bin",
                    Some(&key),
                )
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 200, "{info}");
        assert_eq!(info["size"], all.len());
        let (status, listed) = common::json_of(
            s.server
                .request(reqwest::Method::POST, "/object/list/mp", Some(&key))
                .json(&serde_json::json!({ "prefix": "dir/" }))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 200, "{listed}");
        assert_eq!(listed[0]["name"], "big.bin");
        assert_eq!(listed[0]["metadata"]["size"], all.len());
        // Nothing is left staged and no upload remains.
        assert!(journal(&s).await.is_empty(), "{:?}", journal(&s).await);
        let uploads = s
            .storage
            .list_multipart_uploads(
                &service(),
                &ListUploads {
                    bucket: "mp".into(),
                    max: 100,
                    ..ListUploads::default()
                },
            )
            .await
            .unwrap();
        assert!(uploads.uploads.is_empty());
        // Three segments, one key each, nothing copied.
        assert_eq!(s.server.stored_keys().await, 3);
    }

    pub async fn replaced_parts_and_aborts_free_bytes(backend: Backend) {
        let s = setup(backend).await;
        let who = service();
        let upload = s
            .storage
            .create_multipart(&who, create("a.bin"))
            .await
            .unwrap();
        s.storage
            .upload_part(&who, &upload.id, 1, body(&data(1200, 1)), None)
            .await
            .unwrap();
        let second = s
            .storage
            .upload_part(&who, &upload.id, 1, body(&data(1300, 2)), None)
            .await
            .unwrap();
        s.storage
            .upload_part(&who, &upload.id, 2, body(&data(10, 3)), None)
            .await
            .unwrap();
        let parts = s
            .storage
            .list_parts(&who, &upload.id, None, 100)
            .await
            .unwrap();
        assert_eq!(parts.parts.len(), 2);
        assert_eq!(parts.parts[0].etag, second.etag);
        assert_eq!(parts.parts[0].size, 1300);
        assert_eq!(
            s.storage
                .multipart_upload(&who, &upload.id)
                .await
                .unwrap()
                .size,
            1310
        );
        // The replaced part's key is released, then freed.
        let released: Vec<_> = journal(&s)
            .await
            .into_iter()
            .filter(|(_, st)| st == "released")
            .collect();
        assert_eq!(released.len(), 1);
        assert_eq!(s.server.stored_keys().await, 3);
        gc(&s).await;
        assert_eq!(s.server.stored_keys().await, 2);

        s.storage.abort_multipart(&who, &upload.id).await.unwrap();
        assert!(matches!(
            s.storage
                .upload_part(&who, &upload.id, 3, body(b"late"), None)
                .await,
            Err(Error::NoSuchUpload)
        ));
        assert!(matches!(
            s.storage.abort_multipart(&who, &upload.id).await,
            Err(Error::NoSuchUpload)
        ));
        gc(&s).await;
        assert_eq!(s.server.stored_keys().await, 0);
        assert!(journal(&s).await.is_empty());
    }

    pub async fn abandoned_uploads_expire(backend: Backend) {
        let s = setup(backend).await;
        let who = service();
        let upload = s
            .storage
            .create_multipart(&who, create("old.bin"))
            .await
            .unwrap();
        s.storage
            .upload_part(&who, &upload.id, 1, body(&data(1200, 1)), None)
            .await
            .unwrap();
        let fresh = s
            .storage
            .create_multipart(&who, create("new.bin"))
            .await
            .unwrap();
        s.storage
            .upload_part(&who, &fresh.id, 1, body(&data(100, 1)), None)
            .await
            .unwrap();
        gc(&s).await;
        assert_eq!(s.server.stored_keys().await, 2, "nothing expired yet");
        s.server
            .db
            .sql(&format!(
                "update storage.s3_multipart_uploads set expires_at = now() - interval '1 second' \
                 where id = '{}'",
                upload.id
            ))
            .await;
        assert!(matches!(
            s.storage.multipart_upload(&who, &upload.id).await,
            Err(Error::NoSuchUpload)
        ));
        gc(&s).await;
        assert_eq!(s.server.stored_keys().await, 1);
        let left = s
            .server
            .db
            .admin_client()
            .await
            .query("select id from storage.s3_multipart_uploads", &[])
            .await
            .unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].get::<_, String>(0), fresh.id);
    }

    pub async fn overwrite_and_delete_release_every_segment(backend: Backend) {
        let s = setup(backend).await;
        let who = service();
        upload_parts(
            &s.storage,
            &who,
            "x.bin",
            &[data(1000, 1), data(1000, 2), data(5, 3)],
        )
        .await;
        assert_eq!(s.server.stored_keys().await, 3);
        // A plain upload over it: the three segments go.
        s.storage
            .upload(
                &who,
                Upload {
                    bucket: "mp".into(),
                    name: "x.bin".into(),
                    body: body(b"plain"),
                    declared_length: None,
                    content_type: None,
                    cache_control: None,
                    user_metadata: None,
                    upsert: true,
                    owner: None,
                    headers: Default::default(),
                },
            )
            .await
            .unwrap();
        gc(&s).await;
        assert_eq!(s.server.stored_keys().await, 1);
        assert_eq!(read(&s.storage, "x.bin", None).await, b"plain");

        // A segmented object deleted: all of it goes.
        upload_parts(&s.storage, &who, "y.bin", &[data(1000, 4), data(7, 5)]).await;
        assert_eq!(s.server.stored_keys().await, 3);
        s.storage.delete_object(&who, "mp", "y.bin").await.unwrap();
        gc(&s).await;
        assert_eq!(s.server.stored_keys().await, 1);
        assert!(journal(&s).await.is_empty());
    }

    pub async fn copies_share_segments_and_moves_keep_them(backend: Backend) {
        let s = setup(backend).await;
        let who = service();
        let all = upload_parts(&s.storage, &who, "src.bin", &[data(1000, 1), data(99, 2)]).await;
        s.storage
            .copy_object(
                &who,
                CopyRequest {
                    bucket: "mp".into(),
                    source: "src.bin".into(),
                    destination_bucket: "mp".into(),
                    destination: "copy.bin".into(),
                    copy_metadata: true,
                    user_metadata: None,
                    upsert: false,
                    headers: Default::default(),
                },
            )
            .await
            .unwrap();
        assert_eq!(
            s.server.stored_keys().await,
            2,
            "the copy shares the segments"
        );
        s.storage
            .delete_object(&who, "mp", "src.bin")
            .await
            .unwrap();
        gc(&s).await;
        assert_eq!(s.server.stored_keys().await, 2, "still named by the copy");
        assert_eq!(read(&s.storage, "copy.bin", None).await, all);
        s.storage
            .move_object(&who, "mp", "copy.bin", "mp", "moved/copy.bin")
            .await
            .unwrap();
        assert_eq!(
            read(
                &s.storage,
                "moved/copy.bin",
                Some(ByteRange {
                    start: 990,
                    end: 1010
                })
            )
            .await,
            all[990..=1010]
        );
        s.storage
            .delete_object(&who, "mp", "moved/copy.bin")
            .await
            .unwrap();
        gc(&s).await;
        assert_eq!(s.server.stored_keys().await, 0);
    }

    /// Expected digests are compared at the end of the body, before anything is committed: a
    /// mismatch is `DigestMismatch`, stores no row or part and leaves no key behind. Bodies of
    /// both sizes: small ones are hashed inline, large ones on other threads.
    pub async fn expected_digests_are_checked_before_commit(backend: Backend) {
        use pgstorage::core::{DigestKind, ExpectedDigests};
        use sha2::Sha256;
        let s = setup(backend).await;
        let who = service();
        for len in [10usize, 1_500_000] {
            let bytes = data(len, 9);
            let md5: [u8; 16] = Md5::digest(&bytes).into();
            let sha256: [u8; 32] = Sha256::digest(&bytes).into();
            let name = format!("checked-{len}.bin");
            let upload = |body| Upload {
                bucket: "mp".into(),
                name: name.clone(),
                body,
                declared_length: None,
                content_type: None,
                cache_control: None,
                user_metadata: None,
                upsert: true,
                owner: None,
                headers: Default::default(),
            };
            for (expected, which) in [
                (
                    ExpectedDigests {
                        md5: Some([0; 16]),
                        ..Default::default()
                    },
                    DigestKind::Md5,
                ),
                (
                    ExpectedDigests {
                        md5: Some(md5),
                        sha256: Some([0; 32]),
                        ..Default::default()
                    },
                    DigestKind::Sha256,
                ),
            ] {
                let refused = s
                    .storage
                    .upload_checked(&who, upload(body(&bytes)), expected)
                    .await;
                assert!(
                    matches!(refused, Err(Error::DigestMismatch { which: w }) if w == which),
                    "{refused:?}"
                );
                assert!(matches!(
                    s.storage.object(&who, Operation::Info, "mp", &name).await,
                    Err(Error::ObjectNotFound)
                ));
                assert!(journal(&s).await.is_empty());
                assert_eq!(s.server.stored_keys().await, 0);
            }
            let stored = s
                .storage
                .upload_checked(
                    &who,
                    upload(body(&bytes)),
                    ExpectedDigests {
                        md5: Some(md5),
                        sha256: Some(sha256),
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
            let measured = stored.measured.unwrap();
            assert_eq!(measured.size, len as u64);
            assert_eq!(measured.md5_hex, hex::encode(md5));
            assert_eq!(measured.sha256_hex, hex::encode(sha256));
            assert_eq!(read(&s.storage, &name, None).await, bytes);

            // The same for a part.
            let mp = s
                .storage
                .create_multipart(&who, create(&name))
                .await
                .unwrap();
            let refused = s
                .storage
                .upload_part_checked(
                    &who,
                    &mp.id,
                    1,
                    body(&bytes),
                    None,
                    ExpectedDigests {
                        sha256: Some([0; 32]),
                        ..Default::default()
                    },
                )
                .await;
            assert!(
                matches!(
                    refused,
                    Err(Error::DigestMismatch {
                        which: DigestKind::Sha256
                    })
                ),
                "{refused:?}"
            );
            let part = s
                .storage
                .upload_part_checked(
                    &who,
                    &mp.id,
                    1,
                    body(&bytes),
                    None,
                    ExpectedDigests {
                        md5: Some(md5),
                        sha256: Some(sha256),
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
            assert_eq!(part.etag, format!("\"{}\"", hex::encode(md5)));
            assert_eq!(part.sha256, Some(hex::encode(sha256)));
            s.storage.abort_multipart(&who, &mp.id).await.unwrap();
            s.storage.delete_object(&who, "mp", &name).await.unwrap();
            gc(&s).await;
            assert_eq!(s.server.stored_keys().await, 0);
        }
    }
}

macro_rules! on_store {
    ($module:ident, $backend:expr) => {
        mod $module {
            use super::*;

            #[tokio::test]
            async fn parts_complete_and_read_back() {
                cases::parts_complete_and_read_back($backend).await;
            }

            #[tokio::test]
            async fn replaced_parts_and_aborts_free_bytes() {
                cases::replaced_parts_and_aborts_free_bytes($backend).await;
            }

            #[tokio::test]
            async fn abandoned_uploads_expire() {
                cases::abandoned_uploads_expire($backend).await;
            }

            #[tokio::test]
            async fn overwrite_and_delete_release_every_segment() {
                cases::overwrite_and_delete_release_every_segment($backend).await;
            }

            #[tokio::test]
            async fn copies_share_segments_and_moves_keep_them() {
                cases::copies_share_segments_and_moves_keep_them($backend).await;
            }

            #[tokio::test]
            async fn expected_digests_are_checked_before_commit() {
                cases::expected_digests_are_checked_before_commit($backend).await;
            }
        }
    };
}

on_store!(fs, Backend::Fs);
on_store!(postgres, Backend::Postgres);
on_store!(s3, Backend::S3);

#[tokio::test]
async fn completion_checks_the_parts() {
    let s = setup(Backend::Fs).await;
    let who = service();
    let upload = s
        .storage
        .create_multipart(&who, create("c.bin"))
        .await
        .unwrap();
    let mut etags = Vec::new();
    for (n, len) in [(1, 1000), (2, 999), (3, 1000), (4, 5)] {
        let info = s
            .storage
            .upload_part(&who, &upload.id, n, body(&data(len, n as u8)), None)
            .await
            .unwrap();
        etags.push(info.etag);
    }
    let part = |n: u32, etag: Option<&str>| CompletePart {
        part_number: n,
        etag: etag.map(String::from),
    };
    let complete = |parts: Vec<CompletePart>| {
        let storage = s.storage.clone();
        let who = who.clone();
        let id = upload.id.clone();
        async move { storage.complete_multipart(&who, &id, &parts).await }
    };
    assert!(matches!(
        complete(vec![part(1, Some("\"0123\"")), part(4, None)]).await,
        Err(Error::InvalidPart(_))
    ));
    assert!(matches!(
        complete(vec![part(1, None), part(7, None)]).await,
        Err(Error::InvalidPart(_))
    ));
    assert!(matches!(
        complete(vec![part(3, None), part(1, None)]).await,
        Err(Error::InvalidPartOrder)
    ));
    assert!(matches!(
        complete(vec![part(1, None), part(1, None)]).await,
        Err(Error::InvalidPartOrder)
    ));
    assert!(matches!(
        complete(vec![part(2, None), part(4, None)]).await,
        Err(Error::EntityTooSmall(_))
    ));
    assert!(matches!(complete(vec![]).await, Err(Error::InvalidPart(_))));
    // Nothing was lost by the refusals: the upload completes from parts 1, 3 and 4 (unquoted
    // ETag accepted), and part 2, left out, is released.
    let bare = etags[0].trim_matches('"').to_string();
    let done = complete(vec![
        part(1, Some(&bare)),
        part(3, Some(&etags[2])),
        part(4, None),
    ])
    .await
    .unwrap();
    assert_eq!(done.size, 2005);
    let mut md5s = Vec::new();
    for e in [&etags[0], &etags[2], &etags[3]] {
        md5s.extend(hex::decode(e.trim_matches('"')).unwrap());
    }
    assert_eq!(
        done.etag,
        format!("\"{}-3\"", hex::encode(Md5::digest(&md5s)))
    );
    let expected = [data(1000, 1), data(1000, 3), data(5, 4)].concat();
    assert_eq!(read(&s.storage, "c.bin", None).await, expected);
    assert!(matches!(
        complete(vec![part(1, None)]).await,
        Err(Error::NoSuchUpload)
    ));
    gc(&s).await;
    assert_eq!(s.server.stored_keys().await, 3, "the unused part was freed");
    let row = s
        .storage
        .object(&who, Operation::Info, "mp", "c.bin")
        .await
        .unwrap();
    let metadata = row.metadata.unwrap();
    assert!(metadata.get("sha256").is_none());
    assert!(metadata["sha256Parts"].as_str().unwrap().ends_with("-3"));
    assert_eq!(metadata["mimetype"], "application/x-test");
}

#[tokio::test]
async fn only_who_may_write_the_object_may_upload_it() {
    let s = setup(Backend::Fs).await;
    s.server
        .db
        .sql(
            "create policy own_insert on storage.objects for insert to authenticated
                 with check ((storage.foldername(name))[1] = auth.uid());
             create policy own_read on storage.objects for select to authenticated
                 using ((storage.foldername(name))[1] = auth.uid());",
        )
        .await;
    let alice = caller("authenticated", Some("alice"));
    let bob = caller("authenticated", Some("bob"));
    assert!(matches!(
        s.storage
            .create_multipart(&bob, create("alice/x.bin"))
            .await,
        Err(Error::Forbidden(_))
    ));
    assert!(matches!(
        s.storage
            .create_multipart(&caller("anon", None), create("alice/x.bin"))
            .await,
        Err(Error::Forbidden(_))
    ));
    let mut request = create("alice/x.bin");
    request.upsert = false;
    let upload = s.storage.create_multipart(&alice, request).await.unwrap();
    assert_eq!(upload.owner.as_deref(), Some("alice"));
    // Bob cannot use Alice's upload, even knowing its id.
    assert!(matches!(
        s.storage
            .upload_part(&bob, &upload.id, 1, body(b"bob"), None)
            .await,
        Err(Error::Forbidden(_))
    ));
    assert!(matches!(
        s.storage.abort_multipart(&bob, &upload.id).await,
        Err(Error::Forbidden(_))
    ));
    let info = s
        .storage
        .upload_part(&alice, &upload.id, 1, body(b"hello"), None)
        .await
        .unwrap();
    // The shipped policy lists Alice her own uploads and Bob none.
    let list = |who: Caller| {
        let storage = s.storage.clone();
        async move {
            storage
                .list_multipart_uploads(
                    &who,
                    &ListUploads {
                        bucket: "mp".into(),
                        prefix: Some("alice/".into()),
                        max: 10,
                        ..ListUploads::default()
                    },
                )
                .await
                .unwrap()
                .uploads
                .len()
        }
    };
    assert_eq!(list(alice.clone()).await, 1);
    assert_eq!(list(bob.clone()).await, 0);
    assert_eq!(list(service()).await, 1);
    let done = s
        .storage
        .complete_multipart(
            &alice,
            &upload.id,
            &[CompletePart {
                part_number: 1,
                etag: Some(info.etag),
            }],
        )
        .await
        .unwrap();
    assert_eq!(done.size, 5);
    let row = s
        .storage
        .object(&alice, Operation::Download, "mp", "alice/x.bin")
        .await
        .unwrap();
    assert_eq!(row.owner_id, "alice");
    assert_eq!(
        collect(s.storage.read(&row, None).await.unwrap()).await,
        b"hello"
    );
}

#[tokio::test]
async fn completion_is_checked_again_as_the_caller() {
    let s = setup(Backend::Fs).await;
    s.server
        .db
        .sql(
            "create policy own_insert on storage.objects for insert to authenticated
                 with check ((storage.foldername(name))[1] = auth.uid());",
        )
        .await;
    let alice = caller("authenticated", Some("alice"));
    let mut request = create("alice/y.bin");
    request.upsert = false;
    let upload = s.storage.create_multipart(&alice, request).await.unwrap();
    s.storage
        .upload_part(&alice, &upload.id, 1, body(b"abc"), None)
        .await
        .unwrap();
    s.server
        .db
        .sql("drop policy own_insert on storage.objects")
        .await;
    let parts = [CompletePart {
        part_number: 1,
        etag: None,
    }];
    assert!(matches!(
        s.storage
            .complete_multipart(&alice, &upload.id, &parts)
            .await,
        Err(Error::Forbidden(_))
    ));
    // The refused completion changed nothing: the upload and its part are still there.
    assert_eq!(
        s.storage
            .list_parts(&alice, &upload.id, None, 10)
            .await
            .unwrap()
            .parts
            .len(),
        1
    );
    assert!(
        journal(&s).await.is_empty(),
        "no manifest left staged: {:?}",
        journal(&s).await
    );
}

#[tokio::test]
async fn bucket_limits_apply_to_parts_and_completion() {
    let s = setup(Backend::Fs).await;
    s.server
        .db
        .sql(
            "update storage.buckets set file_size_limit = 2500, allowed_mime_types = '{image/*}' \
             where id = 'mp'",
        )
        .await;
    let who = service();
    assert!(matches!(
        s.storage.create_multipart(&who, create("t.bin")).await,
        Err(Error::UnsupportedMediaType(_))
    ));
    let mut request = create("t.png");
    request.content_type = None;
    let upload = s.storage.create_multipart(&who, request).await.unwrap();
    s.storage
        .upload_part(&who, &upload.id, 1, body(&data(2000, 1)), None)
        .await
        .unwrap();
    // The running total may not pass the bucket's limit.
    assert!(matches!(
        s.storage
            .upload_part(&who, &upload.id, 2, body(&data(600, 2)), None)
            .await,
        Err(Error::PayloadTooLarge(_))
    ));
    assert!(matches!(
        s.storage
            .upload_part(&who, &upload.id, 2, body(&data(10, 2)), Some(600))
            .await,
        Err(Error::PayloadTooLarge(_))
    ));
    // Refused by its declared length before a byte was read: the key staged meanwhile (while
    // the bucket's rules were read) is out of the journal again.
    let staged: Vec<_> = journal(&s)
        .await
        .into_iter()
        .filter(|(_, state)| state == "staged")
        .collect();
    assert!(
        staged.is_empty(),
        "refused parts left staged keys: {staged:?}"
    );
    s.storage
        .upload_part(&who, &upload.id, 2, body(&data(500, 2)), None)
        .await
        .unwrap();
    let mut big = create("u.png");
    big.declared_length = Some(2501);
    assert!(matches!(
        s.storage.create_multipart(&who, big).await,
        Err(Error::PayloadTooLarge(_))
    ));
    let parts: Vec<_> = (1..=2)
        .map(|n| CompletePart {
            part_number: n,
            etag: None,
        })
        .collect();
    let done = s
        .storage
        .complete_multipart(&who, &upload.id, &parts)
        .await
        .unwrap();
    assert_eq!(done.size, 2500);
    gc(&s).await;
    assert_eq!(
        s.server.stored_keys().await,
        2,
        "refused parts left nothing"
    );
}

/// Completing 1,000 parts touches rows, not bytes (timed by the benchmark, not here).
#[tokio::test]
async fn a_thousand_small_parts_complete() {
    let s = setup(Backend::Fs).await;
    let storage = s.storage.with_limits(Limits {
        multipart_min_part_size: 1,
        ..s.storage.limits().clone()
    });
    let who = service();
    let upload = storage
        .create_multipart(&who, create("many.bin"))
        .await
        .unwrap();
    let uploads = (1..=1000u32).map(|n| {
        let storage = storage.clone();
        let who = who.clone();
        let id = upload.id.clone();
        async move {
            storage
                .upload_part(&who, &id, n, body(&data(10, n as u8)), None)
                .await
                .unwrap()
        }
    });
    let infos: Vec<_> = futures::stream::iter(uploads).buffered(8).collect().await;
    let parts: Vec<_> = infos
        .iter()
        .map(|i| CompletePart {
            part_number: i.part_number,
            etag: Some(i.etag.clone()),
        })
        .collect();
    let started = Instant::now();
    let done = storage
        .complete_multipart(&who, &upload.id, &parts)
        .await
        .unwrap();
    eprintln!("completing 1000 parts took {:?}", started.elapsed());
    assert_eq!(done.size, 10_000);
    assert!(done.etag.ends_with("-1000\""));
    let expected: Vec<u8> = (1..=1000u32).flat_map(|n| data(10, n as u8)).collect();
    assert_eq!(read(&storage, "many.bin", None).await, expected);
    assert_eq!(
        read(
            &storage,
            "many.bin",
            Some(ByteRange {
                start: 4995,
                end: 5004
            })
        )
        .await,
        expected[4995..=5004]
    );
}

/// TUS-style appends: each part at the upload's current offset, one winner when two race, and
/// completion from every part uploaded with a front's own minimum part size.
#[tokio::test]
async fn appends_check_the_offset_and_complete_with_every_part() {
    let s = setup(Backend::Fs).await;
    let who = service();
    let upload = s
        .storage
        .create_multipart(&who, create("tus.bin"))
        .await
        .unwrap();
    let first = s
        .storage
        .append_part(&who, &upload.id, 0, body(b"hello "), None)
        .await
        .unwrap();
    assert_eq!(first.part_number, 1);
    assert!(matches!(
        s.storage
            .append_part(&who, &upload.id, 0, body(b"again"), None)
            .await,
        Err(Error::Conflict(_))
    ));
    // Two appends at the same offset at once: exactly one is recorded.
    let (a, b) = tokio::join!(
        s.storage
            .append_part(&who, &upload.id, 6, body(b"world"), None),
        s.storage
            .append_part(&who, &upload.id, 6, body(b"WORLD"), None),
    );
    assert!(a.is_ok() != b.is_ok(), "{a:?} / {b:?}");
    assert!(matches!(
        a.as_ref().err().or(b.as_ref().err()),
        Some(Error::Conflict(_))
    ));
    s.storage
        .append_part(&who, &upload.id, 11, body(b"!"), None)
        .await
        .unwrap();
    let done = s
        .storage
        .complete_multipart_uploaded(&who, &upload.id, 0)
        .await
        .unwrap();
    assert_eq!(done.size, 12);
    let content = read(&s.storage, "tus.bin", None).await;
    assert!(content == b"hello world!" || content == b"hello WORLD!");
    gc(&s).await;
    assert_eq!(
        s.server.stored_keys().await,
        3,
        "the losing append left nothing"
    );
}

/// UploadPartCopy: parts made of (ranges of) existing objects, segmented or not; and the
/// segment layout of the result.
#[tokio::test]
async fn parts_copied_from_objects() {
    let s = setup(Backend::Fs).await;
    let who = service();
    let segmented = upload_parts(&s.storage, &who, "seg.bin", &[data(1000, 1), data(500, 2)]).await;
    let plain = data(1200, 3);
    s.storage
        .upload(
            &who,
            Upload {
                bucket: "mp".into(),
                name: "plain.bin".into(),
                body: body(&plain),
                declared_length: None,
                content_type: None,
                cache_control: None,
                user_metadata: None,
                upsert: false,
                owner: None,
                headers: Default::default(),
            },
        )
        .await
        .unwrap();
    let upload = s
        .storage
        .create_multipart(&who, create("joined.bin"))
        .await
        .unwrap();
    let source = |name: &str, range: Option<ByteRange>| PartSource {
        bucket: "mp".into(),
        name: name.into(),
        range,
    };
    let one = s
        .storage
        .upload_part_copy(
            &who,
            &upload.id,
            1,
            source(
                "seg.bin",
                Some(ByteRange {
                    start: 400,
                    end: 1499,
                }),
            ),
        )
        .await
        .unwrap();
    assert_eq!(one.size, 1100);
    s.storage
        .upload_part_copy(&who, &upload.id, 2, source("plain.bin", None))
        .await
        .unwrap();
    assert!(matches!(
        s.storage
            .upload_part_copy(
                &who,
                &upload.id,
                3,
                source(
                    "plain.bin",
                    Some(ByteRange {
                        start: 0,
                        end: 1200
                    })
                )
            )
            .await,
        Err(Error::RangeNotSatisfiable(_))
    ));
    assert!(matches!(
        s.storage
            .upload_part_copy(&who, &upload.id, 3, source("missing.bin", None))
            .await,
        Err(Error::ObjectNotFound)
    ));
    let parts: Vec<_> = (1..=2)
        .map(|n| CompletePart {
            part_number: n,
            etag: None,
        })
        .collect();
    s.storage
        .complete_multipart(&who, &upload.id, &parts)
        .await
        .unwrap();
    let expected = [&segmented[400..], &plain[..]].concat();
    assert_eq!(read(&s.storage, "joined.bin", None).await, expected);
    let row = s
        .storage
        .object(&who, Operation::Info, "mp", "joined.bin")
        .await
        .unwrap();
    let segments = s.storage.object_segments(&row).await.unwrap().unwrap();
    assert_eq!(
        segments,
        vec![
            Segment {
                offset: 0,
                size: 1100
            },
            Segment {
                offset: 1100,
                size: 1200
            }
        ]
    );
    let row = s
        .storage
        .object(&who, Operation::Info, "mp", "plain.bin")
        .await
        .unwrap();
    assert!(s.storage.object_segments(&row).await.unwrap().is_none());
}

/// An emptied bucket can be deleted even with an upload in progress, whose parts are freed.
#[tokio::test]
async fn deleting_a_bucket_ends_its_uploads() {
    let s = setup(Backend::Fs).await;
    let who = service();
    upload_parts(&s.storage, &who, "kept.bin", &[data(1000, 1), data(1, 2)]).await;
    let upload = s
        .storage
        .create_multipart(&who, create("pending.bin"))
        .await
        .unwrap();
    s.storage
        .upload_part(&who, &upload.id, 1, body(b"pending"), None)
        .await
        .unwrap();
    assert!(matches!(
        s.storage.delete_bucket(&who, "mp").await,
        Err(Error::BucketNotEmpty)
    ));
    // The refused delete left the upload alone.
    s.storage.multipart_upload(&who, &upload.id).await.unwrap();
    s.storage.empty_bucket(&who, "mp").await.unwrap();
    s.storage.delete_bucket(&who, "mp").await.unwrap();
    assert!(matches!(
        s.storage.multipart_upload(&who, &upload.id).await,
        Err(Error::NoSuchUpload)
    ));
    gc(&s).await;
    assert_eq!(s.server.stored_keys().await, 0);
}

/// ListMultipartUploads: order, pages, prefix and delimiter.
#[tokio::test]
async fn uploads_list_in_pages_with_common_prefixes() {
    let s = setup(Backend::Fs).await;
    let who = service();
    let mut ids = Vec::new();
    for name in ["a/1", "a/2", "b", "b", "c/x/1", "d"] {
        ids.push(
            s.storage
                .create_multipart(&who, create(name))
                .await
                .unwrap()
                .id,
        );
    }
    let list = |delimiter: Option<&str>,
                prefix: Option<&str>,
                marker: Option<(String, Option<String>)>,
                max| {
        let storage = s.storage.clone();
        let who = who.clone();
        let request = ListUploads {
            bucket: "mp".into(),
            prefix: prefix.map(String::from),
            delimiter: delimiter.map(String::from),
            key_marker: marker.as_ref().map(|m| m.0.clone()),
            upload_id_marker: marker.and_then(|m| m.1),
            max,
        };
        async move {
            storage
                .list_multipart_uploads(&who, &request)
                .await
                .unwrap()
        }
    };
    let names = |page: &pgstorage::core::multipart::UploadList| {
        page.uploads
            .iter()
            .map(|u| u.name.clone())
            .collect::<Vec<_>>()
    };

    let all = list(None, None, None, 100).await;
    assert_eq!(names(&all), ["a/1", "a/2", "b", "b", "c/x/1", "d"]);
    assert!(!all.truncated);

    // Pages of two, resuming between the two uploads of "b".
    let first = list(None, None, None, 3).await;
    assert_eq!(names(&first), ["a/1", "a/2", "b"]);
    assert!(first.truncated);
    let next = Some((
        first.next_key_marker.clone().unwrap(),
        first.next_upload_id_marker.clone(),
    ));
    let second = list(None, None, next, 3).await;
    assert_eq!(names(&second), ["b", "c/x/1", "d"]);
    assert_ne!(second.uploads[0].id, first.uploads[2].id);

    let rolled = list(Some("/"), None, None, 2).await;
    assert_eq!(rolled.common_prefixes, ["a/"]);
    assert_eq!(names(&rolled), ["b"]);
    assert!(rolled.truncated);
    let rest = list(
        Some("/"),
        None,
        Some((
            rolled.next_key_marker.clone().unwrap(),
            rolled.next_upload_id_marker.clone(),
        )),
        10,
    )
    .await;
    assert_eq!(names(&rest), ["b", "d"]);
    assert_eq!(rest.common_prefixes, ["c/"]);
    // A common prefix as the marker skips everything under it.
    let after_a = list(Some("/"), None, Some(("a/".into(), None)), 10).await;
    assert_eq!(names(&after_a), ["b", "b", "d"]);

    let in_c = list(Some("/"), Some("c/"), None, 10).await;
    assert_eq!(in_c.common_prefixes, ["c/x/"]);
    assert!(in_c.uploads.is_empty());
}

/// A declared total length (TUS `Upload-Length`, or set later for `Upload-Defer-Length`) bounds
/// what may be appended.
#[tokio::test]
async fn a_declared_length_bounds_the_parts() {
    let s = setup(Backend::Fs).await;
    let who = service();
    let mut request = create("sized.bin");
    request.declared_length = Some(10);
    let upload = s.storage.create_multipart(&who, request).await.unwrap();
    assert_eq!(upload.declared_length, Some(10));
    s.storage
        .append_part(&who, &upload.id, 0, body(b"123456"), None)
        .await
        .unwrap();
    assert!(matches!(
        s.storage
            .append_part(&who, &upload.id, 6, body(b"789012"), None)
            .await,
        Err(Error::PayloadTooLarge(_))
    ));
    s.storage
        .append_part(&who, &upload.id, 6, body(b"7890"), None)
        .await
        .unwrap();
    assert!(matches!(
        s.storage
            .declare_multipart_length(&who, &upload.id, 20)
            .await,
        Err(Error::Conflict(_))
    ));

    let deferred = s
        .storage
        .create_multipart(&who, create("later.bin"))
        .await
        .unwrap();
    assert_eq!(deferred.declared_length, None);
    s.storage
        .append_part(&who, &deferred.id, 0, body(b"abc"), None)
        .await
        .unwrap();
    assert!(matches!(
        s.storage
            .declare_multipart_length(&who, &deferred.id, 2)
            .await,
        Err(Error::Conflict(_))
    ));
    let set = s
        .storage
        .declare_multipart_length(&who, &deferred.id, 4)
        .await
        .unwrap();
    assert_eq!(set.declared_length, Some(4));
    assert_eq!(set.size, 3);
    assert!(matches!(
        s.storage
            .append_part(&who, &deferred.id, 3, body(b"de"), None)
            .await,
        Err(Error::PayloadTooLarge(_))
    ));
}

/// Policies under which `authenticated` callers write only their own folder and see only their
/// own folder and `shared/`.
const OWN_FOLDER_POLICIES: &str =
    "create policy own_insert on storage.objects for insert to authenticated
         with check ((storage.foldername(name))[1] = auth.uid());
     create policy own_read on storage.objects for select to authenticated
         using ((storage.foldername(name))[1] in ('shared', auth.uid()));";

fn denied(result: Result<impl std::fmt::Debug, Error>, what: &str) {
    match result {
        Err(Error::Forbidden(message)) => assert_eq!(
            message, "new row violates row-level security policy",
            "{what}: the one write-denied answer"
        ),
        other => panic!("{what}: expected the write-denied 403, got {other:?}"),
    }
}

/// Policy first on creating an upload: whatever exists, whatever the bucket's rules, a caller
/// the policies refuse gets the same 403; one they allow learns of the existing key (409), the
/// refused type (415) and the announced length over the limit (413).
#[tokio::test]
async fn creating_an_upload_asks_the_policies_first() {
    let s = setup(common::test_backend()).await;
    s.server.db.sql(OWN_FOLDER_POLICIES).await;
    s.server
        .db
        .sql(
            "update storage.buckets set file_size_limit = 100, allowed_mime_types = '{image/*}' \
             where id = 'mp'",
        )
        .await;
    let mut existing = create("alice/there.png");
    existing.content_type = None;
    let upload = s
        .storage
        .create_multipart(&service(), existing)
        .await
        .unwrap();
    s.storage
        .upload_part(&service(), &upload.id, 1, body(b"png"), None)
        .await
        .unwrap();
    s.storage
        .complete_multipart_uploaded(&service(), &upload.id, 1)
        .await
        .unwrap();

    let request = |name: &str, kind: &str, length: Option<u64>| CreateMultipart {
        bucket: "mp".into(),
        name: name.into(),
        content_type: Some(kind.into()),
        upsert: false,
        declared_length: length,
        ..CreateMultipart::default()
    };
    let bob = caller("authenticated", Some("bob"));
    for (what, create) in [
        (
            "an existing key",
            request("alice/there.png", "image/png", None),
        ),
        ("a missing key", request("alice/new.png", "image/png", None)),
        (
            "a refused type",
            request("alice/new.txt", "text/plain", None),
        ),
        (
            "a length over the limit",
            request("alice/new.png", "image/png", Some(101)),
        ),
        (
            "a missing bucket",
            CreateMultipart {
                bucket: "nowhere".into(),
                ..request("alice/new.png", "image/png", None)
            },
        ),
    ] {
        denied(s.storage.create_multipart(&bob, create.clone()).await, what);
        denied(
            s.storage
                .create_multipart(&caller("anon", None), create)
                .await,
            what,
        );
    }

    let alice = caller("authenticated", Some("alice"));
    assert!(matches!(
        s.storage
            .create_multipart(&alice, request("alice/there.png", "image/png", None))
            .await,
        Err(Error::AlreadyExists)
    ));
    assert!(matches!(
        s.storage
            .create_multipart(&alice, request("alice/new.txt", "text/plain", None))
            .await,
        Err(Error::UnsupportedMediaType(_))
    ));
    assert!(matches!(
        s.storage
            .create_multipart(&alice, request("alice/new.png", "image/png", Some(101)))
            .await,
        Err(Error::PayloadTooLarge(_))
    ));
    s.storage
        .create_multipart(&alice, request("alice/new.png", "image/png", Some(100)))
        .await
        .unwrap();
}

/// Policy first on completion too: once the policies refuse the caller, completing answers the
/// one 403 whether the key was created meanwhile or the bucket's rules changed; a caller they
/// allow gets 409, 415 and 413.
#[tokio::test]
async fn completing_an_upload_asks_the_policies_first() {
    let s = setup(common::test_backend()).await;
    s.server.db.sql(OWN_FOLDER_POLICIES).await;
    let alice = caller("authenticated", Some("alice"));
    let mut request = create("alice/late.bin");
    request.upsert = false;
    let upload = s.storage.create_multipart(&alice, request).await.unwrap();
    s.storage
        .upload_part(&alice, &upload.id, 1, body(&data(200, 1)), None)
        .await
        .unwrap();
    // Meanwhile the key is taken and the bucket's rules change.
    let mut taken = create("alice/late.bin");
    taken.upsert = false;
    let other = s.storage.create_multipart(&service(), taken).await.unwrap();
    s.storage
        .upload_part(&service(), &other.id, 1, body(b"first"), None)
        .await
        .unwrap();
    s.storage
        .complete_multipart_uploaded(&service(), &other.id, 1)
        .await
        .unwrap();
    s.server
        .db
        .sql(
            "update storage.buckets set file_size_limit = 100, allowed_mime_types = '{image/*}' \
             where id = 'mp'",
        )
        .await;
    let parts = [CompletePart {
        part_number: 1,
        etag: None,
    }];

    // Alice's own folder is no longer hers to write, nor to see.
    s.server
        .db
        .sql(
            "alter policy own_insert on storage.objects
                 with check ((storage.foldername(name))[1] = 'nobody');
             alter policy own_read on storage.objects
                 using ((storage.foldername(name))[1] = 'nobody');",
        )
        .await;
    denied(
        s.storage
            .complete_multipart(&alice, &upload.id, &parts)
            .await,
        "an existing key, a refused type and size",
    );
    s.server
        .db
        .sql(
            "alter policy own_read on storage.objects
                 using ((storage.foldername(name))[1] = auth.uid());",
        )
        .await;
    // She may see the key again: it exists (409) though she may not write there.
    assert!(matches!(
        s.storage
            .complete_multipart(&alice, &upload.id, &parts)
            .await,
        Err(Error::AlreadyExists)
    ));
    s.server
        .db
        .sql(
            "alter policy own_insert on storage.objects
                 with check ((storage.foldername(name))[1] = auth.uid());",
        )
        .await;
    s.storage
        .delete_object(&service(), "mp", "alice/late.bin")
        .await
        .unwrap();
    assert!(matches!(
        s.storage
            .complete_multipart(&alice, &upload.id, &parts)
            .await,
        Err(Error::UnsupportedMediaType(_))
    ));
    s.server
        .db
        .sql("update storage.buckets set allowed_mime_types = null where id = 'mp'")
        .await;
    assert!(matches!(
        s.storage
            .complete_multipart(&alice, &upload.id, &parts)
            .await,
        Err(Error::PayloadTooLarge(_))
    ));
    s.server
        .db
        .sql("update storage.buckets set file_size_limit = null where id = 'mp'")
        .await;
    let done = s
        .storage
        .complete_multipart(&alice, &upload.id, &parts)
        .await
        .unwrap();
    assert_eq!(done.size, 200);
}

/// A segmented object is copied like any other: the policies first (a refused caller gets the
/// one 403, over an existing key too), then the destination bucket's size limit and types.
#[tokio::test]
async fn copying_a_segmented_object_asks_the_policies_then_the_destination_bucket() {
    let s = setup(common::test_backend()).await;
    s.server.db.sql(OWN_FOLDER_POLICIES).await;
    upload_parts(
        &s.storage,
        &service(),
        "shared/src.bin",
        &[data(1000, 1), data(99, 2)],
    )
    .await;
    upload_parts(&s.storage, &service(), "alice/there.bin", &[data(5, 3)]).await;
    s.server.create_bucket("small", false).await;
    s.server
        .db
        .sql("update storage.buckets set file_size_limit = 1000 where id = 'small'")
        .await;
    s.server.create_bucket("images", false).await;
    s.server
        .db
        .sql("update storage.buckets set allowed_mime_types = '{image/*}' where id = 'images'")
        .await;
    let copy = |bucket: &str, destination: &str, upsert: bool| CopyRequest {
        bucket: "mp".into(),
        source: "shared/src.bin".into(),
        destination_bucket: bucket.into(),
        destination: destination.into(),
        copy_metadata: true,
        user_metadata: None,
        upsert,
        headers: Default::default(),
    };
    let bob = caller("authenticated", Some("bob"));
    for (what, request) in [
        ("an existing key", copy("mp", "alice/there.bin", false)),
        (
            "an existing key, upsert",
            copy("mp", "alice/there.bin", true),
        ),
        ("a missing key", copy("mp", "alice/new.bin", false)),
        ("over the size limit", copy("small", "alice/new.bin", false)),
        ("a refused type", copy("images", "alice/new.bin", false)),
    ] {
        denied(s.storage.copy_object(&bob, request).await, what);
    }
    assert!(matches!(
        s.storage
            .copy_object(&bob, copy("small", "bob/new.bin", false))
            .await,
        Err(Error::PayloadTooLarge(_))
    ));
    assert!(matches!(
        s.storage
            .copy_object(&bob, copy("images", "bob/new.bin", false))
            .await,
        Err(Error::UnsupportedMediaType(_))
    ));
    let alice = caller("authenticated", Some("alice"));
    assert!(matches!(
        s.storage
            .copy_object(&alice, copy("mp", "alice/there.bin", false))
            .await,
        Err(Error::AlreadyExists)
    ));
    s.storage
        .copy_object(&bob, copy("mp", "bob/copy.bin", false))
        .await
        .unwrap();
    assert_eq!(
        s.server.stored_keys().await,
        3,
        "refused copies left nothing"
    );
}
