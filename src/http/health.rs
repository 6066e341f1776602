use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::openapi::{Health, Status};
use super::{ApiError, AppState};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(status))
        .routes(routes!(health))
        .routes(routes!(version))
}

/// The server's version as plain text (`0.1.0`), as Supabase Storage answers it.
#[utoipa::path(get, path = "/version", tag = "server", security(()),
    responses((status = 200, description = "The version", body = String, content_type = "text/plain")))]
async fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// Liveness: the process answers. No authentication, no database.
#[utoipa::path(get, path = "/status", tag = "server", security(()),
    responses((status = 200, description = "The process answers", body = Status)))]
async fn status() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Readiness: the database answers too.
#[utoipa::path(get, path = "/health", tag = "server", security(()),
    responses(
        (status = 200, description = "The database answers", body = Health),
        (status = 503, description = "The database does not answer", body = super::error::ErrorBody),
    ))]
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
