-- 0001_roles_and_schemas.sql
--
-- API roles and schemas used by pgstorage.
--
-- The migration runner has already created schema `storage` and the table
-- `storage.migrations` before this file runs; this file runs inside one
-- transaction. Everything here tolerates objects that already exist (a database
-- that already holds an application, or a second database in the same cluster
-- where the cluster-wide roles already exist). Nothing that is not ours is
-- dropped or altered.

-- ---------------------------------------------------------------------------
-- 1. The three API roles (cluster-wide, so they may already exist).
--
--    anon           requests without a token
--    authenticated  requests with a user token
--    service_role   server-side key; BYPASSRLS skips every policy
--
-- NOLOGIN: nobody connects as them; the request login role switches to them
-- with set_config('role', ...) inside each transaction.
-- NOINHERIT: being granted one of them never leaks privileges by inheritance.
--
-- A concurrent creator (another database's migration, another server) may
-- create the role between our existence check and our CREATE ROLE: that shows
-- up as duplicate_object (or unique_violation on pg_authid) and is ignored.
-- A role that somebody else created is left exactly as it is; we only warn
-- when a pre-existing service_role lacks BYPASSRLS, since then service_role
-- requests are filtered by RLS like any other role.
-- ---------------------------------------------------------------------------
do $$
begin
  if not exists (select 1 from pg_catalog.pg_roles where rolname = 'anon') then
    begin
      create role anon nologin noinherit;
    exception when duplicate_object or unique_violation then
      null; -- created concurrently: fine
    end;
  end if;

  if not exists (select 1 from pg_catalog.pg_roles where rolname = 'authenticated') then
    begin
      create role authenticated nologin noinherit;
    exception when duplicate_object or unique_violation then
      null;
    end;
  end if;

  if not exists (select 1 from pg_catalog.pg_roles where rolname = 'service_role') then
    begin
      create role service_role nologin noinherit bypassrls;
    exception when duplicate_object or unique_violation then
      null;
    end;
  end if;

  if not (select rolbypassrls from pg_catalog.pg_roles where rolname = 'service_role') then
    raise warning 'role service_role exists without BYPASSRLS; pgstorage leaves it unchanged, so RLS policies will apply to service_role requests';
  end if;
end
$$;

-- ---------------------------------------------------------------------------
-- 2. Make the migrating (privileged) role a member of the three API roles, so
--    it can switch to them and administer objects granted to them.
--    Skipped when the membership already exists; a concurrent grant is
--    tolerated. If the migrating role is not allowed to grant a role that
--    somebody else created (e.g. PostgreSQL 16+ CREATEROLE without ADMIN
--    OPTION), we warn instead of failing: the tables and grants below do not
--    depend on this membership.
-- ---------------------------------------------------------------------------
do $$
declare
  r text;
begin
  foreach r in array array['anon', 'authenticated', 'service_role'] loop
    if not exists (
      select 1
      from pg_catalog.pg_auth_members m
      where m.roleid = (select oid from pg_catalog.pg_roles where rolname = r)
        and m.member = (select oid from pg_catalog.pg_roles where rolname = current_user)
    ) then
      begin
        execute pg_catalog.format('grant %I to %I', r, current_user);
      exception
        when duplicate_object or unique_violation then
          null; -- granted concurrently
        when insufficient_privilege or invalid_grant_operation then
          raise warning 'could not grant role % to %: %', r, current_user, sqlerrm;
      end;
    end if;
  end loop;
end
$$;

-- ---------------------------------------------------------------------------
-- 3. Schemas. `storage` normally exists already (the runner creates it);
--    `auth` holds auth.uid()/auth.role()/auth.jwt() (see 0003).
-- ---------------------------------------------------------------------------
create schema if not exists storage;
create schema if not exists auth;

grant usage on schema storage to anon, authenticated, service_role;
grant usage on schema auth to anon, authenticated, service_role;

-- ---------------------------------------------------------------------------
-- 4. The migration bookkeeping table is internal: no API role may read it.
-- ---------------------------------------------------------------------------
revoke all on table storage.migrations from anon, authenticated, service_role, public;
