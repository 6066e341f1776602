-- Policies the client suites run under (applied as superuser by tests/clients.rs before a suite
-- starts). Buckets themselves are created by the suites, through the clients, with the
-- service_role key.

-- The seed's public-read policy. Its `exists (select ... from storage.buckets)` runs as the
-- caller, under the buckets' own RLS, and finds the public buckets through the policy that
-- pgstorage ships (public_buckets_are_visible, migration 0011). Limited to buckets whose id
-- ends in '-readable', so that every suite also has a public bucket that no policy opens: its
-- public URL must answer 404, since `public` does not bypass RLS.
create policy objects_public_read on storage.objects
    for select to anon, authenticated
    using (bucket_id like '%-readable'
           and exists (select 1 from storage.buckets b
                       where b.id = storage.objects.bucket_id and b.public));

-- Every signed-in user owns the top-level folder named after their id, in any bucket.
create policy own_folder on storage.objects
    for all to authenticated
    using ((storage.foldername(name))[1] = auth.uid())
    with check ((storage.foldername(name))[1] = auth.uid());
