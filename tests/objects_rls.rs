//! Every object route through Row Level Security, allowed and denied: anon without policies,
//! users under owner-folder policies, service_role, the public route, and policies that read
//! `storage.operation()`.

mod common;
mod object_helpers;

use common::{TestServer, json_of};
use object_helpers::{
    call, download, enc, journal, names, random_bytes, raw_request, row, stored_files, upload,
};
use reqwest::Method;
use serde_json::{Value, json};

/// The owner-folder policy set: a user may do anything under `<their sub>/...`.
const OWNER_FOLDER: &str = "
    create policy own_read on storage.objects for select to authenticated
        using ((storage.foldername(name))[1] = auth.uid());
    create policy own_insert on storage.objects for insert to authenticated
        with check ((storage.foldername(name))[1] = auth.uid());
    create policy own_update on storage.objects for update to authenticated
        using ((storage.foldername(name))[1] = auth.uid())
        with check ((storage.foldername(name))[1] = auth.uid());
    create policy own_delete on storage.objects for delete to authenticated
        using ((storage.foldername(name))[1] = auth.uid());
";

/// The seed's public read policy, verbatim and alone. Its `exists (select ... from
/// storage.buckets)` runs as the caller, under the buckets' own RLS; the shipped policy
/// `public_buckets_are_visible` (migration 0011) lets anon see the public buckets, so the
/// subquery finds them.
const OBJECTS_PUBLIC_READ: &str = "
    CREATE POLICY objects_public_read ON storage.objects
    FOR SELECT TO anon, authenticated
    USING (
    EXISTS (
    SELECT 1 FROM storage.buckets b
    WHERE b.id = storage.objects.bucket_id AND b.public
    )
    );
";

fn assert_status(status: u16, body: &Value, want: u16, code: &str) {
    assert_eq!(status, want, "{body}");
    assert_eq!(body["code"], code, "{body}");
}

async fn get(server: &TestServer, key: Option<&str>, path: &str) -> (u16, Value) {
    json_of(call(server, Method::GET, path, key).send().await.unwrap()).await
}

