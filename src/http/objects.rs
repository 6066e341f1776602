//! `/object` routes: upload, download, info, delete, move, copy.

use std::collections::HashMap;
use std::time::SystemTime;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::header::{
    ACCEPT_RANGES, CACHE_CONTROL, CONTENT_DISPOSITION, CONTENT_LENGTH, CONTENT_RANGE,
    CONTENT_SECURITY_POLICY, CONTENT_TYPE, ETAG, LAST_MODIFIED,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::download::{self, RangeDecision};
use super::json::JsonBody;
use super::openapi::{Copied, Message, Moved, ObjectInfo, ObjectPath, Stored};
use super::upload_body;
use super::{ApiError, AppState, CallerExt, PublicCaller};
use crate::core::media_type::MediaType;
use crate::core::objects::{CopyHeaders, CopyRequest, ObjectRow, Upload};
use crate::core::{Caller, Error, Operation};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(move_object))
        .routes(routes!(copy_object))
        .routes(routes!(info_authenticated, head_info_authenticated))
        .routes(routes!(info_public, head_info_public))
        .routes(routes!(info, head_info))
        .routes(routes!(download_authenticated, head_authenticated))
        .routes(routes!(download_public, head_public))
        .routes(routes!(upload_post, upload_put, download, head, delete_one))
        .routes(routes!(delete_many))
}

/// An upload as a form: the file part, optionally after its fields.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)]
struct UploadForm {
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    /// Whole seconds, or a Cache-Control value.
    #[serde(rename = "cacheControl")]
    cache_control: Option<String>,
    /// User metadata, as JSON text.
    metadata: Option<String>,
}

pub(super) fn upsert_header(headers: &HeaderMap) -> bool {
    headers
        .get("x-upsert")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// Uploads a new object (`x-upsert: true` replaces an existing one).
#[utoipa::path(post, path = "/object/{bucket}/{*path}", tag = "objects", params(
        ObjectPath,
    ),
    request_body(description = "The bytes (their type in Content-Type), or a form whose file part holds them",
        content((String = "application/octet-stream"), (UploadForm = "multipart/form-data"))),
    responses((status = 200, description = "Stored", body = Stored)))]
async fn upload_post(
    state: State<AppState>,
    caller: CallerExt,
    path: Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let upsert = upsert_header(&headers);
    upload(state, caller, path, headers, body, upsert).await
}

#[utoipa::path(put, path = "/object/{bucket}/{*path}", tag = "objects", params(
        ObjectPath,
    ),
    request_body(description = "The bytes (their type in Content-Type), or a form whose file part holds them",
        content((String = "application/octet-stream"), (UploadForm = "multipart/form-data"))),
    responses((status = 200, description = "Stored", body = Stored)))]
/// PUT replaces (and creates when missing), as Supabase's update does.
async fn upload_put(
    state: State<AppState>,
    caller: CallerExt,
    path: Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    upload(state, caller, path, headers, body, true).await
}

async fn upload(
    State(state): State<AppState>,
    CallerExt(caller): CallerExt,
    Path((bucket, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
    upsert: bool,
) -> Result<Json<Value>, ApiError> {
    let parsed = upload_body::parse(&headers, body).await?;
    let stored = state
        .storage
        .upload(
            &caller,
            Upload {
                bucket,
                name,
                body: parsed.body,
                declared_length: parsed.declared_length,
                content_type: parsed.content_type,
                cache_control: parsed.cache_control,
                user_metadata: parsed.user_metadata,
                upsert,
                owner: None,
                headers: Default::default(),
            },
        )
        .await
        .map_err(ApiError::duplicate_as("KeyAlreadyExists"))?;
    Ok(Json(json!({
        "Id": stored.id,
        "Key": format!("{}/{}", stored.bucket, stored.name),
    })))
}

#[utoipa::path(get, path = "/object/{bucket}/{*path}", tag = "objects", params(
        ObjectPath,
        ("download" = Option<String>, Query, description = "Send as an attachment, with this file name (empty: the object's)"),
    ),
    responses(
        (status = 200, description = "The object's bytes", body = String, content_type = "application/octet-stream"),
        (status = 206, description = "The requested range", body = String, content_type = "application/octet-stream"),
        (status = 304, description = "Not modified"),
    ))]
