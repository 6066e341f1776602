//! Public keys for request tokens signed by someone else (Supabase Auth's asymmetric signing
//! keys, say), read once at start-up from a JSON Web Key Set (RFC 7517).
//!
//! Each key is bound to the algorithms its type allows: EC P-256 to ES256, EC P-384 to ES384,
//! OKP Ed25519 to EdDSA, RSA to RS256/384/512 and PS256/384/512 (narrowed to the key's `alg`
//! when it names one). A token is only ever checked against a key bound to the token's `alg`, so
//! no algorithm confusion is possible; symmetric (`oct`) keys are refused: HS256 tokens are
//! verified with the server's secret alone.

use anyhow::{Context, anyhow, bail};
use base64::Engine;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::{Map, Value};

use super::AuthError;
use super::jwt::{refusal, validation};

/// The algorithms a JWKS key can verify.
const ASYMMETRIC: [Algorithm; 9] = [
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::EdDSA,
];

const RSA: [Algorithm; 6] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

/// How many keys a token without `kid` is tried against.
const MAX_KEYS_WITHOUT_KID: usize = 4;

/// The asymmetric algorithm named `name`, if it is one a JWKS key can verify.
pub(super) fn asymmetric(name: &str) -> Option<Algorithm> {
    let algorithm: Algorithm = name.parse().ok()?;
    ASYMMETRIC.contains(&algorithm).then_some(algorithm)
}

/// The verifying keys of a JWKS.
#[derive(Clone)]
pub struct JwkKeySet {
    keys: Vec<VerifyingKey>,
}

#[derive(Clone)]
struct VerifyingKey {
    kid: Option<String>,
    /// The token algorithms this key may check.
    algorithms: Vec<Algorithm>,
    key: DecodingKey,
}

impl std::fmt::Debug for JwkKeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<_> = self.keys.iter().map(|k| k.kid.as_deref()).collect();
        f.debug_struct("JwkKeySet").field("kids", &kids).finish()
    }
}

impl JwkKeySet {
    /// The `--jwt-jwks` value: inline JSON when it starts with `{`, else a path to a JSON file.
    pub fn load(value: &str) -> anyhow::Result<Self> {
        if value.trim_start().starts_with('{') {
            return Self::from_json(value).context("--jwt-jwks (inline JSON)");
        }
        let text = std::fs::read_to_string(value)
            .with_context(|| format!("--jwt-jwks: reading {value}"))?;
        Self::from_json(&text).with_context(|| format!("--jwt-jwks file {value}"))
    }

    /// Parses a JWKS (`{"keys": [...]}`). Keys whose `use` is not `sig` (or whose `key_ops`
    /// lack `verify`) are skipped; any other key that cannot verify tokens is an error naming
    /// its index and `kid`.
    pub fn from_json(text: &str) -> anyhow::Result<Self> {
        let set: Value = serde_json::from_str(text).map_err(|e| anyhow!("not valid JSON ({e})"))?;
        let Some(entries) = set.get("keys").and_then(Value::as_array) else {
            bail!("not a JWKS: expected an object with a \"keys\" array");
        };
        let mut keys = Vec::new();
        for (index, entry) in entries.iter().enumerate() {
            let Value::Object(fields) = entry else {
                bail!("key {index} is not a JSON object");
            };
            let name = match fields.get("kid").and_then(Value::as_str) {
                Some(kid) => format!("key {index} (kid '{kid}')"),
                None => format!("key {index}"),
            };
            if !for_signatures(fields) {
                continue;
            }
            keys.push(VerifyingKey::parse(entry).with_context(|| name)?);
        }
        if keys.is_empty() {
            bail!("no signing keys (keys whose \"use\" is not \"sig\" are skipped)");
        }
        Ok(Self { keys })
    }

    /// E.g. "2 JWKS keys (ES256, RS256)", for the log.
    pub fn describe(&self) -> String {
        let algorithms: Vec<_> = self.algorithms().iter().map(|a| format!("{a:?}")).collect();
        format!("{} JWKS keys ({})", self.keys.len(), algorithms.join(", "))
    }

