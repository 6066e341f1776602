//! The policy tester: "may this identity do this operation here, and which policies decide?"
//!
//! Two answers, from one transaction as the caller (its role, claims and `storage.operation()`
//! set by the same code as a real request's) that is always rolled back:
//! - the **verdict** comes from the very statements the core runs for the operation (the same
//!   probe of the row about to be written, the same `select`, `update` or `delete`), followed
//!   by the bucket's rules, in the core's order; so it agrees with the real request path;
//! - the **explanation** comes from running each applicable policy's `USING` / `WITH CHECK`
//!   expression on its own, on the row PostgreSQL would check (see [`evaluate`]), combined as
//!   PostgreSQL combines them (some permissive one passes, and every restrictive one).

mod catalog;
mod evaluate;
mod plan;

use serde::Serialize;
use serde_json::{Map, Value};

pub use catalog::{Policy, Table};
pub use evaluate::{Check, PolicyResult};

use crate::auth::Identity;
use crate::core::{Caller, Error, Operation, Storage};

/// What to test.
#[derive(Debug, Clone)]
pub struct CheckRequest {
    /// Who: the role and claims a request would carry (`sub` among the claims).
    pub identity: Identity,
    pub operation: Operation,
    pub bucket: String,
    /// The object's name; not used by bucket operations.
    pub path: Option<String>,
    /// The size of an upload, checked against the bucket's `file_size_limit`.
    pub size: Option<u64>,
    /// The type of an upload; guessed from the name when absent, as an upload does.
    pub mime: Option<String>,
    /// Where a move or copy lands (default: the source's bucket).
    pub destination_bucket: Option<String>,
    pub destination_path: Option<String>,
}

impl CheckRequest {
    /// The identity a request with these facts would have: `claims` plus `role` and `sub`.
    pub fn identity_for(
        role: &str,
        sub: Option<&str>,
        claims: Option<Map<String, Value>>,
    ) -> Identity {
        let mut claims = claims.unwrap_or_default();
        claims.insert("role".into(), role.into());
        if let Some(sub) = sub {
            claims.insert("sub".into(), sub.into());
        }
        Identity {
            role: role.to_string(),
            claims,
        }
    }
}

/// How the real request would end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Allowed,
    /// Refused by the policies (or a privilege): 403.
    Denied,
    /// The bucket or object does not exist, or the policies hide it: 404.
    NotFound,
    /// The key (or bucket) already exists: 409.
    AlreadyExists,
    /// The bucket still holds objects: 409.
    NotEmpty,
    /// Over the bucket's `file_size_limit` or the server's limit: 413.
    TooLarge,
    /// Not among the bucket's `allowed_mime_types`: 415.
    UnsupportedType,
    /// A name or value the operation refuses before any policy: 400.
    Invalid,
}

/// The tester's answer.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CheckReport {
    pub allowed: bool,
    pub outcome: Outcome,
    /// Why, in one sentence.
    pub reason: String,
    /// The operation tested (an overwrite of a key that does not exist is an upload).
    pub operation: String,
    pub role: String,
    pub sub: Option<String>,
    /// The role bypasses RLS (BYPASSRLS or superuser): no policy is consulted.
    pub bypasses_rls: bool,
    /// The checks PostgreSQL makes for the operation's statements, policy by policy.
    pub checks: Vec<Check>,
    /// The bucket rule that refused the operation, if one did.
    pub bucket_rule: Option<String>,
    pub notes: Vec<String>,
}

