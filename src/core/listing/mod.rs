//! Listing: one level of a bucket (folders and files) or a flat range of names, under RLS.
//!
//! Pages are produced by a skip-scan over the `(bucket_id, name)` index: a recursive query where
//! each step is one index probe for the next visible name after the previous entry; when that
//! entry is a folder, the next probe starts past everything inside it (`prefix || folder || '0'`,
//! since `'0'` follows `'/'` in the C collation). A page of N entries therefore costs about N
//! probes, whatever the size of the bucket or of the folders it skips. Row Level Security filters
//! every probe, so a folder is listed only if the caller can see something inside it.
//!
//! Sorting by name is the scalable order. Sorting by a timestamp needs the whole level, which is
//! read in full (up to [`MAX_SORTED_LEVEL`] entries) and sorted.

use base64::Engine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_postgres::Row;
use uuid::Uuid;

use super::{Caller, Error, Operation, Storage};
use crate::db::Tx;

mod v1;

/// The most entries a level may hold when sorted by something other than the name.
pub const MAX_SORTED_LEVEL: usize = 100_000;
/// The largest page.
pub const MAX_PAGE: i64 = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SortColumn {
    Name,
    UpdatedAt,
    CreatedAt,
    LastAccessedAt,
}

impl SortColumn {
    pub fn parse(text: &str) -> Result<Self, Error> {
        match text {
            "name" => Ok(Self::Name),
            "updated_at" => Ok(Self::UpdatedAt),
            "created_at" => Ok(Self::CreatedAt),
            "last_accessed_at" => Ok(Self::LastAccessedAt),
            other => Err(Error::InvalidInput(format!(
                "cannot sort by '{other}': use name, updated_at, created_at or last_accessed_at"
            ))),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sort {
    pub column: SortColumn,
    pub descending: bool,
}

impl Default for Sort {
    fn default() -> Self {
        Self {
            column: SortColumn::Name,
            descending: false,
        }
    }
}

/// One entry of a listing: a folder (no id) or an object.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The full name of the object, or the folder's path with a trailing `/`.
    pub path: String,
    /// The entry's own segment at this level (folder name without `/`, or file name).
    pub key: String,
    pub folder: bool,
    pub id: Option<Uuid>,
    pub updated_at: Option<DateTime<Utc>>,
    pub created_at: Option<DateTime<Utc>>,
    pub last_accessed_at: Option<DateTime<Utc>>,
    pub metadata: Option<Value>,
    /// The object's `owner_id` (`None` for folders).
    pub owner_id: Option<String>,
}

/// `POST /object/list` (v1): one level under a folder prefix, offset-paginated.
#[derive(Debug, Clone, Default)]
pub struct ListV1 {
    pub prefix: String,
    pub limit: Option<i64>,
    pub offset: Option<i64>,
    pub sort: Sort,
    /// Case-insensitive "starts with" on the entry's name at this level.
    pub search: Option<String>,
}

/// `POST /object/list-v2`: cursor-paginated, optionally grouped into folders.
#[derive(Debug, Clone, Default)]
pub struct ListV2 {
    /// A raw name prefix (not forced to be a folder).
    pub prefix: String,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
    pub with_delimiter: bool,
    pub sort: Sort,
}

/// An S3 listing (ListObjects, ListObjectsV2): a raw prefix, `/` as the only delimiter.
#[derive(Debug, Clone, Default)]
pub struct ListS3 {
    pub prefix: String,
    pub delimiter: bool,
    /// Exclusive: a key (StartAfter, Marker) or a common prefix returned earlier.
    pub after: Option<String>,
    pub max: i64,
}

/// Most keys one S3 listing page returns (S3's own cap).
pub const MAX_S3_KEYS: i64 = 1000;

/// A page of an S3 listing.
#[derive(Debug, Clone)]
pub struct S3Page {
    pub entries: Vec<Entry>,
    /// More entries follow the last one.
    pub truncated: bool,
}

#[derive(Debug, Clone)]
pub struct Page {
    pub entries: Vec<Entry>,
    pub next_cursor: Option<String>,
}

/// Where a paginated listing resumes: opaque to clients.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Cursor {
    /// Name order: the bound to resume from (inclusive ascending, exclusive descending).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    from: Option<String>,
    /// Other orders: how many entries were already returned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    offset: Option<usize>,
    column: SortColumn,
    descending: bool,
}

impl Cursor {
    fn encode(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    }

