//! `pgstorage policy check|list`: the policy tester on the command line.

use std::fmt::Write as _;
use std::sync::Arc;

use anyhow::Context;

use super::Connected;
use crate::bytes::PgStore;
use crate::config::{PolicyCheckArgs, PolicyCommand, PolicyListArgs};
use crate::core::policy::{CheckReport, CheckRequest, Outcome, Policy};
use crate::core::{Limits, Operation, Storage};
use crate::db::Database;

pub(super) async fn run(command: PolicyCommand) -> anyhow::Result<()> {
    let database = match &command {
        PolicyCommand::Check(args) => &args.database,
        PolicyCommand::List(args) => &args.database,
    };
    let default_roles = ["anon", "authenticated", "service_role"].map(String::from);
    let connected = Connected::open(database, &default_roles).await?;
    let result = async {
        let db = Database::new(connected.admin.clone(), connected.request.clone(), 2)?;
        // The tester never reads or writes bytes; the core only needs a store to exist.
        let bytes = Arc::new(PgStore::new(db.clone()));
        match &command {
            PolicyCommand::Check(args) => {
                let limits = Limits {
                    max_file_size: args.max_file_size,
                    ..Limits::default()
                };
                check(&Storage::new(db, bytes, limits), args).await
            }
            PolicyCommand::List(args) => {
                list(&Storage::new(db, bytes, Limits::default()), args).await
            }
        }
    }
    .await;
    let closed = connected.close();
    result.and(closed)
}

async fn check(storage: &Storage, args: &PolicyCheckArgs) -> anyhow::Result<()> {
    let claims = match &args.claims {
        None => None,
        Some(text) => match serde_json::from_str(text).context("--claims is not valid JSON")? {
            serde_json::Value::Object(map) => Some(map),
            _ => anyhow::bail!("--claims must be a JSON object"),
        },
    };
    let operation = Operation::parse(&args.op)
        .with_context(|| format!("--op {} is not an operation ({})", args.op, operations()))?;
    let request = CheckRequest {
        identity: CheckRequest::identity_for(&args.role, args.sub.as_deref(), claims),
        operation,
        bucket: args.bucket.clone(),
        path: args.path.clone(),
        size: args.size,
        mime: args.mime.clone(),
        destination_bucket: args.to_bucket.clone(),
        destination_path: args.to_path.clone(),
    };
    let report = storage
        .check_policy(&request)
        .await
        .map_err(|e| anyhow::anyhow!("the policy check failed: {e}"))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render_report(&request, &report));
    }
    Ok(())
}

fn operations() -> String {
    Operation::ALL.map(Operation::as_str).join(", ")
}

/// The report for people: the verdict and its reason first, then each check.
pub fn render_report(request: &CheckRequest, report: &CheckReport) -> String {
    let mut out = String::new();
    let target = match &request.path {
        Some(path) if !report.operation.starts_with("storage.bucket.") => {
            format!("{}/{}", request.bucket, path)
        }
        _ => request.bucket.clone(),
    };
    let sub = report
        .sub
        .as_deref()
        .map(|s| format!("sub {s}"))
        .unwrap_or_else(|| "no sub".into());
    let verdict = match (report.allowed, report.outcome) {
        (true, _) => "ALLOWED".to_string(),
        (false, Outcome::Denied) => "DENIED".to_string(),
        (false, outcome) => format!(
            "DENIED ({})",
            serde_json::json!(outcome).as_str().unwrap_or("")
        ),
    };
    let _ = writeln!(
        out,
        "{} as role {} ({sub}) on {target}: {verdict}",
        report.operation, report.role
    );
    let _ = writeln!(out, "  {}", report.reason);
    if let Some(rule) = &report.bucket_rule {
        let _ = writeln!(out, "  bucket rule: {rule}");
    }
    for note in &report.notes {
        let _ = writeln!(out, "  note: {note}");
    }
    for check in &report.checks {
        let _ = writeln!(
            out,
            "\n{} {} {} on {}: {}",
            check.table,
            check.command,
            check.clause,
            check.row,
            if check.passed { "passed" } else { "FAILED" }
        );
        if check.policies.is_empty() {
            let _ = writeln!(
                out,
                "  (no {} policy applies to role {}: denied by default)",
                check.command, report.role
            );
        }
        for policy in &check.policies {
            let _ = writeln!(
                out,
                "  [{}] {} ({}, for {}, to {})",
                if policy.passed { "pass" } else { "FAIL" },
                policy.name,
                if policy.permissive {
                    "permissive"
                } else {
                    "restrictive"
                },
                policy.command,
                policy.roles.join(", "),
            );
            match &policy.expression {
                Some(expression) => {
                    let _ = writeln!(out, "         {expression}  => {}", policy.result);
                }
                None => {
                    let _ = writeln!(out, "         (no expression for this clause)");
                }
            }
            if let Some(error) = &policy.error {
                let _ = writeln!(out, "         error: {error}");
            }
        }
    }
    out
}

async fn list(storage: &Storage, args: &PolicyListArgs) -> anyhow::Result<()> {
    let policies = storage
        .policies(args.role.as_deref())
        .await
        .map_err(|e| anyhow::anyhow!("reading the policies failed: {e}"))?;
    let policies: Vec<&Policy> = policies.iter().filter(|p| p.applies).collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&policies)?);
        return Ok(());
    }
    print!("{}", render_policies(&policies));
    Ok(())
}

/// The policies, per table and command, one block each.
pub fn render_policies(policies: &[&Policy]) -> String {
    let mut out = String::new();
    if policies.is_empty() {
        out.push_str("no policies on the storage tables: only roles that bypass RLS get in\n");
        return out;
    }
    let mut table = "";
    for policy in policies {
        if policy.table != table {
            table = &policy.table;
            let _ = writeln!(out, "storage.{table}");
        }
        let _ = writeln!(
            out,
            "  {:<7} {}  ({}, to {})",
            policy.command,
            policy.name,
            if policy.permissive {
                "permissive"
            } else {
                "restrictive"
            },
            policy.roles.join(", ")
        );
        if let Some(using) = &policy.using {
            let _ = writeln!(out, "          using      {using}");
        }
        if let Some(check) = &policy.with_check {
            let _ = writeln!(out, "          with check {check}");
        }
    }
    out
}
