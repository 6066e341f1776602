//! `/metrics`: off unless asked for; on the main port for service_role only (`--metrics`), on a
//! port of its own for anyone who can reach it (`--metrics-port`); counters move with requests.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{JWT_SECRET, TestDb, TestStore, keys, process, test_backend, token};
use pgstorage::auth::Authenticator;
use pgstorage::http::{self, AppOptions, AppState};
use reqwest::Method;
use serde_json::json;

/// An in-process server with metrics on the main port.
async fn server(metrics: bool) -> (String, TestDb, pgstorage::core::Storage) {
    let db = TestDb::new().await;
    let storage = db.storage(4).await;
    let auth = Authenticator::new(
        keys(),
        ["anon", "authenticated", "service_role"]
            .map(String::from)
            .to_vec(),
    );
    let s3 = pgstorage::s3::S3Front::new(storage.clone(), auth.clone(), common::s3_credentials());
    let exporter = metrics.then(|| http::metrics::Exporter::install(storage.clone()));
    let app = http::app_with(
        AppState {
            storage: storage.clone(),
            auth,
            s3: Some(s3),
            transform: Default::default(),
        },
        AppOptions {
            metrics: exporter,
            metrics_route: metrics,
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(http::serve(
        listener,
        app,
        http::ServeOptions::default(),
        std::future::pending(),
    ));
    (url, db, storage)
}

/// The value of the sample whose line starts with `series` (name and labels, in the
/// exporter's order of labels: as given when recorded).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|line| line.starts_with(series))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

async fn scrape(http: &reqwest::Client, url: &str) -> String {
    let response = http
        .get(format!("{url}/metrics"))
        .bearer_auth(token("service_role", None))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    response.text().await.unwrap()
}

#[tokio::test]
async fn counters_move_with_requests() {
    let (url, _db, storage) = server(true).await;
    let http = reqwest::Client::new();
    let service = token("service_role", None);
    let created = http
        .post(format!("{url}/bucket"))
        .bearer_auth(&service)
        .json(&json!({ "name": "m" }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 200);
    let body = vec![b'x'; 10_000];
    let uploaded = http
        .post(format!("{url}/object/m/a.bin"))
        .bearer_auth(&service)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(uploaded.status(), 200);
    let before = scrape(&http, &url).await;
    let upload_series = "pgstorage_http_requests_total{front=\"rest\",method=\"POST\",route=\"/object/{bucket}/{*path}\",operation=\"storage.upload\",status=\"200\"}";
    assert_eq!(sample(&before, upload_series), Some(1.0), "{before}");
    assert!(
        sample(
            &before,
            "pgstorage_http_received_bytes_total{front=\"rest\"}"
        )
        .unwrap()
            >= 10_000.0,
        "{before}"
    );

    // A download under /storage/v1 counts under the same route; a refused one with its 4xx.
    for _ in 0..2 {
        let got = http
            .get(format!("{url}/storage/v1/object/authenticated/m/a.bin"))
            .bearer_auth(&service)
            .send()
            .await
            .unwrap();
        assert_eq!(got.status(), 200);
        assert_eq!(got.bytes().await.unwrap().len(), 10_000);
    }
    let missing = http
        .get(format!("{url}/object/authenticated/m/none.bin"))
        .bearer_auth(&service)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    // The S3 front and the resumable front are told apart.
    // (unsigned: anonymous, as S3 has it)
    let s3 = http.get(format!("{url}/s3/m")).send().await.unwrap();
    assert!(s3.status().as_u16() < 500, "{}", s3.status());
    let tus = http
        .request(Method::OPTIONS, format!("{url}/upload/resumable"))
        .send()
        .await
        .unwrap();
    assert!(tus.status().is_success(), "{}", tus.status());
    storage
        .collect_garbage(Duration::from_secs(3600))
        .await
        .unwrap();

    let after = scrape(&http, &url).await;
    let download = "pgstorage_http_requests_total{front=\"rest\",method=\"GET\",route=\"/object/authenticated/{bucket}/{*path}\",operation=\"storage.download\",status=";
    assert_eq!(
        sample(&after, &format!("{download}\"200\"}}")),
        Some(2.0),
        "{after}"
    );
    assert_eq!(
        sample(&after, &format!("{download}\"404\"}}")),
        Some(1.0),
        "{after}"
    );
    assert!(
        sample(&after, "pgstorage_http_sent_bytes_total{front=\"rest\"}").unwrap() >= 20_000.0,
        "{after}"
    );
    assert!(
        after.contains("pgstorage_http_requests_total{front=\"s3\""),
        "{after}"
    );
    assert!(after.contains("front=\"resumable\""), "{after}");
    assert!(
        after.contains("pgstorage_http_request_duration_seconds_bucket{front=\"rest\",method=\"GET\",route=\"/object/authenticated/{bucket}/{*path}\",le=\"0.005\"}"),
        "{after}"
    );
    assert_eq!(
        sample(&after, "pgstorage_gc_runs_total"),
        Some(1.0),
        "{after}"
    );
    assert!(after.contains("pgstorage_gc_freed_keys_total"), "{after}");
    assert_eq!(
        sample(
            &after,
            "pgstorage_db_pool_max_connections{pool=\"request\"}"
        ),
        Some(4.0),
        "{after}"
    );
    assert!(
        after.contains("pgstorage_db_pool_waiting{pool=\"request\"} 0"),
        "{after}"
    );
    assert!(
        sample(&after, "pgstorage_journal_keys{state=\"staged\"}").is_some(),
        "{after}"
    );
    assert!(
        sample(&after, "pgstorage_journal_keys{state=\"released\"}").is_some(),
        "{after}"
    );
}

#[tokio::test]
async fn the_main_port_serves_metrics_to_service_role_only() {
    let (url, _db, _) = server(true).await;
    let http = reqwest::Client::new();
    for key in [
        None,
        Some(token("anon", None)),
        Some(token("authenticated", Some("u"))),
    ] {
        let mut request = http.get(format!("{url}/metrics"));
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 403);
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["code"], "AccessDenied", "{body}");
    }
    let bad = http
        .get(format!("{url}/metrics"))
        .bearer_auth("not-a-token")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 401);
}

