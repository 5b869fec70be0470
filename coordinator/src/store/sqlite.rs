//! [`SqliteStore`]: the embedded [`Store`] on SQLite (WAL, `synchronous=FULL`).
//!
//! One connection behind a mutex; callers run on blocking threads. The
//! schema is versioned with `PRAGMA user_version` and migrated forward on
//! open by the statements in [`MIGRATIONS`] (one transaction each). A
//! database written by a newer coordinator is refused.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use fedsec_proto::release::AuditAnchor;
use fedsec_proto::tls::ClientIdentity;
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params};

use super::seal::{Aad, AtRestKey};

use super::{
    AttemptClose, AttemptRecord, AuditRecord, ClientRecord, ClientStatus, ContributionFilter,
    ContributionRecord, JobRecord, JobState, LedgerRecord, ModelVersionRecord, NewAuditEvent,
    Resolution, RoundCommit, Store, StoreError, StoreResult, TenantHold, VersionInfo,
};

mod attempts;
pub mod audit;
mod audit_query;
mod audit_time;
mod clients;
mod commit;
mod contributions;
mod empirical;
mod files;
#[cfg(test)]
mod incident_tests;
mod jobs;
mod ledger_check;
mod pages;
mod participation;
mod records;
mod schema;
mod sealed;
mod tenants;
#[cfg(test)]
mod tests;

pub use files::{create_private_dir, create_private_file};
use jobs::{JOB_READ_COLS, RawJob, decode_job, insert_job, job_row, seal_resolution};
use ledger_check::check_ledger;
use participation::decode_client;
use records::{
    CLIENT_READ_COLS, LEDGER_COLS, client_row, insert_version, ledger_charge, ledger_row,
    version_info_row,
};
use schema::migrate;
pub use schema::{MIGRATIONS, schema_version};
use sealed::{check_encryption, open_blob, open_text, seal_blob, version_aad};

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "coordinator.db";

/// SQLite-backed [`Store`].
pub struct SqliteStore {
    conn: Mutex<Connection>,
    path: PathBuf,
    key: Option<AtRestKey>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .field("encrypted", &self.key.is_some())
            .finish_non_exhaustive()
    }
}

fn db(e: rusqlite::Error) -> StoreError {
    // Disk full, busy, locked, I/O: transient (issue 16, store/transient.rs).
    super::transient::classify_sqlite(e)
}

fn corrupt(what: impl Into<String>) -> StoreError {
    StoreError::Corrupt(what.into())
}

fn to_i64(v: u64) -> StoreResult<i64> {
    i64::try_from(v).map_err(|_| StoreError::Conflict(format!("value {v} does not fit in i64")))
}

fn to_u64(v: i64, what: &str) -> rusqlite::Result<u64> {
    u64::try_from(v).map_err(|_| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Integer,
            format!("negative {what}: {v}").into(),
        )
    })
}

fn conv_err(e: impl std::fmt::Display) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.to_string().into())
}

impl SqliteStore {
    /// Opens (creating if needed) `data_dir/coordinator.db` and migrates it.
    /// Refuses a database written with an encryption key.
    pub fn open(data_dir: &Path) -> StoreResult<Self> {
        Self::open_with_key(data_dir, None)
    }

    /// Opens (creating if needed) `data_dir/coordinator.db`, migrates it and
    /// checks that it was written with `key` (or, for `None`, without one).
    /// A new database records which: it can never be opened the other way.
    pub fn open_with_key(data_dir: &Path, key: Option<AtRestKey>) -> StoreResult<Self> {
        create_private_dir(data_dir)?;
        let path = data_dir.join(DB_FILE);
        create_private_file(&path)?;
        let conn = Connection::open(&path).map_err(db)?;
        Self::init(conn, path, key)
    }

    /// An in-memory store (tests).
    pub fn in_memory() -> StoreResult<Self> {
        Self::in_memory_with_key(None)
    }

    /// An in-memory store sealing with `key` (tests).
    pub fn in_memory_with_key(key: Option<AtRestKey>) -> StoreResult<Self> {
        let conn = Connection::open_in_memory().map_err(db)?;
        Self::init(conn, PathBuf::from(":memory:"), key)
    }

    fn init(mut conn: Connection, path: PathBuf, key: Option<AtRestKey>) -> StoreResult<Self> {
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(db)?;
        // WAL keeps readers off writers' backs; FULL syncs the WAL on every
        // commit, so a committed ledger entry survives a power cut.
        let _mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(db)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(db)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(db)?;
        migrate(&mut conn)?;
        check_encryption(&mut conn, &path, key.as_ref())?;
        audit::chain_unhashed(&mut conn)?;
        Ok(Self {
            conn: Mutex::new(conn),
            path,
            key,
        })
    }

