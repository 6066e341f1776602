use serde_json::{Map, Value};

use super::{AuthError, JwtKeys};

/// The database identity a request runs as: a role plus the JWT claims that `auth.uid()`,
/// `auth.role()` and `auth.jwt()` read inside the transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub role: String,
    pub claims: Map<String, Value>,
}

impl Identity {
    pub const ANON: &'static str = "anon";
    pub const SERVICE_ROLE: &'static str = "service_role";

    /// The identity of a request without credentials.
    pub fn anon() -> Self {
        let mut claims = Map::new();
        claims.insert("role".into(), Self::ANON.into());
        Self {
            role: Self::ANON.into(),
            claims,
        }
    }

    /// The server acting for itself (e.g. an upload made with a signed upload URL is owned by
    /// the signer, but checked as service_role).
    pub fn service() -> Self {
        let mut claims = Map::new();
        claims.insert("role".into(), Self::SERVICE_ROLE.into());
        Self {
            role: Self::SERVICE_ROLE.into(),
            claims,
        }
    }

    /// The `sub` claim as text (`auth.uid()`), the value written to `owner_id`.
    pub fn sub(&self) -> Option<String> {
        match self.claims.get("sub")? {
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }
}

/// Turns request credentials into an [`Identity`], refusing any role outside the allow-list.
#[derive(Debug, Clone)]
pub struct Authenticator {
    keys: JwtKeys,
    /// Shared, not copied: every request's handler clones the authenticator.
    allowed_roles: std::sync::Arc<[String]>,
}

impl Authenticator {
    pub fn new(keys: JwtKeys, allowed_roles: Vec<String>) -> Self {
        Self {
            keys,
            allowed_roles: allowed_roles.into(),
        }
    }

    pub fn keys(&self) -> &JwtKeys {
        &self.keys
    }

    /// No token means `anon`. A verified token without a `role` claim is `anon` too (as in
    /// PostgREST); a role outside the allow-list is refused, never assumed. A signed-URL token
    /// (its `aud`) is refused: it grants one object, never an identity.
    pub fn identify(&self, token: Option<&str>) -> Result<Identity, AuthError> {
        let Some(token) = token else {
            return self.allow(Identity::anon());
        };
        let claims = self.keys.verify(token)?;
        if claims
            .iter()
            .any(|(key, value)| key.contains('\0') || holds_nul(value))
        {
            // PostgreSQL text cannot hold NUL: the claims could not be set for the policies.
            return Err(AuthError::InvalidToken(
                "the token's claims contain a NUL character".into(),
            ));
        }
        if super::signed_url::is_signed_url_token(&claims) {
            return Err(AuthError::InvalidToken(
                "a signed-URL token is not an API credential".into(),
            ));
        }
        let role = match claims.get("role") {
            None | Some(Value::Null) => Identity::ANON.to_string(),
            Some(Value::String(role)) => role.clone(),
            Some(_) => {
                return Err(AuthError::InvalidToken(
                    "the role claim is not a string".into(),
                ));
            }
        };
        self.allow(Identity { role, claims })
    }

    /// Lets `identity` through if its role is allowed: for identities that come from other
    /// credentials than a JWT (S3 keys), which must obey the same allow-list.
    pub fn authorize(&self, identity: Identity) -> Result<Identity, AuthError> {
        self.allow(identity)
    }

    fn allow(&self, identity: Identity) -> Result<Identity, AuthError> {
        if self.allowed_roles.contains(&identity.role) {
            Ok(identity)
        } else {
            Err(AuthError::ForbiddenRole(identity.role))
        }
    }
}

/// Whether a claim's value holds a NUL character anywhere (keys included).
fn holds_nul(value: &Value) -> bool {
    match value {
        Value::String(text) => text.contains('\0'),
        Value::Array(items) => items.iter().any(holds_nul),
        Value::Object(map) => map
            .iter()
            .any(|(key, value)| key.contains('\0') || holds_nul(value)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Authenticator {
        Authenticator::new(
            JwtKeys::new(b"unit-test-secret-unit-test-secret"),
            vec!["anon".into(), "authenticated".into(), "service_role".into()],
        )
    }

    #[test]
    fn no_token_is_anon() {
        assert_eq!(auth().identify(None).unwrap().role, "anon");
    }

    #[test]
    fn valid_token_gives_role_and_sub() {
        let a = auth();
        let token = a
            .keys()
            .mint("authenticated", Some("user-1"), None, Map::new())
            .unwrap();
        let id = a.identify(Some(&token)).unwrap();
        assert_eq!(id.role, "authenticated");
        assert_eq!(id.sub().as_deref(), Some("user-1"));
    }

    #[test]
    fn a_token_seen_before_gives_the_same_identity() {
        let a = auth();
        let token = a
            .keys()
            .mint(
                "authenticated",
                Some("user-1"),
                Some(std::time::Duration::from_secs(60)),
                Map::new(),
            )
            .unwrap();
        let first = a.identify(Some(&token)).unwrap();
        let second = a.identify(Some(&token)).unwrap();
        assert_eq!(first, second);
        // Tampering with the cached token's signature is still caught.
        let forged = &token[..token.len() - 2];
        assert!(a.identify(Some(forged)).is_err());
    }

    #[test]
    fn forbidden_role_is_refused() {
        let a = auth();
        let token = a.keys().mint("postgres", None, None, Map::new()).unwrap();
        assert!(matches!(
            a.identify(Some(&token)),
            Err(AuthError::ForbiddenRole(r)) if r == "postgres"
        ));
    }

    #[test]
    fn signed_url_tokens_are_not_credentials() {
        let a = auth();
        let token = crate::auth::signed_url::sign_download(
            a.keys(),
            "bucket",
            "a.txt",
            std::time::Duration::from_secs(60),
        )
        .unwrap();
        assert!(matches!(
            a.identify(Some(&token)),
            Err(AuthError::InvalidToken(m)) if m.contains("signed-URL")
        ));
    }

    #[test]
    fn wrong_key_is_refused() {
        let other = JwtKeys::new(b"another-secret-another-secret-xx");
        let token = other.mint("service_role", None, None, Map::new()).unwrap();
        assert!(matches!(
            auth().identify(Some(&token)),
            Err(AuthError::InvalidToken(m)) if m.contains("signature")
        ));
    }
}