    fn decode(text: &str) -> Result<Self, Error> {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text.trim())
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .ok_or_else(|| Error::InvalidInput("invalid cursor".into()))
    }
}

/// The smallest string greater than every string that starts with `prefix` (C collation is
/// code-point order for UTF-8), or `None` when there is none (empty prefix).
fn upper_bound(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let mut next = last as u32 + 1;
        if (0xD800..=0xDFFF).contains(&next) {
            next = 0xE000;
        }
        if let Some(c) = char::from_u32(next) {
            chars.push(c);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// A string greater than every valid name: names are at most 1024 bytes of UTF-8, and 257
/// copies of U+10FFFF (the largest byte sequence UTF-8 has, 1028 bytes) sort after all of them.
fn above_every_name() -> String {
    char::MAX.to_string().repeat(257)
}

/// One skip-scan: up to `max` visible entries, starting at `from`.
struct Walk<'a> {
    bucket: &'a str,
    /// Names must start with this.
    prefix: &'a str,
    /// Ascending: the first name considered (inclusive). Descending: names are below it.
    from: Option<String>,
    descending: bool,
    /// Group names with a `/` after the prefix into folders.
    delimiter: bool,
    max: i64,
}

const WALK_COLUMNS: &str = "name, id, updated_at, created_at, last_accessed_at, metadata, owner_id";

/// A file of a v1 level from a row of [`WALK_COLUMNS`]: named relative to the folder, whose
/// name takes the first `prefix_len` bytes.
fn files_entry(row: &Row, prefix_len: usize) -> Entry {
    let name: String = row.get(0);
    Entry {
        key: name.get(prefix_len..).unwrap_or(&name).to_string(),
        path: name.clone(),
        folder: false,
        id: Some(row.get(1)),
        updated_at: row.get(2),
        created_at: row.get(3),
        last_accessed_at: row.get(4),
        metadata: row.get(5),
        owner_id: row.get(6),
    }
}

impl Walk<'_> {
    /// Parameters: $1 bucket, $2 where the walk starts (inclusive ascending, exclusive
    /// descending), $3 the end of the prefix range (exclusive), $4/$5 the prefix length + 1 and
    /// length in characters, $6 group into folders, $7 the prefix, $8 the most entries. Both
    /// range ends are always index conditions, so no probe can run past the prefix.
    fn sql(&self) -> String {
        let (first, next, order) = if self.descending {
            (
                "o.name < $2 and o.name >= $7 and o.name < $3",
                "o.name < (case when $6 and strpos(substr(w.name, $4), '/') > 0 \
                           then left(w.name, $5 + strpos(substr(w.name, $4), '/')) \
                           else w.name end) \
                 and o.name >= $7 and o.name < $3",
                "desc",
            )
        } else {
            (
                "o.name >= $2 and o.name >= $7 and o.name < $3",
                "o.name >= (case when $6 and strpos(substr(w.name, $4), '/') > 0 \
                            then left(w.name, $5 + strpos(substr(w.name, $4), '/') - 1) || '0' \
                            else w.name || chr(1) end) \
                 and o.name >= $7 and o.name < $3",
                "asc",
            )
        };
        format!(
            "with recursive walk as (
                (select {WALK_COLUMNS}, 1::bigint as n
                   from storage.objects o
                  where o.bucket_id = $1 and {first}
                  order by o.name {order} limit 1)
              union all
                (select p.name, p.id, p.updated_at, p.created_at, p.last_accessed_at, p.metadata, p.owner_id, w.n + 1
                   from walk w
                  cross join lateral (
                        select {WALK_COLUMNS} from storage.objects o
                         where o.bucket_id = $1 and {next}
                         order by o.name {order} limit 1) p
                  where w.n < $8)
             )
             select {WALK_COLUMNS} from walk"
        )
    }

    async fn run(&self, tx: &Tx) -> Result<Vec<Entry>, Error> {
        let end = upper_bound(self.prefix).unwrap_or_else(above_every_name);
        let prefix_chars = self.prefix.chars().count() as i32;
        let start = match (&self.from, self.descending) {
            (Some(from), _) => from.clone(),
            (None, false) => self.prefix.to_string(),
            (None, true) => end.clone(),
        };
        let rows = tx
            .query(
                &self.sql(),
                &[
                    &self.bucket,
                    &start,
                    &end,
                    &(prefix_chars + 1),
                    &prefix_chars,
                    &self.delimiter,
                    &self.prefix,
                    &self.max,
                ],
            )
            .await?;
        Ok(rows.iter().map(|row| self.entry(row)).collect())
    }

    fn entry(&self, row: &Row) -> Entry {
        let name: String = row.get(0);
        let rest = &name[self.prefix.len()..];
        match rest.find('/').filter(|_| self.delimiter) {
            Some(slash) => Entry {
                path: format!("{}{}/", self.prefix, &rest[..slash]),
                key: rest[..slash].to_string(),
                folder: true,
                id: None,
                updated_at: row.get(2),
                created_at: row.get(3),
                last_accessed_at: row.get(4),
                metadata: None,
                owner_id: None,
            },
            None => Entry {
                key: rest.rsplit('/').next().unwrap_or(rest).to_string(),
                path: name.clone(),
                folder: false,
                id: Some(row.get(1)),
                updated_at: row.get(2),
                created_at: row.get(3),
                last_accessed_at: row.get(4),
                metadata: row.get(5),
                owner_id: row.get(6),
            },
        }
    }
}

