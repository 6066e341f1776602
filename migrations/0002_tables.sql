-- 0002_tables.sql
--
-- The storage tables (contract: DESIGN.md section 2).
--
-- Tables are created with plain CREATE TABLE (not IF NOT EXISTS) on purpose:
-- if a table of the same name already exists in `storage` it was not created
-- by pgstorage (the runner records this file once applied), and silently
-- adopting a table of unknown shape would be worse than failing loudly.

-- ---------------------------------------------------------------------------
-- storage.buckets
-- ---------------------------------------------------------------------------
create table storage.buckets (
  id                 text primary key,
  name               text not null,          -- at most 100 characters (trigger in 0004)
  public             boolean default false,  -- only a flag read by policies; never bypasses RLS
  avif_autodetection boolean default false,
  file_size_limit    bigint,                 -- bytes per object; null = no bucket limit
  allowed_mime_types text[],                 -- null = any type
  owner_id           text,                   -- sub of the creator (written by the server)
  created_at         timestamptz default now(),
  updated_at         timestamptz default now(),
  -- a limit of 0 would forbid every upload including empty files; null means "no limit"
  constraint buckets_file_size_limit_check
    check (file_size_limit is null or file_size_limit > 0)
);

comment on table storage.buckets is
  'pgstorage buckets. Access is decided by RLS policies only; public is a flag for policies to read.';

-- ---------------------------------------------------------------------------
-- storage.objects
--
-- name uses collation "C": byte order, which is the order S3 and the listing
-- APIs use, and which lets the btree below serve both
--   ... where bucket_id = $1 and name > $2 order by name limit $3
-- and prefix listing
--   ... where bucket_id = $1 and name like 'a/b/%'
-- (with a "C" collation the planner turns a left-anchored LIKE into the range
-- name >= 'a/b/' and name < 'a/b0', an index range scan). Comparing name with
-- a default-collation column of an application table (e.g. in a policy) is
-- fine: the non-default "C" collation simply wins.
-- ---------------------------------------------------------------------------
create table storage.objects (
  id               uuid primary key default gen_random_uuid(),
  bucket_id        text not null references storage.buckets (id),  -- no cascade: a bucket must be emptied first
  name             text collate "C" not null,                      -- object key, may contain '/'
  version          text,                                           -- server-written version of the bytes
  owner_id         text,                                           -- sub of the uploader (server-written)
  metadata         jsonb,                                          -- server-written: size, mimetype, cacheControl, lastModified, eTag, contentLength, sha256
  user_metadata    jsonb,                                          -- the client's own JSON
  path_tokens      text[] generated always as (string_to_array(name, '/')) stored,
  last_accessed_at timestamptz default now(),
  created_at       timestamptz default now(),
  updated_at       timestamptz default now(),
  -- one key per bucket; its index (bucket_id, name "C") is also the listing index
  constraint objects_bucket_id_name_key unique (bucket_id, name)
);

comment on table storage.objects is
  'pgstorage objects, one row per object. Access is decided by RLS policies only; direct DELETE is refused (0004).';

-- ---------------------------------------------------------------------------
-- S3 multipart uploads (also used for resumable uploads).
-- ---------------------------------------------------------------------------
create table storage.s3_multipart_uploads (
  id               text primary key,
  in_progress_size bigint not null default 0 check (in_progress_size >= 0),
  upload_signature text not null,
  bucket_id        text not null references storage.buckets (id),
  key              text collate "C" not null,
  version          text not null,
  owner_id         text,
  user_metadata    jsonb,
  created_at       timestamptz not null default now()
);

-- ListMultipartUploads: by bucket, key (prefix / key-marker), then age.
create index s3_multipart_uploads_bucket_key_created_idx
  on storage.s3_multipart_uploads (bucket_id, key, created_at);

create table storage.s3_multipart_uploads_parts (
  id          uuid primary key default gen_random_uuid(),
  upload_id   text not null references storage.s3_multipart_uploads (id) on delete cascade,
  size        bigint not null default 0 check (size >= 0),
  part_number int not null,
  bucket_id   text not null references storage.buckets (id),
  key         text collate "C" not null,
  etag        text not null,
  owner_id    text,
  version     text not null,
  created_at  timestamptz not null default now()
);

-- ListParts / CompleteMultipartUpload, and the ON DELETE CASCADE from uploads.
-- Not unique: a part number may be uploaded again; the server picks the latest.
create index s3_multipart_uploads_parts_upload_part_idx
  on storage.s3_multipart_uploads_parts (upload_id, part_number);

-- ---------------------------------------------------------------------------
-- Privileges.
--
-- buckets/objects: the three API roles get ALL (contract), RLS is the only gate.
-- We then take back TRUNCATE (it would bypass RLS and the protect_delete
-- trigger's row checks entirely) and TRIGGER (an API role must never be able
-- to attach triggers that later run as other users). 0004 also adds a BEFORE
-- TRUNCATE trigger, which covers roles that still can truncate (the owner).
--
-- multipart tables: anon/authenticated may only SELECT (still filtered by RLS,
-- so without a policy they see nothing); service_role gets ALL (minus
-- TRUNCATE/TRIGGER for consistency).
-- ---------------------------------------------------------------------------
grant all on table storage.buckets, storage.objects to anon, authenticated, service_role;
grant select on table storage.s3_multipart_uploads, storage.s3_multipart_uploads_parts to anon, authenticated;
grant all on table storage.s3_multipart_uploads, storage.s3_multipart_uploads_parts to service_role;

revoke truncate, trigger
  on table storage.buckets, storage.objects,
           storage.s3_multipart_uploads, storage.s3_multipart_uploads_parts
  from anon, authenticated, service_role;

-- ---------------------------------------------------------------------------
-- Row level security: enabled, no policies => everything denied by default.
-- service_role has BYPASSRLS. The table owner (the migrating role) is not
-- subject to RLS (no FORCE), which the server's maintenance relies on.
-- ---------------------------------------------------------------------------
alter table storage.buckets enable row level security;
alter table storage.objects enable row level security;
alter table storage.s3_multipart_uploads enable row level security;
alter table storage.s3_multipart_uploads_parts enable row level security;