async fn download(
    State(state): State<AppState>,
    CallerExt(caller): CallerExt,
    Path((bucket, name)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    serve_object(&state, &caller, &bucket, &name, &query, &headers).await
}

/// The same as [`download`], at `/object/authenticated`.
#[utoipa::path(get, path = "/object/authenticated/{bucket}/{*path}", tag = "objects", params(
        ObjectPath,
        ("download" = Option<String>, Query, description = "Send as an attachment, with this file name (empty: the object's)"),
    ),
    responses(
        (status = 200, description = "The object's bytes", body = String, content_type = "application/octet-stream"),
        (status = 206, description = "The requested range", body = String, content_type = "application/octet-stream"),
        (status = 304, description = "Not modified"),
    ))]
async fn download_authenticated(
    state: State<AppState>,
    caller: CallerExt,
    path: Path<(String, String)>,
    query: Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    download(state, caller, path, query, headers).await
}

#[utoipa::path(get, path = "/object/public/{bucket}/{*path}", tag = "objects", security(()), params(
        ObjectPath,
        ("download" = Option<String>, Query, description = "Send as an attachment, with this file name (empty: the object's)"),
    ),
    responses(
        (status = 200, description = "The object's bytes", body = String, content_type = "application/octet-stream"),
        (status = 206, description = "The requested range", body = String, content_type = "application/octet-stream"),
        (status = 304, description = "Not modified"),
    ))]
/// The public route runs as `anon`, whatever credentials came with it: `public` is a flag that
/// policies read, not a bypass of Row Level Security.
async fn download_public(
    State(state): State<AppState>,
    PublicCaller(caller): PublicCaller,
    Path((bucket, name)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    serve_object(&state, &caller, &bucket, &name, &query, &headers).await
}

#[utoipa::path(head, path = "/object/{bucket}/{*path}", tag = "objects", params(
        ObjectPath,
    ),
    responses(
        (status = 200, description = "The object's headers, without its bytes"),
        (status = 304, description = "Not modified"),
    ))]
async fn head(
    State(state): State<AppState>,
    CallerExt(caller): CallerExt,
    Path((bucket, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    head_object(&state, &caller, &bucket, &name, &headers).await
}

#[utoipa::path(head, path = "/object/public/{bucket}/{*path}", tag = "objects", security(()), params(
        ObjectPath,
    ),
    responses(
        (status = 200, description = "The object's headers, without its bytes"),
        (status = 304, description = "Not modified"),
    ))]
async fn head_public(
    State(state): State<AppState>,
    PublicCaller(caller): PublicCaller,
    Path((bucket, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    head_object(&state, &caller, &bucket, &name, &headers).await
}

#[utoipa::path(head, path = "/object/authenticated/{bucket}/{*path}", tag = "objects", params(
        ObjectPath,
    ),
    responses(
        (status = 200, description = "The object's headers, without its bytes"),
        (status = 304, description = "Not modified"),
    ))]
async fn head_authenticated(
    state: State<AppState>,
    caller: CallerExt,
    path: Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    head(state, caller, path, headers).await
}

/// HEAD on an info route answers the object's own headers.
#[utoipa::path(head, path = "/object/info/{bucket}/{*path}", tag = "objects", params(
        ObjectPath,
    ),
    responses(
        (status = 200, description = "The object's headers, without its bytes"),
        (status = 304, description = "Not modified"),
    ))]
async fn head_info(
    state: State<AppState>,
    caller: CallerExt,
    path: Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    head(state, caller, path, headers).await
}

#[utoipa::path(head, path = "/object/info/authenticated/{bucket}/{*path}", tag = "objects", params(
        ObjectPath,
    ),
    responses(
        (status = 200, description = "The object's headers, without its bytes"),
        (status = 304, description = "Not modified"),
    ))]
async fn head_info_authenticated(
    state: State<AppState>,
    caller: CallerExt,
    path: Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    head(state, caller, path, headers).await
}

#[utoipa::path(head, path = "/object/info/public/{bucket}/{*path}", tag = "objects", security(()), params(
        ObjectPath,
    ),
    responses(
        (status = 200, description = "The object's headers, without its bytes"),
        (status = 304, description = "Not modified"),
    ))]
async fn head_info_public(
    state: State<AppState>,
    caller: PublicCaller,
    path: Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    head_public(state, caller, path, headers).await
}

