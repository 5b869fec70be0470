//! Rows to records and back: the column lists, row decoders (opening the
//! sealed columns through [`super::sealed`]) and the inserts of model
//! versions and ledger entries.

use fedsec_privacy::RoundCharge;
use fedsec_proto::tls::ClientIdentity;
use rusqlite::types::Value;
use rusqlite::{Row, params};

use super::sealed::{describe, open_text, seal_blob, seal_text, version_aad};
use super::{conv_err, corrupt, db, to_i64, to_u64};
use crate::store::seal::{Aad, AtRestKey};
use crate::store::{
    AttemptRecord, AttemptState, ClientRecord, ClientStatus, LedgerKind, LedgerRecord,
    ModelVersionRecord, StoreResult, VersionInfo,
};

pub(super) const CLIENT_COLS: &str = "client_id, tenant_id, status, status_reason, registered_unix_ms, \
                           last_seen_unix_ms, rounds_participated, software";
/// Columns read for a client: [`CLIENT_COLS`] and the sealed counter.
pub(super) const CLIENT_READ_COLS: &str = "client_id, tenant_id, status, status_reason, registered_unix_ms, \
                                last_seen_unix_ms, rounds_participated, software, participation";

pub(super) fn client_row(r: &Row<'_>) -> rusqlite::Result<(ClientRecord, Value)> {
    let status: String = r.get(2)?;
    Ok((
        ClientRecord {
            identity: ClientIdentity {
                client_id: r.get(0)?,
                tenant_id: r.get(1)?,
            },
            status: ClientStatus::parse(&status)
                .ok_or_else(|| conv_err(format!("client status {status}")))?,
            status_reason: r.get(3)?,
            registered_unix_ms: r.get(4)?,
            last_seen_unix_ms: r.get(5)?,
            rounds_participated: to_u64(r.get(6)?, "rounds_participated")?,
            software: r.get(7)?,
        },
        r.get(8)?,
    ))
}

pub(super) const ATTEMPT_COLS: &str = "job_id, round, attempt, state, base_version, opened_unix_ms, \
                            deadline_unix_ms, closed_unix_ms, selected, accepted, rejected, note";

pub(super) fn attempt_row(r: &Row<'_>) -> rusqlite::Result<AttemptRecord> {
    let state: String = r.get(3)?;
    Ok(AttemptRecord {
        job_id: r.get(0)?,
        round: to_u64(r.get(1)?, "round")?,
        attempt: r.get(2)?,
        state: AttemptState::parse(&state)
            .ok_or_else(|| conv_err(format!("attempt state {state}")))?,
        base_version: to_u64(r.get(4)?, "base_version")?,
        opened_unix_ms: r.get(5)?,
        deadline_unix_ms: r.get(6)?,
        closed_unix_ms: r.get(7)?,
        selected: to_u64(r.get(8)?, "selected")?,
        accepted: to_u64(r.get(9)?, "accepted")?,
        rejected: to_u64(r.get(10)?, "rejected")?,
        note: r.get(11)?,
    })
}

pub(super) const LEDGER_COLS: &str = "seq, kind, attempt, charge_json, epsilon_pld, epsilon_rdp, delta, \
                           model_version, participants, rejected, clipped_fraction, note, \
                           committed_unix_ms";

pub(super) fn ledger_row(r: &Row<'_>) -> rusqlite::Result<(LedgerRecord, Value)> {
    let kind: String = r.get(1)?;
    let kind = match kind.as_str() {
        "ROUND" => LedgerKind::Round,
        "ROLLBACK" => LedgerKind::Rollback,
        other => return Err(conv_err(format!("ledger kind {other}"))),
    };
    let charge: Value = r.get(3)?;
    let record = LedgerRecord {
        seq: to_u64(r.get(0)?, "seq")?,
        kind,
        charge: None,
        attempt: r.get(2)?,
        epsilon_pld: r.get(4)?,
        epsilon_rdp: r.get(5)?,
        delta: r.get(6)?,
        model_version: to_u64(r.get(7)?, "model_version")?,
        participants: to_u64(r.get(8)?, "participants")?,
        rejected: to_u64(r.get(9)?, "rejected")?,
        clipped_fraction: r.get(10)?,
        note: r.get(11)?,
        committed_unix_ms: r.get(12)?,
    };
    Ok((record, charge))
}

