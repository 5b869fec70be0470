//! The `contributions` table: writing an attempt's record (inside the
//! transaction that commits or abandons it), reading it back and pruning it.
//!
//! Who took part in which round is cohort-revealing. Without a key the
//! participant's fields are in clear columns; with encryption at rest they
//! are sealed together (JSON of [`Contribution`]) in `sealed`, bound to the
//! job, round, attempt and position, and the clear columns stay empty
//! (`outcome` reads `SEALED`). What stays in clear either way: job, round,
//! attempt, position, the version published and the time — so the number of
//! rows per attempt is visible, as the ledger's operator-only
//! `participants` and `rejected` columns already are.

use rusqlite::types::Value;
use rusqlite::{Connection, Row, Transaction, params};

use super::sealed::{encryption_error, open_blob, seal_blob};
use super::{corrupt, db, to_i64, to_u64};
use crate::store::seal::{Aad, AtRestKey};
use crate::store::{
    Contribution, ContributionFilter, ContributionOutcome, ContributionRecord, StoreResult,
};

/// Clear `outcome` of a sealed row.
const SEALED: &str = "SEALED";

/// What a sealed row is bound to: job, round and attempt in the id part,
/// position in the number (a row moved to another attempt does not open).
fn aad_id(job_id: &str, round: u64, attempt: u32) -> String {
    format!("{job_id}\0{round}\0{attempt}")
}

fn aad(id: &str, seq: u32) -> Aad<'_> {
    Aad {
        field: "contributions.record",
        job_id: id,
        number: u64::from(seq),
    }
}

