use deadpool_postgres::Object;
use tokio::sync::OwnedSemaphorePermit;
use tokio_postgres::Row;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;

/// What a request's transaction runs as. Set in one statement at the start of the transaction
/// and transaction-local, so nothing survives into the next use of the pooled connection.
#[derive(Debug)]
pub struct TxSettings<'a> {
    /// The API role (`anon`, `authenticated`, `service_role`, ...), already checked against the
    /// allow-list.
    pub role: &'a str,
    /// All JWT claims as a JSON object (`auth.jwt()`).
    pub claims: &'a str,
    /// The `sub` claim (`auth.uid()`), empty when absent.
    pub sub: &'a str,
    /// The canonical operation name (`storage.operation()`).
    pub operation: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    /// Request headers as a JSON object (credentials left out).
    pub headers: &'a str,
    /// Lets this transaction pass the `protect_delete` trigger. Only the server's own delete
    /// paths set it; RLS still decides which rows the role may delete.
    pub allow_delete: bool,
}

/// The one statement that turns a pooled connection into the request's identity. Public so that
/// `pgstorage bench-sql` can hand pgbench the very statement requests run.
pub const SET_IDENTITY: &str = "select set_config('role', $1, true), \
     set_config('request.jwt.claims', $2, true), \
     set_config('request.jwt.claim.sub', $3, true), \
     set_config('request.jwt.claim.role', $1, true), \
     set_config('storage.operation', $4, true), \
     set_config('request.method', $5, true), \
     set_config('request.path', $6, true), \
     set_config('request.headers', $7, true), \
     set_config('storage.allow_delete', $8, true)";

/// A transaction on a pooled connection, already switched to the request's identity.
///
/// Dropping it without [`Tx::commit`] rolls back before the connection is reused; if the
/// rollback cannot be sent, the connection is discarded instead of returned to the pool.
pub struct Tx {
    conn: Option<Object>,
    /// The share of the pool this transaction draws on, when it is a long one (see
    /// [`super::Database::begin_upload`]); given back once the connection is.
    slot: Option<OwnedSemaphorePermit>,
}

impl Tx {
    pub(super) async fn begin(
        conn: Object,
        settings: &TxSettings<'_>,
    ) -> Result<Self, tokio_postgres::Error> {
        let statement = conn.prepare_cached(SET_IDENTITY).await?;
        let allow_delete = if settings.allow_delete { "true" } else { "" };
        let params = identity_params(settings, &allow_delete);
        let tx = Self {
            conn: Some(conn),
            slot: None,
        };
        let conn = tx.conn();
        // Pipelined: both messages leave in one write, so beginning costs one round trip.
        tokio::try_join!(conn.batch_execute("begin"), conn.query(&statement, &params))?;
        Ok(tx)
    }

