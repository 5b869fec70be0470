//! Job rows: the spec and the resolution (q, z, the expected cohort) are
//! sealed with encryption at rest and bound to the job id, so whoever can
//! write the database cannot turn a job's noise off or change its q or z.

use rusqlite::types::Value;
use rusqlite::{OptionalExtension, Row, Transaction, params};

use super::sealed::{describe, job_aad, open_text, seal_text};
use super::{corrupt, db, to_i64, to_u64};
use crate::config::JobSpec;
use crate::store::seal::AtRestKey;
use crate::store::{JobRecord, JobState, Resolution, StoreError, StoreResult};

pub(super) const JOB_COLS: &str = "spec_json, state, state_reason, created_unix_ms, resolution_json, \
                        rounds_completed, current_version, clip_norm";
/// Columns [`job_row`] reads: [`JOB_COLS`] and the id.
pub(super) const JOB_READ_COLS: &str = "spec_json, state, state_reason, created_unix_ms, resolution_json, \
                             rounds_completed, current_version, clip_norm, job_id";

/// A `jobs` row with its (possibly sealed) spec and resolution still raw.
pub(super) struct RawJob {
    job_id: String,
    spec: Value,
    state: String,
    state_reason: String,
    created_unix_ms: i64,
    resolution: Value,
    rounds_completed: u64,
    current_version: u64,
    clip_norm: f64,
}

pub(super) fn job_row(r: &Row<'_>) -> rusqlite::Result<RawJob> {
    Ok(RawJob {
        job_id: r.get(8)?,
        spec: r.get(0)?,
        state: r.get(1)?,
        state_reason: r.get(2)?,
        created_unix_ms: r.get(3)?,
        resolution: r.get(4)?,
        rounds_completed: to_u64(r.get(5)?, "rounds_completed")?,
        current_version: to_u64(r.get(6)?, "current_version")?,
        clip_norm: r.get(7)?,
    })
}

pub(super) fn decode_job(key: Option<&AtRestKey>, raw: RawJob) -> StoreResult<JobRecord> {
    let id = raw.job_id.as_str();
    let spec_aad = job_aad("jobs.spec_json", id);
    let spec_json = open_text(key, &spec_aad, raw.spec)?;
    let spec: JobSpec = serde_json::from_str(&spec_json)
        .map_err(|e| corrupt(format!("{}: {e}", describe(&spec_aad))))?;
    if spec.id != raw.job_id {
        return Err(corrupt(format!(
            "job {id:?}: its stored definition names job {:?}",
            spec.id
        )));
    }
    let state = JobState::parse(&raw.state)
        .ok_or_else(|| corrupt(format!("job {id:?}: state {}", raw.state)))?;
    let resolution = match raw.resolution {
        Value::Null => None,
        v => {
            let aad = job_aad("jobs.resolution_json", id);
            let json = open_text(key, &aad, v)?;
            Some(
                serde_json::from_str::<Resolution>(&json)
                    .map_err(|e| corrupt(format!("{}: {e}", describe(&aad))))?,
            )
        }
    };
    Ok(JobRecord {
        spec,
        state,
        state_reason: raw.state_reason,
        created_unix_ms: raw.created_unix_ms,
        resolution,
        rounds_completed: raw.rounds_completed,
        current_version: raw.current_version,
        clip_norm: raw.clip_norm,
    })
}

/// Inserts a new job's row in the caller's transaction (its spec and
/// resolution sealed); refuses an existing job id.
pub(super) fn insert_job(
    tx: &Transaction<'_>,
    key: Option<&AtRestKey>,
    job: &JobRecord,
) -> StoreResult<()> {
    let exists: Option<i64> = tx
        .query_row("SELECT 1 FROM jobs WHERE job_id = ?1", [job.id()], |r| {
            r.get(0)
        })
        .optional()
        .map_err(db)?;
    if exists.is_some() {
        return Err(StoreError::Conflict(format!(
            "job {:?} already exists",
            job.id()
        )));
    }
    let spec = serde_json::to_string(&job.spec).map_err(|e| corrupt(e.to_string()))?;
    let spec = seal_text(key, &job_aad("jobs.spec_json", job.id()), &spec);
    let resolution = job
        .resolution
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| corrupt(e.to_string()))?
        .map(|r| seal_text(key, &job_aad("jobs.resolution_json", job.id()), &r));
    tx.execute(
        &format!(
            "INSERT INTO jobs (job_id, {JOB_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
        ),
        params![
            job.id(),
            spec,
            job.state.as_str(),
            job.state_reason,
            job.created_unix_ms,
            resolution,
            to_i64(job.rounds_completed)?,
            to_i64(job.current_version)?,
            job.clip_norm,
        ],
    )
    .map_err(db)?;
    Ok(())
}

/// A job's resolution as stored: JSON, sealed to the job id with
/// encryption at rest.
pub(super) fn seal_resolution(
    key: Option<&AtRestKey>,
    job_id: &str,
    resolution: &Resolution,
) -> StoreResult<Value> {
    let json = serde_json::to_string(resolution).map_err(|e| corrupt(e.to_string()))?;
    Ok(seal_text(
        key,
        &job_aad("jobs.resolution_json", job_id),
        &json,
    ))
}
