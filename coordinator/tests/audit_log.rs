//! Signed releases and the tamper-evident audit log (issue 21), coordinator
//! side, over loopback mTLS with real gRPC clients and on the SQLite file:
//!
//! - every served version (and the restated receipt after a rollback) is
//!   signed over its header, weights digest, receipt digest and audit
//!   anchor, and the anchor names the row that released it;
//! - `admin audit verify` passes on the untouched log and names the row
//!   where a changed, deleted, reordered or truncated row, or a chain
//!   rewritten from scratch, breaks it (the test edits the SQLite file);
//! - pruning by retention keeps the chain verifiable behind a checkpoint;
//! - rows written before the chain existed are chained at migration;
//! - `admin audit export --since` writes JSON lines;
//! - an audit write that fails refuses the operation it records.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use fedsec_coordinator::store::audit_chain::{genesis, link};
use fedsec_coordinator::store::sqlite::audit::verify_file;
use fedsec_coordinator::store::sqlite::{DB_FILE, MIGRATIONS, SqliteStore};
use fedsec_coordinator::store::{NewAuditEvent, Store, StoreError};
use fedsec_model::ModelSpec;
use fedsec_proto::model::ModelSpecWire;
use fedsec_proto::release::{ReleasePublicKey, ReleaseStatement};
use fedsec_proto::v1::{ModelHeader, get_task_response};
use rusqlite::Connection;
use support::{Harness, job};
use tonic::Code;

const BIN: &str = env!("CARGO_BIN_EXE_fedsec-coordinator");
const T: Duration = Duration::from_secs(30);

/// Checks a served header's signature with `key`.
fn verify_header(key: &ReleasePublicKey, h: &ModelHeader) -> Result<(), String> {
    let spec = ModelSpec::from_proto(h.model_spec.as_ref().unwrap()).unwrap();
    let statement = ReleaseStatement::new(
        &h.job_id,
        h.version,
        h.round,
        &spec,
        h.sha256.as_slice().try_into().unwrap(),
        &h.receipt.as_ref().unwrap().json,
        h.audit_head.as_slice().try_into().unwrap(),
    );
    key.verify(&statement, &h.release_signature)
        .map_err(|e| e.to_string())
}

