//! `/render/image/...`: transformed images (see docs/transforms.md). The object is found and
//! checked exactly as for a download (operation `storage.download`; the public route as anon;
//! a signed URL with the signer's decision), then rendered by [`crate::transform`].

use std::collections::HashMap;
use std::time::SystemTime;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::header::{
    ACCEPT, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, ETAG, LAST_MODIFIED, RETRY_AFTER, VARY,
};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use sha2::{Digest, Sha256};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::download;
use super::identity::headers_json;
use super::openapi::ObjectPath;
use super::{ApiError, AppState, CallerExt, PublicCaller};
use crate::auth::Identity;
use crate::auth::signed_url::{self, Scope};
use crate::core::objects::ObjectRow;
use crate::core::{Caller, Operation};
use crate::transform::pipeline::AVIF_ENABLED;
use crate::transform::{Params, Request, TransformError};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(render_authenticated))
        .routes(routes!(render_public))
        .routes(routes!(render_signed))
}

impl From<TransformError> for ApiError {
    fn from(error: TransformError) -> Self {
        use StatusCode as S;
        let (status, code) = match &error {
            TransformError::InvalidParams(_) => (S::BAD_REQUEST, "InvalidRequest"),
            // As imgproxy (Supabase's renderer) answers a source it cannot or will not process.
            TransformError::InvalidImage(_) => (S::UNPROCESSABLE_ENTITY, "InvalidImage"),
            TransformError::Unsupported(_) => (S::UNPROCESSABLE_ENTITY, "UnsupportedImage"),
            TransformError::TooLarge(_) => (S::UNPROCESSABLE_ENTITY, "ImageTooLarge"),
            TransformError::Busy => (S::SERVICE_UNAVAILABLE, "SlowDown"),
            TransformError::Storage(_) | TransformError::Internal(_) => {
                return match error {
                    TransformError::Storage(e) => e.into(),
                    other => crate::core::Error::Internal(anyhow::anyhow!(other)).into(),
                };
            }
        };
        ApiError::new(status, code, code, error.to_string())
    }
}

#[utoipa::path(get, path = "/render/image/authenticated/{bucket}/{*path}", tag = "render",
    params(
        ObjectPath,
        ("width" = Option<u32>, Query, description = "Width in pixels"),
        ("height" = Option<u32>, Query, description = "Height in pixels"),
        ("resize" = Option<String>, Query, description = "`cover` (default), `contain` or `fill`"),
        ("quality" = Option<u32>, Query, description = "20 to 100"),
        ("format" = Option<String>, Query, description = "`origin` keeps the source's format; absent: negotiated from Accept"),
    ),
    responses(
        (status = 200, description = "The rendered image", body = String, content_type = "image/*"),
        (status = 304, description = "Not modified"),
    ))]
async fn render_authenticated(
    State(state): State<AppState>,
    CallerExt(caller): CallerExt,
    Path((bucket, name)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let result = match Params::from_query(&query) {
        Ok(params) => {
            let head = method == Method::HEAD;
            render(&state, &caller, &bucket, &name, params, &headers, head).await
        }
        Err(error) => Err(error.into()),
    };
    respond(result)
}

#[utoipa::path(get, path = "/render/image/public/{bucket}/{*path}", tag = "render", security(()),
    params(
        ObjectPath,
        ("width" = Option<u32>, Query, description = "Width in pixels"),
        ("height" = Option<u32>, Query, description = "Height in pixels"),
        ("resize" = Option<String>, Query, description = "`cover` (default), `contain` or `fill`"),
        ("quality" = Option<u32>, Query, description = "20 to 100"),
        ("format" = Option<String>, Query, description = "`origin` keeps the source's format; absent: negotiated from Accept"),
    ),
    responses(
        (status = 200, description = "The rendered image", body = String, content_type = "image/*"),
        (status = 304, description = "Not modified"),
    ))]
