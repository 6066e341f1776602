//! Signed-URL tokens: short-lived HS256 JWTs, signed with the server's secret, that carry the
//! right to download or upload exactly one object.
//!
//! Claims: `url` (`<bucket>/<name>`: unambiguous because bucket ids never contain `/`),
//! `scope` (`download` | `upload`), `aud` ([`SIGNED_URL_AUDIENCE`]), `iss`, `iat`, `exp`; upload
//! tokens add `jti` (the token's id: the server records the signer's claims under it when
//! signing, and the use of a single-use token), `upsert`, and `owner` / `signer_role` (the
//! signer's `sub` and role) when the signer had them. The signer's other claims stay in the
//! database, out of a URL that may be handed to anyone. Download tokens signed inside the
//! database by `storage.get_file` (migration 0014) carry `signer_role` and `owner` too: the
//! database cannot prove to the server that its RLS check passed, so the server checks the
//! signer's policies again when such a URL is used. The database signs with a key derived from
//! the secret ([`JwtKeys::database_signing_key`]), never the secret itself; a token signed with
//! that key is accepted only as a download URL that names its signer. The audience keeps these
//! tokens apart from API credentials: [`super::Authenticator::identify`] refuses them, and
//! [`verify`] refuses anything else. They deliberately carry no `role` or `sub` claim either, so
//! another service sharing the JWT secret (PostgREST, say) that ignores `aud` still cannot take a
//! signed URL's token for the signer's credentials.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use super::{AuthError, JwtKeys, SignedBy};

/// The `aud` claim of every signed-URL token, and of no API credential.
pub const SIGNED_URL_AUDIENCE: &str = "pgstorage:signed-url";

/// How long a signed upload URL stays valid (Supabase's hosted default: 2 hours).
pub const UPLOAD_URL_LIFETIME: Duration = Duration::from_secs(2 * 60 * 60);

/// The longest `expiresIn` accepted for a signed download URL (100 years).
pub const MAX_EXPIRES_IN: u64 = 100 * 365 * 24 * 60 * 60;

/// What a token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Download,
    Upload,
}

impl UploadGrant {
    /// The signer's claims as far as the token itself knows them (role and `sub`), for a
    /// token whose signing the server has no record of.
    pub fn claims_in_token(&self) -> Map<String, Value> {
        let mut claims = Map::new();
        if let Some(role) = &self.role {
            claims.insert("role".into(), role.clone().into());
        }
        if let Some(owner) = &self.owner {
            claims.insert("sub".into(), owner.clone().into());
        }
        claims
    }
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Download => "download",
            Scope::Upload => "upload",
        }
    }
}

/// The rights of a signed upload, as the signer had them when signing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadGrant {
    /// The token's id (`jti`). Tokens signed before ids existed get one derived from their
    /// signed part, which cannot change without the signature failing.
    pub id: String,
    /// The signer's `sub`: the new row's `owner_id`.
    pub owner: Option<String>,
    /// The signer's role, for the record (the upload itself runs with privilege).
    pub role: Option<String>,
    /// Whether the upload may replace an existing object.
    pub upsert: bool,
}

/// The signer of a download token made in the database: the role it ran as and its `sub`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DownloadSigner {
    pub role: String,
    pub sub: Option<String>,
}

impl DownloadSigner {
    /// The claims the signer's policies are evaluated with when the URL is used.
    pub fn claims(&self) -> Map<String, Value> {
        let mut claims = Map::new();
        claims.insert("role".into(), self.role.clone().into());
        if let Some(sub) = &self.sub {
            claims.insert("sub".into(), sub.clone().into());
        }
        claims
    }
}

/// A verified token, checked against the object it was presented for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedToken {
    /// The object the token names: the one to serve or write, whatever spelling of it the
    /// request's path used.
    pub bucket: String,
    pub name: String,
    pub scope: Scope,
    /// `Some` for upload tokens.
    pub upload: Option<UploadGrant>,
    /// For a download token signed in the database (`storage.get_file`, migration 0014): who
    /// signed it. Its use is checked against that signer's policies again; a token without a
    /// signer (the server's own) runs with privilege.
    pub signer: Option<DownloadSigner>,
    /// Seconds since the Unix epoch.
    pub expires_at: u64,
    /// For a download token signed with image transformation parameters: those parameters.
    pub transform: Option<String>,
}

