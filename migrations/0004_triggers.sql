-- 0004_triggers.sql
--
-- Triggers guarding the storage tables:
--   * bucket names are at most 100 characters          (SQLSTATE 22001)
--   * updated_at is maintained on buckets and objects
--   * direct DELETE / TRUNCATE of objects and buckets is refused (SQLSTATE 42501)
--     unless the server has set storage.allow_delete = 'true' in the
--     transaction: only the server knows how to free the bytes after the row.
--
-- Trigger functions are security invoker and reference only pg_catalog.

-- ---------------------------------------------------------------------------
-- Bucket name length.
-- ---------------------------------------------------------------------------
create function storage.enforce_bucket_name_length()
returns trigger
language plpgsql
as $$
begin
  if pg_catalog.char_length(new.name) > 100 then
    raise exception 'bucket name must be at most 100 characters'
      using errcode = 'string_data_right_truncation',  -- 22001
            detail  = pg_catalog.format('The name has %s characters.', pg_catalog.char_length(new.name));
  end if;
  return new;
end
$$;

create trigger enforce_bucket_name_length
  before insert or update of name on storage.buckets
  for each row
  execute function storage.enforce_bucket_name_length();

-- ---------------------------------------------------------------------------
-- updated_at: set to the transaction time on every UPDATE (a value supplied
-- by the UPDATE itself is overridden).
-- ---------------------------------------------------------------------------
create function storage.set_updated_at()
returns trigger
language plpgsql
as $$
begin
  new.updated_at := pg_catalog.now();
  return new;
end
$$;

create trigger set_updated_at
  before update on storage.buckets
  for each row
  execute function storage.set_updated_at();

create trigger set_updated_at
  before update on storage.objects
  for each row
  execute function storage.set_updated_at();

-- ---------------------------------------------------------------------------
-- protect_delete.
--
-- Statement-level, so it costs one check per statement and also fires for
-- TRUNCATE (which fires no row triggers). The server runs
--   select set_config('storage.allow_delete', 'true', true)
-- in the transaction before its own deletes (transaction-local, so it ends
-- with the transaction and is safe behind transaction-mode poolers).
--
-- This is a guard against deleting rows whose bytes would be left behind,
-- not a permission: RLS DELETE policies still decide what a role may delete.
-- TRUNCATE is also revoked from the API roles in 0002 (ALL would include it);
-- this trigger additionally covers the owner.
-- ---------------------------------------------------------------------------
create function storage.protect_delete()
returns trigger
language plpgsql
as $$
begin
  if coalesce(pg_catalog.current_setting('storage.allow_delete', true), '') <> 'true' then
    raise exception 'direct % on storage.% is not allowed; use the Storage API', pg_catalog.lower(tg_op), tg_table_name
      using errcode = 'insufficient_privilege',  -- 42501
            hint    = 'Delete objects and buckets through the Storage API, which also removes their bytes.';
  end if;
  return null;  -- ignored for statement-level BEFORE triggers
end
$$;

create trigger protect_delete
  before delete on storage.objects
  for each statement
  execute function storage.protect_delete();

create trigger protect_delete
  before delete on storage.buckets
  for each statement
  execute function storage.protect_delete();

create trigger protect_truncate
  before truncate on storage.objects
  for each statement
  execute function storage.protect_delete();

create trigger protect_truncate
  before truncate on storage.buckets
  for each statement
  execute function storage.protect_delete();
