-- 0003_functions.sql
--
-- Functions for RLS policies: identity (auth.*), object paths and the current
-- Storage operation (storage.*).
--
-- Settings read (all set transaction-locally by the server at the start of
-- every request transaction):
--   request.jwt.claims      the verified JWT claims as a JSON object
--   request.jwt.claim.sub   the sub claim        (preferred by auth.uid())
--   request.jwt.claim.role  the role claim       (preferred by auth.role())
--   storage.operation       the canonical operation name, e.g. 'storage.upload'
--
-- Design rules for policy helpers:
--   * security invoker, language sql, single expressions, no dynamic SQL, no
--     SET clause, so the planner inlines them into the policy;
--   * every function and table reference is schema-qualified (pg_catalog.,
--     storage.), so the caller's search_path cannot change what they call;
--   * path helpers are immutable; helpers reading settings are stable;
--   * operation names given as constants are resolved at plan time (see
--     storage.canonical_operation), so allow_*_operation cost one
--     current_setting() per row. Wrapping them as (select ...) in a policy
--     makes them once per statement, as for auth.uid().
--
-- Expected values (checked when these migrations were written):
--
--   storage.filename('a/b/c.png')          = 'c.png'
--   storage.filename('c.png')              = 'c.png'
--   storage.filename('a/b/')               = ''
--   storage.filename('')                   = ''
--   storage.filename('фото/снимок.JPG')    = 'снимок.JPG'
--
--   storage.foldername('a/b/c.png')        = '{a,b}'
--   storage.foldername('c.png')            = '{}'      (empty array, not null)
--   storage.foldername('a/b/')             = '{a,b}'
--   storage.foldername('')                 = '{}'
--   storage.foldername('/a/b')             = '{"",a}'  (segments are kept as they are)
--   storage.foldername('фото/снимок.JPG')  = '{фото}'
--
--   storage.extension('a/b/c.png')         = 'png'
--   storage.extension('a/b.tar.gz')        = 'gz'
--   storage.extension('a/b')               = ''
--   storage.extension('a.dir/b')           = ''       (only the last segment counts)
--   storage.extension('a/b/')              = ''
--   storage.extension('c.')                = ''
--   storage.extension('.bashrc')           = ''       (decision: leading dots mark a hidden
--   storage.extension('a/.bashrc')         = ''        file, they do not start an extension;
--   storage.extension('.config.json')      = 'json'    the rest is then read as usual)
--   storage.extension('фото/снимок.JPG')   = 'JPG'    (case is kept)
--   all three path helpers return null for a null name.
--
--   with storage.operation = 'storage.upload':
--     storage.operation()                                  = 'storage.upload'
--     storage.allow_only_operation('storage.upload')       = true
--     storage.allow_only_operation('upload')               = true
--     storage.allow_only_operation('storage.object.upload')= true   (Supabase alias)
--     storage.allow_only_operation('object.upload')        = true
--     storage.allow_only_operation('storage.overwrite')    = false
--     storage.allow_any_operation(array['move','upload'])  = true
--     storage.allow_any_operation(array['move'])           = false
--     storage.allow_any_operation('{}')                    = false
--   with storage.operation unset or '':
--     storage.operation() is null; allow_only_operation(x) = false; allow_any_operation(x) = false
--   only the argument is normalised / alias-mapped: the server must set
--   storage.operation to a canonical name (DESIGN.md section 4).
--
--   auth.uid()  = request.jwt.claim.sub, else request.jwt.claims->>'sub', else null
--   auth.role() = request.jwt.claim.role, else request.jwt.claims->>'role', else null
--   auth.jwt()  = request.jwt.claims as jsonb, else '{}'

-- ===========================================================================
-- auth.*: who is calling
--
-- CREATE OR REPLACE: an application may already ship auth functions with the
-- same signature (we keep them compatible); a pre-existing auth.uid()
-- returning another type (e.g. uuid) makes this file fail, on purpose.
-- ===========================================================================

