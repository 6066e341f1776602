-- 0008_signed_upload_uses.sql
--
-- Signed upload URLs that may not upsert upload at most once, ever: each use is recorded here,
-- keyed by the token's id, in the same transaction as the row it wrote (so a failed upload
-- leaves the token usable, and of two concurrent uses one wins). Records are forgotten by the
-- collector once their token has expired. The server's own bookkeeping: never granted to the
-- API roles; the signed write records its use through the security definer function below,
-- which only works in a server session (see 0006).
--
-- Bucket ids may not contain '/': a signed URL names its object as '<bucket>/<name>', and the
-- REST routes take the bucket as one path segment. The API refused such ids already; this
-- refuses them from SQL too (not valid: a database holding one still migrates; signed URLs are
-- refused for it).

create table storage.signed_upload_uses (
    token_id text primary key,
    expires_at timestamptz not null,
    used_at timestamptz not null default now()
);

create index signed_upload_uses_expiry_idx on storage.signed_upload_uses (expires_at);

revoke all on storage.signed_upload_uses from public, anon, authenticated, service_role;

create function storage.use_upload_token(p_token_id text, p_expires_at timestamptz) returns void
language plpgsql security definer set search_path = '' as $$
begin
    perform storage.require_server_session();
    insert into storage.signed_upload_uses (token_id, expires_at)
    values (p_token_id, p_expires_at);
end
$$;

revoke all on function storage.use_upload_token(text, timestamptz) from public;
grant execute on function storage.use_upload_token(text, timestamptz) to service_role;

alter table storage.buckets
    add constraint buckets_id_without_slash check (strpos(id, '/') = 0) not valid;
