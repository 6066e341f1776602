//! The embedded default, with the real binary: `pgstorage serve` on an empty data directory
//! creates its own PostgreSQL, prints ready keys, keeps data across restarts, refuses to share
//! its directory, stops its PostgreSQL on SIGTERM and recovers after a kill -9. `pgstorage
//! token` mints keys from the same directory.
//!
//! Every wait is bounded, and guards stop what a test started even when an assertion fails.

mod common;

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::process::{self, WAIT, free_port, run_to_end};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use reqwest::Method;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A fresh directory for one test (logs beside the data directory). Dropping it stops any
/// PostgreSQL still running on its data directory, then removes it.
struct TestDir {
    root: PathBuf,
}

impl TestDir {
    fn new(name: &str) -> Self {
        let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("embedded-{name}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(root.join("logs")).unwrap();
        Self { root }
    }

    /// The `--data-dir` (not created: `serve` creates it).
    fn data(&self) -> PathBuf {
        self.root.join("data")
    }

    fn log(&self, name: &str) -> PathBuf {
        self.root.join("logs").join(name)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if let Some(pid) = live_postmaster(&self.data()) {
            // Ours: started by a serve of this test and left behind (e.g. after kill -9).
            let _ = kill(Pid::from_raw(pid), Signal::SIGINT);
            let deadline = Instant::now() + Duration::from_secs(30);
            while pid_alive(pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            if pid_alive(pid) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGQUIT);
            }
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// True while `pid` exists and is not a zombie.
fn pid_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// The pid of a live postmaster for `data_dir`, read from its `postmaster.pid`.
fn live_postmaster(data_dir: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(data_dir.join("postgres/postmaster.pid")).ok()?;
    let pid: i32 = text.lines().next()?.trim().parse().ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    (pid_alive(pid) && String::from_utf8_lossy(&cmdline).contains("postgres")).then_some(pid)
}

/// `pgstorage <args>` with none of the caller's PGSTORAGE_* settings, logging at info.
fn pgstorage(args: &[&str]) -> Command {
    let mut command = process::pgstorage(args);
    command.env("PGSTORAGE_LOG", "info");
    command
}

/// A running `pgstorage serve`. Dropping it stops the process (SIGTERM, then SIGKILL).
struct Serve {
    child: Child,
    url: String,
    anon_key: String,
    service_key: String,
    log: PathBuf,
}

impl Serve {
    /// Starts `serve` on the test's data directory and waits until it printed its keys.
    fn start(dir: &TestDir, name: &str) -> Self {
        Self::start_as(dir, name, None)
    }

    /// Like [`Serve::start`], as another (unprivileged) user when one is given.
    fn start_as(dir: &TestDir, name: &str, user: Option<&nix::unistd::User>) -> Self {
        use std::os::unix::process::CommandExt;
        let port = free_port();
        let log = dir.log(&format!("{name}.log"));
        let mut command = pgstorage(&["serve", "--port", &port.to_string()]);
        command
            .arg("--data-dir")
            .arg(dir.data())
            .stdout(Stdio::piped())
            .stderr(File::create(&log).unwrap());
        if let Some(user) = user {
            command.uid(user.uid.as_raw()).gid(user.gid.as_raw());
        }
        let mut child = command.spawn().unwrap();

        // stdout is read on a thread (and drained to the end, so the pipe never fills).
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut serve = Self {
            child,
            url: String::new(),
            anon_key: String::new(),
            service_key: String::new(),
            log,
        };
        let deadline = Instant::now() + WAIT;
        while serve.url.is_empty() || serve.anon_key.is_empty() || serve.service_key.is_empty() {
            let line = match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => line,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("serve printed no keys within {WAIT:?}:\n{}", serve.stderr())
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => panic!(
                    "serve exited before printing its keys ({:?}):\n{}",
                    serve.child.wait(),
                    serve.stderr()
                ),
            };
            if let Some(url) = line.strip_prefix("pgstorage is listening on ") {
                serve.url = url.trim().to_string();
                assert!(serve.url.ends_with(&format!(":{port}")), "{line}");
            } else if let Some(key) = line.strip_prefix("anon key:") {
                serve.anon_key = key.trim().to_string();
            } else if let Some(key) = line.strip_prefix("service_role key:") {
                serve.service_key = key.trim().to_string();
            }
        }
        serve
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for the process to exit, within [`WAIT`].
    fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "serve did not exit within {WAIT:?}:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, and the exit status.
    fn terminate(&mut self) -> ExitStatus {
        kill(self.pid(), Signal::SIGTERM).unwrap();
        self.wait()
    }

    /// kill -9: the server gets no chance to stop its PostgreSQL.
    fn kill9(&mut self) {
        kill(self.pid(), Signal::SIGKILL).unwrap();
        self.wait();
    }

    async fn call(
        &self,
        key: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let client = reqwest::Client::builder().timeout(WAIT).build().unwrap();
        let mut request = client
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(key);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn create_bucket(&self, key: &str, name: &str) -> (u16, Value) {
        self.call(key, Method::POST, "/bucket", Some(json!({ "name": name })))
            .await
    }

    async fn get_bucket(&self, key: &str, id: &str) -> (u16, Value) {
        self.call(key, Method::GET, &format!("/bucket/{id}"), None)
            .await
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = kill(self.pid(), Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(30);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `pgstorage token` for the data directory, as (success, stdout, stderr).
fn token_command(data_dir: &Path, args: &[&str]) -> (bool, String, String) {
    let mut command = pgstorage(&["token"]);
    command.arg("--data-dir").arg(data_dir).args(args);
    let output = run_to_end(command);
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).trim().to_string(),
        String::from_utf8_lossy(&output.stderr).trim().to_string(),
    )
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_normal_user_runs_the_embedded_default_too() {
    // As root the cluster runs as `postgres` (the other tests); as a normal user it runs as that
    // same user. `nobody` owns nothing else here, so it proves the unprivileged path.
    let Some(nobody) = nix::unistd::User::from_name("nobody").unwrap() else {
        panic!("this test needs a `nobody` user");
    };
    let dir = TestDir::new("nobody");
    if nix::unistd::Uid::effective().is_root() {
        std::os::unix::fs::chown(
            &dir.root,
            Some(nobody.uid.as_raw()),
            Some(nobody.gid.as_raw()),
        )
        .unwrap();
    }
    let user = nix::unistd::Uid::effective().is_root().then_some(&nobody);
    let server = Serve::start_as(&dir, "serve", user);
    let (status, body) = server.create_bucket(&server.service_key, "b").await;
    assert_eq!(status, 200, "{body}");
    if let Some(user) = user {
        // The cluster's files and processes belong to that user.
        let pgdata = std::fs::metadata(dir.data().join("postgres")).unwrap();
        assert_eq!(
            std::os::unix::fs::MetadataExt::uid(&pgdata),
            user.uid.as_raw()
        );
        let pid = live_postmaster(&dir.data()).expect("a running postmaster");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
        assert_eq!(
            uid_line.split_whitespace().nth(1),
            Some(user.uid.as_raw().to_string().as_str()),
            "{uid_line}"
        );
    }
    drop(server);
    assert!(
        live_postmaster(&dir.data()).is_none(),
        "postgres stopped with the server"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_on_an_empty_directory_prints_keys_that_work() {
    let dir = TestDir::new("keys");
    let server = Serve::start(&dir, "serve");
    assert!(dir.data().join("postgres/PG_VERSION").exists());

    let (status, body) = server.create_bucket(&server.service_key, "avatars").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({ "name": "avatars" }));

    // The anon key is a valid key for anon, whom no policy allows to create buckets.
    let (status, body) = server.create_bucket(&server.anon_key, "guest").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["code"], "AccessDenied", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_postgres_too_and_data_survives_a_restart() {
    let dir = TestDir::new("restart");
    let mut server = Serve::start(&dir, "first");
    assert!(live_postmaster(&dir.data()).is_some());
    let (status, body) = server.create_bucket(&server.service_key, "avatars").await;
    assert_eq!(status, 200, "{body}");

    let status = server.terminate();
    assert!(status.success(), "{status:?}:\n{}", server.stderr());
    assert_eq!(
        live_postmaster(&dir.data()),
        None,
        "PostgreSQL still runs after serve exited"
    );
    drop(server);

    let server = Serve::start(&dir, "second");
    let (status, bucket) = server.get_bucket(&server.service_key, "avatars").await;
    assert_eq!(status, 200, "{bucket}");
    assert_eq!(bucket["name"], "avatars");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_the_same_directory_is_refused() {
    let dir = TestDir::new("in-use");
    let first = Serve::start(&dir, "first");
    let (status, _) = first.create_bucket(&first.service_key, "avatars").await;
    assert_eq!(status, 200);

    let mut second = pgstorage(&["serve", "--port", &free_port().to_string()]);
    second.arg("--data-dir").arg(dir.data());
    let output = run_to_end(second);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "the second server started:\n{stderr}"
    );
    assert!(stderr.contains("in use"), "{stderr}");

    // The first one is untouched and still serving.
    let (status, bucket) = first.get_bucket(&first.service_key, "avatars").await;
    assert_eq!(status, 200, "{bucket}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_kill_9_the_next_server_stops_the_orphaned_postgres_and_serves() {
    let dir = TestDir::new("kill9");
    let mut first = Serve::start(&dir, "first");
    let (status, _) = first.create_bucket(&first.service_key, "avatars").await;
    assert_eq!(status, 200);
    first.kill9();
    let orphan = live_postmaster(&dir.data()).expect("PostgreSQL survives its server's kill -9");

    let second = Serve::start(&dir, "second");
    assert!(
        !pid_alive(orphan),
        "the orphaned postmaster {orphan} still runs"
    );
    let (status, bucket) = second.get_bucket(&second.service_key, "avatars").await;
    assert_eq!(status, 200, "{bucket}");
    let (status, body) = second.create_bucket(&second.service_key, "after").await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_command_mints_tokens_the_server_accepts() {
    let dir = TestDir::new("token");
    let server = Serve::start(&dir, "serve");
    let (ok, token, stderr) =
        token_command(&dir.data(), &["--role", "authenticated", "--sub", "u1"]);
    assert!(ok, "{stderr}");
    assert_eq!(token.split('.').count(), 3, "{token}");

    // A policy letting users create buckets they own, set up as the embedded superuser.
    let cluster = pgstorage::db::embedded::ClusterDir::new(&dir.data()).unwrap();
    let admin = cluster.config(
        pgstorage::db::embedded::SUPERUSER,
        pgstorage::db::embedded::DATABASE,
    );
    pgstorage::db::connect(&admin)
        .await
        .unwrap()
        .batch_execute(
            "create policy users_create_own on storage.buckets for insert to authenticated \
             with check (owner_id = auth.uid())",
        )
        .await
        .unwrap();

    let (status, body) = server.create_bucket(&token, "u1-files").await;
    assert_eq!(status, 200, "{body}");
    let (_, bucket) = server.get_bucket(&server.service_key, "u1-files").await;
    assert_eq!(bucket["owner"], "u1");

    // A token from another directory's secret is refused.
    let other = TestDir::new("token-other");
    std::fs::create_dir_all(other.data()).unwrap();
    std::fs::write(
        other.data().join("jwt-secret"),
        "another-secret-another-secret-another",
    )
    .unwrap();
    let (ok, foreign, stderr) = token_command(&other.data(), &["--role", "service_role"]);
    assert!(ok, "{stderr}");
    let (status, body) = server.create_bucket(&foreign, "foreign").await;
    assert_eq!(status, 401, "{body}");
}

#[tokio::test]
async fn the_token_command_without_a_secret_fails_clearly() {
    let dir = TestDir::new("no-secret");
    std::fs::create_dir_all(dir.data()).unwrap();
    let (ok, stdout, stderr) = token_command(&dir.data(), &["--role", "anon"]);
    assert!(!ok, "minted {stdout:?} without a secret");
    assert_eq!(stdout, "");
    assert!(stderr.contains("no JWT secret"), "{stderr}");
    assert!(stderr.contains("--jwt-secret"), "{stderr}");
    // It does not create one either (only `serve` does).
    assert!(!dir.data().join("jwt-secret").exists());
}
