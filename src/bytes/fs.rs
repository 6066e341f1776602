//! The local-disk store: `objects/<k0k1>/<k2k3>/<key>` under a root directory. The two fan-out
//! levels (65,536 directories) keep every directory small even with many millions of objects.
//! [`ByteStore::put`] writes to `tmp/`, fsyncs, then renames into place (and fsyncs the
//! directory), so a key either holds its complete bytes or does not exist. A staged key (an
//! upload's new version, a rendition, a part: what the core writes) is written in place
//! instead, its directory entry made durable while the bytes stream (see
//! [`ByteStore::put_staged`]).
//!
//! While a body streams, the kernel is asked to start writing back every few MiB
//! (`sync_file_range`), so the final `fdatasync` that makes the write durable has little left to
//! wait for: a request that answers only once its bytes are durable does not pay for the whole
//! write-back after its last byte arrived. An empty chunk says the body's bytes have all
//! arrived (see `core::meter::END_OF_DATA`): the file is flushed at once, while the upload's
//! hashing catches up, and the final `fdatasync` finds nothing left to write.
//!
//! Bytes are private to the server's user: directories are 0700 and files 0600, so no other
//! local account reads an object around the policies.

use std::io::{self, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use tokio::fs::{self, File};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::io::ReaderStream;

use super::{ByteRange, ByteStore, ByteStream, StoreError, check_key};

const READ_CHUNK: usize = 64 * 1024;

/// Objects (or ranges) up to this size are read in one call on the runtime's thread.
const INLINE_READ: usize = 64 * 1024;

/// Bytes written between two requests to the kernel to start writing them back.
const WRITEBACK_EVERY: u64 = 2 * 1024 * 1024;

/// Body chunks queued for the writing thread (a few hundred KiB at most each).
const QUEUED_CHUNKS: usize = 8;

/// Modes of everything the store creates: only the server's own user may read or list it.
const DIR_MODE: u32 = 0o700;
const FILE_MODE: u32 = 0o600;

/// `create_dir_all` with private directories (the umask can only remove bits).
async fn create_private_dirs(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .await
}

/// Reads `len` bytes at `start` (fewer if the file is shorter: the caller's size came from
/// the same file a moment before).
fn read_at_most(file: &mut std::fs::File, start: u64, len: usize) -> io::Result<Bytes> {
    use std::io::{Read, Seek};
    if start > 0 {
        file.seek(SeekFrom::Start(start))?;
    }
    let mut buf = Vec::with_capacity(len);
    file.take(len as u64).read_to_end(&mut buf)?;
    Ok(Bytes::from(buf))
}

pub struct FsStore {
    root: PathBuf,
}

impl FsStore {
    pub async fn open(root: impl Into<PathBuf>) -> io::Result<Self> {
        let root = root.into();
        create_private_dirs(&root.join("objects")).await?;
        create_private_dirs(&root.join("tmp")).await?;
        // A store created by an older version (or a root made by hand) may be readable by
        // everyone; closing the root closes everything below it.
        for dir in [&root, &root.join("objects"), &root.join("tmp")] {
            fs::set_permissions(dir, std::fs::Permissions::from_mode(DIR_MODE)).await?;
        }
        Ok(Self { root })
    }

    fn path(&self, key: &str) -> Result<PathBuf, StoreError> {
        // A key is also a path here: only plain text, so no key can ever leave the root.
        check_key(key)?;
        Ok(self
            .root
            .join("objects")
            .join(&key[0..2])
            .join(&key[2..4])
            .join(key))
    }
}

fn unavailable(context: &str, error: io::Error) -> StoreError {
    StoreError::Unavailable(format!("{context}: {error}"))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// A blocking task's result, a panic or cancellation read as the store failing.
async fn joined<T>(task: JoinHandle<Result<T, StoreError>>) -> Result<T, StoreError> {
    task.await
        .map_err(|e| StoreError::Unavailable(format!("a file task failed: {e}")))?
}

/// Creates `path` for writing, new and private.
fn create_file(path: &Path) -> io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
}

/// Asks the kernel to start writing back `len` bytes of `file` from `offset`, without waiting.
/// Only a hint: the final `fdatasync` is what makes the bytes durable.
fn start_writeback(file: &std::fs::File, offset: u64, len: u64) {
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: sync_file_range only reads its integer arguments; the descriptor is open for as
    // long as `file` is borrowed.
    let result = unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE)
    };
    if result != 0 {
        tracing::debug!(error = %io::Error::last_os_error(), "sync_file_range failed; fdatasync will do it all");
    }
}

/// What the streaming side hands the writing thread.
enum Feed {
    Chunk(Bytes),
    /// Every chunk was sent: make the file durable.
    End,
}

