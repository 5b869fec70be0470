//! Per-client participation counters: who was in how many cohorts is
//! cohort-revealing, so with encryption at rest the count lives in a sealed
//! column bound to the client id (the clear column stays 0).

use rusqlite::types::Value;
use rusqlite::{OptionalExtension, Transaction, params};

use super::sealed::{describe, open_blob, participation_aad};
use super::{corrupt, db};
use crate::store::seal::AtRestKey;
use crate::store::{ClientRecord, StoreResult};

/// A client's participation counter: the sealed column when set, else the
/// clear one (databases in clear, and clients not yet counted when sealed).
pub(super) fn participation(
    key: Option<&AtRestKey>,
    client_id: &str,
    clear: u64,
    sealed: Value,
) -> StoreResult<u64> {
    match sealed {
        Value::Null => Ok(clear),
        v => {
            let aad = participation_aad(client_id);
            let bytes = open_blob(key, &aad, v)?;
            let arr: [u8; 8] = bytes
                .try_into()
                .map_err(|_| corrupt(format!("{}: not 8 bytes", describe(&aad))))?;
            Ok(clear + u64::from_le_bytes(arr))
        }
    }
}

/// A client row with its participation counter opened.
pub(super) fn decode_client(
    key: Option<&AtRestKey>,
    (mut c, sealed): (ClientRecord, Value),
) -> StoreResult<ClientRecord> {
    c.rounds_participated =
        participation(key, &c.identity.client_id, c.rounds_participated, sealed)?;
    Ok(c)
}

/// Adds one to the participation counter of each participant of a
/// committed round: in the clear column without a key; sealed otherwise
/// (read, open, count, re-seal; the clear column stays 0), since who was in
/// the cohorts is cohort-revealing.
pub(super) fn count_participation(
    tx: &Transaction<'_>,
    key: Option<&AtRestKey>,
    participants: &[String],
) -> StoreResult<()> {
    match key {
        None => {
            let mut stmt = tx
                .prepare(
                    "UPDATE clients SET rounds_participated = rounds_participated + 1 \
                     WHERE client_id = ?1",
                )
                .map_err(db)?;
            for p in participants {
                stmt.execute([p]).map_err(db)?;
            }
        }
        Some(key) => {
            // Sealed: read, open, count, re-seal (the clear column stays 0).
            for p in participants {
                let row: Option<(i64, Value)> = tx
                    .query_row(
                        "SELECT rounds_participated, participation FROM clients \
                         WHERE client_id = ?1",
                        [p],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )
                    .optional()
                    .map_err(db)?;
                let Some((clear, sealed)) = row else { continue };
                let clear = u64::try_from(clear).map_err(|_| corrupt("negative counter"))?;
                let n = participation(Some(key), p, clear, sealed)? + 1;
                tx.execute(
                    "UPDATE clients SET rounds_participated = 0, participation = ?2 \
                     WHERE client_id = ?1",
                    params![p, key.seal(&participation_aad(p), &n.to_le_bytes())],
                )
                .map_err(db)?;
            }
        }
    }
    Ok(())
}
