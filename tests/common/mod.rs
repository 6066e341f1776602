//! Test harness: a real PostgreSQL for every test.
//!
//! With `PGSTORAGE_TEST_DATABASE_URL` (a superuser URL) the tests use that server; otherwise they
//! share one throwaway cluster under `target/tmp`, started by whichever test gets there first
//! (under a file lock, since nextest runs every test in its own process). The cluster keeps
//! running between test processes; `.ci/run` stops it at the end.
//!
//! Every test gets a fresh database cloned from a migrated template, and its own in-process
//! server on a free port, talked to over real HTTP.
//!
//! Byte stores: `PGSTORAGE_TEST_BACKEND` (`fs`, the default, `s3`, `garage` or `postgres`) picks
//! the store of every test server, so the REST suites run against each. The S3 store talks to a
//! real S3-compatible server started once per machine like the cluster: moto for `s3` (see
//! [`moto_port`]), a 3-node Garage cluster for `garage` (see [`garage`]); every test gets its own
//! bucket.
#![allow(dead_code)]

pub mod garage;
pub mod process;

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::ValueEnum;
use futures::{StreamExt, TryStreamExt};
use nix::fcntl::{Flock, FlockArg};
use object_store::ObjectStore;
use pgstorage::auth::{Authenticator, Identity, JwkKeySet, JwtKeys};
use pgstorage::bytes::{ByteStore, FsStore, PgStore, S3Config, S3Store};
use pgstorage::config::Backend;
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

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A fresh, migrated database for one test.
#[derive(Clone)]
pub struct TestDb {
    pub name: String,
    /// Superuser on this database (to create policies, tables, fixtures).
    pub admin: tokio_postgres::Config,
    /// The NOINHERIT request role on this database.
    pub request: tokio_postgres::Config,
    _cleanup: Arc<Cleanup>,
}

/// Drops a test's database and its local byte store when the last handle to it goes away, so a
/// full run does not leave gigabytes behind. A test that panicked keeps both for a post-mortem
/// (as does `PGSTORAGE_TEST_KEEP=1`); [`drop_stale_databases`] sweeps them up later.
struct Cleanup {
    name: String,
    /// A superuser on the `postgres` database.
    server: tokio_postgres::Config,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("PGSTORAGE_TEST_KEEP").is_some() {
            return;
        }
        let name = self.name.clone();
        let server = self.server.clone();
        // Drop runs inside the test's runtime, which cannot be blocked on; a thread with its own
        // runtime can.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let client = pgstorage::db::connect(&server).await.ok()?;
                client
                    .batch_execute(&format!("drop database if exists {name} with (force)"))
                    .await
                    .ok()
            })?;
            let _ = std::fs::remove_dir_all(fs_store_root(&name));
            Some(())
        })
        .join();
    }
}

