//! Integrity of a job's ledger as read back: no gap, no missing tail.

use rusqlite::{Connection, OptionalExtension};

use super::{corrupt, db};
use crate::store::{LedgerKind, LedgerRecord, StoreResult};

/// Detects a truncated or gapped ledger: sequence numbers must run 1, 2, …;
/// the ROUND entries must be rounds 1, 2, … and as many as the job's
/// committed rounds and its published versions (each committed round
/// publishes exactly one). A ledger missing its last entries (deleted rows,
/// a half-restored backup) would under-state the privacy spent.
pub(super) fn check_ledger(
    conn: &Connection,
    job_id: &str,
    records: &[LedgerRecord],
) -> StoreResult<()> {
    let truncated = |why: String| {
        corrupt(format!(
            "the ledger of job {job_id:?} is truncated or tampered with: {why}; \
             refusing to account from it"
        ))
    };
    for (i, e) in records.iter().enumerate() {
        if e.seq != i as u64 + 1 {
            return Err(truncated(format!(
                "entry {} has sequence number {}",
                i + 1,
                e.seq
            )));
        }
    }
    let mut rounds = 0u64;
    for e in records.iter().filter(|e| e.kind == LedgerKind::Round) {
        rounds += 1;
        match &e.charge {
            Some(c) if c.round == rounds => {}
            Some(c) => {
                return Err(truncated(format!(
                    "ROUND entry {} charges round {}, expected {rounds}",
                    e.seq, c.round
                )));
            }
            None => return Err(truncated(format!("ROUND entry {} has no charge", e.seq))),
        }
    }
    let job: Option<(i64, i64)> = conn
        .query_row(
            "SELECT rounds_completed, (SELECT COALESCE(MAX(version), 0) FROM model_versions \
             WHERE job_id = ?1) FROM jobs WHERE job_id = ?1",
            [job_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(db)?;
    if let Some((completed, max_version)) = job
        && (completed != rounds as i64 || max_version != rounds as i64)
    {
        return Err(truncated(format!(
            "it charges {rounds} round(s) but the job has committed {completed} and published \
             {max_version} version(s) after its initial one"
        )));
    }
    Ok(())
}
