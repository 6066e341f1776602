//! The database: connection pools, the per-request transaction, migrations and the embedded
//! cluster.
//!
//! Two pools: `request` connects as a NOINHERIT login role that can read nothing until a
//! transaction switches it to an API role; `admin` is privileged and used only for migrations and
//! the server's own maintenance (garbage collection, bucket limits).
//!
//! Transactions that stay open while a client sends (an upload streaming into the postgres
//! store) draw on a bounded share of the request pool, so that however many clients trickle,
//! the rest of the pool keeps serving everything else.
//!
//! Every connection, pooled or not, goes through [`DbConfig`]: tokio-postgres's settings plus
//! the TLS settings it does not know (see [`tls`] for libpq's `sslmode` and `sslrootcert`).

pub mod embedded;
pub mod migrate;
pub mod tls;
mod tx;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio::sync::Semaphore;
use tokio_postgres::config::Host;

pub use tls::{RootCerts, SslMode, TlsSettings};
pub use tx::{SET_IDENTITY, Tx, TxSettings};

/// How to reach PostgreSQL: tokio-postgres's settings and the TLS settings it does not know.
/// A plain [`tokio_postgres::Config`] converts into one with its own `sslmode` and no
/// certificate check.
#[derive(Debug, Clone)]
pub struct DbConfig {
    postgres: tokio_postgres::Config,
    tls: TlsSettings,
}

impl DbConfig {
    /// Keeps `postgres`'s own `sslmode` in step with `tls` (and off for Unix sockets, which
    /// PostgreSQL never encrypts: libpq ignores `sslmode` there too).
    pub fn new(mut postgres: tokio_postgres::Config, tls: TlsSettings) -> Self {
        let only_sockets = !postgres.get_hosts().is_empty()
            && postgres
                .get_hosts()
                .iter()
                .all(|host| matches!(host, Host::Unix(_)));
        if only_sockets {
            postgres.ssl_mode(tokio_postgres::config::SslMode::Disable);
        } else {
            postgres.ssl_mode(tls.postgres_mode());
        }
        Self { postgres, tls }
    }

    pub fn postgres(&self) -> &tokio_postgres::Config {
        &self.postgres
    }

    pub fn tls(&self) -> &TlsSettings {
        &self.tls
    }

    pub fn get_user(&self) -> Option<&str> {
        self.postgres.get_user()
    }
}

impl From<tokio_postgres::Config> for DbConfig {
    fn from(postgres: tokio_postgres::Config) -> Self {
        let mode = match postgres.get_ssl_mode() {
            tokio_postgres::config::SslMode::Disable => SslMode::Disable,
            tokio_postgres::config::SslMode::Require => SslMode::Require,
            _ => SslMode::Prefer,
        };
        let tls = TlsSettings {
            mode,
            ..TlsSettings::default()
        };
        Self::new(postgres, tls)
    }
}

impl From<&tokio_postgres::Config> for DbConfig {
    fn from(postgres: &tokio_postgres::Config) -> Self {
        postgres.clone().into()
    }
}

impl From<&DbConfig> for DbConfig {
    fn from(config: &DbConfig) -> Self {
        config.clone()
    }
}

/// Both connection pools of one server process.
#[derive(Clone)]
pub struct Database {
    request: Pool,
    admin: Pool,
    /// One permit per request connection that uploads may hold at once.
    uploads: Arc<Semaphore>,
    upload_connections: usize,
}

/// Longest wait for one of the connections uploads may use, as for any pooled connection.
const WAIT_TIMEOUT: Duration = Duration::from_secs(30);

impl Database {
    /// Pools of `size` request connections (half of which uploads may hold at once: see
    /// [`Database::with_upload_connections`]) and a quarter as many privileged ones.
    pub fn new(
        admin: impl Into<DbConfig>,
        request: impl Into<DbConfig>,
        size: usize,
    ) -> anyhow::Result<Self> {
        let upload_connections = upload_share(size, size / 2);
        Ok(Self {
            request: pool(request.into(), size)?,
            admin: pool(admin.into(), size.div_ceil(4).max(2))?,
            uploads: Arc::new(Semaphore::new(upload_connections)),
            upload_connections,
        })
    }

    /// Lets at most `connections` request connections be held by uploads at once (at least
    /// one, and at least one fewer than the pool, so that reads always find a connection).
    pub fn with_upload_connections(mut self, connections: usize) -> Self {
        let size = self.request.status().max_size;
        self.upload_connections = upload_share(size, connections);
        self.uploads = Arc::new(Semaphore::new(self.upload_connections));
        self
    }

    /// How many request connections uploads may hold at once.
    pub fn upload_connections(&self) -> usize {
        self.upload_connections
    }

