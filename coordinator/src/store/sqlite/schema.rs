//! The schema: forward migrations applied on open (`PRAGMA user_version`).

use rusqlite::Connection;

use super::db;
use crate::store::{StoreError, StoreResult};

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
    // 4: the tamper-evident audit log (issue 21). Each row's chain hash
    // h_i = SHA-256(h_{i-1} || canonical row i); rows already there are
    // chained on open (`audit::chain_unhashed`). The checkpoint carries the
    // hash of the last row pruned by retention. Each model version records
    // the audit row its release is anchored at (signed into the release).
    r#"
    ALTER TABLE audit ADD COLUMN hash BLOB;
    CREATE TABLE audit_checkpoint (
        id             INTEGER PRIMARY KEY CHECK (id = 1),
        last_id        INTEGER NOT NULL,
        head           BLOB NOT NULL,
        pruned_rows    INTEGER NOT NULL,
        pruned_unix_ms INTEGER NOT NULL
    );
    ALTER TABLE model_versions ADD COLUMN audit_seq INTEGER;
    ALTER TABLE model_versions ADD COLUMN audit_head BLOB;
    "#,
    // 5: incident response (issue 22). The per-round record of who took
    // part, written in the transaction that commits (or abandons) the
    // attempt; with encryption at rest the participant's fields live in
    // `sealed` and the clear ones stay empty. Contained tenants, with the
    // identities their containment quarantined.
    r#"
    CREATE TABLE contributions (
        job_id        TEXT NOT NULL REFERENCES jobs(job_id),
        round         INTEGER NOT NULL,
        attempt       INTEGER NOT NULL,
        seq           INTEGER NOT NULL,
        model_version INTEGER,
        unix_ms       INTEGER NOT NULL,
        client_id     TEXT NOT NULL DEFAULT '',
        tenant_id     TEXT NOT NULL DEFAULT '',
        outcome       TEXT NOT NULL,
        reason        TEXT NOT NULL DEFAULT '',
        norm          REAL,
        clipped       INTEGER NOT NULL DEFAULT 0,
        screen_json   TEXT,
        sealed        BLOB,
        PRIMARY KEY (job_id, round, attempt, seq)
    );
    CREATE INDEX contributions_by_client ON contributions(client_id);
    CREATE INDEX contributions_by_time ON contributions(unix_ms);
    CREATE TABLE contained_tenants (
        tenant_id     TEXT PRIMARY KEY,
        reason        TEXT NOT NULL DEFAULT '',
        since_unix_ms INTEGER NOT NULL,
        quarantined   TEXT NOT NULL DEFAULT '[]'
    );
    "#,
];

/// Current schema version of this build.
pub fn schema_version() -> i64 {
    MIGRATIONS.len() as i64
}

pub(super) fn migrate(conn: &mut Connection) -> StoreResult<()> {
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
