//! [`SqliteStore`]: the embedded [`Store`] on SQLite (WAL, `synchronous=FULL`).
//!
//! One connection behind a mutex; callers run on blocking threads. The
//! schema is versioned with `PRAGMA user_version` and migrated forward on
//! open by the statements in [`MIGRATIONS`] (one transaction each). A
//! database written by a newer coordinator is refused.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use fedsec_privacy::RoundCharge;
use fedsec_proto::tls::ClientIdentity;
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::seal::{Aad, AtRestKey};

use super::{
    AttemptClose, AttemptRecord, AttemptState, AuditRecord, ClientRecord, ClientStatus, JobRecord,
    JobState, LedgerKind, LedgerRecord, ModelVersionRecord, NewAuditEvent, Resolution, RoundCommit,
    Store, StoreError, StoreResult, VersionInfo,
};
use crate::config::JobSpec;

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "coordinator.db";

/// Schema migrations; entry `i` takes `user_version` from `i` to `i + 1`.
pub const MIGRATIONS: &[&str] = &[
    // 1: initial schema.
    r#"
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value BLOB NOT NULL
    );
    CREATE TABLE jobs (
        job_id           TEXT PRIMARY KEY,
        spec_json        TEXT NOT NULL,
        state            TEXT NOT NULL,
        state_reason     TEXT NOT NULL DEFAULT '',
        created_unix_ms  INTEGER NOT NULL,
        resolution_json  TEXT,
        rounds_completed INTEGER NOT NULL DEFAULT 0,
        current_version  INTEGER NOT NULL DEFAULT 0,
        clip_norm        REAL NOT NULL
    );
    CREATE TABLE clients (
        client_id           TEXT PRIMARY KEY,
        tenant_id           TEXT NOT NULL,
        status              TEXT NOT NULL,
        status_reason       TEXT NOT NULL DEFAULT '',
        registered_unix_ms  INTEGER NOT NULL,
        last_seen_unix_ms   INTEGER NOT NULL,
        rounds_participated INTEGER NOT NULL DEFAULT 0,
        software            TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE rounds (
        job_id           TEXT NOT NULL REFERENCES jobs(job_id),
        round            INTEGER NOT NULL,
        attempt          INTEGER NOT NULL,
        state            TEXT NOT NULL,
        base_version     INTEGER NOT NULL,
        opened_unix_ms   INTEGER NOT NULL,
        deadline_unix_ms INTEGER NOT NULL,
        closed_unix_ms   INTEGER,
        selected         INTEGER NOT NULL,
        accepted         INTEGER NOT NULL DEFAULT 0,
        rejected         INTEGER NOT NULL DEFAULT 0,
        note             TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (job_id, round, attempt)
    );
    CREATE TABLE model_versions (
        job_id          TEXT NOT NULL REFERENCES jobs(job_id),
        version         INTEGER NOT NULL,
        round           INTEGER NOT NULL,
        sha256          BLOB NOT NULL,
        weights         BLOB NOT NULL,
        momentum        BLOB,
        clip_norm       REAL NOT NULL,
        receipt_json    TEXT NOT NULL,
        epsilon_pld     REAL NOT NULL,
        created_unix_ms INTEGER NOT NULL,
        PRIMARY KEY (job_id, version)
    );
    CREATE TABLE ledger (
        job_id            TEXT NOT NULL REFERENCES jobs(job_id),
        seq               INTEGER NOT NULL,
        kind              TEXT NOT NULL,
        round             INTEGER NOT NULL,
        attempt           INTEGER NOT NULL,
        charge_json       TEXT,
        epsilon_pld       REAL NOT NULL,
        epsilon_rdp       REAL NOT NULL,
        delta             REAL NOT NULL,
        model_version     INTEGER NOT NULL,
        participants      INTEGER NOT NULL,
        rejected          INTEGER NOT NULL,
        clipped_fraction  REAL NOT NULL,
        note              TEXT NOT NULL DEFAULT '',
        committed_unix_ms INTEGER NOT NULL,
        PRIMARY KEY (job_id, seq),
        FOREIGN KEY (job_id, model_version) REFERENCES model_versions(job_id, version)
    );
    CREATE UNIQUE INDEX ledger_one_charge_per_round ON ledger(job_id, round) WHERE kind = 'ROUND';
    CREATE TABLE audit (
        id        INTEGER PRIMARY KEY AUTOINCREMENT,
        unix_ms   INTEGER NOT NULL,
        kind      TEXT NOT NULL,
        job_id    TEXT NOT NULL DEFAULT '',
        client_id TEXT NOT NULL DEFAULT '',
        detail    TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX audit_by_job ON audit(job_id, id);
    "#,
    // 2: empirical (canary) audit results, one per job.
    r#"
    CREATE TABLE empirical_audits (
        job_id           TEXT PRIMARY KEY REFERENCES jobs(job_id),
        model_version    INTEGER NOT NULL,
        audit_json       TEXT NOT NULL,
        computed_unix_ms INTEGER NOT NULL
    );
    "#,
    // 3: per-client participation counter, sealed with encryption at rest
    // (it reveals who was in the cohorts); `rounds_participated` stays 0 then.
    r#"
    ALTER TABLE clients ADD COLUMN participation BLOB;
    "#,
];

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
    StoreError::Database(e.to_string())
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
}

