//! The database's size cap (`PRAGMA max_page_count`): a real `SQLITE_FULL`
//! without filling a disk, for tests of transient faults (issue 16) and for
//! operators who want the database to stop growing at a known size (writes
//! past the cap fail as "disk full", which pauses jobs until the cap is
//! raised).

use rusqlite::OptionalExtension;

use super::{SqliteStore, db};
use crate::store::StoreResult;

impl SqliteStore {
    /// Caps the database file at `pages` pages and returns the cap in force
    /// (SQLite never sets it below the current size). Writes needing more
    /// pages fail with `SQLITE_FULL`, a transient
    /// [`crate::store::StoreError::Unavailable`], until the cap is raised.
    pub fn set_max_page_count(&self, pages: u64) -> StoreResult<u64> {
        let pages = i64::try_from(pages).unwrap_or(i64::MAX);
        let cap: Option<i64> = self
            .conn()
            .query_row(&format!("PRAGMA max_page_count = {pages}"), [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(db)?;
        Ok(cap.map_or(0, |c| u64::try_from(c).unwrap_or(0)))
    }

    /// Pages the database file uses now.
    pub fn page_count(&self) -> StoreResult<u64> {
        let n: i64 = self
            .conn()
            .query_row("PRAGMA page_count", [], |r| r.get(0))
            .map_err(db)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use crate::store::sqlite::SqliteStore;
    use crate::store::{NewAuditEvent, Store};

    #[test]
    fn writes_past_the_page_cap_are_transient_until_it_is_raised() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(dir.path()).unwrap();
        let used = s.page_count().unwrap();
        assert_eq!(
            s.set_max_page_count(1).unwrap(),
            used,
            "never below the current size"
        );
        let big = NewAuditEvent {
            unix_ms: 1,
            kind: "k".into(),
            job_id: String::new(),
            client_id: String::new(),
            detail: "x".repeat(3000),
        };
        let mut failed = None;
        for _ in 0..100 {
            if let Err(e) = s.append_audit(&big) {
                failed = Some(e);
                break;
            }
        }
        let e = failed.expect("the cap must stop the growth");
        assert!(e.is_transient(), "{e}");
        s.set_max_page_count(1_000_000).unwrap();
        s.append_audit(&big).unwrap();
    }
}
