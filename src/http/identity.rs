use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;

use super::{ApiError, AppState};
use crate::core::Caller;

/// Extracts the [`Caller`]: the verified identity plus the request facts policies can read.
/// `Authorization: Bearer` wins over `apikey` (clients send the anon key as `apikey` and the
/// user's token as the bearer).
pub struct CallerExt(pub Caller);

impl FromRequestParts<AppState> for CallerExt {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let token = bearer_token(&parts.headers)?;
        let identity = state.auth.identify(token)?;
        Ok(CallerExt(Caller {
            identity,
            method: parts.method.to_string(),
            path: parts.uri.path().to_string(),
            headers: headers_json(&parts.headers),
        }))
    }
}

/// The caller of a public route: always `anon`, whatever credentials were sent, with the same
/// request facts as [`CallerExt`].
pub struct PublicCaller(pub Caller);

impl FromRequestParts<AppState> for PublicCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let identity = state.auth.identify(None)?;
        Ok(PublicCaller(Caller {
            identity,
            method: parts.method.to_string(),
            path: parts.uri.path().to_string(),
            headers: headers_json(&parts.headers),
        }))
    }
}

fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    if let Some(value) = headers.get(axum::http::header::AUTHORIZATION) {
        let value = value
            .to_str()
            .map_err(|_| ApiError::bad_request("the Authorization header is not valid text"))?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::bad_request("the Authorization header must be 'Bearer <token>'")
            })?;
        return Ok(Some(token));
    }
    match headers.get("apikey") {
        Some(value) => value
            .to_str()
            .map(|v| Some(v.trim()))
            .map_err(|_| ApiError::bad_request("the apikey header is not valid text")),
        None => Ok(None),
    }
}

/// Headers as a JSON object for `request.headers`, without credentials.
pub(super) fn headers_json(headers: &HeaderMap) -> String {
    let mut map = serde_json::Map::new();
    for (name, value) in headers {
        if matches!(name.as_str(), "authorization" | "apikey" | "cookie") {
            continue;
        }
        if let Ok(value) = value.to_str() {
            map.insert(name.as_str().to_string(), value.into());
        }
    }
    serde_json::Value::Object(map).to_string()
}
