//! Test harness: a real PostgreSQL for every test.
//!
//! With `PGSTORAGE_TEST_DATABASE_URL` (a superuser URL) the tests use that server; otherwise they
//! share one throwaway cluster under `target/tmp`, started by whichever test gets there first
//! (under a file lock, since nextest runs every test in its own process). The cluster keeps
//! running between test processes; `.ci/run` stops it at the end.
//!
//! Every test gets a fresh database cloned from a migrated template, and its own in-process
//! server on a free port, talked to over real HTTP.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use nix::fcntl::{Flock, FlockArg};
use pgstorage::auth::{Authenticator, Identity, JwtKeys};
use pgstorage::bytes::FsStore;
use pgstorage::core::{Caller, Limits, Storage};
use pgstorage::db::embedded::{self, ClusterDir};
use pgstorage::db::{Database, migrate};
use pgstorage::http::{self, AppState};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

pub const JWT_SECRET: &str = "pgstorage-test-secret-pgstorage-test-secret";
const TEST_REQUEST_PASSWORD: &str = "pgstorage-test-request-password";

/// Connection settings of the shared test server (plain data: safe to keep across runtimes).
#[derive(Clone)]
struct Server {
    /// A superuser on the `postgres` database.
    admin: tokio_postgres::Config,
    /// Whether the request role logs in with a password (external servers) or not (socket).
    external: bool,
    template: String,
}

static SERVER: OnceLock<Server> = OnceLock::new();

fn cluster_root() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("pgstorage-test-cluster")
}

/// The template's name changes whenever a migration does, so a stale template is never used.
fn template_name() -> String {
    let mut hash = Sha256::new();
    for m in migrate::MIGRATIONS {
        hash.update(m.name.as_bytes());
        hash.update(m.sql.as_bytes());
    }
    format!("pgstorage_tpl_{}", &hex::encode(hash.finalize())[..12])
}

async fn server() -> Server {
    if let Some(server) = SERVER.get() {
        return server.clone();
    }
    let server = prepare_server().await;
    let _ = SERVER.set(server.clone());
    server
}

async fn prepare_server() -> Server {
    let root = cluster_root();
    std::fs::create_dir_all(&root).expect("creating the test cluster directory");
    let lock_file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(root.join("harness.lock"))
        .expect("opening the harness lock");
    let _lock = tokio::task::spawn_blocking(move || {
        Flock::lock(lock_file, FlockArg::LockExclusive).map_err(|(_, e)| e)
    })
    .await
    .unwrap()
    .expect("locking the test cluster");

    let (admin, external) = match std::env::var("PGSTORAGE_TEST_DATABASE_URL") {
        Ok(url) => (url.parse().expect("PGSTORAGE_TEST_DATABASE_URL"), true),
        Err(_) => {
            let dir = ClusterDir::new(&root).expect("test cluster directory");
            dir.ensure_initialized()
                .expect("initdb for the test cluster");
            if dir.running_postmaster().is_none() {
                // Durability is not under test here; speed is welcome.
                let child = dir
                    .spawn(&[
                        ("fsync", "off"),
                        ("synchronous_commit", "off"),
                        ("full_page_writes", "off"),
                        ("max_connections", "400"),
                    ])
                    .expect("starting the test cluster");
                // The cluster outlives this process on purpose; it is not our child to reap.
                std::mem::forget(child);
            }
            dir.wait_ready(None).await.expect("test cluster start-up");
            (dir.config(embedded::SUPERUSER, "postgres"), false)
        }
    };
    let template = template_name();
    let client = pgstorage::db::connect(&admin)
        .await
        .expect("connecting to the test server");
    drop_stale_databases(&client).await;
    let exists = client
        .query_opt("select 1 from pg_database where datname = $1", &[&template])
        .await
        .unwrap()
        .is_some();
    if !exists {
        // Build under a temporary name and rename, so a half-migrated template is never used.
        let building = format!("{template}_building");
        client
            .batch_execute(&format!("drop database if exists {building} with (force)"))
            .await
            .unwrap();
        client
            .batch_execute(&format!("create database {building}"))
            .await
            .unwrap();
        let mut config = admin.clone();
        config.dbname(&building);
        let mut db = pgstorage::db::connect(&config).await.unwrap();
        migrate::run(&mut db).await.expect("migrating the template");
        let roles = ["anon", "authenticated", "service_role"].map(String::from);
        migrate::ensure_request_role(&db, embedded::REQUEST_ROLE, &roles)
            .await
            .unwrap();
        if external {
            db.batch_execute(&format!(
                "alter role {} password '{TEST_REQUEST_PASSWORD}'",
                embedded::REQUEST_ROLE
            ))
            .await
            .unwrap();
        }
        drop(db);
        client
            .batch_execute(&format!("alter database {building} rename to {template}"))
            .await
            .unwrap();
    }
    Server {
        admin,
        external,
        template,
    }
}

