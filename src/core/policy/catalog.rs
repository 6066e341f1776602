//! The policies on the storage tables, read from `pg_policies`, and what the database knows of
//! a role (whether it bypasses RLS, which privileges it holds).

use serde::Serialize;

use crate::core::{Error, Storage};

/// One policy on a table of the `storage` schema.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Policy {
    /// The table, e.g. `objects` (always in the `storage` schema).
    pub table: String,
    pub name: String,
    /// `ALL`, `SELECT`, `INSERT`, `UPDATE` or `DELETE`.
    pub command: String,
    /// Permissive policies grant (any one suffices); restrictive ones must all pass as well.
    pub permissive: bool,
    /// The roles it applies to (`public`: every role).
    pub roles: Vec<String>,
    /// The `USING` expression, as PostgreSQL prints it back.
    pub using: Option<String>,
    /// The `WITH CHECK` expression.
    pub with_check: Option<String>,
    /// Whether it applies to the role asked about (always true when no role was given).
    #[serde(skip)]
    pub applies: bool,
}

/// Every policy on the storage tables; `applies` says which hold for `role` (a role the
/// policy names, or one whose privileges `role` has, as PostgreSQL decides it).
const POLICIES: &str = "select tablename::text, policyname::text, cmd, permissive = 'PERMISSIVE', \
            roles::text[], qual, with_check, \
            ($1::text is null or 'public' = any(roles) \
             or exists (select 1 from unnest(roles) r \
                        where r <> 'public' and pg_has_role($1::name, r, 'usage'))) \
     from pg_catalog.pg_policies \
     where schemaname = 'storage' \
     order by tablename, cmd, policyname";

/// What the database says of a role: whether it exists, bypasses RLS, and may run each SQL
/// command on a table at all (a privilege comes before any policy).
const ROLE: &str = "select rolbypassrls or rolsuper from pg_catalog.pg_roles where rolname = $1";

const PRIVILEGE: &str = "select has_table_privilege($1::name, $2::text, $3::text)";

impl Storage {
    /// The policies on the storage tables, read with privilege. With a role, marks those that
    /// apply to it; a role that does not exist is an input error.
    pub async fn policies(&self, role: Option<&str>) -> Result<Vec<Policy>, Error> {
        let conn = self.db.admin().await?;
        if let Some(role) = role
            && conn.query_opt(ROLE, &[&role]).await?.is_none()
        {
            return Err(Error::InvalidInput(format!("role {role} does not exist")));
        }
        let statement = conn.prepare_cached(POLICIES).await?;
        let rows = conn.query(&statement, &[&role]).await?;
        Ok(rows
            .iter()
            .map(|row| Policy {
                table: row.get(0),
                name: row.get(1),
                command: row.get(2),
                permissive: row.get(3),
                roles: row.get(4),
                using: row.get(5),
                with_check: row.get(6),
                applies: row.get(7),
            })
            .collect())
    }

    /// Whether `role` bypasses RLS (BYPASSRLS or superuser).
    pub(super) async fn bypasses_rls(&self, role: &str) -> Result<bool, Error> {
        let conn = self.db.admin().await?;
        let row = conn.query_opt(ROLE, &[&role]).await?;
        row.map(|row| row.get(0))
            .ok_or_else(|| Error::InvalidInput(format!("role {role} does not exist")))
    }

    /// Whether `role` holds `privilege` (`select`, `insert`, ...) on `table`.
    pub(super) async fn has_privilege(
        &self,
        role: &str,
        table: &str,
        privilege: &str,
    ) -> Result<bool, Error> {
        let conn = self.db.admin().await?;
        let statement = conn.prepare_cached(PRIVILEGE).await?;
        Ok(conn
            .query_one(&statement, &[&role, &table, &privilege])
            .await?
            .get(0))
    }

    /// An existing row as JSON (all columns), read with privilege: the row a policy's `USING`
    /// is evaluated on, whether or not the caller may see it. `name` is the object's (absent:
    /// the bucket's own row).
    pub(super) async fn existing_row(
        &self,
        bucket: &str,
        name: Option<&str>,
    ) -> Result<Option<serde_json::Value>, Error> {
        let conn = self.db.admin().await?;
        let row = match name {
            Some(name) => {
                let statement = conn
                    .prepare_cached(
                        "select to_jsonb(o) from storage.objects o \
                         where bucket_id = $1 and name = $2",
                    )
                    .await?;
                conn.query_opt(&statement, &[&bucket, &name]).await?
            }
            None => {
                let statement = conn
                    .prepare_cached("select to_jsonb(b) from storage.buckets b where id = $1")
                    .await?;
                conn.query_opt(&statement, &[&bucket]).await?
            }
        };
        Ok(row.map(|row| row.get(0)))
    }
}

/// The two tables the storage operations read and write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Objects,
    Buckets,
}

impl Table {
    /// The table's name as `pg_policies.tablename` has it.
    pub fn name(self) -> &'static str {
        match self {
            Table::Objects => "objects",
            Table::Buckets => "buckets",
        }
    }

    pub fn qualified(self) -> &'static str {
        match self {
            Table::Objects => "storage.objects",
            Table::Buckets => "storage.buckets",
        }
    }
}
