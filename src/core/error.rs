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
    fn from(error: DbError) -> Self {
        let Some(code) = error.code() else {
            return match error {
                DbError::Unavailable(reason) => {
                    Error::Unavailable(format!("database unavailable: {reason}"))
                }
                DbError::Postgres(e) if e.is_closed() => {
                    Error::Unavailable("database connection lost".into())
                }
                // Network trouble is worth a retry; anything else without a SQLSTATE (a value
                // that could not be encoded or decoded) is our own bug.
                DbError::Postgres(e)
                    if std::error::Error::source(&e)
                        .is_some_and(|s| s.downcast_ref::<std::io::Error>().is_some()) =>
                {
                    Error::Unavailable(format!("database unavailable: {e}"))
                }
                DbError::Postgres(e) => Error::Internal(anyhow::Error::new(e)),
            };
        };
        let message = error
            .db_error()
            .map(|e| e.message().to_string())
            .unwrap_or_default();
        match *code {
            SqlState::INSUFFICIENT_PRIVILEGE => Error::Forbidden(message),
            SqlState::UNIQUE_VIOLATION => Error::AlreadyExists,
            SqlState::STRING_DATA_RIGHT_TRUNCATION
            | SqlState::CHECK_VIOLATION
            | SqlState::NOT_NULL_VIOLATION
            | SqlState::INVALID_TEXT_REPRESENTATION
            | SqlState::INVALID_PARAMETER_VALUE
            | SqlState::NUMERIC_VALUE_OUT_OF_RANGE
            | SqlState::CHARACTER_NOT_IN_REPERTOIRE
            | SqlState::UNTRANSLATABLE_CHARACTER => Error::InvalidInput(message),
            SqlState::T_R_SERIALIZATION_FAILURE | SqlState::T_R_DEADLOCK_DETECTED => {
                Error::Unavailable("the operation conflicted with a concurrent one; retry".into())
            }
            SqlState::TOO_MANY_CONNECTIONS
            | SqlState::ADMIN_SHUTDOWN
            | SqlState::CANNOT_CONNECT_NOW
            | SqlState::QUERY_CANCELED => {
                Error::Unavailable(format!("database unavailable: {message}"))
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
