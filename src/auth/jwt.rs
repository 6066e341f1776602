use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Map, Value};

use super::AuthError;
use super::jwks::JwkKeySet;
use super::verified::VerifiedTokens;

/// The `alg` and `kid` named by a token's header, if the header is readable.
fn header_alg_kid(token: &str) -> Option<(String, Option<String>)> {
    use base64::Engine;
    let header = token.split('.').next()?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .ok()?;
    let header: Value = serde_json::from_slice(&bytes).ok()?;
    let alg = header.get("alg")?.as_str()?.to_string();
    let kid = header
        .get("kid")
        .and_then(Value::as_str)
        .map(str::to_string);
    Some((alg, kid))
}

/// The checks every request token gets, whatever its algorithm: `exp` and `nbf` are honoured
/// when present; a token without `exp` (a long-lived API key) is allowed, as Supabase's keys
/// do. The audience is not ours to check.
pub(super) fn validation(algorithm: Algorithm) -> Validation {
    let mut validation = Validation::new(algorithm);
    validation.required_spec_claims.clear();
    validation.validate_exp = true;
    validation.validate_nbf = true;
    validation.validate_aud = false;
    validation.leeway = LEEWAY;
    validation
}

/// Seconds of clock skew allowed on `exp` and `nbf`.
pub(super) const LEEWAY: u64 = 5;

/// Why jsonwebtoken refused a token, in words for the client.
pub(super) fn refusal(error: &jsonwebtoken::errors::Error) -> AuthError {
    AuthError::InvalidToken(
        match error.kind() {
            ErrorKind::ExpiredSignature => "token has expired",
            ErrorKind::ImmatureSignature => "token is not valid yet (nbf)",
            ErrorKind::InvalidSignature => "signature does not match",
            ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => "algorithm not allowed",
            ErrorKind::InvalidToken | ErrorKind::Base64(_) | ErrorKind::Utf8(_) => {
                "token is malformed"
            }
            ErrorKind::Json(_) => "token payload is not valid JSON",
            _ => "token could not be verified",
        }
        .to_string(),
    )
}

pub(super) fn claims_object(claims: Value) -> Result<Map<String, Value>, AuthError> {
    match claims {
        Value::Object(claims) => Ok(claims),
        _ => Err(AuthError::InvalidToken(
            "claims are not a JSON object".into(),
        )),
    }
}

/// Keys for verifying request tokens and minting the server's own: the HS256 secret, and
/// optionally the public keys of a JWKS for tokens signed elsewhere.
/// Cheap to clone (every request's handler holds one): the keys sit behind one `Arc`.
#[derive(Clone)]
pub struct JwtKeys(Arc<Keys>);

#[derive(Clone)]
/// What a [`JwtKeys`] holds.
pub struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    jwks: Option<Arc<JwkKeySet>>,
    /// The key the database signs download URLs with (see [`JwtKeys::database_signing_key`]).
    database_key: Arc<Vec<u8>>,
    database_decoding: DecodingKey,
    /// Tokens already verified with the secret (see [`VerifiedTokens`]).
    verified: Arc<VerifiedTokens>,
}

/// Binds the database's signing key to that one use (as `sealed` does for its key).
const DATABASE_SIGNING_CONTEXT: &[u8] = b"pgstorage database-signed download URLs v1";

/// Who signed a signed-URL token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignedBy {
    /// This server, with its secret.
    Server,
    /// The database (`storage.sign_download_url`), with [`JwtKeys::database_signing_key`].
    Database,
}

impl std::ops::Deref for JwtKeys {
    type Target = Keys;

    fn deref(&self) -> &Keys {
        &self.0
    }
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtKeys(..)")
    }
}