/// Syncs each of `dirs` (none once done), so the entries of a file created in place survive a
/// crash.
fn sync_dirs(dirs: &mut Vec<PathBuf>) -> Result<(), StoreError> {
    for dir in dirs.drain(..) {
        sync_dir(&dir).map_err(|e| unavailable("syncing a directory", e))?;
    }
    Ok(())
}

/// Creates the file at `path` with `create` (which also names the directories whose entries
/// must be synced for it to survive a crash) and streams `body` into it, both on one blocking
/// thread (a trip through the pool costs two thread wake-ups), starting writeback as it goes;
/// then makes it durable with `fdatasync`, and the directories' entries after it. On any
/// failure after the file was created, and when the returned future is dropped before the body
/// ends, the file is removed.
///
/// The directories are synced after the file's data, not beside it: on a journalling file
/// system the file's sync commits its creation too, so the directory's sync that follows finds
/// nothing left to commit, where one started at creation commits the creation alone and the
/// file's sync then waits for a second commit. A large body has them synced once its first
/// writeback starts, long before its end.
async fn write_file(
    create: impl FnOnce() -> Result<(std::fs::File, Vec<PathBuf>), StoreError> + Send + 'static,
    path: PathBuf,
    mut body: ByteStream,
) -> Result<u64, StoreError> {
    let (feed, mut chunks) = mpsc::channel::<Feed>(QUEUED_CHUNKS);
    let writer = tokio::task::spawn_blocking(move || {
        // Nothing was created when this fails: nothing to remove.
        let (mut file, mut dirs) = create()?;
        let result = (|| {
            let mut written = 0u64;
            let mut unsynced_from = 0u64;
            loop {
                match chunks.blocking_recv() {
                    // The body's last byte has passed, and its end will follow once the
                    // upload's digests are checked (`core::meter::END_OF_DATA`): flushing now
                    // overlaps with that, and leaves the final `fdatasync` next to nothing.
                    Some(Feed::Chunk(chunk)) if chunk.is_empty() => {
                        file.sync_data().map_err(|e| unavailable("syncing", e))?;
                        sync_dirs(&mut dirs)?;
                        unsynced_from = written;
                    }
                    Some(Feed::Chunk(chunk)) => {
                        file.write_all(&chunk)
                            .map_err(|e| unavailable("writing", e))?;
                        written += chunk.len() as u64;
                        if written - unsynced_from >= WRITEBACK_EVERY {
                            start_writeback(&file, unsynced_from, written - unsynced_from);
                            unsynced_from = written;
                            sync_dirs(&mut dirs)?;
                        }
                    }
                    Some(Feed::End) => {
                        file.sync_data().map_err(|e| unavailable("syncing", e))?;
                        sync_dirs(&mut dirs)?;
                        return Ok(written);
                    }
                    // The streaming side gave up (the body failed, or its request went away).
                    None => {
                        return Err(StoreError::Unavailable("the write was abandoned".into()));
                    }
                }
            }
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&path);
        }
        result
    });
    while let Some(chunk) = body.next().await {
        match chunk {
            Ok(chunk) => {
                if feed.send(Feed::Chunk(chunk)).await.is_err() {
                    // The writer stopped on an error of its own: that is the answer.
                    break;
                }
            }
            Err(error) => {
                drop(feed);
                let _ = joined(writer).await;
                return Err(StoreError::Body(error));
            }
        }
    }
    let _ = feed.send(Feed::End).await;
    joined(writer).await
}

/// Removes `path` unless the write completed (also when the future is dropped).
struct RemoveUnlessDone(Option<PathBuf>);

impl Drop for RemoveUnlessDone {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Creates the directories of `path` that are missing and the file itself; returns the file
/// and the directories whose entries must be synced for it to survive a crash (its own, and
/// the parent of each directory created).
fn create_in_place(
    objects: &Path,
    path: &Path,
) -> Result<(std::fs::File, Vec<PathBuf>), StoreError> {
    let dir = path.parent().unwrap_or(objects).to_path_buf();
    let mut to_sync = vec![dir.clone()];
    let mut missing = Vec::new();
    let mut cursor = dir.as_path();
    while cursor != objects && !cursor.is_dir() {
        missing.push(cursor.to_path_buf());
        match cursor.parent() {
            Some(parent) => cursor = parent,
            None => break,
        }
    }
    for created in missing.iter().rev() {
        match std::fs::DirBuilder::new().mode(DIR_MODE).create(created) {
            Ok(()) => {}
            // Another write made it meanwhile: its entry is synced below all the same.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(unavailable("creating a directory", e)),
        }
        if let Some(parent) = created.parent() {
            to_sync.push(parent.to_path_buf());
        }
    }
    let file = create_file(path).map_err(|e| unavailable("creating the file", e))?;
    Ok((file, to_sync))
}

#[async_trait]
impl ByteStore for FsStore {
    fn name(&self) -> &'static str {
        "fs"
    }

