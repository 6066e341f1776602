//! What the server writes, only the server changes (DESIGN §5 invariant 8): `owner_id`, `version`
//! and `metadata` cannot be forged from SQL, whatever the policies allow; `user_metadata` can be
//! edited under RLS; rows cannot be inserted or deleted by hand; and a download only ever sends
//! the size the server measured.
//!
//! "From SQL" is an application's own API (PostgREST) on the same database: a login role that
//! switches to `authenticated` like the server does, but is not a member of `pgstorage_server`.

mod common;
mod object_helpers;

use std::time::Duration;

use common::{TestServer, json_of};
use object_helpers::{call, download, upload};
use reqwest::Method;
use tokio_postgres::error::SqlState;

/// A PostgREST-style connection: its own NOINHERIT login role, a member of the API roles only,
/// switched to `authenticated` with alice's claims, as PostgREST does for a request.
struct AppSession {
    client: tokio_postgres::Client,
    role: String,
    server_db: common::TestDb,
}

impl AppSession {
    async fn open(server: &TestServer) -> Self {
        let db = &server.db;
        let role = format!("app_authenticator_{}", &db.name[db.name.len() - 8..]);
        db.sql(&format!(
            "create role {role} login noinherit; grant authenticated, service_role to {role};"
        ))
        .await;
        let mut config = db.admin.clone();
        config.user(&role);
        let client = pgstorage::db::connect(&config).await.unwrap();
        client
            .batch_execute(
                "set role authenticated; \
                 select set_config('request.jwt.claims', '{\"sub\": \"alice\", \"role\": \"authenticated\"}', false), \
                        set_config('request.jwt.claim.sub', 'alice', false)",
            )
            .await
            .unwrap();
        Self {
            client,
            role,
            server_db: db.clone(),
        }
    }

    /// Runs `sql`: the rows it touched, or its SQLSTATE and message.
    async fn run(&self, sql: &str) -> Result<u64, (SqlState, String)> {
        self.client.execute(sql, &[]).await.map_err(|e| {
            let db = e.as_db_error().unwrap_or_else(|| panic!("{sql}: {e:?}"));
            (db.code().clone(), db.message().to_string())
        })
    }

    async fn close(self) {
        drop(self.client);
        let role = self.role;
        self.server_db
            .sql(&format!("drop owned by {role}; drop role {role};"))
            .await;
    }
}

