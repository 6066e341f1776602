//! The REST API's OpenAPI 3.1 document, served at `/openapi.json` (and under `/storage/v1`).
//!
//! It is generated from the routes themselves: every module's router is a `utoipa_axum`
//! [`OpenApiRouter`], whose `routes!` registers a handler with axum and the handler's
//! `#[utoipa::path]` entry with the document in the same call, so a route cannot be served
//! without being described. `tests/openapi.rs` checks the document's shape and that no route
//! escapes it; schemathesis checks the live server against it (docs/openapi.md).

use std::sync::LazyLock;

use axum::Json;
use axum::extract::OriginalUri;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value, json};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::AppState;
use crate::core::objects::ObjectRow;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "pgstorage",
        description = "Postgres-native object storage, compatible with the Supabase Storage REST \
                       API. Every request runs under the caller's Row Level Security policies.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    modifiers(&Security),
    security(("bearer" = []), ("apikey" = [])),
    components(schemas(super::error::ErrorBody)),
    tags(
        (name = "buckets", description = "Buckets and their limits"),
        (name = "objects", description = "Upload, download, information, move, copy, delete"),
        (name = "listing", description = "Folder listings (v1 offset pages, v2 cursor pages)"),
        (name = "signed", description = "Signed download and upload URLs"),
        (name = "render", description = "Image transformations"),
        (name = "resumable", description = "Resumable uploads (TUS 1.0), see docs/resumable.md"),
        (name = "admin", description = "Operator routes, for service_role only"),
        (name = "server", description = "Liveness, readiness, version, this document"),
    )
)]
struct ApiDoc;

/// The two ways to send credentials: a JWT as the bearer (wins when both come) or an API key
/// (itself a JWT) in the `apikey` header.
struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "apikey",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("apikey"))),
        );
    }
}

/// The REST API's routes, each with its entry in the document.
pub(super) fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(openapi_json))
        .merge(super::health::routes())
        .merge(super::admin::routes())
        .merge(super::buckets::routes())
        .merge(super::objects::routes())
        .merge(super::listing::routes())
        .merge(super::signed::routes())
        .merge(super::render::routes())
        .merge(crate::resumable::routes())
}

/// The document as JSON. Axum writes a wildcard segment `{*path}`; OpenAPI names it `{path}`.
/// Every operation may be refused (4xx) or fail (5xx) with an [`ErrorBody`]; that is said once
/// here rather than on each handler.
///
/// [`ErrorBody`]: super::error::ErrorBody
pub fn document() -> Value {
    let (_, openapi) = api().split_for_parts();
    let mut document = serde_json::to_value(&openapi).unwrap_or_else(|_| json!({}));
    let error = json!({ "application/json": {
        "schema": { "$ref": "#/components/schemas/ErrorBody" }
    }});
    if let Some(Value::Object(paths)) = document.get_mut("paths") {
        let renamed: Map<String, Value> = std::mem::take(paths)
            .into_iter()
            .map(|(path, item)| (path.replace("{*", "{"), item))
            .collect();
        *paths = renamed;
        for item in paths.values_mut().filter_map(Value::as_object_mut) {
            for operation in item.values_mut() {
                let Some(responses) = operation
                    .get_mut("responses")
                    .and_then(Value::as_object_mut)
                else {
                    continue;
                };
                for (status, description) in [
                    (
                        "4XX",
                        "Refused: invalid input, no access, not found, conflict, too large",
                    ),
                    ("5XX", "The server, its database or its byte store failed"),
                ] {
                    responses.entry(status).or_insert_with(
                        || json!({ "description": description, "content": error.clone() }),
                    );
                }
            }
        }
    }
    document
}

static DOCUMENT: LazyLock<Value> = LazyLock::new(document);

/// This document. Its server is the prefix it was fetched under, so tools that read it from
/// `/storage/v1/openapi.json` call `/storage/v1/...`.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "server",
    security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object)),
)]
async fn openapi_json(OriginalUri(uri): OriginalUri) -> Json<Value> {
    let mut document = DOCUMENT.clone();
    let base = uri.path().strip_suffix("/openapi.json").unwrap_or_default();
    document["servers"] = json!([{ "url": if base.is_empty() { "/" } else { base } }]);
    Json(document)
}