/// Headers shared by GET, HEAD and 304 answers.
///
/// Stored content must never run script in this origin (see docs/security.md): every answer
/// carries `nosniff` and, PDF aside ([`MediaType::sandboxable`]), `Content-Security-Policy:
/// sandbox` (a document opened from it gets an opaque origin and no scripts); a type not known
/// to be inert (HTML, SVG, XML, JavaScript, anything unknown) is also an attachment, so a
/// browser navigating to it downloads it instead of rendering it. The stored type is served
/// unchanged, so API clients get back the bytes and the type they uploaded.
fn object_headers(row: &ObjectRow) -> (HeaderMap, Option<String>, Option<SystemTime>) {
    let meta = row.system_metadata();
    let mut headers = HeaderMap::new();
    // A stored type that is not one valid media type (written before types were validated)
    // is served as opaque bytes rather than passed on or left out.
    let media = meta
        .mimetype
        .as_deref()
        .and_then(|t| MediaType::parse(t).ok())
        .unwrap_or_else(MediaType::octet_stream);
    let mut set = |name, value: &str| {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    };
    set(CONTENT_TYPE, media.as_str());
    if let Some(etag) = &meta.e_tag {
        set(ETAG, etag);
    }
    let modified = meta.last_modified.or(row.updated_at).map(SystemTime::from);
    if let Some(modified) = modified {
        set(LAST_MODIFIED, &httpdate::fmt_http_date(modified));
    }
    set(
        CACHE_CONTROL,
        meta.cache_control.as_deref().unwrap_or("no-cache"),
    );
    set(ACCEPT_RANGES, "bytes");
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    if media.sandboxable() {
        headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static("sandbox"));
    }
    if !media.inline_safe() {
        let filename = row.name.rsplit('/').next().unwrap_or(&row.name);
        headers.insert(CONTENT_DISPOSITION, download::attachment(filename));
    }
    // Stored files are not pages for search engines to index (Supabase sends the same).
    headers.insert("x-robots-tag", HeaderValue::from_static("none"));
    (headers, meta.e_tag, modified)
}

pub(super) async fn serve_object(
    state: &AppState,
    caller: &Caller,
    bucket: &str,
    name: &str,
    query: &HashMap<String, String>,
    request: &HeaderMap,
) -> Result<Response, ApiError> {
    let row = state
        .storage
        .object(caller, Operation::Download, bucket, name)
        .await?;
    let (mut headers, etag, modified) = object_headers(&row);
    if download::not_modified(request, etag.as_deref(), modified) {
        return Ok((StatusCode::NOT_MODIFIED, headers).into_response());
    }
    if let Some(requested) = query.get("download") {
        let filename = if requested.is_empty() {
            name.rsplit('/').next().unwrap_or(name)
        } else {
            requested.as_str()
        };
        headers.insert(CONTENT_DISPOSITION, download::attachment(filename));
    }
    let size = row.measured_size()?;
    let (status, range) = match download::range(request, size) {
        RangeDecision::Full => (StatusCode::OK, None),
        RangeDecision::Partial(range) => {
            let value = format!("bytes {}-{}/{size}", range.start, range.end);
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(CONTENT_RANGE, value);
            }
            (StatusCode::PARTIAL_CONTENT, Some(range))
        }
        RangeDecision::Unsatisfiable => {
            let mut error: Response = ApiError::from(Error::RangeNotSatisfiable(format!(
                "the range is outside the object's {size} bytes"
            )))
            .into_response();
            if let Ok(value) = HeaderValue::from_str(&format!("bytes */{size}")) {
                error.headers_mut().insert(CONTENT_RANGE, value);
            }
            return Ok(error);
        }
    };
    let length = range.map_or(size, |r| r.len());
    headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
    let stream = state.storage.read(&row, range).await?;
    Ok((status, headers, Body::from_stream(stream)).into_response())
}

/// HEAD is answered from the row alone; no bytes are read.
async fn head_object(
    state: &AppState,
    caller: &Caller,
    bucket: &str,
    name: &str,
    request: &HeaderMap,
) -> Result<Response, ApiError> {
    let row = state
        .storage
        .object(caller, Operation::Info, bucket, name)
        .await?;
    let (mut headers, etag, modified) = object_headers(&row);
    if download::not_modified(request, etag.as_deref(), modified) {
        return Ok((StatusCode::NOT_MODIFIED, headers).into_response());
    }
    headers.insert(CONTENT_LENGTH, HeaderValue::from(row.measured_size()?));
    Ok((StatusCode::OK, headers).into_response())
}