    async fn put(&self, key: &str, body: ByteStream) -> Result<u64, StoreError> {
        let target = self.path(key)?;
        let temp_path = self
            .root
            .join("tmp")
            .join(format!("{key}.{}", uuid::Uuid::new_v4().simple()));
        let path = temp_path.clone();
        let create = move || {
            create_file(&path)
                .map(|file| (file, Vec::new()))
                .map_err(|e| unavailable("creating a temporary file", e))
        };
        // (A fresh random name: if its creation failed, this removes nothing of anyone's.)
        let mut temp = RemoveUnlessDone(Some(temp_path.clone()));
        let written = write_file(create, temp_path.clone(), body).await?;
        let dir = target.parent().unwrap_or(&self.root).to_path_buf();
        create_private_dirs(&dir)
            .await
            .map_err(|e| unavailable("creating a directory", e))?;
        fs::rename(&temp_path, &target)
            .await
            .map_err(|e| unavailable("renaming into place", e))?;
        temp.0 = None;
        joined(tokio::task::spawn_blocking(move || {
            sync_dir(&dir).map_err(|e| unavailable("syncing a directory", e))
        }))
        .await?;
        Ok(written)
    }

    /// In place: the file is created under its key at once, with no rename to follow, and its
    /// directory entries are synced on the writing thread right after its data (see
    /// `write_file`), where the file's own sync has usually committed them already. The writing
    /// thread removes a file whose write failed or was abandoned.
    async fn put_staged(&self, key: &str, body: ByteStream) -> Result<u64, StoreError> {
        let path = self.path(key)?;
        let objects = self.root.join("objects");
        let at = path.clone();
        write_file(move || create_in_place(&objects, &at), path, body).await
    }

    async fn get(&self, key: &str, range: Option<ByteRange>) -> Result<ByteStream, StoreError> {
        let path = self.path(key)?;
        // Opened, measured and (when small) read right here on the runtime's thread, the way
        // nginx serves files without aio: for a page-cached file these are microseconds of
        // syscalls, where each trip through tokio's blocking pool costs two thread wake-ups;
        // a small GET made three such trips (open, read, the read that sees the end).
        let mut file = match std::fs::File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::NotFound(key.to_string()));
            }
            Err(e) => return Err(unavailable("opening", e)),
        };
        let len = file
            .metadata()
            .map_err(|e| unavailable("reading the size of", e))?
            .len();
        let (start, wanted) = match range {
            None => (0, len),
            Some(range) => (
                range.start,
                range.len().min(len.saturating_sub(range.start)),
            ),
        };
        if wanted <= INLINE_READ as u64 {
            let bytes = read_at_most(&mut file, start, wanted as usize)
                .map_err(|e| unavailable("reading", e))?;
            if bytes.is_empty() {
                return Ok(futures::stream::empty().boxed());
            }
            return Ok(futures::stream::once(async move { Ok(bytes) }).boxed());
        }
        let mut file = File::from_std(file);
        if start > 0 {
            file.seek(SeekFrom::Start(start))
                .await
                .map_err(|e| unavailable("seeking", e))?;
        }
        Ok(ReaderStream::with_capacity(file.take(wanted), READ_CHUNK).boxed())
    }

    async fn copy(&self, from: &str, to: &str) -> Result<(), StoreError> {
        let source = self.path(from)?;
        let target = self.path(to)?;
        let dir = target.parent().unwrap_or(&self.root).to_path_buf();
        create_private_dirs(&dir)
            .await
            .map_err(|e| unavailable("creating a directory", e))?;
        // Bytes are immutable, so a hard link is a complete, instant copy; deleting either key
        // later removes only that name.
        match fs::hard_link(&source, &target).await {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::NotFound(from.to_string()));
            }
            Err(e) => return Err(unavailable("linking", e)),
        }
        joined(tokio::task::spawn_blocking(move || {
            sync_dir(&dir).map_err(|e| unavailable("syncing a directory", e))
        }))
        .await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path(key)?;
        match fs::remove_file(&path).await {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(unavailable("deleting", e)),
        }
        // Never completed: a write that died (crash, lost lease) may have left its temporary
        // file, named after the key.
        let prefix = format!("{key}.");
        let mut entries = fs::read_dir(self.root.join("tmp"))
            .await
            .map_err(|e| unavailable("listing temporary files", e))?;
        while let Some(entry) = entries
            .next_entry()
            .await
            .map_err(|e| unavailable("listing temporary files", e))?
        {
            if entry.file_name().to_string_lossy().starts_with(&prefix) {
                match fs::remove_file(entry.path()).await {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(unavailable("deleting a temporary file", e)),
                }
            }
        }
        Ok(())
    }
}