fn fs_store_root(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("stores")
        .join(name)
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
        let cleanup = Arc::new(Cleanup {
            name: name.clone(),
            server: server.admin.clone(),
        });
        Self {
            name,
            admin,
            request,
            _cleanup: cleanup,
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
        let cleanup = Arc::new(Cleanup {
            name: name.clone(),
            server: server.admin.clone(),
        });
        Self {
            name,
            admin,
            request,
            _cleanup: cleanup,
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

    /// A core over this database with a throwaway byte store (of the test backend).
    pub async fn storage(&self, pool_size: usize) -> Storage {
        let store = TestStore::new(test_backend(), &self.name).await;
        Storage::new(
            self.database(pool_size),
            store.open().await,
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

/// The static S3 key pair every test server accepts (it runs as service_role).
pub const S3_ACCESS_KEY_ID: &str = "PGSTORAGETESTSTATIC0";
pub const S3_SECRET_ACCESS_KEY: &str = "pgstorage-test-static-s3-secret-key-0000";

/// How test servers authenticate S3 requests: the static pair above, session tokens signed
/// with the stable anon key, database keys sealed under the JWT secret.
pub fn s3_credentials() -> pgstorage::s3::S3Credentials {
    pgstorage::s3::S3Credentials {
        static_key: Some(pgstorage::s3::StaticKey {
            access_key_id: S3_ACCESS_KEY_ID.into(),
            secret_access_key: S3_SECRET_ACCESS_KEY.into(),
        }),
        session_secret: Some(keys().stable_anon_key().unwrap()),
        sealer: s3_sealer(),
        region: "us-east-1".into(),
    }
}

/// The sealer test servers open database S3 keys with.
pub fn s3_sealer() -> pgstorage::auth::sealed::Sealer {
    pgstorage::auth::sealed::Sealer::derive(JWT_SECRET.as_bytes())
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

/// Changes made to a test server's S3 settings (endpoint, timeouts) before its store opens.
pub type S3Tweak = Arc<dyn Fn(&mut S3Config) + Send + Sync>;

/// Options for a test server.
#[derive(Clone)]
pub struct Options {
    pub max_file_size: u64,
    pub pool_size: usize,
    pub upload_lease: Duration,
    pub body_idle_timeout: Duration,
    /// `--body-min-rate` (bytes per second) and `--body-rate-window`.
    pub min_body_rate: u64,
    pub body_rate_window: Duration,
    /// `--db-upload-connections` (None: half the pool).
    pub upload_connections: Option<usize>,
    pub header_read_timeout: Duration,
    /// The byte store (default: `PGSTORAGE_TEST_BACKEND`, else fs).
    pub backend: Backend,
    /// With the S3 backend: changes to the store's settings.
    pub s3_tweak: Option<S3Tweak>,
    /// A JWKS (JSON) whose keys request tokens may also be signed with (`--jwt-jwks`).
    pub jwt_jwks: Option<String>,
    /// `--s3-api-virtual-host-domain`.
    pub s3_virtual_host_domain: Option<String>,
    /// Image transformation limits.
    pub transform: pgstorage::transform::TransformConfig,
    /// `--small-object-cache` (bytes; the server's default unless a test turns it off).
    pub small_object_cache: u64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            max_file_size: 50 * 1024 * 1024 * 1024,
            pool_size: 8,
            upload_lease: Duration::from_secs(60),
            body_idle_timeout: Duration::from_secs(30),
            min_body_rate: Limits::default().min_body_rate,
            body_rate_window: Limits::default().body_rate_window,
            upload_connections: None,
            header_read_timeout: Duration::from_secs(30),
            backend: test_backend(),
            s3_tweak: None,
            jwt_jwks: None,
            s3_virtual_host_domain: None,
            transform: Default::default(),
            small_object_cache: 16 * 1024 * 1024,
        }
    }
}

/// The byte store the tests run on: `PGSTORAGE_TEST_BACKEND` (fs|s3|garage|postgres), fs when
/// unset. `garage` is the S3 store on Garage instead of moto (see [`garage::s3_server`]).
pub fn test_backend() -> Backend {
    match std::env::var("PGSTORAGE_TEST_BACKEND") {
        Ok(name) if name == "garage" => Backend::S3,
        Ok(name) if !name.is_empty() => Backend::from_str(&name, true).unwrap_or_else(|_| {
            panic!("PGSTORAGE_TEST_BACKEND={name}: expected fs, s3, garage or postgres")
        }),
        _ => Backend::Fs,
    }
}

/// Where a test keeps its bytes: a fresh directory or a fresh S3 bucket.
#[derive(Clone)]
pub enum TestStore {
    Fs {
        root: PathBuf,
    },
    /// A bucket on moto or Garage; `config` holds the endpoint and key (tweaks may change the
    /// store's endpoint: `direct` is the server itself, for looking at what the store left).
    S3 {
        config: S3Config,
        direct: S3Config,
    },
    /// Chunks in the test database named by the store's name.
    Postgres {
        admin: tokio_postgres::Config,
    },
}

impl TestStore {
    /// A fresh, empty store named after `name` (a test database name or any unique text).
    pub async fn new(backend: Backend, name: &str) -> Self {
        match backend {
            Backend::Fs => Self::Fs {
                root: fs_store_root(name),
            },
            Backend::S3 => {
                let bucket = name.replace('_', "-").to_ascii_lowercase();
                let config = match garage::s3_server() {
                    garage::S3Server::Moto => {
                        let port = moto_port().await;
                        create_bucket(port, &bucket).await;
                        let mut config = S3Config::new(bucket);
                        config.endpoint = Some(moto_url(port));
                        config.region = Some("us-east-1".into());
                        config.access_key_id = Some("testing".into());
                        config.secret_access_key = Some("testing".into());
                        config.force_path_style = true;
                        config.request_timeout = Duration::from_secs(60);
                        config
                    }
                    garage::S3Server::Garage => {
                        let config = garage::garage().await.config(&bucket);
                        garage::create_signed_bucket(&config).await;
                        config
                    }
                };
                Self::S3 {
                    direct: config.clone(),
                    config,
                }
            }
            Backend::Postgres => {
                let mut admin = server().await.admin;
                admin.dbname(name);
                Self::Postgres { admin }
            }
        }
    }

    pub fn backend(&self) -> Backend {
        match self {
            Self::Fs { .. } => Backend::Fs,
            Self::S3 { .. } => Backend::S3,
            Self::Postgres { .. } => Backend::Postgres,
        }
    }

    /// Applies `tweak` to the S3 settings (no-op for fs).
    pub fn tweak(&mut self, tweak: Option<&S3Tweak>) {
        if let (Self::S3 { config, .. }, Some(tweak)) = (self, tweak) {
            tweak(config);
        }
    }

    /// The store itself (not checked for reachability: tests point some at dead endpoints).
    pub async fn open(&self) -> Arc<dyn ByteStore> {
        match self {
            Self::Fs { root } => Arc::new(FsStore::open(root).await.unwrap()),
            Self::S3 { config, .. } => Arc::new(S3Store::new(config).unwrap()),
            Self::Postgres { admin } => Arc::new(PgStore::new(
                Database::new(admin.clone(), admin.clone(), 4).unwrap(),
            )),
        }
    }

    /// Flags that point a `pgstorage` process at this store.
    pub fn server_args(&self) -> Vec<String> {
        match self {
            Self::Fs { root } => vec![
                "--backend".into(),
                "fs".into(),
                "--fs-root".into(),
                root.display().to_string(),
            ],
            Self::S3 { direct, .. } => vec![
                "--backend".into(),
                "s3".into(),
                "--s3-endpoint".into(),
                direct.endpoint.clone().unwrap_or_default(),
                "--s3-region".into(),
                direct.region.clone().unwrap_or_default(),
                "--s3-bucket".into(),
                direct.bucket.clone(),
                "--s3-access-key-id".into(),
                direct.access_key_id.clone().unwrap_or_default(),
                "--s3-secret-access-key".into(),
                direct.secret_access_key.clone().unwrap_or_default(),
                "--s3-force-path-style".into(),
            ],
            Self::Postgres { .. } => vec!["--backend".into(), "postgres".into()],
        }
    }

    /// How many keys hold bytes (files under `objects/`, or objects in the bucket).
    pub async fn stored_keys(&self) -> usize {
        self.stored_key_names().await.len()
    }

    /// The keys holding bytes, sorted.
    pub async fn stored_key_names(&self) -> Vec<String> {
        let mut names = match self {
            Self::Fs { root } => {
                let mut names = Vec::new();
                collect_file_names(&root.join("objects"), &mut names);
                names
            }
            Self::S3 { direct, .. } => s3_client(direct)
                .list(None)
                .map_ok(|meta| meta.location.filename().unwrap_or_default().to_string())
                .try_collect()
                .await
                .expect("listing the test bucket"),
            Self::Postgres { admin } => pgstorage::db::connect(admin)
                .await
                .unwrap()
                .query("select distinct key from storage.byte_chunks", &[])
                .await
                .unwrap()
                .iter()
                .map(|row| row.get(0))
                .collect(),
        };
        names.sort();
        names
    }

    /// Whether `key` holds bytes.
    pub async fn key_exists(&self, key: &str) -> bool {
        self.stored_key_names().await.iter().any(|k| k == key)
    }

    /// Writes in progress or left behind: temporary files (fs) or open multipart uploads (S3).
    pub async fn partial_writes(&self) -> usize {
        match self {
            Self::Fs { root } => count_files(&root.join("tmp")),
            Self::S3 { direct, .. } => garage::open_multipart_uploads(direct).await,
            // Chunks of an unfinished write are never visible to others; count the transactions
            // still writing them.
            Self::Postgres { admin } => {
                let client = pgstorage::db::connect(admin).await.unwrap();
                let open: i64 = client
                    .query_one(
                        "select count(*) from pg_stat_activity \
                         where datname = current_database() and pid <> pg_backend_pid() \
                           and xact_start is not null \
                           and (query like '%byte_chunks%' or query like '%write_chunk%')",
                        &[],
                    )
                    .await
                    .unwrap()
                    .get(0);
                open as usize
            }
        }
    }
}

fn collect_file_names(dir: &std::path::Path, names: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_file_names(&path, names);
        } else {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
}

/// A plain client on a test bucket, straight to its server (whatever endpoint the server under
/// test was given), for looking at what the store left there.
fn s3_client(direct: &S3Config) -> object_store::aws::AmazonS3 {
    object_store::aws::AmazonS3Builder::new()
        .with_endpoint(direct.endpoint.clone().unwrap_or_default())
        .with_allow_http(true)
        .with_region(direct.region.clone().unwrap_or_default())
        .with_bucket_name(&direct.bucket)
        .with_access_key_id(direct.access_key_id.clone().unwrap_or_default())
        .with_secret_access_key(direct.secret_access_key.clone().unwrap_or_default())
        .build()
        .unwrap()
}

/// The moto settings of one bucket (for the stale-bucket sweep).
fn moto_config(port: u16, bucket: &str) -> S3Config {
    let mut config = S3Config::new(bucket);
    config.endpoint = Some(moto_url(port));
    config.region = Some("us-east-1".into());
    config.access_key_id = Some("testing".into());
    config.secret_access_key = Some("testing".into());
    config
}

fn moto_url(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

/// Creates a bucket on moto (which takes unsigned requests).
pub async fn create_bucket(port: u16, bucket: &str) {
    let response = reqwest::Client::new()
        .put(format!("{}/{bucket}", moto_url(port)))
        .send()
        .await
        .expect("creating a test bucket on moto");
    assert!(
        response.status().is_success(),
        "creating bucket {bucket}: {}",
        response.text().await.unwrap_or_default()
    );
}

static MOTO: OnceLock<u16> = OnceLock::new();

/// The port of the shared moto server, started by whichever test gets there first (under a file
/// lock; its pid and port are kept under `target/tmp/pgstorage-test-moto`). It keeps running
/// between test processes; `.ci/run` stops it at the end.
pub async fn moto_port() -> u16 {
    if let Some(port) = MOTO.get() {
        return *port;
    }
    let port = prepare_moto().await;
    let _ = MOTO.set(port);
    port
}

fn moto_root() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("pgstorage-test-moto")
}

/// `moto_server` from the virtualenv `scripts/install-s3-deps` creates.
fn moto_server_binary() -> PathBuf {
    let venv = std::env::var("PGSTORAGE_MOTO_VENV").unwrap_or_else(|_| ".venv/moto".into());
    let binary = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(venv)
        .join("bin")
        .join("moto_server");
    assert!(
        binary.is_file(),
        "moto is not installed ({} is missing): the S3 store is tested against a moto server; \
         install it with `scripts/install-s3-deps` (a virtualenv at .venv/moto with \
         tests/s3/requirements.txt)",
        binary.display()
    );
    binary
}

async fn moto_answers(port: u16) -> bool {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    matches!(client.get(moto_url(port)).send().await, Ok(r) if r.status().is_success())
}

async fn prepare_moto() -> u16 {
    let root = moto_root();
    std::fs::create_dir_all(&root).expect("creating the moto directory");
    let lock_file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(root.join("harness.lock"))
        .expect("opening the moto lock");
    let _lock = tokio::task::spawn_blocking(move || {
        Flock::lock(lock_file, FlockArg::LockExclusive).map_err(|(_, e)| e)
    })
    .await
    .unwrap()
    .expect("locking the moto server");

    let recorded = |name: &str| -> Option<u32> {
        std::fs::read_to_string(root.join(name))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    if let (Some(pid), Some(port)) = (recorded("pid"), recorded("port")) {
        let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok();
        if alive && moto_answers(port as u16).await {
            drop_stale_buckets(port as u16).await;
            return port as u16;
        }
    }

    let binary = moto_server_binary();
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let log_path = root.join("moto.log");
    let log = std::fs::File::create(&log_path).expect("creating the moto log");
    let mut child = std::process::Command::new(&binary)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !moto_answers(port).await {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "moto exited ({status}) at start-up:\n{}",
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "moto did not start within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    std::fs::write(root.join("pid"), child.id().to_string()).unwrap();
    std::fs::write(root.join("port"), port.to_string()).unwrap();
    // moto outlives this process on purpose; it is not our child to reap.
    std::mem::forget(child);
    port
}

/// Empties and removes test buckets left by runs more than two hours ago (moto keeps everything
/// until it stops), at most once every ten minutes.
async fn drop_stale_buckets(port: u16) {
    let marker = moto_root().join("last-sweep");
    let recent = std::fs::metadata(&marker)
        .and_then(|m| m.modified())
        .is_ok_and(|t| t.elapsed().unwrap_or_default() < Duration::from_secs(600));
    if recent {
        return;
    }
    let _ = std::fs::write(&marker, "");
    let Ok(response) = reqwest::get(moto_url(port)).await else {
        return;
    };
    let listing = response.text().await.unwrap_or_default();
    let now = unix_now();
    for name in listing
        .split("<Name>")
        .skip(1)
        .filter_map(|rest| rest.split("</Name>").next())
    {
        let created: u64 = name
            .split('-')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(now);
        if now.saturating_sub(created) <= 7200 {
            continue;
        }
        let client = s3_client(&moto_config(port, name));
        let objects = client.list(None).map_ok(|meta| meta.location).boxed();
        let _: Vec<_> = client.delete_stream(objects).collect().await;
        let _ = reqwest::Client::new()
            .delete(format!("{}/{name}", moto_url(port)))
            .send()
            .await;
    }
}

/// A pgstorage server on a free local port, over its own fresh database.
pub struct TestServer {
    pub url: String,
    /// This server's byte store.
    pub store: TestStore,
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
        let mut store = TestStore::new(options.backend, &db.name).await;
        store.tweak(options.s3_tweak.as_ref());
        Self::start_with_store(db, store, options).await
    }

    /// A server over `db` whose bytes go to `store` (two servers may share one).
    pub async fn start_with_store(db: TestDb, store: TestStore, options: Options) -> Self {
        let bytes = store.open().await;
        let mut database = db.database(options.pool_size);
        if let Some(connections) = options.upload_connections {
            database = database.with_upload_connections(connections);
        }
        let storage = Storage::new(
            database,
            bytes,
            Limits {
                max_file_size: options.max_file_size,
                upload_lease: options.upload_lease,
                body_idle_timeout: options.body_idle_timeout,
                min_body_rate: options.min_body_rate,
                body_rate_window: options.body_rate_window,
                ..Limits::default()
            },
        )
        .with_small_object_cache(options.small_object_cache);
        let mut keys = keys();
        if let Some(jwks) = &options.jwt_jwks {
            keys = keys.with_jwks(JwkKeySet::from_json(jwks).unwrap());
        }
        let auth = Authenticator::new(
            keys,
            ["anon", "authenticated", "service_role"]
                .map(String::from)
                .to_vec(),
        );
        let s3 = pgstorage::s3::S3Front::new(storage.clone(), auth.clone(), s3_credentials())
            .with_virtual_host_domain(options.s3_virtual_host_domain.as_deref())
            .unwrap();
        let app = http::app(AppState {
            storage: storage.clone(),
            auth,
            s3: Some(s3),
            transform: pgstorage::transform::Transformer::new(options.transform.clone()),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let serve = http::ServeOptions {
            header_read_timeout: options.header_read_timeout,
        };
        tokio::spawn(http::serve(listener, app, serve, std::future::pending()));
        Self {
            url,
            store,
            db,
            storage,
            http: reqwest::Client::new(),
        }
    }

    /// How many keys hold bytes in this server's store.
    pub async fn stored_keys(&self) -> usize {
        self.store.stored_keys().await
    }

    /// Whether `key` holds bytes in this server's store.
    pub async fn key_exists(&self, key: &str) -> bool {
        self.store.key_exists(key).await
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
