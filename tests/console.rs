//! The web console at `/console`: its embedded files served with their types and a strict
//! Content-Security-Policy, at `/` and under `/storage/v1`; and the console itself driven in
//! Debian's headless Chromium by `tests/clients/browser/console.test.mjs` (playwright-core),
//! which saves screenshots under `target/artifacts/console/`.
//!
//! The browser test needs `/usr/bin/chromium` (`.ci/run` installs it) and the npm package
//! (`scripts/install-client-deps`); without them it fails and says so.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::TestServer;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use reqwest::Method;
use reqwest::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, LOCATION};

/// The policies the browser scenario relies on (owner folders), shared with the client suites.
const FIXTURES: &str = include_str!("clients/fixtures.sql");

const CHROMIUM: &str = "/usr/bin/chromium";

/// Both scenarios, on a slow shared machine, stay well under this.
const BROWSER_TIMEOUT: Duration = Duration::from_secs(240);

fn console_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http/console")
}

async fn get(server: &TestServer, path: &str) -> reqwest::Response {
    server
        .request(Method::GET, path, None)
        .send()
        .await
        .unwrap()
}

/// The console's own files, as the assets directory holds them.
fn asset_names() -> BTreeSet<String> {
    std::fs::read_dir(console_dir())
        .unwrap()
        .flatten()
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect()
}

fn expected_type(name: &str) -> &'static str {
    match name.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        other => panic!("an asset of unexpected kind {other:?}: {name}"),
    }
}

#[tokio::test]
async fn every_asset_is_served_with_its_type_and_the_csp() {
    let server = TestServer::start().await;
    let names = asset_names();
    assert!(
        names.contains("index.html") && names.contains("main.js"),
        "{names:?}"
    );
    for prefix in ["", "/storage/v1"] {
        for name in &names {
            let response = get(&server, &format!("{prefix}/console/{name}")).await;
            assert_eq!(response.status(), 200, "{prefix}/console/{name}");
            let headers = response.headers().clone();
            assert_eq!(headers[CONTENT_TYPE], expected_type(name), "{name}");
            let csp = headers[CONTENT_SECURITY_POLICY].to_str().unwrap();
            for directive in [
                "default-src 'none'",
                "script-src 'self'",
                "style-src 'self'",
                "connect-src 'self'",
                "img-src 'self' blob:",
                "frame-ancestors 'none'",
                "object-src 'none'",
            ] {
                assert!(
                    csp.contains(directive),
                    "{name}: {directive} missing in {csp}"
                );
            }
            assert!(!csp.contains("unsafe"), "{csp}");
            assert_eq!(headers["x-content-type-options"], "nosniff");
            assert_eq!(headers[CACHE_CONTROL], "no-cache");
            let body = response.bytes().await.unwrap();
            let file = std::fs::read(console_dir().join(name)).unwrap();
            assert_eq!(
                body.as_ref(),
                file.as_slice(),
                "{name} is not the embedded file"
            );
        }
    }
}