    /// Whether records are sealed at rest.
    pub fn encrypted(&self) -> bool {
        self.key.is_some()
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a half-applied
        // transaction behind (it is rolled back on drop), so the connection
        // is still usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` in one write transaction.
    fn write<T>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(db)?;
        let out = f(&tx)?;
        tx.commit().map_err(db)?;
        Ok(out)
    }

    fn decode_clients(&self, raw: Vec<(ClientRecord, Value)>) -> StoreResult<Vec<ClientRecord>> {
        raw.into_iter()
            .map(|r| decode_client(self.key.as_ref(), r))
            .collect()
    }
}

impl Store for SqliteStore {
    fn secret(&self, name: &str, generate: &dyn Fn() -> Vec<u8>) -> StoreResult<Vec<u8>> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(db)?;
        let key = format!("secret:{name}");
        let aad = Aad {
            field: "meta.secret",
            job_id: name,
            number: 0,
        };
        let found: Option<Value> = tx
            .query_row("SELECT value FROM meta WHERE key = ?1", [&key], |r| {
                r.get(0)
            })
            .optional()
            .map_err(db)?;
        let value = match found {
            Some(v) => open_blob(self.key.as_ref(), &aad, v)?,
            None => {
                let v = generate();
                tx.execute(
                    "INSERT INTO meta (key, value) VALUES (?1, ?2)",
                    params![key, seal_blob(self.key.as_ref(), &aad, &v)],
                )
                .map_err(db)?;
                v
            }
        };
        tx.commit().map_err(db)?;
        Ok(value)
    }

    fn insert_job(&self, job: &JobRecord, initial: &ModelVersionRecord) -> StoreResult<()> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(db)?;
        insert_job(&tx, self.key.as_ref(), job)?;
        insert_version(&tx, self.key.as_ref(), job.id(), initial, 0)?;
        audit::release(
            &tx,
            &audit::Release {
                kind: audit::MODEL_RELEASED,
                job_id: job.id(),
                version: 0,
                round: 0,
                weights_sha256: &initial.info.sha256,
                receipt_json: Some(&initial.receipt_json),
                note: "initial model of a new job",
                unix_ms: job.created_unix_ms,
            },
        )?;
        tx.commit().map_err(db)
    }

    fn jobs(&self) -> StoreResult<Vec<JobRecord>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {JOB_READ_COLS} FROM jobs ORDER BY created_unix_ms DESC, job_id"
            ))
            .map_err(db)?;
        let rows: Vec<RawJob> = stmt
            .query_map([], job_row)
            .map_err(db)?
            .collect::<Result<_, _>>()
            .map_err(db)?;
        rows.into_iter()
            .map(|r| decode_job(self.key.as_ref(), r))
            .collect()
    }

    fn job(&self, job_id: &str) -> StoreResult<Option<JobRecord>> {
        let raw = self
            .conn()
            .query_row(
                &format!("SELECT {JOB_READ_COLS} FROM jobs WHERE job_id = ?1"),
                [job_id],
                job_row,
            )
            .optional()
            .map_err(db)?;
        raw.map(|r| decode_job(self.key.as_ref(), r)).transpose()
    }

    fn set_job_state(&self, job_id: &str, state: JobState, reason: &str) -> StoreResult<()> {
        let n = self
            .conn()
            .execute(
                "UPDATE jobs SET state = ?2, state_reason = ?3 WHERE job_id = ?1",
                params![job_id, state.as_str(), reason],
            )
            .map_err(db)?;
        if n == 0 {
            return Err(StoreError::Conflict(format!("no job {job_id:?}")));
        }
        Ok(())
    }

    fn set_job_resolution(&self, job_id: &str, resolution: &Resolution) -> StoreResult<()> {
        let json = seal_resolution(self.key.as_ref(), job_id, resolution)?;
        let n = self
            .conn()
            .execute(
                "UPDATE jobs SET resolution_json = ?2 WHERE job_id = ?1 AND resolution_json IS NULL",
                params![job_id, json],
            )
            .map_err(db)?;
        if n == 0 {
            return Err(StoreError::Conflict(format!(
                "job {job_id:?} is unknown or already started"
            )));
        }
        Ok(())
    }

    fn upsert_client(
        &self,
        identity: &ClientIdentity,
        software: &str,
        now_unix_ms: i64,
    ) -> StoreResult<ClientRecord> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(db)?;
        let record = clients::upsert_client(&tx, identity, software, now_unix_ms)?;
        tx.commit().map_err(db)?;
        decode_client(self.key.as_ref(), record)
    }

    fn clients(&self) -> StoreResult<Vec<ClientRecord>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {CLIENT_READ_COLS} FROM clients ORDER BY client_id"
            ))
            .map_err(db)?;
        let rows: Vec<(ClientRecord, Value)> = stmt
            .query_map([], client_row)
            .map_err(db)?
            .collect::<Result<_, _>>()
            .map_err(db)?;
        rows.into_iter()
            .map(|r| decode_client(self.key.as_ref(), r))
            .collect()
    }

    fn set_client_status(
        &self,
        client_id: &str,
        status: ClientStatus,
        reason: &str,
    ) -> StoreResult<Option<ClientRecord>> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(db)?;
        let n = tx
            .execute(
                "UPDATE clients SET status = ?2, status_reason = ?3 WHERE client_id = ?1",
                params![client_id, status.as_str(), reason],
            )
            .map_err(db)?;
        if n == 0 {
            return Ok(None);
        }
        let record = tx
            .query_row(
                &format!("SELECT {CLIENT_READ_COLS} FROM clients WHERE client_id = ?1"),
                [client_id],
                client_row,
            )
            .map_err(db)?;
        tx.commit().map_err(db)?;
        decode_client(self.key.as_ref(), record).map(Some)
    }

    fn touch_clients(&self, seen: &[(String, i64)]) -> StoreResult<()> {
        if seen.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(db)?;
        {
            let mut stmt = tx
                .prepare(
                    "UPDATE clients SET last_seen_unix_ms = MAX(last_seen_unix_ms, ?2) \
                     WHERE client_id = ?1",
                )
                .map_err(db)?;
            for (id, t) in seen {
                stmt.execute(params![id, t]).map_err(db)?;
            }
        }
        tx.commit().map_err(db)
    }

    fn next_attempt(&self, job_id: &str, round: u64) -> StoreResult<u32> {
        attempts::next(&self.conn(), job_id, round)
    }

    fn open_attempt(&self, a: &AttemptRecord) -> StoreResult<()> {
        attempts::open(&self.conn(), a)
    }

    fn abandon_attempt(
        &self,
        job_id: &str,
        round: u64,
        attempt: u32,
        close: &AttemptClose,
    ) -> StoreResult<()> {
        self.write(|tx| {
            attempts::abandon(tx, job_id, round, attempt, close)?;
            contributions::insert(
                tx,
                self.key.as_ref(),
                job_id,
                round,
                attempt,
                None,
                &close.contributions,
            )
        })
    }

    fn abandon_open_attempts(
        &self,
        note: &str,
        now_unix_ms: i64,
    ) -> StoreResult<Vec<AttemptRecord>> {
        attempts::abandon_all_open(&mut self.conn(), note, now_unix_ms)
    }

    fn attempts(&self, job_id: &str) -> StoreResult<Vec<AttemptRecord>> {
        attempts::of_job(&self.conn(), job_id)
    }

    fn commit_round(&self, c: &RoundCommit) -> StoreResult<(u64, u64)> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(db)?;
        let committed = commit::commit_round(&tx, self.key.as_ref(), c)?;
        tx.commit().map_err(db)?;
        Ok(committed)
    }

    fn rollback(&self, job_id: &str, version: u64, entry: &LedgerRecord) -> StoreResult<u64> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(db)?;
        let seq = commit::rollback(&tx, self.key.as_ref(), job_id, version, entry)?;
        tx.commit().map_err(db)?;
        Ok(seq)
    }

    fn record_empirical_audit(
        &self,
        job_id: &str,
        version: u64,
        audit_json: &str,
        receipt_json: &str,
        now_unix_ms: i64,
    ) -> StoreResult<()> {
        self.write(|tx| {
            empirical::record(
                tx,
                self.key.as_ref(),
                job_id,
                version,
                audit_json,
                receipt_json,
                now_unix_ms,
            )
        })
    }

    fn empirical_audit(&self, job_id: &str) -> StoreResult<Option<(String, u64)>> {
        self.conn()
            .query_row(
                "SELECT audit_json, model_version FROM empirical_audits WHERE job_id = ?1",
                [job_id],
                |r| Ok((r.get::<_, String>(0)?, to_u64(r.get(1)?, "model version")?)),
            )
            .optional()
            .map_err(db)
    }

    fn ledger(&self, job_id: &str) -> StoreResult<Vec<LedgerRecord>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {LEDGER_COLS} FROM ledger WHERE job_id = ?1 ORDER BY seq"
            ))
            .map_err(db)?;
        let rows: Vec<_> = stmt
            .query_map([job_id], ledger_row)
            .map_err(db)?
            .collect::<Result<_, _>>()
            .map_err(db)?;
        let records: Vec<LedgerRecord> = rows
            .into_iter()
            .map(|row| ledger_charge(self.key.as_ref(), job_id, row))
            .collect::<StoreResult<_>>()?;
        check_ledger(&conn, job_id, &records)?;
        Ok(records)
    }

    fn versions(&self, job_id: &str) -> StoreResult<Vec<VersionInfo>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(
                "SELECT version, round, sha256, created_unix_ms, epsilon_pld \
                 FROM model_versions WHERE job_id = ?1 ORDER BY version",
            )
            .map_err(db)?;
        let rows = stmt.query_map([job_id], version_info_row).map_err(db)?;
        rows.collect::<Result<_, _>>().map_err(db)
    }

    fn version(&self, job_id: &str, version: u64) -> StoreResult<Option<ModelVersionRecord>> {
        let row = self
            .conn()
            .query_row(
                "SELECT version, round, sha256, created_unix_ms, epsilon_pld, weights, momentum, \
                 clip_norm, receipt_json FROM model_versions WHERE job_id = ?1 AND version = ?2",
                params![job_id, to_i64(version)?],
                |r| {
                    Ok((
                        version_info_row(r)?,
                        r.get::<_, Value>(5)?,
                        r.get::<_, Value>(6)?,
                        r.get::<_, f64>(7)?,
                        r.get::<_, Value>(8)?,
                    ))
                },
            )
            .optional()
            .map_err(db)?;
        let Some((info, weights, momentum, clip_norm, receipt)) = row else {
            return Ok(None);
        };
        let key = self.key.as_ref();
        let aad = |field| version_aad(field, job_id, version);
        Ok(Some(ModelVersionRecord {
            info,
            weights: open_blob(key, &aad("model_versions.weights"), weights)?,
            momentum: match momentum {
                Value::Null => None,
                m => Some(open_blob(key, &aad("model_versions.momentum"), m)?),
            },
            clip_norm,
            receipt_json: open_text(key, &aad("model_versions.receipt_json"), receipt)?,
        }))
    }

    fn append_audit(&self, e: &NewAuditEvent) -> StoreResult<u64> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(db)?;
        let head = audit::append(&tx, e)?;
        tx.commit().map_err(db)?;
        Ok(head.seq)
    }

    fn prune_audit(&self, before_unix_ms: i64, max_rows: u64) -> StoreResult<u64> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(db)?;
        let now = crate::engine::now_unix_ms();
        let deleted = audit::prune(&tx, before_unix_ms, max_rows, now)?;
        tx.commit().map_err(db)?;
        Ok(deleted)
    }

    fn audit_head(&self) -> StoreResult<AuditAnchor> {
        audit::head(&self.conn())
    }

    fn release_anchor(&self, job_id: &str, version: u64) -> StoreResult<Option<AuditAnchor>> {
        audit::release_anchor(&self.conn(), job_id, version)
    }

    fn audit_events(&self, job_id: Option<&str>, limit: usize) -> StoreResult<Vec<AuditRecord>> {
        audit_query::events(&self.conn(), job_id, limit)
    }

    fn audit_events_concerning(
        &self,
        client_ids: &[String],
        tenant_id: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<AuditRecord>> {
        audit_query::concerning(&self.conn(), client_ids, tenant_id, limit)
    }

    fn contributions(&self, filter: &ContributionFilter) -> StoreResult<Vec<ContributionRecord>> {
        contributions::read(&self.conn(), self.key.as_ref(), filter)
    }

    fn prune_contributions(&self, before_unix_ms: i64, max_rows: u64) -> StoreResult<u64> {
        self.write(|tx| contributions::prune(tx, before_unix_ms, max_rows))
    }

    fn contain_tenant(
        &self,
        tenant_id: &str,
        reason: &str,
        now_unix_ms: i64,
    ) -> StoreResult<(TenantHold, Vec<ClientRecord>)> {
        let (hold, raw) = self.write(|tx| {
            let hold = tenants::contain(tx, tenant_id, reason, now_unix_ms)?;
            Ok((hold, tenants::identities(tx, tenant_id)?))
        })?;
        Ok((hold, self.decode_clients(raw)?))
    }

    fn release_tenant(
        &self,
        tenant_id: &str,
        reason: &str,
    ) -> StoreResult<Option<(TenantHold, Vec<ClientRecord>)>> {
        let released = self.write(|tx| {
            let Some(hold) = tenants::release(tx, tenant_id, reason)? else {
                return Ok(None);
            };
            Ok(Some((hold, tenants::identities(tx, tenant_id)?)))
        })?;
        released
            .map(|(hold, raw)| Ok((hold, self.decode_clients(raw)?)))
            .transpose()
    }

    fn contained_tenants(&self) -> StoreResult<Vec<TenantHold>> {
        tenants::holds(&self.conn())
    }
}
