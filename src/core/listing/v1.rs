//! The v1 list API: one level of a folder, offset-paginated.
//!
//! Sorted by name (the default), the level comes in Supabase Storage's order: folders and files
//! interleaved by `lower(name)` in byte order, a folder placed as its name plus `/` (so `sub`
//! comes after `sub.txt` and `b.txt`). A skip-scan over the `(bucket_id, folded_name, name)`
//! index produces it: each step is one probe for the next visible name; after a folder the next
//! probe starts past everything inside it. A page of N entries after an offset of K costs about
//! N + K probes, whatever the size of the folders it skips.
//!
//! The prefix and `search` are matched without regard to ASCII case, as Supabase does, so
//! folders whose names differ only in case are listed once, and listing either shows the
//! contents of both: the walk never hides an object the case-sensitive order would show.

use tokio_postgres::Row;

use super::{
    Entry, ListV1, MAX_SORTED_LEVEL, Sort, SortColumn, WALK_COLUMNS, above_every_name, files_entry,
    page_limit, upper_bound,
};
use crate::core::{Caller, Error, Operation, Storage};
use crate::db::Tx;

impl Storage {
    /// One level under `query.prefix` (treated as a folder), offset-paginated, as Supabase
    /// Storage lists it: sorted by name, folders and files interleaved in case-insensitive
    /// order (`lower(name)`, byte order), the prefix and `search` matched without regard to
    /// case; sorted by a timestamp, the folders first (by name) and then the files.
    pub async fn list_v1(
        &self,
        caller: &Caller,
        bucket: &str,
        query: &ListV1,
    ) -> Result<Vec<Entry>, Error> {
        let limit = page_limit(query.limit, 100)?;
        let offset = query.offset.unwrap_or(0);
        if offset < 0 {
            return Err(Error::InvalidInput("offset must not be negative".into()));
        }
        let mut prefix = query.prefix.trim_start_matches('/').to_string();
        if !prefix.is_empty() && !prefix.ends_with('/') {
            prefix.push('/');
        }
        let search = query
            .search
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(str::to_ascii_lowercase);
        let tx = self.begin(caller, Operation::List).await?;
        let entries = if query.sort.column == SortColumn::Name {
            let walk = FoldedWalk {
                bucket,
                prefix: &prefix,
                search: search.as_deref().unwrap_or(""),
                descending: query.sort.descending,
                max: offset.saturating_add(limit),
            };
            let mut entries = walk.run(&tx).await?;
            entries.drain(..(offset as usize).min(entries.len()));
            entries
        } else {
            folders_then_files(
                &tx,
                bucket,
                &prefix,
                query,
                search.as_deref(),
                limit,
                offset,
            )
            .await?
        };
        tx.commit().await?;
        Ok(entries)
    }
}

/// A skip-scan of one level in folded-name order (see the module's documentation).
struct FoldedWalk<'a> {
    bucket: &'a str,
    /// The folder listed, with its trailing `/` (empty at the root).
    prefix: &'a str,
    /// What the entries' own names must start with, ASCII lower case.
    search: &'a str,
    descending: bool,
    max: i64,
}

impl FoldedWalk<'_> {
    /// Parameters: $1 bucket, $2/$3 the folded range (inclusive start, exclusive end), $4/$5
    /// the prefix length + 1 and length in characters, $6 the most entries. Each step seeks
    /// past the previous entry in `(folded_name, name)` order: past the name itself after a
    /// file, past every name in the folder's folded range after a folder ('0' follows '/').
    /// Both range ends are always index conditions, so no probe can run past the prefix.
    fn sql(&self) -> String {
        let folder = "strpos(substr(w.folded_name, $4), '/') > 0";
        let (seek, bound, order) = if self.descending {
            (
                format!(
                    "(o.folded_name, o.name) < \
                     (case when {folder} \
                           then left(w.folded_name, $5 + strpos(substr(w.folded_name, $4), '/')) \
                           else w.folded_name end, \
                      case when {folder} then '' collate \"C\" else w.name end)"
                ),
                "o.folded_name >= $2",
                "desc",
            )
        } else {
            (
                format!(
                    "(o.folded_name, o.name) > \
                     (case when {folder} \
                           then left(w.folded_name, $5 + strpos(substr(w.folded_name, $4), '/') - 1) || '0' \
                           else w.folded_name end, \
                      case when {folder} then '' collate \"C\" else w.name end)"
                ),
                "o.folded_name < $3",
                "asc",
            )
        };
        format!(
            "with recursive walk as (
                (select {WALK_COLUMNS}, o.folded_name, 1::bigint as n
                   from storage.objects o
                  where o.bucket_id = $1 and o.folded_name >= $2 and o.folded_name < $3
                  order by o.folded_name {order}, o.name {order} limit 1)
              union all
                (select p.*, w.n + 1
                   from walk w
                  cross join lateral (
                        select {WALK_COLUMNS}, o.folded_name from storage.objects o
                         where o.bucket_id = $1 and {seek} and {bound}
                         order by o.folded_name {order}, o.name {order} limit 1) p
                  where w.n < $6)
             )
             select {WALK_COLUMNS} from walk"
        )
    }

    async fn run(&self, tx: &Tx) -> Result<Vec<Entry>, Error> {
        let start = format!("{}{}", self.prefix.to_ascii_lowercase(), self.search);
        let end = upper_bound(&start).unwrap_or_else(above_every_name);
        let prefix_chars = self.prefix.chars().count() as i32;
        let rows = tx
            .query(
                &self.sql(),
                &[
                    &self.bucket,
                    &start,
                    &end,
                    &(prefix_chars + 1),
                    &prefix_chars,
                    &self.max,
                ],
            )
            .await?;
        Ok(rows.iter().map(|row| self.entry(row)).collect())
    }

    /// Names are relative to the folder. The name's first bytes are the prefix up to ASCII
    /// case, so the prefix's byte length is where the entry's own name starts.
    fn entry(&self, row: &Row) -> Entry {
        let name: String = row.get(0);
        let rest = name.get(self.prefix.len()..).unwrap_or(&name);
        match rest.find('/') {
            Some(slash) => Entry {
                path: format!("{}{}/", self.prefix, &rest[..slash]),
                key: rest[..slash].to_string(),
                folder: true,
                id: None,
                updated_at: None,
                created_at: None,
                last_accessed_at: None,
                metadata: None,
                owner_id: None,
            },
            None => files_entry(row, self.prefix.len()),
        }
    }
}

