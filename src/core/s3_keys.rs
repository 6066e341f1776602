//! S3 access keys kept in the database (`storage.s3_keys`, migration 0013): each bound to a
//! role and claims, so a request signed with one runs under RLS like a JWT with those claims.
//! The table is the server's own: these statements run with the server's privileged role, and
//! the secret is stored sealed (see [`crate::auth::sealed`]).

use base64::Engine;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::{Error, Storage};
use crate::auth::Identity;
use crate::auth::sealed::Sealer;
use crate::db::Database;

/// A key as listed (never with its secret).
#[derive(Debug, Clone)]
pub struct S3KeyInfo {
    pub access_key_id: String,
    pub role: String,
    pub claims: Map<String, Value>,
    pub description: Option<String>,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A new key: its secret is shown once, at creation.
#[derive(Debug, Clone)]
pub struct NewS3Key {
    pub access_key_id: String,
    pub secret_access_key: String,
}

/// What a live key resolves to.
#[derive(Debug, Clone)]
pub struct S3KeyGrant {
    pub secret_access_key: String,
    pub identity: Identity,
}

/// An id in the shape AWS tools expect (20 upper-case alphanumerics), marked as ours.
fn new_access_key_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut raw = [0u8; 16];
    rand::fill(&mut raw);
    let tail: String = raw
        .iter()
        .map(|b| ALPHABET[(*b as usize) % ALPHABET.len()] as char)
        .collect();
    format!("PGSK{tail}")
}

/// 40 characters, like an AWS secret key (240 random bits).
fn new_secret() -> String {
    let mut raw = [0u8; 30];
    rand::fill(&mut raw);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

/// Creates a key bound to `role` and `claims` (the `role` claim is set to `role`).
pub async fn create(
    db: &Database,
    sealer: &Sealer,
    role: &str,
    mut claims: Map<String, Value>,
    description: Option<&str>,
) -> Result<NewS3Key, Error> {
    if role.trim().is_empty() {
        return Err(Error::InvalidInput("the role must not be empty".into()));
    }
    claims.insert("role".into(), role.into());
    let access_key_id = new_access_key_id();
    let secret = new_secret();
    let sealed = sealer
        .seal(secret.as_bytes(), access_key_id.as_bytes())
        .map_err(Error::Internal)?;
    let conn = db.admin().await?;
    conn.execute(
        "insert into storage.s3_keys (access_key_id, secret_sealed, role, claims, description) \
             values ($1, $2, $3, $4, $5)",
        &[
            &access_key_id,
            &sealed,
            &role,
            &Value::Object(claims),
            &description,
        ],
    )
    .await?;
    Ok(NewS3Key {
        access_key_id,
        secret_access_key: secret,
    })
}

/// Every key, newest first, revoked ones included (marked).
pub async fn list(db: &Database) -> Result<Vec<S3KeyInfo>, Error> {
    let conn = db.admin().await?;
    let rows = conn
        .query(
            "select access_key_id, role, claims, description, created_at, revoked_at \
                 from storage.s3_keys order by created_at desc, access_key_id",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| S3KeyInfo {
            access_key_id: row.get(0),
            role: row.get(1),
            claims: match row.get::<_, Value>(2) {
                Value::Object(map) => map,
                _ => Map::new(),
            },
            description: row.get(3),
            created_at: row.get(4),
            revoked_at: row.get(5),
        })
        .collect())
}

/// Revokes a key at once; `false` when no live key has that id.
pub async fn revoke(db: &Database, access_key_id: &str) -> Result<bool, Error> {
    let conn = db.admin().await?;
    let revoked = conn
        .execute(
            "update storage.s3_keys set revoked_at = now() \
                 where access_key_id = $1 and revoked_at is null",
            &[&access_key_id],
        )
        .await?;
    Ok(revoked > 0)
}

impl Storage {
    /// The secret and identity of a live key; `None` for an unknown or revoked id, or one whose
    /// secret this server cannot open (sealed under another configuration).
    pub async fn s3_key(
        &self,
        sealer: &Sealer,
        access_key_id: &str,
    ) -> Result<Option<S3KeyGrant>, Error> {
        let conn = self.db.admin().await?;
        let statement = conn
            .prepare_cached(
                "select secret_sealed, role, claims from storage.s3_keys \
                 where access_key_id = $1 and revoked_at is null",
            )
            .await?;
        let Some(row) = conn.query_opt(&statement, &[&access_key_id]).await? else {
            return Ok(None);
        };
        let sealed: Vec<u8> = row.get(0);
        let Some(secret) = sealer
            .open(&sealed, access_key_id.as_bytes())
            .and_then(|plain| String::from_utf8(plain).ok())
        else {
            tracing::warn!(
                access_key_id,
                "an S3 key's secret does not open with this server's key; was the sealing secret changed?"
            );
            return Ok(None);
        };
        let claims = match row.get::<_, Value>(2) {
            Value::Object(map) => map,
            _ => Map::new(),
        };
        Ok(Some(S3KeyGrant {
            secret_access_key: secret,
            identity: Identity {
                role: row.get(1),
                claims,
            },
        }))
    }
}
