//! Who is asking: JWT verification, the identity a request runs as, and the server's secret.

mod identity;
mod jwks;
mod jwt;
pub mod sealed;
pub mod secret;
pub mod signed_url;
mod verified;

pub use identity::{Authenticator, Identity};
pub use jwks::JwkKeySet;
pub use jwt::{JwtKeys, SignedBy};

/// Why a request's credentials were refused. Both variants reach the client as a clear error and
/// never fall back to a weaker identity.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The token is malformed, expired, not yet valid, unsigned or signed with another key.
    #[error("invalid JWT: {0}")]
    InvalidToken(String),
    /// The token is valid but names a role this server does not let requests assume.
    #[error("role '{0}' is not allowed")]
    ForbiddenRole(String),
}