    /// The algorithms some key of the set verifies, for messages.
    pub(super) fn algorithms(&self) -> Vec<Algorithm> {
        ASYMMETRIC
            .into_iter()
            .filter(|a| self.keys.iter().any(|k| k.algorithms.contains(a)))
            .collect()
    }

    /// Verifies `token`, whose header names `algorithm` and `kid`: against the key with that
    /// `kid`, or without one against the first few keys bound to the algorithm.
    pub(super) fn verify(
        &self,
        token: &str,
        algorithm: Algorithm,
        kid: Option<&str>,
    ) -> Result<Map<String, Value>, AuthError> {
        let fits = |key: &&VerifyingKey| key.algorithms.contains(&algorithm);
        let candidates: Vec<&VerifyingKey> = match kid {
            Some(kid) => {
                let named: Vec<_> = self
                    .keys
                    .iter()
                    .filter(|k| k.kid.as_deref() == Some(kid))
                    .collect();
                if named.is_empty() {
                    return Err(AuthError::InvalidToken(format!("unknown kid '{kid}'")));
                }
                let fitting: Vec<_> = named.into_iter().filter(fits).collect();
                if fitting.is_empty() {
                    return Err(AuthError::InvalidToken(format!(
                        "algorithm '{algorithm:?}' not allowed for key '{kid}'"
                    )));
                }
                fitting
            }
            None => self
                .keys
                .iter()
                .filter(fits)
                .take(MAX_KEYS_WITHOUT_KID)
                .collect(),
        };
        if candidates.is_empty() {
            return Err(AuthError::InvalidToken(format!(
                "algorithm '{algorithm:?}' not allowed (no --jwt-jwks key for it)"
            )));
        }
        let validation = validation(algorithm);
        for candidate in candidates {
            match jsonwebtoken::decode::<Value>(token, &candidate.key, &validation) {
                Ok(data) => return super::jwt::claims_object(data.claims),
                Err(error)
                    if matches!(
                        error.kind(),
                        jsonwebtoken::errors::ErrorKind::InvalidSignature
                    ) => {}
                Err(error) => return Err(refusal(&error)),
            }
        }
        Err(AuthError::InvalidToken("signature does not match".into()))
    }
}

/// Whether a key is meant for verifying signatures: `use` absent or `sig`, `key_ops` absent or
/// holding `verify`.
fn for_signatures(fields: &Map<String, Value>) -> bool {
    let use_ok = fields.get("use").is_none_or(|u| u == "sig");
    let ops_ok = fields.get("key_ops").is_none_or(|ops| {
        ops.as_array()
            .is_some_and(|ops| ops.iter().any(|o| o == "verify"))
    });
    use_ok && ops_ok
}

fn b64_len(value: &str) -> anyhow::Result<usize> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(value)
        .map(|bytes| bytes.len())
        .map_err(|_| anyhow!("a key parameter is not base64url"))
}

/// The RSA modulus size in bits (leading zero bytes aside).
fn rsa_bits(n: &str) -> anyhow::Result<usize> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(n)
        .map_err(|_| anyhow!("\"n\" is not base64url"))?;
    let bytes = match bytes.iter().position(|b| *b != 0) {
        Some(first) => &bytes[first..],
        None => &[][..],
    };
    Ok(match bytes.first() {
        Some(top) => bytes.len() * 8 - top.leading_zeros() as usize,
        None => 0,
    })
}