/// Removes test databases left by runs more than two hours ago.
async fn drop_stale_databases(client: &tokio_postgres::Client) {
    let now = unix_now();
    let rows = client
        .query(
            "select datname from pg_database where datname like 't\\_%'",
            &[],
        )
        .await
        .unwrap();
    for row in rows {
        let name: String = row.get(0);
        let created: u64 = name
            .split('_')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        if now.saturating_sub(created) > 7200 {
            let _ = client
                .batch_execute(&format!("drop database if exists {name} with (force)"))
                .await;
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A fresh, migrated database for one test.
pub struct TestDb {
    pub name: String,
    /// Superuser on this database (to create policies, tables, fixtures).
    pub admin: tokio_postgres::Config,
    /// The NOINHERIT request role on this database.
    pub request: tokio_postgres::Config,
}

impl TestDb {
    pub async fn new() -> Self {
        let server = server().await;
        let name = format!("t_{}_{}", unix_now(), uuid::Uuid::new_v4().simple());
        let client = pgstorage::db::connect(&server.admin).await.unwrap();
        client
            .batch_execute(&format!(
                "create database {name} template {}",
                server.template
            ))
            .await
            .expect("creating the test database");
        let mut admin = server.admin.clone();
        admin.dbname(&name);
        let mut request = admin.clone();
        request.user(embedded::REQUEST_ROLE);
        if server.external {
            request.password(TEST_REQUEST_PASSWORD);
        }
        Self {
            name,
            admin,
            request,
        }
    }

    /// An empty database (not migrated), for migration tests.
    pub async fn empty() -> Self {
        let server = server().await;
        let name = format!("t_{}_{}", unix_now(), uuid::Uuid::new_v4().simple());
        let client = pgstorage::db::connect(&server.admin).await.unwrap();
        client
            .batch_execute(&format!("create database {name}"))
            .await
            .unwrap();
        let mut admin = server.admin.clone();
        admin.dbname(&name);
        let mut request = admin.clone();
        request.user(embedded::REQUEST_ROLE);
        Self {
            name,
            admin,
            request,
        }
    }

    /// The privileged URL (key/value form) for passing to a `pgstorage` process.
    pub fn admin_url(&self) -> String {
        config_to_url(&self.admin)
    }

    /// The request-role URL for passing to a `pgstorage` process.
    pub fn request_url(&self) -> String {
        config_to_url(&self.request)
    }

    /// A superuser connection to this database.
    pub async fn admin_client(&self) -> tokio_postgres::Client {
        pgstorage::db::connect(&self.admin).await.unwrap()
    }

    /// Runs SQL as superuser (fixtures, policies).
    pub async fn sql(&self, sql: &str) {
        self.admin_client()
            .await
            .batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("fixture SQL failed: {e:?}\n{sql}"));
    }

    /// A core over this database with a throwaway byte store.
    pub async fn storage(&self, pool_size: usize) -> Storage {
        let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join("stores")
            .join(&self.name);
        Storage::new(
            self.database(pool_size),
            Arc::new(FsStore::open(root).await.unwrap()),
            Limits::default(),
        )
    }

    pub fn database(&self, pool_size: usize) -> Database {
        Database::new(self.admin.clone(), self.request.clone(), pool_size).unwrap()
    }
}

/// A libpq key/value string for a config (the parts the harness uses).
fn config_to_url(config: &tokio_postgres::Config) -> String {
    use tokio_postgres::config::Host;
    let mut parts = Vec::new();
    if let Some(host) = config.get_hosts().first() {
        match host {
            Host::Tcp(name) => parts.push(format!("host={name}")),
            Host::Unix(path) => parts.push(format!("host={}", path.display())),
        }
    }
    if let Some(port) = config.get_ports().first() {
        parts.push(format!("port={port}"));
    }
    if let Some(user) = config.get_user() {
        parts.push(format!("user={user}"));
    }
    if let Some(password) = config.get_password() {
        parts.push(format!("password={}", String::from_utf8_lossy(password)));
    }
    if let Some(dbname) = config.get_dbname() {
        parts.push(format!("dbname={dbname}"));
    }
    parts.join(" ")
}

/// Counts regular files under `dir` (recursively); 0 when it does not exist.
pub fn count_files(dir: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| {
            let path = entry.path();
            if path.is_dir() { count_files(&path) } else { 1 }
        })
        .sum()
}

pub fn keys() -> JwtKeys {
    JwtKeys::new(JWT_SECRET.as_bytes())
}

/// A signed token for `role` with optional `sub`.
pub fn token(role: &str, sub: Option<&str>) -> String {
    keys()
        .mint(role, sub, Some(Duration::from_secs(3600)), Map::new())
        .unwrap()
}

/// A caller as the core sees it (for SQL-level tests through the identity mechanism).
pub fn caller(role: &str, sub: Option<&str>) -> Caller {
    let mut claims = Map::new();
    claims.insert("role".into(), role.into());
    if let Some(sub) = sub {
        claims.insert("sub".into(), sub.into());
    }
    Caller::new(Identity {
        role: role.into(),
        claims,
    })
}

/// Options for a test server.
#[derive(Clone)]
pub struct Options {
    pub max_file_size: u64,
    pub pool_size: usize,
    pub upload_lease: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            max_file_size: 50 * 1024 * 1024 * 1024,
            pool_size: 8,
            upload_lease: Duration::from_secs(60),
        }
    }
}

