//! Recording a job's empirical (canary) audit with its receipt.

use rusqlite::{Transaction, params};

use super::sealed::{seal_text, version_aad};
use super::{db, to_i64};
use crate::store::seal::AtRestKey;
use crate::store::{StoreError, StoreResult};

/// Replaces `version`'s receipt and inserts the audit, in the caller's
/// transaction.
pub(super) fn record(
    tx: &Transaction<'_>,
    key: Option<&AtRestKey>,
    job_id: &str,
    version: u64,
    audit_json: &str,
    receipt_json: &str,
    now_unix_ms: i64,
) -> StoreResult<()> {
    let updated = tx
        .execute(
            "UPDATE model_versions SET receipt_json = ?3 WHERE job_id = ?1 AND version = ?2",
            params![
                job_id,
                to_i64(version)?,
                seal_text(
                    key,
                    &version_aad("model_versions.receipt_json", job_id, version),
                    receipt_json
                )
            ],
        )
        .map_err(db)?;
    if updated != 1 {
        return Err(StoreError::Conflict(format!(
            "job {job_id:?} has no version {version}"
        )));
    }
    tx.execute(
        "INSERT INTO empirical_audits (job_id, model_version, audit_json, computed_unix_ms) \
         VALUES (?1, ?2, ?3, ?4)",
        params![job_id, to_i64(version)?, audit_json, now_unix_ms],
    )
    .map_err(|e| match e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            StoreError::Conflict(format!("job {job_id:?} already has an audit"))
        }
        other => db(other),
    })?;
    Ok(())
}
