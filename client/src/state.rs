//! The participant's state directory: an exclusive lock (one participant per
//! directory), durable atomic file replacement, and the cached global model.
//!
//! Layout:
//!
//! - `participant.lock` — held (advisory `flock`) while a participant runs;
//! - `ledger.json` — the tenant's privacy ledger ([`crate::ledger`]);
//! - `model.safetensors` — the latest verified global model, in the
//!   detector's [`ModelFile`] format, so the host can score sessions after a
//!   restart before the coordinator is reachable.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use fedsec_detector::model::ModelFile;

/// Ledger file name (the ledger's format lives in `crate::ledger`).
pub const LEDGER_FILE: &str = "ledger.json";
/// Lock file name.
pub const LOCK_FILE: &str = "participant.lock";
/// Cached model file name.
pub const MODEL_FILE: &str = "model.safetensors";

/// Replaces `path` with `bytes` durably: write a temporary file in the same
/// directory, fsync it, rename it over `path`, fsync the directory. A crash
/// at any point leaves either the old or the new contents, never a mix.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("path has no file name"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        sync_dir(&dir)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> std::io::Result<()> {
    // Directories cannot be opened for fsync on this platform; the rename is
    // still atomic.
    Ok(())
}

/// A locked state directory.
#[derive(Debug)]
pub struct StateDir {
    path: PathBuf,
    _lock: File,
}

/// Why the state directory cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// An I/O error.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Another participant holds the state directory.
    #[error("{0} is in use by another participant")]
    Locked(PathBuf),
}

impl StateDir {
    /// Creates the directory if needed and takes its lock.
    pub fn open(path: &Path) -> Result<Self, StateError> {
        let io = |context: String| move |source| StateError::Io { context, source };
        std::fs::create_dir_all(path).map_err(io(format!(
            "cannot create the state directory {}",
            path.display()
        )))?;
        let lock_path = path.join(LOCK_FILE);
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io(format!("cannot open {}", lock_path.display())))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StateError::Locked(path.to_owned()));
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(StateError::Io {
                    context: format!("cannot lock {}", lock_path.display()),
                    source: e,
                });
            }
        }
        Ok(Self {
            path: path.to_owned(),
            _lock: lock,
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Path of the ledger file.
    pub fn ledger_path(&self) -> PathBuf {
        self.path.join(LEDGER_FILE)
    }

    /// Path of the cached model.
    pub fn model_path(&self) -> PathBuf {
        self.path.join(MODEL_FILE)
    }

    /// Writes the cached model atomically.
    pub fn save_model(&self, model: &ModelFile) -> Result<(), String> {
        let bytes = model.to_bytes().map_err(|e| e.to_string())?;
        write_atomic(&self.model_path(), &bytes)
            .map_err(|e| format!("cannot write {}: {e}", self.model_path().display()))
    }

    /// Reads the cached model, if there is a valid one.
    pub fn load_model(&self) -> Option<ModelFile> {
        let path = self.model_path();
        if !path.exists() {
            return None;
        }
        match ModelFile::load(&path) {
            Ok(m) => Some(m),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "ignoring the unreadable cached model");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("x.json")]);
    }

    #[test]
    fn a_state_dir_has_one_owner() {
        let dir = tempfile::tempdir().unwrap();
        let a = StateDir::open(dir.path()).unwrap();
        assert!(matches!(
            StateDir::open(dir.path()),
            Err(StateError::Locked(_))
        ));
        drop(a);
        assert!(StateDir::open(dir.path()).is_ok());
    }
}
