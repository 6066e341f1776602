-- 0007_parent_path_index.sql
--
-- One level of a folder, listed folders-first (the v1 list API), in time proportional to the
-- page: each object's parent path as a stored column with an index. Files directly in folder P
-- are one index range (parent_path = P, in name order); the sub-folders of P are found with one
-- probe each, jumping from one child's subtree to the next, whatever the number of files at
-- the level.
--
-- A stored column rather than an expression index: under Row Level Security, PostgreSQL only
-- uses a condition as an index condition if every function applied to the row is leakproof,
-- and plain text comparisons on a column are, while a call of storage.parent_path() is not.

-- The folder part of a name, with its trailing slash: 'a/b/c.png' -> 'a/b/', 'c.png' -> ''.
create function storage.parent_path(name text) returns text
language sql immutable strict parallel safe
return case
    when pg_catalog.strpos(name, '/') = 0 then ''
    else pg_catalog.left(name, pg_catalog.length(name) - pg_catalog.strpos(pg_catalog.reverse(name), '/') + 1)
end;

grant execute on function storage.parent_path(text) to anon, authenticated, service_role;

alter table storage.objects
    add column parent_path text collate "C" generated always as (storage.parent_path(name)) stored;

create index objects_bucket_parent_name_idx on storage.objects (bucket_id, parent_path, name);
