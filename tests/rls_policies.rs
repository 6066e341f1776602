//! The seed's Row Level Security examples, end to end: policies written in plain SQL decide what
//! each role may do. Buckets are exercised through HTTP; objects through SQL run with the
//! server's identity mechanism (role, claims and operation set as for a request).

mod common;

use common::{TestServer, caller, json_of};
use pgstorage::core::{Caller, Operation};
use reqwest::Method;
use serde_json::{Value, json};
use tokio_postgres::error::SqlState;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn user(sub: &str) -> Caller {
    caller("authenticated", Some(sub))
}

fn anon() -> Caller {
    caller("anon", None)
}

async fn call(
    server: &TestServer,
    key: Option<&str>,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = server.request(method, path, key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    json_of(request.send().await.unwrap()).await
}

async fn create_bucket_as(server: &TestServer, key: Option<&str>, name: &str) -> (u16, Value) {
    call(
        server,
        key,
        Method::POST,
        "/bucket",
        Some(json!({ "name": name })),
    )
    .await
}

/// Ids of the buckets GET /bucket shows to `key`.
async fn listed_buckets(server: &TestServer, key: Option<&str>) -> Vec<String> {
    let (status, body) = call(server, key, Method::GET, "/bucket", None).await;
    assert_eq!(status, 200, "{body}");
    body.as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_string())
        .collect()
}

/// Inserts a bucket row as superuser.
async fn bucket_row(server: &TestServer, id: &str, public: bool, owner: Option<&str>) {
    let owner = owner.map_or("null".to_string(), |o| format!("'{o}'"));
    server
        .db
        .sql(&format!(
            "insert into storage.buckets (id, name, public, owner_id) \
             values ('{id}', '{id}', {public}, {owner})"
        ))
        .await;
}

/// Inserts an object row as superuser (version NULL: no bytes).
async fn object_row(server: &TestServer, bucket: &str, name: &str, owner: Option<&str>) {
    let owner = owner.map_or("null".to_string(), |o| format!("'{o}'"));
    server
        .db
        .sql(&format!(
            "insert into storage.objects (bucket_id, name, owner_id) \
             values ('{bucket}', '{name}', {owner})"
        ))
        .await;
}