/// Why a signed URL was refused.
#[derive(Debug, thiserror::Error)]
pub enum SignedUrlError {
    #[error("the signed URL has no token query parameter")]
    Missing,
    /// Malformed, signed with another key, expired, or not a signed-URL token at all.
    #[error("invalid signed URL token: {0}")]
    Invalid(String),
    /// A genuine token, presented for another bucket or object.
    #[error("the token is not valid for this object")]
    WrongObject,
    /// A genuine token for this object, with the other scope.
    #[error("the token is scoped for {found}, not {expected}")]
    WrongScope {
        expected: &'static str,
        found: String,
    },
}

fn url_claim(bucket: &str, name: &str) -> String {
    format!("{bucket}/{name}")
}

/// Whether a token's `url` claim names `bucket/name`. Bucket ids never contain `/` (a token
/// presented for one is refused), so the claim splits at its first `/` into exactly one bucket
/// and name. The URLs the server hands out percent-encode what would break a URL (`%`, `?`,
/// `#`, `\`); a client that encodes such a URL once more (storage-js passes it through
/// `encodeURI`) presents the name still encoded once, which is accepted too: the token names the
/// object either way, and it is the token's object that is served.
fn names_object<'u>(url: &'u str, bucket: &str, name: &str) -> Option<(&'u str, &'u str)> {
    if bucket.contains('/') {
        return None;
    }
    let (claimed_bucket, claimed_name) = url.split_once('/')?;
    let decoded = |text: &str| {
        percent_encoding::percent_decode_str(text)
            .decode_utf8()
            .map(|t| t.into_owned())
            .ok()
    };
    let same = |claimed: &str, given: &str| {
        claimed == given || decoded(given).is_some_and(|d| d == claimed)
    };
    (same(claimed_bucket, bucket) && same(claimed_name, name))
        .then_some((claimed_bucket, claimed_name))
}

/// The id of an upload token signed before tokens carried a `jti`: a digest of its signed part.
fn legacy_id(token: &str) -> String {
    use sha2::{Digest, Sha256};
    let signed = token.rsplit_once('.').map_or(token, |(signed, _)| signed);
    format!("legacy:{}", hex::encode(Sha256::digest(signed.as_bytes())))
}

fn base_claims(bucket: &str, name: &str, scope: Scope) -> Map<String, Value> {
    let mut claims = Map::new();
    claims.insert("url".into(), url_claim(bucket, name).into());
    claims.insert("scope".into(), scope.as_str().into());
    claims.insert("aud".into(), SIGNED_URL_AUDIENCE.into());
    claims.insert("iss".into(), "pgstorage".into());
    claims
}

/// A token to download `bucket/name` for `expires_in`.
pub fn sign_download(
    keys: &JwtKeys,
    bucket: &str,
    name: &str,
    expires_in: Duration,
) -> anyhow::Result<String> {
    keys.sign(base_claims(bucket, name, Scope::Download), Some(expires_in))
}

/// A token to download `bucket/name` transformed as `transform` says (the canonical parameters
/// of an image rendition, see `crate::transform::Params`): the rendition URL serves exactly
/// those parameters, whatever its query string says.
pub fn sign_download_transformed(
    keys: &JwtKeys,
    bucket: &str,
    name: &str,
    transform: &str,
    expires_in: Duration,
) -> anyhow::Result<String> {
    let mut claims = base_claims(bucket, name, Scope::Download);
    claims.insert("transform".into(), transform.into());
    keys.sign(claims, Some(expires_in))
}

