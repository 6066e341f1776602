//! `/console`: the web console, a static single-page app embedded in the binary (plain HTML,
//! CSS and ES modules from `src/http/console/`, no build step). It holds no privilege of its
//! own: the browser calls the REST API with the key or token the user signs in with, so the
//! console shows exactly what RLS lets that identity see. See docs/console.md.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::ApiError;

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $content_type:expr) => {
        Asset {
            name: $name,
            content_type: $content_type,
            body: include_bytes!(concat!("console/", $name)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file the console is made of; anything else under `/console/` is a 404.
const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("console.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
    asset!("main.js", JS),
    asset!("api.js", JS),
    asset!("ui.js", JS),
    asset!("session.js", JS),
    asset!("buckets.js", JS),
    asset!("browser.js", JS),
    asset!("upload.js", JS),
    asset!("tus.js", JS),
    asset!("preview.js", JS),
    asset!("object.js", JS),
    asset!("policy.js", JS),
];

/// Same-origin scripts, styles and API calls only; no inline script or style. Previews are
/// object URLs of bytes fetched with the user's credentials, hence `blob:` for images, media and
/// the PDF frame (Chromium's viewer loads in it with `object-src 'none'`: the browser test checks).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' blob:; media-src 'self' blob:; frame-src blob:; \
     object-src 'none'; connect-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// The console's routes (stateless), merged into the REST router so they are also served under
/// `/storage/v1`.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/console", get(to_index))
        .route("/console/", get(|| serve("index.html")))
        .route(
            "/console/{*asset}",
            get(|Path(name): Path<String>| serve_owned(name)),
        )
}

/// `/console` → `console/`, relative, so the page's relative asset URLs resolve under whatever
/// prefix (`/storage/v1`, a proxy's) the request came through.
async fn to_index() -> Response {
    (
        StatusCode::MOVED_PERMANENTLY,
        [(header::LOCATION, HeaderValue::from_static("console/"))],
    )
        .into_response()
}

async fn serve_owned(name: String) -> Response {
    serve(&name).await
}

async fn serve(name: &str) -> Response {
    let Some(asset) = ASSETS.iter().find(|a| a.name == name) else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            "not_found",
            format!("the console has no file '{name}'"),
        )
        .into_response();
    };
    (
        [
            (header::CONTENT_TYPE, asset.content_type),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::X_FRAME_OPTIONS, "DENY"),
            // The files change with the binary: revalidate rather than serve a stale mix.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        asset.body,
    )
        .into_response()
}