impl Storage {
    /// Tests `request` in a transaction that is rolled back: nothing is written, nothing reaches
    /// the byte store. See the module documentation.
    pub async fn check_policy(&self, request: &CheckRequest) -> Result<CheckReport, Error> {
        let role = request.identity.role.clone();
        let bypasses_rls = self.bypasses_rls(&role).await?;
        let policies = self.policies(Some(&role)).await?;
        let caller = Caller::new(request.identity.clone());
        let mut found = plan::run(self, &caller, request, &policies, bypasses_rls).await?;
        let (outcome, mut reason) = match std::mem::replace(&mut found.verdict, Ok(())) {
            Ok(()) => (Outcome::Allowed, String::new()),
            Err(error) => outcome_of(error)?,
        };
        let failed = found.checks.iter().find(|c| !c.passed);
        match outcome {
            Outcome::Allowed => {
                reason = allowed_reason(bypasses_rls, &found.checks);
                if !bypasses_rls && let Some(check) = failed {
                    found.notes.push(format!(
                        "the database allowed it although {} did not pass on its own: the \
                         per-policy evaluation may differ from the statement (a policy reading \
                         other rows it changes, or a volatile function)",
                        describe(check)
                    ));
                }
            }
            Outcome::Denied => {
                reason = match (failed, &found.privilege_missing) {
                    (_, Some(missing)) => missing.clone(),
                    (Some(check), None) => format!("denied: {}", describe(check)),
                    (None, None) => "denied by the database, though each policy listed passed: \
                         a trigger or a policy on another table refused it"
                        .to_string(),
                };
            }
            Outcome::NotFound if reason.is_empty() => {
                reason = found.missing.clone().unwrap_or_else(|| match failed {
                    Some(check) => format!("hidden: {}", describe(check)),
                    None => "not found".to_string(),
                });
            }
            _ => {}
        }
        if let Some(rule) = &found.bucket_rule
            && outcome != Outcome::Allowed
            && reason.is_empty()
        {
            reason = rule.clone();
        }
        Ok(CheckReport {
            allowed: outcome == Outcome::Allowed,
            outcome,
            reason,
            operation: found.operation.as_str().to_string(),
            role,
            sub: request.identity.sub(),
            bypasses_rls,
            checks: found.checks,
            bucket_rule: match outcome {
                Outcome::TooLarge | Outcome::UnsupportedType | Outcome::NotFound => {
                    found.bucket_rule
                }
                _ => None,
            },
            notes: found.notes,
        })
    }
}

/// The outcome of a refusal and, where the error says it best, its reason. Errors that are no
/// answer (the database unavailable, a fault) are the check's own.
fn outcome_of(error: Error) -> Result<(Outcome, String), Error> {
    Ok(match &error {
        Error::Forbidden(_) => (Outcome::Denied, String::new()),
        Error::BucketNotFound => (Outcome::NotFound, "the bucket does not exist".into()),
        Error::ObjectNotFound | Error::NotFound(_) => (Outcome::NotFound, String::new()),
        Error::AlreadyExists => (
            Outcome::AlreadyExists,
            "the policies allow it, but the key already exists (409; an upsert would be a \
             storage.overwrite)"
                .into(),
        ),
        Error::BucketNotEmpty => (
            Outcome::NotEmpty,
            "the bucket still holds objects (409)".into(),
        ),
        Error::PayloadTooLarge(_) => (Outcome::TooLarge, String::new()),
        Error::UnsupportedMediaType(_) => (Outcome::UnsupportedType, String::new()),
        Error::InvalidInput(m) => (Outcome::Invalid, m.clone()),
        Error::InvalidKey(_) | Error::InvalidBucketName(_) => (Outcome::Invalid, error.to_string()),
        _ => return Err(error),
    })
}

fn allowed_reason(bypasses_rls: bool, checks: &[Check]) -> String {
    if bypasses_rls {
        return "allowed: the role bypasses row level security".into();
    }
    let granted: Vec<String> = checks
        .iter()
        .filter_map(|c| {
            let names: Vec<&str> = c
                .policies
                .iter()
                .filter(|p| p.permissive && p.passed)
                .map(|p| p.name.as_str())
                .collect();
            (!names.is_empty()).then(|| {
                format!(
                    "{} {} {} on {} ({})",
                    c.command,
                    c.clause,
                    c.row,
                    c.table,
                    names.join(", ")
                )
            })
        })
        .collect();
    match granted.is_empty() {
        true => "allowed".into(),
        false => format!("allowed by {}", granted.join("; ")),
    }
}

/// Why a check failed, in words.
fn describe(check: &Check) -> String {
    let failed_restrictive: Vec<&str> = check
        .policies
        .iter()
        .filter(|p| !p.permissive && !p.passed)
        .map(|p| p.name.as_str())
        .collect();
    let what = format!(
        "{} {} of {} for {}",
        check.command, check.clause, check.table, check.row
    );
    if !failed_restrictive.is_empty() {
        return format!(
            "restrictive policy {} failed ({what})",
            failed_restrictive.join(", ")
        );
    }
    let permissive: Vec<&str> = check
        .policies
        .iter()
        .filter(|p| p.permissive)
        .map(|p| p.name.as_str())
        .collect();
    match permissive.is_empty() {
        true => format!(
            "no permissive {} policy applies to this role ({what}): denied by default",
            check.command
        ),
        false => format!(
            "none of the permissive policies passed ({what}: {})",
            permissive.join(", ")
        ),
    }
}