/// Creates `dir` (and parents) with mode 0700 on Unix; an existing `dir`
/// accessible by group or others is tightened to 0700 (the store, its WAL
/// and the lock file live there).
pub fn create_private_dir(dir: &Path) -> StoreResult<()> {
    let err = |e: std::io::Error| StoreError::DataDir {
        path: dir.to_owned(),
        message: e.to_string(),
    };
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        builder.mode(0o700);
        builder.create(dir).map_err(err)?;
        let mode = std::fs::metadata(dir).map_err(err)?.permissions().mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode & 0o700))
                .map_err(err)?;
        }
    }
    #[cfg(not(unix))]
    builder.create(dir).map_err(err)?;
    Ok(())
}

/// Creates `path` empty with mode 0600 if it does not exist (SQLite then
/// gives its `-wal` and `-shm` files the same mode); an existing file
/// accessible by group or others is tightened to 0600.
pub fn create_private_file(path: &Path) -> StoreResult<()> {
    let err = |e: std::io::Error| StoreError::DataDir {
        path: path.to_owned(),
        message: e.to_string(),
    };
    let mut opts = std::fs::OpenOptions::new();
    opts.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        opts.mode(0o600);
        let file = opts.open(path).map_err(err)?;
        let mode = file.metadata().map_err(err)?.permissions().mode();
        if mode & 0o077 != 0 {
            file.set_permissions(std::fs::Permissions::from_mode(mode & 0o600))
                .map_err(err)?;
        }
    }
    #[cfg(not(unix))]
    opts.open(path).map_err(err)?;
    Ok(())
}

/// Current schema version of this build.
pub fn schema_version() -> i64 {
    MIGRATIONS.len() as i64
}

fn migrate(conn: &mut Connection) -> StoreResult<()> {
    let found: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(db)?;
    let supported = schema_version();
    if found > supported {
        return Err(StoreError::SchemaTooNew { found, supported });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction().map_err(db)?;
        tx.execute_batch(sql).map_err(db)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)
            .map_err(db)?;
        tx.commit().map_err(db)?;
    }
    Ok(())
}

/// `meta` key recording whether (and with which key) the database is sealed.
const ENCRYPTION_META: &str = "encryption";
/// Marker of a database stored in clear.
const CLEAR_MARKER: &[u8] = b"none";
/// Plaintext of the key check sealed into the marker of an encrypted database.
const KEY_CHECK: &[u8] = b"fedsec coordinator at-rest key check";

fn key_check_aad() -> Aad<'static> {
    Aad {
        field: "meta.key_check",
        job_id: "",
        number: 0,
    }
}

fn encryption_error(m: impl Into<String>) -> StoreError {
    StoreError::Encryption(m.into())
}

/// Compares the database's encryption marker with the key given (writing
/// the marker on a database's first open).
fn check_encryption(
    conn: &mut Connection,
    path: &Path,
    key: Option<&AtRestKey>,
) -> StoreResult<()> {
    let tx = conn.transaction().map_err(db)?;
    let marker: Option<Vec<u8>> = tx
        .query_row(
            "SELECT value FROM meta WHERE key = ?1",
            [ENCRYPTION_META],
            |r| r.get(0),
        )
        .optional()
        .map_err(db)?;
    let p = path.display();
    match (marker, key) {
        (None, key) => {
            // Databases from before encryption existed have no marker: they
            // are in clear if they hold anything.
            let has_data: bool = tx
                .query_row(
                    "SELECT EXISTS(SELECT 1 FROM model_versions) OR EXISTS(SELECT 1 FROM ledger) \
                     OR EXISTS(SELECT 1 FROM meta)",
                    [],
                    |r| r.get(0),
                )
                .map_err(db)?;
            if has_data && key.is_some() {
                return Err(encryption_error(format!(
                    "{p} was written without encryption; storage.encryption_key_file cannot be \
                     turned on for an existing database (start with a new data_dir)"
                )));
            }
            let value = key.map_or_else(
                || CLEAR_MARKER.to_vec(),
                |k| k.seal(&key_check_aad(), KEY_CHECK),
            );
            tx.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)",
                params![ENCRYPTION_META, value],
            )
            .map_err(db)?;
        }
        (Some(m), None) if m == CLEAR_MARKER => {}
        (Some(_), None) => {
            return Err(encryption_error(format!(
                "{p} is encrypted at rest; set storage.encryption_key_file to the key it was \
                 written with"
            )));
        }
        (Some(m), Some(_)) if m == CLEAR_MARKER => {
            return Err(encryption_error(format!(
                "{p} was written without encryption; storage.encryption_key_file cannot be \
                 turned on for an existing database (start with a new data_dir)"
            )));
        }
        (Some(m), Some(k)) => match k.open(&key_check_aad(), &m) {
            Ok(v) if v == KEY_CHECK => {}
            _ => {
                return Err(encryption_error(format!(
                    "{p} was written with a different encryption key than \
                     storage.encryption_key_file holds (wrong key file?)"
                )));
            }
        },
    }
    tx.commit().map_err(db)
}

