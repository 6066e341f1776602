//! The REST front, compatible with the Supabase Storage API. Handlers translate HTTP into core
//! calls and core results back into HTTP; they never touch the database or byte store directly.

mod buckets;
mod download;
mod drain;
mod error;
mod health;
mod identity;
mod json;
mod listing;
mod objects;
mod signed;
mod upload_body;

use std::time::Duration;

use axum::Router;
use axum::http::{HeaderName, Request};
use axum::serve::ListenerExt;
use tower_http::map_request_body::MapRequestBodyLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

pub use error::ApiError;
pub use identity::{CallerExt, PublicCaller};

use crate::auth::Authenticator;
use crate::core::Storage;

/// Everything a handler needs.
#[derive(Clone)]
pub struct AppState {
    pub storage: Storage,
    pub auth: Authenticator,
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The whole REST API, served at `/` and again under `/storage/v1` (the path Supabase clients
/// use behind a gateway).
pub fn app(state: AppState) -> Router {
    let api = Router::new()
        .merge(health::routes())
        .merge(buckets::routes())
        .merge(objects::routes())
        .merge(listing::routes())
        .merge(signed::routes())
        .with_state(state);
    Router::new()
        .nest("/storage/v1", api.clone())
        .merge(api)
        .fallback(error::not_found)
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request<_>| {
                    let id = request
                        .headers()
                        .get(REQUEST_ID)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-");
                    tracing::info_span!(
                        "request",
                        id = %id,
                        method = %request.method(),
                        path = %request.uri().path(),
                    )
                })
                .on_request(())
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
        .layer(MapRequestBodyLayer::new(drain::DrainOnDrop::wrap))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}

/// Serves `app` until `shutdown` resolves, then lets in-flight requests finish (up to 30 s).
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // Responses go out as several writes (headers, then body chunks); without TCP_NODELAY,
    // Nagle's algorithm meets the client's delayed ACK and small responses wait ~40 ms.
    let listener = listener.tap_io(|tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY");
        }
    });
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let mut stop_rx_for_deadline = stop_rx.clone();
    tokio::select! {
        result = server => result,
        _ = async {
            let _ = stop_rx_for_deadline.wait_for(|stopped| *stopped).await;
            tokio::time::sleep(Duration::from_secs(30)).await;
        } => {
            tracing::warn!("requests still running 30 s after shutdown began; closing them");
            Ok(())
        }
    }
}
