//! Migrations: idempotent, checksummed, and safe beside an application's own schema.

mod common;

use common::TestDb;
use pgstorage::db::migrate;

#[tokio::test]
async fn applying_twice_is_a_no_op() {
    let db = TestDb::empty().await;
    let mut client = db.admin_client().await;
    let first = migrate::run(&mut client).await.unwrap();
    assert_eq!(first.len(), migrate::MIGRATIONS.len());
    let second = migrate::run(&mut client).await.unwrap();
    assert!(second.is_empty(), "second run applied {second:?}");
    let recorded: i64 = client
        .query_one("select count(*) from storage.migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(recorded as usize, migrate::MIGRATIONS.len());
}

#[tokio::test]
async fn a_changed_migration_is_refused() {
    let db = TestDb::empty().await;
    let mut client = db.admin_client().await;
    migrate::run(&mut client).await.unwrap();
    client
        .batch_execute("update storage.migrations set hash = 'tampered' where id = 2")
        .await
        .unwrap();
    let error = migrate::run(&mut client).await.unwrap_err().to_string();
    assert!(error.contains("different contents"), "{error}");
    assert!(error.contains("0002"), "{error}");
}

#[tokio::test]
async fn safe_on_a_database_with_an_application_schema() {
    let db = TestDb::empty().await;
    db.sql(
        "create table public.articles (id bigserial primary key, owner_id text, cover_key text,
                                       is_public boolean default false);
         insert into public.articles (owner_id, cover_key) values ('u1', 'a/1/cover.png');
         create schema app; create table app.things (id int);",
    )
    .await;
    let mut client = db.admin_client().await;
    migrate::run(&mut client).await.unwrap();
    let articles: i64 = client
        .query_one("select count(*) from public.articles", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(articles, 1);
    // The seed's grants: ALL on buckets/objects; SELECT only on multipart tables; migrations
    // revoked.
    let row = client
        .query_one(
            "select has_table_privilege('authenticated', 'storage.objects', 'insert'),
                    has_table_privilege('anon', 'storage.buckets', 'update'),
                    has_table_privilege('authenticated', 'storage.s3_multipart_uploads', 'select'),
                    has_table_privilege('authenticated', 'storage.s3_multipart_uploads', 'insert'),
                    has_table_privilege('service_role', 'storage.s3_multipart_uploads_parts', 'insert'),
                    has_table_privilege('anon', 'storage.migrations', 'select'),
                    has_table_privilege('service_role', 'storage.migrations', 'select'),
                    (select rolbypassrls from pg_roles where rolname = 'service_role'),
                    (select relrowsecurity from pg_class where oid = 'storage.objects'::regclass)",
            &[],
        )
        .await
        .unwrap();
    let got: Vec<bool> = (0..9).map(|i| row.get(i)).collect();
    assert_eq!(
        got,
        [true, true, true, false, true, false, false, true, true]
    );
}

#[tokio::test]
async fn bucket_name_is_limited_to_100_characters() {
    let db = TestDb::new().await;
    let client = db.admin_client().await;
    let long = "x".repeat(101);
    let error = client
        .execute(
            "insert into storage.buckets (id, name) values ('b', $1)",
            &[&long],
        )
        .await
        .unwrap_err();
    assert_eq!(
        error.code(),
        Some(&tokio_postgres::error::SqlState::STRING_DATA_RIGHT_TRUNCATION)
    );
    let ok = "é".repeat(100);
    client
        .execute(
            "insert into storage.buckets (id, name) values ('b', $1)",
            &[&ok],
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn name_ordered_listing_is_an_index_scan() {
    let db = TestDb::new().await;
    let client = db.admin_client().await;
    client
        .batch_execute("set enable_seqscan = off")
        .await
        .unwrap();
    let plan: Vec<String> = client
        .query(
            "explain select name from storage.objects \
             where bucket_id = 'b' and name > 'x' order by name limit 100",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let plan = plan.join("\n");
    assert!(plan.contains("Index"), "{plan}");
    assert!(
        !plan.contains("Sort "),
        "listing needs no sort step:\n{plan}"
    );
}
