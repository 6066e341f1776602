//! The storage core: the one place that coordinates rows and bytes. It runs every statement in a
//! transaction switched to the caller's identity, so Row Level Security decides every access.
//! It knows nothing of HTTP: fronts hand it a [`Caller`] and get typed results or an [`Error`].

pub mod buckets;
mod error;
pub mod gc;
pub mod listing;
pub mod md5;
pub mod media_type;
mod meter;
pub mod multipart;
pub mod names;
pub mod objects;
mod operation;
pub mod policy;
pub mod refusal;
pub mod renditions;
pub mod s3_keys;
pub mod signed_writes;
pub mod signing;
mod small_objects;
pub mod sql_files;

use std::sync::Arc;
use std::time::Duration;

pub use error::Error;
pub use meter::{DigestKind, ExpectedDigests, LateSha256, Measured};
pub use operation::Operation;

use crate::auth::Identity;
use crate::bytes::ByteStore;
use crate::db::{Database, Tx, TxSettings};

/// Who is asking, and the request facts that policies may read (`request.method`,
/// `request.path`, `request.headers`).
#[derive(Debug, Clone)]
pub struct Caller {
    pub identity: Identity,
    pub method: String,
    pub path: String,
    /// Request headers as a JSON object, credentials left out.
    pub headers: String,
}

impl Caller {
    /// A caller with no request facts (the CLI, tests, internal work).
    pub fn new(identity: Identity) -> Self {
        Self {
            identity,
            method: String::new(),
            path: String::new(),
            headers: "{}".into(),
        }
    }

    /// `owner_id` for rows this caller creates: the JWT's `sub`, never a client-sent value.
    pub fn owner(&self) -> Option<String> {
        self.identity.sub()
    }
}

/// Limits the core enforces on its own.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest object accepted, whatever a bucket says.
    pub max_file_size: u64,
    /// How long a staged upload's bytes are safe from the collector without renewal. The
    /// uploader renews it while bytes flow; if the server dies, the bytes are collected once it
    /// has run out.
    pub upload_lease: Duration,
    /// Longest pause between two pieces of an upload's body. A client that stops sending would
    /// otherwise hold its staged key, and with the postgres store a transaction, forever.
    pub body_idle_timeout: Duration,
    /// Smallest size of every part of a multipart upload but the last, checked at completion
    /// (S3: 5 MiB). A front with other rules passes its own minimum to
    /// [`Storage::complete_multipart_with`].
    pub multipart_min_part_size: u64,
    /// How long a multipart or resumable upload may go without a new part before the collector
    /// removes it with its parts.
    pub multipart_expiry: Duration,
    /// Least rate, in bytes per second, at which an upload's body must arrive, averaged over
    /// every [`Limits::body_rate_window`] spent waiting for it (0: no minimum). Without it, a
    /// client sending one byte just inside the idle limit keeps an upload open for ever.
    pub min_body_rate: u64,
    pub body_rate_window: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_file_size: 50 * 1000 * 1000 * 1000,
            upload_lease: Duration::from_secs(60),
            body_idle_timeout: Duration::from_secs(30),
            multipart_min_part_size: 5 * 1024 * 1024,
            multipart_expiry: Duration::from_secs(24 * 3600),
            min_body_rate: 1000,
            body_rate_window: Duration::from_secs(30),
        }
    }
}

impl Limits {
    /// How an upload's body must keep flowing.
    pub(crate) fn pace(&self) -> meter::Pace {
        meter::Pace {
            idle: self.body_idle_timeout,
            min_rate: self.min_body_rate,
            window: self.body_rate_window,
        }
    }
}

/// The storage core. Cheap to clone; one per server process.
#[derive(Clone)]
pub struct Storage {
    db: Database,
    bytes: Arc<dyn ByteStore>,
    limits: Arc<Limits>,
    small_objects: Option<Arc<small_objects::SmallObjects>>,
}

impl Storage {
    pub fn new(db: Database, bytes: Arc<dyn ByteStore>, limits: Limits) -> Self {
        Self {
            db,
            bytes,
            limits: Arc::new(limits),
            small_objects: None,
        }
    }

    /// Keeps the bytes of small objects read in memory, up to `budget` bytes (0: none); see
    /// [`small_objects`].
    pub fn with_small_object_cache(mut self, budget: u64) -> Self {
        self.small_objects =
            (budget > 0).then(|| Arc::new(small_objects::SmallObjects::new(budget)));
        self
    }

    /// The same core (database, byte store, caches) with other limits.
    pub fn with_limits(&self, limits: Limits) -> Self {
        Self {
            limits: Arc::new(limits),
            ..self.clone()
        }
    }

    pub fn byte_store(&self) -> &Arc<dyn ByteStore> {
        &self.bytes
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Begins a transaction as `caller`, for `operation`.
    pub async fn begin(&self, caller: &Caller, operation: Operation) -> Result<Tx, Error> {
        self.begin_with(caller, operation, false).await
    }

    /// Like [`Storage::begin`], and lets the transaction pass the `protect_delete` trigger (RLS
    /// still decides which rows may go).
    pub(crate) async fn begin_deleting(
        &self,
        caller: &Caller,
        operation: Operation,
    ) -> Result<Tx, Error> {
        self.begin_with(caller, operation, true).await
    }

    /// Like [`Storage::begin`], for a transaction that stays open while the client sends a
    /// body: it waits for one of the connections uploads may hold, so that slow uploads never
    /// take the connections everything else needs (see [`Database::begin_upload`]).
    pub(crate) async fn begin_upload(
        &self,
        caller: &Caller,
        operation: Operation,
    ) -> Result<Tx, Error> {
        refusal::record(caller, operation);
        let (claims, sub) = identity_settings(caller);
        let settings = tx_settings(caller, operation, &claims, &sub, false);
        Ok(self.db.begin_upload(&settings).await?)
    }

    /// Runs `statements` as the caller in one transaction begun and committed in the same round
    /// trip (see [`Database::once`]).
    pub(crate) async fn once(
        &self,
        caller: &Caller,
        operation: Operation,
        statements: &[(&str, &[&(dyn tokio_postgres::types::ToSql + Sync)])],
    ) -> Result<Vec<Vec<tokio_postgres::Row>>, crate::db::DbError> {
        refusal::record(caller, operation);
        let (claims, sub) = identity_settings(caller);
        let settings = tx_settings(caller, operation, &claims, &sub, false);
        self.db.once(&settings, statements).await
    }

    async fn begin_with(
        &self,
        caller: &Caller,
        operation: Operation,
        allow_delete: bool,
    ) -> Result<Tx, Error> {
        refusal::record(caller, operation);
        let (claims, sub) = identity_settings(caller);
        let settings = tx_settings(caller, operation, &claims, &sub, allow_delete);
        Ok(self.db.begin(&settings).await?)
    }
}

/// The caller's claims (as JSON) and `sub`, as a transaction's settings carry them.
fn identity_settings(caller: &Caller) -> (String, String) {
    let claims = serde_json::Value::Object(caller.identity.claims.clone()).to_string();
    (claims, caller.identity.sub().unwrap_or_default())
}

fn tx_settings<'a>(
    caller: &'a Caller,
    operation: Operation,
    claims: &'a str,
    sub: &'a str,
    allow_delete: bool,
) -> TxSettings<'a> {
    TxSettings {
        role: &caller.identity.role,
        claims,
        sub,
        operation: operation.as_str(),
        method: &caller.method,
        path: &caller.path,
        headers: &caller.headers,
        allow_delete,
    }
}
