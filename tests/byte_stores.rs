//! The byte-store conformance suite: the same cases against every store, one test per case and
//! store (`fs::round_trips`, `s3::round_trips`, `postgres::round_trips`, ...), each on a fresh
//! store (a directory, a bucket on the harness's moto server, a database).

mod common;

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::TestStore;
use futures::StreamExt;
use pgstorage::bytes::{ByteRange, ByteStore, ByteStream, StoreError, new_key};
use pgstorage::config::Backend;

const MIB: usize = 1024 * 1024;

/// Deterministic pseudo-random bytes (xorshift), different for every seed.
fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// `bytes` as a stream of `chunk`-sized pieces.
fn body(bytes: &[u8], chunk: usize) -> ByteStream {
    let chunks: Vec<io::Result<Bytes>> = bytes
        .chunks(chunk.max(1))
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    futures::stream::iter(chunks).boxed()
}

/// `good` bytes in 1 MiB pieces, then an error, as when a client disconnects.
fn failing_body(good: usize) -> ByteStream {
    let bytes = data(good, 99);
    let mut chunks: Vec<io::Result<Bytes>> = bytes
        .chunks(MIB)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    chunks.push(Err(io::Error::new(
        io::ErrorKind::ConnectionReset,
        "the client went away",
    )));
    futures::stream::iter(chunks).boxed()
}

async fn read(store: &dyn ByteStore, key: &str, range: Option<ByteRange>) -> Vec<u8> {
    let mut stream = store.get(key, range).await.expect("get");
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk.expect("reading a stored body"));
    }
    out
}

/// The two ways to write: `put` (atomic), and `put_staged` (for a key staged in the journal,
/// which a store may write in place).
#[derive(Debug, Clone, Copy)]
enum Write {
    Put,
    Staged,
}

async fn write(
    store: &dyn ByteStore,
    how: Write,
    key: &str,
    body: ByteStream,
) -> Result<u64, StoreError> {
    match how {
        Write::Put => store.put(key, body).await,
        Write::Staged => store.put_staged(key, body).await,
    }
}

fn is_not_found<T>(result: &Result<T, StoreError>) -> bool {
    matches!(result, Err(StoreError::NotFound(_)))
}

/// The cases, each against any store.
mod cases {
    use super::*;

    /// Bodies of every interesting size come back byte for byte: empty, one byte, just over
    /// one 8 MiB part (a multipart upload on S3 with a 1-byte last part), 20 MiB in odd pieces.
    pub async fn round_trips(store: &dyn ByteStore, how: Write) {
        for (len, chunk) in [
            (0, 1),
            (1, 1),
            (5 * MIB + 3, 64 * 1024),
            (8 * MIB + 1, MIB),
            (20 * MIB, MIB + 7),
        ] {
            let key = new_key();
            let bytes = data(len, len as u64);
            let written = write(store, how, &key, body(&bytes, chunk))
                .await
                .expect("put");
            assert_eq!(written, len as u64, "bytes counted for {len}");
            let back = read(store, &key, None).await;
            assert_eq!(back.len(), len);
            assert!(back == bytes, "a {len}-byte body came back changed");
        }
    }

    /// Ranges at the start, in the middle, at the end, one byte, and across a part boundary.
    pub async fn ranged_reads(store: &dyn ByteStore) {
        let key = new_key();
        let bytes = data(9 * MIB, 3);
        store.put(&key, body(&bytes, MIB)).await.unwrap();
        let last = bytes.len() as u64 - 1;
        let boundary = 8 * MIB as u64;
        for (start, end) in [
            (0, 9),
            (1000, 70_000),
            (last - 9, last),
            (12_345, 12_345),
            (last, last),
            (boundary - 100, boundary + 100),
            (0, last),
        ] {
            let got = read(store, &key, Some(ByteRange { start, end })).await;
            assert!(
                got == bytes[start as usize..=end as usize],
                "range {start}-{end}"
            );
        }
    }

