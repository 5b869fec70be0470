//! The audit table as a hash chain ([`crate::store::audit_chain`]): appends
//! (each row's `hash` written in the same transaction as the row), pruning
//! behind a checkpoint, release anchors of model versions, and the offline
//! verification and JSONL export `fedsec-coordinator admin audit` runs on a
//! database file.
//!
//! Rows written before the chain existed (schema < 4) are chained when the
//! database is first opened by a coordinator that has it, in id order, and
//! every model version released before then is anchored at the resulting
//! head ([`chain_unhashed`]).

use std::io::Write;
use std::path::Path;

use fedsec_proto::release::{AuditAnchor, receipt_digest};
use rusqlite::{Connection, OpenFlags, OptionalExtension, Transaction, params};

pub use super::audit_time::{parse_since, rfc3339};
use super::{db, to_i64};
use crate::store::audit_chain::{ChainBreak, ChainReport, Checkpoint, genesis, link, walk};
use crate::store::{NewAuditEvent, StoreError, StoreResult};

/// Audit row kind of a model version served for the first time.
pub const MODEL_RELEASED: &str = "model_released";
/// Audit row kind of a rollback (the version is released again).
pub const MODEL_ROLLED_BACK: &str = "model_rolled_back";

fn hash_of(v: Option<Vec<u8>>, id: i64) -> StoreResult<Option<[u8; 32]>> {
    v.map(|b| {
        <[u8; 32]>::try_from(b.as_slice())
            .map_err(|_| StoreError::Corrupt(format!("audit row {id}: hash is not 32 bytes")))
    })
    .transpose()
}

/// The pruning checkpoint, if rows were ever pruned.
pub(super) fn checkpoint(conn: &Connection) -> StoreResult<Option<Checkpoint>> {
    let row: Option<(i64, Vec<u8>, i64, i64)> = conn
        .query_row(
            "SELECT last_id, head, pruned_rows, pruned_unix_ms FROM audit_checkpoint WHERE id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()
        .map_err(db)?;
    row.map(|(last, head, n, at)| {
        Ok(Checkpoint {
            last_id: last.max(0) as u64,
            head: hash_of(Some(head), last)?.unwrap_or_default(),
            pruned_rows: n.max(0) as u64,
            pruned_unix_ms: at,
        })
    })
    .transpose()
}

/// The chain head: the newest row, else the checkpoint, else genesis.
pub(super) fn head(conn: &Connection) -> StoreResult<AuditAnchor> {
    let last: Option<(i64, Option<Vec<u8>>)> = conn
        .query_row(
            "SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(db)?;
    match last {
        Some((id, h)) => Ok(AuditAnchor {
            seq: id.max(0) as u64,
            hash: hash_of(h, id)?
                .ok_or_else(|| StoreError::Corrupt(format!("audit row {id} has no chain hash")))?,
        }),
        None => Ok(match checkpoint(conn)? {
            Some(c) => AuditAnchor {
                seq: c.last_id,
                hash: c.head,
            },
            None => AuditAnchor {
                seq: 0,
                hash: genesis(),
            },
        }),
    }
}

/// Appends `e` chained to the head, in the caller's transaction; returns
/// the new head.
pub(super) fn append(tx: &Transaction<'_>, e: &NewAuditEvent) -> StoreResult<AuditAnchor> {
    let prev = head(tx)?;
    tx.execute(
        "INSERT INTO audit (unix_ms, kind, job_id, client_id, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![e.unix_ms, e.kind, e.job_id, e.client_id, e.detail],
    )
    .map_err(db)?;
    let id = tx.last_insert_rowid();
    let hash = link(&prev.hash, id as u64, e);
    tx.execute(
        "UPDATE audit SET hash = ?2 WHERE id = ?1",
        params![id, hash.to_vec()],
    )
    .map_err(db)?;
    Ok(AuditAnchor {
        seq: id as u64,
        hash,
    })
}

/// What one release row says.
pub(super) struct Release<'a> {
    pub(super) kind: &'static str,
    pub(super) job_id: &'a str,
    pub(super) version: u64,
    pub(super) round: u64,
    pub(super) weights_sha256: &'a [u8; 32],
    /// The receipt as stored (none for a rollback: the served receipt is
    /// restated from the ledger and its digest is in the signed release).
    pub(super) receipt_json: Option<&'a str>,
    pub(super) note: &'a str,
    pub(super) unix_ms: i64,
}

/// Appends the release row of a model version and anchors the version at
/// it, in the caller's transaction (the commit, rollback or job creation
/// that releases it): a version is never served without its audit row.
pub(super) fn release(tx: &Transaction<'_>, r: &Release<'_>) -> StoreResult<AuditAnchor> {
    let mut detail = format!(
        "version {} after round {}, weights sha256 {}",
        r.version,
        r.round,
        hex::encode(r.weights_sha256),
    );
    if let Some(json) = r.receipt_json {
        detail.push_str(&format!(
            ", receipt sha256 {}",
            hex::encode(receipt_digest(json))
        ));
    }
    if !r.note.is_empty() {
        detail.push_str("; ");
        detail.push_str(r.note);
    }
    let anchor = append(
        tx,
        &NewAuditEvent {
            unix_ms: r.unix_ms,
            kind: r.kind.to_owned(),
            job_id: r.job_id.to_owned(),
            client_id: String::new(),
            detail: crate::fields::audit_detail(detail),
        },
    )?;
    tx.execute(
        "UPDATE model_versions SET audit_seq = ?3, audit_head = ?4 WHERE job_id = ?1 AND version = ?2",
        params![
            r.job_id,
            to_i64(r.version)?,
            to_i64(anchor.seq)?,
            anchor.hash.to_vec()
        ],
    )
    .map_err(db)?;
    Ok(anchor)
}

/// The anchor of a model version's (latest) release.
pub(super) fn release_anchor(
    conn: &Connection,
    job_id: &str,
    version: u64,
) -> StoreResult<Option<AuditAnchor>> {
    let row: Option<(Option<i64>, Option<Vec<u8>>)> = conn
        .query_row(
            "SELECT audit_seq, audit_head FROM model_versions WHERE job_id = ?1 AND version = ?2",
            params![job_id, to_i64(version)?],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(db)?;
    match row {
        Some((Some(seq), h)) => Ok(Some(AuditAnchor {
            seq: seq.max(0) as u64,
            hash: hash_of(h, seq)?.ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "version {version} of {job_id:?}: anchor without hash"
                ))
            })?,
        })),
        _ => Ok(None),
    }
}