    /// Starts a transaction for a request: role, claims and operation are set, transaction-local,
    /// before anything else runs on it.
    pub async fn begin(&self, settings: &TxSettings<'_>) -> Result<Tx, DbError> {
        let conn = self.request.get().await.map_err(pool_error)?;
        Ok(Tx::begin(conn, settings).await?)
    }

    /// Runs `statements` in one transaction of the request's identity, begun and committed in
    /// the same round trip (see [`Tx::once`]): what a request whose work is a few statements
    /// known in advance needs, at the cost of one round trip instead of three or more.
    pub async fn once(
        &self,
        settings: &TxSettings<'_>,
        statements: &[(&str, &[&(dyn tokio_postgres::types::ToSql + Sync)])],
    ) -> Result<Vec<Vec<tokio_postgres::Row>>, DbError> {
        let conn = self.request.get().await.map_err(pool_error)?;
        Ok(Tx::once(conn, settings, statements).await?)
    }

    /// Like [`Database::begin`], for a transaction that stays open while a client sends (an
    /// upload into the postgres store): it first waits for one of the connections uploads may
    /// hold, so slow uploads queue among themselves and never take the whole pool.
    pub async fn begin_upload(&self, settings: &TxSettings<'_>) -> Result<Tx, DbError> {
        let slot = tokio::time::timeout(WAIT_TIMEOUT, self.uploads.clone().acquire_owned())
            .await
            .map_err(|_| {
                DbError::Unavailable(format!(
                    "all {} connections that uploads may use are held by uploads in progress; \
                     retry later",
                    self.upload_connections
                ))
            })?
            .map_err(|_| DbError::Unavailable("the server is shutting down".into()))?;
        let conn = self.request.get().await.map_err(pool_error)?;
        let mut tx = Tx::begin(conn, settings).await?;
        tx.hold(slot);
        Ok(tx)
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

    /// The request pool's connections: in use, idle, and requests waiting (for `/metrics`).
    pub fn request_pool_status(&self) -> deadpool_postgres::Status {
        self.request.status()
    }

    /// The privileged pool's connections (for `/metrics`).
    pub fn admin_pool_status(&self) -> deadpool_postgres::Status {
        self.admin.status()
    }

    /// Checks that the database answers (for `/health`).
    pub async fn ping(&self) -> Result<(), DbError> {
        let conn = self.request.get().await.map_err(pool_error)?;
        conn.simple_query("select 1").await?;
        Ok(())
    }
}

/// `wanted` upload connections out of a pool of `size`, within 1..size (1 for a pool of one).
fn upload_share(size: usize, wanted: usize) -> usize {
    wanted.min(size.saturating_sub(1)).max(1)
}

fn pool(config: DbConfig, size: usize) -> anyhow::Result<Pool> {
    let manager = Manager::from_config(
        config.postgres,
        tls::connector(&config.tls)?,
        ManagerConfig {
            // Every request's settings are transaction-local and an unfinished transaction is
            // rolled back before its connection is reused (see `Tx`), so nothing leaks between
            // requests and no extra round trip is needed at checkout.
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size)
        .wait_timeout(Some(WAIT_TIMEOUT))
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

/// Parses a libpq-style URL or key/value string, `sslmode` and `sslrootcert` included (see
/// [`tls`]). A named `sslrootcert` is read here, so a bad one is reported before connecting.
pub fn parse_config(url: &str) -> anyhow::Result<DbConfig> {
    let (rest, tls) = tls::split(url)?;
    let postgres = rest
        .parse::<tokio_postgres::Config>()
        .map_err(|e| anyhow::anyhow!("invalid database URL: {e}"))?;
    tls::connector(&tls)?;
    Ok(DbConfig::new(postgres, tls))
}

/// " at host:port" for messages (nothing for Unix sockets or an empty config).
fn describe_target(config: &tokio_postgres::Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .filter_map(|(i, host)| match host {
            Host::Tcp(name) => {
                let port = config
                    .get_ports()
                    .get(i)
                    .or_else(|| config.get_ports().first())
                    .copied()
                    .unwrap_or(5432);
                Some(format!("{name}:{port}"))
            }
            Host::Unix(_) => None,
        })
        .collect();
    if hosts.is_empty() {
        String::new()
    } else {
        format!(" at {}", hosts.join(","))
    }
}

/// Connects once, outside any pool (migrations, bootstrap).
pub async fn connect(config: impl Into<DbConfig>) -> anyhow::Result<tokio_postgres::Client> {
    let config = config.into();
    let (client, connection) = config
        .postgres
        .connect(tls::connector(&config.tls)?)
        .await
        .map_err(|error| tls::explain(error, &config.tls))
        .with_context(|| {
            format!(
                "connecting to PostgreSQL{}",
                describe_target(&config.postgres)
            )
        })?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "database connection closed");
        }
    });
    Ok(client)
}
