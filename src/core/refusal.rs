//! Who was refused: the operation, role and `sub` of the request's latest transaction, so that
//! a front can name them in a refusal's message (never the policy's text, which may hold what
//! the caller may not see).
//!
//! A front runs each request inside [`scope`]; the core records every transaction it begins.
//! Outside a scope (the CLI, tests calling the core), recording does nothing.

use std::cell::RefCell;

use super::{Caller, Operation};

tokio::task_local! {
    static LATEST: RefCell<Option<Attempt>>;
}

#[derive(Debug, Clone)]
struct Attempt {
    operation: Operation,
    role: String,
    sub: Option<String>,
}

/// Runs `future` (one request) with its own record of what it attempted.
pub async fn scope<F: Future>(future: F) -> F::Output {
    LATEST.scope(RefCell::new(None), future).await
}

/// Records the transaction `caller` begins for `operation`.
pub(super) fn record(caller: &Caller, operation: Operation) {
    let _ = LATEST.try_with(|latest| {
        *latest.borrow_mut() = Some(Attempt {
            operation,
            role: caller.identity.role.clone(),
            sub: caller.identity.sub(),
        })
    });
}

/// The operation of the request's latest transaction, if it began one.
pub fn latest_operation() -> Option<Operation> {
    LATEST
        .try_with(|latest| latest.borrow().as_ref().map(|attempt| attempt.operation))
        .ok()
        .flatten()
}

/// "storage.copy as role authenticated, sub alice": what the request's latest transaction
/// attempted, if it began one.
pub fn latest() -> Option<String> {
    LATEST
        .try_with(|latest| {
            latest.borrow().as_ref().map(|attempt| {
                let sub = match &attempt.sub {
                    Some(sub) => format!("sub {sub}"),
                    None => "no sub".to_string(),
                };
                let operation = match attempt.operation {
                    // Which of the two a write is depends on whether its key exists: naming
                    // one would tell a caller who may not see the key that it exists.
                    Operation::Upload | Operation::Overwrite => {
                        "storage.upload or storage.overwrite"
                    }
                    other => other.as_str(),
                };
                format!("{operation} as role {}, {sub}", attempt.role)
            })
        })
        .ok()
        .flatten()
}

/// `message`, followed by what was refused when it is known.
pub fn explain(message: &str) -> String {
    match latest() {
        Some(attempt) => format!("{message} (refused {attempt})"),
        None => message.to_string(),
    }
}