/// Chains rows without a hash (written before schema 4) in id order and
/// anchors unanchored model versions at the resulting head. A no-op once
/// everything is chained.
pub(super) fn chain_unhashed(conn: &mut Connection) -> StoreResult<()> {
    let tx = conn.transaction().map_err(db)?;
    let first: Option<i64> = tx
        .query_row("SELECT min(id) FROM audit WHERE hash IS NULL", [], |r| {
            r.get(0)
        })
        .map_err(db)?;
    if let Some(first) = first {
        let before: Option<(i64, Option<Vec<u8>>)> = tx
            .query_row(
                "SELECT id, hash FROM audit WHERE id < ?1 ORDER BY id DESC LIMIT 1",
                [first],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(db)?;
        let mut prev = match before {
            Some((id, h)) => hash_of(h, id)?.unwrap_or_else(genesis),
            None => checkpoint(&tx)?.map_or_else(genesis, |c| c.head),
        };
        let rows: Vec<(i64, NewAuditEvent)> = {
            let mut stmt = tx
                .prepare(
                    "SELECT id, unix_ms, kind, job_id, client_id, detail FROM audit \
                     WHERE id >= ?1 ORDER BY id",
                )
                .map_err(db)?;
            stmt.query_map([first], |r| Ok((r.get(0)?, event_row(r, 1)?)))
                .map_err(db)?
                .collect::<Result<_, _>>()
                .map_err(db)?
        };
        for (id, e) in rows {
            prev = link(&prev, id as u64, &e);
            tx.execute(
                "UPDATE audit SET hash = ?2 WHERE id = ?1",
                params![id, prev.to_vec()],
            )
            .map_err(db)?;
        }
    }
    let h = head(&tx)?;
    tx.execute(
        "UPDATE model_versions SET audit_seq = ?1, audit_head = ?2 WHERE audit_seq IS NULL",
        params![to_i64(h.seq)?, h.hash.to_vec()],
    )
    .map_err(db)?;
    tx.commit().map_err(db)
}

fn event_row(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<NewAuditEvent> {
    Ok(NewAuditEvent {
        unix_ms: r.get(at)?,
        kind: r.get(at + 1)?,
        job_id: r.get(at + 2)?,
        client_id: r.get(at + 3)?,
        detail: r.get(at + 4)?,
    })
}

/// Deletes rows older than `before_unix_ms` and the oldest beyond the
/// newest `max_rows`, and moves the checkpoint to the last deleted row (its
/// hash is the link the first kept row verifies from). Returns the rows deleted.
pub(super) fn prune(
    tx: &Transaction<'_>,
    before_unix_ms: i64,
    max_rows: u64,
    now_unix_ms: i64,
) -> StoreResult<u64> {
    let newest: Option<i64> = tx
        .query_row("SELECT max(id) FROM audit", [], |r| r.get(0))
        .map_err(db)?;
    let Some(newest) = newest else {
        return Ok(0);
    };
    // By count: keep the newest `max_rows` (ids only grow: AUTOINCREMENT).
    let by_count = newest.saturating_sub(i64::try_from(max_rows).unwrap_or(i64::MAX));
    // By age: events are appended in time order, so everything before the
    // oldest event young enough goes (the scan stops at that event).
    let first_kept: Option<i64> = tx
        .query_row(
            "SELECT id FROM audit WHERE unix_ms >= ?1 ORDER BY id LIMIT 1",
            [before_unix_ms],
            |r| r.get(0),
        )
        .optional()
        .map_err(db)?;
    let by_age = first_kept.map_or(newest, |id| id - 1);
    let cut = by_count.max(by_age);
    let last: Option<(i64, Option<Vec<u8>>)> = tx
        .query_row(
            "SELECT id, hash FROM audit WHERE id <= ?1 ORDER BY id DESC LIMIT 1",
            [cut],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(db)?;
    let Some((last_id, hash)) = last else {
        return Ok(0);
    };
    let hash = hash_of(hash, last_id)?
        .ok_or_else(|| StoreError::Corrupt(format!("audit row {last_id} has no chain hash")))?;
    let deleted = tx
        .execute("DELETE FROM audit WHERE id <= ?1", [last_id])
        .map_err(db)? as i64;
    tx.execute(
        "INSERT INTO audit_checkpoint (id, last_id, head, pruned_rows, pruned_unix_ms) \
         VALUES (1, ?1, ?2, ?3, ?4) \
         ON CONFLICT(id) DO UPDATE SET last_id = ?1, head = ?2, \
         pruned_rows = pruned_rows + ?3, pruned_unix_ms = ?4",
        params![last_id, hash.to_vec(), deleted, now_unix_ms],
    )
    .map_err(db)?;
    Ok(deleted as u64)
}

/// Opens a coordinator database read-only for `admin audit verify/export`
/// (a running coordinator may keep writing: WAL readers see a consistent
/// snapshot).
fn open_read_only(data_dir: &Path) -> StoreResult<Connection> {
    let path = data_dir.join(super::DB_FILE);
    if !path.is_file() {
        return Err(StoreError::DataDir {
            path,
            message: "no coordinator database here".into(),
        });
    }
    let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(db)?;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(db)?;
    if version < 4 {
        return Err(StoreError::DataDir {
            path,
            message: format!(
                "schema version {version} has no audit chain: start a current coordinator on it once"
            ),
        });
    }
    Ok(conn)
}

/// Verifies the audit chain of the database in `data_dir`: every row's
/// hash against its content and predecessor (from the pruning checkpoint,
/// if any), gap-free ids up to the highest id SQLite ever issued (rows
/// deleted from the end), and every model version's release anchor
/// against the row it names.
pub fn verify_file(data_dir: &Path) -> StoreResult<ChainReport> {
    let conn = open_read_only(data_dir)?;
    let checkpoint = checkpoint(&conn)?;
    let start = checkpoint.as_ref().map_or_else(genesis, |c| c.head);
    let first_expected = checkpoint.as_ref().map_or(1, |c| c.last_id + 1);
    let mut stmt = conn
        .prepare("SELECT id, unix_ms, kind, job_id, client_id, detail, hash FROM audit ORDER BY id")
        .map_err(db)?;
    let mut failure = None;
    let mut rows = 0u64;
    let mut first_id = None;
    let iter = stmt
        .query_map([], |r| {
            let id: i64 = r.get(0)?;
            Ok((id, event_row(r, 1)?, r.get::<_, Option<Vec<u8>>>(6)?))
        })
        .map_err(db)?
        .map_while(|r| match r {
            Ok((id, e, h)) => match hash_of(h, id) {
                Ok(h) => Some((id.max(0) as u64, e, h)),
                Err(e) => {
                    failure = Some(e);
                    None
                }
            },
            Err(e) => {
                failure = Some(db(e));
                None
            }
        })
        .inspect(|(id, _, _)| {
            rows += 1;
            first_id.get_or_insert(*id);
        });
    let (hashes, mut breaks) = walk(start, Some(first_expected), iter);
    if let Some(e) = failure {
        return Err(e);
    }
    let last_id = hashes.last().map(|(id, _)| *id);
    let head = hashes.last().map(|(_, h)| *h).unwrap_or(start);
    // Rows deleted from the end leave no broken link: SQLite's
    // AUTOINCREMENT counter still names the highest id it issued.
    let issued: Option<i64> = conn
        .query_row(
            "SELECT seq FROM sqlite_sequence WHERE name = 'audit'",
            [],
            |r| r.get(0),
        )
        .optional()
        .map_err(db)?;
    let top = last_id
        .or(checkpoint.as_ref().map(|c| c.last_id))
        .unwrap_or(0);
    if let Some(issued) = issued.map(|i| i.max(0) as u64)
        && issued > top
    {
        breaks.push(ChainBreak {
            id: issued,
            problem: format!(
                "rows {}..={issued} were deleted from the end of the log",
                top + 1
            ),
        });
    }
    // Every anchor a signed release carried must name a row that hashes to it.
    let mut anchors_checked = 0;
    let mut stmt = conn
        .prepare(
            "SELECT job_id, version, audit_seq, audit_head FROM model_versions \
             WHERE audit_seq IS NOT NULL ORDER BY job_id, version",
        )
        .map_err(db)?;
    let anchors: Vec<(String, i64, i64, Option<Vec<u8>>)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .map_err(db)?
        .collect::<Result<_, _>>()
        .map_err(db)?;
    let pruned_to = checkpoint.as_ref().map_or(0, |c| c.last_id);
    for (job, version, seq, h) in anchors {
        let seq = seq.max(0) as u64;
        let want = hash_of(h, seq as i64)?;
        let found = if seq == pruned_to && seq > 0 {
            Some(start)
        } else if seq == 0 {
            Some(genesis())
        } else if seq < pruned_to {
            continue; // pruned by the retention policy
        } else {
            hashes
                .binary_search_by_key(&seq, |(id, _)| *id)
                .ok()
                .map(|i| hashes[i].1)
        };
        anchors_checked += 1;
        if found.is_none() || found != want {
            breaks.push(ChainBreak {
                id: seq,
                problem: format!(
                    "version {version} of job {job:?} was released anchored at row {seq}, which {}",
                    if found.is_none() {
                        "is missing"
                    } else {
                        "no longer has the anchored hash"
                    }
                ),
            });
        }
    }
    breaks.sort_by_key(|b| b.id);
    Ok(ChainReport {
        rows,
        first_id,
        last_id,
        checkpoint,
        head,
        anchors_checked,
        breaks,
    })
}

/// Writes the rows of `data_dir`'s audit log at or after `since_unix_ms`
/// as JSON lines (one object per row: `@timestamp` in RFC 3339 UTC,
/// `unix_ms`, `id`, `kind`, `job_id`, `client_id`, `detail`, `hash`) for
/// ELK or Splunk; returns the rows written.
pub fn export_file(data_dir: &Path, since_unix_ms: i64, out: &mut dyn Write) -> StoreResult<u64> {
    let conn = open_read_only(data_dir)?;
    let mut stmt = conn
        .prepare(
            "SELECT id, unix_ms, kind, job_id, client_id, detail, hash FROM audit \
             WHERE unix_ms >= ?1 ORDER BY id",
        )
        .map_err(db)?;
    let mut rows = stmt.query([since_unix_ms]).map_err(db)?;
    let mut n = 0;
    let io = |e: std::io::Error| StoreError::Database(format!("cannot write the export: {e}"));
    while let Some(r) = rows.next().map_err(db)? {
        let id: i64 = r.get(0).map_err(db)?;
        let e = event_row(r, 1).map_err(db)?;
        let hash: Option<Vec<u8>> = r.get(6).map_err(db)?;
        let line = serde_json::json!({
            "@timestamp": rfc3339(e.unix_ms),
            "unix_ms": e.unix_ms,
            "id": id,
            "kind": e.kind,
            "job_id": e.job_id,
            "client_id": e.client_id,
            "detail": e.detail,
            "hash": hash.map(hex::encode),
            "source": "fedsec-coordinator",
        });
        serde_json::to_writer(&mut *out, &line)
            .map_err(|e| StoreError::Database(format!("cannot write the export: {e}")))?;
        out.write_all(b"\n").map_err(io)?;
        n += 1;
    }
    out.flush().map_err(io)?;
    Ok(n)
}
