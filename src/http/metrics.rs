//! Prometheus metrics (`/metrics`, text format), when the server is started with `--metrics`
//! (main port, service_role only) or `--metrics-port` (a listener of its own, unauthenticated).
//!
//! Recording goes through the `metrics` facade, so any layer (the core's collector included)
//! counts with one line and nothing is passed around; `metrics-exporter-prometheus` keeps the
//! values and renders the text format. Without the flags no recorder is installed and each
//! count is a no-op. Values that are cheap to read when asked (pool status, journal sizes) are
//! read at scrape time rather than kept up to date.

use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http_body::{Frame, SizeHint};
use metrics::{Counter, counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use super::ApiError;
use crate::auth::{Authenticator, Identity};
use crate::core::Storage;

/// How long journal sizes are reused before being counted again (a scrape every few seconds
/// costs one cheap query at most).
const JOURNAL_CACHE: Duration = Duration::from_secs(5);

/// Latency buckets, in seconds: from a cached HEAD to a long upload.
const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The process's Prometheus recorder, installed on first use (one per process: the facade is
/// global).
fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        // Fails only for an empty list of buckets; ours is not.
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &LATENCY_BUCKETS)
            .unwrap_or_else(|_| PrometheusBuilder::new())
            .build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("another metrics recorder is installed; /metrics will be empty");
        }
        handle
    })
}

/// What `/metrics` answers from: the recorder, and the core for values read at scrape time.
#[derive(Clone)]
pub struct Exporter {
    handle: PrometheusHandle,
    storage: Storage,
    journal: Arc<Mutex<Option<JournalCount>>>,
}

/// Keys per journal state, and when they were counted.
type JournalCount = (Instant, Vec<(String, i64)>);

impl Exporter {
    /// Installs the recorder (once per process) and starts its upkeep.
    pub fn install(storage: Storage) -> Self {
        let handle = handle().clone();
        let upkeep = handle.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                upkeep.run_upkeep();
            }
        });
        Self {
            handle,
            storage,
            journal: Arc::new(Mutex::new(None)),
        }
    }

    /// The text format, with the scrape-time values refreshed first.
    pub async fn render(&self) -> String {
        let db = self.storage.database();
        for (pool, status) in [
            ("request", db.request_pool_status()),
            ("admin", db.admin_pool_status()),
        ] {
            let in_use = status.size.saturating_sub(status.available);
            gauge!("pgstorage_db_pool_connections", "pool" => pool, "state" => "in_use")
                .set(in_use as f64);
            gauge!("pgstorage_db_pool_connections", "pool" => pool, "state" => "idle")
                .set(status.available as f64);
            gauge!("pgstorage_db_pool_max_connections", "pool" => pool).set(status.max_size as f64);
            gauge!("pgstorage_db_pool_waiting", "pool" => pool).set(status.waiting as f64);
        }
        match self.journal_sizes().await {
            Ok(sizes) => {
                for state in ["staged", "released"] {
                    let keys = sizes
                        .iter()
                        .find(|(s, _)| s == state)
                        .map(|(_, n)| *n)
                        .unwrap_or(0);
                    gauge!("pgstorage_journal_keys", "state" => state).set(keys as f64);
                }
            }
            Err(error) => tracing::warn!(%error, "could not count the byte journal for /metrics"),
        }
        self.handle.render()
    }

    /// Keys per journal state, counted at most once per [`JOURNAL_CACHE`].
    async fn journal_sizes(&self) -> Result<Vec<(String, i64)>, crate::core::Error> {
        if let Ok(cached) = self.journal.lock()
            && let Some((at, sizes)) = cached.as_ref()
            && at.elapsed() < JOURNAL_CACHE
        {
            return Ok(sizes.clone());
        }
        let conn = self.storage.database().admin().await?;
        let statement = conn
            .prepare_cached("select state, count(*) from storage.byte_journal group by state")
            .await?;
        let sizes: Vec<(String, i64)> = conn
            .query(&statement, &[])
            .await?
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        if let Ok(mut cached) = self.journal.lock() {
            *cached = Some((Instant::now(), sizes.clone()));
        }
        Ok(sizes)
    }
}

#[derive(Clone)]
struct MetricsState {
    exporter: Exporter,
    /// On the main port, only service_role may read; on a port of its own, anyone who can
    /// reach it.
    auth: Option<Authenticator>,
}

/// `GET /metrics`. With `auth`, only service_role may read it.
pub fn routes(exporter: Exporter, auth: Option<Authenticator>) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .with_state(MetricsState { exporter, auth })
}

async fn scrape(State(state): State<MetricsState>, headers: HeaderMap) -> Response {
    if let Some(auth) = &state.auth
        && let Err(refusal) = service_role(auth, &headers)
    {
        return refusal.into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.exporter.render().await,
    )
        .into_response()
}

fn service_role(auth: &Authenticator, headers: &HeaderMap) -> Result<(), ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let identity = auth.identify(token)?;
    if identity.role == Identity::SERVICE_ROLE {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        "AccessDenied",
        "Unauthorized",
        format!(
            "/metrics is for service_role only, not role {}",
            identity.role
        ),
    ))
}

/// Counts one request of `front`: by route, method, operation and status, its latency (to the
/// response's head), and the bytes of its body and of the response's.
pub async fn track(front: &'static str, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str())
        .map(|path| path.strip_prefix("/storage/v1").unwrap_or(path))
        .unwrap_or("unmatched")
        .to_string();
    let front = match front {
        "rest" if route.starts_with("/upload/resumable") => "resumable",
        front => front,
    };
    let received = counter!("pgstorage_http_received_bytes_total", "front" => front);
    let request = request.map(|body| Body::new(Counted::new(body, received)));
    let response = next.run(request).await;
    let operation = crate::core::refusal::latest_operation()
        .map(|op| op.as_str())
        .unwrap_or("none");
    let status = response.status().as_u16().to_string();
    counter!(
        "pgstorage_http_requests_total",
        "front" => front, "method" => method.clone(), "route" => route.clone(),
        "operation" => operation, "status" => status
    )
    .increment(1);
    histogram!(
        "pgstorage_http_request_duration_seconds",
        "front" => front, "method" => method, "route" => route
    )
    .record(started.elapsed().as_secs_f64());
    let sent = counter!("pgstorage_http_sent_bytes_total", "front" => front);
    response.map(|body| Body::new(Counted::new(body, sent)))
}

/// A body that counts its bytes as they pass, and otherwise is the body it wraps (same size
/// hint, so a response keeps its Content-Length).
struct Counted {
    inner: Body,
    counter: Counter,
}

impl Counted {
    fn new(inner: Body, counter: Counter) -> Self {
        Self { inner, counter }
    }
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.counter.increment(data.len() as u64);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
