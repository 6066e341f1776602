//! The S3 front as real S3 clients use it: boto3, the AWS CLI, rclone, s3cmd, the AWS SDK for
//! JavaScript, browser forms and hand-signed aws-chunked and virtual-host requests (the suite
//! in `tests/clients/s3/`, under pytest), against a live server on a fresh database with the client fixtures' owner-folder
//! policy, and with each kind of credential: the static key pair, database keys (one live,
//! bound to `authenticated` + `u1`, one revoked) and session tokens (user `u2`'s JWT, signed
//! with the anon key).
//!
//! The clients are installed by `scripts/install-client-deps`; without them this test fails
//! and says so.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{Options, TestServer};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use pgstorage::core::s3_keys;
use serde_json::{Map, Value, json};

const SUITE_TIMEOUT: Duration = Duration::from_secs(600);

const VIRTUAL_HOST_DOMAIN: &str = "localhost";

const FIXTURES: &str = include_str!("clients/fixtures.sql");

/// For unsigned browser forms (which run as anon): anon may add files under `inbox/` of the
/// buckets whose id ends in `-dropbox`.
const ANON_DROPBOX: &str = "create policy anon_dropbox on storage.objects for insert to anon \
     with check (bucket_id like '%-dropbox' and (storage.foldername(name))[1] = 'inbox')";

fn suite_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/s3")
}

/// A JWT for user `sub` that expired a minute ago.
fn expired_token(sub: &str) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut claims = Map::new();
    claims.insert("role".into(), "authenticated".into());
    claims.insert("sub".into(), sub.into());
    claims.insert("exp".into(), json!(now - 60));
    common::keys().sign(claims, None).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_s3_clients() {
    let dir = suite_dir();
    let python = dir.join(".venv/bin/python");
    assert!(
        python.exists(),
        "the S3 client virtualenv is missing ({}): run `scripts/install-client-deps`",
        python.display()
    );

    // `localhost` is the virtual-host domain (s3cmd cannot use a path prefix): `Host:
    // localhost:PORT` is S3 path-style at the root, `Host: BUCKET.localhost:PORT` names the
    // bucket; the suite reaches everything else at 127.0.0.1.
    let server = TestServer::start_with(Options {
        s3_virtual_host_domain: Some(VIRTUAL_HOST_DOMAIN.into()),
        ..Options::default()
    })
    .await;
    server.db.sql(FIXTURES).await;
    server.db.sql(ANON_DROPBOX).await;
    let database = server.storage.database();
    let sealer = common::s3_sealer();
    let mut u1 = Map::new();
    u1.insert("sub".into(), Value::from("u1"));
    let live = s3_keys::create(database, &sealer, "authenticated", u1.clone(), Some("u1"))
        .await
        .unwrap();
    let revoked = s3_keys::create(database, &sealer, "authenticated", u1, None)
        .await
        .unwrap();
    assert!(
        s3_keys::revoke(database, &revoked.access_key_id)
            .await
            .unwrap()
    );

    let mut command = tokio::process::Command::new(&python);
    command
        .args(["-m", "pytest", "-q", "-rfE", "."])
        // `PGSTORAGE_S3_PYTEST_K=expr` runs only the matching tests (while working on some).
        .args(
            std::env::var("PGSTORAGE_S3_PYTEST_K")
                .map(|k| vec!["-k".to_string(), k])
                .unwrap_or_default(),
        )
        .current_dir(&dir)
        .env("PGSTORAGE_URL", &server.url)
        .env("PGSTORAGE_SERVICE_KEY", server.service_key())
        .env("PGSTORAGE_S3_DOMAIN", VIRTUAL_HOST_DOMAIN)
        .env("PGSTORAGE_S3_STATIC_ID", common::S3_ACCESS_KEY_ID)
        .env("PGSTORAGE_S3_STATIC_SECRET", common::S3_SECRET_ACCESS_KEY)
        .env("PGSTORAGE_S3_DB_ID", &live.access_key_id)
        .env("PGSTORAGE_S3_DB_SECRET", &live.secret_access_key)
        .env("PGSTORAGE_S3_REVOKED_ID", &revoked.access_key_id)
        .env("PGSTORAGE_S3_REVOKED_SECRET", &revoked.secret_access_key)
        .env(
            "PGSTORAGE_ANON_KEY",
            common::keys().stable_anon_key().unwrap(),
        )
        .env("PGSTORAGE_USER1_KEY", server.user_key("u1"))
        .env("PGSTORAGE_USER2_KEY", server.user_key("u2"))
        .env("PGSTORAGE_EXPIRED_KEY", expired_token("u2"))
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SESSION_TOKEN")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let child = command.spawn().expect("starting pytest");
    let group = child.id().map(|id| Pid::from_raw(id as i32));
    match tokio::time::timeout(SUITE_TIMEOUT, child.wait_with_output()).await {
        Err(_) => {
            if let Some(group) = group {
                let _ = killpg(group, Signal::SIGKILL);
            }
            panic!(
                "the S3 client suite did not finish within {} s",
                SUITE_TIMEOUT.as_secs()
            );
        }
        Ok(Err(e)) => panic!("waiting for pytest: {e}"),
        Ok(Ok(output)) => {
            let stdout = String::from_utf8_lossy(&output.stdout);
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(
                output.status.success(),
                "the S3 client suite failed ({:?})\n---------- stdout ----------\n{stdout}\n\
                 ---------- stderr ----------\n{stderr}",
                output.status.code()
            );
            println!("{stdout}");
        }
    }
}
