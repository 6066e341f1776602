use tokio_postgres::error::SqlState;

use crate::db::DbError;

/// What went wrong in the core, typed so that each front can give it its own status code.
/// Messages are for clients; internal details stay in `Internal` and are logged, not sent.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Bucket not found")]
    BucketNotFound,
    #[error("Object not found")]
    ObjectNotFound,
    #[error("{0}")]
    NotFound(String),
    /// A bucket or key that already exists.
    #[error("The resource already exists")]
    AlreadyExists,
    #[error("The bucket you tried to delete is not empty")]
    BucketNotEmpty,
    #[error("{0}")]
    Conflict(String),
    /// Row Level Security (or a privilege check) refused the operation.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    InvalidInput(String),
    /// An object name that breaks a naming rule (the message names the rule).
    #[error("Invalid key: {0}")]
    InvalidKey(String),
    #[error("Bucket name invalid: {0}")]
    InvalidBucketName(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    RangeNotSatisfiable(String),
    /// A multipart or resumable upload that does not exist (never did, completed, aborted or
    /// expired).
    #[error("The specified multipart upload does not exist")]
    NoSuchUpload,
    /// A part named at completion is missing or its eTag does not match.
    #[error("{0}")]
    InvalidPart(String),
    /// The parts named at completion are not in ascending order of part number.
    #[error("The list of parts was not in ascending order; parts must be ordered by part number")]
    InvalidPartOrder,
    /// A part other than the last is smaller than the minimum part size.
    #[error("{0}")]
    EntityTooSmall(String),
    /// An upload's body did not have the digest its caller expected; nothing was stored.
    #[error("The {which} of the body did not match the one given; nothing was stored")]
    DigestMismatch { which: super::DigestKind },
    /// The client stopped sending an upload's body for longer than the idle limit.
    #[error("{0}")]
    Timeout(String),
    /// A dependency (database, byte store) is unreachable or overloaded; retrying may work.
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl From<DbError> for Error {
    /// The default reading of a database error. Callers that know more (which constraint means
    /// what) match the SQLSTATE themselves before falling back to this.
    ///
    /// PostgreSQL's own wording never reaches a client: it can name tables, types, settings and
    /// values the client never sent. Clients get a message of ours for the SQLSTATE; the
    /// database's text goes to the log (inside the request's span, so with its request id).
    /// Only text raised on purpose by SQL code (`raise exception` in our triggers or the
    /// application's) is passed on as written.
    fn from(error: DbError) -> Self {
        let Some(code) = error.code() else {
            return match error {
                DbError::Unavailable(reason) => {
                    tracing::warn!(%reason, "no database connection");
                    Error::Unavailable(format!("database unavailable: {reason}"))
                }
                DbError::Postgres(e) if e.is_closed() => {
                    tracing::warn!(error = %e, "database connection lost");
                    Error::Unavailable("database connection lost".into())
                }
                // Network trouble is worth a retry; anything else without a SQLSTATE (a value
                // that could not be encoded or decoded) is our own bug.
                DbError::Postgres(e)
                    if std::error::Error::source(&e)
                        .is_some_and(|s| s.downcast_ref::<std::io::Error>().is_some()) =>
                {
                    tracing::warn!(error = %e, "database unreachable");
                    Error::Unavailable("database unavailable: the connection failed".into())
                }
                DbError::Postgres(e) => Error::Internal(anyhow::Error::new(e)),
            };
        };
        let report = error.db_error();
        let raised = report.is_some_and(|e| e.routine() == Some("exec_stmt_raise"));
        let said = report.map(|e| e.message()).unwrap_or_default();
        if !matches!(
            *code,
            SqlState::UNIQUE_VIOLATION
                | SqlState::T_R_SERIALIZATION_FAILURE
                | SqlState::T_R_DEADLOCK_DETECTED
        ) {
            tracing::info!(
                sqlstate = code.code(),
                message = said,
                "the database refused"
            );
        }
        // Raised on purpose by SQL code: its text is meant for the caller.
        let ours = |fallback: &str| match raised {
            true => said.to_string(),
            false => fallback.to_string(),
        };
        match *code {
            SqlState::INSUFFICIENT_PRIVILEGE => Error::Forbidden(
                if said.starts_with("new row violates row-level security policy") {
                    // Supabase Storage's wording, which clients show.
                    "new row violates row-level security policy".into()
                } else {
                    ours("permission denied")
                },
            ),
            SqlState::UNIQUE_VIOLATION => Error::AlreadyExists,
            SqlState::STRING_DATA_RIGHT_TRUNCATION => {
                Error::InvalidInput(ours("a value is too long"))
            }
            SqlState::CHECK_VIOLATION => Error::InvalidInput(ours("a value breaks a check rule")),
            SqlState::NOT_NULL_VIOLATION => {
                Error::InvalidInput(ours("a required value is missing"))
            }
            SqlState::INVALID_TEXT_REPRESENTATION | SqlState::INVALID_PARAMETER_VALUE => {
                Error::InvalidInput(ours("a value is not in the expected form"))
            }
            SqlState::NUMERIC_VALUE_OUT_OF_RANGE => {
                Error::InvalidInput(ours("a number is out of range"))
            }
            SqlState::CHARACTER_NOT_IN_REPERTOIRE | SqlState::UNTRANSLATABLE_CHARACTER => {
                Error::InvalidInput(ours(
                    "text holds a character the database cannot store (such as NUL)",
                ))
            }
            SqlState::T_R_SERIALIZATION_FAILURE | SqlState::T_R_DEADLOCK_DETECTED => {
                Error::Unavailable("the operation conflicted with a concurrent one; retry".into())
            }
            SqlState::TOO_MANY_CONNECTIONS
            | SqlState::ADMIN_SHUTDOWN
            | SqlState::CRASH_SHUTDOWN
            | SqlState::CANNOT_CONNECT_NOW
            | SqlState::IDLE_SESSION_TIMEOUT
            | SqlState::QUERY_CANCELED
            | SqlState::CONNECTION_EXCEPTION
            | SqlState::CONNECTION_FAILURE => {
                Error::Unavailable("database unavailable; retry".into())
            }
            // A standby (or a primary being demoted during a failover) refuses writes: the
            // database is there but cannot take this request until a primary is reachable.
            SqlState::READ_ONLY_SQL_TRANSACTION => {
                tracing::warn!("the database refused a write as read-only (a standby?)");
                Error::Unavailable("database unavailable: it accepts no writes now; retry".into())
            }
            _ => Error::Internal(anyhow::Error::new(error)),
        }
    }
}

impl From<tokio_postgres::Error> for Error {
    fn from(error: tokio_postgres::Error) -> Self {
        Error::from(DbError::from(error))
    }
}
