-- 0008_signed_upload_uses.sql
--
-- Signed upload URLs, as the server knows them. Signing records, under the token's id (its
-- `jti`), who signed: their role and all their claims, so that the URL's use can be judged as
-- the signer (an upload that has become an overwrite needs the signer's right to overwrite)
-- without putting the signer's claims in a URL that may be handed to anyone. A URL that may not
-- upsert uploads at most once, ever: its use is marked here in the same transaction as the row
-- it wrote (a failed upload leaves the URL usable; of two concurrent uses one wins). Records
-- are forgotten by the collector once their token has expired.
--
-- The server's own bookkeeping: never granted to the API roles. A signed write marks its use
-- through the security definer function below, which only works in a server session (see 0006).
--
-- Bucket ids may not contain '/': a signed URL names its object as '<bucket>/<name>', and the
-- REST routes take the bucket as one path segment. The API refused such ids already; this
-- refuses them from SQL too (not valid: a database holding one still migrates; signed URLs are
-- refused for it).

create table storage.signed_upload_uses (
    token_id text primary key,
    signer_role text not null,
    signer_claims jsonb not null,
    expires_at timestamptz not null,
    used_at timestamptz
);

create index signed_upload_uses_expiry_idx on storage.signed_upload_uses (expires_at);

revoke all on storage.signed_upload_uses from public, anon, authenticated, service_role;

-- Marks the token used, or raises unique_violation if it was. A token signed before this table
-- existed has no record: its use is recorded with what the token itself says of its signer.
create function storage.use_upload_token(
    p_token_id text, p_role text, p_claims jsonb, p_expires_at timestamptz
) returns void
language plpgsql security definer set search_path = '' as $$
begin
    perform storage.require_server_session();
    insert into storage.signed_upload_uses as u
        (token_id, signer_role, signer_claims, expires_at, used_at)
    values (p_token_id, p_role, p_claims, p_expires_at, now())
    on conflict (token_id) do update set used_at = now() where u.used_at is null;
    if not found then
        raise exception 'this signed upload URL has already been used'
            using errcode = 'unique_violation';
    end if;
end
$$;

revoke all on function storage.use_upload_token(text, text, jsonb, timestamptz) from public;
grant execute on function storage.use_upload_token(text, text, jsonb, timestamptz) to service_role;

alter table storage.buckets
    add constraint buckets_id_without_slash check (strpos(id, '/') = 0) not valid;
