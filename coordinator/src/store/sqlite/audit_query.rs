//! Reading audit events back: newest first, by job, or concerning given
//! client identities and a tenant (the incident report).

use rusqlite::{Connection, Row, params, params_from_iter};

use super::{db, to_u64};
use crate::store::{AuditRecord, NewAuditEvent, StoreResult};

const COLS: &str = "id, unix_ms, kind, job_id, client_id, detail";

fn map(r: &Row<'_>) -> rusqlite::Result<AuditRecord> {
    Ok(AuditRecord {
        id: to_u64(r.get(0)?, "id")?,
        event: NewAuditEvent {
            unix_ms: r.get(1)?,
            kind: r.get(2)?,
            job_id: r.get(3)?,
            client_id: r.get(4)?,
            detail: r.get(5)?,
        },
    })
}

fn limit_of(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// Audit events, newest first, of one job or all.
pub(super) fn events(
    conn: &Connection,
    job_id: Option<&str>,
    limit: usize,
) -> StoreResult<Vec<AuditRecord>> {
    let limit = limit_of(limit);
    match job_id {
        Some(j) => {
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT {COLS} FROM audit WHERE job_id = ?1 ORDER BY id DESC LIMIT ?2"
                ))
                .map_err(db)?;
            let rows = stmt.query_map(params![j, limit], map).map_err(db)?;
            rows.collect::<Result<_, _>>().map_err(db)
        }
        None => {
            let mut stmt = conn
                .prepare(&format!(
                    "SELECT {COLS} FROM audit ORDER BY id DESC LIMIT ?1"
                ))
                .map_err(db)?;
            let rows = stmt.query_map([limit], map).map_err(db)?;
            rows.collect::<Result<_, _>>().map_err(db)
        }
    }
}

/// Kinds of the tenant-wide events (their detail starts with
/// `tenant <id>:`).
pub(crate) const TENANT_KINDS: [&str; 2] = ["tenant_contained", "tenant_released"];

/// Audit events naming one of `client_ids`, or tenant-wide events of
/// `tenant_id`, newest first.
pub(super) fn concerning(
    conn: &Connection,
    client_ids: &[String],
    tenant_id: Option<&str>,
    limit: usize,
) -> StoreResult<Vec<AuditRecord>> {
    let mut values: Vec<String> = client_ids.to_vec();
    let ids = (1..=client_ids.len())
        .map(|i| format!("?{i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut cond = format!("client_id IN ({ids})");
    if let Some(t) = tenant_id {
        let n = values.len();
        cond = format!(
            "{cond} OR (kind IN ('{}', '{}') AND substr(detail, 1, length(?{})) = ?{})",
            TENANT_KINDS[0],
            TENANT_KINDS[1],
            n + 1,
            n + 1
        );
        values.push(format!("tenant {t}:"));
    }
    values.push(limit_of(limit).to_string());
    let sql = format!(
        "SELECT {COLS} FROM audit WHERE {cond} ORDER BY id DESC LIMIT CAST(?{} AS INTEGER)",
        values.len()
    );
    let mut stmt = conn.prepare(&sql).map_err(db)?;
    let rows = stmt
        .query_map(params_from_iter(values.iter()), map)
        .map_err(db)?;
    rows.collect::<Result<_, _>>().map_err(db)
}