/// `bucket/name` of every object `who` can select during `operation`, sorted.
async fn visible_objects(server: &TestServer, who: &Caller, operation: Operation) -> Vec<String> {
    let tx = server.storage.begin(who, operation).await.unwrap();
    let rows = tx
        .query(
            "select bucket_id || '/' || name from storage.objects order by 1",
            &[],
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    rows.iter().map(|r| r.get(0)).collect()
}

/// Runs one statement as `who` during `operation` and commits; the rows it affected, or the
/// SQLSTATE it failed with.
async fn execute_as(
    server: &TestServer,
    who: &Caller,
    operation: Operation,
    sql: &str,
) -> Result<u64, SqlState> {
    let tx = server.storage.begin(who, operation).await.unwrap();
    match tx.execute(sql, &[]).await {
        Ok(n) => {
            tx.commit().await.unwrap();
            Ok(n)
        }
        Err(e) => Err(e.code().cloned().unwrap_or_else(|| panic!("{e}"))),
    }
}

/// An object's column, read as superuser.
async fn object_column(
    server: &TestServer,
    bucket: &str,
    name: &str,
    column: &str,
) -> Option<String> {
    server
        .db
        .admin_client()
        .await
        .query_opt(
            &format!(
                "select {column}::text from storage.objects where bucket_id = $1 and name = $2"
            ),
            &[&bucket, &name],
        )
        .await
        .unwrap()
        .and_then(|row| row.get(0))
}

/// The seed's policy: objects are readable when their bucket is flagged public.
const OBJECTS_PUBLIC_READ: &str = "
    create policy objects_public_read on storage.objects
    for select to anon, authenticated
    using (
      exists (
        select 1 from storage.buckets b
        where b.id = storage.objects.bucket_id and b.public
      )
    )";

/// The seed's policy: owners may overwrite or move their objects, not change their metadata.
const ALLOW_OVERWRITE_ONLY: &str = "
    create policy allow_overwrite_only on storage.objects
    for update to authenticated
    using (owner_id = auth.uid())
    with check (
      owner_id = auth.uid()
      and storage.allow_any_operation(array['storage.overwrite', 'storage.move'])
    )";

/// The seed's application table and the cover-image policy that joins it.
const ARTICLES: &str = "
    create table public.articles (
      id bigserial primary key,
      owner_id text default auth.uid(),
      cover_key text,
      is_public boolean default false
    );
    grant select on public.articles to anon, authenticated;
    create policy cover_read on storage.objects
    for select to anon, authenticated
    using (
      bucket_id = 'article-assets'
      and exists (
        select 1 from public.articles a
        where a.cover_key = storage.objects.name
          and (a.is_public or a.owner_id = auth.uid())
      )
    )";

// ---------------------------------------------------------------------------------------------
// Buckets, through HTTP
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn anon_cannot_create_a_bucket_until_a_policy_allows_it() {
    let server = TestServer::start().await;
    let anon_key = server.anon_key();
    let (status, body) = create_bucket_as(&server, Some(&anon_key), "guestbook").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["code"], "AccessDenied", "{body}");
    assert_eq!(body["error"], "Unauthorized", "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("row-level security"),
        "{body}"
    );

    server
        .db
        .sql("create policy anon_creates on storage.buckets for insert to anon with check (true)")
        .await;
    let (status, body) = create_bucket_as(&server, Some(&anon_key), "guestbook").await;
    assert_eq!(status, 200, "{body}");
    // Also without any credentials at all, which is anon too.
    let (status, body) = create_bucket_as(&server, None, "guestbook2").await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn users_create_buckets_they_own() {
    let server = TestServer::start().await;
    server
        .db
        .sql(
            "create policy users_create_own on storage.buckets for insert to authenticated \
                 with check (owner_id = auth.uid()); \
             create policy users_read_own on storage.buckets for select to authenticated \
                 using (owner_id = auth.uid())",
        )
        .await;
    let alice = server.user_key("alice");
    let (status, body) = create_bucket_as(&server, Some(&alice), "alice-files").await;
    assert_eq!(status, 200, "{body}");
    let (status, bucket) = call(
        &server,
        Some(&alice),
        Method::GET,
        "/bucket/alice-files",
        None,
    )
    .await;
    assert_eq!(status, 200, "{bucket}");
    assert_eq!(bucket["owner"], "alice");

    // The policy is for authenticated: anon is still refused.
    let (status, _) = create_bucket_as(&server, Some(&server.anon_key()), "anon-files").await;
    assert_eq!(status, 403);
    // And another user does not see alice's bucket.
    let (status, body) = call(
        &server,
        Some(&server.user_key("bob")),
        Method::GET,
        "/bucket/alice-files",
        None,
    )
    .await;
    assert_eq!(status, 404, "{body}");
}

#[tokio::test]
async fn a_user_lists_only_the_buckets_a_select_policy_allows() {
    let server = TestServer::start().await;
    bucket_row(&server, "alice-private", false, Some("alice")).await;
    bucket_row(&server, "bob-private", false, Some("bob")).await;
    bucket_row(&server, "bob-public", true, Some("bob")).await;
    bucket_row(&server, "nobodys", false, None).await;
    server
        .db
        .sql(
            "create policy own_or_public on storage.buckets for select to authenticated \
                 using (owner_id = auth.uid() or public)",
        )
        .await;
    assert_eq!(
        listed_buckets(&server, Some(&server.user_key("alice"))).await,
        ["alice-private", "bob-public"]
    );
    assert_eq!(
        listed_buckets(&server, Some(&server.user_key("bob"))).await,
        ["bob-private", "bob-public"]
    );
    // The policy is for authenticated only; anon sees the public bucket through the shipped
    // public_buckets_are_visible policy.
    assert_eq!(
        listed_buckets(&server, Some(&server.anon_key())).await,
        ["bob-public"]
    );
    assert_eq!(
        listed_buckets(&server, Some(&server.service_key()))
            .await
            .len(),
        4
    );
}

#[tokio::test]
async fn a_select_policy_for_bucket_get_does_not_allow_listing() {
    let server = TestServer::start().await;
    bucket_row(&server, "b", false, None).await;
    server
        .db
        .sql(
            "create policy get_only on storage.buckets for select to anon \
                 using (storage.allow_only_operation('bucket.get'))",
        )
        .await;
    let (status, body) = call(&server, None, Method::GET, "/bucket/b", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], "b");
    assert_eq!(listed_buckets(&server, None).await, Vec::<String>::new());
}

