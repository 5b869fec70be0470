//! Which store errors are weather (they pass by themselves) and which are
//! not.
//!
//! A full disk, a busy or locked database and an I/O error are *transient*:
//! the store refused the whole operation (SQLite rolls the transaction
//! back), nothing half-written remains, and the same call may succeed once
//! the operator frees space or the other writer lets go. The job driver
//! pauses the affected job and retries with backoff ([`crate::job`]'s
//! weather module) instead of failing it; gRPC callers get `UNAVAILABLE`,
//! which clients retry. Everything else (corrupt rows, conflicts, a wrong
//! key, a newer schema) is permanent.

use super::StoreError;

impl StoreError {
    /// Whether the same operation may succeed later without anyone changing
    /// the stored data: disk full, database busy or locked, I/O failure.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// Classifies a SQLite error: the codes that pass by themselves become
/// [`StoreError::Unavailable`], the rest [`StoreError::Database`].
pub(crate) fn classify_sqlite(e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode as C;
    match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(
                f.code,
                C::DiskFull
                    | C::DatabaseBusy
                    | C::DatabaseLocked
                    | C::SystemIoFailure
                    | C::CannotOpen
                    | C::OutOfMemory
            ) =>
        {
            StoreError::Unavailable(e.to_string())
        }
        _ => StoreError::Database(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(code: std::ffi::c_int) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None)
    }

    #[test]
    fn full_busy_locked_and_io_errors_are_transient() {
        for code in [
            rusqlite::ffi::SQLITE_FULL,
            rusqlite::ffi::SQLITE_BUSY,
            rusqlite::ffi::SQLITE_LOCKED,
            rusqlite::ffi::SQLITE_IOERR,
            rusqlite::ffi::SQLITE_IOERR_WRITE,
            rusqlite::ffi::SQLITE_IOERR_FSYNC,
            rusqlite::ffi::SQLITE_CANTOPEN,
        ] {
            let e = classify_sqlite(failure(code));
            assert!(e.is_transient(), "code {code}: {e}");
        }
    }

    #[test]
    fn corruption_constraints_and_decoding_are_permanent() {
        for code in [
            rusqlite::ffi::SQLITE_CORRUPT,
            rusqlite::ffi::SQLITE_CONSTRAINT,
            rusqlite::ffi::SQLITE_READONLY,
            rusqlite::ffi::SQLITE_MISMATCH,
        ] {
            assert!(
                !classify_sqlite(failure(code)).is_transient(),
                "code {code}"
            );
        }
        assert!(!classify_sqlite(rusqlite::Error::QueryReturnedNoRows).is_transient());
        for e in [
            StoreError::Corrupt("x".into()),
            StoreError::Conflict("x".into()),
            StoreError::Database("x".into()),
            StoreError::Encryption("x".into()),
        ] {
            assert!(!e.is_transient(), "{e}");
        }
    }
}
