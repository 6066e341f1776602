//! What PostgREST runs for `GET /rpc/<function>?bucket=..&name=..`, emulated in SQL, and the
//! fixtures the PostgREST suites share (`postgrest_functions`, `postgrest_redirects`).
//!
//! No PostgREST binary can be installed from this project's package registries, so each call
//! is what PostgREST sends: on a connection of a NOINHERIT login role (PostgREST's
//! authenticator; here the server's request role), a read-only transaction that switches to the
//! JWT's role, sets `request.jwt.claims`, `request.method`, `request.path` and
//! `request.headers`, runs the function in PostgREST's query shape (named arguments, the body
//! and `response.headers` / `response.status` read in the same statement), and rolls back.
#![allow(dead_code)]

use std::time::Duration;

use pgstorage::config::Backend;
use pgstorage::core::sql_files::SqlFileSettings;
use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::common::{self, Options, TestDb, TestServer, json_of};

#[derive(Debug)]
pub struct Answer {
    pub body: Vec<u8>,
    pub headers: Vec<(String, String)>,
    pub status: Option<String>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A refusal: SQLSTATE and message, which PostgREST turns into the status and JSON body.
#[derive(Debug, PartialEq)]
pub struct Refusal {
    pub code: String,
    pub message: String,
}

/// `GET /rpc/<function>?bucket=<bucket>&name=<name>` with a JWT of `role` and `sub`, as
/// PostgREST runs it.
pub async fn rpc(
    db: &TestDb,
    role: &str,
    sub: Option<&str>,
    function: &str,
    bucket: &str,
    name: &str,
) -> Result<Answer, Refusal> {
    let mut client = pgstorage::db::connect(&db.request).await.unwrap();
    let tx = client
        .build_transaction()
        .read_only(true)
        .start()
        .await
        .unwrap();
    let mut claims = json!({ "role": role });
    if let Some(sub) = sub {
        claims["sub"] = sub.into();
    }
    let path = format!("/rpc/{function}");
    tx.query(
        "select set_config('role', $1, true), \
                set_config('request.jwt.claims', $2, true), \
                set_config('request.method', 'GET', true), \
                set_config('request.path', $3, true), \
                set_config('request.headers', $4, true), \
                set_config('search_path', 'public', true)",
        &[
            &role,
            &claims.to_string(),
            &path,
            &json!({ "accept": "*/*" }).to_string(),
        ],
    )
    .await
    .unwrap();
    // PostgREST's shape: the function in a CTE with named arguments, read once; the response
    // settings read in the same statement. A "*/*" answer is sent as the bytes themselves, a
    // json one as its text.
    let body = if function == "get_file" {
        "(select pgrst_scalar from pgrst_source)::bytea"
    } else {
        "convert_to((select pgrst_scalar from pgrst_source)::text, 'UTF8')"
    };
    let query = format!(
        "with pgrst_source as ( \
             select \"storage\".\"{function}\"(\"bucket\" := $1, \"name\" := $2) as pgrst_scalar) \
         select {body} as body, \
                nullif(current_setting('response.headers', true), '') as response_headers, \
                nullif(current_setting('response.status', true), '') as response_status"
    );
    let result = tx.query_one(&query, &[&bucket, &name]).await;
    let row = match result {
        Ok(row) => row,
        Err(error) => {
            let db = error.as_db_error().expect("a database error");
            return Err(Refusal {
                code: db.code().code().to_string(),
                message: db.message().to_string(),
            });
        }
    };
    let body: Vec<u8> = row.get(0);
    let headers: Option<String> = row.get(1);
    let status: Option<String> = row.get(2);
    let headers = match headers {
        None => Vec::new(),
        Some(text) => {
            let list: Vec<serde_json::Map<String, Value>> = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("response.headers is not PostgREST's shape: {e}"));
            list.into_iter()
                .map(|object| {
                    assert_eq!(object.len(), 1, "one header per object: {text}");
                    let (name, value) = object.into_iter().next().unwrap();
                    (
                        name,
                        value.as_str().expect("header values are text").to_string(),
                    )
                })
                .collect()
        }
    };
    tx.rollback().await.unwrap();
    Ok(Answer {
        body,
        headers,
        status,
    })
}

pub fn not_found() -> Refusal {
    Refusal {
        code: "PT404".into(),
        message: "Object not found".into(),
    }
}

pub fn sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

/// Seed 003's kinds of policy: an owner's folder, a public bucket, and its join with a business
/// table (an article's cover follows the article's visibility).
pub async fn policies(server: &TestServer) {
    server.create_bucket("files", false).await;
    server.create_bucket("pub", true).await;
    server.create_bucket("article-assets", false).await;
    server
        .db
        .sql(
            "create policy owner_folder on storage.objects for select to authenticated
                 using (bucket_id = 'files' and (storage.foldername(name))[1] = (select auth.uid()));
             create policy public_read on storage.objects for select to anon, authenticated
                 using (bucket_id in (select id from storage.buckets where public));
             create table public.articles (
                 id bigserial primary key,
                 owner_id text default auth.uid(),
                 cover_key text,
                 is_public boolean default false);
             grant select on public.articles to anon, authenticated;
             insert into public.articles (owner_id, cover_key, is_public) values
                 ('u1', 'articles/1/cover.png', true),
                 ('u1', 'articles/2/cover.png', false);
             create policy cover_read on storage.objects for select to anon, authenticated
                 using (bucket_id = 'article-assets' and exists (
                     select 1 from public.articles a
                     where a.cover_key = storage.objects.name
                       and (a.is_public or a.owner_id = auth.uid())));",
        )
        .await;
}

/// Uploads as service_role through the REST API.
pub async fn put(server: &TestServer, bucket: &str, name: &str, data: &[u8], content_type: &str) {
    let path = format!("/object/{bucket}/{}", encode_path(name));
    let response = server
        .request(Method::POST, &path, Some(&server.service_key()))
        .header("content-type", content_type)
        .header("cache-control", "max-age=60")
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    let (status, body) = json_of(response).await;
    assert_eq!(status, 200, "{name}: {body}");
}

pub fn encode_path(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The server's own answer to a download of `bucket/name` by `key` (None: anonymous).
pub async fn rest_get(
    server: &TestServer,
    key: Option<&str>,
    bucket: &str,
    name: &str,
) -> reqwest::Response {
    let route = if key.is_some() {
        "authenticated"
    } else {
        "public"
    };
    server
        .request(
            Method::GET,
            &format!("/object/{route}/{bucket}/{}", encode_path(name)),
            key,
        )
        .send()
        .await
        .unwrap()
}

pub async fn publish(server: &TestServer, lifetime: Duration, max_inline_size: u64) {
    server
        .storage
        .publish_sql_file_settings(&SqlFileSettings {
            secret: common::keys().database_signing_key().to_vec(),
            public_url: format!("{}/", server.url),
            url_lifetime: lifetime,
            max_inline_size,
        })
        .await
        .unwrap();
}

pub fn postgres_store() -> Options {
    Options {
        backend: Backend::Postgres,
        ..Options::default()
    }
}

pub fn fs_store() -> Options {
    Options {
        backend: Backend::Fs,
        ..Options::default()
    }
}
