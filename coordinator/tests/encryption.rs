//! Encryption at rest: with `[storage] encryption_key_file`, model versions,
//! ledger charges and secrets are sealed (ChaCha20-Poly1305, record-bound
//! associated data). Round trip; no plaintext in the file; wrong key, no key
//! and key-on-a-clear-database refused with clear errors; a tampered or
//! swapped record is an error, never garbage; the `keys generate` command.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use fedsec_coordinator::JobSpec;
use fedsec_coordinator::store::seal::AtRestKey;
use fedsec_coordinator::store::sqlite::{DB_FILE, SqliteStore};
use fedsec_coordinator::store::{
    AttemptRecord, AttemptState, JobRecord, JobState, LedgerKind, LedgerRecord, ModelVersionRecord,
    RoundCommit, Store, StoreError, VersionInfo,
};
use fedsec_model::ModelSpec;
use fedsec_privacy::RoundCharge;
use rusqlite::Connection;
use support::{Harness, job};

const BIN: &str = env!("CARGO_BIN_EXE_fedsec-coordinator");
const RECEIPT: &str = r#"{"receipt":"round receipt with epsilon"}"#;

fn key_file(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    AtRestKey::generate_file(&p, false).unwrap();
    p
}

fn version(round: u64, fill: u8, momentum: bool) -> ModelVersionRecord {
    ModelVersionRecord {
        info: VersionInfo {
            version: 0,
            round,
            sha256: [fill; 32],
            created_unix_ms: 5,
            epsilon_pld: round as f64,
        },
        weights: vec![fill; 4096],
        momentum: momentum.then(|| vec![fill ^ 0xff; 4096]),
        clip_norm: 1.0,
        receipt_json: format!("{RECEIPT}{round}"),
    }
}

