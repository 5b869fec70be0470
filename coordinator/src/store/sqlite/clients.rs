//! Client registration: a client id is bound to its tenant for good.

use fedsec_proto::tls::ClientIdentity;
use rusqlite::types::Value;
use rusqlite::{OptionalExtension, Transaction, params};

use super::db;
use super::records::{CLIENT_COLS, CLIENT_READ_COLS, client_row};
use crate::store::{ClientRecord, ClientStatus, StoreError, StoreResult};

/// Registers `identity` (or refreshes its software and last-seen time) in
/// the caller's transaction; refuses a client id registered to another
/// tenant. A new identity of a contained tenant is stored quarantined.
/// Returns the row with its participation counter still raw.
pub(super) fn upsert_client(
    tx: &Transaction<'_>,
    identity: &ClientIdentity,
    software: &str,
    now_unix_ms: i64,
) -> StoreResult<(ClientRecord, Value)> {
    let existing: Option<ClientRecord> = tx
        .query_row(
            &format!("SELECT {CLIENT_READ_COLS} FROM clients WHERE client_id = ?1"),
            [&identity.client_id],
            client_row,
        )
        .optional()
        .map_err(db)?
        .map(|r| r.0);
    match existing {
        Some(c) if c.identity.tenant_id != identity.tenant_id => {
            return Err(StoreError::Conflict(format!(
                "client id {:?} is registered to another tenant",
                identity.client_id
            )));
        }
        Some(_) => {
            tx.execute(
                "UPDATE clients SET software = ?2, \
                 last_seen_unix_ms = MAX(last_seen_unix_ms, ?3) WHERE client_id = ?1",
                params![identity.client_id, software, now_unix_ms],
            )
            .map_err(db)?;
        }
        None => {
            tx.execute(
                &format!(
                    "INSERT INTO clients ({CLIENT_COLS}) VALUES (?1, ?2, ?3, '', ?4, ?4, 0, ?5)"
                ),
                params![
                    identity.client_id,
                    identity.tenant_id,
                    ClientStatus::Active.as_str(),
                    now_unix_ms,
                    software
                ],
            )
            .map_err(db)?;
            // A containment stored since the service's check: held too.
            if let Some(hold) = super::tenants::hold(tx, &identity.tenant_id)? {
                super::tenants::hold_new_identity(tx, &hold, &identity.client_id)?;
            }
        }
    }
    let record = tx
        .query_row(
            &format!("SELECT {CLIENT_READ_COLS} FROM clients WHERE client_id = ?1"),
            [&identity.client_id],
            client_row,
        )
        .map_err(db)?;
    Ok(record)
}
