//! Tenant containment: the `contained_tenants` table and the status
//! changes of the tenant's identities that go with it, in one transaction.

use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};

use super::records::{CLIENT_READ_COLS, client_row};
use super::{corrupt, db};
use crate::store::{ClientRecord, ClientStatus, StoreError, StoreResult, TenantHold};

fn hold_row(r: &Row<'_>) -> rusqlite::Result<(String, String, i64, String)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
}

fn decode(
    (tenant_id, reason, since_unix_ms, list): (String, String, i64, String),
) -> StoreResult<TenantHold> {
    let quarantined: Vec<String> = serde_json::from_str(&list).map_err(|e| {
        corrupt(format!(
            "contained tenant {tenant_id:?}: quarantined list: {e}"
        ))
    })?;
    Ok(TenantHold {
        tenant_id,
        reason,
        since_unix_ms,
        quarantined,
    })
}

fn list_json(ids: &[String]) -> StoreResult<String> {
    serde_json::to_string(ids).map_err(|e| corrupt(format!("encoding a client list: {e}")))
}

/// The hold on `tenant_id`, if contained.
pub(super) fn hold(conn: &Connection, tenant_id: &str) -> StoreResult<Option<TenantHold>> {
    conn.query_row(
        "SELECT tenant_id, reason, since_unix_ms, quarantined FROM contained_tenants \
         WHERE tenant_id = ?1",
        [tenant_id],
        hold_row,
    )
    .optional()
    .map_err(db)?
    .map(decode)
    .transpose()
}

/// Every hold, by tenant id.
pub(super) fn holds(conn: &Connection) -> StoreResult<Vec<TenantHold>> {
    let mut stmt = conn
        .prepare(
            "SELECT tenant_id, reason, since_unix_ms, quarantined FROM contained_tenants \
             ORDER BY tenant_id",
        )
        .map_err(db)?;
    let rows: Vec<_> = stmt
        .query_map([], hold_row)
        .map_err(db)?
        .collect::<Result<_, _>>()
        .map_err(db)?;
    rows.into_iter().map(decode).collect()
}

/// The tenant's identities, raw (participation counters not opened).
pub(super) fn identities(
    conn: &Connection,
    tenant_id: &str,
) -> StoreResult<Vec<(ClientRecord, Value)>> {
    let mut stmt = conn
        .prepare(&format!(
            "SELECT {CLIENT_READ_COLS} FROM clients WHERE tenant_id = ?1 ORDER BY client_id"
        ))
        .map_err(db)?;
    let rows = stmt
        .query_map([tenant_id], client_row)
        .map_err(db)?
        .collect::<Result<_, _>>()
        .map_err(db)?;
    Ok(rows)
}

/// Records the hold and quarantines the tenant's active identities.
pub(super) fn contain(
    tx: &Transaction<'_>,
    tenant_id: &str,
    reason: &str,
    now_unix_ms: i64,
) -> StoreResult<TenantHold> {
    if hold(tx, tenant_id)?.is_some() {
        return Err(StoreError::Conflict(format!(
            "tenant {tenant_id:?} is already contained"
        )));
    }
    let status_reason = format!("tenant {tenant_id} contained: {reason}");
    let mut quarantined = Vec::new();
    for (c, _) in identities(tx, tenant_id)? {
        if c.status == ClientStatus::Active {
            tx.execute(
                "UPDATE clients SET status = ?2, status_reason = ?3 WHERE client_id = ?1",
                params![
                    c.identity.client_id,
                    ClientStatus::Quarantined.as_str(),
                    status_reason
                ],
            )
            .map_err(db)?;
            quarantined.push(c.identity.client_id);
        }
    }
    tx.execute(
        "INSERT INTO contained_tenants (tenant_id, reason, since_unix_ms, quarantined) \
         VALUES (?1, ?2, ?3, ?4)",
        params![tenant_id, reason, now_unix_ms, list_json(&quarantined)?],
    )
    .map_err(db)?;
    Ok(TenantHold {
        tenant_id: tenant_id.to_owned(),
        reason: reason.to_owned(),
        since_unix_ms: now_unix_ms,
        quarantined,
    })
}

/// A new identity registered while its tenant is contained: stored
/// quarantined, and added to the hold's list (released with the tenant).
pub(super) fn hold_new_identity(
    tx: &Transaction<'_>,
    hold: &TenantHold,
    client_id: &str,
) -> StoreResult<()> {
    tx.execute(
        "UPDATE clients SET status = ?2, status_reason = ?3 WHERE client_id = ?1",
        params![
            client_id,
            ClientStatus::Quarantined.as_str(),
            format!(
                "tenant {} contained: {} (registered while contained)",
                hold.tenant_id, hold.reason
            )
        ],
    )
    .map_err(db)?;
    let mut list = hold.quarantined.clone();
    list.push(client_id.to_owned());
    tx.execute(
        "UPDATE contained_tenants SET quarantined = ?2 WHERE tenant_id = ?1",
        params![hold.tenant_id, list_json(&list)?],
    )
    .map_err(db)?;
    Ok(())
}

/// Deletes the hold and makes active again the identities it quarantined
/// that are still quarantined; `None` if the tenant is not contained.
pub(super) fn release(
    tx: &Transaction<'_>,
    tenant_id: &str,
    reason: &str,
) -> StoreResult<Option<TenantHold>> {
    let Some(h) = hold(tx, tenant_id)? else {
        return Ok(None);
    };
    for id in &h.quarantined {
        tx.execute(
            "UPDATE clients SET status = ?2, status_reason = ?3 \
             WHERE client_id = ?1 AND status = ?4",
            params![
                id,
                ClientStatus::Active.as_str(),
                format!("tenant {tenant_id} released: {reason}"),
                ClientStatus::Quarantined.as_str()
            ],
        )
        .map_err(db)?;
    }
    tx.execute(
        "DELETE FROM contained_tenants WHERE tenant_id = ?1",
        [tenant_id],
    )
    .map_err(db)?;
    Ok(Some(h))
}
