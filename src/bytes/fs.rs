//! The local-disk store: `objects/<k0k1>/<k2k3>/<key>` under a root directory. The two fan-out
//! levels (65,536 directories) keep every directory small even with many millions of objects.
//! Writes go to `tmp/`, are fsynced, then renamed into place (and the directory fsynced), so a
//! key either holds its complete bytes or does not exist.
//!
//! Bytes are private to the server's user: directories are 0700 and files 0600, so no other
//! local account reads an object around the policies.

use std::io::{self, SeekFrom};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use futures::StreamExt;
use tokio::fs::{self, File};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio_util::io::ReaderStream;

use super::{ByteRange, ByteStore, ByteStream, StoreError, check_key};

const READ_CHUNK: usize = 64 * 1024;

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

/// Removes a temporary file unless the write completed (also when the future is dropped).
struct TempFile(Option<PathBuf>);

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn unavailable(context: &str, error: io::Error) -> StoreError {
    StoreError::Unavailable(format!("{context}: {error}"))
}

async fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir).await?.sync_all().await
}

#[async_trait]
impl ByteStore for FsStore {
    fn name(&self) -> &'static str {
        "fs"
    }

    async fn put(&self, key: &str, mut body: ByteStream) -> Result<u64, StoreError> {
        let target = self.path(key)?;
        let temp_path = self
            .root
            .join("tmp")
            .join(format!("{key}.{}", uuid::Uuid::new_v4().simple()));
        let mut temp = TempFile(Some(temp_path.clone()));
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(&temp_path)
            .await
            .map_err(|e| unavailable("creating a temporary file", e))?;
        let mut written = 0u64;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(StoreError::Body)?;
            file.write_all(&chunk)
                .await
                .map_err(|e| unavailable("writing", e))?;
            written += chunk.len() as u64;
        }
        file.sync_all()
            .await
            .map_err(|e| unavailable("syncing", e))?;
        drop(file);
        let dir = target.parent().unwrap_or(&self.root).to_path_buf();
        create_private_dirs(&dir)
            .await
            .map_err(|e| unavailable("creating a directory", e))?;
        fs::rename(&temp_path, &target)
            .await
            .map_err(|e| unavailable("renaming into place", e))?;
        temp.0 = None;
        sync_dir(&dir)
            .await
            .map_err(|e| unavailable("syncing a directory", e))?;
        Ok(written)
    }

    async fn get(&self, key: &str, range: Option<ByteRange>) -> Result<ByteStream, StoreError> {
        let path = self.path(key)?;
        let mut file = match File::open(&path).await {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::NotFound(key.to_string()));
            }
            Err(e) => return Err(unavailable("opening", e)),
        };
        match range {
            None => Ok(ReaderStream::with_capacity(file, READ_CHUNK).boxed()),
            Some(range) => {
                file.seek(SeekFrom::Start(range.start))
                    .await
                    .map_err(|e| unavailable("seeking", e))?;
                Ok(ReaderStream::with_capacity(file.take(range.len()), READ_CHUNK).boxed())
            }
        }
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
        sync_dir(&dir)
            .await
            .map_err(|e| unavailable("syncing a directory", e))
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