    /// A copy is independent of its source: deleting the source leaves the copy whole.
    pub async fn copies_survive_their_source(store: &dyn ByteStore) {
        let (from, to) = (new_key(), new_key());
        let bytes = data(300 * 1024, 5);
        store.put(&from, body(&bytes, 4096)).await.unwrap();
        store.copy(&from, &to).await.expect("copy");
        store.delete(&from).await.unwrap();
        assert!(is_not_found(&store.get(&from, None).await));
        assert!(read(store, &to, None).await == bytes);
        assert!(is_not_found(&store.copy(&new_key(), &new_key()).await));
    }

    /// Deleting twice, or a key never written, succeeds (deletes are retried).
    pub async fn deletes_are_idempotent(store: &dyn ByteStore) {
        let key = new_key();
        store.put(&key, body(b"bytes", 2)).await.unwrap();
        store.delete(&key).await.unwrap();
        store.delete(&key).await.unwrap();
        store.delete(&new_key()).await.unwrap();
        assert!(is_not_found(&store.get(&key, None).await));
    }

    /// The collector's batched delete: existing and missing keys alike end up deleted, with one
    /// result per key.
    pub async fn batched_deletes(store: &dyn ByteStore) {
        let mut keys = Vec::new();
        for i in 0..5 {
            let key = new_key();
            store.put(&key, body(&data(100, i), 10)).await.unwrap();
            keys.push(key);
        }
        keys.push(new_key());
        let results = store.delete_many(&keys).await;
        assert_eq!(results.len(), keys.len());
        for (key, result) in keys.iter().zip(results) {
            assert!(result.is_ok(), "{key}: {result:?}");
            assert!(is_not_found(&store.get(key, None).await));
        }
        assert!(store.delete_many(&[]).await.is_empty());
    }

    pub async fn missing_keys_are_not_found(store: &dyn ByteStore) {
        let key = new_key();
        assert!(is_not_found(&store.get(&key, None).await));
        assert!(is_not_found(
            &store.get(&key, Some(ByteRange { start: 0, end: 0 })).await
        ));
    }

    /// A body that fails half-way is a body error, and nothing of it stays: no key, no
    /// temporary file, no open multipart upload. Before the first part is full, and after.
    pub async fn failed_bodies_leave_nothing(
        store: &dyn ByteStore,
        inspect: &TestStore,
        how: Write,
    ) {
        for good in [MIB + 5, 12 * MIB] {
            let key = new_key();
            let result = write(store, how, &key, failing_body(good)).await;
            assert!(
                matches!(result, Err(StoreError::Body(_))),
                "after {good} bytes: {result:?}"
            );
            assert!(is_not_found(&store.get(&key, None).await));
            assert_eq!(inspect.stored_keys().await, 0);
            assert_eq!(inspect.partial_writes().await, 0, "after {good} bytes");
        }
    }

