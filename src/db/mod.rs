//! The database: connection pools, the per-request transaction, migrations and the embedded
//! cluster.
//!
//! Two pools: `request` connects as a NOINHERIT login role that can read nothing until a
//! transaction switches it to an API role; `admin` is privileged and used only for migrations and
//! the server's own maintenance (garbage collection, bucket limits).

pub mod embedded;
pub mod migrate;
mod tx;

use std::time::Duration;

use anyhow::Context;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

pub use tx::{Tx, TxSettings};

/// Both connection pools of one server process.
#[derive(Clone)]
pub struct Database {
    request: Pool,
    admin: Pool,
}

impl Database {
    pub fn new(
        admin: tokio_postgres::Config,
        request: tokio_postgres::Config,
        size: usize,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            request: pool(request, size)?,
            admin: pool(admin, size.div_ceil(4).max(2))?,
        })
    }

    /// Starts a transaction for a request: role, claims and operation are set, transaction-local,
    /// before anything else runs on it.
    pub async fn begin(&self, settings: &TxSettings<'_>) -> Result<Tx, DbError> {
        let conn = self.request.get().await.map_err(pool_error)?;
        Ok(Tx::begin(conn, settings).await?)
    }

    /// A read-only repeatable-read transaction as the privileged role: everything it reads
    /// comes from one snapshot, even while other transactions commit.
    pub async fn snapshot(&self) -> Result<Tx, DbError> {
        let conn = self.admin.get().await.map_err(pool_error)?;
        Ok(Tx::begin_privileged(conn, "begin isolation level repeatable read read only").await?)
    }

    /// A read-write transaction as the privileged role.
    pub async fn admin_tx(&self) -> Result<Tx, DbError> {
        let conn = self.admin.get().await.map_err(pool_error)?;
        Ok(Tx::begin_privileged(conn, "begin").await?)
    }

    /// A connection as the privileged role, for the server's own bookkeeping. Never used with
    /// anything a client controls beyond bound parameters.
    pub async fn admin(&self) -> Result<deadpool_postgres::Object, DbError> {
        self.admin.get().await.map_err(pool_error)
    }

    /// Checks that the database answers (for `/health`).
    pub async fn ping(&self) -> Result<(), DbError> {
        let conn = self.request.get().await.map_err(pool_error)?;
        conn.simple_query("select 1").await?;
        Ok(())
    }
}

fn pool(config: tokio_postgres::Config, size: usize) -> anyhow::Result<Pool> {
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            // Every request's settings are transaction-local and an unfinished transaction is
            // rolled back before its connection is reused (see `Tx`), so nothing leaks between
            // requests and no extra round trip is needed at checkout.
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        .wait_timeout(Some(Duration::from_secs(30)))
        .create_timeout(Some(Duration::from_secs(10)))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .context("building the connection pool")
}

/// A database failure: the pool could not hand out a connection, or PostgreSQL answered with an
/// error (whose SQLSTATE the core maps to a client error where one fits).
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Postgres(#[from] tokio_postgres::Error),
}

impl DbError {
    /// The SQLSTATE of an error PostgreSQL reported, if it was one.
    pub fn code(&self) -> Option<&tokio_postgres::error::SqlState> {
        match self {
            DbError::Postgres(e) => e.code(),
            DbError::Unavailable(_) => None,
        }
    }

    /// The server's error report (message, constraint, table), if PostgreSQL sent one.
    pub fn db_error(&self) -> Option<&tokio_postgres::error::DbError> {
        match self {
            DbError::Postgres(e) => e.as_db_error(),
            DbError::Unavailable(_) => None,
        }
    }
}

fn pool_error(error: deadpool_postgres::PoolError) -> DbError {
    match error {
        deadpool_postgres::PoolError::Backend(e) => DbError::Postgres(e),
        other => DbError::Unavailable(other.to_string()),
    }
}

/// Parses a libpq-style URL or key/value string.
pub fn parse_config(url: &str) -> anyhow::Result<tokio_postgres::Config> {
    url.parse::<tokio_postgres::Config>()
        .map_err(|e| anyhow::anyhow!("invalid database URL: {e}"))
}

/// Connects once, outside any pool (migrations, bootstrap).
pub async fn connect(config: &tokio_postgres::Config) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = config
        .connect(NoTls)
        .await
        .context("connecting to PostgreSQL")?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "database connection closed");
        }
    });
    Ok(client)
}
