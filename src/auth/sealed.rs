//! Secrets the server must read back (S3 secret keys: SigV4 verifies with the secret itself),
//! sealed at rest with AES-256-GCM under a key derived from the server's configuration.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hmac;

/// Seals and opens secrets. Cheap to clone.
#[derive(Clone)]
pub struct Sealer {
    key: std::sync::Arc<LessSafeKey>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

/// Binds derived keys to this use, so the same configured secret never keys two mechanisms.
const CONTEXT: &[u8] = b"pgstorage s3 secret sealing v1";

impl Sealer {
    /// A sealer whose key is HMAC-SHA256(`secret`, context): the configured secret itself is
    /// never used as the cipher key.
    pub fn derive(secret: &[u8]) -> Self {
        let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), CONTEXT);
        // 32 bytes is exactly AES-256's key length, so this cannot fail.
        let unbound = UnboundKey::new(&AES_256_GCM, tag.as_ref())
            .unwrap_or_else(|_| unreachable!("an HMAC-SHA256 tag is a valid AES-256 key"));
        Self {
            key: std::sync::Arc::new(LessSafeKey::new(unbound)),
        }
    }

    /// `nonce || ciphertext || tag`, with a fresh random nonce; `aad` (the access key id) binds
    /// the sealed secret to its row, so a sealed value copied onto another key does not open.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> anyhow::Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::fill(&mut nonce);
        let mut data = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut data,
            )
            .map_err(|_| anyhow::anyhow!("sealing failed"))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        Ok(out)
    }

    /// The plaintext, or `None` when `sealed` was not sealed by this key for `aad`.
    pub fn open(&self, sealed: &[u8], aad: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < NONCE_LEN {
            return None;
        }
        let (nonce, data) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut data = data.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(aad), &mut data)
            .ok()?;
        Some(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_tamper() {
        let sealer = Sealer::derive(b"some configured secret, long enough");
        let sealed = sealer.seal(b"the secret", b"AKID").unwrap();
        assert_eq!(sealer.open(&sealed, b"AKID").unwrap(), b"the secret");
        assert!(sealer.open(&sealed, b"OTHER").is_none());
        let other = Sealer::derive(b"another configured secret, long enough");
        assert!(other.open(&sealed, b"AKID").is_none());
        let mut flipped = sealed.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(sealer.open(&flipped, b"AKID").is_none());
        assert_ne!(sealer.seal(b"the secret", b"AKID").unwrap(), sealed);
    }
}