/// A level sorted by a timestamp: its folders first (by name, in the chosen direction), then
/// its files in the chosen order, offset-paginated over both.
async fn folders_then_files(
    tx: &Tx,
    bucket: &str,
    prefix: &str,
    query: &ListV1,
    search: Option<&str>,
    limit: i64,
    offset: i64,
) -> Result<Vec<Entry>, Error> {
    // Folders: enough of them to fill the page, or all of them when a search filters them.
    let wanted = if search.is_some() {
        MAX_SORTED_LEVEL as i64 + 1
    } else {
        offset.saturating_add(limit)
    };
    let mut folders = child_folders(tx, bucket, prefix, query.sort.descending, wanted).await?;
    if let Some(search) = search {
        folders.retain(|f| f.to_ascii_lowercase().starts_with(search));
    }
    let folder_count = folders.len() as i64;
    let mut entries: Vec<Entry> = folders
        .into_iter()
        .skip(offset as usize)
        .take(limit as usize)
        .map(|name| Entry {
            path: format!("{prefix}{name}/"),
            key: name,
            folder: true,
            id: None,
            updated_at: None,
            created_at: None,
            last_accessed_at: None,
            metadata: None,
            owner_id: None,
        })
        .collect();
    let room = limit - entries.len() as i64;
    if room > 0 {
        let file_offset = (offset - folder_count).max(0);
        let files =
            files_at_level(tx, bucket, prefix, query.sort, search, room, file_offset).await?;
        entries.extend(files);
    }
    Ok(entries)
}

/// The names of the sub-folders of `prefix` that hold something the caller can see, in name
/// order: one probe of the parent-path index per folder (the files at this level, and
/// everything inside a found folder, are jumped over).
async fn child_folders(
    tx: &Tx,
    bucket: &str,
    prefix: &str,
    descending: bool,
    max: i64,
) -> Result<Vec<String>, Error> {
    let (first, next, order) = if descending {
        (
            "o.parent_path > $2 and o.parent_path < $3",
            "o.parent_path < left(w.parent, $4 + strpos(substr(w.parent, $5), '/')) \
             and o.parent_path > $2",
            "desc",
        )
    } else {
        (
            "o.parent_path > $2 and o.parent_path < $3",
            "o.parent_path >= left(w.parent, $4 + strpos(substr(w.parent, $5), '/') - 1) || '0' \
             and o.parent_path < $3",
            "asc",
        )
    };
    let sql = format!(
        "with recursive walk as (
            (select o.parent_path as parent, 1::bigint as n
               from storage.objects o
              where o.bucket_id = $1 and {first}
              order by o.parent_path {order} limit 1)
          union all
            (select p.parent, w.n + 1
               from walk w
              cross join lateral (
                    select o.parent_path as parent from storage.objects o
                     where o.bucket_id = $1 and {next}
                     order by o.parent_path {order} limit 1) p
              where w.n < $6)
         )
         select parent from walk"
    );
    let end = upper_bound(prefix).unwrap_or_else(above_every_name);
    let chars = prefix.chars().count() as i32;
    let rows = tx
        .query(&sql, &[&bucket, &prefix, &end, &chars, &(chars + 1), &max])
        .await?;
    Ok(rows
        .iter()
        .filter_map(|row| {
            let parent: String = row.get(0);
            let rest = parent.strip_prefix(prefix)?;
            rest.split('/').next().map(str::to_string)
        })
        .collect())
}

/// The files directly in `prefix`: one range of the parent-path index in name order (a
/// timestamp order sorts the level's files).
async fn files_at_level(
    tx: &Tx,
    bucket: &str,
    prefix: &str,
    sort: Sort,
    search: Option<&str>,
    limit: i64,
    offset: i64,
) -> Result<Vec<Entry>, Error> {
    let direction = if sort.descending { "desc" } else { "asc" };
    let column = match sort.column {
        SortColumn::Name => "",
        SortColumn::UpdatedAt => "updated_at",
        SortColumn::CreatedAt => "created_at",
        SortColumn::LastAccessedAt => "last_accessed_at",
    };
    // Column and direction come from closed sets, never from the client's text.
    let order = if column.is_empty() {
        format!("o.name {direction}")
    } else {
        format!("o.{column} {direction} nulls last, o.name {direction}")
    };
    let sql = format!(
        "select {WALK_COLUMNS} from storage.objects o \
         where o.bucket_id = $1 and o.parent_path = $2 \
           and ($3::text is null or starts_with(lower(substr(o.name, $4)), $3)) \
         order by {order} limit $5 offset $6"
    );
    let start = prefix.chars().count() as i32 + 1;
    let rows = tx
        .query(&sql, &[&bucket, &prefix, &search, &start, &limit, &offset])
        .await?;
    Ok(rows
        .iter()
        .map(|row| files_entry(row, prefix.len()))
        .collect())
}
