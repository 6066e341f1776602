-- 0014_postgrest_files.sql
--
-- Files straight from SQL, for applications that reach their database through PostgREST (or a
-- Data API built on it): storage.get_file(bucket, name) and storage.get_metadata(bucket, name)
-- (seed 000, DESIGN.md §11, docs/postgrest.md).
--
-- Both are security invoker: the caller's RLS policies decide, under storage.download and
-- storage.info, exactly as through the REST API. Where the bytes are decides the answer:
--   * in this database (the postgres store): get_file assembles the chunks here and returns
--     them, up to a cap the server publishes (PostgREST holds a whole response in memory);
--   * elsewhere (local disk, S3): get_file answers 307 with a Location header: a short-lived
--     signed download URL of the pgstorage server, signed here with the server's key.
--
-- The key (derived from the server's JWT secret, never the secret itself) lives in
-- storage.sql_file_settings, which no API role can read; the server writes it at every start
-- (so a new secret replaces the old key at once). Only
-- storage.sign_download_url, a security definer function owned by pgstorage_server, reads it.
-- The token it makes carries the invoker's role and sub (signer_role / owner): the server serves
-- it under the signer's policies again, so calling the signer directly gains nobody anything.

-- ---------------------------------------------------------------------------
-- PostgREST's "any media type" handler: a function returning a domain named "*/*" may answer
-- any Accept (including */*) with the bytes it returns and the Content-Type it sets. PostgREST
-- finds handlers by the domain's name; it lives in storage, beside the functions, and is created
-- once (an application's own "*/*" in another schema is left alone).
-- ---------------------------------------------------------------------------
do $$
begin
    create domain storage."*/*" as bytea;
exception when duplicate_object then
    if (select t.typbasetype from pg_catalog.pg_type t
        where t.typname = '*/*' and t.typnamespace = 'storage'::regnamespace)
       is distinct from 'bytea'::regtype then
        raise exception 'storage."*/*" exists but is not a domain over bytea';
    end if;
end
$$;

-- The RLS checks below look objects up by their byte key.
create index objects_version_idx on storage.objects (version);

-- ---------------------------------------------------------------------------
-- What the server publishes for SQL downloads. One row, written by the server at start-up.
-- ---------------------------------------------------------------------------
create table storage.sql_file_settings (
    id                   boolean primary key default true check (id),
    algorithm            text not null check (algorithm = 'HS256'),
    secret               bytea not null,
    public_url           text not null,
    url_lifetime_seconds integer not null check (url_lifetime_seconds > 0),
    max_inline_size      bigint not null check (max_inline_size >= 0),
    updated_at           timestamptz not null default now()
);
revoke all on storage.sql_file_settings from public, anon, authenticated, service_role;
grant select on storage.sql_file_settings to pgstorage_server;

comment on table storage.sql_file_settings is
    'The pgstorage server''s signing key, public URL and SQL download limits (written at start-up). Never granted to API roles.';

-- ---------------------------------------------------------------------------
-- Bytes in the database are readable by exactly those who can see their object's row (under
-- the operation in progress): get_file, running as the caller, assembles them under RLS. The
-- server's own reads and writes are the owner's (or security definer), which RLS does not stop.
-- ---------------------------------------------------------------------------
alter table storage.object_segments enable row level security;
create policy "pgstorage: segments of visible objects" on storage.object_segments
    for select to anon, authenticated
    using (exists (select 1 from storage.objects o where o.version = object_segments.version));
grant select on storage.object_segments to anon, authenticated, service_role;

alter table storage.byte_chunks enable row level security;
create policy "pgstorage: bytes of visible objects" on storage.byte_chunks
    for select to anon, authenticated
    using (exists (select 1 from storage.objects o where o.version = byte_chunks.key)
           or exists (select 1 from storage.object_segments s where s.key = byte_chunks.key));
grant select on storage.byte_chunks to anon, authenticated, service_role;

-- ---------------------------------------------------------------------------
-- Small helpers (pure, no privileges).
-- ---------------------------------------------------------------------------

-- Percent-encodes the UTF-8 bytes of p_text, keeping the ASCII characters that match p_keep
-- (a one-character regular expression class).
create function storage.percent_encode(p_text text, p_keep text)
returns text
language sql immutable strict parallel safe
set search_path = ''
as $$
    select coalesce(pg_catalog.string_agg(
        case when b.byte < 128 and pg_catalog.chr(b.byte) ~ p_keep
             then pg_catalog.chr(b.byte)
             else '%' || pg_catalog.upper(pg_catalog.lpad(pg_catalog.to_hex(b.byte), 2, '0'))
        end, '' order by b.i), '')
    from (select i, pg_catalog.get_byte(raw, i) as byte
          from (select pg_catalog.convert_to(p_text, 'UTF8') as raw) r,
               pg_catalog.generate_series(0, pg_catalog.length(r.raw) - 1) as i) b
$$;

-- base64url without padding (JWT, RFC 7515).
create function storage.base64url(p_data bytea)
returns text
language sql immutable strict parallel safe
set search_path = ''
as $$
    select pg_catalog.translate(pg_catalog.encode(p_data, 'base64'), E'+/=\n', '-_')
$$;

-- HMAC-SHA256 (RFC 2104) with core sha256() (PostgreSQL 11+), so that no extension is needed.
create function storage.hmac_sha256(p_key bytea, p_message bytea)
returns bytea
language plpgsql immutable strict parallel safe
set search_path = ''
as $$
declare
    k bytea := p_key;
    inner_key bytea;
    outer_key bytea;
begin
    if pg_catalog.length(k) > 64 then
        k := pg_catalog.sha256(k);
    end if;
    k := k || pg_catalog.decode(pg_catalog.repeat('00', 64 - pg_catalog.length(k)), 'hex');
    inner_key := k;
    outer_key := k;
    for i in 0..63 loop
        inner_key := pg_catalog.set_byte(inner_key, i, pg_catalog.get_byte(k, i) # 54);  -- 0x36
        outer_key := pg_catalog.set_byte(outer_key, i, pg_catalog.get_byte(k, i) # 92);  -- 0x5c
    end loop;
    return pg_catalog.sha256(outer_key || pg_catalog.sha256(inner_key || p_message));
end
$$;

-- The largest object get_file returns from the database (the rest of the settings stay secret).
create function storage.sql_file_max_size()
returns bigint
language sql stable security definer
set search_path = ''
as $$
    -- 25 MB until a server has published its own setting.
    select coalesce((select s.max_inline_size from storage.sql_file_settings s), 25000000)
$$;

-- ---------------------------------------------------------------------------
-- Signing, inside the database. A token exactly like the server's own signed download URLs
-- (HS256 JWT: url, scope, aud, iss, iat, exp), plus the invoker's role and sub, which the
-- server uses to check the download against the policies once more when the URL is used.
-- ---------------------------------------------------------------------------
create function storage.sign_download_url(p_bucket text, p_name text)
returns text
language plpgsql volatile security definer
set search_path = ''
as $$
declare
    s storage.sql_file_settings;
    -- SET ROLE (what PostgREST does) is the invoker; security definer does not change it.
    signer text := coalesce(
        nullif(pg_catalog.current_setting('role'), 'none'), session_user);
    sub text := auth.uid();
    now_s bigint := floor(extract(epoch from clock_timestamp()));
    header text := '{"typ":"JWT","alg":"HS256"}';
    claims jsonb;
    signed text;
begin
    select * into s from storage.sql_file_settings;
    if not found then
        raise sqlstate 'PT503' using
            message = 'the pgstorage server has not published its signing key',
            hint = 'start pgstorage on this database once; it publishes the key at start-up';
    end if;
    if p_bucket like '%/%' then
        raise sqlstate 'PT400' using
            message = 'objects of a bucket whose id contains / cannot be signed';
    end if;
    claims := pg_catalog.jsonb_build_object(
        'url', p_bucket || '/' || p_name,
        'scope', 'download',
        'aud', 'pgstorage:signed-url',
        'iss', 'pgstorage',
        'iat', now_s,
        'exp', now_s + s.url_lifetime_seconds,
        'signer_role', signer);
    if sub is not null then
        claims := claims || pg_catalog.jsonb_build_object('owner', sub);
    end if;
    signed := storage.base64url(pg_catalog.convert_to(header, 'UTF8')) || '.'
        || storage.base64url(pg_catalog.convert_to(claims::text, 'UTF8'));
    return pg_catalog.rtrim(s.public_url, '/')
        || '/object/sign/'
        || storage.percent_encode(p_bucket, '[A-Za-z0-9._~-]') || '/'
        || storage.percent_encode(p_name, '[A-Za-z0-9._~/-]')
        || '?token=' || signed || '.'
        || storage.base64url(storage.hmac_sha256(s.secret, pg_catalog.convert_to(signed, 'UTF8')));
end
$$;

-- Owned by the marker role that may read the key and nothing else. A migrating role that cannot
-- hand it over (not a superuser, not allowed to SET ROLE pgstorage_server) keeps it, and says so.
do $$
begin
    alter function storage.sign_download_url(text, text) owner to pgstorage_server;
    alter function storage.sql_file_max_size() owner to pgstorage_server;
exception when insufficient_privilege then
    raise notice 'storage.sign_download_url stays owned by %: it could not be given to pgstorage_server', current_user;
end
$$;

-- What the owner needs to run them (the marker role has no other privileges).
grant usage on schema storage, auth to pgstorage_server;

revoke all on function storage.sign_download_url(text, text) from public;
revoke all on function storage.sql_file_max_size() from public;
grant execute on function storage.sign_download_url(text, text) to anon, authenticated, service_role;
grant execute on function storage.sql_file_max_size() to anon, authenticated, service_role;

-- An HTTP header list as PostgREST's response.headers wants it: a JSON array of one-key
-- objects, in order, without the headers whose value is null.
create function storage.response_headers(p_names text[], p_values text[])
returns text
language sql immutable parallel safe
set search_path = ''
as $$
    select coalesce(pg_catalog.json_agg(pg_catalog.json_build_object(h.name, h.value) order by h.ord), '[]')::text
    from rows from (pg_catalog.unnest(p_names), pg_catalog.unnest(p_values)) with ordinality as h(name, value, ord)
    where h.value is not null
$$;

-- ---------------------------------------------------------------------------
-- storage.get_file(bucket, name): GET /rpc/get_file?bucket=..&name=..
-- ---------------------------------------------------------------------------
create function storage.get_file(bucket text, name text)
returns storage."*/*"
language plpgsql stable security invoker
set search_path = ''
-- What storage.operation() reports to the policies while this runs (restored on return).
set storage.operation = 'storage.download'
as $$
declare
    o record;
    in_database boolean;
    segmented boolean;
    bytes bytea;
    size bigint;
    cap bigint;
    media text;
    essence text;
    inert boolean;
    filename text;
    modified timestamptz;
begin
    select ob.bucket_id, ob.name, ob.version, ob.metadata, ob.updated_at into o
    from storage.objects ob
    where ob.bucket_id = get_file.bucket and ob.name = get_file.name;
    if not found or o.version is null then
        -- Missing and invisible are one answer, as in the REST API.
        raise sqlstate 'PT404' using
            message = 'Object not found',
            detail = 'The object does not exist or you do not have access to it';
    end if;

    segmented := exists (select 1 from storage.object_segments s where s.version = o.version);
    in_database := case
        when segmented then exists (
            select 1 from storage.object_segments s
            join storage.byte_chunks c on c.key = s.key and c.seq = 0
            where s.version = o.version)
        else exists (select 1 from storage.byte_chunks c where c.key = o.version and c.seq = 0)
    end;

    if not in_database then
        perform pg_catalog.set_config('response.status', '307', true);
        perform pg_catalog.set_config('response.headers', storage.response_headers(
            array['Location', 'Cache-Control'],
            array[storage.sign_download_url(o.bucket_id, o.name), 'no-store']), true);
        return ''::bytea;
    end if;

    size := (o.metadata ->> 'size')::bigint;
    cap := storage.sql_file_max_size();
    if size > cap then
        raise sqlstate '54000' using
            message = pg_catalog.format('the object is %s bytes, more than the %s bytes get_file returns', size, cap),
            hint = 'download it through the pgstorage server (a signed URL) instead';
    end if;
    if segmented then
        select pg_catalog.string_agg(c.data, ''::bytea order by s.seq, c.seq) into bytes
        from storage.object_segments s
        join storage.byte_chunks c on c.key = s.key
        where s.version = o.version;
    else
        select pg_catalog.string_agg(c.data, ''::bytea order by c.seq) into bytes
        from storage.byte_chunks c
        where c.key = o.version;
    end if;
    bytes := coalesce(bytes, ''::bytea);

    media := o.metadata ->> 'mimetype';
    if media is null or media !~ '^[!-~][ -~]*$' then
        media := 'application/octet-stream';
    end if;
    essence := pg_catalog.lower(pg_catalog.btrim(pg_catalog.split_part(media, ';', 1)));
    -- As the REST API does (docs/security.md, core::media_type): only inert types are shown
    -- inline; anything that could run as a page of the API's origin is a download.
    inert := pg_catalog.split_part(essence, '/', 1) in ('audio', 'video', 'font')
        or essence = any (array[
            'image/png', 'image/jpeg', 'image/pjpeg', 'image/gif', 'image/webp', 'image/avif',
            'image/apng', 'image/bmp', 'image/tiff', 'image/heic', 'image/heif', 'image/jxl',
            'image/x-icon', 'image/vnd.microsoft.icon', 'text/plain', 'text/csv',
            'text/markdown', 'text/css', 'application/json', 'application/pdf',
            'application/octet-stream', 'application/zip', 'application/gzip']);
    filename := storage.filename(o.name);
    modified := coalesce((o.metadata ->> 'lastModified')::timestamptz, o.updated_at);
    perform pg_catalog.set_config('response.headers', storage.response_headers(
        array['Content-Type', 'Content-Length', 'Content-Disposition', 'Cache-Control', 'ETag',
              'Last-Modified', 'X-Content-Type-Options', 'Content-Security-Policy'],
        array[
            media,
            pg_catalog.length(bytes)::text,
            -- RFC 6266: an ASCII fallback and the exact name (RFC 8187).
            case when inert then 'inline' else 'attachment' end || '; filename="'
                || pg_catalog.translate(pg_catalog.regexp_replace(filename, '[^ -~]', '_', 'g'), '"\', '__')
                || '"; filename*=UTF-8''''' || storage.percent_encode(filename, '[A-Za-z0-9!#$&+.^_`|~-]'),
            coalesce(o.metadata ->> 'cacheControl', 'no-cache'),
            o.metadata ->> 'eTag',
            pg_catalog.to_char(modified at time zone 'UTC', 'Dy, DD Mon YYYY HH24:MI:SS "GMT"'),
            'nosniff',
            -- Served from the API's origin: active content (HTML, SVG) must not run there. PDF
            -- viewers refuse a sandbox (see core::media_type).
            case when essence = 'application/pdf' then null else 'sandbox' end
        ]), true);
    return bytes;
end
$$;

comment on function storage.get_file(text, text) is
    'The object''s bytes for PostgREST (GET /rpc/get_file?bucket=..&name=..), decided by the caller''s RLS under storage.download; a 307 to a signed URL when the bytes are not in the database. See docs/postgrest.md.';

-- ---------------------------------------------------------------------------
-- storage.get_metadata(bucket, name): GET /rpc/get_metadata?bucket=..&name=..
-- ---------------------------------------------------------------------------
create function storage.get_metadata(bucket text, name text)
returns json
language plpgsql stable security invoker
set search_path = ''
set storage.operation = 'storage.info'
as $$
declare
    result json;
begin
    select pg_catalog.json_build_object(
        'id', ob.id,
        'bucket', ob.bucket_id,
        'name', ob.name,
        'size', (ob.metadata ->> 'size')::bigint,
        'mimetype', ob.metadata ->> 'mimetype',
        'sha256', ob.metadata ->> 'sha256',
        'eTag', ob.metadata ->> 'eTag',
        'cacheControl', ob.metadata ->> 'cacheControl',
        'lastModified', ob.metadata ->> 'lastModified',
        'createdAt', ob.created_at,
        'updatedAt', ob.updated_at,
        'metadata', ob.user_metadata)
    into result
    from storage.objects ob
    where ob.bucket_id = get_metadata.bucket and ob.name = get_metadata.name
      and ob.version is not null;
    if result is null then
        raise sqlstate 'PT404' using
            message = 'Object not found',
            detail = 'The object does not exist or you do not have access to it';
    end if;
    return result;
end
$$;

comment on function storage.get_metadata(text, text) is
    'The object''s metadata as JSON for PostgREST (GET /rpc/get_metadata?bucket=..&name=..), decided by the caller''s RLS under storage.info. See docs/postgrest.md.';

grant execute on function storage.get_file(text, text) to anon, authenticated, service_role;
grant execute on function storage.get_metadata(text, text) to anon, authenticated, service_role;
