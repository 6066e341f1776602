//! How the commands talk to people and to scripts: `--log-format json` writes one JSON object
//! per log line; `pgstorage gc` off a terminal prints only its result (no progress display).

mod common;

use common::{TestDb, TestStore, process, test_backend};
use serde_json::Value;

#[tokio::test]
async fn json_logs_are_one_object_per_line() {
    let db = TestDb::new().await;
    // Without --request-database-url the command warns (see cli.rs): a log line to read.
    let mut command = process::pgstorage(&["policy", "list", "--log-format", "json"]);
    command.arg("--database-url").arg(db.admin_url());
    let output = process::run_to_end(command);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let lines: Vec<Value> = stderr
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    assert!(
        lines.iter().any(|line| line["level"] == "WARN"
            && line["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("--request-database-url"))),
        "{stderr}"
    );

    // The default stays text.
    let mut command = process::pgstorage(&["policy", "list"]);
    command.arg("--database-url").arg(db.admin_url());
    let output = process::run_to_end(command);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("WARN") && !stderr.starts_with('{'),
        "{stderr}"
    );
}

#[tokio::test]
async fn gc_in_a_script_prints_only_its_result() {
    let db = TestDb::new().await;
    let store = TestStore::new(test_backend(), &db.name).await;
    let mut command = process::pgstorage(&["gc"]);
    command
        .arg("--database-url")
        .arg(db.admin_url())
        .arg("--request-database-url")
        .arg(db.request_url())
        .args(store.server_args());
    let output = process::run_to_end(command);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(
        stdout,
        "freed 0 byte keys (0 could not be deleted and stay queued)\n"
    );
    assert!(!stderr.contains("collecting garbage"), "{stderr}");
}
