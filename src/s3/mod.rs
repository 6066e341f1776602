//! The S3-compatible front: path-style S3 at `/s3` and `/storage/v1/s3` on the main port.
//!
//! The `s3s` crate owns the protocol (SigV4 in all its forms, aws-chunked bodies, routing, XML);
//! this module translates S3 operations into core calls under the identity the credentials
//! resolve to, so the same RLS policies decide as on the REST front.
//!
//! `s3s` reads both the bucket/key and the SigV4 canonical URI from the whole request path and
//! has no base path, so a request passes through it twice (see [`prefix`]):
//! 1. the *outer* service sees the request as the client sent and signed it, prefix included:
//!    it verifies the signature (header, presigned, streaming chunks and trailers) with the
//!    secret [`auth`] resolves, and hands every verified request to one custom route;
//! 2. that route strips the prefix and the spent credentials and calls the *inner* service,
//!    which has no authentication of its own: it routes the now prefix-free path to the
//!    operation handlers, which read the verified caller from the request's extensions.
//!
//! Handlers are split by job: [`buckets`], [`objects`], [`copy`], [`delete`], [`listing`],
//! [`multipart`], with core errors mapped onto S3 codes in [`error`]. Browser-form uploads
//! ([`post_object`]) stream their file past both services, and [`virtual_host`] addressing
//! (`bucket.DOMAIN`) is verified as sent and routed in path-style form.

mod auth;
mod body;
mod buckets;
mod copy;
mod delete;
mod error;
mod handlers;
mod inert;
mod listing;
mod multipart;
mod multipart_checksums;
mod objects;
mod post_object;
mod post_policy;
mod prefix;
mod virtual_host;

use std::sync::Arc;

use axum::Router;
use axum::body::Body as AxumBody;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::any;

pub use auth::{S3Credentials, StaticKey};

use crate::auth::Authenticator;
use crate::core::Storage;

/// The paths the S3 front answers under (Supabase users configure the second one).
pub const PREFIXES: [&str; 2] = ["/storage/v1/s3", "/s3"];

/// The region reported by GetBucketLocation when none is configured.
pub const DEFAULT_REGION: &str = "us-east-1";

/// The S3 front, built once per server.
#[derive(Clone)]
pub struct S3Front {
    outer: s3s::service::S3Service,
    forms: Arc<post_object::PostForms>,
    domain: Option<virtual_host::Domain>,
}

impl S3Front {
    pub fn new(storage: Storage, auth: Authenticator, credentials: S3Credentials) -> Self {
        let region = credentials.region.clone();
        let inner = handlers::inner_service(storage.clone(), region);
        let credentials = Arc::new(credentials);
        let forms = Arc::new(post_object::PostForms {
            storage: storage.clone(),
            auth: auth.clone(),
            keys: auth::KeyStore {
                storage: storage.clone(),
                auth: auth.clone(),
                credentials: credentials.clone(),
            },
        });
        let outer = prefix::outer_service(inner, storage, auth, credentials);
        Self {
            outer,
            forms,
            domain: None,
        }
    }

    /// Serves virtual-host style requests under `domain` (`bucket.DOMAIN`, and path-style at
    /// the root of `DOMAIN`); `None`: path-style under the prefixes only. Refused unless the
    /// domain is a host name (no scheme, port or path).
    pub fn with_virtual_host_domain(mut self, domain: Option<&str>) -> anyhow::Result<Self> {
        self.domain = match domain {
            None => None,
            Some(name) => Some(virtual_host::Domain::new(name).ok_or_else(|| {
                anyhow::anyhow!(
                    "the S3 virtual-host domain must be a host name without scheme, port or \
                     path, not '{name}'"
                )
            })?),
        };
        Ok(self)
    }

    /// `router` with the requests addressed to the virtual-host domain, whatever their path,
    /// taken by the S3 front (the whole router when no domain is configured).
    pub fn virtual_hosts(&self, router: Router) -> Router {
        if self.domain.is_none() {
            return router;
        }
        let front = self.clone();
        router.layer(axum::middleware::from_fn(
            move |request: Request, next: Next| {
                let front = front.clone();
                async move {
                    let host = front
                        .domain
                        .as_ref()
                        .and_then(|d| d.of(request.headers(), request.uri()));
                    match host {
                        Some(host) => front.serve(request, Some(host)).await,
                        None => next.run(request).await,
                    }
                }
            },
        ))
    }

    /// The S3 routes, to merge into the main router.
    pub fn routes(&self) -> Router {
        let mut router = Router::new();
        for prefix in PREFIXES {
            let front = self.clone();
            let handler = move |request: Request| {
                let front = front.clone();
                async move { front.handle(request).await }
            };
            router = router
                .route(prefix, any(handler.clone()))
                .route(&format!("{prefix}/"), any(handler.clone()))
                .route(&format!("{prefix}/{{*rest}}"), any(handler));
        }
        router
    }

    async fn handle(&self, request: Request) -> Response {
        self.serve(request, None).await
    }

    /// Serves one request, addressed path-style under a prefix (`host` None) or through the
    /// virtual-host domain.
    async fn serve(
        &self,
        mut request: Request,
        host: Option<virtual_host::VirtualHost>,
    ) -> Response {
        if let Some(bucket) = post_object::form_bucket(&request, host.as_ref()) {
            return self.forms.handle(request, bucket).await;
        }
        let scope = auth::RequestAuth::from_request(&request);
        if prefix::signed_without_prefix(&request) {
            // Signature V2 clients (boto3's presigned URLs by default) sign `/bucket/key`
            // without the endpoint's path: they are verified, and routed, prefix-free.
            let uri = match &host {
                Some(host) => host.path_style_uri(request.uri()),
                None => prefix::strip_early(request.uri()),
            };
            match uri {
                Some(uri) => {
                    *request.uri_mut() = uri;
                    request.extensions_mut().insert(prefix::Stripped);
                }
                None => return StatusCode::NOT_FOUND.into_response(),
            }
        } else if let Some(host) = host {
            // Verified over the path as sent, routed in path-style form (see `prefix`).
            request.extensions_mut().insert(host);
        }
        prefix::hold_signed_payload(&mut request);
        let request = request.map(s3s::Body::http_body_unsync);
        let outer = self.outer.clone();
        match auth::REQUEST_AUTH
            .scope(scope, async move { outer.call(request).await })
            .await
        {
            Ok(response) => response.map(AxumBody::new),
            Err(error) => {
                tracing::error!(?error, "the S3 service failed");
                StatusCode::INTERNAL_SERVER_ERROR.into_response()
            }
        }
    }
}
