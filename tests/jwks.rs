//! Request tokens signed with asymmetric keys (`--jwt-jwks`), next to the HS256 secret: a user
//! token signed by someone else's key runs under RLS as that user; every way such a token can
//! be wrong is a 401; the HS256 secret keeps working and cannot be impersonated with a public
//! key; a broken JWKS stops the server at start-up with one clear line.

mod common;
mod object_helpers;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use common::process::{self, WAIT, free_port, run_to_end};
use common::{Options, TestDb, TestServer, json_of};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use object_helpers::{download, row, upload};
use reqwest::Method;
use serde_json::{Value, json};

/// The owner-folder policies: a user may read and write under `<their sub>/...`.
const OWNER_FOLDER: &str = "
    create policy own_read on storage.objects for select to authenticated
        using ((storage.foldername(name))[1] = auth.uid());
    create policy own_insert on storage.objects for insert to authenticated
        with check ((storage.foldername(name))[1] = auth.uid());
";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A signing key and its public JWK.
struct Key {
    signing: EncodingKey,
    alg: Algorithm,
    jwk: Value,
}

impl Key {
    /// A fresh P-256 key pair (ES256) with `kid`, as Supabase Auth publishes them.
    fn es256(kid: &str) -> Self {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let point = pair.public_key_raw(); // 04 || x || y
        Self {
            signing: EncodingKey::from_ec_der(&pair.serialize_der()),
            alg: Algorithm::ES256,
            jwk: json!({
                "kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256", "use": "sig",
                "x": b64(&point[1..33]), "y": b64(&point[33..65]),
            }),
        }
    }

    /// A fresh Ed25519 key pair (EdDSA), without `kid`.
    fn ed25519() -> Self {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        Self {
            signing: EncodingKey::from_ed_der(&pair.serialize_der()),
            alg: Algorithm::EdDSA,
            jwk: json!({"kty": "OKP", "crv": "Ed25519", "x": b64(pair.public_key_raw())}),
        }
    }

    /// The RSA test key committed under tests/fixtures (RS256, kid `test-rsa`).
    fn rs256() -> Self {
        let pem = include_str!("fixtures/rsa-2048-test-key.pem");
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap();
        Self {
            signing: EncodingKey::from_rsa_der(&der),
            alg: Algorithm::RS256,
            jwk: serde_json::from_str(include_str!("fixtures/rsa-2048-test-key.jwk.json")).unwrap(),
        }
    }

    fn kid(&self) -> Option<&str> {
        self.jwk["kid"].as_str()
    }

    /// A token with this key's algorithm, naming `kid`.
    fn sign_as(&self, kid: Option<&str>, claims: Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = kid.map(str::to_string);
        jsonwebtoken::encode(&header, &claims, &self.signing).unwrap()
    }

    /// A token naming this key's own `kid`.
    fn sign(&self, claims: Value) -> String {
        self.sign_as(self.kid(), claims)
    }
}