/// Where the walk resumes after `entry` (see [`Cursor::from`]).
fn resume_after(entry: &Entry, descending: bool) -> String {
    match (entry.folder, descending) {
        // Past every name inside the folder: '0' follows '/'.
        (true, false) => format!("{}0", entry.path.trim_end_matches('/')),
        // Below every name inside the folder.
        (true, true) => entry.path.clone(),
        (false, false) => format!("{}\u{1}", entry.path),
        (false, true) => entry.path.clone(),
    }
}

fn sort_level(entries: &mut [Entry], sort: Sort) {
    let timestamp = |e: &Entry| match sort.column {
        SortColumn::UpdatedAt => e.updated_at,
        SortColumn::CreatedAt => e.created_at,
        SortColumn::LastAccessedAt => e.last_accessed_at,
        SortColumn::Name => None,
    };
    if sort.column == SortColumn::Name {
        // Path order, as the walk produces it (a folder sorts as its name plus '/').
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        if sort.descending {
            entries.reverse();
        }
        return;
    }
    // Folders first, by name; then files by the column, ties by name.
    entries.sort_by(|a, b| {
        b.folder.cmp(&a.folder).then_with(|| {
            let by = if a.folder {
                a.path.cmp(&b.path)
            } else {
                timestamp(a)
                    .cmp(&timestamp(b))
                    .then_with(|| a.path.cmp(&b.path))
            };
            if sort.descending { by.reverse() } else { by }
        })
    });
}

fn page_limit(limit: Option<i64>, default: i64) -> Result<i64, Error> {
    match limit.unwrap_or(default) {
        n if n < 1 => Err(Error::InvalidInput("limit must be at least 1".into())),
        n => Ok(n.min(MAX_PAGE)),
    }
}

impl Storage {
    /// A page of names under a raw prefix, grouped into folders when `with_delimiter`.
    pub async fn list_v2(
        &self,
        caller: &Caller,
        bucket: &str,
        query: &ListV2,
    ) -> Result<Page, Error> {
        let limit = page_limit(query.limit, MAX_PAGE)?;
        let cursor = query.cursor.as_deref().map(Cursor::decode).transpose()?;
        // The cursor's order wins over the request's, so a page sequence stays consistent.
        let sort = match &cursor {
            Some(c) => Sort {
                column: c.column,
                descending: c.descending,
            },
            None => query.sort,
        };
        let tx = self.begin(caller, Operation::List).await?;
        let page = if sort.column == SortColumn::Name {
            let walk = Walk {
                bucket,
                prefix: &query.prefix,
                from: cursor.and_then(|c| c.from),
                descending: sort.descending,
                delimiter: query.with_delimiter,
                max: limit + 1,
            };
            let mut entries = walk.run(&tx).await?;
            let has_next = entries.len() as i64 > limit;
            entries.truncate(limit as usize);
            let next_cursor = match entries.last() {
                Some(last) if has_next => Some(
                    Cursor {
                        from: Some(resume_after(last, sort.descending)),
                        offset: None,
                        column: sort.column,
                        descending: sort.descending,
                    }
                    .encode(),
                ),
                _ => None,
            };
            Page {
                entries,
                next_cursor,
            }
        } else {
            let mut level = if query.with_delimiter {
                self.whole_level(&tx, bucket, &query.prefix).await?
            } else {
                self.whole_range(&tx, bucket, &query.prefix).await?
            };
            sort_level(&mut level, sort);
            let skip = cursor.and_then(|c| c.offset).unwrap_or(0);
            let has_next = level.len() > skip + limit as usize;
            let entries: Vec<Entry> = level.into_iter().skip(skip).take(limit as usize).collect();
            let next_cursor = has_next.then(|| {
                Cursor {
                    from: None,
                    offset: Some(skip + entries.len()),
                    column: sort.column,
                    descending: sort.descending,
                }
                .encode()
            });
            Page {
                entries,
                next_cursor,
            }
        };
        tx.commit().await?;
        Ok(page)
    }