impl VerifyingKey {
    fn parse(entry: &Value) -> anyhow::Result<Self> {
        if let Some(alg) = entry.get("alg")
            && alg.as_str().is_none_or(|a| asymmetric(a).is_none())
        {
            bail!(
                "unsupported \"alg\" {alg} (supported: ES256, ES384, RS256, RS384, RS512, PS256, PS384, PS512, EdDSA)"
            );
        }
        let jwk: Jwk =
            serde_json::from_value(entry.clone()).map_err(|e| anyhow!("not a valid JWK ({e})"))?;
        let (algorithms, probe) = match &jwk.algorithm {
            AlgorithmParameters::EllipticCurve(ec) => {
                let (algorithm, size) = match ec.curve {
                    EllipticCurve::P256 => (Algorithm::ES256, 32),
                    EllipticCurve::P384 => (Algorithm::ES384, 48),
                    ref other => bail!("unsupported EC curve {other:?} (supported: P-256, P-384)"),
                };
                if b64_len(&ec.x)? != size || b64_len(&ec.y)? != size {
                    bail!("EC key coordinates are not {size} bytes long");
                }
                (vec![algorithm], Some(algorithm))
            }
            AlgorithmParameters::OctetKeyPair(okp) => {
                if okp.curve != EllipticCurve::Ed25519 {
                    bail!("unsupported OKP curve {:?} (supported: Ed25519)", okp.curve);
                }
                if b64_len(&okp.x)? != 32 {
                    bail!("Ed25519 key is not 32 bytes long");
                }
                (vec![Algorithm::EdDSA], Some(Algorithm::EdDSA))
            }
            AlgorithmParameters::RSA(rsa) => {
                let bits = rsa_bits(&rsa.n)?;
                // RFC 7518 §3.3: 2048 bits or more; the verifier takes at most 4096.
                if !(2048..=4096).contains(&bits) {
                    bail!("RSA modulus of {bits} bits (supported: 2048 to 4096)");
                }
                if b64_len(&rsa.e)? == 0 {
                    bail!("RSA exponent is empty");
                }
                (RSA.to_vec(), None)
            }
            AlgorithmParameters::OctetKey(_) => {
                bail!("symmetric (\"oct\") keys are not accepted; HS256 uses --jwt-secret")
            }
            _ => bail!(
                "unsupported key type {} (supported: EC, RSA, OKP)",
                entry.get("kty").unwrap_or(&Value::Null)
            ),
        };
        let algorithms = match jwk.common.key_algorithm {
            None => algorithms,
            Some(alg) => {
                let alg = Algorithm::try_from(alg).map_err(|_| anyhow!("unsupported \"alg\""))?;
                if !algorithms.contains(&alg) {
                    bail!("\"alg\" {alg:?} does not fit the key's type");
                }
                vec![alg]
            }
        };
        let key = DecodingKey::from_jwk(&jwk).map_err(|e| anyhow!("unusable key ({e})"))?;
        // EC points and Ed25519 keys are decoded by the verifier itself: build one now, so a key
        // that is not a point on its curve fails start-up rather than every request.
        if let Some(algorithm) = probe {
            jsonwebtoken::crypto::verify("", b"", &key, algorithm)
                .map_err(|_| anyhow!("the public key is not a valid point on its curve"))?;
        }
        Ok(Self {
            kid: jwk.common.key_id.clone(),
            algorithms,
            key,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::{SystemTime, UNIX_EPOCH};

    use base64::Engine;
    use jsonwebtoken::{EncodingKey, Header};
    use serde_json::json;

    use super::*;
    use crate::auth::JwtKeys;

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    /// A fresh key pair: its signing key and its public JWK (with `kid`, without `alg`).
    fn generate(alg: &'static rcgen::SignatureAlgorithm, kid: &str) -> (EncodingKey, Value) {
        let pair = rcgen::KeyPair::generate_for(alg).unwrap();
        let public = pair.public_key_raw();
        if alg == &rcgen::PKCS_ED25519 {
            let jwk = json!({"kty": "OKP", "crv": "Ed25519", "kid": kid, "x": b64(public)});
            (EncodingKey::from_ed_der(&pair.serialize_der()), jwk)
        } else {
            let (x, y) = public[1..].split_at(public.len() / 2);
            let crv = if x.len() == 32 { "P-256" } else { "P-384" };
            let jwk = json!({"kty": "EC", "crv": crv, "kid": kid, "x": b64(x), "y": b64(y)});
            (EncodingKey::from_ec_der(&pair.serialize_der()), jwk)
        }
    }

    /// The RSA test key pair committed under tests/fixtures (its JWK says `alg: RS256`).
    fn rsa() -> (EncodingKey, Value) {
        let pem = include_str!("../../tests/fixtures/rsa-2048-test-key.pem");
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(body)
            .unwrap();
        let jwk = include_str!("../../tests/fixtures/rsa-2048-test-key.jwk.json");
        (
            EncodingKey::from_rsa_der(&der),
            serde_json::from_str(jwk).unwrap(),
        )
    }

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn sign(key: &EncodingKey, alg: Algorithm, kid: Option<&str>, claims: Value) -> String {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_string);
        jsonwebtoken::encode(&header, &claims, key).unwrap()
    }

    fn user() -> Value {
        json!({"role": "authenticated", "sub": "user-1", "exp": now() + 60})
    }

    fn keys_with(jwks: Vec<Value>) -> JwtKeys {
        let set = JwkKeySet::from_json(&json!({ "keys": jwks }).to_string()).unwrap();
        JwtKeys::new(b"unit-test-secret-unit-test-secret").with_jwks(set)
    }

    fn refused(keys: &JwtKeys, token: &str) -> String {
        match keys.verify(token) {
            Err(AuthError::InvalidToken(message)) => message,
            other => panic!("expected InvalidToken, got {other:?}"),
        }
    }

    fn load_error(jwks: Value) -> String {
        format!("{:#}", JwkKeySet::from_json(&jwks.to_string()).unwrap_err())
    }

    #[test]
    fn tokens_of_each_key_type_verify() {
        let (es256, es256_jwk) = generate(&rcgen::PKCS_ECDSA_P256_SHA256, "p256");
        let (es384, es384_jwk) = generate(&rcgen::PKCS_ECDSA_P384_SHA384, "p384");
        let (ed, ed_jwk) = generate(&rcgen::PKCS_ED25519, "ed");
        let (rs, rs_jwk) = rsa();
        let keys = keys_with(vec![es256_jwk, es384_jwk, ed_jwk, rs_jwk]);
        for (key, alg, kid) in [
            (&es256, Algorithm::ES256, "p256"),
            (&es384, Algorithm::ES384, "p384"),
            (&ed, Algorithm::EdDSA, "ed"),
            (&rs, Algorithm::RS256, "test-rsa"),
        ] {
            for kid in [Some(kid), None] {
                let claims = keys.verify(&sign(key, alg, kid, user())).unwrap();
                assert_eq!(claims["sub"], "user-1", "{alg:?} {kid:?}");
            }
        }
    }

    #[test]
    fn the_kid_must_be_known_and_fit_the_algorithm() {
        let (es256, jwk) = generate(&rcgen::PKCS_ECDSA_P256_SHA256, "p256");
        let keys = keys_with(vec![jwk]);
        let token = sign(&es256, Algorithm::ES256, Some("other"), user());
        assert_eq!(refused(&keys, &token), "unknown kid 'other'");

        // An ES384 token naming the P-256 key is never checked against it.
        let (es384, _) = generate(&rcgen::PKCS_ECDSA_P384_SHA384, "p384");
        let token = sign(&es384, Algorithm::ES384, Some("p256"), user());
        assert!(refused(&keys, &token).contains("not allowed for key 'p256'"));
        let token = sign(&es384, Algorithm::ES384, None, user());
        assert!(refused(&keys, &token).contains("no --jwt-jwks key"));
    }

    #[test]
    fn the_keys_own_alg_restricts_it() {
        // The fixture's JWK says RS256: a PS256 token signed with the same key is refused.
        let (rs, jwk) = rsa();
        let keys = keys_with(vec![jwk.clone()]);
        let token = sign(&rs, Algorithm::PS256, Some("test-rsa"), user());
        assert!(refused(&keys, &token).contains("not allowed for key 'test-rsa'"));
        // Without `alg`, an RSA key verifies every RSA algorithm.
        let mut open = jwk;
        open.as_object_mut().unwrap().remove("alg");
        let keys = keys_with(vec![open]);
        for alg in [Algorithm::PS256, Algorithm::RS512] {
            keys.verify(&sign(&rs, alg, Some("test-rsa"), user()))
                .unwrap();
        }
    }

    #[test]
    fn another_key_does_not_verify() {
        let (_, jwk) = generate(&rcgen::PKCS_ECDSA_P256_SHA256, "p256");
        let (intruder, _) = generate(&rcgen::PKCS_ECDSA_P256_SHA256, "p256");
        let keys = keys_with(vec![jwk]);
        for kid in [Some("p256"), None] {
            let token = sign(&intruder, Algorithm::ES256, kid, user());
            assert_eq!(refused(&keys, &token), "signature does not match");
        }
    }

    #[test]
    fn without_kid_the_fitting_keys_are_tried() {
        let (_, first) = generate(&rcgen::PKCS_ECDSA_P256_SHA256, "a");
        let (_, ed) = generate(&rcgen::PKCS_ED25519, "b");
        let (second_key, second) = generate(&rcgen::PKCS_ECDSA_P256_SHA256, "c");
        let keys = keys_with(vec![first, ed, second]);
        let token = sign(&second_key, Algorithm::ES256, None, user());
        assert_eq!(keys.verify(&token).unwrap()["sub"], "user-1");
    }

    #[test]
    fn time_claims_are_honoured() {
        let (es256, jwk) = generate(&rcgen::PKCS_ECDSA_P256_SHA256, "p256");
        let keys = keys_with(vec![jwk]);
        let expired = json!({"role": "authenticated", "exp": now() - 60});
        let token = sign(&es256, Algorithm::ES256, Some("p256"), expired);
        assert_eq!(refused(&keys, &token), "token has expired");
        let early = json!({"role": "authenticated", "nbf": now() + 60});
        let token = sign(&es256, Algorithm::ES256, Some("p256"), early);
        assert!(refused(&keys, &token).contains("not valid yet"));
        // Within the leeway, as for HS256.
        let recent = json!({"role": "authenticated", "exp": now() - 2});
        keys.verify(&sign(&es256, Algorithm::ES256, Some("p256"), recent))
            .unwrap();
    }

    #[test]
    fn no_algorithm_confusion() {
        let (_, jwk) = generate(&rcgen::PKCS_ECDSA_P256_SHA256, "p256");
        let keys = keys_with(vec![jwk.clone()]);
        // HS256 "signed" with the public key, in every form an attacker might try.
        let x = jwk["x"].as_str().unwrap();
        let y = jwk["y"].as_str().unwrap();
        for secret in [jwk.to_string(), format!("{x}{y}"), x.to_string()] {
            let forged = jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &user(),
                &EncodingKey::from_secret(secret.as_bytes()),
            )
            .unwrap();
            assert_eq!(refused(&keys, &forged), "signature does not match");
        }
        // alg none, and an HMAC variant the server does not take.
        let b = |v: Value| b64(v.to_string().as_bytes());
        let none = format!(
            "{}.{}.",
            b(json!({"alg": "none", "kid": "p256"})),
            b(user())
        );
        assert_eq!(
            refused(&keys, &none),
            "algorithm 'none' not allowed (only HS256, ES256)"
        );
        let hs512 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &user(),
            &EncodingKey::from_secret(b"unit-test-secret-unit-test-secret"),
        )
        .unwrap();
        assert!(refused(&keys, &hs512).contains("'HS512' not allowed"));
    }

