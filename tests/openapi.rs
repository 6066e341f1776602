//! The OpenAPI document (`/openapi.json`): valid OpenAPI 3.1 in shape, describing every route
//! the REST router serves, and every operation it describes served. schemathesis checks the live
//! server against it (tests/clients/openapi, run by `schemathesis` below).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use common::TestServer;
use reqwest::Method;
use serde_json::Value;

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn document() -> Value {
    pgstorage::http::openapi_document()
}

/// `(path, method)` for every operation in the document.
fn operations(document: &Value) -> Vec<(String, String, &Value)> {
    let mut out = Vec::new();
    for (path, item) in document["paths"].as_object().expect("paths is an object") {
        for method in METHODS {
            if let Some(operation) = item.get(method) {
                out.push((path.clone(), method.to_string(), operation));
            }
        }
    }
    out
}

/// Every `$ref` in `value`.
fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("$ref", Value::String(target)) => out.push(target),
                    _ => refs(value, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

/// The `{name}`s of a path template.
fn template_params(path: &str) -> BTreeSet<String> {
    path.split('{')
        .skip(1)
        .filter_map(|rest| rest.split_once('}').map(|(name, _)| name.to_string()))
        .collect()
}

#[test]
fn the_document_is_openapi_3_1_in_shape() {
    let document = document();
    assert_eq!(document["openapi"], "3.1.0");
    assert!(document["info"]["title"].is_string());
    assert_eq!(document["info"]["version"], env!("CARGO_PKG_VERSION"));
    let schemes = &document["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["type"], "http");
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(schemes["apikey"]["type"], "apiKey");
    assert_eq!(schemes["apikey"]["in"], "header");
    assert_eq!(schemes["apikey"]["name"], "apikey");
    let error = &document["components"]["schemas"]["ErrorBody"];
    for field in ["statusCode", "code", "error", "message"] {
        assert_eq!(error["properties"][field]["type"], "string", "{field}");
    }

    let operations = operations(&document);
    assert!(
        operations.len() > 30,
        "only {} operations",
        operations.len()
    );
    let mut ids = BTreeSet::new();
    for (path, method, operation) in &operations {
        let at = format!("{} {path}", method.to_uppercase());
        assert!(path.starts_with('/'), "{at}: paths start with /");
        assert!(
            !path.contains("{*"),
            "{at}: an axum wildcard left in the path"
        );
        let id = operation["operationId"].as_str().unwrap_or_default();
        assert!(!id.is_empty(), "{at}: no operationId");
        assert!(ids.insert(id.to_string()), "{at}: operationId {id} twice");
        let responses = operation["responses"].as_object();
        assert!(
            responses.is_some_and(|r| !r.is_empty()),
            "{at}: no responses"
        );
        for (status, response) in responses.into_iter().flatten() {
            let valid = status == "default"
                || (status.len() == 3
                    && status.starts_with(['1', '2', '3', '4', '5'])
                    && (status[1..].chars().all(|c| c.is_ascii_digit()) || &status[1..] == "XX"));
            assert!(valid, "{at}: response status {status}");
            assert!(
                response["description"].is_string(),
                "{at} {status}: no description"
            );
        }
        // Every templated name is a declared path parameter, and nothing else is.
        let declared: BTreeSet<String> = operation["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["in"] == "path")
            .map(|p| {
                assert_eq!(p["required"], true, "{at}: path parameters are required");
                p["name"].as_str().unwrap_or_default().to_string()
            })
            .collect();
        assert_eq!(declared, template_params(path), "{at}: path parameters");
        for parameter in operation["parameters"].as_array().into_iter().flatten() {
            let place = parameter["in"].as_str().unwrap_or_default();
            assert!(
                ["path", "query", "header", "cookie"].contains(&place),
                "{at}: parameter in {place}"
            );
            assert!(parameter["schema"].is_object(), "{at}: parameter schema");
        }
        if let Some(security) = operation.get("security") {
            for requirement in security.as_array().expect("security is a list") {
                for scheme in requirement.as_object().expect("a requirement").keys() {
                    assert!(schemes.get(scheme).is_some(), "{at}: scheme {scheme}");
                }
            }
        }
    }

    let mut targets = Vec::new();
    refs(&document, &mut targets);
    assert!(!targets.is_empty());
    for target in targets {
        let name = target
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("$ref {target} outside components/schemas"));
        assert!(
            document["components"]["schemas"].get(name).is_some(),
            "$ref {target} does not resolve"
        );
    }
}

/// Every `.route("...")` written in the REST front's sources: routes registered without
/// `routes!`, which the document learns nothing about.
fn plain_routes() -> BTreeMap<String, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = BTreeMap::new();
    for dir in ["http", "resumable"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap().flatten() {
            let file = entry.path();
            if file.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&file).unwrap();
            for piece in text.split(".route(").skip(1) {
                let piece = piece.trim_start();
                let Some(rest) = piece.strip_prefix('"') else {
                    continue;
                };
                let path = rest.split('"').next().unwrap_or_default();
                found.insert(path.to_string(), file.display().to_string());
            }
        }
    }
    found
}

