//! The REST front, compatible with the Supabase Storage API. Handlers translate HTTP into core
//! calls and core results back into HTTP; they never touch the database or byte store directly.

mod admin;
mod buckets;
mod console;
pub(crate) mod download;
mod drain;
mod error;
mod health;
mod identity;
mod json;
mod listing;
pub mod metrics;
mod objects;
mod openapi;
mod render;
mod signed;
mod upload_body;
mod watched;

use std::time::Duration;

use axum::Router;
use axum::http::{HeaderName, Request};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use std::pin::pin;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

pub use error::ApiError;
pub use identity::{CallerExt, PublicCaller};
pub use openapi::document as openapi_document;

use crate::auth::Authenticator;
use crate::core::Storage;
use watched::{Tracked, Watched};

/// Everything a handler needs.
#[derive(Clone)]
pub struct AppState {
    pub storage: Storage,
    pub auth: Authenticator,
    /// The S3-compatible front, served beside the REST API when present.
    pub s3: Option<crate::s3::S3Front>,
    /// Image transformations (`/render/image/...`), with their limits.
    pub transform: crate::transform::Transformer,
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// What the server serves beside the API.
#[derive(Clone, Default)]
pub struct AppOptions {
    /// Count requests for Prometheus (see [`metrics`]).
    pub metrics: Option<metrics::Exporter>,
    /// Also answer `/metrics` on this router, to service_role only.
    pub metrics_route: bool,
}

/// The whole REST API, served at `/` and again under `/storage/v1` (the path Supabase clients
/// use behind a gateway).
pub fn app(state: AppState) -> Router {
    app_with(state, AppOptions::default())
}

/// [`app`], with the options of [`AppOptions`].
pub fn app_with(state: AppState, options: AppOptions) -> Router {
    let auth = state.auth.clone();
    let s3_hosts = state.s3.clone();
    let mut s3 = state
        .s3
        .as_ref()
        .map(crate::s3::S3Front::routes)
        .unwrap_or_default();
    // Every route with its OpenAPI entry (see openapi.rs); the document itself is built apart.
    let (api, _) = openapi::api().split_for_parts();
    let mut api = api.merge(console::routes()).with_state(state);
    let mut extra = Router::new();
    if let Some(exporter) = options.metrics {
        // Route layers: they see the matched route, which names the request's kind.
        api = api.route_layer(axum::middleware::from_fn(|request, next| {
            metrics::track("rest", request, next)
        }));
        // (axum refuses a route layer on a router without routes: no S3 front, no layer.)
        if s3_hosts.is_some() {
            s3 = s3.route_layer(axum::middleware::from_fn(|request, next| {
                metrics::track("s3", request, next)
            }));
        }
        if options.metrics_route {
            extra = metrics::routes(exporter, Some(auth));
        }
    }
    let router = Router::new()
        .nest("/storage/v1", api.clone())
        .merge(api)
        .merge(s3)
        .merge(extra)
        .fallback(error::not_found);
    // Requests to the S3 virtual-host domain go to the S3 front whatever their path.
    let router = match &s3_hosts {
        Some(front) => front.virtual_hosts(router),
        None => router,
    };
    router
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
        .layer(axum::middleware::map_request(drain::drain_unread_bodies))
        .layer(axum::middleware::from_fn(refusal_scope))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}

/// Gives each request its own record of what it attempted, for the messages of refusals.
async fn refusal_scope(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    crate::core::refusal::scope(next.run(request)).await
}

/// How the listener treats connections.
#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    /// How long a client may take to send a request's headers. Without a bound, a client that
    /// trickles header bytes, or connects and sends nothing, holds a connection for ever.
    pub header_read_timeout: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(30),
        }
    }
}

/// How long requests in flight may run on after shutdown begins.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Serves `app` until `shutdown` resolves, then lets in-flight requests finish (up to 30 s).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    // Every connection task holds a sender; when the last one is gone, `recv` returns None.
    let (open_tx, mut open_rx) = mpsc::channel::<()>(1);
    let mut shutdown = pin!(shutdown);
    loop {
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(error) => {
                    // Out of file descriptors and the like: wait for some to close, not spin.
                    tracing::warn!(%error, "could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Responses go out as several writes (headers, then body chunks); without TCP_NODELAY,
        // Nagle's algorithm meets the client's delayed ACK and small responses wait ~40 ms.
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY");
        }
        let (tcp, activity) = Watched::new(tcp);
        let service = TowerToHyperService::new(Tracked::new(app.clone(), activity.clone()));
        let mut stop = stop_rx.clone();
        let open = open_tx.clone();
        tokio::spawn(async move {
            // The header timeout starts once HTTP/1 is chosen; telling HTTP/1 from HTTP/2 waits
            // for the first bytes with no deadline, so a silent client gets the same one here.
            let mut first = [0u8; 1];
            if tokio::time::timeout(options.header_read_timeout, tcp.peek(&mut first))
                .await
                .is_err()
            {
                return;
            }
            let mut builder = Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(options.header_read_timeout);
            builder.http2().timer(TokioTimer::new());
            let idle_limit = options.header_read_timeout;
            let mut connection =
                pin!(builder.serve_connection_with_upgrades(TokioIo::new(tcp), service));
            let mut stopping = false;
            let mut asked_to_close = false;
            loop {
                // HTTP/2 has no idle timeout of its own (its pings only prove the peer is
                // alive), so a connection that has handled no request and moved no byte for as
                // long as a client may take to send headers is closed, gracefully. HTTP/1's
                // header timeout does the same for keep-alive. A peer that stays silent after
                // that (HTTP/2's goodbye waits for its answer to a ping) is dropped after the
                // same time again.
                let idle_for = activity.idle_for().unwrap_or_default();
                tokio::select! {
                    result = connection.as_mut() => {
                        if let Err(error) = result {
                            tracing::debug!(%error, "connection ended with an error");
                        }
                        break;
                    }
                    _ = stop.wait_for(|stop| *stop), if !stopping => {
                        stopping = true;
                        connection.as_mut().graceful_shutdown();
                    }
                    () = tokio::time::sleep(idle_limit.saturating_sub(idle_for)) => {
                        if activity.idle_for().is_none_or(|idle| idle < idle_limit) {
                            continue;
                        }
                        if asked_to_close {
                            tracing::debug!("dropping a connection that stayed idle");
                            break;
                        }
                        asked_to_close = true;
                        activity.touch();
                        if !stopping {
                            stopping = true;
                            connection.as_mut().graceful_shutdown();
                        }
                    }
                }
            }
            drop(open);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(open_tx);
    if tokio::time::timeout(SHUTDOWN_GRACE, open_rx.recv())
        .await
        .is_err()
    {
        tracing::warn!("requests still running 30 s after shutdown began; closing them");
    }
    Ok(())
}