fn info_json(row: &ObjectRow) -> Value {
    let meta = row.system_metadata();
    json!({
        "id": row.id,
        "name": row.name,
        "version": row.version,
        "bucket_id": row.bucket_id,
        "size": meta.size,
        "content_type": meta.mimetype,
        "cache_control": meta.cache_control,
        "etag": meta.e_tag,
        "sha256": meta.sha256,
        "owner_id": row.owner_id,
        "metadata": row.user_metadata.clone().unwrap_or_else(|| json!({})),
        "last_modified": row.updated_at,
        "created_at": row.created_at,
    })
}

#[utoipa::path(get, path = "/object/info/{bucket}/{*path}", tag = "objects", params(
        ObjectPath,
    ),
    responses((status = 200, description = "The object's fields", body = ObjectInfo)))]
async fn info(
    State(state): State<AppState>,
    CallerExt(caller): CallerExt,
    Path((bucket, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    object_info(&state, &caller, &bucket, &name).await
}

#[utoipa::path(get, path = "/object/info/public/{bucket}/{*path}", tag = "objects", security(()), params(
        ObjectPath,
    ),
    responses((status = 200, description = "The object's fields", body = ObjectInfo)))]
async fn info_public(
    State(state): State<AppState>,
    PublicCaller(caller): PublicCaller,
    Path((bucket, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    object_info(&state, &caller, &bucket, &name).await
}

#[utoipa::path(get, path = "/object/info/authenticated/{bucket}/{*path}", tag = "objects", params(
        ObjectPath,
    ),
    responses((status = 200, description = "The object's fields", body = ObjectInfo)))]
async fn info_authenticated(
    state: State<AppState>,
    caller: CallerExt,
    path: Path<(String, String)>,
) -> Result<Response, ApiError> {
    info(state, caller, path).await
}

/// The object's fields as JSON, with the object's `ETag`, `Last-Modified` and `Cache-Control`
/// headers as a download sends them (as Supabase's info route does). `Content-Type` and
/// `Content-Length` are the JSON's; HEAD on the info routes answers the object's own.
async fn object_info(
    state: &AppState,
    caller: &Caller,
    bucket: &str,
    name: &str,
) -> Result<Response, ApiError> {
    let row = state
        .storage
        .object(caller, Operation::Info, bucket, name)
        .await?;
    let (object, _, _) = object_headers(&row);
    let mut response = Json(info_json(&row)).into_response();
    for header in [ETAG, LAST_MODIFIED, CACHE_CONTROL] {
        if let Some(value) = object.get(&header) {
            response.headers_mut().insert(header, value.clone());
        }
    }
    Ok(response)
}

#[utoipa::path(delete, path = "/object/{bucket}/{*path}", tag = "objects", params(
        ObjectPath,
    ),
    responses((status = 200, description = "Deleted", body = Message)))]
async fn delete_one(
    State(state): State<AppState>,
    CallerExt(caller): CallerExt,
    Path((bucket, name)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    state.storage.delete_object(&caller, &bucket, &name).await?;
    Ok(Json(json!({ "message": "Successfully deleted" })))
}

/// The names to delete (whole names, not prefixes, despite the field's name).
#[derive(Debug, Deserialize, ToSchema)]
struct DeleteMany {
    prefixes: Vec<String>,
}

#[utoipa::path(delete, path = "/object/{bucket}", tag = "objects",
    params(("bucket" = String, Path, description = "The bucket's id", example = "x")), request_body = DeleteMany,
    responses((status = 200, description = "The rows deleted (names not found are left out)", body = [ObjectRow])))]