// The shapes of answers the handlers build with `json!`, for the document only.

/// `{"message": "Successfully ..."}`.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub(super) struct Message {
    message: String,
}

/// The created bucket's name.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub(super) struct BucketCreated {
    name: String,
}

/// A stored object: its id and `<bucket>/<name>`.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub(super) struct Stored {
    #[serde(rename = "Id")]
    id: Uuid,
    #[serde(rename = "Key")]
    key: String,
}

/// A moved object: its id and new name.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub(super) struct Moved {
    message: String,
    #[serde(rename = "Id")]
    id: Uuid,
    #[serde(rename = "Key")]
    key: String,
}

/// The copy's row, with its id and `<bucket>/<name>`.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub(super) struct Copied {
    #[serde(flatten)]
    row: ObjectRow,
    #[serde(rename = "Id")]
    id: Uuid,
    #[serde(rename = "Key")]
    key: String,
}

/// An object's fields, from `/object/info/...`.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub(super) struct ObjectInfo {
    id: Uuid,
    name: String,
    version: Option<String>,
    bucket_id: String,
    size: Option<u64>,
    content_type: Option<String>,
    cache_control: Option<String>,
    etag: Option<String>,
    sha256: Option<String>,
    /// The user metadata (`{}` when none).
    metadata: Value,
    last_modified: Option<DateTime<Utc>>,
    created_at: Option<DateTime<Utc>>,
}

/// One entry of a v1 listing: a file, or a folder (null id, dates and metadata).
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub(super) struct ListEntry {
    name: String,
    id: Option<Uuid>,
    updated_at: Option<DateTime<Utc>>,
    created_at: Option<DateTime<Utc>>,
    last_accessed_at: Option<DateTime<Utc>>,
    metadata: Option<Value>,
}

/// A v2 listing page.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
pub(super) struct ListPage {
    has_next: bool,
    folders: Vec<ListFolder>,
    objects: Vec<ListObject>,
    /// Present when `hasNext`: the `cursor` of the next page.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
    /// Present when `hasNext`: the name of this page's last entry.
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor_key: Option<String>,
}

/// A folder of a v2 listing.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub(super) struct ListFolder {
    key: String,
    name: String,
    id: Option<Uuid>,
    bucket_id: String,
    updated_at: Option<DateTime<Utc>>,
    created_at: Option<DateTime<Utc>>,
    last_accessed_at: Option<DateTime<Utc>>,
}

/// An object of a v2 listing.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub(super) struct ListObject {
    key: String,
    name: String,
    id: Option<Uuid>,
    bucket_id: String,
    updated_at: Option<DateTime<Utc>>,
    created_at: Option<DateTime<Utc>>,
    last_accessed_at: Option<DateTime<Utc>>,
    metadata: Option<Value>,
}

/// A signed download URL, relative to the API's root, carrying `?token=`.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub(super) struct SignedUrl {
    #[serde(rename = "signedURL")]
    signed_url: String,
}

/// One path of a batch: its URL, or why it has none.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub(super) struct SignedUrlEntry {
    error: Option<String>,
    path: String,
    #[serde(rename = "signedURL")]
    signed_url: Option<String>,
}

/// A signed upload URL (relative, carrying `?token=`) and its token.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub(super) struct SignedUpload {
    url: String,
    token: String,
}

/// Liveness.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub(super) struct Status {
    status: String,
}

/// Readiness.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub(super) struct Health {
    healthy: bool,
    database: String,
}

/// The `{bucket}/{*path}` of an object's routes, described once for all of them.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // read by the document only, never built
pub(crate) struct ObjectPath {
    /// The bucket's id
    #[param(example = "x")]
    bucket: String,
    /// The object's name (may contain `/`)
    #[param(example = "x")]
    path: String,
}