fn jwks(keys: &[&Key]) -> String {
    json!({ "keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() }).to_string()
}

/// A Supabase-style user session's claims.
fn user(sub: &str) -> Value {
    json!({
        "sub": sub, "role": "authenticated", "aud": "authenticated",
        "iss": "https://example.supabase.co/auth/v1", "iat": now(), "exp": now() + 3600,
    })
}

async fn server_with(keys: &[&Key]) -> TestServer {
    TestServer::start_with(Options {
        jwt_jwks: Some(jwks(keys)),
        ..Options::default()
    })
    .await
}

/// GET /bucket with `token` as bearer, as (status, body).
async fn list_buckets(server: &TestServer, token: &str) -> (u16, Value) {
    json_of(
        server
            .request(Method::GET, "/bucket", Some(token))
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// Asserts a 401 InvalidJWT answer whose message contains `why`.
fn assert_invalid_jwt((status, body): (u16, Value), why: &str) {
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["code"], "InvalidJWT", "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains(why), "expected {why:?} in {message:?}");
}

#[tokio::test]
async fn an_es256_user_token_runs_as_that_user_under_rls() {
    let key = Key::es256("supabase-key-1");
    let server = server_with(&[&key]).await;
    server.create_bucket("docs", false).await;
    server.db.sql(OWNER_FOLDER).await;
    let u1 = key.sign(user("u1"));

    let (status, body) = upload(&server, &u1, "docs", "u1/a.txt", "mine", false).await;
    assert_eq!(status, 200, "{body}");
    let owner = row(&server, "docs", "u1/a.txt").await.unwrap().owner_id;
    assert_eq!(owner.as_deref(), Some("u1"));
    assert_eq!(
        download(&server, &u1, "docs", "u1/a.txt").await,
        (200, b"mine".to_vec())
    );

    // The policy sees the token's sub: another user's folder is closed to u1 ...
    let (status, body) = upload(&server, &u1, "docs", "u2/b.txt", "not mine", false).await;
    assert_eq!(status, 403, "{body}");
    // ... and u1's file to another user of the same key.
    let u2 = key.sign(user("u2"));
    assert_eq!(download(&server, &u2, "docs", "u1/a.txt").await.0, 404);
}

#[tokio::test]
async fn eddsa_and_rs256_tokens_identify_too() {
    let (ed, rs) = (Key::ed25519(), Key::rs256());
    let server = server_with(&[&ed, &rs]).await;
    server.create_bucket("photos", false).await;
    let service = json!({"role": "service_role", "exp": now() + 60});
    for key in [&ed, &rs] {
        let (status, body) = list_buckets(&server, &key.sign(service.clone())).await;
        assert_eq!(status, 200, "{:?}: {body}", key.alg);
        assert_eq!(body[0]["id"], "photos", "{body}");
    }
}

#[tokio::test]
async fn tokens_that_do_not_verify_are_401() {
    let key = Key::es256("k1");
    let server = server_with(&[&key]).await;
    let service = || json!({"role": "service_role", "exp": now() + 60});

    // Signed with another key under the same kid, or without a kid.
    let intruder = Key::es256("k1");
    for kid in [Some("k1"), None] {
        let token = intruder.sign_as(kid, service());
        assert_invalid_jwt(
            list_buckets(&server, &token).await,
            "signature does not match",
        );
    }
    // A kid the JWKS does not have.
    let token = key.sign_as(Some("k2"), service());
    assert_invalid_jwt(list_buckets(&server, &token).await, "unknown kid 'k2'");
    // Expired, and not valid yet.
    let token = key.sign(json!({"role": "service_role", "exp": now() - 3600}));
    assert_invalid_jwt(list_buckets(&server, &token).await, "expired");
    let token = key.sign(json!({"role": "service_role", "nbf": now() + 3600}));
    assert_invalid_jwt(list_buckets(&server, &token).await, "not valid yet");
    // An RS256 token naming the EC key's kid is never checked against it.
    let rsa = Key::rs256();
    let token = rsa.sign_as(Some("k1"), service());
    assert_invalid_jwt(
        list_buckets(&server, &token).await,
        "algorithm 'RS256' not allowed for key 'k1'",
    );
    // alg none.
    let none = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","kid":"k1"}"#),
        b64(service().to_string().as_bytes())
    );
    assert_invalid_jwt(
        list_buckets(&server, &none).await,
        "algorithm 'none' not allowed",
    );
}

#[tokio::test]
async fn hs256_keeps_working_and_a_public_key_is_no_secret() {
    let key = Key::es256("k1");
    let server = server_with(&[&key]).await;
    server.create_bucket("photos", false).await; // with the HS256 service key

    let (status, body) = list_buckets(&server, &server.service_key()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body[0]["id"], "photos", "{body}");

    // HS256 "signed" with the public key: as the JWK, as x||y, as the raw point.
    let x = key.jwk["x"].as_str().unwrap();
    let y = key.jwk["y"].as_str().unwrap();
    for secret in [key.jwk.to_string(), format!("{x}{y}"), x.to_string()] {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some("k1".into());
        let forged = jsonwebtoken::encode(
            &header,
            &json!({"role": "service_role"}),
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap();
        assert_invalid_jwt(
            list_buckets(&server, &forged).await,
            "signature does not match",
        );
    }
}

#[tokio::test]
async fn a_role_outside_the_allow_list_is_403() {
    let key = Key::es256("k1");
    let server = server_with(&[&key]).await;
    let token = key.sign(json!({"role": "postgres", "exp": now() + 60}));
    let (status, body) = list_buckets(&server, &token).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["code"], "AccessDenied", "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("postgres"),
        "{body}"
    );
}

// ---------------------------------------------------------------------------------------------
// The binary: --jwt-jwks at start-up
// ---------------------------------------------------------------------------------------------

/// A fresh directory under the target's tmp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("jwks-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `pgstorage serve` over `db`, with none of the caller's PGSTORAGE_* settings.
fn serve(db: &TestDb, dir: &TempDir, port: u16) -> Command {
    let mut command = process::pgstorage(&["serve"]);
    command
        .args(["--database-url", &db.admin_url()])
        .args(["--request-database-url", &db.request_url()])
        .args([
            "--jwt-secret",
            common::JWT_SECRET,
            "--port",
            &port.to_string(),
        ])
        .arg("--data-dir")
        .arg(dir.0.join("data"));
    command
}

/// A spawned server, killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn a_broken_jwks_stops_start_up_with_one_clear_line() {
    let db = TestDb::new().await;
    let dir = TempDir::new();
    let missing = dir.0.join("missing.json");
    let cases: Vec<(Vec<String>, Option<String>, String)> = vec![
        (
            vec![
                "--jwt-jwks".into(),
                r#"{"keys":[{"kty":"oct","kid":"hmac","k":"c2VjcmV0"}]}"#.into(),
            ],
            None,
            "error: --jwt-jwks (inline JSON): key 0 (kid 'hmac'): symmetric".into(),
        ),
        (
            vec![],
            // The environment variable, with an EC key on a curve that is not supported.
            Some(r#"{"keys":[{"kty":"EC","crv":"P-521","x":"AA","y":"AA"}]}"#.into()),
            "error: --jwt-jwks (inline JSON): key 0: unsupported EC curve".into(),
        ),
        (
            vec!["--jwt-jwks".into(), "{not json".into()],
            None,
            "error: --jwt-jwks (inline JSON): not valid JSON".into(),
        ),
        (
            vec!["--jwt-jwks".into(), missing.display().to_string()],
            None,
            format!("error: --jwt-jwks: reading {}", missing.display()),
        ),
    ];
    for (args, env, expected) in cases {
        let mut command = serve(&db, &dir, free_port());
        command.args(&args);
        if let Some(env) = &env {
            command.env("PGSTORAGE_JWT_JWKS", env);
        }
        let output = run_to_end(command);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} {env:?}: {stderr}");
        let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error")).collect();
        assert_eq!(errors.len(), 1, "{stderr}");
        assert!(errors[0].starts_with(&expected), "{expected:?} in {stderr}");
    }
}

#[tokio::test]
async fn a_jwks_file_is_loaded_at_start_up() {
    let db = TestDb::new().await;
    let dir = TempDir::new();
    let key = Key::es256("from-file");
    let path = dir.0.join("jwks.json");
    std::fs::write(&path, jwks(&[&key])).unwrap();
    let port = free_port();
    let log = dir.0.join("serve.log");
    let mut command = serve(&db, &dir, port);
    command
        .arg("--jwt-jwks")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let mut server = Running(command.spawn().unwrap());

    let url = format!("http://127.0.0.1:{port}/bucket");
    let token = key.sign(json!({"role": "service_role", "exp": now() + 60}));
    let deadline = Instant::now() + WAIT;
    let response = loop {
        if let Ok(response) = reqwest::Client::new()
            .get(&url)
            .bearer_auth(&token)
            .send()
            .await
        {
            break response;
        }
        assert!(
            server.0.try_wait().unwrap().is_none(),
            "the server exited at start-up: {}",
            read_log()
        );
        assert!(
            Instant::now() < deadline,
            "the server did not start: {}",
            read_log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (status, body) = json_of(response).await;
    assert_eq!(status, 200, "{body}\n{}", read_log());
    assert_eq!(body, json!([]));
}
