//! The real clients, as their users run them, against a live server: `@supabase/storage-js`
//! and `supabase-js` (under Node's built-in test runner) and `storage3` (under pytest). The
//! suites live in `tests/clients/`; each test here starts a server on a fresh database, applies
//! `tests/clients/fixtures.sql`, runs one suite as a child process with the server's URL and
//! keys in its environment, and fails with the child's whole output if the suite fails.
//!
//! The client libraries are installed by `scripts/install-client-deps` (which `scripts/test`
//! runs first); without them these tests fail and say so.

mod common;

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use common::TestServer;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// A whole suite, including installs of nothing and a slow machine, stays well under this.
const SUITE_TIMEOUT: Duration = Duration::from_secs(300);

/// Policies the suites rely on (public-read on `*-readable` buckets, owner folders).
const FIXTURES: &str = include_str!("clients/fixtures.sql");

const INSTALL_HINT: &str = "install the client test dependencies with `scripts/install-client-deps` \
     (or run the whole suite with `scripts/test`, which does it first)";

fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

/// The `*.test.mjs` files of one JavaScript suite, in a stable order.
fn js_test_files(suite: &str) -> Vec<String> {
    let dir = clients_dir().join("js").join(suite);
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".test.mjs"))
        .map(|name| format!("{suite}/{name}"))
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no *.test.mjs files in {}",
        dir.display()
    );
    files
}

/// Node's major version, from `node --version` ("v20.20.2").
fn node_major() -> u32 {
    let output = std::process::Command::new("node")
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("Node.js is needed for the JavaScript client suites: {e}"));
    let version = String::from_utf8_lossy(&output.stdout);
    version
        .trim()
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|major| major.parse().ok())
        .unwrap_or_else(|| panic!("unexpected `node --version`: {version}"))
}

async fn run_js_suite(suite: &str, packages: &[&str]) {
    let js = clients_dir().join("js");
    for package in packages {
        let manifest = js.join("node_modules").join(package).join("package.json");
        assert!(
            manifest.exists(),
            "{package} is not installed ({} is missing): {INSTALL_HINT}",
            manifest.display()
        );
    }
    let mut args = Vec::new();
    // supabase-js builds a realtime client, which needs a global WebSocket: Node 22 has one,
    // Node 20 behind this flag.
    if node_major() < 22 {
        args.push("--experimental-websocket".to_string());
    }
    args.push("--test".into());
    args.push("--test-reporter=spec".into());
    args.extend(js_test_files(suite));
    run_suite(suite, Path::new("node"), &args, &js).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_js() {
    run_js_suite("storage-js", &["@supabase/storage-js"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supabase_js() {
    run_js_suite("supabase-js", &["@supabase/supabase-js"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage3() {
    let dir = clients_dir().join("python");
    let python = dir.join(".venv/bin/python");
    assert!(
        python.exists(),
        "the Python client virtualenv is missing ({}): {INSTALL_HINT}",
        python.display()
    );
    let check = std::process::Command::new(&python)
        .args(["-c", "import storage3, pytest"])
        .output()
        .expect("running the virtualenv's python");
    assert!(
        check.status.success(),
        "storage3 or pytest is not installed in {}: {INSTALL_HINT}\n{}",
        python.display(),
        String::from_utf8_lossy(&check.stderr)
    );
    let args = ["-m", "pytest", "-q", "-rfE", "."].map(String::from);
    run_suite("storage3", &python, &args, &dir).await;
}

/// Starts a server with the fixtures, runs `program args` in `cwd` against it, and panics with
/// the child's output unless it succeeds within [`SUITE_TIMEOUT`].
async fn run_suite(name: &str, program: &Path, args: &[String], cwd: &Path) {
    let server = TestServer::start().await;
    server.db.sql(FIXTURES).await;

    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .current_dir(cwd)
        .env("PGSTORAGE_URL", &server.url)
        .env("PGSTORAGE_SERVICE_KEY", server.service_key())
        .env("PGSTORAGE_ANON_KEY", server.anon_key())
        .env("PGSTORAGE_USER1_KEY", server.user_key("u1"))
        .env("PGSTORAGE_USER2_KEY", server.user_key("u2"))
        .env("NO_COLOR", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        // The server is on 127.0.0.1; a proxy from the environment must not get in between.
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a timeout ends the runner and every worker it started.
        .process_group(0)
        .kill_on_drop(true);
    let child = command
        .spawn()
        .unwrap_or_else(|e| panic!("{name}: starting {}: {e}", program.display()));
    let group = child.id().map(|id| Pid::from_raw(id as i32));

    let command_line = format!("{} {}", program.display(), args.join(" "));
    match tokio::time::timeout(SUITE_TIMEOUT, child.wait_with_output()).await {
        Err(_) => {
            if let Some(group) = group {
                let _ = killpg(group, Signal::SIGKILL);
            }
            panic!(
                "{name}: `{command_line}` did not finish within {} s",
                SUITE_TIMEOUT.as_secs()
            );
        }
        Ok(Err(e)) => panic!("{name}: waiting for `{command_line}`: {e}"),
        Ok(Ok(output)) => {
            let stdout = String::from_utf8_lossy(&output.stdout);
            let stderr = String::from_utf8_lossy(&output.stderr);
            if !output.status.success() {
                panic!(
                    "{name}: `{command_line}` failed ({})\n\
                     ---------- stdout ----------\n{stdout}\n\
                     ---------- stderr ----------\n{stderr}",
                    describe(output.status)
                );
            }
            // Shown by `cargo nextest run --no-capture` (and kept by nextest on success).
            println!("{name}: {command_line}\n{stdout}");
        }
    }
}

fn describe(status: ExitStatus) -> String {
    match status.code() {
        Some(code) => format!("exit code {code}"),
        None => format!("{status}"),
    }
}
