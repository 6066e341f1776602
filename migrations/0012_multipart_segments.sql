-- 0012_multipart_segments.sql
--
-- Multipart uploads (S3, and TUS resumable uploads) and segmented objects (DESIGN §5, invariant 7).
--
-- An upload's parts are immutable byte keys named by rows of storage.s3_multipart_uploads_parts
-- (`version` = the part's key). While an upload is in progress its parts are referenced by those
-- rows, not by the journal: a part key is staged in the journal before its bytes are written and
-- leaves the journal when its part row commits. Replacing a part, aborting an upload or letting it
-- expire puts the keys of the parts it drops into the journal as `released`.
--
-- Completing an upload copies no bytes: the object's row gets a fresh *manifest* key as its
-- `version`, and storage.object_segments lists, in order, the segment keys (the parts) that make
-- up its bytes. The manifest key goes through the journal exactly like any other version (staged
-- by the completing transaction, adopted by the row, released when the row is deleted or
-- switched to other bytes), so the triggers of 0005/0006 need no change. When the collector frees
-- a released manifest key, it releases the segments that no other manifest names (copies of a
-- segmented object share its immutable segments).

-- ---------------------------------------------------------------------------
-- Upload state the server needs beyond the seed's columns.
-- ---------------------------------------------------------------------------
alter table storage.s3_multipart_uploads
    -- Who started the upload: the same role and sub may continue it (the upload id is the
    -- capability for a caller without a sub); anyone else needs an RLS policy that shows them
    -- the row.
    add column caller_role text,
    add column caller_sub text,
    -- The object's future content type and cache control, fixed at creation.
    add column content_type text,
    add column cache_control text,
    -- Whether completing may replace an existing object (storage.overwrite).
    add column upsert boolean not null default false,
    -- Abandoned uploads are collected with their parts after this (renewed by every part).
    add column expires_at timestamptz,
    -- The total length the client announced (TUS Upload-Length), if any.
    add column declared_length bigint check (declared_length >= 0);

create index s3_multipart_uploads_expires_idx
    on storage.s3_multipart_uploads (expires_at) where expires_at is not null;

-- The part's SHA-256 (hex), for the composite checksum of a completed upload.
alter table storage.s3_multipart_uploads_parts add column sha256 text;

-- A caller with a sub sees the uploads they started (ListMultipartUploads). Droppable: an
-- application may replace it with its own policies. Anonymous uploads are listed to nobody but
-- service_role: their id is their only credential.
create policy "pgstorage: creators see their multipart uploads"
    on storage.s3_multipart_uploads for select to anon, authenticated
    using (caller_sub is not null
           and caller_sub = (select auth.uid())
           and caller_role = (select auth.role()));

-- ---------------------------------------------------------------------------
-- Segmented objects.
-- ---------------------------------------------------------------------------
create table storage.object_segments (
    version     text not null,                            -- the manifest key (objects.version)
    seq         integer not null check (seq >= 0),        -- order of the segment in the object
    key         text not null,                            -- an immutable byte key
    byte_offset bigint not null check (byte_offset >= 0), -- where the segment starts in the object
    size        bigint not null check (size >= 0),
    primary key (version, seq)
);

-- The collector's "does another manifest still name this segment?".
create index object_segments_key_idx on storage.object_segments (key);

revoke all on storage.object_segments from public, anon, authenticated, service_role;

-- Locks an in-progress upload for completion (concurrent completions and part uploads wait) and
-- returns its parts. Runs inside the caller's completing transaction, hence security definer,
-- and only in a server session. SQLSTATE P0002 when there is no such upload.
create function storage.multipart_lock(p_upload_id text)
returns table (part_number integer, size bigint, etag text, sha256 text, version text)
language plpgsql security definer set search_path = '' as $$
begin
    perform storage.require_server_session();
    perform 1 from storage.s3_multipart_uploads u
    where u.id = p_upload_id and (u.expires_at is null or u.expires_at > now())
    for update;
    if not found then
        raise exception 'no such multipart upload' using errcode = 'P0002';
    end if;
    return query
        select p.part_number, p.size, p.etag, p.sha256, p.version
        from storage.s3_multipart_uploads_parts p
        where p.upload_id = p_upload_id
        order by p.part_number;
end
$$;

-- Turns the chosen parts (in order) of a locked upload into the segments of p_manifest, stages
-- p_manifest for the row that adopts it in the same transaction, releases the parts left out,
-- and removes the upload. Returns the number of segments.
create function storage.multipart_finish(
    p_upload_id text, p_manifest text, p_parts integer[], p_lease_seconds double precision)
returns bigint
language plpgsql security definer set search_path = '' as $$
declare
    n bigint;
begin
    perform storage.require_server_session();
    insert into storage.byte_journal (key, state, lease_until)
    values (p_manifest, 'staged', now() + make_interval(secs => p_lease_seconds));
    insert into storage.object_segments (version, seq, key, byte_offset, size)
    select p_manifest, (c.ord - 1)::integer, p.version,
           coalesce(sum(p.size) over (order by c.ord rows between unbounded preceding and 1 preceding), 0),
           p.size
    from unnest(p_parts) with ordinality as c(part_number, ord)
    join storage.s3_multipart_uploads_parts p
      on p.upload_id = p_upload_id and p.part_number = c.part_number;
    get diagnostics n = row_count;
    if n <> coalesce(cardinality(p_parts), 0) then
        raise exception 'a part of the upload is missing' using errcode = 'P0002';
    end if;
    insert into storage.byte_journal (key, state)
    select p.version, 'released'
    from storage.s3_multipart_uploads_parts p
    where p.upload_id = p_upload_id and p.part_number <> all (p_parts)
    on conflict (key) do nothing;
    delete from storage.s3_multipart_uploads where id = p_upload_id;  -- parts cascade
    return n;
end
$$;

-- A copy of a segmented object: a new manifest (staged for the copy's row) naming the same
-- immutable segments. Returns the number of segments (0: the source manifest is gone).
create function storage.share_segments(p_from text, p_to text, p_lease_seconds double precision)
returns bigint
language plpgsql security definer set search_path = '' as $$
declare
    n bigint;
begin
    perform storage.require_server_session();
    insert into storage.byte_journal (key, state, lease_until)
    values (p_to, 'staged', now() + make_interval(secs => p_lease_seconds));
    insert into storage.object_segments (version, seq, key, byte_offset, size)
    select p_to, s.seq, s.key, s.byte_offset, s.size
    from storage.object_segments s
    where s.version = p_from;
    get diagnostics n = row_count;
    return n;
end
$$;

-- Deleting a bucket (which RLS allowed, and which only succeeds once it holds no object) takes
-- its uploads in progress with it and releases their parts, as S3's DeleteBucket does. Without
-- this, a stale upload would keep an emptied bucket from being deleted until it expired.
create function storage.remove_bucket_uploads() returns trigger
language plpgsql security definer set search_path = '' as $$
begin
    insert into storage.byte_journal (key, state)
    select p.version, 'released'
    from storage.s3_multipart_uploads_parts p
    join storage.s3_multipart_uploads u on u.id = p.upload_id
    where u.bucket_id = old.id
    on conflict (key) do nothing;
    delete from storage.s3_multipart_uploads where bucket_id = old.id;
    return old;
end
$$;

create trigger remove_bucket_uploads
    before delete on storage.buckets
    for each row execute function storage.remove_bucket_uploads();

revoke all on function storage.remove_bucket_uploads() from public;
revoke all on function storage.multipart_lock(text) from public;
revoke all on function storage.multipart_finish(text, text, integer[], double precision) from public;
revoke all on function storage.share_segments(text, text, double precision) from public;
grant execute on function storage.multipart_lock(text) to anon, authenticated, service_role;
grant execute on function storage.multipart_finish(text, text, integer[], double precision)
    to anon, authenticated, service_role;
grant execute on function storage.share_segments(text, text, double precision)
    to anon, authenticated, service_role;