#[tokio::test]
async fn a_select_policy_for_bucket_list_does_not_allow_get() {
    let server = TestServer::start().await;
    bucket_row(&server, "b", false, None).await;
    server
        .db
        .sql(
            "create policy list_only on storage.buckets for select to anon \
                 using (storage.allow_only_operation('storage.bucket.list'))",
        )
        .await;
    assert_eq!(listed_buckets(&server, None).await, ["b"]);
    let (status, body) = call(&server, None, Method::GET, "/bucket/b", None).await;
    assert_eq!(status, 404, "{body}");
}

#[tokio::test]
async fn bucket_create_runs_as_storage_bucket_create() {
    let server = TestServer::start().await;
    server
        .db
        .sql(
            "create policy wrong_op on storage.buckets for insert to anon \
                 with check (storage.allow_only_operation('bucket.update'))",
        )
        .await;
    assert_eq!(create_bucket_as(&server, None, "b").await.0, 403);
    server
        .db
        .sql(
            "drop policy wrong_op on storage.buckets; \
             create policy right_op on storage.buckets for insert to anon \
                 with check (storage.allow_only_operation('storage.bucket.create'))",
        )
        .await;
    let (status, body) = create_bucket_as(&server, None, "b").await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn bucket_update_runs_as_storage_bucket_update() {
    let server = TestServer::start().await;
    bucket_row(&server, "b", false, None).await;
    server
        .db
        .sql(
            "create policy anon_reads on storage.buckets for select to anon using (true); \
             create policy wrong_op on storage.buckets for update to anon \
                 using (storage.allow_only_operation('bucket.create'))",
        )
        .await;
    let update = || {
        call(
            &server,
            None,
            Method::PUT,
            "/bucket/b",
            Some(json!({ "public": true })),
        )
    };
    // The row is filtered out of the UPDATE: as if it did not exist.
    assert_eq!(update().await.0, 404);
    server
        .db
        .sql(
            "drop policy wrong_op on storage.buckets; \
             create policy right_op on storage.buckets for update to anon \
                 using (storage.allow_only_operation('bucket.update'))",
        )
        .await;
    let (status, body) = update().await;
    assert_eq!(status, 200, "{body}");
    let (_, bucket) = call(&server, None, Method::GET, "/bucket/b", None).await;
    assert_eq!(bucket["public"], true);
}

#[tokio::test]
async fn bucket_delete_and_empty_run_as_their_own_operations() {
    let server = TestServer::start().await;
    bucket_row(&server, "b", false, None).await;
    object_row(&server, "b", "x.txt", None).await;
    // anon may see the bucket only while emptying it, and delete objects only while emptying.
    server
        .db
        .sql(
            "create policy see_to_empty on storage.buckets for select to anon \
                 using (storage.allow_any_operation(array['bucket.empty', 'bucket.delete'])); \
             create policy objects_seen_to_empty on storage.objects for select to anon \
                 using (storage.allow_only_operation('bucket.empty')); \
             create policy objects_deleted_to_empty on storage.objects for delete to anon \
                 using (storage.allow_only_operation('storage.bucket.empty')); \
             create policy bucket_deleted on storage.buckets for delete to anon \
                 using (storage.allow_only_operation('bucket.delete'))",
        )
        .await;
    assert_eq!(
        call(&server, None, Method::GET, "/bucket/b", None).await.0,
        404
    );
    let (status, body) = call(&server, None, Method::POST, "/bucket/b/empty", None).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = call(&server, None, Method::DELETE, "/bucket/b", None).await;
    assert_eq!(status, 200, "{body}");
    let count: i64 = server
        .db
        .admin_client()
        .await
        .query_one("select count(*) from storage.buckets", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 0);
}

// ---------------------------------------------------------------------------------------------
// Objects, through SQL with the identity mechanism
// ---------------------------------------------------------------------------------------------

/// A public and a private bucket with two objects each.
async fn public_and_private_buckets(server: &TestServer) {
    bucket_row(server, "pub", true, None).await;
    bucket_row(server, "priv", false, None).await;
    for bucket in ["pub", "priv"] {
        object_row(server, bucket, "alice/a.png", Some("alice")).await;
        object_row(server, bucket, "bob/b.png", Some("bob")).await;
    }
}

#[tokio::test]
async fn without_a_policy_nobody_but_service_role_sees_objects() {
    let server = TestServer::start().await;
    public_and_private_buckets(&server).await;
    assert!(
        visible_objects(&server, &anon(), Operation::List)
            .await
            .is_empty()
    );
    assert!(
        visible_objects(&server, &user("alice"), Operation::List)
            .await
            .is_empty()
    );
    let service = caller("service_role", None);
    assert_eq!(
        visible_objects(&server, &service, Operation::List)
            .await
            .len(),
        4
    );
}

#[tokio::test]
async fn objects_public_read_shows_objects_of_public_buckets_only() {
    let server = TestServer::start().await;
    public_and_private_buckets(&server).await;
    server.db.sql(OBJECTS_PUBLIC_READ).await;
    let public = ["pub/alice/a.png", "pub/bob/b.png"];
    assert_eq!(
        visible_objects(&server, &anon(), Operation::Download).await,
        public
    );
    assert_eq!(
        visible_objects(&server, &user("alice"), Operation::List).await,
        public
    );

    // `public` is a flag the policy reads: flipping it changes what anon sees.
    server
        .db
        .sql("update storage.buckets set public = false where id = 'pub'")
        .await;
    assert!(
        visible_objects(&server, &anon(), Operation::Download)
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn objects_public_read_relies_on_the_shipped_public_buckets_policy() {
    let server = TestServer::start().await;
    public_and_private_buckets(&server).await;
    server.db.sql(OBJECTS_PUBLIC_READ).await;
    assert_eq!(
        visible_objects(&server, &anon(), Operation::Download)
            .await
            .len(),
        2
    );
    // The policy's subquery on storage.buckets runs under RLS as anon. Without the shipped
    // policy that shows public buckets, anon sees no bucket and the EXISTS is always false.
    server
        .db
        .sql("drop policy public_buckets_are_visible on storage.buckets")
        .await;
    assert!(
        visible_objects(&server, &anon(), Operation::Download)
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn owner_only_policy_shows_each_user_their_own_objects() {
    let server = TestServer::start().await;
    public_and_private_buckets(&server).await;
    server
        .db
        .sql(
            "create policy owner_reads on storage.objects for select to authenticated \
                 using (owner_id = auth.uid())",
        )
        .await;
    assert_eq!(
        visible_objects(&server, &user("alice"), Operation::List).await,
        ["priv/alice/a.png", "pub/alice/a.png"]
    );
    assert_eq!(
        visible_objects(&server, &user("bob"), Operation::List).await,
        ["priv/bob/b.png", "pub/bob/b.png"]
    );
    assert!(
        visible_objects(&server, &user("carol"), Operation::List)
            .await
            .is_empty()
    );
    // anon has no sub: auth.uid() is null and matches nothing.
    assert!(
        visible_objects(&server, &anon(), Operation::List)
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn owner_folder_policy_lets_users_insert_only_under_their_own_folder() {
    let server = TestServer::start().await;
    bucket_row(&server, "priv", false, None).await;
    server
        .db
        .sql(
            "create policy own_folder_insert on storage.objects for insert to authenticated \
                 with check (bucket_id = 'priv' and (storage.foldername(name))[1] = auth.uid())",
        )
        .await;
    let insert = |name: &str| {
        format!(
            "insert into storage.objects (bucket_id, name, owner_id) \
             values ('priv', '{name}', auth.uid())"
        )
    };
    let alice = user("alice");
    assert_eq!(
        execute_as(
            &server,
            &alice,
            Operation::Upload,
            &insert("alice/photo.png")
        )
        .await,
        Ok(1)
    );
    assert_eq!(
        execute_as(
            &server,
            &alice,
            Operation::Upload,
            &insert("alice/deep/er.png")
        )
        .await,
        Ok(1)
    );
    for name in ["bob/photo.png", "photo.png", "x/alice/photo.png"] {
        assert_eq!(
            execute_as(&server, &alice, Operation::Upload, &insert(name)).await,
            Err(SqlState::INSUFFICIENT_PRIVILEGE),
            "{name}"
        );
    }
    assert_eq!(
        execute_as(
            &server,
            &anon(),
            Operation::Upload,
            &insert("alice/anon.png")
        )
        .await,
        Err(SqlState::INSUFFICIENT_PRIVILEGE)
    );
    assert_eq!(
        object_column(&server, "priv", "alice/photo.png", "owner_id")
            .await
            .as_deref(),
        Some("alice")
    );
    assert_eq!(
        object_column(&server, "priv", "bob/photo.png", "owner_id").await,
        None
    );
}

/// Fixtures for allow_overwrite_only: alice's and bob's objects, which both can read.
async fn overwrite_fixtures(server: &TestServer) {
    bucket_row(server, "priv", false, None).await;
    object_row(server, "priv", "alice/a.png", Some("alice")).await;
    object_row(server, "priv", "bob/b.png", Some("bob")).await;
    server.db.sql(ALLOW_OVERWRITE_ONLY).await;
    // An UPDATE ... WHERE reads rows, so the select policies apply too.
    server
        .db
        .sql(
            "create policy owner_reads on storage.objects for select to authenticated \
                 using (owner_id = auth.uid())",
        )
        .await;
}

#[tokio::test]
async fn allow_overwrite_only_allows_an_overwrite() {
    let server = TestServer::start().await;
    overwrite_fixtures(&server).await;
    // New bytes are staged by the server before the row adopts them.
    server
        .db
        .sql(
            "insert into storage.byte_journal (key, state, lease_until) \
             values ('new-bytes', 'staged', now() + interval '1 hour')",
        )
        .await;
    let result = execute_as(
        &server,
        &user("alice"),
        Operation::Overwrite,
        "update storage.objects set version = 'new-bytes', metadata = '{\"size\": 3}' \
         where bucket_id = 'priv' and name = 'alice/a.png'",
    )
    .await;
    assert_eq!(result, Ok(1));
    assert_eq!(
        object_column(&server, "priv", "alice/a.png", "version")
            .await
            .as_deref(),
        Some("new-bytes")
    );
}

#[tokio::test]
async fn allow_overwrite_only_allows_a_move() {
    let server = TestServer::start().await;
    overwrite_fixtures(&server).await;
    let result = execute_as(
        &server,
        &user("alice"),
        Operation::Move,
        "update storage.objects set name = 'alice/renamed.png' \
         where bucket_id = 'priv' and name = 'alice/a.png'",
    )
    .await;
    assert_eq!(result, Ok(1));
    assert!(
        object_column(&server, "priv", "alice/renamed.png", "id")
            .await
            .is_some()
    );
}

#[tokio::test]
async fn allow_overwrite_only_refuses_a_metadata_update_with_42501() {
    let server = TestServer::start().await;
    overwrite_fixtures(&server).await;
    // The row passes USING (alice owns it) and fails WITH CHECK (wrong operation): an error,
    // not a silent no-op.
    let result = execute_as(
        &server,
        &user("alice"),
        Operation::UpdateMetadata,
        "update storage.objects set user_metadata = '{\"tag\": \"x\"}' \
         where bucket_id = 'priv' and name = 'alice/a.png'",
    )
    .await;
    assert_eq!(result, Err(SqlState::INSUFFICIENT_PRIVILEGE));
    assert_eq!(
        object_column(&server, "priv", "alice/a.png", "user_metadata").await,
        None
    );
}

#[tokio::test]
async fn allow_overwrite_only_silently_skips_another_users_object() {
    let server = TestServer::start().await;
    overwrite_fixtures(&server).await;
    // bob's row fails USING: it is filtered out, so nothing is updated and nothing is raised.
    let result = execute_as(
        &server,
        &user("alice"),
        Operation::Overwrite,
        "update storage.objects set metadata = '{\"size\": 3}' \
         where bucket_id = 'priv' and name = 'bob/b.png'",
    )
    .await;
    assert_eq!(result, Ok(0));
    assert_eq!(
        object_column(&server, "priv", "bob/b.png", "metadata").await,
        None
    );
    // Nor may alice give her object away: the new row fails WITH CHECK.
    let result = execute_as(
        &server,
        &user("alice"),
        Operation::Overwrite,
        "update storage.objects set owner_id = 'bob' \
         where bucket_id = 'priv' and name = 'alice/a.png'",
    )
    .await;
    assert_eq!(result, Err(SqlState::INSUFFICIENT_PRIVILEGE));
}

/// Article 1 is public, article 2 is alice's private one; each has a cover object.
async fn articles_fixtures(server: &TestServer) {
    bucket_row(server, "article-assets", false, None).await;
    server.db.sql(ARTICLES).await;
    server
        .db
        .sql(
            "insert into public.articles (id, owner_id, cover_key, is_public) values \
                 (1, 'alice', 'articles/1/cover.png', true), \
                 (2, 'alice', 'articles/2/cover.png', false)",
        )
        .await;
    object_row(
        server,
        "article-assets",
        "articles/1/cover.png",
        Some("alice"),
    )
    .await;
    object_row(
        server,
        "article-assets",
        "articles/2/cover.png",
        Some("alice"),
    )
    .await;
    // A cover-like name in another bucket is not covered by the policy.
    bucket_row(server, "elsewhere", true, None).await;
    object_row(server, "elsewhere", "articles/1/cover.png", Some("alice")).await;
}

#[tokio::test]
async fn cover_read_shows_anon_the_covers_of_public_articles() {
    let server = TestServer::start().await;
    articles_fixtures(&server).await;
    assert_eq!(
        visible_objects(&server, &anon(), Operation::Download).await,
        ["article-assets/articles/1/cover.png"]
    );
}

#[tokio::test]
async fn cover_read_shows_the_owner_their_private_cover() {
    let server = TestServer::start().await;
    articles_fixtures(&server).await;
    assert_eq!(
        visible_objects(&server, &user("alice"), Operation::Download).await,
        [
            "article-assets/articles/1/cover.png",
            "article-assets/articles/2/cover.png"
        ]
    );
}

#[tokio::test]
async fn cover_read_hides_a_private_cover_from_another_user() {
    let server = TestServer::start().await;
    articles_fixtures(&server).await;
    assert_eq!(
        visible_objects(&server, &user("bob"), Operation::Download).await,
        ["article-assets/articles/1/cover.png"]
    );
    // Publishing the article (an application-table change) publishes its cover.
    server
        .db
        .sql("update public.articles set is_public = true where id = 2")
        .await;
    assert_eq!(
        visible_objects(&server, &user("bob"), Operation::Download)
            .await
            .len(),
        2
    );
}
