//! The JWT secret: given by flag, or generated once and kept in the data directory.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::Context;
use base64::Engine;

const FILE_NAME: &str = "jwt-secret";

/// Returns `given` if set; otherwise the secret stored in `data_dir`, creating it (mode 0600)
/// when `create` is true and it does not exist yet.
pub fn load_or_create(
    given: Option<&str>,
    data_dir: &Path,
    create: bool,
) -> anyhow::Result<String> {
    if let Some(secret) = given {
        anyhow::ensure!(
            secret.len() >= 32,
            "the JWT secret must be at least 32 characters long"
        );
        return Ok(secret.to_string());
    }
    let path = data_dir.join(FILE_NAME);
    match std::fs::read_to_string(&path) {
        Ok(secret) => return Ok(secret.trim().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => anyhow::bail!(
            "no JWT secret: pass --jwt-secret or point --data-dir at a directory where \
             `pgstorage serve` has run ({} does not exist)",
            path.display()
        ),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("creating data directory {}", data_dir.display()))?;
    let mut raw = [0u8; 48];
    rand::fill(&mut raw);
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(secret.as_bytes())?;
    file.sync_all()?;
    Ok(secret)
}
