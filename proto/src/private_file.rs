//! Files only their owner may read: keys, tokens, the data directory's
//! database and lock. One place decides how such a file is opened, so every
//! secret the project writes gets the same mode and the same tightening of a
//! file that already existed with a looser one.
//!
//! On Unix a new file is created with mode 0600 (the mode of `open` applies
//! only to new files), and an existing file readable or writable by group or
//! others is tightened to 0600 before anything is written to it. Elsewhere
//! the platform's defaults apply.

use std::fs::File;
use std::io::{self, Write};
use std::path::Path;

/// What to do when the file already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Refuse with [`io::ErrorKind::AlreadyExists`] (a key never silently
    /// replaced).
    Refuse,
    /// Truncate it and write from the start.
    Truncate,
    /// Keep its contents and append.
    Append,
    /// Keep its contents; the cursor is at the start (a lock file).
    Keep,
}

/// Opens `path` for writing as an owner-only file (see the module docs).
pub fn open(path: &Path, existing: Existing) -> io::Result<File> {
    let mut opts = File::options();
    match existing {
        Existing::Refuse => opts.write(true).create_new(true),
        Existing::Truncate => opts.write(true).create(true).truncate(true),
        Existing::Append => opts.create(true).append(true),
        Existing::Keep => opts.write(true).create(true).truncate(false),
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        opts.mode(0o600);
        let file = opts.open(path)?;
        let mode = file.metadata()?.permissions().mode();
        if mode & 0o077 != 0 {
            file.set_permissions(std::fs::Permissions::from_mode(mode & 0o600))?;
        }
        Ok(file)
    }
    #[cfg(not(unix))]
    opts.open(path)
}

/// Writes `contents` to the owner-only file `path` and syncs it to disk.
pub fn write(path: &Path, contents: &[u8], existing: Existing) -> io::Result<()> {
    let mut file = open(path, existing)?;
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(test)]
#[cfg(unix)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn new_files_are_owner_only_and_loose_ones_are_tightened() {
        let dir = tempfile::tempdir().unwrap();
        for existing in [
            Existing::Truncate,
            Existing::Append,
            Existing::Keep,
            Existing::Refuse,
        ] {
            let path = dir.path().join(format!("{existing:?}"));
            write(&path, b"secret", existing).unwrap();
            assert_eq!(mode(&path), 0o600, "{existing:?}");
            if existing == Existing::Refuse {
                continue;
            }
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            write(&path, b"!", existing).unwrap();
            assert_eq!(mode(&path), 0o600, "{existing:?} tightened");
        }
    }

    #[test]
    fn each_policy_treats_existing_contents_as_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        write(&p, b"abc", Existing::Refuse).unwrap();
        let err = write(&p, b"x", Existing::Refuse).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&p).unwrap(), b"abc");
        write(&p, b"de", Existing::Append).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"abcde");
        write(&p, b"X", Existing::Keep).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"Xbcde");
        write(&p, b"z", Existing::Truncate).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"z");
    }
}
