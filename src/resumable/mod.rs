//! Resumable uploads: TUS 1.0 at `/upload/resumable` (and `/upload/resumable/sign` for signed
//! upload tokens), compatible with Supabase Storage's endpoint, so `tus-js-client`, Uppy and
//! `tuspy` configured for Supabase work unchanged.
//!
//! Translation only: an upload is a core multipart upload (its state rows in PostgreSQL, so any
//! server takes the next request), each PATCH an appended part at a checked offset, and the
//! upload completes, as the caller, in the request whose bytes reach `Upload-Length`.

mod checksum;
mod handlers;
mod protocol;

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{options, post};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::http::AppState;

/// The routes, to be served at `/` and under `/storage/v1` beside the REST API.
/// Each route with its OpenAPI entry (`routes!`, see `crate::http::openapi`); OPTIONS (the
/// same answer everywhere) is described once, at `/upload/resumable`.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(handlers::create, handlers::options))
        // Clients are often configured with a trailing slash.
        .route(
            "/upload/resumable/",
            post(handlers::create).options(handlers::options),
        )
        .routes(routes!(handlers::create_signed))
        .route("/upload/resumable/sign", options(handlers::options))
        .route(
            "/upload/resumable/sign/",
            post(handlers::create_signed).options(handlers::options),
        )
        .routes(routes!(
            handlers::head_signed,
            handlers::overridden_signed,
            handlers::patch_signed,
            handlers::delete_signed
        ))
        .route("/upload/resumable/sign/{id}", options(handlers::options))
        .routes(routes!(
            handlers::head,
            handlers::overridden,
            handlers::patch,
            handlers::delete
        ))
        .route("/upload/resumable/{id}", options(handlers::options))
        .layer(axum::middleware::from_fn(tus_headers))
}

/// Every answer names the protocol version, errors included, and carries the CORS headers a
/// browser needs. A preflight (OPTIONS with `Access-Control-Request-Method`) is answered by the
/// OPTIONS handler, whose TUS headers do no harm to it; the allowances are added here.
async fn tus_headers(request: Request, next: Next) -> Response {
    let origin = request.headers().contains_key(header::ORIGIN);
    let preflight = request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let requested_headers = request
        .headers()
        .get(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .cloned();
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        HeaderName::from_static("tus-resumable"),
        HeaderValue::from_static(protocol::TUS_VERSION),
    );
    if origin {
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        );
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSED),
        );
    }
    if preflight {
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("POST, HEAD, PATCH, DELETE, OPTIONS"),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            requested_headers.unwrap_or(HeaderValue::from_static(ALLOWED)),
        );
        headers.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("86400"),
        );
    }
    response
}

/// Headers a browser's script may read from the answers.
const EXPOSED: &str = "Location, Upload-Offset, Upload-Length, Upload-Defer-Length, \
     Upload-Metadata, Upload-Expires, Tus-Resumable, Tus-Version, Tus-Extension, Tus-Max-Size, \
     Tus-Checksum-Algorithm";

/// Headers a request may carry, when a preflight does not list them.
const ALLOWED: &str = "Authorization, ApiKey, X-Upsert, X-Signature, Content-Type, \
     Upload-Offset, Upload-Length, Upload-Defer-Length, Upload-Metadata, Upload-Checksum, \
     Upload-Concat, Tus-Resumable, X-Requested-With, X-HTTP-Method-Override, X-Client-Info";
