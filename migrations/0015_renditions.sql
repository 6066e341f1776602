-- 0015_renditions.sql
--
-- Cached image renditions (docs/transforms.md, DESIGN §12). A rendition's bytes live in the
-- byte store under a key of their own; this row ties that key to the object version (the
-- object's byte key, `objects.version`) and the normalised parameters it was rendered from.
--
-- Renditions follow the journal's rules (0005):
--   * the server stages a rendition's key in storage.byte_journal before writing its bytes,
--     and storage.adopt_rendition() turns the staged key into a row here in one transaction,
--     only while the object still has that version;
--   * when an object row is deleted or switched to new bytes, the triggers below move the
--     renditions of its old version to the journal as `released`, in the same transaction, so
--     the collector frees them with the object's own old bytes, after the grace period.
-- The table is the server's own bookkeeping: never granted to the API roles (the object's
-- read policy is checked on every request, before this table is consulted).

create table storage.renditions (
    key text primary key,
    object_id uuid not null,
    -- The object's byte key when the rendition was made.
    version text not null,
    -- The normalised parameters and the output format.
    variant text not null,
    content_type text not null,
    size bigint not null check (size >= 0),
    created_at timestamptz not null default now(),
    unique (version, variant)
);

revoke all on storage.renditions from public, anon, authenticated, service_role;

-- Records the staged `p_key` as the rendition `p_variant` of object `p_object` at version
-- `p_version`. True when recorded; false when the object has moved on (overwritten or
-- deleted), another request recorded the same rendition first, or the staged key was already
-- collected: the key, if still staged, is then released for the collector, never left behind.
create function storage.adopt_rendition(
    p_key text, p_object uuid, p_version text, p_variant text, p_content_type text, p_size bigint
) returns boolean
language plpgsql security definer set search_path = '' as $$
begin
    -- Holds off a concurrent overwrite or delete of the object until this commits, so its
    -- release trigger sees the new row (a plain key share would not conflict with an update).
    perform 1 from storage.objects where id = p_object and version = p_version for share;
    if found then
        insert into storage.renditions (key, object_id, version, variant, content_type, size)
        values (p_key, p_object, p_version, p_variant, p_content_type, p_size)
        on conflict (version, variant) do nothing;
        if found then
            delete from storage.byte_journal where key = p_key and state = 'staged';
            if found then
                return true;
            end if;
            -- The lease ran out and the collector took the bytes: record nothing.
            delete from storage.renditions where key = p_key;
            return false;
        end if;
    end if;
    update storage.byte_journal
    set state = 'released', lease_until = null, recorded_at = now()
    where key = p_key and state = 'staged';
    return false;
end
$$;

revoke all on function storage.adopt_rendition(text, uuid, text, text, text, bigint) from public;

-- Deleted objects release their renditions.
create function storage.release_deleted_renditions() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
    with gone as (
        delete from storage.renditions r
        using old_rows
        where r.version = old_rows.version
        returning r.key
    )
    insert into storage.byte_journal (key, state)
    select key, 'released' from gone
    on conflict (key) do nothing;
    return null;
end
$$;

create trigger release_deleted_renditions
    after delete on storage.objects
    referencing old table as old_rows
    for each statement execute function storage.release_deleted_renditions();

-- Objects switched to new bytes release the renditions of the old ones.
create function storage.release_replaced_renditions() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
    with gone as (
        delete from storage.renditions r
        using old_rows
        join new_rows using (id)
        where r.version = old_rows.version
          and old_rows.version is distinct from new_rows.version
        returning r.key
    )
    insert into storage.byte_journal (key, state)
    select key, 'released' from gone
    on conflict (key) do nothing;
    return null;
end
$$;

create trigger release_replaced_renditions
    after update on storage.objects
    referencing old table as old_rows new table as new_rows
    for each statement execute function storage.release_replaced_renditions();

revoke all on function storage.release_deleted_renditions() from public;
revoke all on function storage.release_replaced_renditions() from public;