/// Runs as `anon` whatever credentials come with it, like `/object/public`.
async fn render_public(
    State(state): State<AppState>,
    PublicCaller(caller): PublicCaller,
    Path((bucket, name)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let result = match Params::from_query(&query) {
        Ok(params) => {
            let head = method == Method::HEAD;
            render(&state, &caller, &bucket, &name, params, &headers, head).await
        }
        Err(error) => Err(error.into()),
    };
    respond(result)
}

#[utoipa::path(get, path = "/render/image/sign/{bucket}/{*path}", tag = "render", security(()),
    params(
        ObjectPath,
        ("width" = Option<u32>, Query, description = "Width in pixels"),
        ("height" = Option<u32>, Query, description = "Height in pixels"),
        ("resize" = Option<String>, Query, description = "`cover` (default), `contain` or `fill`"),
        ("quality" = Option<u32>, Query, description = "20 to 100"),
        ("format" = Option<String>, Query, description = "`origin` keeps the source's format; absent: negotiated from Accept"),
        ("token" = String, Query, description = "The signed token"),
    ),
    responses(
        (status = 200, description = "The rendered image", body = String, content_type = "image/*"),
        (status = 304, description = "Not modified"),
    ))]
/// A signed rendition URL: the parameters are the token's (signed with it), not the query's; a
/// plain download token takes them from the query.
async fn render_signed(
    State(state): State<AppState>,
    Path((bucket, name)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    respond(signed(&state, &bucket, &name, &query, &method, &uri, &headers).await)
}

async fn signed(
    state: &AppState,
    bucket: &str,
    name: &str,
    query: &HashMap<String, String>,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let token = signed_url::verify(
        state.auth.keys(),
        query.get("token").map(String::as_str),
        bucket,
        name,
        Scope::Download,
    )?;
    let params = match &token.transform {
        Some(signed) => Params::from_canonical(signed)?,
        None => Params::from_query(query)?,
    };
    let mut caller = Caller {
        identity: Identity::service(),
        method: method.to_string(),
        path: uri.path().to_string(),
        headers: headers_json(headers),
    };
    if let Some(signer) = &token.signer {
        caller.identity = state.auth.authorize(Identity {
            role: signer.role.clone(),
            claims: signer.claims(),
        })?;
    }
    let head = method == Method::HEAD;
    render(
        state,
        &caller,
        &token.bucket,
        &token.name,
        params,
        headers,
        head,
    )
    .await
}

/// The rendition's entity tag: the object's version and ETag with the normalised parameters and
/// the negotiated output, so it changes with any of them.
fn rendition_etag(row: &ObjectRow, params: &Params, variant: Option<&str>) -> String {
    let meta = row.system_metadata();
    let mut hash = Sha256::new();
    for part in [
        row.version.as_deref().unwrap_or(""),
        meta.e_tag.as_deref().unwrap_or(""),
        &params.canonical(),
        variant.unwrap_or("origin"),
    ] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    format!("\"{}\"", &hex::encode(hash.finalize())[..32])
}

/// Answers a rendition: 304 when the client has it; else from the cache when it holds this
/// variant of this object version (streamed, nothing decoded); else rendered, and stored in the
/// cache for next time. A HEAD never renders: it answers from the cache or from the object's
/// row alone (then without `Content-Length`, which only rendering would tell).
async fn render(
    state: &AppState,
    caller: &Caller,
    bucket: &str,
    name: &str,
    params: Params,
    request: &HeaderMap,
    head: bool,
) -> Result<Response, ApiError> {
    // The caller's read policy, on every request: the cache is consulted only after it.
    let row = state
        .storage
        .object(caller, Operation::Download, bucket, name)
        .await?;
    let accept = request
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    // The bucket's flag matters only when the client would take AVIF.
    let avif_autodetection = params.format.negotiated()
        && params
            .format
            .variant(accept.as_deref(), true, AVIF_ENABLED)
            .is_some_and(|f| f == crate::transform::Format::Avif)
        && state
            .transform
            .avif_autodetection(&state.storage, bucket)
            .await?;
    let variant = params
        .format
        .variant(accept.as_deref(), avif_autodetection, AVIF_ENABLED);
    let etag = rendition_etag(&row, &params, variant.map(|f| f.as_str()));
    let meta = row.system_metadata();
    let modified = meta.last_modified.or(row.updated_at).map(SystemTime::from);

    let mut headers = HeaderMap::new();
    let mut set = |name, value: &str| {
        if let Ok(value) = HeaderValue::from_str(value) {
            headers.insert(name, value);
        }
    };
    set(ETAG, &etag);
    if let Some(modified) = modified {
        set(LAST_MODIFIED, &httpdate::fmt_http_date(modified));
    }
    set(
        CACHE_CONTROL,
        meta.cache_control.as_deref().unwrap_or("no-cache"),
    );
    set(VARY, "Accept");
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert("x-robots-tag", HeaderValue::from_static("none"));
    if download::not_modified(request, Some(&etag), modified) {
        return Ok((StatusCode::NOT_MODIFIED, headers).into_response());
    }

    let transformer = &state.transform;
    let cache_variant = format!(
        "{}|{}",
        params.canonical(),
        variant.map_or("origin", |f| f.as_str())
    );
    let cache = transformer.config().cache;
    if cache && let Some(cached) = state.storage.rendition(&row, &cache_variant).await? {
        let body = match head {
            true => Some(Body::empty()),
            false => state
                .storage
                .read_rendition(&cached)
                .await?
                .map(Body::from_stream),
        };
        // None: freed since it was looked up (the object changed meanwhile); render afresh.
        if let Some(body) = body {
            metrics::counter!("pgstorage_transform_cache_total", "result" => "hit").increment(1);
            if let Ok(value) = HeaderValue::from_str(&cached.content_type) {
                headers.insert(CONTENT_TYPE, value);
            }
            headers.insert(CONTENT_LENGTH, HeaderValue::from(cached.size));
            return Ok((StatusCode::OK, headers, body).into_response());
        }
    }
    if head {
        // The output's type as far as it is known without decoding the source.
        let media_type = variant.map_or_else(
            || origin_media_type(meta.mimetype.as_deref()),
            |f| f.media_type(),
        );
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(media_type));
        return Ok((StatusCode::OK, headers).into_response());
    }
    if cache {
        metrics::counter!("pgstorage_transform_cache_total", "result" => "miss").increment(1);
    }

    let turn = transformer.turn().await?;
    let source = transformer.read_source(&state.storage, &row, &turn).await?;
    let rendered = transformer
        .render(
            turn,
            source,
            Request {
                params,
                accept,
                avif_autodetection,
            },
        )
        .await?;
    let media_type = rendered.format.media_type();
    let bytes = Bytes::from(rendered.bytes);
    if cache {
        // Off the response's path: the client does not wait for the store. A write cut short
        // (shutdown) leaves only a staged key, which the collector frees.
        let storage = state.storage.clone();
        let stored = bytes.clone();
        tokio::spawn(async move {
            if let Err(error) = storage
                .store_rendition(&row, &cache_variant, media_type, stored)
                .await
            {
                tracing::warn!(object = %row.id, %error, "could not cache a rendition");
            }
        });
    }
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(media_type));
    headers.insert(CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    Ok((StatusCode::OK, headers, bytes).into_response())
}

/// A source's own output type, from its stored type (a GIF's first frame is sent as PNG).
fn origin_media_type(mimetype: Option<&str>) -> &'static str {
    use crate::transform::Format;
    match mimetype {
        Some("image/jpeg") => Format::Jpeg.media_type(),
        Some("image/webp") => Format::Webp.media_type(),
        _ => Format::Png.media_type(),
    }
}

/// A 503 for lack of capacity says when to come back.
fn respond(result: Result<Response, ApiError>) -> Response {
    let mut response = result.unwrap_or_else(IntoResponse::into_response);
    if response.status() == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}