#[tokio::test]
async fn the_index_is_served_at_the_folder_and_console_redirects_to_it() {
    let server = TestServer::start().await;
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for prefix in ["", "/storage/v1"] {
        let response = no_redirects
            .get(format!("{}{prefix}/console", server.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 301);
        // Relative, so it stays under whatever prefix the request came through.
        assert_eq!(response.headers()[LOCATION], "console/");

        let response = get(&server, &format!("{prefix}/console/")).await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()[CONTENT_TYPE], "text/html; charset=utf-8");
        assert!(response.headers().contains_key(CONTENT_SECURITY_POLICY));
        let html = response.text().await.unwrap();
        assert!(
            html.contains(r#"<script type="module" src="main.js">"#),
            "{html}"
        );
    }
}

#[tokio::test]
async fn an_unknown_asset_is_a_json_404() {
    let server = TestServer::start().await;
    for path in [
        "/console/nope.js",
        "/console/../Cargo.toml",
        "/console/%2e%2e/Cargo.toml",
        "/console/js/main.js",
        "/storage/v1/console/secret",
    ] {
        let response = get(&server, path).await;
        assert_eq!(response.status(), 404, "{path}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["statusCode"], "404", "{path}: {body}");
    }
}

/// Every file that a page or module refers to (`src="x"`, `href="x"`, `from './x.js'`) is one
/// the server has: a file added to the folder but not to the embedded list fails here.
#[tokio::test]
async fn every_referenced_file_is_embedded() {
    let server = TestServer::start().await;
    let mut referenced = BTreeSet::new();
    for name in asset_names() {
        let text = std::fs::read_to_string(console_dir().join(&name)).unwrap();
        for marker in ["src=\"", "href=\"", "from './", "import './"] {
            for piece in text.split(marker).skip(1) {
                let target = piece.split(['"', '\'']).next().unwrap_or_default();
                if !target.is_empty() && !target.contains(':') && !target.starts_with('#') {
                    referenced.insert(target.to_string());
                }
            }
        }
    }
    assert!(referenced.contains("main.js") && referenced.contains("api.js"));
    for name in referenced {
        let response = get(&server, &format!("/console/{name}")).await;
        assert_eq!(response.status(), 200, "referenced but not served: {name}");
    }
}

/// The console's info pane shows the owner: `GET /object/info` names the uploader's `sub`
/// (`""` for an upload without one).
#[tokio::test]
async fn object_info_names_the_owner() {
    let server = TestServer::start().await;
    server.db.sql(FIXTURES).await;
    server.create_bucket("owned", false).await;
    for (key, path) in [
        (server.user_key("u1"), "u1/mine.txt"),
        (server.service_key(), "nobody.txt"),
    ] {
        let response = server
            .request(Method::POST, &format!("/object/owned/{path}"), Some(&key))
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    }
    let service = server.service_key();
    for (path, owner) in [("u1/mine.txt", "u1"), ("nobody.txt", "")] {
        let response = server
            .request(
                Method::GET,
                &format!("/object/info/owned/{path}"),
                Some(&service),
            )
            .send()
            .await
            .unwrap();
        let (status, body) = common::json_of(response).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["owner_id"], owner, "{path}: {body}");
    }
}

/// The scenario of `tests/clients/browser/console.test.mjs` in headless Chromium.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_in_chromium() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/browser");
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: install Debian's chromium (`apt-get install chromium`; .ci/run \
         does it)"
    );
    assert!(
        dir.join("node_modules/playwright-core/package.json")
            .exists(),
        "playwright-core is not installed in {}: run `scripts/install-client-deps`",
        dir.display()
    );
    let artifacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/artifacts/console");
    std::fs::create_dir_all(&artifacts).unwrap();

    let server = TestServer::start().await;
    server.db.sql(FIXTURES).await;
    let child = tokio::process::Command::new("node")
        .args(["--test", "--test-reporter=spec", "console.test.mjs"])
        .current_dir(&dir)
        .env("PGSTORAGE_URL", &server.url)
        .env("PGSTORAGE_SERVICE_KEY", server.service_key())
        .env("PGSTORAGE_USER1_KEY", server.user_key("u1"))
        .env("CONSOLE_ARTIFACTS", &artifacts)
        .env("CHROMIUM", CHROMIUM)
        .env("NO_COLOR", "1")
        // The server is on 127.0.0.1; no proxy from the environment may get in between.
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a timeout ends node and the browser it started.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .expect("starting node (Node.js 20 or later is needed)");
    let group = child.id().map(|id| Pid::from_raw(id as i32));
    let output = match tokio::time::timeout(BROWSER_TIMEOUT, child.wait_with_output()).await {
        Ok(output) => output.unwrap(),
        Err(_) => {
            if let Some(group) = group {
                let _ = killpg(group, Signal::SIGKILL);
            }
            panic!(
                "the browser scenario did not finish within {} s",
                BROWSER_TIMEOUT.as_secs()
            );
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the browser scenario failed ({}); screenshots in {}\n---- stdout ----\n{stdout}\n---- stderr ----\n{stderr}",
        output.status,
        artifacts.display()
    );
    println!("{stdout}");
}
