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
//! [`multipart`] (not wired to the core yet), with core errors mapped onto S3 codes in
//! [`error`].

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
mod objects;
mod prefix;

use std::sync::Arc;

use axum::Router;
use axum::body::Body as AxumBody;
use axum::extract::Request;
use axum::http::StatusCode;
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
}

impl S3Front {
    pub fn new(storage: Storage, auth: Authenticator, credentials: S3Credentials) -> Self {
        let region = credentials.region.clone();
        let inner = handlers::inner_service(storage.clone(), region);
        let credentials = Arc::new(credentials);
        let outer = prefix::outer_service(inner, storage, auth, credentials);
        Self { outer }
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

    async fn handle(&self, mut request: Request) -> Response {
        let scope = auth::RequestAuth::from_request(&request);
        if prefix::signed_without_prefix(&request) {
            // Signature V2 clients (boto3's presigned URLs by default) sign `/bucket/key`
            // without the endpoint's path: they are verified, and routed, prefix-free.
            match prefix::strip_early(request.uri()) {
                Some(uri) => {
                    *request.uri_mut() = uri;
                    request.extensions_mut().insert(prefix::Stripped);
                }
                None => return StatusCode::NOT_FOUND.into_response(),
            }
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