/// A pgstorage server on a free local port, over its own fresh database.
pub struct TestServer {
    pub url: String,
    /// Root of this server's local-disk byte store.
    pub fs_root: PathBuf,
    pub db: TestDb,
    pub storage: Storage,
    pub http: reqwest::Client,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(options: Options) -> Self {
        let db = TestDb::new().await;
        Self::start_on(db, options).await
    }

    pub async fn start_on(db: TestDb, options: Options) -> Self {
        let fs_root = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join("stores")
            .join(&db.name);
        let bytes = FsStore::open(&fs_root).await.unwrap();
        let storage = Storage::new(
            db.database(options.pool_size),
            Arc::new(bytes),
            Limits {
                max_file_size: options.max_file_size,
                upload_lease: options.upload_lease,
            },
        );
        let auth = Authenticator::new(
            keys(),
            ["anon", "authenticated", "service_role"]
                .map(String::from)
                .to_vec(),
        );
        let app = http::app(AppState {
            storage: storage.clone(),
            auth,
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(http::serve(listener, app, std::future::pending()));
        Self {
            url,
            fs_root,
            db,
            storage,
            http: reqwest::Client::new(),
        }
    }

    pub fn service_key(&self) -> String {
        token("service_role", None)
    }

    pub fn user_key(&self, sub: &str) -> String {
        token("authenticated", Some(sub))
    }

    pub fn anon_key(&self) -> String {
        token("anon", None)
    }

    /// A request with `key` as the bearer token (None: no credentials).
    pub fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        key: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let builder = self.http.request(method, format!("{}{}", self.url, path));
        match key {
            Some(key) => builder.bearer_auth(key),
            None => builder,
        }
    }

    /// Creates a bucket as service_role.
    pub async fn create_bucket(&self, id: &str, public: bool) {
        let response = self
            .request(reqwest::Method::POST, "/bucket", Some(&self.service_key()))
            .json(&json!({ "name": id, "public": public }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    }
}

/// Reads a response as (status, JSON body).
pub async fn json_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}
