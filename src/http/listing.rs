//! `POST /object/list/{bucket}` (v1) and `POST /object/list-v2/{bucket}`.

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::json::{JsonBody, flexible_i64};
use super::openapi::{ListEntry, ListPage};
use super::{ApiError, AppState, CallerExt};
use crate::core::listing::{Entry, ListV1, ListV2, Sort, SortColumn};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_v1))
        .routes(routes!(list_v2))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
struct SortBy {
    /// `name` (default), `created_at`, `updated_at` or `last_accessed_at`.
    column: Option<String>,
    /// `asc` (default) or `desc`.
    order: Option<String>,
}

impl SortBy {
    fn parse(self) -> Result<Sort, ApiError> {
        let column = match self.column.as_deref() {
            None => SortColumn::Name,
            Some(c) => SortColumn::parse(c).map_err(ApiError::from)?,
        };
        let descending = match self
            .order
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("asc") => false,
            Some("desc") => true,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "sortBy.order '{other}' is not asc or desc"
                )));
            }
        };
        Ok(Sort { column, descending })
    }
}

/// A v1 listing: one folder level under `prefix`, `limit` entries from `offset`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct V1Body {
    #[serde(default)]
    prefix: Option<String>,
    /// A whole number, or one as text.
    #[serde(default, deserialize_with = "flexible_i64")]
    #[schema(value_type = Option<Object>)]
    limit: Option<i64>,
    /// A whole number, or one as text.
    #[serde(default, deserialize_with = "flexible_i64")]
    #[schema(value_type = Option<Object>)]
    offset: Option<i64>,
    #[serde(default)]
    sort_by: Option<SortBy>,
    #[serde(default)]
    search: Option<String>,
}

/// A v2 listing: a page from `cursor`, folders apart when `with_delimiter`.
#[derive(Debug, Deserialize, ToSchema)]
struct V2Body {
    #[serde(default)]
    prefix: Option<String>,
    /// A whole number, or one as text.
    #[serde(default, deserialize_with = "flexible_i64")]
    #[schema(value_type = Option<Object>)]
    limit: Option<i64>,
    #[serde(default)]
    cursor: Option<String>,
    #[serde(default)]
    with_delimiter: Option<bool>,
    #[serde(default, rename = "sortBy")]
    sort_by: Option<SortBy>,
}

/// v1 entries are named relative to the listed folder; folders have null fields.
fn v1_entry(entry: &Entry) -> Value {
    json!({
        "name": entry.key,
        "id": entry.id,
        "updated_at": if entry.folder { None } else { entry.updated_at },
        "created_at": if entry.folder { None } else { entry.created_at },
        "last_accessed_at": if entry.folder { None } else { entry.last_accessed_at },
        "metadata": entry.metadata,
    })
}

#[utoipa::path(post, path = "/object/list/{bucket}", tag = "listing", params(("bucket" = String, Path, description = "The bucket's id", example = "x")),
    request_body = V1Body,
    responses((status = 200, description = "The folder's entries", body = [ListEntry])))]
async fn list_v1(
    State(state): State<AppState>,
    CallerExt(caller): CallerExt,
    Path(bucket): Path<String>,
    JsonBody(body): JsonBody<V1Body>,
) -> Result<Json<Vec<Value>>, ApiError> {
    let query = ListV1 {
        prefix: body.prefix.unwrap_or_default(),
        limit: body.limit,
        offset: body.offset,
        sort: body.sort_by.unwrap_or_default().parse()?,
        search: body.search,
    };
    let entries = state.storage.list_v1(&caller, &bucket, &query).await?;
    Ok(Json(entries.iter().map(v1_entry).collect()))
}

#[utoipa::path(post, path = "/object/list-v2/{bucket}", tag = "listing", params(("bucket" = String, Path, description = "The bucket's id", example = "x")),
    request_body = V2Body,
    responses((status = 200, description = "A page of entries", body = ListPage)))]
async fn list_v2(
    State(state): State<AppState>,
    CallerExt(caller): CallerExt,
    Path(bucket): Path<String>,
    JsonBody(body): JsonBody<V2Body>,
) -> Result<Json<Value>, ApiError> {
    let query = ListV2 {
        prefix: body.prefix.unwrap_or_default(),
        limit: body.limit,
        cursor: body.cursor.filter(|c| !c.is_empty()),
        with_delimiter: body.with_delimiter.unwrap_or(false),
        sort: body.sort_by.unwrap_or_default().parse()?,
    };
    let page = state.storage.list_v2(&caller, &bucket, &query).await?;
    let (folders, objects): (Vec<&Entry>, Vec<&Entry>) =
        page.entries.iter().partition(|e| e.folder);
    let mut answer = json!({
        "hasNext": page.next_cursor.is_some(),
        "folders": folders.iter().map(|f| json!({
            "key": f.key,
            "name": f.path,
            "id": null,
            "bucket_id": bucket,
            "updated_at": f.updated_at,
            "created_at": f.created_at,
            "last_accessed_at": f.last_accessed_at,
        })).collect::<Vec<_>>(),
        "objects": objects.iter().map(|o| json!({
            "key": o.key,
            "name": o.path,
            "id": o.id,
            "bucket_id": bucket,
            "updated_at": o.updated_at,
            "created_at": o.created_at,
            "last_accessed_at": o.last_accessed_at,
            "metadata": o.metadata,
        })).collect::<Vec<_>>(),
    });
    if let Some(cursor) = page.next_cursor {
        answer["nextCursor"] = json!(cursor);
        // Supabase's companion to the cursor: the name of the page's last entry.
        if let Some(last) = page.entries.last() {
            answer["nextCursorKey"] = json!(last.path);
        }
    }
    Ok(Json(answer))
}
