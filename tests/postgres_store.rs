//! The `postgres` byte store: bytes commit (or vanish) in the same transaction as their row.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{TestDb, caller};
use futures::StreamExt;
use pgstorage::bytes::postgres::CHUNK_SIZE;
use pgstorage::bytes::{ByteRange, ByteStream, PgStore};
use pgstorage::core::objects::{CopyRequest, Upload};
use pgstorage::core::{Caller, Error, Limits, Operation, Storage};

fn body_of(data: &[u8]) -> ByteStream {
    // Uneven pieces, so chunk boundaries never line up with the client's writes.
    let pieces: Vec<std::io::Result<Bytes>> = data
        .chunks(300_001)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    futures::stream::iter(pieces).boxed()
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

async fn setup(limit: u64) -> (TestDb, Storage) {
    let db = TestDb::new().await;
    db.sql("insert into storage.buckets (id, name) values ('b', 'b')")
        .await;
    let storage = Storage::new(
        db.database(4),
        Arc::new(PgStore::new(db.database(4))),
        Limits {
            max_file_size: limit,
            upload_lease: Duration::from_secs(60),
            ..Limits::default()
        },
    );
    (db, storage)
}

fn upload(name: &str, body: ByteStream, upsert: bool) -> Upload {
    Upload {
        bucket: "b".into(),
        name: name.into(),
        body,
        declared_length: None,
        content_type: None,
        cache_control: None,
        user_metadata: None,
        upsert,
        owner: None,
        headers: Default::default(),
    }
}

async fn read_all(
    storage: &Storage,
    who: &Caller,
    name: &str,
    range: Option<ByteRange>,
) -> Vec<u8> {
    let row = storage
        .object(who, Operation::Download, "b", name)
        .await
        .unwrap();
    let mut stream = storage.read(&row, range).await.unwrap();
    let mut out = Vec::new();
    while let Some(piece) = stream.next().await {
        out.extend_from_slice(&piece.unwrap());
    }
    out
}

async fn count(db: &TestDb, sql: &str) -> i64 {
    db.admin_client()
        .await
        .query_one(sql, &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn bytes_and_row_commit_together_and_read_back_in_ranges() {
    let (db, storage) = setup(1 << 30).await;
    let service = caller("service_role", None);
    let data = pattern(2 * CHUNK_SIZE + CHUNK_SIZE / 2);
    storage
        .upload(&service, upload("big.bin", body_of(&data), false))
        .await
        .unwrap();
    assert_eq!(
        count(&db, "select count(*) from storage.byte_chunks").await,
        3
    );
    assert_eq!(
        count(&db, "select count(*) from storage.byte_journal").await,
        0,
        "nothing staged survives the commit"
    );
    assert_eq!(read_all(&storage, &service, "big.bin", None).await, data);
    // A range across a chunk boundary touches only the chunks it needs and returns exactly it.
    let range = ByteRange {
        start: CHUNK_SIZE as u64 - 10,
        end: CHUNK_SIZE as u64 + 9,
    };
    assert_eq!(
        read_all(&storage, &service, "big.bin", Some(range)).await,
        data[CHUNK_SIZE - 10..CHUNK_SIZE + 10]
    );
    let last = ByteRange {
        start: data.len() as u64 - 1,
        end: data.len() as u64 - 1,
    };
    assert_eq!(
        read_all(&storage, &service, "big.bin", Some(last)).await,
        [data[data.len() - 1]]
    );
    // An empty object has bytes too (one empty chunk).
    storage
        .upload(&service, upload("empty", body_of(&[]), false))
        .await
        .unwrap();
    assert!(read_all(&storage, &service, "empty", None).await.is_empty());
}

#[tokio::test]
async fn a_failed_or_abandoned_upload_leaves_nothing() {
    let (db, storage) = setup(3 * CHUNK_SIZE as u64).await;
    let service = caller("service_role", None);
    // The client breaks off after two chunks.
    let broken: ByteStream = futures::stream::iter(vec![
        Ok(Bytes::from(pattern(CHUNK_SIZE))),
        Ok(Bytes::from(pattern(CHUNK_SIZE))),
        Err(std::io::Error::other("connection reset")),
    ])
    .boxed();
    let error = storage
        .upload(&service, upload("x", broken, false))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::InvalidInput(_)), "{error:?}");
    // Over the size limit, found while streaming.
    let error = storage
        .upload(
            &service,
            upload("x", body_of(&pattern(4 * CHUNK_SIZE)), false),
        )
        .await
        .unwrap_err();
    assert!(matches!(error, Error::PayloadTooLarge(_)), "{error:?}");
    // Dropped mid-stream (the request future is cancelled) with chunks already written.
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(1);
    let stream =
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) })
            .boxed();
    let pending = storage.upload(&service, upload("y", stream, false));
    let feed = async {
        for _ in 0..2 {
            tx.send(Ok(Bytes::from(pattern(CHUNK_SIZE)))).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    tokio::select! {
        _ = pending => panic!("the upload cannot finish without the rest of its body"),
        () = feed => {}
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(count(&db, "select count(*) from storage.objects").await, 0);
    assert_eq!(
        count(&db, "select count(*) from storage.byte_chunks").await,
        0
    );
    assert_eq!(
        count(&db, "select count(*) from storage.byte_journal").await,
        0
    );
}

#[tokio::test]
async fn a_denied_upload_writes_no_chunk() {
    let (db, storage) = setup(1 << 30).await;
    let error = storage
        .upload(
            &caller("authenticated", Some("u1")),
            upload("u2/x", body_of(&pattern(10)), false),
        )
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Forbidden(_)), "{error:?}");
    assert_eq!(
        count(&db, "select count(*) from storage.byte_chunks").await,
        0
    );
}

