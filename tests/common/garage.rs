//! The S3-compatible servers the S3 store is tested on, and signed requests to them.
//!
//! `PGSTORAGE_TEST_BACKEND=s3` runs the S3 store on moto (one process, see `moto_port`);
//! `PGSTORAGE_TEST_BACKEND=garage` on Garage: three nodes with replication factor 3, started by
//! `scripts/garage-cluster` under `target/tmp/pgstorage-test-garage` by whichever test gets there
//! first (under a file lock), shared by every test process and kept running between runs;
//! `.ci/run` stops it at the end.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};
use object_store::aws::{AwsAuthorizer, AwsCredential};
use object_store::client::{HttpRequest, HttpRequestBody};
use pgstorage::bytes::S3Config;

/// Which S3-compatible server backs the S3 store in tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum S3Server {
    Moto,
    Garage,
}

/// The server `PGSTORAGE_TEST_BACKEND` names (`garage`, else moto).
pub fn s3_server() -> S3Server {
    match std::env::var("PGSTORAGE_TEST_BACKEND").as_deref() {
        Ok("garage") => S3Server::Garage,
        _ => S3Server::Moto,
    }
}

/// Where the shared cluster is and the key the tests use (it may create buckets).
#[derive(Clone, Debug)]
pub struct Garage {
    pub endpoint: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// The cluster's directory (for `scripts/garage-cluster ... DIR`).
    pub dir: PathBuf,
}

impl Garage {
    /// An S3 store configuration for `bucket` on this cluster.
    pub fn config(&self, bucket: &str) -> S3Config {
        let mut config = S3Config::new(bucket);
        config.endpoint = Some(self.endpoint.clone());
        config.region = Some(self.region.clone());
        config.access_key_id = Some(self.access_key_id.clone());
        config.secret_access_key = Some(self.secret_access_key.clone());
        config.force_path_style = true;
        config.request_timeout = Duration::from_secs(60);
        config
    }
}

static GARAGE: OnceLock<Garage> = OnceLock::new();

/// The shared Garage cluster, started when it is not running.
pub async fn garage() -> Garage {
    if let Some(garage) = GARAGE.get() {
        return garage.clone();
    }
    let garage = tokio::task::spawn_blocking(prepare_garage).await.unwrap();
    let _ = GARAGE.set(garage.clone());
    garage
}

fn garage_root() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("pgstorage-test-garage")
}

/// `NAME=value` pairs from `export NAME=value` lines.
fn parse_exports(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| line.strip_prefix("export "))
        .filter_map(|pair| pair.split_once('='))
        .map(|(name, value)| (name.to_string(), value.trim_matches('\'').to_string()))
        .collect()
}

fn from_exports(exports: &[(String, String)], dir: PathBuf) -> Option<Garage> {
    let get = |name: &str| {
        exports
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    Some(Garage {
        endpoint: get("GARAGE_ENDPOINT")?,
        region: get("GARAGE_REGION")?,
        access_key_id: get("GARAGE_ACCESS_KEY_ID")?,
        secret_access_key: get("GARAGE_SECRET_ACCESS_KEY")?,
        dir,
    })
}

/// Whether every node recorded in `exports` runs and node 1's S3 port accepts connections.
fn running(exports: &[(String, String)]) -> bool {
    let pids_alive = (1..=3).all(|n| {
        exports
            .iter()
            .find(|(name, _)| *name == format!("GARAGE_NODE{n}_PID"))
            .and_then(|(_, pid)| pid.parse::<i32>().ok())
            .is_some_and(|pid| {
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok()
            })
    });
    let port = exports
        .iter()
        .find(|(name, _)| name == "GARAGE_NODE1_S3_PORT")
        .and_then(|(_, port)| port.parse::<u16>().ok());
    pids_alive
        && port.is_some_and(|port| {
            std::net::TcpStream::connect_timeout(
                &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
                Duration::from_secs(2),
            )
            .is_ok()
        })
}

fn prepare_garage() -> Garage {
    let root = garage_root();
    std::fs::create_dir_all(&root).expect("creating the Garage directory");
    let lock_file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(root.join("harness.lock"))
        .expect("opening the Garage lock");
    let _lock = Flock::lock(lock_file, FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .expect("locking the Garage cluster");

    let dir = root.join("cluster");
    if let Ok(text) = std::fs::read_to_string(dir.join("env")) {
        let exports = parse_exports(&text);
        if running(&exports)
            && let Some(garage) = from_exports(&exports, dir.clone())
        {
            return garage;
        }
    }
    // Not set up, or a node is down: the script sets it up or restarts what is missing.
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/garage-cluster");
    let output = Command::new(&script)
        .arg("start")
        .arg(&dir)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    assert!(
        output.status.success(),
        "scripts/garage-cluster start failed ({}); the garage backend needs a Garage binary: \
         $GARAGE_BIN or the one scripts/install-garage builds",
        output.status
    );
    let exports = parse_exports(&String::from_utf8_lossy(&output.stdout));
    from_exports(&exports, dir).expect("scripts/garage-cluster printed no endpoint or key")
}

/// Sends a request signed with `config`'s key to its endpoint: `path_and_query` is relative to
/// the endpoint (`bucket?uploads`). For what `object_store` does not do (bucket creation and
/// deletion, listing multipart uploads).
pub async fn signed_request(
    config: &S3Config,
    method: reqwest::Method,
    path_and_query: &str,
    body: Vec<u8>,
) -> reqwest::Response {
    let endpoint = config.endpoint.as_deref().expect("a test S3 endpoint");
    let url = format!("{}/{path_and_query}", endpoint.trim_end_matches('/'));
    let mut request: HttpRequest = axum::http::Request::builder()
        .method(method.as_str())
        .uri(&url)
        .body(HttpRequestBody::from(body.clone()))
        .unwrap();
    let credential = AwsCredential {
        key_id: config.access_key_id.clone().unwrap_or_default(),
        secret_key: config.secret_access_key.clone().unwrap_or_default(),
        token: None,
    };
    let region = config.region.clone().unwrap_or_else(|| "us-east-1".into());
    AwsAuthorizer::new(&credential, "s3", &region)
        .try_authorize(&mut request, None)
        .unwrap();
    let mut builder = reqwest::Client::new().request(method, &url).body(body);
    for (name, value) in request.headers() {
        builder = builder.header(name.as_str(), value.as_bytes());
    }
    builder.send().await.expect("a signed S3 request")
}

/// Creates `config`'s bucket with a signed CreateBucket.
pub async fn create_signed_bucket(config: &S3Config) {
    let response = signed_request(config, reqwest::Method::PUT, &config.bucket, Vec::new()).await;
    let status = response.status();
    assert!(
        status.is_success(),
        "creating bucket {}: {status} {}",
        config.bucket,
        response.text().await.unwrap_or_default()
    );
}

/// How many multipart uploads are open in `config`'s bucket.
pub async fn open_multipart_uploads(config: &S3Config) -> usize {
    let response = signed_request(
        config,
        reqwest::Method::GET,
        &format!("{}?uploads", config.bucket),
        Vec::new(),
    )
    .await;
    assert!(response.status().is_success(), "listing multipart uploads");
    let text = response.text().await.unwrap();
    assert!(
        !text.contains("<IsTruncated>true"),
        "too many multipart uploads"
    );
    text.matches("<Upload>").count()
}
