use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use serde_json::{Value, json};

use super::{ApiError, AppState};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/status", get(status))
        .route("/health", get(health))
        .route("/version", get(version))
}

/// The server's version as plain text (`0.1.0`), as Supabase Storage answers it.
async fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// Liveness: the process answers. No authentication, no database.
async fn status() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Readiness: the database answers too.
async fn health(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    match state.storage.database().ping().await {
        Ok(()) => Ok(Json(json!({ "healthy": true, "database": "ok" }))),
        Err(error) => {
            // The database's own words stay in the log.
            tracing::warn!(%error, "health check: the database did not answer");
            Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "ServiceUnavailable",
                "database check failed",
            ))
        }
    }
}