#[tokio::test]
async fn delete_removes_chunks_in_the_same_transaction_and_overwrite_releases_the_old_ones() {
    let (db, storage) = setup(1 << 30).await;
    let service = caller("service_role", None);
    storage
        .upload(&service, upload("a", body_of(&pattern(100)), false))
        .await
        .unwrap();
    storage
        .upload(&service, upload("a", body_of(&pattern(200)), true))
        .await
        .unwrap();
    assert_eq!(read_all(&storage, &service, "a", None).await, pattern(200));
    // The old version's chunks wait for the grace period (readers may still stream them).
    assert_eq!(
        count(&db, "select count(*) from storage.byte_chunks").await,
        2
    );
    assert_eq!(
        count(
            &db,
            "select count(*) from storage.byte_journal where state = 'released'"
        )
        .await,
        1
    );
    let report = storage.collect_garbage(Duration::ZERO).await.unwrap();
    assert_eq!(report.freed, 1);
    assert_eq!(
        count(&db, "select count(*) from storage.byte_chunks").await,
        1
    );

    storage.delete_object(&service, "b", "a").await.unwrap();
    assert_eq!(
        count(&db, "select count(*) from storage.byte_chunks").await,
        0,
        "gone with the row"
    );
    assert_eq!(
        count(&db, "select count(*) from storage.byte_journal").await,
        0
    );
}

#[tokio::test]
async fn copies_have_their_own_chunks() {
    let (db, storage) = setup(1 << 30).await;
    let service = caller("service_role", None);
    let data = pattern(CHUNK_SIZE + 7);
    storage
        .upload(&service, upload("src", body_of(&data), false))
        .await
        .unwrap();
    storage
        .copy_object(
            &service,
            CopyRequest {
                bucket: "b".into(),
                source: "src".into(),
                destination_bucket: "b".into(),
                destination: "dst".into(),
                copy_metadata: true,
                user_metadata: None,
                upsert: false,
                headers: Default::default(),
            },
        )
        .await
        .unwrap();
    storage.delete_object(&service, "b", "src").await.unwrap();
    assert_eq!(read_all(&storage, &service, "dst", None).await, data);
    assert_eq!(
        count(&db, "select count(*) from storage.byte_chunks").await,
        2
    );
}

#[tokio::test]
async fn api_roles_cannot_write_bytes_outside_the_server() {
    // An application's own API (PostgREST) logs in as another role and switches to the same
    // API roles: it must not reach the chunk table or the server-only functions.
    let (db, _storage) = setup(1 << 30).await;
    let name = format!("app_authenticator_{}", &db.name[db.name.len() - 8..]);
    db.sql(&format!(
        "create role {name} login noinherit; grant authenticated to {name};"
    ))
    .await;
    let mut config = db.admin.clone();
    config.user(&name);
    let app = pgstorage::db::connect(&config).await.unwrap();
    app.batch_execute("set role authenticated").await.unwrap();
    for sql in [
        "select storage.write_chunk('k', 0, '\\x00')",
        "select storage.stage_key('k', 60)",
        "insert into storage.byte_chunks values ('k', 0, '\\x00')",
        "insert into storage.byte_journal (key, state, lease_until) values ('k', 'staged', now())",
    ] {
        let error = app.batch_execute(sql).await.unwrap_err();
        assert_eq!(
            error.code(),
            Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
            "{sql}: {error:?}"
        );
    }
    db.sql(&format!("drop owned by {name}; drop role {name};"))
        .await;
}
