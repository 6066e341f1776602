//! `/admin/*`: operator routes, for service_role only. `POST /admin/policy/check` is the policy
//! tester (the same engine as `pgstorage policy check`); `GET /admin/policies` lists them.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::json::JsonBody;
use super::{ApiError, AppState, CallerExt};
use crate::auth::Identity;
use crate::core::Operation;
use crate::core::policy::{CheckReport, CheckRequest, Policy};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(check))
        .routes(routes!(list))
}

/// The tester's question, as JSON.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct CheckBody {
    /// The role to test as (default `anon`).
    #[serde(default = "anon")]
    role: String,
    sub: Option<String>,
    /// More claims for the token (`role` and `sub` are set from the fields above).
    #[schema(value_type = Option<Object>)]
    claims: Option<Map<String, Value>>,
    /// The operation, e.g. `storage.upload` (see docs/policies.md).
    operation: String,
    bucket: String,
    path: Option<String>,
    size: Option<u64>,
    mime: Option<String>,
    destination_bucket: Option<String>,
    destination_path: Option<String>,
}

fn anon() -> String {
    Identity::ANON.to_string()
}

/// Only service_role may ask: the answer shows every policy's text and rows the asker may not
/// see.
fn service_only(identity: &Identity) -> Result<(), ApiError> {
    if identity.role == Identity::SERVICE_ROLE {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        "AccessDenied",
        "Unauthorized",
        format!(
            "the admin routes are for service_role only, not role {}",
            identity.role
        ),
    ))
}

#[utoipa::path(post, path = "/admin/policy/check", operation_id = "check_policy", tag = "admin", request_body = CheckBody,
    responses((status = 200, description = "Allowed or denied, and why", body = CheckReport)))]
async fn check(
    State(state): State<AppState>,
    CallerExt(caller): CallerExt,
    JsonBody(body): JsonBody<CheckBody>,
) -> Result<Json<CheckReport>, ApiError> {
    service_only(&caller.identity)?;
    let operation = Operation::parse(&body.operation).ok_or_else(|| {
        ApiError::bad_request(format!("'{}' is not an operation", body.operation))
    })?;
    // Only a role a token could carry: the tester answers for real requests.
    let identity = state.auth.authorize(CheckRequest::identity_for(
        &body.role,
        body.sub.as_deref(),
        body.claims,
    ))?;
    let request = CheckRequest {
        identity,
        operation,
        bucket: body.bucket,
        path: body.path,
        size: body.size,
        mime: body.mime,
        destination_bucket: body.destination_bucket,
        destination_path: body.destination_path,
    };
    Ok(Json(state.storage.check_policy(&request).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Only the policies that apply to this role.
    role: Option<String>,
}

#[utoipa::path(get, path = "/admin/policies", operation_id = "list_policies", tag = "admin", params(ListQuery),
    responses((status = 200, description = "The policies on the storage tables", body = [Policy])))]
async fn list(
    State(state): State<AppState>,
    CallerExt(caller): CallerExt,
    Query(query): Query<ListQuery>,
) -> Result<Json<Vec<Policy>>, ApiError> {
    service_only(&caller.identity)?;
    let policies = state.storage.policies(query.role.as_deref()).await?;
    Ok(Json(policies.into_iter().filter(|p| p.applies).collect()))
}