impl JwtKeys {
    pub fn new(secret: &[u8]) -> Self {
        use aws_lc_rs::hmac;
        let derived = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, secret),
            DATABASE_SIGNING_CONTEXT,
        );
        Self(Arc::new(Keys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation: validation(Algorithm::HS256),
            jwks: None,
            database_key: Arc::new(derived.as_ref().to_vec()),
            database_decoding: DecodingKey::from_secret(derived.as_ref()),
            verified: Arc::default(),
        }))
    }

    /// The HS256 key the database signs download URLs with: HMAC-SHA256(secret, a fixed
    /// context), so the database never holds the secret itself (which mints API keys of any
    /// role). It changes whenever the secret does. Tokens signed with it are only ever accepted
    /// as signed download URLs that name their signer ([`JwtKeys::verify_signed_url`]).
    pub fn database_signing_key(&self) -> &[u8] {
        &self.database_key
    }

    /// Verifies a signed-URL token made by this server or by the database, saying which.
    pub fn verify_signed_url(
        &self,
        token: &str,
    ) -> Result<(Map<String, Value>, SignedBy), AuthError> {
        match self.verify_own(token) {
            Ok(claims) => Ok((claims, SignedBy::Server)),
            Err(own_error) => {
                match jsonwebtoken::decode::<Value>(
                    token,
                    &self.database_decoding,
                    &self.validation,
                ) {
                    Ok(data) => Ok((claims_object(data.claims)?, SignedBy::Database)),
                    // The server's reading of the token is the one worth telling.
                    Err(_) => Err(own_error),
                }
            }
        }
    }

    /// Also accepts request tokens signed with one of `jwks`'s keys.
    pub fn with_jwks(mut self, jwks: JwkKeySet) -> Self {
        Arc::make_mut(&mut self.0).jwks = Some(Arc::new(jwks));
        self
    }

    /// Verifies a request token's signature and time claims and returns its claims: HS256 with
    /// the secret, or an asymmetric algorithm with the JWKS key its header names.
    pub fn verify(&self, token: &str) -> Result<Map<String, Value>, AuthError> {
        // A token verified before is one of the server's own (HS256): no header to read.
        if let Some(claims) = self.verified.get(token) {
            return Ok(claims);
        }
        // jsonwebtoken cannot parse a header naming an algorithm it does not know (`none`) and
        // would report it as bad JSON; name the real reason. An unreadable header is left to
        // the HS256 path, which calls it malformed.
        let Some((alg, kid)) = header_alg_kid(token) else {
            return self.verify_own(token);
        };
        if alg == "HS256" {
            return self.verify_own(token);
        }
        match (&self.jwks, super::jwks::asymmetric(&alg)) {
            (Some(jwks), Some(algorithm)) => jwks.verify(token, algorithm, kid.as_deref()),
            (jwks, _) => {
                let mut allowed = vec!["HS256".to_string()];
                if let Some(jwks) = jwks {
                    allowed.extend(jwks.algorithms().iter().map(|a| format!("{a:?}")));
                }
                Err(AuthError::InvalidToken(format!(
                    "algorithm '{alg}' not allowed (only {})",
                    allowed.join(", ")
                )))
            }
        }
    }

    /// Verifies a token this server signed (HS256 with its secret), such as a signed URL's.
    /// JWKS keys are never consulted.
    pub fn verify_own(&self, token: &str) -> Result<Map<String, Value>, AuthError> {
        if let Some(claims) = self.verified.get(token) {
            return Ok(claims);
        }
        if let Some((alg, _)) = header_alg_kid(token)
            && alg != "HS256"
        {
            return Err(AuthError::InvalidToken(format!(
                "algorithm '{alg}' not allowed (only HS256)"
            )));
        }
        let claims = match jsonwebtoken::decode::<Value>(token, &self.decoding, &self.validation) {
            Ok(data) => claims_object(data.claims)?,
            Err(error) => return Err(refusal(&error)),
        };
        self.verified.put(token, &claims, LEEWAY);
        Ok(claims)
    }

    /// Signs `claims` (an object), adding `iat` and, when `expires_in` is given, `exp`.
    pub fn sign(
        &self,
        mut claims: Map<String, Value>,
        expires_in: Option<Duration>,
    ) -> anyhow::Result<String> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        claims.insert("iat".into(), now.into());
        if let Some(expires_in) = expires_in {
            claims.insert("exp".into(), (now + expires_in.as_secs()).into());
        }
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &Value::Object(claims),
            &self.encoding,
        )?)
    }

    /// The server's anon API key: the same text on every start for the same secret (no `iat`,
    /// no expiry), because S3 session-token requests are signed with it as their secret.
    pub fn stable_anon_key(&self) -> anyhow::Result<String> {
        let claims = serde_json::json!({ "role": "anon", "iss": "pgstorage" });
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.encoding,
        )?)
    }

    /// A token for `role` (and optionally `sub`), as printed by `pgstorage token` and at start-up.
    pub fn mint(
        &self,
        role: &str,
        sub: Option<&str>,
        expires_in: Option<Duration>,
        extra: Map<String, Value>,
    ) -> anyhow::Result<String> {
        let mut claims = extra;
        claims.insert("role".into(), role.into());
        if let Some(sub) = sub {
            claims.insert("sub".into(), sub.into());
        }
        claims.entry("iss").or_insert_with(|| "pgstorage".into());
        self.sign(claims, expires_in)
    }
}
