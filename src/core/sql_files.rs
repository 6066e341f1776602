//! What the server publishes in the database for `storage.get_file` (migration 0014,
//! docs/postgrest.md): the key the database signs download URLs with, the URL they point to, how
//! long they live, and the largest object returned from the database itself.
//!
//! Written at every start, so that a server started with a new secret replaces the old one at
//! once: URLs signed in the database with the old key then stop working, like the server's own.

use std::time::Duration;

use super::{Error, Storage};

/// The row of `storage.sql_file_settings`.
#[derive(Debug, Clone)]
pub struct SqlFileSettings {
    /// The HS256 key the database signs with: `JwtKeys::database_signing_key`, derived from the
    /// server's secret (never the secret itself, which mints API keys).
    pub secret: Vec<u8>,
    /// Where clients reach this server (e.g. `https://files.example.com` or
    /// `https://project.example.com/storage/v1`): signed URLs are this plus `/object/sign/...`.
    pub public_url: String,
    /// How long a URL signed in the database stays valid.
    pub url_lifetime: Duration,
    /// The largest object `get_file` returns from the database (the postgres store).
    pub max_inline_size: u64,
}

/// One row, replaced whole: there is one key at a time.
const PUBLISH: &str = "insert into storage.sql_file_settings \
         (id, algorithm, secret, public_url, url_lifetime_seconds, max_inline_size, updated_at) \
     values (true, 'HS256', $1, $2, $3, $4, now()) \
     on conflict (id) do update set algorithm = excluded.algorithm, secret = excluded.secret, \
         public_url = excluded.public_url, url_lifetime_seconds = excluded.url_lifetime_seconds, \
         max_inline_size = excluded.max_inline_size, updated_at = excluded.updated_at";

impl Storage {
    /// Writes `settings` for the database's signer (with the privileged connection: no API
    /// role can read or write them).
    pub async fn publish_sql_file_settings(&self, settings: &SqlFileSettings) -> Result<(), Error> {
        let lifetime = i32::try_from(settings.url_lifetime.as_secs().max(1)).map_err(|_| {
            Error::InvalidInput("the signed URL lifetime is too long for the database".into())
        })?;
        let max_inline = i64::try_from(settings.max_inline_size).unwrap_or(i64::MAX);
        let conn = self.db.admin().await?;
        conn.execute(
            PUBLISH,
            &[
                &settings.secret,
                &settings.public_url.trim_end_matches('/'),
                &lifetime,
                &max_inline,
            ],
        )
        .await
        .map_err(|e| Error::from(crate::db::DbError::from(e)))?;
        Ok(())
    }
}
