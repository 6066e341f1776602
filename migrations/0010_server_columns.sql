-- 0010_server_columns.sql
--
-- What the server writes, only the server changes (DESIGN §5 invariant 8).
--
-- `owner_id`, `version` (the key of the bytes) and `metadata` (size, mimetype, eTag, sha256,
-- ...) of storage.objects are measured and written by the storage server. A transaction that is
-- not the server's may not set or change them, whatever the RLS policies allow: a forged size
-- would make downloads hang or truncate, a forged version would point a row at bytes that are
-- not its own. Nor may it insert a row at all: a row inserted by hand has no bytes behind it.
-- `user_metadata` (and a rename through `name`/`bucket_id`) stays writable under RLS.
--
-- "The server's transaction" is recognised by the login role, as in 0006: `session_user`
-- (which SET ROLE and set_config cannot change) is a superuser or a member of
-- pgstorage_server. An application's PostgREST logs in as a role that is not, so a user with
-- an UPDATE policy can edit user_metadata from there but nothing the server measured.
--
-- The delete guard of 0004 trusted a transaction-local setting that any role can set with
-- set_config; it now also requires a server session.

grant execute on function storage.is_server_session() to anon, authenticated, service_role;

create function storage.protect_server_columns() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
    if storage.is_server_session() then
        return new;
    end if;
    if tg_op = 'INSERT' then
        raise exception 'objects can only be created through the Storage API'
            using errcode = 'insufficient_privilege',  -- 42501
                  detail  = 'A row inserted by hand would have no bytes behind it.',
                  hint    = 'Upload the object through the Storage API.';
    end if;
    if new.owner_id is distinct from old.owner_id
       or new.version is distinct from old.version
       or new.metadata is distinct from old.metadata then
        raise exception 'owner_id, version and metadata of storage.objects are written by the storage server only'
            using errcode = 'insufficient_privilege',  -- 42501
                  hint    = 'user_metadata may be updated; new bytes, sizes and types go through the Storage API.';
    end if;
    return new;
end
$$;

revoke all on function storage.protect_server_columns() from public;

-- Row triggers of one timing fire in name order: this one must run before 0005's
-- adopt_staged_bytes, so that a forged version is refused as such (42501) before anything
-- looks at the key.
create trigger a_protect_server_columns
  before insert or update on storage.objects
  for each row
  execute function storage.protect_server_columns();

create or replace function storage.protect_delete()
returns trigger
language plpgsql
as $$
begin
  if coalesce(pg_catalog.current_setting('storage.allow_delete', true), '') <> 'true'
     or not storage.is_server_session() then
    raise exception 'direct % on storage.% is not allowed; use the Storage API', pg_catalog.lower(tg_op), tg_table_name
      using errcode = 'insufficient_privilege',  -- 42501
            hint    = 'Delete objects and buckets through the Storage API, which also removes their bytes.';
  end if;
  return null;  -- ignored for statement-level BEFORE triggers
end
$$;
