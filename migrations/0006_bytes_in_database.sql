-- 0006_bytes_in_database.sql
--
-- The `postgres` byte store: object bytes as chunks in this database, written and removed in
-- the same transactions as their rows, so that a backup or a branch of the database carries the
-- files with it and no commit point ever separates a row from its bytes.
--
-- The request transactions that write chunks run as the API roles, which must not touch chunks
-- or the journal themselves (an application's PostgREST uses those roles too). The functions
-- below are therefore security definer and only work in a *server session*: a connection whose
-- login role (session_user, which SET ROLE cannot change) is a member of pgstorage_server, or a
-- superuser. The server grants pgstorage_server to its request role at start-up.

do $$
begin
    create role pgstorage_server nologin;
exception when duplicate_object or unique_violation then null;
end
$$;

create function storage.is_server_session() returns boolean
language sql stable security definer set search_path = '' as $$
    select coalesce(
        (select r.rolsuper from pg_catalog.pg_roles r where r.rolname = session_user), false)
        or pg_catalog.pg_has_role(session_user, 'pgstorage_server', 'MEMBER')
$$;

create table storage.byte_chunks (
    key text not null,
    seq integer not null check (seq >= 0),
    data bytea not null,
    primary key (key, seq)
);
-- Stored out of line and never compressed: most files (images, video, archives) are compressed
-- already, and compressing them again costs CPU for nothing.
alter table storage.byte_chunks alter column data set storage external;
revoke all on storage.byte_chunks from public, anon, authenticated, service_role;

create function storage.require_server_session() returns void
language plpgsql stable security definer set search_path = '' as $$
begin
    if not storage.is_server_session() then
        raise exception 'only the storage server may write object bytes'
            using errcode = '42501';
    end if;
end
$$;

-- Stages a key inside the caller's transaction (see 0005): the row insert that follows adopts it.
create function storage.stage_key(p_key text, p_lease_seconds double precision) returns void
language plpgsql security definer set search_path = '' as $$
begin
    perform storage.require_server_session();
    insert into storage.byte_journal (key, state, lease_until)
    values (p_key, 'staged', now() + make_interval(secs => p_lease_seconds));
end
$$;

create function storage.write_chunk(p_key text, p_seq integer, p_data bytea) returns void
language plpgsql security definer set search_path = '' as $$
begin
    perform storage.require_server_session();
    insert into storage.byte_chunks (key, seq, data) values (p_key, p_seq, p_data);
end
$$;

create function storage.copy_chunks(p_from text, p_to text) returns bigint
language plpgsql security definer set search_path = '' as $$
declare
    copied bigint;
begin
    perform storage.require_server_session();
    insert into storage.byte_chunks (key, seq, data)
    select p_to, seq, data from storage.byte_chunks where key = p_from;
    get diagnostics copied = row_count;
    return copied;
end
$$;

revoke all on function storage.stage_key(text, double precision) from public;
revoke all on function storage.write_chunk(text, integer, bytea) from public;
revoke all on function storage.copy_chunks(text, text) from public;
revoke all on function storage.require_server_session() from public;
grant execute on function storage.stage_key(text, double precision) to anon, authenticated, service_role;
grant execute on function storage.write_chunk(text, integer, bytea) to anon, authenticated, service_role;
grant execute on function storage.copy_chunks(text, text) to anon, authenticated, service_role;
grant execute on function storage.require_server_session() to anon, authenticated, service_role;

-- Deleting a row removes its chunks in the same transaction. (Keys of other stores go to the
-- journal as before.) A replaced version is still journalled as released, as in 0005, so that
-- readers of the old version finish within the grace period before the collector removes it.
create or replace function storage.release_deleted_bytes() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
    with gone as (
        delete from storage.byte_chunks c
        using old_rows
        where c.key = old_rows.version
        returning c.key
    )
    insert into storage.byte_journal (key, state)
    select old_rows.version, 'released'
    from old_rows
    where old_rows.version is not null
      and not exists (select 1 from gone where gone.key = old_rows.version)
    on conflict (key) do nothing;
    return null;
end
$$;