/// Opens a ledger row's charge.
pub(super) fn ledger_charge(
    key: Option<&AtRestKey>,
    job_id: &str,
    (mut record, charge): (LedgerRecord, Value),
) -> StoreResult<LedgerRecord> {
    if charge != Value::Null {
        let aad = Aad {
            field: "ledger.charge_json",
            job_id,
            number: record.seq,
        };
        let json = open_text(key, &aad, charge)?;
        record.charge = Some(
            serde_json::from_str::<RoundCharge>(&json)
                .map_err(|e| corrupt(format!("{}: {e}", describe(&aad))))?,
        );
    }
    Ok(record)
}

pub(super) fn sha(r: &Row<'_>, i: usize) -> rusqlite::Result<[u8; 32]> {
    let v: Vec<u8> = r.get(i)?;
    v.try_into()
        .map_err(|_| conv_err("sha256 column is not 32 bytes"))
}

pub(super) fn version_info_row(r: &Row<'_>) -> rusqlite::Result<VersionInfo> {
    Ok(VersionInfo {
        version: to_u64(r.get(0)?, "version")?,
        round: to_u64(r.get(1)?, "round")?,
        sha256: sha(r, 2)?,
        created_unix_ms: r.get(3)?,
        epsilon_pld: r.get(4)?,
    })
}

pub(super) fn insert_version(
    tx: &rusqlite::Transaction<'_>,
    key: Option<&AtRestKey>,
    job_id: &str,
    v: &ModelVersionRecord,
    version: u64,
) -> StoreResult<()> {
    tx.execute(
        "INSERT INTO model_versions (job_id, version, round, sha256, weights, momentum, \
         clip_norm, receipt_json, epsilon_pld, created_unix_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            job_id,
            to_i64(version)?,
            to_i64(v.info.round)?,
            v.info.sha256.as_slice(),
            seal_blob(
                key,
                &version_aad("model_versions.weights", job_id, version),
                &v.weights
            ),
            v.momentum.as_ref().map(|m| seal_blob(
                key,
                &version_aad("model_versions.momentum", job_id, version),
                m
            )),
            v.clip_norm,
            seal_text(
                key,
                &version_aad("model_versions.receipt_json", job_id, version),
                &v.receipt_json
            ),
            v.info.epsilon_pld,
            v.info.created_unix_ms,
        ],
    )
    .map_err(db)?;
    Ok(())
}

pub(super) fn insert_ledger(
    tx: &rusqlite::Transaction<'_>,
    key: Option<&AtRestKey>,
    job_id: &str,
    e: &LedgerRecord,
    round: u64,
) -> StoreResult<u64> {
    let seq: i64 = tx
        .query_row(
            "SELECT COALESCE(MAX(seq), 0) + 1 FROM ledger WHERE job_id = ?1",
            [job_id],
            |r| r.get(0),
        )
        .map_err(db)?;
    let charge = e
        .charge
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(|x| corrupt(x.to_string()))?
        .map(|json| {
            let aad = Aad {
                field: "ledger.charge_json",
                job_id,
                number: seq as u64,
            };
            seal_text(key, &aad, &json)
        });
    tx.execute(
        &format!(
            "INSERT INTO ledger (job_id, round, {LEDGER_COLS}) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"
        ),
        params![
            job_id,
            to_i64(round)?,
            seq,
            e.kind.as_str(),
            e.attempt,
            charge,
            e.epsilon_pld,
            e.epsilon_rdp,
            e.delta,
            to_i64(e.model_version)?,
            to_i64(e.participants)?,
            to_i64(e.rejected)?,
            e.clipped_fraction,
            e.note,
            e.committed_unix_ms,
        ],
    )
    .map_err(db)?;
    Ok(seq as u64)
}
