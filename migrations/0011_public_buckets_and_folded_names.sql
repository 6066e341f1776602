-- 0011_public_buckets_and_folded_names.sql
--
-- 1. Public buckets are visible to anon and authenticated.
--
-- The seed's public-read pattern is an objects policy whose subquery reads
-- storage.buckets.public. That subquery runs as the caller, under the buckets' own RLS: with no
-- SELECT policy on storage.buckets, anon sees no bucket and the pattern serves nothing. This
-- policy makes the seed's example work as written. It shows the rows of public buckets only
-- (their id, name and limits; never an object) and can be dropped like any other policy:
--
--     drop policy public_buckets_are_visible on storage.buckets;
--
-- A database that already has it (a re-created schema) keeps its own.
do $$
begin
    if not exists (
        select 1 from pg_catalog.pg_policies
         where schemaname = 'storage' and tablename = 'buckets'
           and policyname = 'public_buckets_are_visible'
    ) then
        create policy public_buckets_are_visible on storage.buckets
            for select to anon, authenticated
            using (public);
    end if;
end $$;

-- 2. One level of a folder in Supabase's name order.
--
-- Supabase Storage lists a level (the v1 list API) sorted by lower(name) collate "C", folders
-- and files interleaved. The walk that lists a page in time proportional to the page needs that
-- order in an index. A stored column rather than an expression index: under Row Level
-- Security, PostgreSQL only uses leakproof conditions as index conditions, and lower() is not
-- leakproof while a comparison of a plain column is (see 0007). The column inherits the name's
-- "C" collation, so lower() folds ASCII letters only, whatever the database's locale.
alter table storage.objects
    add column folded_name text collate "C" generated always as (pg_catalog.lower(name)) stored;

create index objects_bucket_folded_name_idx on storage.objects (bucket_id, folded_name, name);