/// A token to upload `bucket/name` once (or, with `upsert`, to replace it) for `expires_in`.
pub fn sign_upload(
    keys: &JwtKeys,
    bucket: &str,
    name: &str,
    grant: &UploadGrant,
    expires_in: Duration,
) -> anyhow::Result<String> {
    let mut claims = base_claims(bucket, name, Scope::Upload);
    claims.insert("jti".into(), grant.id.clone().into());
    claims.insert("upsert".into(), grant.upsert.into());
    if let Some(owner) = &grant.owner {
        claims.insert("owner".into(), owner.clone().into());
    }
    if let Some(role) = &grant.role {
        claims.insert("signer_role".into(), role.clone().into());
    }
    keys.sign(claims, Some(expires_in))
}

/// True when `claims` carry the signed-URL audience (as a string or in an array).
pub fn is_signed_url_token(claims: &Map<String, Value>) -> bool {
    match claims.get("aud") {
        Some(Value::String(aud)) => aud == SIGNED_URL_AUDIENCE,
        Some(Value::Array(auds)) => auds.iter().any(|a| a == SIGNED_URL_AUDIENCE),
        _ => false,
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Verifies `token` for `scope` on `bucket/name`. Checks, in order: signature and format,
/// audience, expiry (strict, without the leeway API tokens get), object, scope.
pub fn verify(
    keys: &JwtKeys,
    token: Option<&str>,
    bucket: &str,
    name: &str,
    scope: Scope,
) -> Result<SignedToken, SignedUrlError> {
    let token = token
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(SignedUrlError::Missing)?;
    let (claims, signed_by) = keys.verify_signed_url(token).map_err(|error| match error {
        AuthError::InvalidToken(reason) => SignedUrlError::Invalid(reason),
        other => SignedUrlError::Invalid(other.to_string()),
    })?;
    // The database's key signs downloads for a named signer, nothing else: a token of it that
    // would run with privilege (no signer) or upload is refused.
    if signed_by == SignedBy::Database
        && (scope != Scope::Download || !claims.contains_key("signer_role"))
    {
        return Err(SignedUrlError::Invalid(
            "a token signed in the database is only valid as a download URL that names its signer"
                .into(),
        ));
    }
    if !is_signed_url_token(&claims) {
        return Err(SignedUrlError::Invalid(
            "not a signed-URL token (an API key or session token cannot sign a URL)".into(),
        ));
    }
    let expires_at = claims
        .get("exp")
        .and_then(Value::as_u64)
        .ok_or_else(|| SignedUrlError::Invalid("the token has no expiry".into()))?;
    if expires_at <= now() {
        return Err(SignedUrlError::Invalid("token has expired".into()));
    }
    let url = claims.get("url").and_then(Value::as_str).unwrap_or("");
    let Some((claimed_bucket, claimed_name)) = names_object(url, bucket, name) else {
        return Err(SignedUrlError::WrongObject);
    };
    let found = claims.get("scope").and_then(Value::as_str).unwrap_or("");
    if found != scope.as_str() {
        return Err(SignedUrlError::WrongScope {
            expected: scope.as_str(),
            found: if found.is_empty() {
                "nothing".into()
            } else {
                found.to_string()
            },
        });
    }
    let upload = (scope == Scope::Upload).then(|| {
        let owner = claims
            .get("owner")
            .and_then(Value::as_str)
            .map(str::to_string);
        let role = claims
            .get("signer_role")
            .and_then(Value::as_str)
            .map(str::to_string);
        let id = match claims.get("jti").and_then(Value::as_str) {
            Some(jti) => jti.to_string(),
            None => legacy_id(token),
        };
        UploadGrant {
            id,
            owner,
            role,
            upsert: claims
                .get("upsert")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        }
    });
    let signer = (scope == Scope::Download)
        .then(|| claims.get("signer_role").and_then(Value::as_str))
        .flatten()
        .map(|role| DownloadSigner {
            role: role.to_string(),
            sub: claims
                .get("owner")
                .and_then(Value::as_str)
                .map(str::to_string),
        });
    Ok(SignedToken {
        bucket: claimed_bucket.to_string(),
        name: claimed_name.to_string(),
        scope,
        upload,
        signer,
        expires_at,
        transform: claims
            .get("transform")
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> JwtKeys {
        JwtKeys::new(b"unit-test-secret-unit-test-secret")
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn a_download_token_verifies_for_its_object_only() {
        let k = keys();
        let token = sign_download(&k, "b", "a/c.txt", HOUR).unwrap();
        let ok = verify(&k, Some(&token), "b", "a/c.txt", Scope::Download).unwrap();
        assert_eq!(ok.scope, Scope::Download);
        assert!(ok.upload.is_none());
        assert!(matches!(
            verify(&k, Some(&token), "b", "a/d.txt", Scope::Download),
            Err(SignedUrlError::WrongObject)
        ));
        assert!(matches!(
            verify(&k, Some(&token), "other", "a/c.txt", Scope::Download),
            Err(SignedUrlError::WrongObject)
        ));
        assert!(matches!(
            verify(&k, Some(&token), "b", "a/c.txt", Scope::Upload),
            Err(SignedUrlError::WrongScope { expected: "upload", found }) if found == "download"
        ));
    }

    #[test]
    fn an_upload_token_carries_its_grant() {
        let k = keys();
        let grant = UploadGrant {
            id: "t1".into(),
            owner: Some("u1".into()),
            role: Some("authenticated".into()),
            upsert: true,
        };
        let token = sign_upload(&k, "b", "u1/x", &grant, HOUR).unwrap();
        let ok = verify(&k, Some(&token), "b", "u1/x", Scope::Upload).unwrap();
        assert_eq!(ok.upload, Some(grant));
        assert!(matches!(
            verify(&k, Some(&token), "b", "u1/x", Scope::Download),
            Err(SignedUrlError::WrongScope { .. })
        ));
    }

    #[test]
    fn api_tokens_missing_and_expired_tokens_are_refused() {
        let k = keys();
        let api = k
            .mint("service_role", None, Some(HOUR), Map::new())
            .unwrap();
        assert!(matches!(
            verify(&k, Some(&api), "b", "x", Scope::Download),
            Err(SignedUrlError::Invalid(m)) if m.contains("not a signed-URL token")
        ));
        assert!(matches!(
            verify(&k, None, "b", "x", Scope::Download),
            Err(SignedUrlError::Missing)
        ));
        assert!(matches!(
            verify(&k, Some(""), "b", "x", Scope::Download),
            Err(SignedUrlError::Missing)
        ));
        // Expired a second ago: inside the API tokens' leeway, but a signed URL gets none.
        let mut claims = base_claims("b", "x", Scope::Download);
        claims.insert("exp".into(), (now() - 1).into());
        let expired = jsonwebtoken::encode(
            &jsonwebtoken::Header::default(),
            &Value::Object(claims),
            &jsonwebtoken::EncodingKey::from_secret(b"unit-test-secret-unit-test-secret"),
        )
        .unwrap();
        assert!(matches!(
            verify(&k, Some(&expired), "b", "x", Scope::Download),
            Err(SignedUrlError::Invalid(m)) if m.contains("expired")
        ));
    }

    #[test]
    fn a_token_names_one_object_whatever_the_spelling_of_the_path() {
        let k = keys();
        let token = sign_download(&k, "a", "b/c", HOUR).unwrap();
        // Bucket "a/b" + name "c" spells the same `url` claim: refused, never confused.
        assert!(matches!(
            verify(&k, Some(&token), "a/b", "c", Scope::Download),
            Err(SignedUrlError::WrongObject)
        ));
        let ok = verify(&k, Some(&token), "a", "b/c", Scope::Download).unwrap();
        assert_eq!((ok.bucket.as_str(), ok.name.as_str()), ("a", "b/c"));

        // A name encoded once more by the client still names the token's object, and the
        // token's object is what the caller gets, not the path's spelling of it.
        let token = sign_download(&k, "b", "what?#%.txt", HOUR).unwrap();
        let ok = verify(&k, Some(&token), "b", "what%3F%23%25.txt", Scope::Download).unwrap();
        assert_eq!(ok.name, "what?#%.txt");
        assert!(matches!(
            verify(&k, Some(&token), "b", "what%3F.txt", Scope::Download),
            Err(SignedUrlError::WrongObject)
        ));
    }

    #[test]
    fn an_upload_token_has_an_id_even_when_signed_before_ids_existed() {
        let k = keys();
        let mut claims = base_claims("b", "x", Scope::Upload);
        claims.insert("owner".into(), "u1".into());
        claims.insert("signer_role".into(), "authenticated".into());
        let old = k.sign(claims, Some(HOUR)).unwrap();
        let first = verify(&k, Some(&old), "b", "x", Scope::Upload).unwrap();
        let again = verify(&k, Some(&old), "b", "x", Scope::Upload).unwrap();
        let grant = first.upload.unwrap();
        assert!(grant.id.starts_with("legacy:"));
        assert_eq!(grant.id, again.upload.unwrap().id);
        let claims = grant.claims_in_token();
        assert_eq!(claims["sub"], "u1");
        assert_eq!(claims["role"], "authenticated");
    }

    #[test]
    fn a_download_token_signed_in_the_database_names_its_signer() {
        let k = keys();
        let own = sign_download(&k, "b", "x", HOUR).unwrap();
        assert_eq!(
            verify(&k, Some(&own), "b", "x", Scope::Download)
                .unwrap()
                .signer,
            None
        );
        let mut claims = base_claims("b", "x", Scope::Download);
        claims.insert("signer_role".into(), "authenticated".into());
        claims.insert("owner".into(), "u1".into());
        let from_sql = k.sign(claims, Some(HOUR)).unwrap();
        let signer = verify(&k, Some(&from_sql), "b", "x", Scope::Download)
            .unwrap()
            .signer
            .unwrap();
        assert_eq!(signer.role, "authenticated");
        assert_eq!(signer.claims()["sub"], "u1");
        assert_eq!(signer.claims()["role"], "authenticated");
        // Upload tokens keep their own grant; they never name a download signer.
        let grant = UploadGrant {
            id: "t".into(),
            owner: Some("u1".into()),
            role: Some("authenticated".into()),
            upsert: false,
        };
        let upload = sign_upload(&k, "b", "x", &grant, HOUR).unwrap();
        let verified = verify(&k, Some(&upload), "b", "x", Scope::Upload).unwrap();
        assert_eq!(verified.signer, None);
    }

    #[test]
    fn the_databases_key_signs_download_urls_that_name_their_signer_and_nothing_else() {
        let k = keys();
        let database = JwtKeys::new(k.database_signing_key());
        let mut claims = base_claims("b", "x", Scope::Download);
        claims.insert("signer_role".into(), "anon".into());
        let good = database.sign(claims, Some(HOUR)).unwrap();
        let ok = verify(&k, Some(&good), "b", "x", Scope::Download).unwrap();
        assert_eq!(ok.signer.unwrap().role, "anon");

        // Without a signer it would run with privilege; as an upload it would write.
        let privileged = database
            .sign(base_claims("b", "x", Scope::Download), Some(HOUR))
            .unwrap();
        let upload = database
            .sign(base_claims("b", "x", Scope::Upload), Some(HOUR))
            .unwrap();
        for (token, scope) in [(privileged, Scope::Download), (upload, Scope::Upload)] {
            assert!(matches!(
                verify(&k, Some(&token), "b", "x", scope),
                Err(SignedUrlError::Invalid(m)) if m.contains("signed in the database")
            ));
        }
        // Nor is it an API credential.
        let api = database
            .mint("service_role", None, Some(HOUR), Map::new())
            .unwrap();
        assert!(k.verify(&api).is_err());
        // And it is not the secret.
        assert_ne!(
            k.database_signing_key(),
            b"unit-test-secret-unit-test-secret"
        );
    }

    #[test]
    fn the_audience_is_recognised_as_string_or_array() {
        let mut claims = Map::new();
        assert!(!is_signed_url_token(&claims));
        claims.insert("aud".into(), SIGNED_URL_AUDIENCE.into());
        assert!(is_signed_url_token(&claims));
        claims.insert("aud".into(), serde_json::json!(["x", SIGNED_URL_AUDIENCE]));
        assert!(is_signed_url_token(&claims));
        claims.insert("aud".into(), "authenticated".into());
        assert!(!is_signed_url_token(&claims));
    }
}
