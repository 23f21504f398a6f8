//! Files in the data folder that hold secrets (the issuer's signing key, the channel keys):
//! written once, never overwritten, readable by their owner only.

use std::path::Path;

/// Creates `path` holding `bytes`, mode 0600 on Unix; fails if it already exists, so a key
/// another process just wrote is never replaced.
#[cfg(unix)]
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)
}

/// Creates `path` holding `bytes` (no permission bits to set off Unix).
#[cfg(not(unix))]
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}
