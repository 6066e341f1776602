//! S3 credentials, each resolving to an [`Identity`] exactly like a JWT (DESIGN §6):
//! 1. the static key pair from configuration, running as `service_role`;
//! 2. keys kept in the database (`pgstorage s3-keys`), each bound to a role and claims;
//! 3. session tokens: the user's JWT in `x-amz-security-token`, signed with the anon key as
//!    the secret (any access key id, as Supabase does), so the JWT's claims decide.
//!
//! `s3s` asks for a secret by access key id alone; what else the request carries (a session
//! token) and what the key resolved to travel in a task-local [`RequestAuth`] that lives for
//! one request.

use std::sync::{Arc, Mutex};

use axum::extract::Request;
use s3s::auth::{S3Auth, SecretKey};
use s3s::{S3Error, S3ErrorCode, S3Result};

use super::error::internal;
use crate::auth::sealed::Sealer;
use crate::auth::{AuthError, Authenticator, Identity};
use crate::core::Storage;

/// The configured static key pair (service use).
#[derive(Clone)]
pub struct StaticKey {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for StaticKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticKey")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// How S3 requests may authenticate, from configuration.
#[derive(Clone, Debug)]
pub struct S3Credentials {
    pub static_key: Option<StaticKey>,
    /// The secret session-token requests are signed with (the anon key); `None` disables them.
    pub session_secret: Option<String>,
    /// Opens the secrets of database keys.
    pub sealer: Sealer,
    /// Reported by GetBucketLocation. Signatures for any region are accepted (clients sign
    /// with `us-east-1`, `auto` or whatever they were configured with).
    pub region: String,
}

tokio::task_local! {
    /// The credentials context of the request being served.
    pub(super) static REQUEST_AUTH: Arc<RequestAuth>;
}

/// What one request carries beside its signature, and what its access key resolved to.
#[derive(Debug, Default)]
pub(super) struct RequestAuth {
    session_token: Option<String>,
    resolved: Mutex<Option<Identity>>,
}

impl RequestAuth {
    pub(super) fn from_request(request: &Request) -> Arc<Self> {
        let header = request
            .headers()
            .get("x-amz-security-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let query = || {
            request.uri().query().and_then(|query| {
                query.split('&').find_map(|pair| {
                    let (name, value) = pair.split_once('=')?;
                    (name == "X-Amz-Security-Token").then(|| {
                        percent_encoding::percent_decode_str(value)
                            .decode_utf8_lossy()
                            .into_owned()
                    })
                })
            })
        };
        Arc::new(Self {
            session_token: header.or_else(query).filter(|t| !t.is_empty()),
            resolved: Mutex::new(None),
        })
    }

    /// The context of a request whose session token came another way (a POST form's
    /// `x-amz-security-token` field).
    pub(super) fn with_session_token(token: Option<&str>) -> Arc<Self> {
        Arc::new(Self {
            session_token: token.filter(|t| !t.is_empty()).map(str::to_string),
            resolved: Mutex::new(None),
        })
    }

    fn resolve(&self, identity: Identity) {
        if let Ok(mut slot) = self.resolved.lock() {
            *slot = Some(identity);
        }
    }

    /// The identity the verified access key resolved to.
    pub(super) fn identity(&self) -> Option<Identity> {
        self.resolved.lock().ok().and_then(|slot| slot.clone())
    }
}

/// Looks secrets up for `s3s` and records the identity each resolves to.
pub(super) struct KeyStore {
    pub(super) storage: Storage,
    pub(super) auth: Authenticator,
    pub(super) credentials: Arc<S3Credentials>,
}

fn forbidden(code: S3ErrorCode, message: impl Into<String>) -> S3Error {
    let mut error = S3Error::with_message(code, message.into());
    error.set_status_code(axum::http::StatusCode::FORBIDDEN);
    error
}

fn auth_error(error: AuthError) -> S3Error {
    match error {
        AuthError::InvalidToken(reason) => forbidden(
            S3ErrorCode::InvalidToken,
            format!("The provided token is malformed or otherwise invalid: {reason}"),
        ),
        AuthError::ForbiddenRole(role) => forbidden(
            S3ErrorCode::AccessDenied,
            format!("role '{role}' is not allowed"),
        ),
    }
}

#[async_trait::async_trait]
impl S3Auth for KeyStore {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        let request = REQUEST_AUTH.try_with(Arc::clone).unwrap_or_default();
        if let Some(token) = &request.session_token {
            let Some(secret) = &self.credentials.session_secret else {
                return Err(forbidden(
                    S3ErrorCode::AccessDenied,
                    "session tokens are not enabled on this server",
                ));
            };
            let identity = self
                .auth
                .identify(Some(token.as_str()))
                .map_err(auth_error)?;
            request.resolve(identity);
            return Ok(SecretKey::from(secret.as_str()));
        }
        if let Some(key) = &self.credentials.static_key
            && key.access_key_id == access_key
        {
            let identity = self
                .auth
                .authorize(Identity::service())
                .map_err(auth_error)?;
            request.resolve(identity);
            return Ok(SecretKey::from(key.secret_access_key.as_str()));
        }
        let grant = self
            .storage
            .s3_key(&self.credentials.sealer, access_key)
            .await
            .map_err(internal)?;
        match grant {
            Some(grant) => {
                let identity = self.auth.authorize(grant.identity).map_err(auth_error)?;
                request.resolve(identity);
                Ok(SecretKey::from(grant.secret_access_key))
            }
            None => Err(forbidden(
                S3ErrorCode::InvalidAccessKeyId,
                "The AWS Access Key Id you provided does not exist in our records.",
            )),
        }
    }
}