/// Writes an attempt's record in the caller's transaction (`version`: what
/// the attempt published, `None` when abandoned).
pub(super) fn insert(
    tx: &Transaction<'_>,
    key: Option<&AtRestKey>,
    job_id: &str,
    round: u64,
    attempt: u32,
    version: Option<u64>,
    list: &[Contribution],
) -> StoreResult<()> {
    if list.is_empty() {
        return Ok(());
    }
    let mut stmt = tx
        .prepare(
            "INSERT INTO contributions (job_id, round, attempt, seq, model_version, unix_ms, \
             client_id, tenant_id, outcome, reason, norm, clipped, screen_json, sealed) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        )
        .map_err(db)?;
    let version = version.map(to_i64).transpose()?;
    let id = aad_id(job_id, round, attempt);
    for (i, c) in list.iter().enumerate() {
        let seq = u32::try_from(i + 1).map_err(|_| corrupt("more than 2^32 contributions"))?;
        let (who, sealed): ([Value; 7], Value) = match key {
            None => (
                [
                    Value::Text(c.client_id.clone()),
                    Value::Text(c.tenant_id.clone()),
                    Value::Text(c.outcome.as_str().to_owned()),
                    Value::Text(c.reason.clone()),
                    c.norm.map_or(Value::Null, Value::Real),
                    Value::Integer(i64::from(c.clipped)),
                    c.screen_json.clone().map_or(Value::Null, Value::Text),
                ],
                Value::Null,
            ),
            Some(_) => {
                let json = serde_json::to_vec(c)
                    .map_err(|e| corrupt(format!("encoding a contribution: {e}")))?;
                (
                    [
                        Value::Text(String::new()),
                        Value::Text(String::new()),
                        Value::Text(SEALED.to_owned()),
                        Value::Text(String::new()),
                        Value::Null,
                        Value::Integer(0),
                        Value::Null,
                    ],
                    seal_blob(key, &aad(&id, seq), &json),
                )
            }
        };
        let [client, tenant, outcome, reason, norm, clipped, screen] = who;
        stmt.execute(params![
            job_id,
            to_i64(round)?,
            attempt,
            seq,
            version,
            c.unix_ms,
            client,
            tenant,
            outcome,
            reason,
            norm,
            clipped,
            screen,
            sealed,
        ])
        .map_err(db)?;
    }
    Ok(())
}

/// One stored row, before opening.
struct Raw {
    job_id: String,
    round: u64,
    attempt: u32,
    seq: u32,
    version: Option<u64>,
    unix_ms: i64,
    client_id: String,
    tenant_id: String,
    outcome: String,
    reason: String,
    norm: Option<f64>,
    clipped: bool,
    screen_json: Option<String>,
    sealed: Value,
}

fn raw_row(r: &Row<'_>) -> rusqlite::Result<Raw> {
    Ok(Raw {
        job_id: r.get(0)?,
        round: to_u64(r.get(1)?, "round")?,
        attempt: r.get(2)?,
        seq: r.get(3)?,
        version: r
            .get::<_, Option<i64>>(4)?
            .map(|v| to_u64(v, "model_version"))
            .transpose()?,
        unix_ms: r.get(5)?,
        client_id: r.get(6)?,
        tenant_id: r.get(7)?,
        outcome: r.get(8)?,
        reason: r.get(9)?,
        norm: r.get(10)?,
        clipped: r.get(11)?,
        screen_json: r.get(12)?,
        sealed: r.get(13)?,
    })
}

fn decode(key: Option<&AtRestKey>, raw: Raw) -> StoreResult<ContributionRecord> {
    let sealed = !matches!(raw.sealed, Value::Null) || raw.outcome == SEALED;
    if key.is_some() && !sealed {
        // A clear row in a sealed database was not written by us.
        return Err(encryption_error(format!(
            "contribution {} of job {:?} round {} attempt {}: stored in clear in an encrypted \
             database",
            raw.seq, raw.job_id, raw.round, raw.attempt
        )));
    }
    let contribution = if sealed {
        let id = aad_id(&raw.job_id, raw.round, raw.attempt);
        let bytes = open_blob(key, &aad(&id, raw.seq), raw.sealed)?;
        serde_json::from_slice(&bytes).map_err(|e| {
            corrupt(format!(
                "contribution {} of job {:?} round {} attempt {}: {e}",
                raw.seq, raw.job_id, raw.round, raw.attempt
            ))
        })?
    } else {
        Contribution {
            outcome: ContributionOutcome::parse(&raw.outcome)
                .ok_or_else(|| corrupt(format!("contribution outcome {:?}", raw.outcome)))?,
            client_id: raw.client_id,
            tenant_id: raw.tenant_id,
            reason: raw.reason,
            norm: raw.norm,
            clipped: raw.clipped,
            screen_json: raw.screen_json,
            unix_ms: raw.unix_ms,
        }
    };
    Ok(ContributionRecord {
        job_id: raw.job_id,
        round: raw.round,
        attempt: raw.attempt,
        seq: raw.seq,
        model_version: raw.version,
        contribution,
    })
}

/// The recorded contributions passing `filter`, oldest first. Sealed rows
/// are opened before filtering by client or tenant (their ids are not in
/// clear); the table is bounded by retention.
pub(super) fn read(
    conn: &Connection,
    key: Option<&AtRestKey>,
    filter: &ContributionFilter,
) -> StoreResult<Vec<ContributionRecord>> {
    let cols = "job_id, round, attempt, seq, model_version, unix_ms, client_id, tenant_id, \
                outcome, reason, norm, clipped, screen_json, sealed";
    let order = "ORDER BY job_id, round, attempt, seq";
    let mut stmt = conn
        .prepare(&format!(
            "SELECT {cols} FROM contributions WHERE (?1 IS NULL OR job_id = ?1) {order}"
        ))
        .map_err(db)?;
    let rows: Vec<Raw> = stmt
        .query_map([filter.job_id.as_deref()], raw_row)
        .map_err(db)?
        .collect::<Result<_, _>>()
        .map_err(db)?;
    let mut out = Vec::new();
    for raw in rows {
        let r = decode(key, raw)?;
        if filter.matches(&r) {
            out.push(r);
        }
    }
    Ok(out)
}

/// Deletes rows recorded before `before_unix_ms`, then the oldest beyond
/// the newest `max_rows`, in the caller's transaction.
pub(super) fn prune(tx: &Transaction<'_>, before_unix_ms: i64, max_rows: u64) -> StoreResult<u64> {
    let old = tx
        .execute(
            "DELETE FROM contributions WHERE unix_ms < ?1",
            [before_unix_ms],
        )
        .map_err(db)?;
    let count: i64 = tx
        .query_row("SELECT COUNT(*) FROM contributions", [], |r| r.get(0))
        .map_err(db)?;
    let excess = count.saturating_sub(to_i64(max_rows)?);
    let over = if excess > 0 {
        tx.execute(
            "DELETE FROM contributions WHERE rowid IN \
             (SELECT rowid FROM contributions ORDER BY unix_ms, rowid LIMIT ?1)",
            [excess],
        )
        .map_err(db)?
    } else {
        0
    };
    Ok((old + over) as u64)
}
