//! The two writes that move a job's published version: committing a round
//! (version, ledger entry, progress, participation and the record of who
//! took part in one transaction)
//! and rolling back to an earlier version.

use rusqlite::{OptionalExtension, Transaction, params};

use super::participation::count_participation;
use super::records::{insert_ledger, insert_version};
use super::{db, to_i64};
use crate::store::seal::AtRestKey;
use crate::store::{JobState, LedgerKind, LedgerRecord, RoundCommit, StoreError, StoreResult};

/// Writes a committed round in the caller's transaction: checks the job is
/// running at the previous round and the attempt open, then the model
/// version, the ledger entry, the job's progress and the participation
/// counters. Returns the ledger sequence number and the version.
pub(super) fn commit_round(
    tx: &Transaction<'_>,
    key: Option<&AtRestKey>,
    c: &RoundCommit,
) -> StoreResult<(u64, u64)> {
    let (done, state): (i64, String) = tx
        .query_row(
            "SELECT rounds_completed, state FROM jobs WHERE job_id = ?1",
            [&c.job_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(db)?
        .ok_or_else(|| StoreError::Conflict(format!("no job {:?}", c.job_id)))?;
    if to_i64(c.round)? != done + 1 {
        return Err(StoreError::Conflict(format!(
            "job {:?}: committing round {} but {} rounds are committed",
            c.job_id, c.round, done
        )));
    }
    if state != JobState::Running.as_str() {
        return Err(StoreError::Conflict(format!(
            "job {:?} is {state}, not RUNNING",
            c.job_id
        )));
    }
    let attempt_open = tx
        .execute(
            "UPDATE rounds SET state = 'COMMITTED', closed_unix_ms = ?4, accepted = ?5, \
             rejected = ?6 WHERE job_id = ?1 AND round = ?2 AND attempt = ?3 AND state = 'OPEN'",
            params![
                c.job_id,
                to_i64(c.round)?,
                c.attempt,
                c.ledger.committed_unix_ms,
                to_i64(c.participants.len() as u64)?,
                to_i64(c.rejected)?,
            ],
        )
        .map_err(db)?;
    if attempt_open != 1 {
        return Err(StoreError::Conflict(format!(
            "job {:?} round {} attempt {} is not open",
            c.job_id, c.round, c.attempt
        )));
    }
    let version: i64 = tx
        .query_row(
            "SELECT COALESCE(MAX(version), 0) + 1 FROM model_versions WHERE job_id = ?1",
            [&c.job_id],
            |r| r.get(0),
        )
        .map_err(db)?;
    let version = version as u64;
    insert_version(tx, key, &c.job_id, &c.version, version)?;
    let mut entry = c.ledger.clone();
    entry.model_version = version;
    let seq = insert_ledger(tx, key, &c.job_id, &entry, c.round)?;
    tx.execute(
        "UPDATE jobs SET rounds_completed = ?2, current_version = ?3, clip_norm = ?4 \
         WHERE job_id = ?1",
        params![
            c.job_id,
            to_i64(c.round)?,
            to_i64(version)?,
            c.version.clip_norm
        ],
    )
    .map_err(db)?;
    count_participation(tx, key, &c.participants)?;
    // The record of who took part, with the version: it commits (or fails)
    // with the ledger entry, never apart from it.
    super::contributions::insert(
        tx,
        key,
        &c.job_id,
        c.round,
        c.attempt,
        Some(version),
        &c.contributions,
    )?;
    super::audit::release(
        tx,
        &super::audit::Release {
            kind: super::audit::MODEL_RELEASED,
            job_id: &c.job_id,
            version,
            round: c.round,
            weights_sha256: &c.version.info.sha256,
            receipt_json: Some(&c.version.receipt_json),
            note: &format!(
                "ledger entry {seq}, ε so far {} (RDP {}) at δ = {}",
                c.ledger.epsilon_pld, c.ledger.epsilon_rdp, c.ledger.delta
            ),
            unix_ms: c.ledger.committed_unix_ms,
        },
    )?;
    Ok((seq, version))
}

/// Writes a rollback to `version` in the caller's transaction: a ROLLBACK
/// ledger entry (no charge) and the job's current version and clip norm.
pub(super) fn rollback(
    tx: &Transaction<'_>,
    key: Option<&AtRestKey>,
    job_id: &str,
    version: u64,
    entry: &LedgerRecord,
) -> StoreResult<u64> {
    let clip: Option<(f64, i64, Vec<u8>)> = tx
        .query_row(
            "SELECT clip_norm, round, sha256 FROM model_versions WHERE job_id = ?1 AND version = ?2",
            params![job_id, to_i64(version)?],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
        .map_err(db)?;
    let (clip, round, sha256): (f64, i64, Vec<u8>) = clip
        .ok_or_else(|| StoreError::Conflict(format!("job {job_id:?} has no version {version}")))?;
    let mut e = entry.clone();
    e.model_version = version;
    e.kind = LedgerKind::Rollback;
    e.charge = None;
    let seq = insert_ledger(tx, key, job_id, &e, 0)?;
    tx.execute(
        "UPDATE jobs SET current_version = ?2, clip_norm = ?3 WHERE job_id = ?1",
        params![job_id, to_i64(version)?, clip],
    )
    .map_err(db)?;
    // The receipt served after a rollback is restated (it states the full
    // spend); its digest is in the signed release, not in this row.
    super::audit::release(
        tx,
        &super::audit::Release {
            kind: super::audit::MODEL_ROLLED_BACK,
            job_id,
            version,
            round: u64::try_from(round).unwrap_or(0),
            weights_sha256: &<[u8; 32]>::try_from(sha256.as_slice()).unwrap_or([0; 32]),
            receipt_json: None,
            note: &format!("ledger entry {seq}: {}", entry.note),
            unix_ms: entry.committed_unix_ms,
        },
    )?;
    Ok(seq)
}