/// Routes served on purpose without an entry: `/metrics` (Prometheus text, on its own router
/// and only when enabled; see docs/metrics.md).
// `/metrics` (Prometheus' format) and the web console's pages are not the REST API.
const UNDESCRIBED: &[&str] = &["/metrics", "/console", "/console/", "/console/{*asset}"];

#[test]
fn every_route_the_router_serves_is_described() {
    let document = document();
    let paths = document["paths"].as_object().unwrap();
    let plain = plain_routes();
    for (route, file) in &plain {
        if UNDESCRIBED.contains(&route.as_str()) {
            continue;
        }
        // A trailing-slash alias is served by the same handlers as the path without it.
        let described = route.replace("{*", "{");
        let described = described
            .strip_suffix('/')
            .filter(|p| !p.is_empty())
            .unwrap_or(&described);
        assert!(
            paths.contains_key(described),
            "{file} serves {route} with a plain `.route`, and the OpenAPI document does not \
             describe {described}: register it with `routes!` and a #[utoipa::path]"
        );
    }
    // Besides those, the trailing-slash aliases and TUS's OPTIONS (described once) on three
    // described paths: new routes belong in `routes!`.
    assert_eq!(
        plain.len(),
        UNDESCRIBED.len() + 6,
        "plain routes: {plain:?}"
    );
}

/// A request for every described operation reaches a handler (not the fallback, not "method
/// not allowed"), at `/` and under `/storage/v1`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_described_operation_is_served() {
    let server = TestServer::start().await;
    let key = server.service_key();
    let document = document();
    for (path, method, _) in operations(&document) {
        let concrete = template_params(&path).iter().fold(path.clone(), |p, name| {
            p.replace(&format!("{{{name}}}"), "x")
        });
        for prefix in ["", "/storage/v1"] {
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let response = server
                .request(method.clone(), &format!("{prefix}{concrete}"), Some(&key))
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body = response.text().await.unwrap();
            let at = format!("{method} {prefix}{concrete}: {status} {body}");
            // A handler may refuse a method itself (with its error body); axum's own 405 is empty.
            assert!(status != 405 || !body.is_empty(), "{at}");
            assert!(!body.contains("Route not found"), "{at}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_document_is_served_with_its_prefix_as_server() {
    let server = TestServer::start().await;
    for (prefix, base) in [("", "/"), ("/storage/v1", "/storage/v1")] {
        // No credentials: the description is public.
        let response = server
            .request(Method::GET, &format!("{prefix}/openapi.json"), None)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json")
        );
        let served: Value = response.json().await.unwrap();
        assert_eq!(served["servers"][0]["url"], base);
        let mut expected = document();
        expected["servers"] = served["servers"].clone();
        assert_eq!(served, expected);
    }
}

/// schemathesis (PyPI, pinned in tests/clients/openapi/requirements.txt, installed by
/// `scripts/install-client-deps`) generates requests from the served document, valid and not,
/// and checks every answer: no 5xx, and every documented answer matches its schema. Bounded
/// (examples per operation, a fixed seed) to stay around two minutes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_server_errors_or_schema_violations() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/openapi");
    let schemathesis = dir.join(".venv/bin/schemathesis");
    assert!(
        schemathesis.exists(),
        "schemathesis is not installed ({} is missing): run `scripts/install-client-deps`",
        schemathesis.display()
    );
    let server = TestServer::start().await;
    // Something to find: a public and a private bucket, an object in each.
    for (bucket, public) in [("x", true), ("private", false)] {
        server.create_bucket(bucket, public).await;
        let response = server
            .request(
                Method::POST,
                &format!("/object/{bucket}/x"),
                Some(&server.service_key()),
            )
            .header("content-type", "text/plain")
            .body("hello")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let report =
        std::env::temp_dir().join(format!("pgstorage-schemathesis-{}", std::process::id()));
    let args = [
        "run".to_string(),
        format!("{}/openapi.json", server.url),
        "--checks=not_a_server_error,response_schema_conformance".into(),
        // Not the examples phase: its generation is flaky inside Hypothesis (FlakyFailure on a
        // body it drew twice); coverage and fuzzing use the documented examples anyway.
        "--phases=coverage,fuzzing".into(),
        "--max-examples=25".into(),
        "--seed=15".into(),
        "--workers=2".into(),
        "--request-timeout=30".into(),
        "--no-color".into(),
        "--generation-database=none".into(),
        format!("--report-dir={}", report.display()),
        format!("--header=Authorization: Bearer {}", server.service_key()),
    ];
    let mut command = tokio::process::Command::new(&schemathesis);
    command
        .args(&args)
        .current_dir(&dir)
        .env("NO_COLOR", "1")
        .env("SCHEMATHESIS_HOOKS", dir.join("hooks.py"))
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .env_remove("ALL_PROXY")
        .env_remove("all_proxy")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(std::time::Duration::from_secs(270), command.output())
        .await
        .expect("schemathesis did not finish within 270 s")
        .expect("running schemathesis");
    let _ = std::fs::remove_dir_all(&report);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "schemathesis {} failed ({})\n---------- stdout ----------\n{stdout}\n\
         ---------- stderr ----------\n{stderr}",
        args.join(" "),
        output.status
    );
    println!("{stdout}");
}