    #[test]
    fn hs256_keeps_working_and_own_tokens_never_use_the_jwks() {
        let (es256, jwk) = generate(&rcgen::PKCS_ECDSA_P256_SHA256, "p256");
        let keys = keys_with(vec![jwk]);
        let own = keys.mint("service_role", None, None, Map::new()).unwrap();
        assert_eq!(keys.verify(&own).unwrap()["role"], "service_role");
        assert_eq!(keys.verify_own(&own).unwrap()["role"], "service_role");
        // A JWKS token is a request credential, never one of the server's own (signed URLs).
        let token = sign(&es256, Algorithm::ES256, Some("p256"), user());
        keys.verify(&token).unwrap();
        assert!(matches!(
            keys.verify_own(&token),
            Err(AuthError::InvalidToken(m)) if m.contains("only HS256")
        ));
    }

    #[test]
    fn an_asymmetric_token_without_a_jwks_is_refused() {
        let (es256, _) = generate(&rcgen::PKCS_ECDSA_P256_SHA256, "p256");
        let keys = JwtKeys::new(b"unit-test-secret-unit-test-secret");
        let token = sign(&es256, Algorithm::ES256, Some("p256"), user());
        assert_eq!(
            refused(&keys, &token),
            "algorithm 'ES256' not allowed (only HS256)"
        );
    }

