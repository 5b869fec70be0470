//! Unit tests of the SQLite store.

use super::*;
use crate::config::JobSpec;
use crate::store::AttemptState;
use fedsec_privacy::RoundCharge;

use crate::store::LedgerKind;
use fedsec_model::ModelSpec;

pub(super) fn job(id: &str) -> JobRecord {
    JobRecord {
        spec: JobSpec::new(id, ModelSpec::logistic(3), 0.5, 4),
        state: JobState::Running,
        state_reason: String::new(),
        created_unix_ms: 1,
        resolution: None,
        rounds_completed: 0,
        current_version: 0,
        clip_norm: 1.0,
    }
}

pub(super) fn version(round: u64, fill: u8) -> ModelVersionRecord {
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

pub(super) fn attempt(round: u64, attempt: u32) -> AttemptRecord {
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

pub(super) fn commit(round: u64, attempt: u32) -> RoundCommit {
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
        contributions: Vec::new(),
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
    std::fs::set_permissions(dir.join(DB_FILE), std::fs::Permissions::from_mode(0o644)).unwrap();
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

#[test]
fn audit_retention_keeps_the_newest_rows_and_drops_old_ones() {
    let s = SqliteStore::in_memory().unwrap();
    for i in 0..50i64 {
        s.append_audit(&NewAuditEvent {
            unix_ms: 1000 + i,
            kind: "k".into(),
            job_id: String::new(),
            client_id: String::new(),
            detail: i.to_string(),
        })
        .unwrap();
    }
    // Row cap: 50 rows, keep 30.
    assert_eq!(s.prune_audit(0, 30).unwrap(), 20);
    let left = s.audit_events(None, 100).unwrap();
    assert_eq!(left.len(), 30);
    assert_eq!(left.last().unwrap().event.detail, "20", "the oldest kept");
    // Age: everything before 1040 goes.
    assert_eq!(s.prune_audit(1040, 1_000_000).unwrap(), 20);
    assert_eq!(s.audit_events(None, 100).unwrap().len(), 10);
    assert_eq!(s.prune_audit(1040, 1_000_000).unwrap(), 0, "idempotent");
    // Nothing young enough: all go; ids keep growing afterwards.
    assert_eq!(s.prune_audit(i64::MAX, 1_000_000).unwrap(), 10);
    let id = s
        .append_audit(&NewAuditEvent {
            unix_ms: 1,
            kind: "k".into(),
            job_id: String::new(),
            client_id: String::new(),
            detail: String::new(),
        })
        .unwrap();
    assert_eq!(id, 51);
}
