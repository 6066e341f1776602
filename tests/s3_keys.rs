//! `pgstorage s3-keys create|list|revoke`: database S3 keys bound to a role and claims, their
//! secret shown once and stored sealed, the table out of the API roles' reach.

mod common;

use common::{JWT_SECRET, TestDb, process};
use pgstorage::auth::sealed::Sealer;

/// Runs `pgstorage s3-keys <args>` on `db`: (success, stdout, stderr).
fn s3_keys(db: &TestDb, args: &[&str]) -> (bool, String, String) {
    let mut command = process::pgstorage(&["s3-keys"]);
    command
        .args(args)
        .arg("--database-url")
        .arg(db.admin_url())
        .arg("--jwt-secret")
        .arg(JWT_SECRET);
    let output = process::run_to_end(command);
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).to_string(),
        String::from_utf8_lossy(&output.stderr).to_string(),
    )
}

fn field<'a>(stdout: &'a str, label: &str) -> &'a str {
    stdout
        .lines()
        .find_map(|line| line.strip_prefix(label))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {label:?} in {stdout}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_created_listed_and_revoked_with_their_secret_sealed() {
    let db = TestDb::new().await;
    let (ok, out, err) = s3_keys(
        &db,
        &[
            "create",
            "--role",
            "authenticated",
            "--sub",
            "alice",
            "--claims",
            r#"{"app_metadata": {"team": "red"}}"#,
            "--description",
            "alice's laptop",
        ],
    );
    assert!(ok, "{out}\n{err}");
    let id = field(&out, "access key id:").to_string();
    let secret = field(&out, "secret access key:").to_string();
    assert_eq!(id.len(), 20, "{id}");
    assert!(secret.len() >= 40, "{secret}");

    // Listed, never with the secret.
    let (ok, list, err) = s3_keys(&db, &["list"]);
    assert!(ok, "{err}");
    let line = list
        .lines()
        .find(|l| l.starts_with(&id))
        .unwrap_or_else(|| panic!("{id} not listed: {list}"));
    assert!(line.contains("authenticated") && line.contains("\"sub\":\"alice\""));
    assert!(line.contains("active") && line.contains("alice's laptop"));
    assert!(!list.contains(&secret));

    // Sealed at rest: the stored bytes are not the secret, and open only with the server's key.
    let admin = db.admin_client().await;
    let sealed: Vec<u8> = admin
        .query_one(
            "select secret_sealed from storage.s3_keys where access_key_id = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!sealed.windows(secret.len()).any(|w| w == secret.as_bytes()));
    let storage = db.storage(2).await;
    let grant = storage
        .s3_key(&common::s3_sealer(), &id)
        .await
        .unwrap()
        .expect("the key resolves");
    assert_eq!(grant.secret_access_key, secret);
    assert_eq!(grant.identity.role, "authenticated");
    assert_eq!(grant.identity.sub().as_deref(), Some("alice"));
    assert_eq!(grant.identity.claims["app_metadata"]["team"], "red");
    let stranger = Sealer::derive(b"another server's secret, long enough to be one");
    assert!(storage.s3_key(&stranger, &id).await.unwrap().is_none());

    // The API roles cannot read the table, whatever their policies.
    for role in ["anon", "authenticated", "service_role"] {
        admin.batch_execute("begin").await.unwrap();
        admin
            .batch_execute(&format!("set local role {role}"))
            .await
            .unwrap();
        let error = admin
            .query("select * from storage.s3_keys", &[])
            .await
            .expect_err("an API role read storage.s3_keys");
        assert_eq!(
            error.code(),
            Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE),
            "{role}: {error}"
        );
        admin.batch_execute("rollback").await.unwrap();
    }

    // Revoked at once; a second revoke says there is nothing to revoke.
    let (ok, out, err) = s3_keys(&db, &["revoke", &id]);
    assert!(ok && out.contains("revoked"), "{out}\n{err}");
    assert!(
        storage
            .s3_key(&common::s3_sealer(), &id)
            .await
            .unwrap()
            .is_none()
    );
    let (ok, list, _) = s3_keys(&db, &["list"]);
    assert!(
        ok && list
            .lines()
            .any(|l| l.starts_with(&id) && l.contains("revoked"))
    );
    let (ok, _, err) = s3_keys(&db, &["revoke", &id]);
    assert!(!ok && err.contains("no live key"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_claims_are_refused() {
    let db = TestDb::new().await;
    let (ok, _, err) = s3_keys(
        &db,
        &["create", "--role", "authenticated", "--claims", "[1, 2]"],
    );
    assert!(
        !ok && err.contains("--claims must be a JSON object"),
        "{err}"
    );
    let (ok, _, err) = s3_keys(&db, &["create", "--role", "authenticated", "--claims", "{"]);
    assert!(!ok && err.contains("not valid JSON"), "{err}");
}