    #[test]
    fn keys_not_for_signatures_are_skipped() {
        let (_, jwk) = generate(&rcgen::PKCS_ECDSA_P256_SHA256, "p256");
        let mut enc = jwk.clone();
        enc["use"] = "enc".into();
        let mut wrap = jwk.clone();
        wrap["key_ops"] = json!(["wrapKey"]);
        // Skipped even when they could not be used at all.
        let odd = json!({"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB"});
        let set = JwkKeySet::from_json(&json!({"keys": [enc, odd, wrap, jwk]}).to_string());
        assert_eq!(set.unwrap().keys.len(), 1);
        assert!(load_error(json!({"keys": []})).contains("no signing keys"));
    }

    #[test]
    fn a_bad_jwks_fails_to_load_naming_the_key() {
        let (_, p256) = generate(&rcgen::PKCS_ECDSA_P256_SHA256, "p256");
        let (_, ed) = generate(&rcgen::PKCS_ED25519, "ed");
        let with = |bad: Value| json!({"keys": [p256.clone(), bad]});
        let mut cases = vec![
            (json!({"kty": "oct", "k": "c2VjcmV0"}), "symmetric"),
            (
                json!({"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"}),
                "curve",
            ),
            (
                json!({"kty": "OKP", "crv": "X25519", "x": "AA"}),
                "key type",
            ),
            (json!({"kty": "XYZ"}), "unsupported key type \"XYZ\""),
            (
                json!({"kty": "EC", "crv": "P-256", "x": "!!", "y": "AA"}),
                "base64url",
            ),
            (
                json!({"kty": "RSA", "n": b64(&[0xff; 128]), "e": "AQAB"}),
                "1024 bits",
            ),
            (
                json!({"kty": "RSA", "alg": "RSA-OAEP", "n": "AA", "e": "AQAB"}),
                "\"alg\"",
            ),
            (json!("a string"), "not a JSON object"),
        ];
        // A point off the curve.
        let mut off = p256.clone();
        off["y"] = b64(&[7; 32]).into();
        cases.push((off, "not a valid point"));
        // Short coordinates, a key `alg` that does not fit its type, an HMAC `alg`.
        let mut short = p256.clone();
        short["x"] = b64(&[7; 31]).into();
        cases.push((short, "not 32 bytes"));
        let mut misfit = ed.clone();
        misfit["alg"] = "ES256".into();
        cases.push((misfit, "does not fit"));
        let mut hmac = p256.clone();
        hmac["alg"] = "HS256".into();
        cases.push((hmac, "unsupported \"alg\""));
        for (bad, why) in cases {
            let kid = bad.get("kid").and_then(Value::as_str).map(str::to_string);
            let message = load_error(with(bad.clone()));
            let key = match kid {
                Some(kid) => format!("key 1 (kid '{kid}')"),
                None => "key 1".to_string(),
            };
            assert!(message.starts_with(&key), "{bad}: {message}");
            assert!(
                message.contains(why),
                "{bad}: expected {why:?} in {message:?}"
            );
            assert!(!message.contains('\n'), "{message}");
        }
        assert!(load_error(json!({"kids": []})).contains("\"keys\" array"));
        assert!(format!("{:#}", JwkKeySet::from_json("{").unwrap_err()).contains("not valid JSON"));
    }

    #[test]
    fn load_takes_inline_json_or_a_file() {
        let (_, jwk) = generate(&rcgen::PKCS_ECDSA_P256_SHA256, "p256");
        let text = json!({ "keys": [jwk] }).to_string();
        assert_eq!(JwkKeySet::load(&format!("  {text}")).unwrap().keys.len(), 1);
        let path = std::env::temp_dir().join(format!("jwks-{}.json", uuid::Uuid::new_v4()));
        std::fs::write(&path, &text).unwrap();
        let loaded = JwkKeySet::load(path.to_str().unwrap());
        std::fs::remove_file(&path).unwrap();
        assert_eq!(loaded.unwrap().keys.len(), 1);
        let missing = JwkKeySet::load("/nonexistent/jwks.json").unwrap_err();
        assert!(format!("{missing:#}").contains("--jwt-jwks: reading /nonexistent/jwks.json"));
    }
}
