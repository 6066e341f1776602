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

use axum::Router;
use axum::http::{HeaderName, HeaderValue, Method};
use axum::response::Response;
use axum::routing::{head, post};
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};

use crate::http::AppState;

/// The routes, to be served at `/` and under `/storage/v1` beside the REST API.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/upload/resumable",
            post(handlers::create).options(handlers::options),
        )
        .route(
            "/upload/resumable/sign",
            post(handlers::create_signed).options(handlers::options),
        )
        .route(
            "/upload/resumable/sign/{id}",
            head(handlers::head_signed)
                .patch(handlers::patch_signed)
                .delete(handlers::delete_signed)
                .options(handlers::options),
        )
        .route(
            "/upload/resumable/{id}",
            head(handlers::head)
                .patch(handlers::patch)
                .delete(handlers::delete)
                .options(handlers::options),
        )
        .layer(axum::middleware::map_response(tus_resumable))
        .layer(cors())
}

/// Every answer names the protocol version, errors included.
async fn tus_resumable(mut response: Response) -> Response {
    response.headers_mut().insert(
        HeaderName::from_static("tus-resumable"),
        HeaderValue::from_static(protocol::TUS_VERSION),
    );
    response
}

/// Headers a browser's script may read from the answers.
const EXPOSED: [&str; 11] = [
    "location",
    "upload-offset",
    "upload-length",
    "upload-defer-length",
    "upload-metadata",
    "upload-expires",
    "tus-resumable",
    "tus-version",
    "tus-extension",
    "tus-max-size",
    "tus-checksum-algorithm",
];

/// Browsers upload from other origins (Uppy, tus-js-client in a web page): preflights are
/// answered here, and the TUS headers and `Location` are exposed to scripts.
fn cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::any())
        .allow_methods([
            Method::POST,
            Method::HEAD,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers(AllowHeaders::mirror_request())
        .expose_headers(EXPOSED.map(HeaderName::from_static))
        .max_age(std::time::Duration::from_secs(24 * 3600))
}