#[tokio::test]
async fn metrics_are_off_by_default() {
    let (url, _db, _) = server(false).await;
    let response = reqwest::Client::new()
        .get(format!("{url}/metrics"))
        .bearer_auth(token("service_role", None))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}

/// `pgstorage serve` over a test database, killed when dropped.
struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn a_metrics_port_of_its_own_needs_no_credentials() {
    let db = TestDb::new().await;
    let store = TestStore::new(test_backend(), &db.name).await;
    let port = process::free_port();
    let metrics_port = process::free_port();
    let _server = Serve(
        Command::new(env!("CARGO_BIN_EXE_pgstorage"))
            .arg("serve")
            .args(["--database-url", &db.admin_url()])
            .args(["--request-database-url", &db.request_url()])
            .args(["--jwt-secret", JWT_SECRET])
            .args(store.server_args())
            .args(["--port", &port.to_string()])
            .args(["--metrics-port", &metrics_port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = http
            .get(format!("http://127.0.0.1:{port}/status"))
            .send()
            .await
            && r.status() == 200
        {
            break;
        }
        assert!(Instant::now() < deadline, "server did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let text = http
        .get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(
            "pgstorage_http_requests_total{front=\"rest\",method=\"GET\",route=\"/status\""
        ),
        "{text}"
    );
    // Not on the main port: only --metrics puts it there.
    let main = http
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .bearer_auth(token("service_role", None))
        .send()
        .await
        .unwrap();
    assert_eq!(main.status(), 404);
}

/// A server built without the S3 front (a library user's choice) still counts its REST
/// requests; building the router used to panic on the S3 front's empty router.
#[tokio::test]
async fn metrics_without_an_s3_front() {
    let db = TestDb::new().await;
    let storage = db.storage(2).await;
    let auth = Authenticator::new(keys(), vec!["anon".into(), "service_role".into()]);
    let exporter = http::metrics::Exporter::install(storage.clone());
    let app = http::app_with(
        AppState {
            storage,
            auth,
            s3: None,
            transform: Default::default(),
        },
        AppOptions {
            metrics: Some(exporter),
            metrics_route: true,
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(http::serve(
        listener,
        app,
        http::ServeOptions::default(),
        std::future::pending(),
    ));
    let http = reqwest::Client::new();
    let status = http
        .get(format!("{url}/status"))
        .send()
        .await
        .unwrap()
        .status();
    assert!(status.is_success(), "{status}");
    let text = scrape(&http, &url).await;
    assert!(text.contains("front=\"rest\""), "{text}");
}
