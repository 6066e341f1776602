use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::AuthError;
use crate::core::Error;

/// Every error a REST handler returns. The body is Supabase Storage's
/// `{statusCode, code, error, message}` (`statusCode` a string; `code` the S3-style code that
/// storage-js reads; `error` the older text that storage3 reads), sent with the real HTTP status.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    error: &'static str,
    message: String,
    /// Logged for 5xx; never sent.
    cause: Option<anyhow::Error>,
}

impl ApiError {
    pub fn new(
        status: StatusCode,
        code: &'static str,
        error: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            code,
            error,
            message: message.into(),
            cause: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "InvalidRequest",
            "InvalidRequest",
            message,
        )
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// Maps a core error, naming a duplicate the way Supabase Storage names it for the resource
    /// being created (`KeyAlreadyExists` for an object, `BucketAlreadyExists` for a bucket;
    /// other conflicts keep the generic `ResourceAlreadyExists`).
    pub fn duplicate_as(code: &'static str) -> impl Fn(Error) -> Self {
        move |error| match error {
            Error::AlreadyExists => Self::new(
                StatusCode::CONFLICT,
                code,
                "Duplicate",
                Error::AlreadyExists.to_string(),
            ),
            other => other.into(),
        }
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        use StatusCode as S;
        let (status, code, name) = match &error {
            Error::BucketNotFound => (S::NOT_FOUND, "NoSuchBucket", "Bucket not found"),
            Error::ObjectNotFound => (S::NOT_FOUND, "NoSuchKey", "not_found"),
            Error::NotFound(_) => (S::NOT_FOUND, "NotFound", "not_found"),
            Error::AlreadyExists => (S::CONFLICT, "ResourceAlreadyExists", "Duplicate"),
            Error::BucketNotEmpty => (S::CONFLICT, "ResourceNotEmpty", "ResourceNotEmpty"),
            Error::Conflict(_) => (S::CONFLICT, "Conflict", "Conflict"),
            Error::Forbidden(_) => (S::FORBIDDEN, "AccessDenied", "Unauthorized"),
            Error::InvalidInput(_) => (S::BAD_REQUEST, "InvalidRequest", "InvalidRequest"),
            Error::InvalidKey(_) => (S::BAD_REQUEST, "InvalidKey", "InvalidKey"),
            Error::InvalidBucketName(_) => (S::BAD_REQUEST, "InvalidBucketName", "Invalid Input"),
            Error::PayloadTooLarge(_) => {
                (S::PAYLOAD_TOO_LARGE, "EntityTooLarge", "Payload too large")
            }
            Error::UnsupportedMediaType(_) => (
                S::UNSUPPORTED_MEDIA_TYPE,
                "InvalidMimeType",
                "invalid_mime_type",
            ),
            Error::RangeNotSatisfiable(_) => {
                (S::RANGE_NOT_SATISFIABLE, "InvalidRange", "InvalidRange")
            }
            Error::NoSuchUpload => (S::NOT_FOUND, "NoSuchUpload", "not_found"),
            Error::InvalidPart(_) => (S::BAD_REQUEST, "InvalidPart", "InvalidPart"),
            Error::InvalidPartOrder => (S::BAD_REQUEST, "InvalidPartOrder", "InvalidPartOrder"),
            Error::EntityTooSmall(_) => (S::BAD_REQUEST, "EntityTooSmall", "EntityTooSmall"),
            Error::DigestMismatch { .. } => (S::BAD_REQUEST, "BadDigest", "BadDigest"),
            Error::Timeout(_) => (S::REQUEST_TIMEOUT, "RequestTimeout", "RequestTimeout"),
            Error::Unavailable(_) => (
                S::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "ServiceUnavailable",
            ),
            Error::Internal(_) => (S::INTERNAL_SERVER_ERROR, "InternalError", "internal"),
        };
        match error {
            Error::Internal(cause) => Self {
                cause: Some(cause),
                ..Self::new(status, code, name, "Internal Server Error")
            },
            // Clients show the message: it names what was refused, for whom (never the
            // policy), so "why can't alice see this?" starts from the right operation.
            Error::Forbidden(message) => {
                Self::new(status, code, name, crate::core::refusal::explain(&message))
            }
            other => Self::new(status, code, name, other.to_string()),
        }
    }
}

impl From<AuthError> for ApiError {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::InvalidToken(_) => Self::new(
                StatusCode::UNAUTHORIZED,
                "InvalidJWT",
                "Unauthorized",
                error.to_string(),
            ),
            AuthError::ForbiddenRole(_) => Self::new(
                StatusCode::FORBIDDEN,
                "AccessDenied",
                "Unauthorized",
                error.to_string(),
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // One log line per error, inside the request's span (which carries the request id).
        match &self.cause {
            Some(cause) => {
                tracing::error!(status = self.status.as_u16(), error = ?cause, "request failed")
            }
            None if self.status.is_server_error() => {
                tracing::warn!(status = self.status.as_u16(), message = %self.message, "request failed")
            }
            None => {
                tracing::info!(status = self.status.as_u16(), message = %self.message, "request refused")
            }
        }
        let body = ErrorBody {
            status_code: self.status.as_u16().to_string(),
            code: self.code,
            error: self.error,
            message: self.message,
        };
        (self.status, Json(body)).into_response()
    }
}

/// The body of every error answer (Supabase Storage's shape), as the OpenAPI document shows it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    /// The HTTP status, as text (`"404"`).
    status_code: String,
    /// The S3-style code storage-js reads (`NoSuchKey`).
    #[schema(value_type = String)]
    code: &'static str,
    /// The older error text storage3 reads.
    #[schema(value_type = String)]
    error: &'static str,
    message: String,
}

/// Answer for routes that do not exist.
pub async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "NotFound",
        "not_found",
        "Route not found",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multipart_errors_have_their_own_codes() {
        let cases = [
            (Error::NoSuchUpload, StatusCode::NOT_FOUND, "NoSuchUpload"),
            (
                Error::InvalidPart("x".into()),
                StatusCode::BAD_REQUEST,
                "InvalidPart",
            ),
            (
                Error::InvalidPartOrder,
                StatusCode::BAD_REQUEST,
                "InvalidPartOrder",
            ),
            (
                Error::EntityTooSmall("x".into()),
                StatusCode::BAD_REQUEST,
                "EntityTooSmall",
            ),
        ];
        for (error, status, code) in cases {
            let api = ApiError::from(error);
            assert_eq!((api.status, api.code), (status, code));
        }
    }
}