async fn head(server: &TestServer, key: Option<&str>, path: &str) -> u16 {
    call(server, Method::HEAD, path, key)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn delete(server: &TestServer, key: Option<&str>, path: &str) -> (u16, Value) {
    json_of(
        call(server, Method::DELETE, path, key)
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// Bulk delete; returns the status and the names deleted.
async fn delete_many(
    server: &TestServer,
    key: Option<&str>,
    bucket: &str,
    names: &[&str],
) -> (u16, Vec<String>) {
    let (status, body) = json_of(
        call(server, Method::DELETE, &format!("/object/{bucket}"), key)
            .json(&json!({ "prefixes": names }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let mut deleted: Vec<String> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect();
    deleted.sort();
    (status, deleted)
}

async fn move_object(
    server: &TestServer,
    key: Option<&str>,
    bucket: &str,
    from: &str,
    to: &str,
) -> (u16, Value) {
    json_of(
        call(server, Method::POST, "/object/move", key)
            .json(&json!({"bucketId": bucket, "sourceKey": from, "destinationKey": to}))
            .send()
            .await
            .unwrap(),
    )
    .await
}

async fn copy_object(
    server: &TestServer,
    key: Option<&str>,
    bucket: &str,
    from: &str,
    to: &str,
    upsert: bool,
) -> (u16, Value) {
    let mut request = call(server, Method::POST, "/object/copy", key)
        .json(&json!({"bucketId": bucket, "sourceKey": from, "destinationKey": to}));
    if upsert {
        request = request.header("x-upsert", "true");
    }
    json_of(request.send().await.unwrap()).await
}

/// A raw upload with an optional key (None: no credentials at all).
async fn upload_as(
    server: &TestServer,
    key: Option<&str>,
    bucket: &str,
    name: &str,
    body: &'static str,
    upsert: bool,
) -> (u16, Value) {
    match key {
        Some(key) => upload(server, key, bucket, name, body, upsert).await,
        None => {
            json_of(
                call(
                    server,
                    Method::POST,
                    &format!("/object/{bucket}/{}", enc(name)),
                    None,
                )
                .body(body)
                .send()
                .await
                .unwrap(),
            )
            .await
        }
    }
}

// ---------------------------------------------------------------------------------------------
// anon, no policy
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn without_a_policy_anon_can_neither_write_nor_see_objects() {
    let server = TestServer::start().await;
    server.create_bucket("docs", false).await;
    let service = server.service_key();
    upload(&server, &service, "docs", "a.txt", "secret", false).await;
    let files = stored_files(&server).await;
    let anon = server.anon_key();

    // With the anon key, and with no credentials at all: the same answers.
    for key in [Some(anon.as_str()), None] {
        let (status, body) = upload_as(&server, key, "docs", "new.txt", "x", false).await;
        assert_status(status, &body, 403, "AccessDenied");
        assert_eq!(
            stored_files(&server).await,
            files,
            "no bytes for a denied upload"
        );
        assert!(journal(&server).await.is_empty());

        let (status, body) = get(&server, key, "/object/authenticated/docs/a.txt").await;
        assert_status(status, &body, 404, "NoSuchKey");
        let (status, body) = get(&server, key, "/object/docs/a.txt").await;
        assert_status(status, &body, 404, "NoSuchKey");
        let (status, body) = get(&server, key, "/object/info/docs/a.txt").await;
        assert_status(status, &body, 404, "NoSuchKey");
        assert_eq!(head(&server, key, "/object/docs/a.txt").await, 404);

        let (status, body) = delete(&server, key, "/object/docs/a.txt").await;
        assert_status(status, &body, 404, "NoSuchKey");
        let (_, deleted) = delete_many(&server, key, "docs", &["a.txt"]).await;
        assert!(deleted.is_empty(), "{deleted:?}");

        let (status, body) = move_object(&server, key, "docs", "a.txt", "b.txt").await;
        assert_status(status, &body, 404, "NoSuchKey");
        let (status, body) = copy_object(&server, key, "docs", "a.txt", "b.txt", false).await;
        assert_status(status, &body, 404, "NoSuchKey");
    }

    assert_eq!(names(&server, "docs").await, ["a.txt"]);
    assert_eq!(
        download(&server, &service, "docs", "a.txt").await.1,
        b"secret"
    );
    assert_eq!(stored_files(&server).await, files);
    assert!(journal(&server).await.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Owner-folder policies
// ---------------------------------------------------------------------------------------------

async fn owner_folder_server() -> TestServer {
    let server = TestServer::start().await;
    server.create_bucket("docs", false).await;
    server.db.sql(OWNER_FOLDER).await;
    server
}

#[tokio::test]
async fn a_user_works_freely_in_their_own_folder() {
    let server = owner_folder_server().await;
    let u1 = server.user_key("u1");
    let me = Some(u1.as_str());

    let (status, body) = upload(&server, &u1, "docs", "u1/a.txt", "one", false).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        row(&server, "docs", "u1/a.txt")
            .await
            .unwrap()
            .owner_id
            .as_deref(),
        Some("u1")
    );
    let (status, body) = upload(&server, &u1, "docs", "u1/a.txt", "two", true).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = json_of(
        call(&server, Method::PUT, "/object/docs/u1/a.txt", me)
            .body("three")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        download(&server, &u1, "docs", "u1/a.txt").await,
        (200, b"three".to_vec())
    );
    let (status, body) = get(&server, me, "/object/info/docs/u1/a.txt").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        head(&server, me, "/object/authenticated/docs/u1/a.txt").await,
        200
    );

    let (status, body) = move_object(&server, me, "docs", "u1/a.txt", "u1/sub/b.txt").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = copy_object(&server, me, "docs", "u1/sub/b.txt", "u1/c.txt", false).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["Key"], "docs/u1/c.txt");
    assert_eq!(download(&server, &u1, "docs", "u1/c.txt").await.1, b"three");

    let (status, body) = delete(&server, me, "/object/docs/u1/c.txt").await;
    assert_eq!(status, 200, "{body}");
    let (_, deleted) = delete_many(&server, me, "docs", &["u1/sub/b.txt"]).await;
    assert_eq!(deleted, ["u1/sub/b.txt"]);
    assert!(names(&server, "docs").await.is_empty());
}

#[tokio::test]
async fn a_user_cannot_touch_another_users_folder() {
    let server = owner_folder_server().await;
    let service = server.service_key();
    let u1 = server.user_key("u1");
    let me = Some(u1.as_str());
    upload(&server, &service, "docs", "u2/b.txt", "u2's", false).await;
    upload(&server, &u1, "docs", "u1/a.txt", "u1's", false).await;
    let files = stored_files(&server).await;
    assert_eq!(files, 2);

    // Refused before any byte is written.
    let (status, body) = upload(&server, &u1, "docs", "u2/x.txt", "intruder", false).await;
    assert_status(status, &body, 403, "AccessDenied");
    assert_eq!(stored_files(&server).await, files);
    assert!(journal(&server).await.is_empty());
    // An overwrite of a row the user cannot see is refused too.
    let (status, body) = upload(&server, &u1, "docs", "u2/b.txt", "intruder", true).await;
    assert_status(status, &body, 403, "AccessDenied");
    assert_eq!(stored_files(&server).await, files);
    assert!(journal(&server).await.is_empty());

    let (status, body) = get(&server, me, "/object/authenticated/docs/u2/b.txt").await;
    assert_status(status, &body, 404, "NoSuchKey");
    let (status, body) = get(&server, me, "/object/info/docs/u2/b.txt").await;
    assert_status(status, &body, 404, "NoSuchKey");
    let (status, body) = delete(&server, me, "/object/docs/u2/b.txt").await;
    assert_status(status, &body, 404, "NoSuchKey");
    let (status, body) = move_object(&server, me, "docs", "u2/b.txt", "u1/b.txt").await;
    assert_status(status, &body, 404, "NoSuchKey");
    let (status, body) = copy_object(&server, me, "docs", "u2/b.txt", "u1/b.txt", false).await;
    assert_status(status, &body, 404, "NoSuchKey");

    // Moving out of one's own folder: the UPDATE sees u1/a.txt (USING passes), but the new
    // row fails WITH CHECK, and PostgreSQL raises an error for that instead of skipping the
    // row, so the answer is 403, not 404.
    let (status, body) = move_object(&server, me, "docs", "u1/a.txt", "u2/a.txt").await;
    assert_status(status, &body, 403, "AccessDenied");
    // Copying into u2's folder fails the INSERT probe: 403, before any byte is copied.
    let (status, body) = copy_object(&server, me, "docs", "u1/a.txt", "u2/a.txt", false).await;
    assert_status(status, &body, 403, "AccessDenied");
    assert_eq!(stored_files(&server).await, files);
    assert!(journal(&server).await.is_empty());

    let (_, deleted) = delete_many(&server, me, "docs", &["u1/a.txt", "u2/b.txt"]).await;
    assert_eq!(deleted, ["u1/a.txt"]);
    assert_eq!(names(&server, "docs").await, ["u2/b.txt"]);
    assert_eq!(
        download(&server, &service, "docs", "u2/b.txt").await.1,
        b"u2's"
    );
}

#[tokio::test]
async fn service_role_bypasses_every_policy() {
    let server = owner_folder_server().await;
    let service = server.service_key();
    let key = Some(service.as_str());
    for name in ["u1/a", "u2/b", "loose"] {
        let (status, body) = upload(&server, &service, "docs", name, "x", false).await;
        assert_eq!(status, 200, "{name}: {body}");
    }
    let (status, _) = upload(&server, &service, "docs", "u2/b", "y", true).await;
    assert_eq!(status, 200);
    assert_eq!(download(&server, &service, "docs", "u2/b").await.1, b"y");
    let (status, _) = get(&server, key, "/object/info/docs/u1/a").await;
    assert_eq!(status, 200);
    let (status, body) = move_object(&server, key, "docs", "u1/a", "u2/a").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = copy_object(&server, key, "docs", "u2/a", "u3/a", false).await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = delete(&server, key, "/object/docs/loose").await;
    assert_eq!(status, 200);
    let (_, deleted) = delete_many(&server, key, "docs", &["u2/a", "u2/b", "u3/a"]).await;
    assert_eq!(deleted, ["u2/a", "u2/b", "u3/a"]);
    assert!(names(&server, "docs").await.is_empty());
}

// ---------------------------------------------------------------------------------------------
// The public route
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_public_route_runs_as_anon_and_a_policy_reads_the_public_flag() {
    let server = TestServer::start().await;
    server.create_bucket("pub", true).await;
    server.create_bucket("priv", false).await;
    let service = server.service_key();
    let data = random_bytes(3000, 9);
    upload(&server, &service, "pub", "x.bin", data.clone(), false).await;
    upload(&server, &service, "priv", "x.bin", data.clone(), false).await;

    // No policy: nobody reads through the public route, not even with a service key, since it
    // runs as anon whatever token comes with it.
    for key in [None, Some(service.as_str())] {
        let (status, body) = get(&server, key, "/object/public/pub/x.bin").await;
        assert_status(status, &body, 404, "NoSuchKey");
        assert_eq!(head(&server, key, "/object/public/pub/x.bin").await, 404);
        let (status, body) = get(&server, key, "/object/info/public/pub/x.bin").await;
        assert_status(status, &body, 404, "NoSuchKey");
    }

    server.db.sql(OBJECTS_PUBLIC_READ).await;
    for key in [None, Some(service.as_str())] {
        let response = call(&server, Method::GET, "/object/public/pub/x.bin", key)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert!(response.bytes().await.unwrap() == data);
        assert_eq!(head(&server, key, "/object/public/pub/x.bin").await, 200);
        let (status, body) = get(&server, key, "/object/info/public/pub/x.bin").await;
        assert_eq!(status, 200, "{body}");

        let (status, body) = get(&server, key, "/object/public/priv/x.bin").await;
        assert_status(status, &body, 404, "NoSuchKey");
        assert_eq!(head(&server, key, "/object/public/priv/x.bin").await, 404);
    }
    // The service key still reads the private bucket through the authenticated route.
    assert_eq!(download(&server, &service, "priv", "x.bin").await.1, data);
}

#[tokio::test]
async fn the_seeds_public_read_policy_pasted_alone_serves_public_objects() {
    let server = TestServer::start().await;
    server.create_bucket("pub", true).await;
    server.create_bucket("priv", false).await;
    let service = server.service_key();
    let text = "meow ".repeat(300);
    let data = text.clone().into_bytes();
    upload(&server, &service, "pub", "cat.png", data.clone(), false).await;
    upload(&server, &service, "priv", "cat.png", data.clone(), false).await;
    server.db.sql(OBJECTS_PUBLIC_READ).await;

    // With the anon key, as getPublicUrl's users fetch it.
    let anon = server.anon_key();
    let response = call(
        &server,
        Method::GET,
        "/object/public/pub/cat.png",
        Some(&anon),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.bytes().await.unwrap() == data);
    // A browser given the URL: a bare GET with no credentials and no other headers.
    for prefix in ["", "/storage/v1"] {
        let (status, body) = raw_request(
            &server,
            "GET",
            &format!("{prefix}/object/public/pub/cat.png"),
            None,
            b"",
        )
        .await;
        assert_eq!((status, body.as_str()), (200, text.as_str()));
    }
    // The private bucket stays closed, on both routes.
    let (status, body) = get(&server, None, "/object/public/priv/cat.png").await;
    assert_status(status, &body, 404, "NoSuchKey");
    let (status, body) = get(&server, Some(&anon), "/object/authenticated/priv/cat.png").await;
    assert_status(status, &body, 404, "NoSuchKey");

    // The shipped bucket policy is an ordinary policy: dropped, the seed's pattern sees no
    // bucket again.
    server
        .db
        .sql("drop policy public_buckets_are_visible on storage.buckets")
        .await;
    let (status, body) = get(&server, None, "/object/public/pub/cat.png").await;
    assert_status(status, &body, 404, "NoSuchKey");
}

// ---------------------------------------------------------------------------------------------
// Policies that read storage.operation()
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_policy_can_allow_info_but_not_download() {
    let server = TestServer::start().await;
    server.create_bucket("docs", false).await;
    upload(
        &server,
        &server.service_key(),
        "docs",
        "a.txt",
        "body",
        false,
    )
    .await;
    server
        .db
        .sql(
            "create policy info_only on storage.objects for select to authenticated \
             using (storage.allow_only_operation('storage.info'));",
        )
        .await;
    let user = server.user_key("u1");
    let me = Some(user.as_str());

    let (status, body) = get(&server, me, "/object/info/docs/a.txt").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["size"], 4);
    // HEAD is an info operation: headers, no bytes.
    assert_eq!(
        head(&server, me, "/object/authenticated/docs/a.txt").await,
        200
    );
    // A download is storage.download, which the policy does not allow.
    let (status, body) = get(&server, me, "/object/authenticated/docs/a.txt").await;
    assert_status(status, &body, 404, "NoSuchKey");
    let (status, body) = get(&server, me, "/object/docs/a.txt").await;
    assert_status(status, &body, 404, "NoSuchKey");
}

/// Owners read and create their own objects; updates follow the seed's `allow_overwrite_only`.
const OVERWRITE_ONLY: &str = "
    create policy owner_read on storage.objects for select to authenticated
        using (owner_id = auth.uid());
    create policy owner_insert on storage.objects for insert to authenticated
        with check (owner_id = auth.uid());
    create policy allow_overwrite_only on storage.objects
        for update to authenticated
        using (owner_id = auth.uid())
        with check (owner_id = auth.uid()
                    and storage.allow_any_operation(array['storage.overwrite', 'storage.move']));
";

#[tokio::test]
async fn an_update_policy_can_allow_overwrite_and_move_and_nothing_else() {
    let server = TestServer::start().await;
    server.create_bucket("docs", false).await;
    server.db.sql(OVERWRITE_ONLY).await;
    let u1 = server.user_key("u1");
    let me = Some(u1.as_str());

    let (status, body) = upload(&server, &u1, "docs", "doc.txt", "v1", false).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = upload(&server, &u1, "docs", "doc.txt", "v2", true).await;
    assert_eq!(status, 200, "overwrite: {body}");
    let (status, body) = move_object(&server, me, "docs", "doc.txt", "moved.txt").await;
    assert_eq!(status, 200, "move: {body}");
    assert_eq!(download(&server, &u1, "docs", "moved.txt").await.1, b"v2");

    // Copy onto an existing object is an UPDATE too, under storage.copy: not allowed.
    upload(&server, &u1, "docs", "other.txt", "other", false).await;
    let files = stored_files(&server).await;
    // The overwrite above released v1's key; the refused copy adds nothing to that.
    let released = journal(&server).await;
    assert_eq!(released.len(), 1, "{released:?}");
    let (status, body) = copy_object(&server, me, "docs", "other.txt", "moved.txt", true).await;
    assert_status(status, &body, 403, "AccessDenied");
    assert_eq!(download(&server, &u1, "docs", "moved.txt").await.1, b"v2");
    assert_eq!(stored_files(&server).await, files);
    assert_eq!(journal(&server).await, released);
    // A copy to a new name is an INSERT, which the owner may do.
    let (status, body) = copy_object(&server, me, "docs", "other.txt", "copy.txt", false).await;
    assert_eq!(status, 200, "{body}");

    // Without the policy's operations, the same overwrite is refused.
    server
        .db
        .sql(
            "alter policy allow_overwrite_only on storage.objects \
             with check (owner_id = auth.uid() and storage.allow_only_operation('storage.move'));",
        )
        .await;
    let (status, body) = upload(&server, &u1, "docs", "moved.txt", "v3", true).await;
    assert_status(status, &body, 403, "AccessDenied");
    assert_eq!(download(&server, &u1, "docs", "moved.txt").await.1, b"v2");
}

#[tokio::test]
async fn an_insert_only_user_can_upload_but_not_overwrite() {
    let server = TestServer::start().await;
    server.create_bucket("docs", false).await;
    server
        .db
        .sql(
            "create policy own_insert on storage.objects for insert to authenticated \
             with check ((storage.foldername(name))[1] = auth.uid());",
        )
        .await;
    let u1 = server.user_key("u1");

    let (status, body) = upload(&server, &u1, "docs", "u1/a.txt", "first", false).await;
    assert_eq!(
        status, 200,
        "an INSERT policy alone allows a new upload: {body}"
    );
    let files = stored_files(&server).await;

    let (status, body) = upload(&server, &u1, "docs", "u1/a.txt", "second", false).await;
    assert_status(status, &body, 409, "KeyAlreadyExists");
    let (status, body) = upload(&server, &u1, "docs", "u1/a.txt", "second", true).await;
    assert_status(status, &body, 403, "AccessDenied");
    assert_eq!(
        stored_files(&server).await,
        files,
        "no bytes for a denied overwrite"
    );
    assert!(journal(&server).await.is_empty());
    let service = server.service_key();
    assert_eq!(
        download(&server, &service, "docs", "u1/a.txt").await.1,
        b"first"
    );
}
