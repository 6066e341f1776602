-- 0005_byte_journal.sql
--
-- The journal of bytes that no visible row references: the mechanism behind "no orphans, no
-- row without bytes" (DESIGN §5).
--
--   staged    the server is writing, or has written, bytes for an upload whose row has not
--             committed yet. Recorded BEFORE the first byte is written. The uploader renews
--             lease_until while it streams; if it dies, the lease runs out and the collector
--             frees the bytes.
--   released  a committed row change (delete, overwrite, bucket empty) stopped referencing
--             these bytes. The collector frees them once the grace period has passed, so that
--             readers of the old version can finish.
--
-- The triggers below keep the journal exact whoever changes storage.objects:
--   * a row may only be made to point at (objects.version = key) bytes that are staged, and
--     doing so removes them from the journal in the same transaction. A row can therefore
--     never point at missing bytes, nor at another object's bytes (their key is not staged);
--   * deleting a row, or switching it to new bytes, releases the old key in the same
--     transaction, so bytes are freed only after the row change has committed.
--
-- The journal is the server's own bookkeeping: never granted to the API roles. The trigger
-- functions are security definer for that reason, with an empty search_path.

create table storage.byte_journal (
    key text primary key,
    state text not null check (state in ('staged', 'released')),
    lease_until timestamptz,
    recorded_at timestamptz not null default now(),
    check ((state = 'staged') = (lease_until is not null))
);

-- The collector's scan: the oldest entries first, per state.
create index byte_journal_collect_idx on storage.byte_journal (state, recorded_at);
create index byte_journal_lease_idx on storage.byte_journal (lease_until) where state = 'staged';

revoke all on storage.byte_journal from public, anon, authenticated, service_role;

-- A row may only adopt staged bytes; adopting them takes them out of the journal.
create function storage.adopt_staged_bytes() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
    if new.version is not null
       and (tg_op = 'INSERT' or new.version is distinct from old.version) then
        delete from storage.byte_journal
        where key = new.version and state = 'staged';
        if not found then
            raise exception 'object version % does not name bytes staged by the server', new.version
                using errcode = '55000',
                      hint = 'objects are written through the Storage API, which stages their bytes first';
        end if;
    end if;
    return new;
end
$$;

create trigger adopt_staged_bytes
    before insert or update of version on storage.objects
    for each row execute function storage.adopt_staged_bytes();

-- Deleted rows release their bytes.
create function storage.release_deleted_bytes() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
    insert into storage.byte_journal (key, state)
    select old_rows.version, 'released'
    from old_rows
    where old_rows.version is not null
    on conflict (key) do nothing;
    return null;
end
$$;

create trigger release_deleted_bytes
    after delete on storage.objects
    referencing old table as old_rows
    for each statement execute function storage.release_deleted_bytes();

-- Rows switched to new bytes (overwrite) release the old ones.
create function storage.release_replaced_bytes() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
    insert into storage.byte_journal (key, state)
    select old_rows.version, 'released'
    from old_rows
    join new_rows using (id)
    where old_rows.version is not null
      and old_rows.version is distinct from new_rows.version
    on conflict (key) do nothing;
    return null;
end
$$;

create trigger release_replaced_bytes
    after update on storage.objects
    referencing old table as old_rows new table as new_rows
    for each statement execute function storage.release_replaced_bytes();

revoke all on function storage.adopt_staged_bytes() from public;
revoke all on function storage.release_deleted_bytes() from public;
revoke all on function storage.release_replaced_bytes() from public;
