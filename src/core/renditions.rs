//! Cached renditions (resized, re-encoded images) of an object version: bytes in the byte store
//! like any other, tied by a `storage.renditions` row to the object version they were made
//! from, and freed with it (migration 0015).
//!
//! A rendition follows the write protocol of objects: its fresh key is staged in the journal
//! before a byte is written, and `storage.adopt_rendition` turns it into a row only while the
//! object still has that version, and only once per version and variant. Whatever loses (a
//! concurrent first request, an overwrite in between) is released to the collector, so no
//! byte outlives its journal entry. Deleting or overwriting the object releases its renditions
//! in the same transaction (0015's triggers), so a cached rendition is never served for bytes
//! the object no longer has.
//!
//! Nothing here checks policies: callers first read the object row under the caller's
//! policies ([`Storage::object`]) and only then look for its renditions.

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::objects::{ObjectRow, store_error};
use super::{Error, Storage};
use crate::bytes::{ByteStream, StoreError};

/// A cached rendition: where its bytes are and what they are.
#[derive(Debug, Clone)]
pub struct Rendition {
    pub key: String,
    pub content_type: String,
    pub size: u64,
}

const FIND_RENDITION: &str = "select key, content_type, size from storage.renditions \
     where version = $1 and variant = $2";

const ADOPT_RENDITION: &str = "select storage.adopt_rendition($1, $2, $3, $4, $5, $6)";

impl Storage {
    /// The cached rendition `variant` of the object version `row` names, if any.
    pub async fn rendition(
        &self,
        row: &ObjectRow,
        variant: &str,
    ) -> Result<Option<Rendition>, Error> {
        let Some(version) = row.version.as_deref() else {
            return Ok(None);
        };
        let conn = self.db.admin().await?;
        let statement = conn.prepare_cached(FIND_RENDITION).await?;
        let found = conn.query_opt(&statement, &[&version, &variant]).await?;
        Ok(found.map(|r| Rendition {
            key: r.get(0),
            content_type: r.get(1),
            size: u64::try_from(r.get::<_, i64>(2)).unwrap_or(0),
        }))
    }

    /// The bytes of a cached rendition, or None if the collector has freed them since it was
    /// looked up (the object was overwritten or deleted meanwhile: render afresh).
    pub async fn read_rendition(&self, rendition: &Rendition) -> Result<Option<ByteStream>, Error> {
        match self.bytes.get(&rendition.key, None).await {
            Ok(stream) => Ok(Some(stream)),
            Err(StoreError::NotFound(_)) => Ok(None),
            Err(error) => Err(store_error(error)),
        }
    }

    /// Stores `bytes` as the rendition `variant` of the object version `row` names. True when
    /// recorded; false when another request recorded it first or the object has changed since
    /// `row` was read (the bytes just written are then released to the collector).
    pub async fn store_rendition(
        &self,
        row: &ObjectRow,
        variant: &str,
        content_type: &str,
        bytes: Bytes,
    ) -> Result<bool, Error> {
        let Some(version) = row.version.as_deref() else {
            return Ok(false);
        };
        let key = rendition_key(version, variant);
        self.stage(&key).await?;
        let size = bytes.len() as i64;
        let body: ByteStream = Box::pin(futures::stream::once(async move { Ok(bytes) }));
        if let Err(error) = self.stream_into(&key, body).await {
            self.discard_after(&key, &error).await;
            return Err(error);
        }
        let conn = self.db.admin().await?;
        let statement = conn.prepare_cached(ADOPT_RENDITION).await?;
        let adopted: bool = conn
            .query_one(
                &statement,
                &[&key, &row.id, &version, &variant, &content_type, &size],
            )
            .await?
            .get(0);
        Ok(adopted)
    }
}

/// A fresh key whose first part is derived from the object version and the variant (so a
/// store's listing groups a version's renditions) and whose second part is unique, so two
/// requests rendering the same variant at once never write under one key.
fn rendition_key(version: &str, variant: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(version.as_bytes());
    hash.update([0]);
    hash.update(variant.as_bytes());
    format!(
        "{}-r-{}",
        &hex::encode(hash.finalize())[..24],
        crate::bytes::new_key()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_derived_yet_unique_and_store_safe() {
        let a = rendition_key("abc", "w=100|webp");
        let b = rendition_key("abc", "w=100|webp");
        assert_ne!(a, b);
        assert_eq!(a[..24], b[..24]);
        assert_ne!(a[..24], rendition_key("abd", "w=100|webp")[..24]);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-'));
        assert!(!crate::core::multipart::is_manifest(&a));
    }
}
