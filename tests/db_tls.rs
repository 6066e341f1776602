//! TLS to PostgreSQL, with libpq's `sslmode` and `sslrootcert`, against a cluster of each test's
//! own: TCP on 127.0.0.1 with a server certificate for `localhost` signed by a CA made here (the
//! shared test cluster is Unix-socket only and stays as it is).
//!
//! Checked from the server's side too: `pg_stat_ssl` says whether a session is encrypted.
//! A guard stops each cluster and removes its directory, also when an assertion fails.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::process::{WAIT, free_port, pgstorage, run_to_end};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use pgstorage::db::embedded::{self, ClusterDir};
use pgstorage::db::migrate;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// A CA, and a server certificate it signed that names `localhost` only (not 127.0.0.1).
struct Certs {
    ca_pem: String,
    server_cert_pem: String,
    server_key_pem: String,
}

fn new_ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

fn make_certs() -> Certs {
    let ca = new_ca("pgstorage test CA");
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca).unwrap();
    Certs {
        ca_pem: ca.pem(),
        server_cert_pem: cert.pem(),
        server_key_pem: key.serialize_pem(),
    }
}

/// A cluster of one test, on 127.0.0.1:`port`, with or without TLS. Dropping it stops
/// PostgreSQL and removes its directory.
struct TlsCluster {
    root: PathBuf,
    dir: ClusterDir,
    child: Option<Child>,
    port: u16,
    /// The CA that signed the server's certificate.
    ca: PathBuf,
    /// A CA that signed nothing here.
    other_ca: PathBuf,
}