fn commit(round: u64) -> RoundCommit {
    RoundCommit {
        job_id: "j".into(),
        round,
        attempt: 1,
        ledger: LedgerRecord {
            seq: 0,
            kind: LedgerKind::Round,
            charge: Some(RoundCharge {
                round,
                sampling_rate: 0.25 + round as f64 / 100.0,
                noise_multiplier: 1.1,
                clip_norm: 1.0,
                sensitivity: 1.0,
                count_stddev: 0.0,
                expected_cohort: 2.0,
                committed_unix_ms: 9,
            }),
            attempt: 1,
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
        version: version(round, round as u8 + 1, true),
        participants: vec![],
        rejected: 0,
        contributions: Vec::new(),
    }
}

/// A job with versions 0..=2 and ledger entries 1..=2.
fn populate(s: &SqliteStore) {
    let record = JobRecord {
        spec: JobSpec::new("j", ModelSpec::logistic(3), 0.5, 4),
        state: JobState::Running,
        state_reason: String::new(),
        created_unix_ms: 1,
        resolution: None,
        rounds_completed: 0,
        current_version: 0,
        clip_norm: 1.0,
    };
    s.insert_job(&record, &version(0, 0, false)).unwrap();
    for round in 1..=2 {
        s.open_attempt(&AttemptRecord {
            job_id: "j".into(),
            round,
            attempt: 1,
            state: AttemptState::Open,
            base_version: round - 1,
            opened_unix_ms: 1,
            deadline_unix_ms: 2,
            closed_unix_ms: None,
            selected: 2,
            accepted: 0,
            rejected: 0,
            note: String::new(),
        })
        .unwrap();
        assert_eq!(s.commit_round(&commit(round)).unwrap(), (round, round));
    }
}

fn raw(dir: &Path) -> Connection {
    Connection::open(dir.join(DB_FILE)).unwrap()
}

fn encryption_error(e: StoreError) -> String {
    match e {
        StoreError::Encryption(m) => m,
        other => panic!("expected an encryption error, got {other:?}"),
    }
}

#[test]
fn sealed_records_round_trip_and_hold_no_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let key = AtRestKey::load(&key_file(dir.path(), "k")).unwrap();
    let s = SqliteStore::open_with_key(dir.path(), Some(key.clone())).unwrap();
    assert!(s.encrypted());
    populate(&s);
    let secret = s.secret("selection", &|| vec![42; 32]).unwrap();
    drop(s);

    let s = SqliteStore::open_with_key(dir.path(), Some(key)).unwrap();
    assert_eq!(s.secret("selection", &|| vec![0; 32]).unwrap(), secret);
    let mut expected = version(2, 3, true);
    expected.info.version = 2;
    assert_eq!(s.version("j", 2).unwrap().unwrap(), expected);
    let v0 = s.version("j", 0).unwrap().unwrap();
    assert_eq!((v0.weights, v0.momentum), (vec![0; 4096], None));
    // A receipt replaced by a canary audit is sealed too.
    s.record_empirical_audit("j", 1, "{}", "receipt with audit", 10)
        .unwrap();
    assert_eq!(
        s.version("j", 1).unwrap().unwrap().receipt_json,
        "receipt with audit"
    );
    let ledger = s.ledger("j").unwrap();
    assert_eq!(ledger.len(), 2);
    assert_eq!(ledger[1].charge, commit(2).ledger.charge);
    assert_eq!(ledger[1].epsilon_pld, 2.0, "numeric columns stay queryable");

    // On disk: sealed blobs with the FSE1 prefix, never the plaintext.
    let conn = raw(dir.path());
    let (weights, receipt): (Vec<u8>, Vec<u8>) = conn
        .query_row(
            "SELECT weights, receipt_json FROM model_versions WHERE version = 2",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(weights.starts_with(b"FSE1"));
    assert_eq!(weights.len(), 4096 + 32);
    assert!(!weights.windows(64).any(|w| w.iter().all(|&b| b == 3)));
    assert!(receipt.starts_with(b"FSE1"));
    let charge: Vec<u8> = conn
        .query_row("SELECT charge_json FROM ledger WHERE seq = 1", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert!(charge.starts_with(b"FSE1"));
    drop(conn);
    let mut file = std::fs::read(dir.path().join(DB_FILE)).unwrap();
    if let Ok(wal) = std::fs::read(dir.path().join(format!("{DB_FILE}-wal"))) {
        file.extend(wal);
    }
    for needle in [
        RECEIPT.as_bytes(),
        b"\"sensitivity\"",
        b"receipt with audit",
    ] {
        assert!(
            !file.windows(needle.len()).any(|w| w == needle),
            "{} in clear on disk",
            String::from_utf8_lossy(needle)
        );
    }
}

#[test]
fn wrong_or_missing_keys_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let right = AtRestKey::load(&key_file(dir.path(), "right")).unwrap();
    let wrong = AtRestKey::load(&key_file(dir.path(), "wrong")).unwrap();
    populate(&SqliteStore::open_with_key(dir.path(), Some(right.clone())).unwrap());

    let e = encryption_error(SqliteStore::open_with_key(dir.path(), Some(wrong)).unwrap_err());
    assert!(e.contains("different encryption key"), "{e}");
    let e = encryption_error(SqliteStore::open(dir.path()).unwrap_err());
    assert!(e.contains("encrypted at rest"), "{e}");
    assert!(e.contains("storage.encryption_key_file"), "{e}");
    SqliteStore::open_with_key(dir.path(), Some(right.clone())).unwrap();

    // A database written in clear cannot be opened with a key.
    let clear = tempfile::tempdir().unwrap();
    populate(&SqliteStore::open(clear.path()).unwrap());
    let e = encryption_error(SqliteStore::open_with_key(clear.path(), Some(right)).unwrap_err());
    assert!(e.contains("written without encryption"), "{e}");
    SqliteStore::open(clear.path()).unwrap();
}

#[test]
fn tampered_and_swapped_records_are_errors_not_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let key = AtRestKey::load(&key_file(dir.path(), "k")).unwrap();
    populate(&SqliteStore::open_with_key(dir.path(), Some(key.clone())).unwrap());
    let open = || SqliteStore::open_with_key(dir.path(), Some(key.clone())).unwrap();

    // One flipped ciphertext bit.
    let conn = raw(dir.path());
    let mut w: Vec<u8> = conn
        .query_row(
            "SELECT weights FROM model_versions WHERE version = 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let original = w.clone();
    w[100] ^= 0x01;
    conn.execute(
        "UPDATE model_versions SET weights = ?1 WHERE version = 1",
        [&w],
    )
    .unwrap();
    let e = encryption_error(open().version("j", 1).unwrap_err());
    assert!(e.contains("authentication failed"), "{e}");
    assert!(e.contains("model_versions.weights"), "{e}");
    conn.execute(
        "UPDATE model_versions SET weights = ?1 WHERE version = 1",
        [&original],
    )
    .unwrap();
    open().version("j", 1).unwrap().unwrap();

    // Swapping two versions' weights (both validly sealed) is detected.
    conn.execute_batch(
        "UPDATE model_versions SET weights = (SELECT weights FROM model_versions WHERE version = 2) \
         WHERE version = 1;",
    )
    .unwrap();
    let e = encryption_error(open().version("j", 1).unwrap_err());
    assert!(e.contains("authentication failed"), "{e}");
    // Moving momentum into the weights column of the same version too.
    conn.execute_batch("UPDATE model_versions SET weights = momentum WHERE version = 2;")
        .unwrap();
    assert!(open().version("j", 2).is_err());

    // Swapping ledger charges between entries.
    conn.execute_batch(
        "UPDATE ledger SET charge_json = (SELECT charge_json FROM ledger WHERE seq = 2) WHERE seq = 1;",
    )
    .unwrap();
    let e = encryption_error(open().ledger("j").unwrap_err());
    assert!(e.contains("ledger.charge_json"), "{e}");

    // A plaintext value slipped into an encrypted database.
    conn.execute_batch("UPDATE ledger SET charge_json = '{}' WHERE seq = 2;")
        .unwrap();
    conn.execute_batch(
        "UPDATE ledger SET charge_json = (SELECT charge_json FROM ledger WHERE seq = 2) WHERE seq = 1;",
    )
    .unwrap();
    let e = encryption_error(open().ledger("j").unwrap_err());
    assert!(e.contains("stored in clear"), "{e}");
}

#[tokio::test]
async fn the_coordinator_serves_an_encrypted_store_and_refuses_it_without_the_key() {
    let mut h = Harness::start_with(support::encrypt_at_rest).await;
    let mut clients = h.clients(2).await;
    let mut spec = job("enc", 4, 1.0);
    spec.rounds = 2;
    spec.min_clients = 2;
    spec.population = Some(2);
    spec.disable_noise = true;
    spec.server_optimizer.momentum = 0.5;
    h.running().admin().create_job(spec).await.unwrap();
    for value in [0.1f32, 0.2] {
        for c in clients.iter_mut() {
            let t = c.wait_task("enc", Duration::from_secs(20)).await;
            c.submit(&t, &[value; 4], b"n").await.unwrap();
        }
    }
    h.running()
        .admin()
        .wait_for_job("enc", Duration::from_secs(20), |j| j.rounds_completed == 2)
        .await
        .unwrap();
    let (header, w) = clients[0].get_model("enc", 0).await;
    let exported = h.running().admin().export("enc", 1).await.unwrap();
    assert!(!exported.is_empty());
    h.shutdown().await;

    // Without the key: refused, naming the key.
    let e = fedsec_coordinator::Coordinator::start_with_tls(
        support::test_config(h.dir.path()),
        h.pki.server_tls().clone(),
    )
    .await
    .unwrap_err();
    assert!(e.to_string().contains("encrypted at rest"), "{e}");
    // With a key file readable by others: refused, naming the key.
    let loose = h.dir.path().join("loose.key");
    std::fs::copy(h.dir.path().join(support::AT_REST_KEY), &loose).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
        let mut config = support::test_config(h.dir.path());
        config.storage.encryption_key_file = Some(loose);
        let e = fedsec_coordinator::Coordinator::start_with_tls(config, h.pki.server_tls().clone())
            .await
            .unwrap_err();
        let m = e.to_string();
        assert!(m.contains("storage.encryption_key_file"), "{m}");
        assert!(m.contains("chmod 600"), "{m}");
    }

    // With it: the same model, ledger and momentum.
    h.reopen(support::encrypt_at_rest).await;
    let ep = h.endpoint();
    let mut c = support::TestClient::connect(&h.pki, &support::tenant_of("c000"), "c000", &ep);
    let (again, w2) = c.get_model("enc", 0).await;
    assert_eq!(again.sha256, header.sha256);
    assert_eq!(w2, w);
    assert_eq!(h.running().admin().ledger("enc").await.unwrap().len(), 2);
    h.shutdown().await;
}

#[test]
fn keys_generate_writes_a_private_key_file_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("at-rest.key");
    let run = |extra: &[&str]| {
        std::process::Command::new(BIN)
            .args(["keys", "generate", "--out"])
            .arg(&path)
            .args(extra)
            .output()
            .unwrap()
    };
    let out = run(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    AtRestKey::load(&path).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let first = std::fs::read(&path).unwrap();
    let out = run(&[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("refusing to overwrite"));
    assert_eq!(std::fs::read(&path).unwrap(), first);
    assert!(run(&["--force"]).status.success());
    assert_ne!(std::fs::read(&path).unwrap(), first);
}
