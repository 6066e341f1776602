use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Map, Value};

use super::AuthError;

/// The `alg` named by a token's header, if the header is readable.
fn header_alg(token: &str) -> Option<String> {
    use base64::Engine;
    let header = token.split('.').next()?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .ok()?;
    let header: Value = serde_json::from_slice(&bytes).ok()?;
    header.get("alg")?.as_str().map(str::to_string)
}

/// HS256 keys for verifying request tokens and minting the server's own tokens.
#[derive(Clone)]
pub struct JwtKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtKeys(..)")
    }
}

impl JwtKeys {
    pub fn new(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        // `exp` and `nbf` are honoured when present; a token without `exp` (a long-lived API
        // key) is allowed, as Supabase's keys do. The audience is not ours to check.
        validation.required_spec_claims.clear();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        validation.leeway = 5;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
        }
    }

    /// Verifies signature and time claims and returns the claims object.
    pub fn verify(&self, token: &str) -> Result<Map<String, Value>, AuthError> {
        // jsonwebtoken cannot parse a header naming an algorithm it does not know (`none`) and
        // would report it as bad JSON; name the real reason.
        if let Some(alg) = header_alg(token)
            && alg != "HS256"
        {
            return Err(AuthError::InvalidToken(format!(
                "algorithm '{alg}' not allowed (only HS256)"
            )));
        }
        match jsonwebtoken::decode::<Value>(token, &self.decoding, &self.validation) {
            Ok(data) => match data.claims {
                Value::Object(claims) => Ok(claims),
                _ => Err(AuthError::InvalidToken(
                    "claims are not a JSON object".into(),
                )),
            },
            Err(error) => Err(AuthError::InvalidToken(
                match error.kind() {
                    ErrorKind::ExpiredSignature => "token has expired",
                    ErrorKind::ImmatureSignature => "token is not valid yet (nbf)",
                    ErrorKind::InvalidSignature => "signature does not match",
                    ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => {
                        "algorithm not allowed (only HS256)"
                    }
                    ErrorKind::InvalidToken | ErrorKind::Base64(_) | ErrorKind::Utf8(_) => {
                        "token is malformed"
                    }
                    ErrorKind::Json(_) => "token payload is not valid JSON",
                    _ => "token could not be verified",
                }
                .to_string(),
            )),
        }
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