fn audit_cli(args: &[&str]) -> (bool, String) {
    let out = Command::new(BIN)
        .args(["admin"])
        .args(args)
        .env_remove("FEDSEC_CA")
        .env_remove("FEDSEC_CERT")
        .env_remove("FEDSEC_KEY")
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// A copy of the data directory's database in a fresh directory, edited by `sql`.
fn tampered(data_dir: &Path, sql: &str) -> tempfile::TempDir {
    let copy = tempfile::tempdir().unwrap();
    std::fs::copy(data_dir.join(DB_FILE), copy.path().join(DB_FILE)).unwrap();
    // The WAL too: a coordinator's last writes may not be checkpointed yet.
    let wal = format!("{DB_FILE}-wal");
    if data_dir.join(&wal).exists() {
        std::fs::copy(data_dir.join(&wal), copy.path().join(&wal)).unwrap();
    }
    let conn = Connection::open(copy.path().join(DB_FILE)).unwrap();
    conn.execute_batch(sql).unwrap();
    drop(conn);
    copy
}

fn first_break(dir: &Path) -> u64 {
    let report = verify_file(dir).unwrap();
    assert!(!report.ok(), "the tampered log verified: {report:?}");
    report.breaks[0].id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn releases_are_signed_and_anchored_and_the_audit_log_detects_every_edit() {
    let mut h = Harness::start().await;
    let key = h.running().release_public_key();
    let mut c = h.client("c1").await;
    c.register().await.unwrap();
    let mut spec = job("signed", 3, 1.0);
    spec.population = Some(1);
    spec.rounds = 3;
    spec.disable_noise = true;
    let admin = h.running().admin();
    admin.create_job(spec).await.unwrap();
    let started = std::time::Instant::now();
    loop {
        assert!(started.elapsed() < T, "the job did not finish");
        match c.get_task("signed").await.unwrap() {
            get_task_response::Outcome::Task(t) => {
                c.submit(&t, &[0.1, -0.2, 0.3], format!("n{}", t.round).as_bytes())
                    .await
                    .unwrap();
            }
            get_task_response::Outcome::Retry(_) => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            get_task_response::Outcome::Finished(_) => break,
        }
    }
    let mut anchors = Vec::new();
    // (Version 0, the initial model, is not addressable: 0 asks for the current one.)
    for v in 1..=3 {
        let (header, _) = c.get_model("signed", v).await;
        assert_eq!(header.version, v);
        verify_header(&key, &header).unwrap();
        assert_eq!(header.signing_key_id, key.key_id());
        anchors.push(header.audit_head.clone());
        // Any header field changed: refused.
        let mut bad = header.clone();
        bad.round += 1;
        assert!(verify_header(&key, &bad).is_err());
        let mut bad = header.clone();
        bad.receipt.as_mut().unwrap().json.push(' ');
        assert!(verify_header(&key, &bad).is_err());
        let mut bad = header.clone();
        bad.audit_head[0] ^= 1;
        assert!(verify_header(&key, &bad).is_err());
    }
    // What a tenant reads is the anchor's hash only (no row id whose gaps
    // would count a round's audit rows, refused uploads among them); the
    // admin side maps it to its row below.
    // A rollback re-releases version 1 with a receipt stating the full
    // spend, signed anew and anchored at the rollback's row.
    let (before, _) = c.get_model("signed", 1).await;
    admin.rollback("signed", 1, "bad model").await.unwrap();
    let (after, _) = c.get_model("signed", 0).await;
    assert_eq!(after.version, 1);
    verify_header(&key, &after).unwrap();
    assert!(!anchors.contains(&after.audit_head));
    assert_ne!(after.release_signature, before.release_signature);
    assert_eq!(after.receipt.as_ref().unwrap().history_rounds, 3);
    // The export carries the same signature.
    let file = admin.export("signed", 0).await.unwrap();
    let (_, meta) = safetensors::SafeTensors::read_metadata(&file).unwrap();
    let meta = meta.metadata().clone().unwrap();
    assert_eq!(
        meta["release_signature"],
        hex::encode(&after.release_signature)
    );
    assert_eq!(meta["audit_head"], hex::encode(&after.audit_head));
    assert!(!meta.contains_key("audit_seq"));

    h.shutdown().await;
    let dir = h.dir.path().to_owned();
    let d = dir.to_str().unwrap();
    let (ok, out) = audit_cli(&["audit", "verify", "--data-dir", d]);
    assert!(ok, "{out}");
    assert!(out.contains("4 release anchors checked"), "{out}");
    // Each served hash is the stored anchor of its version, each at its own,
    // later row (version 1's re-anchored at the rollback).
    {
        let conn = Connection::open(dir.join(DB_FILE)).unwrap();
        let stored: Vec<(u64, Vec<u8>)> = conn
            .prepare(
                "SELECT audit_seq, audit_head FROM model_versions \
                 WHERE job_id = 'signed' AND version > 0 ORDER BY version",
            )
            .unwrap()
            .query_map([], |r| Ok((r.get::<_, i64>(0)? as u64, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(stored.len(), 3);
        assert_eq!(stored[0].1, after.audit_head);
        assert_eq!(stored[1].1, anchors[1]);
        assert_eq!(stored[2].1, anchors[2]);
        assert!(
            stored[1].0 < stored[2].0 && stored[2].0 < stored[0].0,
            "{stored:?}"
        );
    }
    // Export as JSON lines, all of it and since a time.
    let (ok, out) = audit_cli(&["audit", "export", "--data-dir", d, "--since", "0"]);
    assert!(ok, "{out}");
    let lines: Vec<serde_json::Value> = out
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = lines.iter().map(|l| l["kind"].as_str().unwrap()).collect();
    for k in [
        "release_key_loaded",
        "coordinator_started",
        "client_registered",
        "admin_create_job",
        "job_created",
        "model_released",
        "model_rolled_back",
        "job_completed",
        "coordinator_stopped",
    ] {
        assert!(kinds.contains(&k), "{k} missing from {kinds:?}");
    }
    assert!(lines[0]["@timestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(lines[0]["hash"].as_str().unwrap().len(), 64);
    let (ok, out) = audit_cli(&["audit", "export", "--data-dir", d, "--since", "2999-01-01"]);
    assert!(ok, "{out}");
    assert!(out.contains("exported 0 audit events"), "{out}");

    // Tampering, each on a fresh copy of the file.
    let n = lines.len() as u64;
    assert_eq!(
        first_break(
            tampered(
                &dir,
                "UPDATE audit SET detail = 'nothing happened' WHERE id = 4"
            )
            .path()
        ),
        4
    );
    assert_eq!(
        first_break(tampered(&dir, "DELETE FROM audit WHERE id = 5").path()),
        6
    );
    // Two rows' contents swapped.
    let swapped = tampered(
        &dir,
        "UPDATE audit SET id = -1 WHERE id = 3; UPDATE audit SET id = 3 WHERE id = 4; \
         UPDATE audit SET id = 4 WHERE id = -1;",
    );
    assert_eq!(first_break(swapped.path()), 3);
    // The newest rows deleted: no broken link, but SQLite's counter remembers.
    let cut = tampered(&dir, &format!("DELETE FROM audit WHERE id > {}", n - 2));
    let report = verify_file(cut.path()).unwrap();
    assert!(
        report
            .breaks
            .iter()
            .any(|b| b.problem.contains("deleted from the end")),
        "{report:?}"
    );
    // A chain rewritten from scratch after an edit (hashes recomputed, the
    // counter fixed): every link holds, but the signed releases' anchors no
    // longer match.
    let forged = tampered(&dir, "UPDATE audit SET detail = 'forged' WHERE id = 2");
    {
        let conn = Connection::open(forged.path().join(DB_FILE)).unwrap();
        let rows: Vec<(i64, NewAuditEvent)> = conn
            .prepare("SELECT id, unix_ms, kind, job_id, client_id, detail FROM audit ORDER BY id")
            .unwrap()
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    NewAuditEvent {
                        unix_ms: r.get(1)?,
                        kind: r.get(2)?,
                        job_id: r.get(3)?,
                        client_id: r.get(4)?,
                        detail: r.get(5)?,
                    },
                ))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let mut prev = genesis();
        for (id, e) in rows {
            prev = link(&prev, id as u64, &e);
            conn.execute(
                "UPDATE audit SET hash = ?2 WHERE id = ?1",
                rusqlite::params![id, prev.to_vec()],
            )
            .unwrap();
        }
    }
    let report = verify_file(forged.path()).unwrap();
    assert!(!report.ok());
    assert!(
        report.breaks.iter().all(|b| b.problem.contains("anchored")),
        "{report:?}"
    );
    // The CLI exits non-zero and names the row.
    let (ok, out) = audit_cli(&[
        "audit",
        "verify",
        "--data-dir",
        forged.path().to_str().unwrap(),
    ]);
    assert!(!ok, "{out}");
    assert!(out.contains("BROKEN at row"), "{out}");
}

fn event(i: u64, unix_ms: i64) -> NewAuditEvent {
    NewAuditEvent {
        unix_ms,
        kind: "update_rejected".into(),
        job_id: "j".into(),
        client_id: format!("c{i}"),
        detail: format!("event {i}"),
    }
}

#[test]
fn pruning_keeps_the_chain_verifiable_behind_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = SqliteStore::open(dir.path()).unwrap();
        for i in 1..=100 {
            s.append_audit(&event(i, 1000 + i as i64)).unwrap();
        }
        // By count: keep the newest 30.
        assert_eq!(s.prune_audit(0, 30).unwrap(), 70);
        // By age: everything before t = 1081.
        assert_eq!(s.prune_audit(1081, 1_000_000).unwrap(), 10);
        assert_eq!(s.audit_head().unwrap().seq, 100);
        s.append_audit(&event(101, 2000)).unwrap();
    }
    let report = verify_file(dir.path()).unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.rows, 21);
    let c = report.checkpoint.clone().unwrap();
    assert_eq!((c.last_id, c.pruned_rows), (80, 80));
    // Deleting the first kept row (or forging the checkpoint) is still caught.
    assert_eq!(
        first_break(tampered(dir.path(), "DELETE FROM audit WHERE id = 81").path()),
        82
    );
    assert_eq!(
        first_break(tampered(dir.path(), "UPDATE audit_checkpoint SET last_id = 79").path()),
        81
    );
    // Pruning everything leaves the checkpoint as the head; appends go on from it.
    {
        let s = SqliteStore::open(dir.path()).unwrap();
        s.prune_audit(i64::MAX, 1_000_000).unwrap();
        assert_eq!(s.audit_head().unwrap().seq, 101);
        s.append_audit(&event(102, 3000)).unwrap();
    }
    let report = verify_file(dir.path()).unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!((report.rows, report.first_id), (1, Some(102)));
}

#[test]
fn rows_written_before_the_chain_are_chained_at_migration() {
    let dir = tempfile::tempdir().unwrap();
    {
        let conn = Connection::open(dir.path().join(DB_FILE)).unwrap();
        for sql in &MIGRATIONS[..3] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", 3).unwrap();
        for i in 1..=5 {
            conn.execute(
                "INSERT INTO audit (unix_ms, kind, job_id, client_id, detail) VALUES (?1, 'k', '', '', ?2)",
                rusqlite::params![i, format!("old {i}")],
            )
            .unwrap();
        }
    }
    let e = verify_file(dir.path()).unwrap_err();
    assert!(matches!(e, StoreError::DataDir { .. }), "{e}");
    {
        let s = SqliteStore::open(dir.path()).unwrap();
        s.append_audit(&event(6, 6)).unwrap();
    }
    let report = verify_file(dir.path()).unwrap();
    assert!(report.ok(), "{report:?}");
    assert_eq!(report.rows, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_audit_write_that_fails_refuses_the_operation_it_records() {
    let (h, store) = Harness::start_injected().await;
    store.before("append_audit", || {
        Some(StoreError::Unavailable("disk full (injected)".into()))
    });
    // A new client's registration is refused, and not admitted.
    let mut c = h.client("c1").await;
    let e = c.register().await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e:?}");
    assert!(e.message().contains("audit log"), "{e:?}");
    let admin = h.running().admin();
    // Admin actions are refused and change nothing.
    let e = admin.create_job(job("never", 3, 0.5)).await.unwrap_err();
    assert!(e.to_string().contains("audit log"), "{e}");
    assert!(
        admin.job("never").is_err(),
        "the job was created unrecorded"
    );
    store.clear("append_audit");
    c.register().await.unwrap();
    admin.create_job(job("j", 3, 0.5)).await.unwrap();
    store.before("append_audit", || {
        Some(StoreError::Unavailable("disk full (injected)".into()))
    });
    assert!(admin.quarantine_client("c1", "test").await.is_err());
    assert_eq!(
        admin.clients().await.unwrap()[0].status,
        fedsec_proto::v1::ClientStatus::Active as i32,
        "quarantined unrecorded"
    );
    assert!(admin.pause_job("j").await.is_err());
    // Not paused; and its driver, whose own rows (job_started) cannot be
    // written either, holds the job (STALLED) instead of running unrecorded.
    let state = admin.job("j").unwrap().state;
    assert_ne!(state, fedsec_proto::v1::JobState::Paused as i32);
    store.clear("append_audit");
    let started = std::time::Instant::now();
    while admin.job("j").unwrap().state != fedsec_proto::v1::JobState::Running as i32 {
        assert!(
            started.elapsed() < T,
            "the job did not resume after the log recovered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Once the log works again the retried registration was recorded once.
    let kinds: Vec<String> = admin
        .audit_events(None, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| *k == "client_registered").count(),
        1,
        "{kinds:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_release_key_must_exist_and_keys_generate_writes_one() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("keys/release.pem");
    let pki = support::pki();
    // Configured but missing: a clear error naming the key, no new key.
    let mut config = support::test_config(&dir.path().join("data"));
    config.signing.key_file = Some(key.clone());
    let e =
        fedsec_coordinator::Coordinator::start_with_tls(config.clone(), pki.server_tls().clone())
            .await
            .unwrap_err()
            .to_string();
    assert!(
        e.contains("signing.key_file") && e.contains("keys generate --signing"),
        "{e}"
    );
    assert!(!key.exists());
    // `keys generate --signing` writes the key (0600) and its public key.
    let out = Command::new(BIN)
        .args(["keys", "generate", "--signing", "--out"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let public = ReleasePublicKey::load(&dir.path().join("keys/release.pub.pem")).unwrap();
    let running = fedsec_coordinator::Coordinator::start_with_tls(config, pki.server_tls().clone())
        .await
        .unwrap();
    assert_eq!(running.release_public_key(), public);
    let events = running.admin().audit_events(None, 10).await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.kind == "release_key_loaded" && e.detail.contains(&public.key_id())),
        "{events:?}"
    );
    running.shutdown().await.unwrap();
    // Not twice without --force.
    let out = Command::new(BIN)
        .args(["keys", "generate", "--signing", "--out"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(!out.status.success());
}