/// Seals a blob (or passes it through without a key).
fn seal_blob(key: Option<&AtRestKey>, aad: &Aad<'_>, plain: &[u8]) -> Value {
    match key {
        Some(k) => Value::Blob(k.seal(aad, plain)),
        None => Value::Blob(plain.to_vec()),
    }
}

/// Seals a text column (stored as a BLOB when sealed, as TEXT in clear).
fn seal_text(key: Option<&AtRestKey>, aad: &Aad<'_>, plain: &str) -> Value {
    match key {
        Some(k) => Value::Blob(k.seal(aad, plain.as_bytes())),
        None => Value::Text(plain.to_owned()),
    }
}

fn describe(aad: &Aad<'_>) -> String {
    format!(
        "{} of job {:?} record {}",
        aad.field, aad.job_id, aad.number
    )
}

/// Opens a stored blob.
fn open_blob(key: Option<&AtRestKey>, aad: &Aad<'_>, v: Value) -> StoreResult<Vec<u8>> {
    match (key, v) {
        (Some(k), Value::Blob(b)) => k
            .open(aad, &b)
            .map_err(|e| encryption_error(format!("{}: {e}", describe(aad)))),
        (None, Value::Blob(b)) => Ok(b),
        (Some(_), _) => Err(encryption_error(format!(
            "{}: stored in clear in an encrypted database",
            describe(aad)
        ))),
        (None, other) => Err(corrupt(format!(
            "{}: expected a blob, found {:?}",
            describe(aad),
            other.data_type()
        ))),
    }
}

/// Opens a stored text column.
fn open_text(key: Option<&AtRestKey>, aad: &Aad<'_>, v: Value) -> StoreResult<String> {
    let bytes = match (key, v) {
        (None, Value::Text(t)) => return Ok(t),
        (Some(_), Value::Text(_)) => {
            return Err(encryption_error(format!(
                "{}: stored in clear in an encrypted database",
                describe(aad)
            )));
        }
        (key @ Some(_), v @ Value::Blob(_)) => open_blob(key, aad, v)?,
        (_, other) => {
            return Err(corrupt(format!(
                "{}: expected text, found {:?}",
                describe(aad),
                other.data_type()
            )));
        }
    };
    String::from_utf8(bytes).map_err(|_| corrupt(format!("{}: not UTF-8", describe(aad))))
}

fn version_aad<'a>(field: &'static str, job_id: &'a str, version: u64) -> Aad<'a> {
    Aad {
        field,
        job_id,
        number: version,
    }
}

const JOB_COLS: &str = "spec_json, state, state_reason, created_unix_ms, resolution_json, \
                        rounds_completed, current_version, clip_norm";
/// Columns [`job_row`] reads: [`JOB_COLS`] and the id.
const JOB_READ_COLS: &str = "spec_json, state, state_reason, created_unix_ms, resolution_json, \
                             rounds_completed, current_version, clip_norm, job_id";