    /// Empty chunks carry nothing: the metered upload stream yields one once the body's last
    /// byte has passed and before its digests are checked (`core::meter::END_OF_DATA`), which
    /// the fs store takes as its cue to flush. The bytes come back intact, and a body that still
    /// fails after that announcement (a digest that did not match) leaves nothing.
    pub async fn empty_chunks_carry_nothing(
        store: &dyn ByteStore,
        inspect: &TestStore,
        how: Write,
    ) {
        let bytes = data(3 * MIB + 5, 7);
        let pieces = |bytes: &[u8]| -> Vec<io::Result<Bytes>> {
            let mut pieces: Vec<io::Result<Bytes>> = vec![Ok(Bytes::new())];
            for chunk in bytes.chunks(MIB) {
                pieces.push(Ok(Bytes::copy_from_slice(chunk)));
                pieces.push(Ok(Bytes::new()));
            }
            pieces
        };
        let key = new_key();
        let stream = futures::stream::iter(pieces(&bytes)).boxed();
        let written = write(store, how, &key, stream).await.expect("put");
        assert_eq!(written, bytes.len() as u64);
        assert!(
            read(store, &key, None).await == bytes,
            "the body came back changed"
        );

        let key = new_key();
        let mut failing = pieces(&bytes);
        failing.push(Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the body's MD5 did not match the one given",
        )));
        let result = write(store, how, &key, futures::stream::iter(failing).boxed()).await;
        assert!(matches!(result, Err(StoreError::Body(_))), "{result:?}");
        assert!(is_not_found(&store.get(&key, None).await));
        assert_eq!(
            inspect.stored_keys().await,
            1,
            "only the first body is stored"
        );
        assert_eq!(inspect.partial_writes().await, 0);
    }

    /// A write dropped half-way (the request was cancelled) leaves nothing either, once its
    /// clean-up has run. (A staged write may be in place: then its partial bytes are under the
    /// key until then.)
    pub async fn abandoned_writes_leave_nothing(
        store: &dyn ByteStore,
        inspect: &TestStore,
        how: Write,
    ) {
        let key = new_key();
        let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(2);
        let stream: ByteStream =
            futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) })
                .boxed();
        let write = write(store, how, &key, stream);
        let feed = async {
            for i in 0..10 {
                tx.send(Ok(Bytes::from(data(MIB, i)))).await.unwrap();
            }
            // Wait until the write has started storing (a temporary file, an open upload).
            let deadline = Instant::now() + Duration::from_secs(30);
            while inspect.partial_writes().await + inspect.stored_keys().await == 0 {
                assert!(Instant::now() < deadline, "the write never started");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        tokio::select! {
            result = write => panic!("the write ended on its own: {result:?}"),
            () = feed => {}
        }
        // Generous: under load, a single-process S3 emulator answers slowly.
        let deadline = Instant::now() + Duration::from_secs(30);
        while inspect.partial_writes().await + inspect.stored_keys().await > 0 {
            assert!(
                Instant::now() < deadline,
                "an abandoned write stayed behind"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(is_not_found(&store.get(&key, None).await));
        assert_eq!(inspect.stored_keys().await, 0);
    }

    /// Keys that are not plain text never reach a path or an object name.
    pub async fn keys_never_escape(store: &dyn ByteStore, inspect: &TestStore) {
        for key in [
            "",
            "short",
            "../../../../etc/passwd",
            "aaaaaaaa/../../bbbbbbbb",
            "aaaaaaaa/bbbbbbbb",
            "aaaaaaaa%2F..%2Fbb",
            "aaaaaaaa bbbbbbbb",
            "aaaaaaaa\0bbbbbbbb",
            "aaaaaaaa.bbbbbbbb",
        ] {
            assert!(
                store.put(key, body(b"x", 1)).await.is_err(),
                "{key:?} was accepted"
            );
            assert!(is_not_found(&store.get(key, None).await), "{key:?}");
            assert!(store.copy(key, &new_key()).await.is_err(), "{key:?}");
        }
        assert_eq!(inspect.stored_keys().await, 0);
        assert_eq!(inspect.partial_writes().await, 0);
    }
}

/// One test per case for a store.
macro_rules! conformance {
    ($module:ident, $backend:expr) => {
        mod $module {
            use super::*;

            /// The store, a handle to inspect it, and (postgres) the database that holds it,
            /// which is dropped with the last handle.
            async fn store() -> (Arc<dyn ByteStore>, TestStore, Option<common::TestDb>) {
                // `<tag>-<unix time>-...`, so the harness can tell stale buckets.
                let name = format!(
                    "bs-{}-{}-{}",
                    common::unix_now(),
                    stringify!($module),
                    uuid::Uuid::new_v4().simple()
                );
                // The postgres store lives in a database of its own.
                let db = if $backend == Backend::Postgres {
                    Some(common::TestDb::new().await)
                } else {
                    None
                };
                let name = db.as_ref().map_or(name, |db| db.name.clone());
                let inspect = TestStore::new($backend, &name).await;
                (inspect.open().await, inspect, db)
            }

            #[tokio::test]
            async fn round_trips() {
                cases::round_trips(&*store().await.0, Write::Put).await;
            }

            #[tokio::test]
            async fn staged_round_trips() {
                cases::round_trips(&*store().await.0, Write::Staged).await;
            }

            #[tokio::test]
            async fn ranged_reads() {
                cases::ranged_reads(&*store().await.0).await;
            }

            #[tokio::test]
            async fn copies_survive_their_source() {
                cases::copies_survive_their_source(&*store().await.0).await;
            }

            #[tokio::test]
            async fn deletes_are_idempotent() {
                cases::deletes_are_idempotent(&*store().await.0).await;
            }

            #[tokio::test]
            async fn batched_deletes() {
                cases::batched_deletes(&*store().await.0).await;
            }

            #[tokio::test]
            async fn missing_keys_are_not_found() {
                cases::missing_keys_are_not_found(&*store().await.0).await;
            }

            #[tokio::test]
            async fn failed_bodies_leave_nothing() {
                let (store, inspect, _db) = store().await;
                cases::failed_bodies_leave_nothing(&*store, &inspect, Write::Put).await;
            }

            #[tokio::test]
            async fn staged_failed_bodies_leave_nothing() {
                let (store, inspect, _db) = store().await;
                cases::failed_bodies_leave_nothing(&*store, &inspect, Write::Staged).await;
            }

            #[tokio::test]
            async fn empty_chunks_carry_nothing() {
                let (store, inspect, _db) = store().await;
                cases::empty_chunks_carry_nothing(&*store, &inspect, Write::Put).await;
            }

            #[tokio::test]
            async fn staged_empty_chunks_carry_nothing() {
                let (store, inspect, _db) = store().await;
                cases::empty_chunks_carry_nothing(&*store, &inspect, Write::Staged).await;
            }

            #[tokio::test]
            async fn abandoned_writes_leave_nothing() {
                let (store, inspect, _db) = store().await;
                cases::abandoned_writes_leave_nothing(&*store, &inspect, Write::Put).await;
            }

            #[tokio::test]
            async fn staged_abandoned_writes_leave_nothing() {
                let (store, inspect, _db) = store().await;
                cases::abandoned_writes_leave_nothing(&*store, &inspect, Write::Staged).await;
            }

            #[tokio::test]
            async fn keys_never_escape() {
                let (store, inspect, _db) = store().await;
                cases::keys_never_escape(&*store, &inspect).await;
            }
        }
    };
}

conformance!(fs, Backend::Fs);
conformance!(s3, Backend::S3);
conformance!(postgres, Backend::Postgres);

/// Bytes on disk are private to the server's user: every directory the fs store makes is 0700
/// and every file 0600, so no other local account reads objects around the policies. A root
/// left readable by an older version is closed when the store opens.
#[tokio::test]
async fn fs_bytes_are_private() {
    use std::os::unix::fs::PermissionsExt;

    let root = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("stores")
        .join(format!("private-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(root.join("objects")).unwrap();
    for dir in [&root, &root.join("objects")] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;

    let store = pgstorage::bytes::FsStore::open(&root).await.unwrap();
    let key = new_key();
    store.put(&key, body(b"secret", 3)).await.unwrap();
    let copy = new_key();
    store.copy(&key, &copy).await.unwrap();
    let staged = new_key();
    store.put_staged(&staged, body(b"part", 3)).await.unwrap();

    let file = root
        .join("objects")
        .join(&key[0..2])
        .join(&key[2..4])
        .join(&key);
    let mut dirs = vec![root.clone(), root.join("objects"), root.join("tmp")];
    for ancestor in file.ancestors().skip(1).take(2) {
        dirs.push(ancestor.to_path_buf());
    }
    let copied = root.join("objects").join(&copy[0..2]).join(&copy[2..4]);
    dirs.push(copied.clone());
    let staged_dir = root.join("objects").join(&staged[0..2]).join(&staged[2..4]);
    dirs.push(staged_dir.clone());
    dirs.push(root.join("objects").join(&staged[0..2]));
    for dir in &dirs {
        assert_eq!(mode(dir), 0o700, "{} is not private", dir.display());
    }
    for file in [file, copied.join(&copy), staged_dir.join(&staged)] {
        assert_eq!(mode(&file), 0o600, "{} is not private", file.display());
    }
    let _ = std::fs::remove_dir_all(&root);
}
