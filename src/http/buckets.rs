//! `/bucket` routes.

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::json::{JsonBody, double_option};
use super::{ApiError, AppState, CallerExt};
use crate::core::buckets::{Bucket, BucketChanges, ListBuckets, NewBucket, SortColumn};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/bucket", post(create).get(list))
        .route("/bucket/", post(create).get(list))
        .route("/bucket/{id}", get(fetch).put(update).delete(remove))
        .route("/bucket/{id}/empty", post(empty))
}

#[derive(Debug, Deserialize)]
struct CreateBody {
    id: Option<String>,
    name: Option<String>,
    #[serde(default)]
    public: Option<bool>,
    #[serde(default)]
    file_size_limit: Option<Value>,
    #[serde(default)]
    allowed_mime_types: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
struct UpdateBody {
    #[serde(default)]
    public: Option<bool>,
    #[serde(default, deserialize_with = "double_option")]
    file_size_limit: Option<Option<Value>>,
    #[serde(default, deserialize_with = "double_option")]
    allowed_mime_types: Option<Option<Vec<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListParams {
    limit: Option<i64>,
    offset: Option<i64>,
    search: Option<String>,
    sort_column: Option<String>,
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

async fn fetch(
    State(state): State<AppState>,
    CallerExt(caller): CallerExt,
    Path(id): Path<String>,
) -> Result<Json<Bucket>, ApiError> {
    Ok(Json(state.storage.get_bucket(&caller, &id).await?))
}

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

async fn remove(
    State(state): State<AppState>,
    CallerExt(caller): CallerExt,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    state.storage.delete_bucket(&caller, &id).await?;
    Ok(Json(json!({ "message": "Successfully deleted" })))
}

async fn empty(
    State(state): State<AppState>,
    CallerExt(caller): CallerExt,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    state.storage.empty_bucket(&caller, &id).await?;
    Ok(Json(json!({ "message": "Successfully emptied" })))
}
