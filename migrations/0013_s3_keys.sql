-- 0013_s3_keys.sql
--
-- S3 access keys kept in the database (DESIGN §6): each key pair is bound to a role and claims,
-- so a plain AWS tool signing with it runs under RLS exactly like a request with that JWT.
--
-- SigV4 needs the secret itself back to verify a signature (it is an HMAC key, not a
-- password), so it cannot be hashed: it is stored sealed (AES-256-GCM) under a key derived
-- from the server's configuration, and only the server opens it.
--
-- The table is the server's own bookkeeping: never granted to the API roles.

create table if not exists storage.s3_keys (
    access_key_id text primary key,
    secret_sealed bytea not null,
    role text not null,
    claims jsonb not null default '{}'::jsonb check (jsonb_typeof(claims) = 'object'),
    description text,
    created_at timestamptz not null default now(),
    revoked_at timestamptz
);

revoke all on storage.s3_keys from public, anon, authenticated, service_role;