impl TlsCluster {
    async fn start(name: &str, ssl: bool) -> Self {
        let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("db-tls-{name}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&root).unwrap();
        let port = free_port();
        let mut cluster = Self {
            dir: ClusterDir::new(&root).unwrap().with_port(port),
            root,
            child: None,
            port,
            ca: PathBuf::new(),
            other_ca: PathBuf::new(),
        };
        cluster.dir.ensure_initialized().unwrap();

        let certs = make_certs();
        cluster.ca = cluster.root.join("ca.pem");
        std::fs::write(&cluster.ca, &certs.ca_pem).unwrap();
        cluster.other_ca = cluster.root.join("other-ca.pem");
        std::fs::write(&cluster.other_ca, new_ca("some other CA").pem()).unwrap();
        let cert_file = cluster
            .dir
            .write_private_file("server.crt", certs.server_cert_pem.as_bytes())
            .unwrap();
        let key_file = cluster
            .dir
            .write_private_file("server.key", certs.server_key_pem.as_bytes())
            .unwrap();
        let cert_file = cert_file.to_string_lossy().into_owned();
        let key_file = key_file.to_string_lossy().into_owned();

        let mut settings = vec![
            ("listen_addresses", "127.0.0.1"),
            ("shared_buffers", "16MB"),
            ("max_connections", "40"),
            ("fsync", "off"),
            ("synchronous_commit", "off"),
            ("full_page_writes", "off"),
            ("ssl", if ssl { "on" } else { "off" }),
        ];
        if ssl {
            settings.push(("ssl_cert_file", &cert_file));
            settings.push(("ssl_key_file", &key_file));
        }
        cluster.child = Some(cluster.dir.spawn(&settings).unwrap());
        cluster
            .dir
            .wait_ready(cluster.child.as_mut())
            .await
            .unwrap();
        cluster
    }

    /// A URL for the superuser on `host` (which must reach 127.0.0.1) with `params` appended.
    fn url(&self, host: &str, params: &str) -> String {
        format!(
            "postgresql://postgres@{host}:{}/postgres?connect_timeout=10&{params}",
            self.port
        )
    }

    fn ca(&self) -> &str {
        self.ca.to_str().unwrap()
    }

    fn other_ca(&self) -> &str {
        self.other_ca.to_str().unwrap()
    }

    /// The superuser through the Unix socket (never TLS): to look at the server's sessions.
    async fn socket_client(&self) -> tokio_postgres::Client {
        pgstorage::db::connect(&self.dir.config(embedded::SUPERUSER, "postgres"))
            .await
            .unwrap()
    }
}

impl Drop for TlsCluster {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child
            && matches!(child.try_wait(), Ok(None))
        {
            let pid = Pid::from_raw(child.id() as i32);
            let _ = kill(pid, Signal::SIGINT);
            let deadline = Instant::now() + Duration::from_secs(30);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            if matches!(child.try_wait(), Ok(None)) {
                let _ = kill(pid, Signal::SIGQUIT);
                let _ = child.wait();
            }
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Parses and connects the way the server does; errors as the operator would read them.
async fn try_connect(url: &str) -> Result<tokio_postgres::Client, String> {
    let config = pgstorage::db::parse_config(url).map_err(|e| format!("{e:#}"))?;
    pgstorage::db::connect(&config)
        .await
        .map_err(|e| format!("{e:#}"))
}

async fn connect(url: &str) -> tokio_postgres::Client {
    match try_connect(url).await {
        Ok(client) => client,
        Err(error) => panic!("{url}: {error}"),
    }
}

async fn connect_err(url: &str) -> String {
    match try_connect(url).await {
        Ok(_) => panic!("{url} connected but should not have"),
        Err(error) => {
            eprintln!("{url}\n  -> {error}");
            error
        }
    }
}

/// Whether the session is encrypted, as the server sees it.
async fn encrypted(client: &tokio_postgres::Client) -> bool {
    client
        .query_one(
            "select ssl from pg_stat_ssl where pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn require_encrypts_without_checking_the_certificate() {
    let cluster = TlsCluster::start("require", true).await;
    // 127.0.0.1 is not in the certificate and no CA is given: require does not check.
    let client = connect(&cluster.url("127.0.0.1", "sslmode=require")).await;
    assert!(encrypted(&client).await, "sslmode=require is not encrypted");
    // prefer (the default) takes TLS when the server offers it.
    let client = connect(&cluster.url("127.0.0.1", "")).await;
    assert!(encrypted(&client).await, "sslmode=prefer did not use TLS");
    let client = connect(&cluster.url("127.0.0.1", "sslmode=disable")).await;
    assert!(!encrypted(&client).await, "sslmode=disable is encrypted");

    // The pools take the same path.
    let config = pgstorage::db::parse_config(&cluster.url("localhost", "sslmode=require")).unwrap();
    let database = pgstorage::db::Database::new(&config, &config, 2).unwrap();
    let pooled = database.admin().await.unwrap();
    assert!(
        encrypted(&pooled).await,
        "a pooled connection is not encrypted"
    );
}

#[tokio::test]
async fn verify_full_checks_the_chain_and_the_host_name() {
    let cluster = TlsCluster::start("verify-full", true).await;
    let ca = cluster.ca();
    let client = connect(&cluster.url(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    ))
    .await;
    assert!(encrypted(&client).await);

    // The certificate names localhost, not 127.0.0.1.
    let error = connect_err(&cluster.url(
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    ))
    .await;
    assert!(
        error.contains("does not name the host") && error.contains("verify-ca"),
        "{error}"
    );
    assert!(!error.contains('\n'), "not one line: {error}");

    // A CA that did not sign the server's certificate.
    let other = cluster.other_ca();
    let error = connect_err(&cluster.url(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={other}"),
    ))
    .await;
    assert!(
        error.contains(&format!(
            "the server's TLS certificate is not signed by a CA in sslrootcert={other}"
        )),
        "{error}"
    );
    assert!(
        error.contains(&format!("localhost:{}", cluster.port)),
        "{error}"
    );

    // Without sslrootcert: the system's roots, which do not know the test CA.
    let error = connect_err(&cluster.url("localhost", "sslmode=verify-full")).await;
    assert!(error.contains("the system's root certificates"), "{error}");
    let error = connect_err(&cluster.url("localhost", "sslrootcert=system")).await;
    assert!(error.contains("the system's root certificates"), "{error}");
}

#[tokio::test]
async fn verify_ca_checks_the_chain_but_not_the_host_name() {
    let cluster = TlsCluster::start("verify-ca", true).await;
    let client = connect(&cluster.url(
        "127.0.0.1",
        &format!("sslmode=verify-ca&sslrootcert={}", cluster.ca()),
    ))
    .await;
    assert!(encrypted(&client).await);

    let error = connect_err(&cluster.url(
        "127.0.0.1",
        &format!("sslmode=verify-ca&sslrootcert={}", cluster.other_ca()),
    ))
    .await;
    assert!(error.contains("not signed by a CA"), "{error}");

    // As in libpq, a named root certificate makes require check the chain too.
    let error = connect_err(&cluster.url(
        "127.0.0.1",
        &format!("sslmode=require&sslrootcert={}", cluster.other_ca()),
    ))
    .await;
    assert!(error.contains("not signed by a CA"), "{error}");
    connect(&cluster.url(
        "127.0.0.1",
        &format!("sslmode=require&sslrootcert={}", cluster.ca()),
    ))
    .await;
}

#[tokio::test]
async fn without_tls_on_the_server_require_fails_and_prefer_connects_in_plain_text() {
    let cluster = TlsCluster::start("no-ssl", false).await;
    let error = connect_err(&cluster.url("localhost", "sslmode=require")).await;
    assert!(
        error.contains("sslmode=require but the server does not offer TLS"),
        "{error}"
    );
    let error = connect_err(&cluster.url(
        "localhost",
        &format!("sslmode=verify-full&sslrootcert={}", cluster.ca()),
    ))
    .await;
    assert!(error.contains("does not offer TLS"), "{error}");

    let client = connect(&cluster.url("localhost", "sslmode=prefer")).await;
    assert!(!encrypted(&client).await);
}

/// `pgstorage serve` and `pgstorage migrate` with both URLs on verify-full: they start, migrate
/// and answer, and every session of theirs is encrypted. A bad certificate check stops
/// `migrate` with one readable line.
#[tokio::test]
async fn the_server_connects_with_verify_full() {
    let cluster = TlsCluster::start("serve", true).await;
    let params = format!("sslmode=verify-full&sslrootcert={}", cluster.ca());
    let admin_url = cluster.url("localhost", &params);
    let request_url = format!(
        "postgresql://{}@localhost:{}/postgres?{params}",
        embedded::REQUEST_ROLE,
        cluster.port
    );

    let output = run_to_end(pgstorage(&["migrate", "--database-url", &admin_url]));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "migrate failed:\n{stderr}");

    let bad_url = cluster.url("127.0.0.1", &params);
    let output = run_to_end(pgstorage(&["migrate", "--database-url", &bad_url]));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "migrate should fail:\n{stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("does not name the host"), "{stderr}");
    eprintln!("{}", errors[0]);

    let socket = cluster.socket_client().await;
    let roles = ["anon", "authenticated", "service_role"].map(String::from);
    migrate::ensure_request_role(&socket, embedded::REQUEST_ROLE, &roles)
        .await
        .unwrap();

    let data = cluster.root.join("serve-data");
    let port = free_port();
    let log = cluster.root.join("serve.log");
    let mut command = pgstorage(&[
        "serve",
        "--database-url",
        &admin_url,
        "--request-database-url",
        &request_url,
        "--jwt-secret",
        common::JWT_SECRET,
        "--port",
        &port.to_string(),
    ]);
    command
        .arg("--data-dir")
        .arg(&data)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let mut server = ServerProcess(command.spawn().unwrap());
    let url = format!("http://127.0.0.1:{port}");
    wait_for_status(&url, &mut server, &log).await;

    let response = reqwest::Client::new()
        .post(format!("{url}/bucket"))
        .bearer_auth(common::token("service_role", None))
        .json(&serde_json::json!({ "name": "over-tls" }))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body = response.text().await.unwrap();
    assert_eq!(status, 200, "{body}\n{}", read(&log));

    // Every session but ours came over TCP from the server, and is encrypted.
    let sessions: Vec<(String, bool)> = socket
        .query(
            "select a.usename::text, s.ssl
             from pg_stat_activity a join pg_stat_ssl s using (pid)
             where a.backend_type = 'client backend' and a.pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert!(
        sessions
            .iter()
            .any(|(user, _)| user == embedded::REQUEST_ROLE),
        "no session of the request pool: {sessions:?}"
    );
    assert!(
        sessions.iter().all(|(_, ssl)| *ssl),
        "a session in plain text: {sessions:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// The binary
// ---------------------------------------------------------------------------------------------

/// A spawned `pgstorage serve`, stopped when dropped.
struct ServerProcess(Child);

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = kill(Pid::from_raw(self.0.id() as i32), Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(30);
            while matches!(self.0.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

async fn wait_for_status(url: &str, server: &mut ServerProcess, log: &Path) {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(response) = reqwest::get(format!("{url}/status")).await
            && response.status() == 200
        {
            return;
        }
        if let Ok(Some(status)) = server.0.try_wait() {
            panic!("serve exited during start-up ({status}):\n{}", read(log));
        }
        assert!(
            Instant::now() < deadline,
            "serve did not answer within {WAIT:?}:\n{}",
            read(log)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}
