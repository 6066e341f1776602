//! Embedded migrations: applied in order, each in its own transaction, recorded in
//! `storage.migrations` with a checksum. Re-running is a no-op; an applied migration whose text
//! has changed is refused rather than silently diverging.

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};

/// A migration compiled into the binary.
pub struct Migration {
    pub id: i32,
    pub name: &'static str,
    pub sql: &'static str,
}

macro_rules! migration {
    ($id:literal, $name:literal) => {
        Migration {
            id: $id,
            name: $name,
            sql: include_str!(concat!("../../migrations/", $name, ".sql")),
        }
    };
}

/// Every migration, in the order they are applied. Append only: never edit an applied one.
pub const MIGRATIONS: &[Migration] = &[
    migration!(1, "0001_roles_and_schemas"),
    migration!(2, "0002_tables"),
    migration!(3, "0003_functions"),
    migration!(4, "0004_triggers"),
    migration!(5, "0005_byte_journal"),
    migration!(6, "0006_bytes_in_database"),
    migration!(7, "0007_parent_path_index"),
    migration!(8, "0008_signed_upload_uses"),
    migration!(10, "0010_server_columns"),
    migration!(11, "0011_public_buckets_and_folded_names"),
    migration!(12, "0012_multipart_segments"),
    migration!(13, "0013_s3_keys"),
    migration!(14, "0014_postgrest_files"),
    migration!(15, "0015_renditions"),
    migration!(16, "0016_multipart_headers_and_checksums"),
];

impl Migration {
    pub fn checksum(&self) -> String {
        hex::encode(Sha256::digest(self.sql.as_bytes()))
    }
}

/// Serialises concurrent migrators (several servers starting at once) on one database.
const LOCK_KEY: i64 = 0x7067_7374_6f72_6167; // "pgstorag"

const BOOTSTRAP: &str = "
    create schema if not exists storage;
    create table if not exists storage.migrations (
        id integer primary key,
        name text not null unique,
        hash text not null,
        executed_at timestamptz not null default now()
    );";

/// Applies every pending migration. Returns the names of those applied now.
pub async fn run(client: &mut tokio_postgres::Client) -> anyhow::Result<Vec<&'static str>> {
    client
        .execute("select pg_advisory_lock($1)", &[&LOCK_KEY])
        .await
        .context("taking the migration lock")?;
    let result = apply_pending(client).await;
    // Released even when a migration failed; the session ends soon anyway.
    let _ = client
        .execute("select pg_advisory_unlock($1)", &[&LOCK_KEY])
        .await;
    result
}

async fn apply_pending(client: &mut tokio_postgres::Client) -> anyhow::Result<Vec<&'static str>> {
    client
        .batch_execute(BOOTSTRAP)
        .await
        .context("creating storage.migrations")?;
    let applied = client
        .query(
            "select id, name, hash from storage.migrations order by id",
            &[],
        )
        .await?;
    let mut done = Vec::new();
    for migration in MIGRATIONS {
        let checksum = migration.checksum();
        if let Some(row) = applied.iter().find(|r| r.get::<_, i32>(0) == migration.id) {
            let (name, hash): (String, String) = (row.get(1), row.get(2));
            if name != migration.name || hash != checksum {
                bail!(
                    "migration {} ({}) was applied with different contents: the database \
                     records {} with checksum {}, this binary has checksum {}. Applied \
                     migrations must never change; add a new migration instead",
                    migration.id,
                    migration.name,
                    name,
                    hash,
                    checksum
                );
            }
            continue;
        }
        let tx = client.transaction().await?;
        tx.batch_execute(migration.sql)
            .await
            .with_context(|| format!("applying migration {}", migration.name))?;
        tx.execute(
            "insert into storage.migrations (id, name, hash) values ($1, $2, $3)",
            &[&migration.id, &migration.name, &checksum],
        )
        .await?;
        tx.commit().await?;
        done.push(migration.name);
    }
    if let Some(unknown) = applied
        .iter()
        .map(|r| r.get::<_, i32>(0))
        .find(|id| !MIGRATIONS.iter().any(|m| m.id == *id))
    {
        bail!(
            "the database has migration {unknown}, which this binary does not know: it was \
             migrated by a newer pgstorage"
        );
    }
    Ok(done)
}

/// The marker role of the server's own request sessions (see migration 0006): only sessions
/// whose login role is a member may write object bytes in the database.
pub const SERVER_ROLE: &str = "pgstorage_server";

/// Grants [`SERVER_ROLE`] to the login role that request traffic uses.
pub async fn grant_server_role(
    client: &tokio_postgres::Client,
    login_role: &str,
) -> anyhow::Result<()> {
    client
        .batch_execute(&format!(
            "grant {SERVER_ROLE} to {}",
            quote_ident(login_role)
        ))
        .await
        .with_context(|| format!("granting {SERVER_ROLE} to {login_role}"))
}

/// Creates (if missing) the login role for request traffic: not a superuser, NOINHERIT, and a
/// member of every API role, so a transaction that never switched roles can read nothing.
pub async fn ensure_request_role(
    client: &tokio_postgres::Client,
    login_role: &str,
    api_roles: &[String],
) -> anyhow::Result<()> {
    let ident = quote_ident(login_role);
    client
        .batch_execute(&format!(
            "do $$ begin
                 create role {ident} login noinherit nosuperuser nocreatedb nocreaterole;
             exception when duplicate_object or unique_violation then null;
             end $$;"
        ))
        .await
        .with_context(|| format!("creating role {login_role}"))?;
    for role in api_roles {
        client
            .batch_execute(&format!("grant {} to {ident}", quote_ident(role)))
            .await
            .with_context(|| format!("granting {role} to {login_role}"))?;
    }
    grant_server_role(client, login_role).await
}

/// Quotes an SQL identifier (for role names, which cannot be bound as parameters).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}