    /// Runs `statements` as the request's identity in one transaction of its own, in ONE round
    /// trip: `begin`, the identity, every statement and `commit` leave in one write, and the
    /// answers come back together. Returns the rows of each statement (none for a statement
    /// without parameters, which goes as a simple query).
    ///
    /// If a statement fails, those after it find the transaction aborted and the pipelined
    /// `commit` ends it as a rollback; the first error is returned. The connection goes back to
    /// the pool only when that `commit` was answered (the session is then idle, outside any
    /// transaction); otherwise it is discarded.
    ///
    /// Statements are prepared once per connection. The login role may not even name the
    /// tables (it can do nothing until the identity is set), so the first time a statement
    /// meets a connection, it is prepared inside the transaction, after the identity: one round
    /// trip more, once.
    pub(super) async fn once(
        conn: Object,
        settings: &TxSettings<'_>,
        statements: &[(&str, &[&(dyn ToSql + Sync)])],
    ) -> Result<Vec<Vec<Row>>, tokio_postgres::Error> {
        let mut prepared = Vec::with_capacity(statements.len());
        for (sql, params) in statements {
            if params.is_empty() {
                prepared.push(None);
                continue;
            }
            match conn.prepare_cached(sql).await {
                Ok(statement) => prepared.push(Some(statement)),
                Err(error) if error.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) => {
                    return Self::once_cold(conn, settings, statements).await;
                }
                Err(error) => return Err(error),
            }
        }
        let identity = conn.prepare_cached(SET_IDENTITY).await?;
        let allow_delete = if settings.allow_delete { "true" } else { "" };
        let params = identity_params(settings, &allow_delete);
        // Every future sends its messages when first polled, and `join!` polls them in order:
        // the server receives begin, identity, statements, commit in that order.
        let (begun, set, ran, committed) = tokio::join!(
            conn.batch_execute("begin"),
            conn.query(&identity, &params),
            run_all(&conn, statements, &prepared),
            conn.batch_execute("commit"),
        );
        if committed.is_err() {
            drop(Object::take(conn));
        }
        begun?;
        set?;
        let rows = ran?;
        committed?;
        Ok(rows)
    }

    /// [`Tx::once`] on a connection that has not prepared `statements` yet: identity first,
    /// then the statements are prepared (and cached), then run and committed together.
    async fn once_cold(
        conn: Object,
        settings: &TxSettings<'_>,
        statements: &[(&str, &[&(dyn ToSql + Sync)])],
    ) -> Result<Vec<Vec<Row>>, tokio_postgres::Error> {
        let mut tx = Self::begin(conn, settings).await?;
        let mut prepared = Vec::with_capacity(statements.len());
        for (sql, params) in statements {
            prepared.push(match params.is_empty() {
                true => None,
                false => Some(tx.conn().prepare_cached(sql).await?),
            });
        }
        let conn = tx.conn();
        let (ran, committed) = tokio::join!(
            run_all(conn, statements, &prepared),
            conn.batch_execute("commit")
        );
        if committed.is_ok() {
            tx.conn = None;
        }
        // Otherwise `Drop` rolls back (or discards the connection).
        let rows = ran?;
        committed?;
        Ok(rows)
    }

    /// A transaction on a privileged connection, for the server's own work (no identity is
    /// set). `begin` is the statement that opens it, e.g. a repeatable-read snapshot.
    pub(super) async fn begin_privileged(
        conn: Object,
        begin: &str,
    ) -> Result<Self, tokio_postgres::Error> {
        // Owned before `begin` leaves: a caller that goes away while it is on its way (a client
        // that disconnected) drops the transaction, whose `Drop` rolls it back, rather than
        // the bare connection, which the pool would take back inside the transaction.
        let tx = Self {
            conn: Some(conn),
            slot: None,
        };
        tx.conn().batch_execute(begin).await?;
        Ok(tx)
    }

    /// Keeps `slot` until this transaction's connection is back in the pool.
    pub(super) fn hold(&mut self, slot: OwnedSemaphorePermit) {
        self.slot = Some(slot);
    }

    /// Runs statements without parameters (savepoints and the like).
    pub async fn batch(&self, sql: &str) -> Result<(), tokio_postgres::Error> {
        self.conn().batch_execute(sql).await
    }

    fn conn(&self) -> &Object {
        // Only `commit` takes the connection, and it consumes `self`.
        match &self.conn {
            Some(conn) => conn,
            None => unreachable!("transaction used after commit"),
        }
    }

    /// Runs a statement (prepared once per connection and cached).
    pub async fn query(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        let conn = self.conn();
        let statement = conn.prepare_cached(sql).await?;
        conn.query(&statement, params).await
    }

    pub async fn query_opt(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, tokio_postgres::Error> {
        let conn = self.conn();
        let statement = conn.prepare_cached(sql).await?;
        conn.query_opt(&statement, params).await
    }

    pub async fn query_one(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, tokio_postgres::Error> {
        let conn = self.conn();
        let statement = conn.prepare_cached(sql).await?;
        conn.query_one(&statement, params).await
    }

    pub async fn execute(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, tokio_postgres::Error> {
        let conn = self.conn();
        let statement = conn.prepare_cached(sql).await?;
        conn.execute(&statement, params).await
    }

    /// Runs one statement and commits in the same round trip. If the statement fails, the
    /// pipelined `commit` finds the transaction aborted and ends it as a rollback.
    pub async fn query_and_commit(
        mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        let conn = self.conn();
        let statement = conn.prepare_cached(sql).await?;
        let (rows, ()) =
            tokio::try_join!(conn.query(&statement, params), conn.batch_execute("commit"))?;
        // On error the connection is left in place: `Drop` sends a rollback, which is harmless if
        // the pipelined commit already ended the transaction.
        self.conn = None;
        Ok(rows)
    }

    /// Ends the transaction without its changes, waiting until the server has done so.
    pub async fn rollback(mut self) -> Result<(), tokio_postgres::Error> {
        let result = self.conn().batch_execute("rollback").await;
        if result.is_ok() {
            self.conn = None;
        }
        result
    }

    pub async fn commit(mut self) -> Result<(), tokio_postgres::Error> {
        let result = self.conn().batch_execute("commit").await;
        if result.is_ok() {
            self.conn = None;
        }
        result
    }
}

/// The parameters of [`SET_IDENTITY`].
fn identity_params<'a>(
    settings: &'a TxSettings<'_>,
    allow_delete: &'a &'a str,
) -> [&'a (dyn ToSql + Sync); 8] {
    [
        &settings.role,
        &settings.claims,
        &settings.sub,
        &settings.operation,
        &settings.method,
        &settings.path,
        &settings.headers,
        allow_delete,
    ]
}

/// Sends every statement at once (each when first polled, in order) and collects their rows:
/// prepared ones with their parameters, the others as simple queries.
async fn run_all(
    conn: &Object,
    statements: &[(&str, &[&(dyn ToSql + Sync)])],
    prepared: &[Option<tokio_postgres::Statement>],
) -> Result<Vec<Vec<Row>>, tokio_postgres::Error> {
    let runs = statements
        .iter()
        .zip(prepared)
        .map(|((sql, params), statement)| async move {
            match statement {
                Some(statement) => conn.query(statement, params).await,
                None => conn.batch_execute(sql).await.map(|()| Vec::new()),
            }
        });
    futures::future::join_all(runs).await.into_iter().collect()
}

impl Drop for Tx {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        let slot = self.slot.take();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if conn.batch_execute("rollback").await.is_err() {
                        drop(Object::take(conn));
                    }
                    drop(slot);
                });
            }
            Err(_) => drop(Object::take(conn)),
        }
    }
}
