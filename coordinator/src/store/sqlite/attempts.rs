//! Round attempts: numbering, opening, abandoning one or every open attempt
//! (start-up recovery), and listing a job's attempts. Committing an attempt
//! is `commit` (it writes the ledger and the model version with it).

use rusqlite::{Connection, params};

use super::records::{ATTEMPT_COLS, attempt_row};
use super::{corrupt, db, to_i64};
use crate::store::{AttemptClose, AttemptRecord, AttemptState, StoreError, StoreResult};

/// The next attempt number of `round` (1 for a round never opened).
pub(super) fn next(conn: &Connection, job_id: &str, round: u64) -> StoreResult<u32> {
    let max: i64 = conn
        .query_row(
            "SELECT COALESCE(MAX(attempt), 0) FROM rounds WHERE job_id = ?1 AND round = ?2",
            params![job_id, to_i64(round)?],
            |r| r.get(0),
        )
        .map_err(db)?;
    u32::try_from(max + 1).map_err(|_| corrupt("attempt counter overflow"))
}

/// Records a newly opened attempt.
pub(super) fn open(conn: &Connection, a: &AttemptRecord) -> StoreResult<()> {
    conn.execute(
        &format!(
            "INSERT INTO rounds ({ATTEMPT_COLS}) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL, ?8, 0, 0, '')"
        ),
        params![
            a.job_id,
            to_i64(a.round)?,
            a.attempt,
            AttemptState::Open.as_str(),
            to_i64(a.base_version)?,
            a.opened_unix_ms,
            a.deadline_unix_ms,
            to_i64(a.selected)?,
        ],
    )
    .map_err(db)?;
    Ok(())
}

/// Marks one open attempt abandoned; a conflict if it is not open.
pub(super) fn abandon(
    conn: &Connection,
    job_id: &str,
    round: u64,
    attempt: u32,
    close: &AttemptClose,
) -> StoreResult<()> {
    let n = conn
        .execute(
            "UPDATE rounds SET state = ?4, closed_unix_ms = ?5, accepted = ?6, \
                 rejected = ?7, note = ?8 \
                 WHERE job_id = ?1 AND round = ?2 AND attempt = ?3 AND state = 'OPEN'",
            params![
                job_id,
                to_i64(round)?,
                attempt,
                AttemptState::Abandoned.as_str(),
                close.closed_unix_ms,
                to_i64(close.accepted)?,
                to_i64(close.rejected)?,
                close.note,
            ],
        )
        .map_err(db)?;
    if n == 0 {
        return Err(StoreError::Conflict(format!(
            "job {job_id:?} round {round} attempt {attempt} is not open"
        )));
    }
    Ok(())
}

/// Marks every open attempt abandoned (start-up recovery), in one
/// transaction; returns them as they were.
pub(super) fn abandon_all_open(
    conn: &mut Connection,
    note: &str,
    now_unix_ms: i64,
) -> StoreResult<Vec<AttemptRecord>> {
    let tx = conn.transaction().map_err(db)?;
    let open: Vec<AttemptRecord> = {
        let mut stmt = tx
                .prepare(&format!(
                    "SELECT {ATTEMPT_COLS} FROM rounds WHERE state = 'OPEN' ORDER BY job_id, round, attempt"
                ))
                .map_err(db)?;
        let rows = stmt.query_map([], attempt_row).map_err(db)?;
        rows.collect::<Result<_, _>>().map_err(db)?
    };
    tx.execute(
            "UPDATE rounds SET state = 'ABANDONED', closed_unix_ms = ?1, note = ?2 WHERE state = 'OPEN'",
            params![now_unix_ms, note],
        )
        .map_err(db)?;
    tx.commit().map_err(db)?;
    Ok(open)
}

/// Every attempt of a job, by round and attempt.
pub(super) fn of_job(conn: &Connection, job_id: &str) -> StoreResult<Vec<AttemptRecord>> {
    let mut stmt = conn
        .prepare(&format!(
            "SELECT {ATTEMPT_COLS} FROM rounds WHERE job_id = ?1 ORDER BY round, attempt"
        ))
        .map_err(db)?;
    let rows = stmt.query_map([job_id], attempt_row).map_err(db)?;
    rows.collect::<Result<_, _>>().map_err(db)
}