create or replace function auth.uid()
returns text
language sql
stable
parallel safe
as $$
  select coalesce(
    nullif(pg_catalog.current_setting('request.jwt.claim.sub', true), ''),
    nullif(
      nullif(pg_catalog.current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub',
      '')
  )
$$;

comment on function auth.uid() is
  'The sub claim of the request JWT (text), or null when there is none.';

create or replace function auth.role()
returns text
language sql
stable
parallel safe
as $$
  select coalesce(
    nullif(pg_catalog.current_setting('request.jwt.claim.role', true), ''),
    nullif(
      nullif(pg_catalog.current_setting('request.jwt.claims', true), '')::jsonb ->> 'role',
      '')
  )
$$;

comment on function auth.role() is
  'The role claim of the request JWT (anon, authenticated, service_role, ...), or null.';

create or replace function auth.jwt()
returns jsonb
language sql
stable
parallel safe
as $$
  select coalesce(
    nullif(pg_catalog.current_setting('request.jwt.claims', true), ''),
    '{}'
  )::jsonb
$$;

comment on function auth.jwt() is
  'All claims of the request JWT as jsonb; {} when there is no token.';

-- ===========================================================================
-- storage.*: object paths
-- reverse() and split_part() work on characters, so multibyte names are fine.
-- ===========================================================================

create function storage.filename(name text)
returns text
language sql
immutable
parallel safe
as $$
  -- the text after the last '/', or the whole name when there is none
  select pg_catalog.reverse(pg_catalog.split_part(pg_catalog.reverse(name), '/', 1))
$$;

comment on function storage.filename(text) is
  'Last path segment of an object name: a/b/c.png -> c.png; a/b/ -> empty string.';

create function storage.foldername(name text)
returns text[]
language sql
immutable
parallel safe
as $$
  -- every segment but the last; slicing [1:0] gives the empty array
  select (pg_catalog.string_to_array(name, '/'))
           [1 : pg_catalog.cardinality(pg_catalog.string_to_array(name, '/')) - 1]
$$;

comment on function storage.foldername(text) is
  'Folders of an object name: a/b/c.png -> {a,b}; c.png -> {}.';

create function storage.extension(name text)
returns text
language sql
immutable
parallel safe
as $$
  -- Leading dots of the filename mark a hidden file ('.bashrc'), they do not
  -- start an extension: when the filename has no '.' after them the
  -- extension is ''; otherwise it is the text after the filename's last '.'.
  select case
           when pg_catalog.strpos(pg_catalog.ltrim(storage.filename(name), '.'), '.') = 0 then ''
           else pg_catalog.reverse(pg_catalog.split_part(pg_catalog.reverse(storage.filename(name)), '.', 1))
         end
$$;

comment on function storage.extension(text) is
  'Extension of the filename without the dot: a/b.tar.gz -> gz; a/b -> empty; .bashrc -> empty.';

-- ===========================================================================
-- storage.*: the current operation
-- ===========================================================================

-- Well-known operation names of Supabase Storage (and names without the
-- "storage." prefix after normalisation) mapped onto pgstorage's canonical
-- catalog. Every canonical name also maps to itself, so the table doubles as
-- the catalog. Aliases are coarser than the originals (e.g. a signed upload
-- is a storage.upload): a policy allowing an alias allows its canonical
-- operation on every protocol.
create table storage.operation_aliases (
  alias     text primary key check (alias = pg_catalog.lower(alias) and alias like 'storage.%'),
  operation text not null check (operation = pg_catalog.lower(operation) and operation like 'storage.%')
);

comment on table storage.operation_aliases is
  'Operation names accepted by storage.allow_*_operation(), mapped to pgstorage canonical operations.';

insert into storage.operation_aliases (alias, operation) values
  -- canonical catalog (DESIGN.md section 4)
  ('storage.upload',                        'storage.upload'),
  ('storage.overwrite',                     'storage.overwrite'),
  ('storage.update_metadata',               'storage.update_metadata'),
  ('storage.move',                          'storage.move'),
  ('storage.copy',                          'storage.copy'),
  ('storage.delete',                        'storage.delete'),
  ('storage.download',                      'storage.download'),
  ('storage.info',                          'storage.info'),
  ('storage.list',                          'storage.list'),
  ('storage.sign',                          'storage.sign'),
  ('storage.sign_upload',                   'storage.sign_upload'),
  ('storage.multipart',                     'storage.multipart'),
  ('storage.bucket.create',                 'storage.bucket.create'),
  ('storage.bucket.update',                 'storage.bucket.update'),
  ('storage.bucket.delete',                 'storage.bucket.delete'),
  ('storage.bucket.empty',                  'storage.bucket.empty'),
  ('storage.bucket.get',                    'storage.bucket.get'),
  ('storage.bucket.list',                   'storage.bucket.list'),
  -- Supabase Storage REST operation names
  ('storage.object.upload',                 'storage.upload'),
  ('storage.object.upload_signed',          'storage.upload'),
  ('storage.object.upload_update',          'storage.overwrite'),
  ('storage.object.update',                 'storage.overwrite'),
  ('storage.object.move',                   'storage.move'),
  ('storage.object.copy',                   'storage.copy'),
  ('storage.object.delete',                 'storage.delete'),
  ('storage.object.delete_many',            'storage.delete'),
  ('storage.object.get_authenticated',      'storage.download'),
  ('storage.object.get_public',             'storage.download'),
  ('storage.object.get_signed',             'storage.download'),
  ('storage.object.info',                   'storage.info'),
  ('storage.object.info_authenticated',     'storage.info'),
  ('storage.object.info_public',            'storage.info'),
  ('storage.object.list',                   'storage.list'),
  ('storage.object.list_v2',                'storage.list'),
  ('storage.object.sign',                   'storage.sign'),
  ('storage.object.sign_many',              'storage.sign'),
  ('storage.object.upload_sign',            'storage.sign_upload'),
  ('storage.object.sign_upload_url',        'storage.sign_upload'),
  -- Supabase Storage S3 operation names
  ('storage.s3.upload',                     'storage.upload'),
  ('storage.s3.upload.create_multipart',    'storage.multipart'),
  ('storage.s3.upload.part',                'storage.multipart'),
  ('storage.s3.upload.part_copy',           'storage.multipart'),
  ('storage.s3.upload.list_multipart',      'storage.multipart'),
  ('storage.s3.upload.list_parts',          'storage.multipart'),
  ('storage.s3.upload.abort_multipart',     'storage.multipart'),
  ('storage.s3.upload.complete_multipart',  'storage.upload'),
  ('storage.s3.object.get',                 'storage.download'),
  ('storage.s3.object.info',                'storage.info'),
  ('storage.s3.object.list',                'storage.list'),
  ('storage.s3.object.copy',                'storage.copy'),
  ('storage.s3.object.delete',              'storage.delete'),
  ('storage.s3.object.delete_many',         'storage.delete'),
  ('storage.s3.bucket.create',              'storage.bucket.create'),
  ('storage.s3.bucket.delete',              'storage.bucket.delete'),
  ('storage.s3.bucket.get',                 'storage.bucket.get'),
  ('storage.s3.bucket.head',                'storage.bucket.get'),
  ('storage.s3.bucket.list',                'storage.bucket.list'),
  -- Supabase Storage resumable (TUS) operation names
  ('storage.tus.upload.create',             'storage.multipart'),
  ('storage.tus.upload.part',               'storage.multipart'),
  ('storage.tus.upload.get',                'storage.multipart'),
  ('storage.tus.upload.delete',             'storage.multipart');

-- read only for the API roles (RLS is not needed: the content is public knowledge)
grant select on table storage.operation_aliases to anon, authenticated, service_role;

create function storage.operation()
returns text
language sql
stable
parallel safe
as $$
  select nullif(pg_catalog.current_setting('storage.operation', true), '')
$$;

comment on function storage.operation() is
  'Canonical name of the Storage API operation in progress (e.g. storage.upload), or null. Set by the server.';

-- Normalise an operation name: lower case, "storage." prefix added when
-- missing, then mapped through storage.operation_aliases. Unknown names are
-- returned normalised but unmapped (so they only match themselves).
--
-- Declared IMMUTABLE although it reads storage.operation_aliases: that table
-- is static reference data that only migrations change. This lets the planner
-- evaluate canonical_operation('constant') once, at plan time, instead of once
-- per row: a policy's storage.allow_only_operation('upload') is reduced to
-- current_setting('storage.operation') = 'storage.upload'.
create function storage.canonical_operation(op text)
returns text
language sql
immutable
strict
parallel safe
as $$
  select coalesce(
           (select a.operation from storage.operation_aliases as a where a.alias = n.op),
           n.op)
  from (
    select case
             when pg_catalog.starts_with(pg_catalog.lower(op), 'storage.') then pg_catalog.lower(op)
             else 'storage.' || pg_catalog.lower(op)
           end as op
  ) as n
$$;

comment on function storage.canonical_operation(text) is
  'Normalised canonical operation name: upload, storage.upload and storage.object.upload all give storage.upload.';

-- The array form (same IMMUTABLE reasoning); null elements are dropped.
create function storage.canonical_operations(ops text[])
returns text[]
language sql
immutable
strict
parallel safe
as $$
  select pg_catalog.array_agg(storage.canonical_operation(o.op))
  from pg_catalog.unnest(ops) as o(op)
  where o.op is not null
$$;

comment on function storage.canonical_operations(text[]) is
  'storage.canonical_operation() applied to every element of an array.';

-- The two policy helpers are single expressions so the planner inlines them;
-- with a constant argument only a current_setting() and a comparison remain
-- per row. They never return null: false when no operation is set. The
-- current operation is compared as set by the server (a canonical name).
create function storage.allow_only_operation(op text)
returns boolean
language sql
stable
parallel safe
as $$
  select coalesce(storage.operation() = storage.canonical_operation(op), false)
$$;

comment on function storage.allow_only_operation(text) is
  'True when the current operation is op (with or without the storage. prefix, or a known alias).';

create function storage.allow_any_operation(ops text[])
returns boolean
language sql
stable
parallel safe
as $$
  select coalesce(storage.operation() = any (storage.canonical_operations(ops)), false)
$$;

comment on function storage.allow_any_operation(text[]) is
  'True when the current operation is any of ops (with or without the storage. prefix, or known aliases).';

-- ===========================================================================
-- Privileges: PUBLIC keeps its default EXECUTE (applications may use these
-- in column defaults); the API roles are granted explicitly.
-- ===========================================================================
grant execute on function
  auth.uid(), auth.role(), auth.jwt(),
  storage.filename(text), storage.foldername(text), storage.extension(text),
  storage.operation(), storage.canonical_operation(text), storage.canonical_operations(text[]),
  storage.allow_only_operation(text), storage.allow_any_operation(text[])
  to anon, authenticated, service_role;
