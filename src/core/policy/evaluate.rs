//! Evaluating each policy's expression on one row, as the caller, to say which passed.
//!
//! PostgreSQL reports only the combined answer of a table's policies; to say which policy
//! passed, each expression is run on its own: `select (<expression>) from
//! jsonb_populate_record(null::storage.<table>, $row) as <table>`, which gives the expression
//! the table's columns by name (qualified or not), in the caller's transaction, so `auth.uid()`,
//! `storage.operation()` and subqueries under RLS read what they read in the real request.
//! Each runs inside a savepoint rolled back right after, and the whole transaction is rolled
//! back at the end. The expression text comes from the catalog (`pg_get_expr`), never from the
//! client.

use serde::Serialize;
use serde_json::Value;

use super::catalog::{Policy, Table};
use crate::core::Error;
use crate::db::Tx;

/// Which expression of a policy a check runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Clause {
    /// `USING`: filters the rows the command may read or change.
    Using,
    /// `WITH CHECK` (or `USING` when there is none): the row the command writes.
    WithCheck,
    /// The `USING` of SELECT policies on the row an UPDATE writes: PostgreSQL requires it when
    /// the statement reads the table (a WHERE or RETURNING clause), as the core's statements do.
    SelectOnNewRow,
}

/// One check PostgreSQL makes for a statement: the applicable policies of one command, one
/// clause, on one row.
#[derive(Debug)]
pub(super) struct Spec {
    pub(super) table: Table,
    /// The command whose policies apply (`SELECT`, `INSERT`, `UPDATE`, `DELETE`).
    pub(super) command: &'static str,
    pub(super) clause: Clause,
    /// Which row, in words (`the existing row`, `the new row`).
    pub(super) row: &'static str,
    pub(super) values: Value,
}

/// The result of one check.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Check {
    /// `storage.objects` or `storage.buckets`.
    pub table: String,
    pub command: String,
    /// `USING` or `WITH CHECK`.
    pub clause: String,
    pub row: String,
    /// Whether the row passes: some permissive policy passed and every restrictive one did.
    pub passed: bool,
    pub policies: Vec<PolicyResult>,
}

/// One policy's expression on the row.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PolicyResult {
    pub name: String,
    /// The policy's own command (`ALL` or the checked one).
    pub command: String,
    pub permissive: bool,
    pub roles: Vec<String>,
    /// The expression that ran (absent when the policy has none for this clause).
    pub expression: Option<String>,
    /// `true`, `false`, `null` (counts as false), `error` or `none` (no expression).
    pub result: String,
    pub passed: bool,
    /// The database's message when the expression failed to run.
    pub error: Option<String>,
}

/// Runs `spec` for every policy in `policies` that applies to it.
pub(super) async fn evaluate(tx: &Tx, spec: &Spec, policies: &[Policy]) -> Result<Check, Error> {
    let mut results = Vec::new();
    for policy in policies.iter().filter(|p| {
        p.applies
            && p.table == spec.table.name()
            && (p.command == "ALL" || p.command == spec.command)
    }) {
        let expression = match spec.clause {
            Clause::Using | Clause::SelectOnNewRow => policy.using.clone(),
            Clause::WithCheck => policy.with_check.clone().or_else(|| policy.using.clone()),
        };
        let (result, error) = match &expression {
            None => ("none".to_string(), None),
            Some(expression) => run(tx, spec, expression).await?,
        };
        results.push(PolicyResult {
            name: policy.name.clone(),
            command: policy.command.clone(),
            permissive: policy.permissive,
            roles: policy.roles.clone(),
            passed: result == "true",
            expression,
            result,
            error,
        });
    }
    let permissive = results.iter().any(|r| r.permissive && r.passed);
    let restrictive = results.iter().filter(|r| !r.permissive).all(|r| r.passed);
    Ok(Check {
        table: spec.table.qualified().to_string(),
        command: spec.command.to_string(),
        clause: match spec.clause {
            Clause::Using | Clause::SelectOnNewRow => "USING",
            Clause::WithCheck => "WITH CHECK",
        }
        .to_string(),
        row: spec.row.to_string(),
        passed: permissive && restrictive,
        policies: results,
    })
}

/// One expression on the row: (`true`/`false`/`null`/`error`, the error's text).
async fn run(tx: &Tx, spec: &Spec, expression: &str) -> Result<(String, Option<String>), Error> {
    let sql = format!(
        "select ({expression})::boolean from jsonb_populate_record(null::{}, $1::jsonb) as {}",
        spec.table.qualified(),
        spec.table.name()
    );
    tx.batch("savepoint policy_expression").await?;
    let answer = tx.query_one(&sql, &[&spec.values]).await;
    tx.batch("rollback to savepoint policy_expression").await?;
    Ok(match answer {
        Ok(row) => match row.get::<_, Option<bool>>(0) {
            Some(true) => ("true".into(), None),
            Some(false) => ("false".into(), None),
            None => ("null".into(), None),
        },
        Err(error) => {
            let text = error
                .as_db_error()
                .map(|e| e.message().to_string())
                .unwrap_or_else(|| error.to_string());
            ("error".into(), Some(text))
        }
    })
}