async fn delete_many(
    State(state): State<AppState>,
    CallerExt(caller): CallerExt,
    Path(bucket): Path<String>,
    JsonBody(body): JsonBody<DeleteMany>,
) -> Result<Json<Vec<ObjectRow>>, ApiError> {
    Ok(Json(
        state
            .storage
            .delete_objects(&caller, &bucket, &body.prefixes)
            .await?,
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
struct MoveBody {
    bucket_id: String,
    source_key: String,
    destination_key: String,
    destination_bucket: Option<String>,
}

/// Supabase's copy body. Unknown keys are refused rather than ignored: a key this server does
/// not know (`sourceVersionId`, `metadata.contentEncoding`) would otherwise be silently dropped.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CopyBody {
    bucket_id: String,
    source_key: String,
    destination_key: String,
    destination_bucket: Option<String>,
    #[serde(default)]
    copy_metadata: Option<bool>,
    #[serde(default)]
    metadata: Option<CopyMetadata>,
}

/// The copy's own system metadata, used with `copyMetadata: false`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CopyMetadata {
    cache_control: Option<String>,
    mimetype: Option<String>,
}

/// A value the copy will send back as a header: printable ASCII, not empty.
fn header_field(name: &str, value: Option<String>) -> Result<Option<String>, ApiError> {
    match value {
        Some(text) if text.trim().is_empty() || HeaderValue::from_str(&text).is_err() => {
            Err(ApiError::bad_request(format!(
                "metadata.{name} must be a non-empty header value of printable ASCII"
            )))
        }
        other => Ok(other),
    }
}

#[utoipa::path(post, path = "/object/move", tag = "objects", request_body = MoveBody,
    responses((status = 200, description = "Moved", body = Moved)))]
async fn move_object(
    State(state): State<AppState>,
    CallerExt(caller): CallerExt,
    JsonBody(body): JsonBody<MoveBody>,
) -> Result<Json<Value>, ApiError> {
    let destination_bucket = body
        .destination_bucket
        .unwrap_or_else(|| body.bucket_id.clone());
    let moved = state
        .storage
        .move_object(
            &caller,
            &body.bucket_id,
            &body.source_key,
            &destination_bucket,
            &body.destination_key,
        )
        .await?;
    Ok(Json(json!({
        "message": "Successfully moved",
        "Id": moved.id,
        "Key": moved.name,
    })))
}

#[utoipa::path(post, path = "/object/copy", tag = "objects", request_body = CopyBody,
    params(("x-metadata" = Option<String>, Header, description = "The copy's user metadata: base64 of JSON")),
    responses((status = 200, description = "Copied", body = Copied)))]
async fn copy_object(
    State(state): State<AppState>,
    CallerExt(caller): CallerExt,
    headers: HeaderMap,
    JsonBody(body): JsonBody<CopyBody>,
) -> Result<Json<Value>, ApiError> {
    let copy_metadata = body.copy_metadata.unwrap_or(true);
    let (cache_control, content_type) = match body.metadata {
        // Supabase ignores it then; refusing tells the caller their metadata was not applied.
        Some(_) if copy_metadata => {
            return Err(ApiError::bad_request(
                "metadata applies only with copyMetadata: false",
            ));
        }
        Some(metadata) => (
            // Whole seconds, as the upload form's cacheControl field takes them.
            header_field("cacheControl", metadata.cache_control)?.map(|text| {
                if text.chars().all(|c| c.is_ascii_digit()) {
                    format!("max-age={text}")
                } else {
                    text
                }
            }),
            header_field("mimetype", metadata.mimetype)?,
        ),
        None => (None, None),
    };
    let user_metadata = match headers.get("x-metadata").and_then(|v| v.to_str().ok()) {
        Some(encoded) => {
            use base64::Engine;
            let text = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| ApiError::bad_request("x-metadata must be base64-encoded JSON"))?;
            Some(upload_body::parse_user_metadata(&text)?)
        }
        None => None,
    };
    let destination_bucket = body
        .destination_bucket
        .unwrap_or_else(|| body.bucket_id.clone());
    let row = state
        .storage
        .copy_object(
            &caller,
            CopyRequest {
                bucket: body.bucket_id,
                source: body.source_key,
                destination_bucket: destination_bucket.clone(),
                destination: body.destination_key,
                copy_metadata,
                user_metadata,
                upsert: upsert_header(&headers),
                headers: CopyHeaders::Amend {
                    cache_control,
                    content_type,
                },
            },
        )
        .await?;
    let mut answer = serde_json::to_value(&row).unwrap_or_else(|_| json!({}));
    answer["Id"] = json!(row.id);
    answer["Key"] = json!(format!("{destination_bucket}/{}", row.name));
    Ok(Json(answer))
}
