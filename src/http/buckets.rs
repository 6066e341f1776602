//! `/bucket` routes.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::routing::post;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::json::{JsonBody, double_option};
use super::openapi::{BucketCreated, Message};
use super::{ApiError, AppState, CallerExt};
use crate::core::buckets::{Bucket, BucketChanges, ListBuckets, NewBucket, SortColumn};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        // The same with a trailing slash, as some clients send it; described once, above.
        .route("/bucket/", post(create).get(list))
        .routes(routes!(fetch, update, remove))
        .routes(routes!(empty))
}

/// A new bucket: `name` (or `id`; each defaults to the other).
#[derive(Debug, Deserialize, ToSchema)]
struct CreateBody {
    id: Option<String>,
    name: Option<String>,
    #[serde(default)]
    public: Option<bool>,
    /// Bytes (a positive number) or a size with a unit (`"10MB"`); null: no limit.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    file_size_limit: Option<Value>,
    #[serde(default)]
    allowed_mime_types: Option<Vec<String>>,
}

/// What to change; an absent field is left as it is, a null limit or type list removes it.
#[derive(Debug, Deserialize, ToSchema)]
struct UpdateBody {
    #[serde(default)]
    public: Option<bool>,
    /// Bytes (a positive number) or a size with a unit (`"10MB"`); null: no limit.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<Object>)]
    file_size_limit: Option<Option<Value>>,
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<Vec<String>>)]
    allowed_mime_types: Option<Option<Vec<String>>>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
struct ListParams {
    limit: Option<i64>,
    offset: Option<i64>,
    search: Option<String>,
    /// `id`, `name`, `created_at` or `updated_at`.
    sort_column: Option<String>,
    /// `asc` or `desc`.
    sort_order: Option<String>,
}

/// `file_size_limit` as bytes (a number) or text with a unit ("10MB"); null means no limit.
fn parse_limit(value: Option<Value>) -> Result<Option<u64>, ApiError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_u64().filter(|n| *n > 0).map(Some).ok_or_else(|| {
            ApiError::bad_request("file_size_limit must be a positive whole number of bytes")
        }),
        Some(Value::String(text)) => crate::config::parse_size(&text)
            .map(Some)
            .map_err(|e| ApiError::bad_request(format!("file_size_limit: {e}"))),
        Some(_) => Err(ApiError::bad_request(
            "file_size_limit must be a number of bytes or a size such as \"10MB\"",
        )),
    }
}

#[utoipa::path(post, path = "/bucket", operation_id = "create_bucket", tag = "buckets", request_body = CreateBody,
    responses((status = 200, description = "Created", body = BucketCreated)))]
async fn create(
    State(state): State<AppState>,
    CallerExt(caller): CallerExt,
    JsonBody(body): JsonBody<CreateBody>,
) -> Result<Json<Value>, ApiError> {
    let name = body
        .name
        .or_else(|| body.id.clone())
        .ok_or_else(|| ApiError::bad_request("body must have a 'name'"))?;
    let bucket = NewBucket {
        id: body.id.unwrap_or_else(|| name.clone()),
        name,
        public: body.public.unwrap_or(false),
        file_size_limit: parse_limit(body.file_size_limit)?,
        allowed_mime_types: body.allowed_mime_types,
    };
    let name = state
        .storage
        .create_bucket(&caller, bucket)
        .await
        .map_err(ApiError::duplicate_as("BucketAlreadyExists"))?;
    Ok(Json(json!({ "name": name })))
}

#[utoipa::path(get, path = "/bucket", operation_id = "list_buckets", tag = "buckets", params(ListParams),
    responses((status = 200, description = "The buckets the caller may see", body = [Bucket])))]
async fn list(
    State(state): State<AppState>,
    CallerExt(caller): CallerExt,
    Query(params): Query<ListParams>,
) -> Result<Json<Vec<Bucket>>, ApiError> {
    let sort = match params.sort_column.as_deref() {
        None => None,
        Some("id") => Some(SortColumn::Id),
        Some("name") => Some(SortColumn::Name),
        Some("created_at") => Some(SortColumn::CreatedAt),
        Some("updated_at") => Some(SortColumn::UpdatedAt),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "sortColumn '{other}' is not one of id, name, created_at, updated_at"
            )));
        }
    };
    let descending = match params.sort_order.as_deref() {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "sortOrder '{other}' is not asc or desc"
            )));
        }
    };
    let query = ListBuckets {
        limit: params.limit,
        offset: params.offset,
        search: params.search.filter(|s| !s.is_empty()),
        sort,
        descending,
    };
    Ok(Json(state.storage.list_buckets(&caller, &query).await?))
}

#[utoipa::path(get, path = "/bucket/{id}", operation_id = "get_bucket", tag = "buckets", params(("id" = String, Path, description = "The bucket's id", example = "x")),
    responses((status = 200, description = "The bucket", body = Bucket)))]
async fn fetch(
    State(state): State<AppState>,
    CallerExt(caller): CallerExt,
    Path(id): Path<String>,
) -> Result<Json<Bucket>, ApiError> {
    Ok(Json(state.storage.get_bucket(&caller, &id).await?))
}

#[utoipa::path(put, path = "/bucket/{id}", operation_id = "update_bucket", tag = "buckets", params(("id" = String, Path, description = "The bucket's id", example = "x")), request_body = UpdateBody,
    responses((status = 200, description = "Updated", body = Message)))]
async fn update(
    State(state): State<AppState>,
    CallerExt(caller): CallerExt,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<UpdateBody>,
) -> Result<Json<Value>, ApiError> {
    let changes = BucketChanges {
        public: body.public,
        file_size_limit: body.file_size_limit.map(parse_limit).transpose()?,
        allowed_mime_types: body.allowed_mime_types,
    };
    state.storage.update_bucket(&caller, &id, changes).await?;
    Ok(Json(json!({ "message": "Successfully updated" })))
}

#[utoipa::path(delete, path = "/bucket/{id}", operation_id = "delete_bucket", tag = "buckets", params(("id" = String, Path, description = "The bucket's id", example = "x")),
    responses((status = 200, description = "Deleted (it must be empty)", body = Message)))]
async fn remove(
    State(state): State<AppState>,
    CallerExt(caller): CallerExt,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    state.storage.delete_bucket(&caller, &id).await?;
    Ok(Json(json!({ "message": "Successfully deleted" })))
}

#[utoipa::path(post, path = "/bucket/{id}/empty", operation_id = "empty_bucket", tag = "buckets", params(("id" = String, Path, description = "The bucket's id", example = "x")),
    responses((status = 200, description = "Every object deleted", body = Message)))]
async fn empty(
    State(state): State<AppState>,
    CallerExt(caller): CallerExt,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    state.storage.empty_bucket(&caller, &id).await?;
    Ok(Json(json!({ "message": "Successfully emptied" })))
}