    /// An S3-style page: names under `query.prefix` strictly after `query.after`, in name
    /// order, folders (common prefixes) grouped when `query.delimiter`. A folder counts as one
    /// entry, as in S3's `MaxKeys`.
    pub async fn list_s3(
        &self,
        caller: &Caller,
        bucket: &str,
        query: &ListS3,
    ) -> Result<S3Page, Error> {
        let max = query.max.clamp(0, MAX_S3_KEYS);
        if max == 0 {
            return Ok(S3Page {
                entries: Vec::new(),
                truncated: false,
            });
        }
        let from = query.after.as_deref().map(|after| {
            match after
                .strip_prefix(query.prefix.as_str())
                .filter(|rest| query.delimiter && rest.ends_with('/'))
            {
                // A common prefix given back as a marker: past everything inside it.
                Some(_) => format!("{}0", after.trim_end_matches('/')),
                // The smallest name after `after` (names never contain NUL).
                None => format!("{after}\u{1}"),
            }
        });
        let tx = self.begin(caller, Operation::List).await?;
        let walk = Walk {
            bucket,
            prefix: &query.prefix,
            from,
            descending: false,
            delimiter: query.delimiter,
            max: max + 1,
        };
        let mut entries = walk.run(&tx).await?;
        tx.commit().await?;
        let truncated = entries.len() as i64 > max;
        entries.truncate(max as usize);
        Ok(S3Page { entries, truncated })
    }

    async fn whole_level(&self, tx: &Tx, bucket: &str, prefix: &str) -> Result<Vec<Entry>, Error> {
        self.bounded(
            Walk {
                bucket,
                prefix,
                from: None,
                descending: false,
                delimiter: true,
                max: MAX_SORTED_LEVEL as i64 + 1,
            },
            tx,
        )
        .await
    }

    async fn whole_range(&self, tx: &Tx, bucket: &str, prefix: &str) -> Result<Vec<Entry>, Error> {
        self.bounded(
            Walk {
                bucket,
                prefix,
                from: None,
                descending: false,
                delimiter: false,
                max: MAX_SORTED_LEVEL as i64 + 1,
            },
            tx,
        )
        .await
    }

    async fn bounded(&self, walk: Walk<'_>, tx: &Tx) -> Result<Vec<Entry>, Error> {
        let entries = walk.run(tx).await?;
        if entries.len() > MAX_SORTED_LEVEL {
            return Err(Error::InvalidInput(format!(
                "this folder has more than {MAX_SORTED_LEVEL} entries: list it sorted by name"
            )));
        }
        Ok(entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upper_bounds() {
        assert_eq!(upper_bound(""), None);
        assert_eq!(upper_bound("a/").as_deref(), Some("a0"));
        assert_eq!(upper_bound("ab").as_deref(), Some("ac"));
        assert_eq!(upper_bound("a\u{D7FF}").as_deref(), Some("a\u{E000}"));
        assert_eq!(upper_bound("a\u{10FFFF}").as_deref(), Some("b"));
    }

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let c = Cursor {
            from: Some("a/b0".into()),
            offset: None,
            column: SortColumn::Name,
            descending: false,
        };
        let back = Cursor::decode(&c.encode()).unwrap();
        assert_eq!(back.from.as_deref(), Some("a/b0"));
        assert!(Cursor::decode("not a cursor").is_err());
    }
}
