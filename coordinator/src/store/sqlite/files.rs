//! The data directory and database files, private to the coordinator's user
//! (0700 and 0600 on Unix).

use std::path::Path;

use fedsec_proto::private_file::{self, Existing};

use crate::store::{StoreError, StoreResult};

/// Creates `dir` (and parents) with mode 0700 on Unix; an existing `dir`
/// accessible by group or others is tightened to 0700 (the store, its WAL
/// and the lock file live there).
pub fn create_private_dir(dir: &Path) -> StoreResult<()> {
    let err = |e: std::io::Error| StoreError::DataDir {
        path: dir.to_owned(),
        message: e.to_string(),
    };
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        builder.mode(0o700);
        builder.create(dir).map_err(err)?;
        let mode = std::fs::metadata(dir).map_err(err)?.permissions().mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode & 0o700))
                .map_err(err)?;
        }
    }
    #[cfg(not(unix))]
    builder.create(dir).map_err(err)?;
    Ok(())
}

/// Creates `path` empty with mode 0600 if it does not exist (SQLite then
/// gives its `-wal` and `-shm` files the same mode); an existing file
/// accessible by group or others is tightened to 0600.
pub fn create_private_file(path: &Path) -> StoreResult<()> {
    let err = |e: std::io::Error| StoreError::DataDir {
        path: path.to_owned(),
        message: e.to_string(),
    };
    private_file::open(path, Existing::Append).map_err(err)?;
    Ok(())
}