/// A bucket `b` with alice's 10-byte object `a.txt`, uploaded through the server, and policies
/// that let `authenticated` do anything to any object.
async fn fixtures() -> TestServer {
    let server = TestServer::start().await;
    server.create_bucket("b", false).await;
    server
        .db
        .sql(
            "create policy everything on storage.objects for all to authenticated \
                 using (true) with check (true)",
        )
        .await;
    let (status, body) = upload(
        &server,
        &server.user_key("alice"),
        "b",
        "a.txt",
        "0123456789",
        false,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    server
}

async fn column(server: &TestServer, sql: &str) -> Option<String> {
    server
        .db
        .admin_client()
        .await
        .query_one(sql, &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn forged_server_columns_are_refused_with_42501_while_user_metadata_is_writable() {
    let server = fixtures().await;
    let app = AppSession::open(&server).await;
    let before = column(
        &server,
        "select metadata::text from storage.objects where name = 'a.txt'",
    )
    .await;
    for forgery in [
        "update storage.objects set metadata = jsonb_set(metadata, '{size}', '1000000')",
        "update storage.objects set metadata = jsonb_set(metadata, '{size}', '5')",
        "update storage.objects set metadata = jsonb_set(metadata, '{size}', '-1')",
        "update storage.objects set metadata = jsonb_set(metadata, '{size}', '\"abc\"')",
        "update storage.objects set metadata = null",
        "update storage.objects set metadata = jsonb_set(metadata, '{mimetype}', '\"text/html\"')",
        "update storage.objects set owner_id = 'mallory'",
        "update storage.objects set owner_id = null",
        "update storage.objects set version = 'someone-elses-bytes'",
    ] {
        let sql = format!("{forgery} where bucket_id = 'b' and name = 'a.txt'");
        let (code, message) = app.run(&sql).await.expect_err(&sql);
        assert_eq!(code, SqlState::INSUFFICIENT_PRIVILEGE, "{sql}: {message}");
        assert!(message.contains("storage server only"), "{sql}: {message}");
    }
    assert_eq!(
        column(
            &server,
            "select metadata::text from storage.objects where name = 'a.txt'"
        )
        .await,
        before
    );
    assert_eq!(
        column(
            &server,
            "select owner_id from storage.objects where name = 'a.txt'"
        )
        .await
        .as_deref(),
        Some("alice")
    );
    // Not even service_role, which bypasses every policy, may forge them from there.
    app.client
        .batch_execute("set role service_role")
        .await
        .unwrap();
    let sql = "update storage.objects set metadata = jsonb_set(metadata, '{size}', '1') \
               where bucket_id = 'b' and name = 'a.txt'";
    let (code, message) = app.run(sql).await.expect_err(sql);
    assert_eq!(code, SqlState::INSUFFICIENT_PRIVILEGE, "{message}");
    app.client
        .batch_execute("set role authenticated")
        .await
        .unwrap();
    // The client's own metadata stays the client's, and a rename is metadata-only.
    assert_eq!(
        app.run(
            "update storage.objects set user_metadata = '{\"tag\": \"x\"}' \
             where bucket_id = 'b' and name = 'a.txt'"
        )
        .await,
        Ok(1)
    );
    assert_eq!(
        column(
            &server,
            "select user_metadata->>'tag' from storage.objects where name = 'a.txt'"
        )
        .await
        .as_deref(),
        Some("x")
    );
    assert_eq!(
        app.run(
            "update storage.objects set name = 'b.txt' where bucket_id = 'b' and name = 'a.txt'"
        )
        .await,
        Ok(1)
    );
    // The object still downloads whole, as the server measured it.
    let (status, bytes) = download(&server, &server.user_key("alice"), "b", "b.txt").await;
    assert_eq!((status, bytes.as_slice()), (200, &b"0123456789"[..]));
    app.close().await;
}

#[tokio::test]
async fn a_row_inserted_by_hand_is_refused() {
    let server = fixtures().await;
    let app = AppSession::open(&server).await;
    for insert in [
        "insert into storage.objects (bucket_id, name, owner_id) values ('b', 'hand.txt', 'alice')",
        "insert into storage.objects (bucket_id, name, owner_id, version, metadata) \
         select 'b', 'copy.txt', 'alice', version, metadata from storage.objects where name = 'a.txt'",
    ] {
        let (code, message) = app.run(insert).await.expect_err(insert);
        assert_eq!(
            code,
            SqlState::INSUFFICIENT_PRIVILEGE,
            "{insert}: {message}"
        );
        assert!(message.contains("Storage API"), "{insert}: {message}");
    }
    assert_eq!(
        column(&server, "select count(*)::text from storage.objects")
            .await
            .as_deref(),
        Some("1")
    );
    let (status, body) = json_of(
        call(
            &server,
            Method::GET,
            "/object/info/b/hand.txt",
            Some(&server.user_key("alice")),
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, 404, "{body}");
    app.close().await;
}

#[tokio::test]
async fn the_delete_guard_cannot_be_unlocked_by_set_config() {
    let server = fixtures().await;
    let app = AppSession::open(&server).await;
    app.client
        .batch_execute("begin; select set_config('storage.allow_delete', 'true', true)")
        .await
        .unwrap();
    for delete in [
        "delete from storage.objects where bucket_id = 'b'",
        "delete from storage.buckets where id = 'b'",
    ] {
        app.client.batch_execute("savepoint s").await.unwrap();
        let (code, message) = app.run(delete).await.expect_err(delete);
        assert_eq!(
            code,
            SqlState::INSUFFICIENT_PRIVILEGE,
            "{delete}: {message}"
        );
        assert!(message.contains("Storage API"), "{delete}: {message}");
        app.client
            .batch_execute("rollback to savepoint s")
            .await
            .unwrap();
    }
    app.client.batch_execute("commit").await.unwrap();
    let (status, bytes) = download(&server, &server.user_key("alice"), "b", "a.txt").await;
    assert_eq!((status, bytes.as_slice()), (200, &b"0123456789"[..]));
    // The server's own delete still works.
    let (status, body) = json_of(
        call(
            &server,
            Method::DELETE,
            "/object/b/a.txt",
            Some(&server.user_key("alice")),
        )
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    app.close().await;
}

#[tokio::test]
async fn the_server_still_writes_every_column() {
    let server = fixtures().await;
    let alice = server.user_key("alice");
    // Overwrite (new version and metadata), copy (new row), move, delete: all through the API.
    let (status, body) = upload(&server, &alice, "b", "a.txt", "new", true).await;
    assert_eq!(status, 200, "{body}");
    let (status, bytes) = download(&server, &alice, "b", "a.txt").await;
    assert_eq!((status, bytes.as_slice()), (200, &b"new"[..]));
    for (route, body) in [
        (
            "/object/copy",
            r#"{"bucketId":"b","sourceKey":"a.txt","destinationKey":"c.txt"}"#,
        ),
        (
            "/object/move",
            r#"{"bucketId":"b","sourceKey":"c.txt","destinationKey":"d.txt"}"#,
        ),
    ] {
        let (status, answer) = json_of(
            call(&server, Method::POST, route, Some(&alice))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 200, "{route}: {answer}");
    }
    let (status, bytes) = download(&server, &alice, "b", "d.txt").await;
    assert_eq!((status, bytes.as_slice()), (200, &b"new"[..]));
}

/// A size the server did not measure never reaches a client: the download fails cleanly instead
/// of hanging, truncating or answering an empty 200. (Only a superuser can still write such a
/// row; the trigger refuses everyone else.)
#[tokio::test]
async fn a_damaged_size_fails_the_download_cleanly() {
    let server = fixtures().await;
    let alice = server.user_key("alice");
    let get = || {
        call(
            &server,
            Method::GET,
            "/object/authenticated/b/a.txt",
            Some(&alice),
        )
        .timeout(Duration::from_secs(10))
    };
    for damaged in ["null", "\"abc\"", "-1", "1.5"] {
        server
            .db
            .sql(&format!(
                "update storage.objects set metadata = jsonb_set(metadata, '{{size}}', '{damaged}') \
                 where name = 'a.txt'"
            ))
            .await;
        let response = get().send().await.unwrap();
        assert_eq!(response.status(), 500, "size {damaged}");
        let head = call(
            &server,
            Method::HEAD,
            "/object/authenticated/b/a.txt",
            Some(&alice),
        )
        .send()
        .await
        .unwrap();
        assert_eq!(head.status(), 500, "HEAD with size {damaged}");
    }
    for wrong in ["1000000", "5"] {
        server
            .db
            .sql(&format!(
                "update storage.objects set metadata = jsonb_set(metadata, '{{size}}', '{wrong}') \
                 where name = 'a.txt'"
            ))
            .await;
        let started = std::time::Instant::now();
        let outcome = match get().send().await {
            Ok(response) => response.bytes().await.map(|b| b.to_vec()),
            Err(error) => Err(error),
        };
        match outcome {
            Ok(bytes) => panic!(
                "size {wrong}: a complete-looking body of {} bytes",
                bytes.len()
            ),
            Err(error) => assert!(!error.is_timeout(), "size {wrong}: the download hung"),
        }
        assert!(started.elapsed() < Duration::from_secs(5), "size {wrong}");
    }
}