/// A `jobs` row with its (possibly sealed) spec and resolution still raw.
struct RawJob {
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

fn job_row(r: &Row<'_>) -> rusqlite::Result<RawJob> {
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

/// What a job's spec and resolution are sealed to (with encryption at rest,
/// they are authenticated like every other record: whoever can write the
/// database cannot turn a job's noise off or change its q or z).
fn job_aad<'a>(field: &'static str, job_id: &'a str) -> Aad<'a> {
    Aad {
        field,
        job_id,
        number: 0,
    }
}

fn decode_job(key: Option<&AtRestKey>, raw: RawJob) -> StoreResult<JobRecord> {
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

const CLIENT_COLS: &str = "client_id, tenant_id, status, status_reason, registered_unix_ms, \
                           last_seen_unix_ms, rounds_participated, software";
/// Columns read for a client: [`CLIENT_COLS`] and the sealed counter.
const CLIENT_READ_COLS: &str = "client_id, tenant_id, status, status_reason, registered_unix_ms, \
                                last_seen_unix_ms, rounds_participated, software, participation";

fn participation_aad(client_id: &str) -> Aad<'_> {
    Aad {
        field: "clients.participation",
        job_id: client_id,
        number: 0,
    }
}

/// A client's participation counter: the sealed column when set, else the
/// clear one (databases in clear, and clients not yet counted when sealed).
fn participation(
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

fn client_row(r: &Row<'_>) -> rusqlite::Result<(ClientRecord, Value)> {
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

/// A client row with its participation counter opened.
fn decode_client(
    key: Option<&AtRestKey>,
    (mut c, sealed): (ClientRecord, Value),
) -> StoreResult<ClientRecord> {
    c.rounds_participated =
        participation(key, &c.identity.client_id, c.rounds_participated, sealed)?;
    Ok(c)
}

const ATTEMPT_COLS: &str = "job_id, round, attempt, state, base_version, opened_unix_ms, \
                            deadline_unix_ms, closed_unix_ms, selected, accepted, rejected, note";

fn attempt_row(r: &Row<'_>) -> rusqlite::Result<AttemptRecord> {
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

const LEDGER_COLS: &str = "seq, kind, attempt, charge_json, epsilon_pld, epsilon_rdp, delta, \
                           model_version, participants, rejected, clipped_fraction, note, \
                           committed_unix_ms";

fn ledger_row(r: &Row<'_>) -> rusqlite::Result<(LedgerRecord, Value)> {
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
fn ledger_charge(
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

/// Detects a truncated or gapped ledger: sequence numbers must run 1, 2, …;
/// the ROUND entries must be rounds 1, 2, … and as many as the job's
/// committed rounds and its published versions (each committed round
/// publishes exactly one). A ledger missing its last entries (deleted rows,
/// a half-restored backup) would under-state the privacy spent.
fn check_ledger(conn: &Connection, job_id: &str, records: &[LedgerRecord]) -> StoreResult<()> {
    let truncated = |why: String| {
        corrupt(format!(
            "the ledger of job {job_id:?} is truncated or tampered with: {why}; \
             refusing to account from it"
        ))
    };
    for (i, e) in records.iter().enumerate() {
        if e.seq != i as u64 + 1 {
            return Err(truncated(format!(
                "entry {} has sequence number {}",
                i + 1,
                e.seq
            )));
        }
    }
    let mut rounds = 0u64;
    for e in records.iter().filter(|e| e.kind == LedgerKind::Round) {
        rounds += 1;
        match &e.charge {
            Some(c) if c.round == rounds => {}
            Some(c) => {
                return Err(truncated(format!(
                    "ROUND entry {} charges round {}, expected {rounds}",
                    e.seq, c.round
                )));
            }
            None => return Err(truncated(format!("ROUND entry {} has no charge", e.seq))),
        }
    }
    let job: Option<(i64, i64)> = conn
        .query_row(
            "SELECT rounds_completed, (SELECT COALESCE(MAX(version), 0) FROM model_versions \
             WHERE job_id = ?1) FROM jobs WHERE job_id = ?1",
            [job_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(db)?;
    if let Some((completed, max_version)) = job
        && (completed != rounds as i64 || max_version != rounds as i64)
    {
        return Err(truncated(format!(
            "it charges {rounds} round(s) but the job has committed {completed} and published \
             {max_version} version(s) after its initial one"
        )));
    }
    Ok(())
}

fn sha(r: &Row<'_>, i: usize) -> rusqlite::Result<[u8; 32]> {
    let v: Vec<u8> = r.get(i)?;
    v.try_into()
        .map_err(|_| conv_err("sha256 column is not 32 bytes"))
}

fn version_info_row(r: &Row<'_>) -> rusqlite::Result<VersionInfo> {
    Ok(VersionInfo {
        version: to_u64(r.get(0)?, "version")?,
        round: to_u64(r.get(1)?, "round")?,
        sha256: sha(r, 2)?,
        created_unix_ms: r.get(3)?,
        epsilon_pld: r.get(4)?,
    })
}

fn insert_version(
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

fn insert_ledger(
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
        let key = self.key.as_ref();
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
        insert_version(&tx, self.key.as_ref(), job.id(), initial, 0)?;
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
        let json = serde_json::to_string(resolution).map_err(|e| corrupt(e.to_string()))?;
        let json = seal_text(
            self.key.as_ref(),
            &job_aad("jobs.resolution_json", job_id),
            &json,
        );
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
            }
        }
        let record = tx
            .query_row(
                &format!("SELECT {CLIENT_READ_COLS} FROM clients WHERE client_id = ?1"),
                [&identity.client_id],
                client_row,
            )
            .map_err(db)?;
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
        let max: i64 = self
            .conn()
            .query_row(
                "SELECT COALESCE(MAX(attempt), 0) FROM rounds WHERE job_id = ?1 AND round = ?2",
                params![job_id, to_i64(round)?],
                |r| r.get(0),
            )
            .map_err(db)?;
        u32::try_from(max + 1).map_err(|_| corrupt("attempt counter overflow"))
    }

    fn open_attempt(&self, a: &AttemptRecord) -> StoreResult<()> {
        self.conn()
            .execute(
                &format!(
                    "INSERT INTO rounds ({ATTEMPT_COLS}) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL, ?8, 0, 0, '')"
                ),
                params![
                    a.job_id,
                    to_i64(a.round)?,
                    a.attempt,
                    AttemptState::Open.as_str(),
                    to_i64(a.base_version)?,
                    a.opened_unix_ms,
                    a.deadline_unix_ms,
                    to_i64(a.selected)?,
                ],
            )
            .map_err(db)?;
        Ok(())
    }

    fn abandon_attempt(
        &self,
        job_id: &str,
        round: u64,
        attempt: u32,
        close: &AttemptClose,
    ) -> StoreResult<()> {
        let n = self
            .conn()
            .execute(
                "UPDATE rounds SET state = ?4, closed_unix_ms = ?5, accepted = ?6, \
                 rejected = ?7, note = ?8 \
                 WHERE job_id = ?1 AND round = ?2 AND attempt = ?3 AND state = 'OPEN'",
                params![
                    job_id,
                    to_i64(round)?,
                    attempt,
                    AttemptState::Abandoned.as_str(),
                    close.closed_unix_ms,
                    to_i64(close.accepted)?,
                    to_i64(close.rejected)?,
                    close.note,
                ],
            )
            .map_err(db)?;
        if n == 0 {
            return Err(StoreError::Conflict(format!(
                "job {job_id:?} round {round} attempt {attempt} is not open"
            )));
        }
        Ok(())
    }

    fn abandon_open_attempts(
        &self,
        note: &str,
        now_unix_ms: i64,
    ) -> StoreResult<Vec<AttemptRecord>> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(db)?;
        let open: Vec<AttemptRecord> = {
            let mut stmt = tx
                .prepare(&format!(
                    "SELECT {ATTEMPT_COLS} FROM rounds WHERE state = 'OPEN' ORDER BY job_id, round, attempt"
                ))
                .map_err(db)?;
            let rows = stmt.query_map([], attempt_row).map_err(db)?;
            rows.collect::<Result<_, _>>().map_err(db)?
        };
        tx.execute(
            "UPDATE rounds SET state = 'ABANDONED', closed_unix_ms = ?1, note = ?2 WHERE state = 'OPEN'",
            params![now_unix_ms, note],
        )
        .map_err(db)?;
        tx.commit().map_err(db)?;
        Ok(open)
    }

    fn attempts(&self, job_id: &str) -> StoreResult<Vec<AttemptRecord>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(&format!(
                "SELECT {ATTEMPT_COLS} FROM rounds WHERE job_id = ?1 ORDER BY round, attempt"
            ))
            .map_err(db)?;
        let rows = stmt.query_map([job_id], attempt_row).map_err(db)?;
        rows.collect::<Result<_, _>>().map_err(db)
    }

    fn commit_round(&self, c: &RoundCommit) -> StoreResult<(u64, u64)> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(db)?;
        let (done, state): (i64, String) = tx
            .query_row(
                "SELECT rounds_completed, state FROM jobs WHERE job_id = ?1",
                [&c.job_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(db)?
            .ok_or_else(|| StoreError::Conflict(format!("no job {:?}", c.job_id)))?;
        if to_i64(c.round)? != done + 1 {
            return Err(StoreError::Conflict(format!(
                "job {:?}: committing round {} but {} rounds are committed",
                c.job_id, c.round, done
            )));
        }
        if state != JobState::Running.as_str() {
            return Err(StoreError::Conflict(format!(
                "job {:?} is {state}, not RUNNING",
                c.job_id
            )));
        }
        let attempt_open = tx
            .execute(
                "UPDATE rounds SET state = 'COMMITTED', closed_unix_ms = ?4, accepted = ?5, \
                 rejected = ?6 WHERE job_id = ?1 AND round = ?2 AND attempt = ?3 AND state = 'OPEN'",
                params![
                    c.job_id,
                    to_i64(c.round)?,
                    c.attempt,
                    c.ledger.committed_unix_ms,
                    to_i64(c.participants.len() as u64)?,
                    to_i64(c.rejected)?,
                ],
            )
            .map_err(db)?;
        if attempt_open != 1 {
            return Err(StoreError::Conflict(format!(
                "job {:?} round {} attempt {} is not open",
                c.job_id, c.round, c.attempt
            )));
        }
        let version: i64 = tx
            .query_row(
                "SELECT COALESCE(MAX(version), 0) + 1 FROM model_versions WHERE job_id = ?1",
                [&c.job_id],
                |r| r.get(0),
            )
            .map_err(db)?;
        let version = version as u64;
        insert_version(&tx, self.key.as_ref(), &c.job_id, &c.version, version)?;
        let mut entry = c.ledger.clone();
        entry.model_version = version;
        let seq = insert_ledger(&tx, self.key.as_ref(), &c.job_id, &entry, c.round)?;
        tx.execute(
            "UPDATE jobs SET rounds_completed = ?2, current_version = ?3, clip_norm = ?4 \
             WHERE job_id = ?1",
            params![
                c.job_id,
                to_i64(c.round)?,
                to_i64(version)?,
                c.version.clip_norm
            ],
        )
        .map_err(db)?;
        match self.key.as_ref() {
            None => {
                let mut stmt = tx
                    .prepare(
                        "UPDATE clients SET rounds_participated = rounds_participated + 1 \
                         WHERE client_id = ?1",
                    )
                    .map_err(db)?;
                for p in &c.participants {
                    stmt.execute([p]).map_err(db)?;
                }
            }
            Some(key) => {
                // Sealed: read, open, count, re-seal (the clear column stays 0).
                for p in &c.participants {
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
        tx.commit().map_err(db)?;
        Ok((seq, version))
    }

    fn rollback(&self, job_id: &str, version: u64, entry: &LedgerRecord) -> StoreResult<u64> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(db)?;
        let clip: Option<f64> = tx
            .query_row(
                "SELECT clip_norm FROM model_versions WHERE job_id = ?1 AND version = ?2",
                params![job_id, to_i64(version)?],
                |r| r.get(0),
            )
            .optional()
            .map_err(db)?;
        let clip = clip.ok_or_else(|| {
            StoreError::Conflict(format!("job {job_id:?} has no version {version}"))
        })?;
        let mut e = entry.clone();
        e.model_version = version;
        e.kind = LedgerKind::Rollback;
        e.charge = None;
        let seq = insert_ledger(&tx, self.key.as_ref(), job_id, &e, 0)?;
        tx.execute(
            "UPDATE jobs SET current_version = ?2, clip_norm = ?3 WHERE job_id = ?1",
            params![job_id, to_i64(version)?, clip],
        )
        .map_err(db)?;
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
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(db)?;
        let updated = tx
            .execute(
                "UPDATE model_versions SET receipt_json = ?3 WHERE job_id = ?1 AND version = ?2",
                params![
                    job_id,
                    to_i64(version)?,
                    seal_text(
                        self.key.as_ref(),
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
        tx.commit().map_err(db)
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
        let conn = self.conn();
        conn.execute(
            "INSERT INTO audit (unix_ms, kind, job_id, client_id, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![e.unix_ms, e.kind, e.job_id, e.client_id, e.detail],
        )
        .map_err(db)?;
        Ok(conn.last_insert_rowid() as u64)
    }

    fn audit_events(&self, job_id: Option<&str>, limit: usize) -> StoreResult<Vec<AuditRecord>> {
        let conn = self.conn();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let map = |r: &Row<'_>| {
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
        };
        let cols = "id, unix_ms, kind, job_id, client_id, detail";
        match job_id {
            Some(j) => {
                let mut stmt = conn
                    .prepare(&format!(
                        "SELECT {cols} FROM audit WHERE job_id = ?1 ORDER BY id DESC LIMIT ?2"
                    ))
                    .map_err(db)?;
                let rows = stmt.query_map(params![j, limit], map).map_err(db)?;
                rows.collect::<Result<_, _>>().map_err(db)
            }
            None => {
                let mut stmt = conn
                    .prepare(&format!(
                        "SELECT {cols} FROM audit ORDER BY id DESC LIMIT ?1"
                    ))
                    .map_err(db)?;
                let rows = stmt.query_map([limit], map).map_err(db)?;
                rows.collect::<Result<_, _>>().map_err(db)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::JobSpec;
    use fedsec_proto::model::ModelSpec;

    fn job(id: &str) -> JobRecord {
        JobRecord {
            spec: JobSpec::new(id, ModelSpec::logistic(3), 0.5),
            state: JobState::Running,
            state_reason: String::new(),
            created_unix_ms: 1,
            resolution: None,
            rounds_completed: 0,
            current_version: 0,
            clip_norm: 1.0,
        }
    }

    fn version(round: u64, fill: u8) -> ModelVersionRecord {
        ModelVersionRecord {
            info: VersionInfo {
                version: 0,
                round,
                sha256: [fill; 32],
                created_unix_ms: 5,
                epsilon_pld: round as f64,
            },
            weights: vec![fill; 16],
            momentum: None,
            clip_norm: 1.0,
            receipt_json: "{}".into(),
        }
    }

    fn attempt(round: u64, attempt: u32) -> AttemptRecord {
        AttemptRecord {
            job_id: "j".into(),
            round,
            attempt,
            state: AttemptState::Open,
            base_version: round - 1,
            opened_unix_ms: 1,
            deadline_unix_ms: 2,
            closed_unix_ms: None,
            selected: 3,
            accepted: 0,
            rejected: 0,
            note: String::new(),
        }
    }

    fn commit(round: u64, attempt: u32) -> RoundCommit {
        RoundCommit {
            job_id: "j".into(),
            round,
            attempt,
            ledger: LedgerRecord {
                seq: 0,
                kind: LedgerKind::Round,
                charge: Some(RoundCharge {
                    round,
                    sampling_rate: 0.5,
                    noise_multiplier: 1.0,
                    clip_norm: 1.0,
                    sensitivity: 1.0,
                    count_stddev: 0.0,
                    expected_cohort: 2.0,
                    committed_unix_ms: 9,
                }),
                attempt,
                epsilon_pld: round as f64,
                epsilon_rdp: round as f64 + 0.5,
                delta: 1e-5,
                model_version: 0,
                participants: 2,
                rejected: 0,
                clipped_fraction: 0.5,
                note: String::new(),
                committed_unix_ms: 9,
            },
            version: version(round, round as u8),
            participants: vec!["c1".into()],
            rejected: 1,
        }
    }

    #[test]
    fn migrations_apply_once_and_newer_schemas_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        drop(SqliteStore::open(dir.path()).unwrap());
        drop(SqliteStore::open(dir.path()).unwrap());
        let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
        let v: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, schema_version());
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        conn.pragma_update(None, "user_version", 99).unwrap();
        drop(conn);
        assert!(matches!(
            SqliteStore::open(dir.path()),
            Err(StoreError::SchemaTooNew { found: 99, .. })
        ));
    }

    #[test]
    fn round_commit_is_atomic_and_checked() {
        let s = SqliteStore::in_memory().unwrap();
        s.insert_job(&job("j"), &version(0, 0)).unwrap();
        assert!(matches!(
            s.insert_job(&job("j"), &version(0, 0)),
            Err(StoreError::Conflict(_))
        ));
        s.upsert_client(&ClientIdentity::new("t", "c1").unwrap(), "x", 3)
            .unwrap();
        // Not open: refused, nothing written.
        assert!(s.commit_round(&commit(1, 1)).is_err());
        assert!(s.ledger("j").unwrap().is_empty());
        assert_eq!(s.versions("j").unwrap().len(), 1);

        s.open_attempt(&attempt(1, 1)).unwrap();
        assert_eq!(s.commit_round(&commit(1, 1)).unwrap(), (1, 1));
        // The same round twice: refused.
        s.open_attempt(&attempt(1, 2)).unwrap();
        assert!(s.commit_round(&commit(1, 2)).is_err());
        let j = s.job("j").unwrap().unwrap();
        assert_eq!((j.rounds_completed, j.current_version), (1, 1));
        assert_eq!(s.clients().unwrap()[0].rounds_participated, 1);

        assert_eq!(s.next_attempt("j", 2).unwrap(), 1);
        s.open_attempt(&attempt(2, 1)).unwrap();
        let abandoned = s.abandon_open_attempts("restart", 10).unwrap();
        assert_eq!(abandoned.len(), 2);
        assert_eq!(s.next_attempt("j", 2).unwrap(), 2);
        s.open_attempt(&attempt(2, 2)).unwrap();
        assert_eq!(s.commit_round(&commit(2, 2)).unwrap(), (2, 2));

        let rb = LedgerRecord {
            note: "bad model".into(),
            ..commit(0, 0).ledger
        };
        assert_eq!(s.rollback("j", 1, &rb).unwrap(), 3);
        assert!(s.rollback("j", 9, &rb).is_err());
        let ledger = s.ledger("j").unwrap();
        let seqs: Vec<u64> = ledger.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![1, 2, 3]);
        assert_eq!(ledger[2].kind, LedgerKind::Rollback);
        assert_eq!(ledger[2].model_version, 1);
        assert!(ledger[2].charge.is_none());
        assert_eq!(s.job("j").unwrap().unwrap().current_version, 1);
        let v = s.version("j", 2).unwrap().unwrap();
        assert_eq!(v.weights, vec![2u8; 16]);
    }

    /// Deleting the newest ledger entries (or a middle one) is detected: the
    /// ledger no longer matches the job's committed rounds and versions.
    #[test]
    fn a_truncated_ledger_is_detected() {
        for victim in ["MAX(seq)", "1"] {
            let s = SqliteStore::in_memory().unwrap();
            s.insert_job(&job("j"), &version(0, 0)).unwrap();
            for r in 1..=3 {
                s.open_attempt(&attempt(r, 1)).unwrap();
                s.commit_round(&commit(r, 1)).unwrap();
            }
            assert_eq!(s.ledger("j").unwrap().len(), 3);
            s.conn()
                .execute_batch(&format!(
                    "PRAGMA foreign_keys = OFF; DELETE FROM ledger WHERE job_id = 'j' AND \
                     seq = (SELECT {victim} FROM ledger WHERE job_id = 'j')"
                ))
                .unwrap();
            let e = s.ledger("j").unwrap_err();
            assert!(e.to_string().contains("truncated"), "{e}");
        }
    }

    #[test]
    fn clients_are_bound_to_their_tenant() {
        let s = SqliteStore::in_memory().unwrap();
        let a = ClientIdentity::new("t1", "c").unwrap();
        let first = s.upsert_client(&a, "v1", 10).unwrap();
        assert_eq!(first.status, ClientStatus::Active);
        let again = s.upsert_client(&a, "v2", 20).unwrap();
        assert_eq!(
            (again.software.as_str(), again.last_seen_unix_ms),
            ("v2", 20)
        );
        assert_eq!(again.registered_unix_ms, 10);
        let b = ClientIdentity::new("t2", "c").unwrap();
        assert!(matches!(
            s.upsert_client(&b, "", 30),
            Err(StoreError::Conflict(_))
        ));
        let q = s
            .set_client_status("c", ClientStatus::Quarantined, "noisy")
            .unwrap()
            .unwrap();
        assert_eq!(q.status, ClientStatus::Quarantined);
        // Re-registering keeps the quarantine.
        assert_eq!(
            s.upsert_client(&a, "v3", 40).unwrap().status,
            ClientStatus::Quarantined
        );
        assert!(
            s.set_client_status("nobody", ClientStatus::Active, "")
                .unwrap()
                .is_none()
        );
        s.touch_clients(&[("c".into(), 15), ("c".into(), 50)])
            .unwrap();
        assert_eq!(s.clients().unwrap()[0].last_seen_unix_ms, 50);
    }

    /// With encryption at rest, job definitions, resolutions and the
    /// per-client participation counters are sealed: none is readable in the
    /// file, and a definition rewritten in clear (noise turned off) or moved
    /// from another job fails authentication.
    #[test]
    fn specs_resolutions_and_participation_are_sealed() {
        let key = AtRestKey::from_bytes(&[7; 32]);
        let s = SqliteStore::in_memory_with_key(Some(key)).unwrap();
        s.insert_job(&job("j"), &version(0, 0)).unwrap();
        s.insert_job(&job("k"), &version(0, 0)).unwrap();
        let res = Resolution {
            sampling_rate: 0.5,
            expected_cohort: 2.0,
            registered_at_start: 4,
            noise_multiplier: 1.25,
            update_noise_multiplier: 1.25,
            count_stddev: 0.0,
            started_unix_ms: 3,
        };
        s.set_job_resolution("j", &res).unwrap();
        s.upsert_client(&ClientIdentity::new("t", "c1").unwrap(), "x", 3)
            .unwrap();
        s.open_attempt(&attempt(1, 1)).unwrap();
        s.commit_round(&commit(1, 1)).unwrap();
        let j = s.job("j").unwrap().unwrap();
        assert_eq!((j.spec.id.as_str(), j.resolution), ("j", Some(res)));
        assert_eq!(s.clients().unwrap()[0].rounds_participated, 1);
        {
            let conn = s.conn();
            let (spec, resolution, clear, sealed): (Value, Value, i64, Value) = conn
                .query_row(
                    "SELECT j.spec_json, j.resolution_json, c.rounds_participated, \
                     c.participation FROM jobs j, clients c WHERE j.job_id = 'j'",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
                .unwrap();
            for v in [&spec, &resolution, &sealed] {
                assert!(
                    matches!(v, Value::Blob(b) if b.starts_with(b"FSE1")),
                    "{v:?}"
                );
            }
            assert_eq!(clear, 0);
            // Rewrite j's definition in clear, with the noise off.
            let mut bad = job("j").spec;
            bad.disable_noise = true;
            conn.execute(
                "UPDATE jobs SET spec_json = ?1 WHERE job_id = 'j'",
                [serde_json::to_string(&bad).unwrap()],
            )
            .unwrap();
        }
        assert!(matches!(s.job("j"), Err(StoreError::Encryption(_))));
        // k's sealed definition copied onto j: bound to k, refused.
        s.conn()
            .execute_batch(
                "UPDATE jobs SET spec_json = (SELECT spec_json FROM jobs WHERE job_id = 'k') \
                 WHERE job_id = 'j'",
            )
            .unwrap();
        let e = s.jobs().unwrap_err();
        assert!(e.to_string().contains("authentication failed"), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn data_dir_and_database_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("data");
        let s = SqliteStore::open(&dir).unwrap();
        s.insert_job(&job("j"), &version(0, 0)).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(DB_FILE)), 0o600);
        let wal = dir.join(format!("{DB_FILE}-wal"));
        assert!(wal.exists());
        assert_eq!(mode(&wal), 0o600);
        drop(s);
        // Loose modes on an existing directory and database are tightened.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(dir.join(DB_FILE), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        drop(SqliteStore::open(&dir).unwrap());
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join(DB_FILE)), 0o600);
    }

    #[test]
    fn secrets_are_generated_once() {
        let dir = tempfile::tempdir().unwrap();
        let a = SqliteStore::open(dir.path())
            .unwrap()
            .secret("k", &|| vec![1, 2, 3])
            .unwrap();
        let b = SqliteStore::open(dir.path())
            .unwrap()
            .secret("k", &|| vec![9])
            .unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn audit_is_newest_first_and_filtered() {
        let s = SqliteStore::in_memory().unwrap();
        for (i, job) in ["a", "b", "a"].iter().enumerate() {
            s.append_audit(&NewAuditEvent {
                unix_ms: i as i64,
                kind: "k".into(),
                job_id: (*job).into(),
                client_id: String::new(),
                detail: format!("{i}"),
            })
            .unwrap();
        }
        let all = s.audit_events(None, 10).unwrap();
        assert_eq!(all.iter().map(|e| e.id).collect::<Vec<_>>(), vec![3, 2, 1]);
        let a = s.audit_events(Some("a"), 1).unwrap();
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].event.detail, "2");
    }
}
