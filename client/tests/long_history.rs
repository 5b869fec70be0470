//! Bounded growth (issue 16): a 40,000-round job stays downloadable and its
//! receipt verifiable, and each new version costs O(1) bytes in rounds.
//!
//! A real coordinator commits round 1 of a job; the test then writes rounds
//! 2..=40,000 into its SQLite store (ledger charges and versions, as a real
//! run leaves them; training 40,000 rounds would take hours) and restarts
//! it; the coordinator commits 10 more rounds for real. Checks:
//!
//! - (a) the real client downloads the current version over mutual TLS,
//!   fetches the 40,010-round history the receipt references, checks its
//!   digest and verifies ε;
//! - (b) the 10 real versions add O(1) bytes each to the store (before:
//!   each embedded the whole history, 179 B per round: ~7 MB per version);
//! - (c) the download header stays under a fixed bound, whatever the
//!   rounds (before: ~10 MB at 40,000 rounds, over the client's 8 MiB
//!   message limit, so the download failed).
//!
//! Prints the measured figures (run with `--nocapture` to see them).

#![allow(clippy::unwrap_used, unreachable_pub, missing_docs)]

mod support;

use std::time::{Duration, Instant};

use fedsec_client::rpc::{Rpc, update_messages};
use fedsec_privacy::{PrivacyReceipt, RoundCharge};
use fedsec_proto::v1::coordinator_client::CoordinatorClient;
use fedsec_proto::v1::{GetModelRequest, get_model_response, get_task_response};
use prost::Message;
use rusqlite::{Connection, params};
use support::{Harness, T, TENANT};

const JOB: &str = "long";
const SYNTHETIC: u64 = 40_000;
const REAL: u64 = 10;

/// Fixed bound on a download header, whatever the rounds.
const MAX_HEADER_BYTES: usize = 4_096;
/// Fixed bound on what one published version adds to the store (its
/// 39-parameter weights, receipt, ledger entry, round row and indexes).
const MAX_BYTES_PER_VERSION: i64 = 16_384;

fn db(h: &Harness) -> Connection {
    Connection::open(h.dir.path().join("coordinator").join("coordinator.db")).unwrap()
}

fn db_bytes(conn: &Connection) -> i64 {
    let pages: i64 = conn
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .unwrap();
    let size: i64 = conn
        .query_row("PRAGMA page_size", [], |r| r.get(0))
        .unwrap();
    pages * size
}

/// Runs one round with the only tenant: waits for its task and uploads.
async fn one_round(rpc: &Rpc) -> u64 {
    let deadline = Instant::now() + T;
    loop {
        assert!(Instant::now() < deadline, "no task");
        match rpc.get_task(JOB).await.unwrap() {
            get_task_response::Outcome::Task(task) => {
                let n = task.model_spec.as_ref().unwrap().input_dim as usize + 1;
                let msgs = update_messages(&(&task).into(), b"nonce-long", &vec![0.01; n], true);
                assert!(rpc.submit(&msgs).await.unwrap().newly_accepted);
                return task.round;
            }
            _ => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Rounds 2..=`last`: ledger charges (like round 1's) and versions (like
/// version 1), the job's progress moved to `last`.
fn synthesize(conn: &mut Connection, last: u64) {
    let tx = conn.transaction().unwrap();
    let json: String = tx
        .query_row(
            "SELECT charge_json FROM ledger WHERE job_id = ?1 AND seq = 1",
            [JOB],
            |r| r.get(0),
        )
        .unwrap();
    let first: RoundCharge = serde_json::from_str(&json).unwrap();
    let history: Vec<RoundCharge> = (1..=last)
        .map(|round| RoundCharge {
            round,
            committed_unix_ms: first.committed_unix_ms + round as i64,
            ..first
        })
        .collect();
    let spent = PrivacyReceipt::compute(history.clone(), 1e-5).unwrap();
    {
        let mut version = tx
            .prepare(
                "INSERT INTO model_versions (job_id, version, round, sha256, weights, momentum, \
                 clip_norm, receipt_json, epsilon_pld, created_unix_ms) \
                 SELECT job_id, ?2, ?2, sha256, weights, momentum, clip_norm, receipt_json, \
                 epsilon_pld, created_unix_ms FROM model_versions WHERE job_id = ?1 AND version = 1",
            )
            .unwrap();
        let mut ledger = tx
            .prepare(
                "INSERT INTO ledger (job_id, seq, kind, round, attempt, charge_json, epsilon_pld, \
                 epsilon_rdp, delta, model_version, participants, rejected, clipped_fraction, \
                 note, committed_unix_ms) \
                 VALUES (?1, ?2, 'ROUND', ?2, 1, ?3, ?4, ?5, 1e-5, ?2, 1, 0, 0.0, 'synthetic', ?6)",
            )
            .unwrap();
        for c in &history[1..] {
            let r = c.round as i64;
            version.execute(params![JOB, r]).unwrap();
            // ε of the last entry is the whole history's (the job reports it).
            let (pld, rdp) = if c.round == last {
                (spent.epsilon_pld, spent.epsilon_rdp)
            } else {
                (0.0, 0.0)
            };
            let json = serde_json::to_string(c).unwrap();
            ledger
                .execute(params![JOB, r, json, pld, rdp, c.committed_unix_ms])
                .unwrap();
        }
    }
    tx.execute(
        "UPDATE jobs SET rounds_completed = ?2, current_version = ?2 WHERE job_id = ?1",
        params![JOB, last as i64],
    )
    .unwrap();
    tx.commit().unwrap();
}

#[tokio::test]
async fn a_40000_round_job_stays_downloadable_verifiable_and_grows_o1_per_version() {
    let started = Instant::now();
    let mut h = Harness::start().await;
    let mut spec = support::job(JOB, 1.0, 30.0, SYNTHETIC + REAL, 1);
    spec.round_deadline_ms = 20_000;
    let rpc = Rpc::new(
        h.pki.client_tls(TENANT, "c1").unwrap(),
        &h.endpoint(),
        Duration::from_secs(60),
    )
    .unwrap()
    .with_release_key(support::release_key().public());
    // Registered before the job exists, so round 1 selects the tenant.
    rpc.register().await.unwrap();
    h.running().admin().create_job(spec).await.unwrap();
    assert_eq!(one_round(&rpc).await, 1);
    let admin = h.running().admin();
    admin
        .wait_for_job(JOB, T, |j| j.rounds_completed == 1)
        .await
        .unwrap();
    h.stop().await;

    let t = Instant::now();
    synthesize(&mut db(&h), SYNTHETIC);
    let synthesized = t.elapsed();
    let t = Instant::now();
    h.restart().await;
    let restarted = t.elapsed();
    let before = db_bytes(&db(&h));

    let t = Instant::now();
    let rpc = Rpc::new(
        h.pki.client_tls(TENANT, "c1").unwrap(),
        &h.endpoint(),
        Duration::from_secs(60),
    )
    .unwrap()
    .with_release_key(support::release_key().public());
    for i in 1..=REAL {
        assert_eq!(one_round(&rpc).await, SYNTHETIC + i);
        h.running()
            .admin()
            .wait_for_job(JOB, T, |j| j.rounds_completed == SYNTHETIC + i)
            .await
            .unwrap();
    }
    let real_rounds = t.elapsed();

    // (b) O(1) bytes per version: receipts and the whole store.
    let conn = db(&h);
    let after = db_bytes(&conn);
    let receipts: Vec<i64> = conn
        .prepare(
            "SELECT length(receipt_json) FROM model_versions WHERE job_id = ?1 AND version > ?2 \
             ORDER BY version",
        )
        .unwrap()
        .query_map(params![JOB, SYNTHETIC as i64], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(receipts.len() as u64, REAL);
    let per_version = (after - before) / REAL as i64;
    eprintln!(
        "{SYNTHETIC}+{REAL} rounds: receipt bytes per version {receipts:?}; store grew {} B \
         for {REAL} versions ({per_version} B per version)",
        after - before
    );
    assert!(
        receipts.iter().all(|&b| b < 2_048),
        "a version's receipt grows with the rounds: {receipts:?}"
    );
    assert!(
        per_version < MAX_BYTES_PER_VERSION,
        "{per_version} B per version"
    );

    // (c) The header is bounded whatever the rounds.
    let mut grpc = CoordinatorClient::new(
        h.pki
            .client_tls(TENANT, "c1")
            .unwrap()
            .channel(&h.endpoint())
            .unwrap(),
    );
    let mut stream = grpc
        .get_model(GetModelRequest {
            job_id: JOB.into(),
            version: 0,
        })
        .await
        .unwrap()
        .into_inner();
    let Some(get_model_response::Part::Header(header)) =
        stream.message().await.unwrap().unwrap().part
    else {
        panic!("no header first");
    };
    let header_bytes = header.encoded_len();
    let receipt = header.receipt.unwrap();
    assert_eq!(receipt.history_rounds, SYNTHETIC + REAL);
    assert_eq!(receipt.history_sha256.len(), 32);
    assert!(receipt.rounds.is_empty());
    assert!(
        header_bytes < MAX_HEADER_BYTES,
        "header of {header_bytes} B"
    );

    // (a) The real client downloads it, fetches and checks the history, verifies.
    let t = Instant::now();
    let d = rpc
        .download_model(JOB, 0, None, None)
        .await
        .unwrap()
        .unwrap();
    let downloaded = t.elapsed();
    assert_eq!(d.receipt_problem, None);
    let verified = d.receipt.unwrap();
    assert_eq!(verified.rounds.len() as u64, SYNTHETIC + REAL);
    assert_eq!(verified.epsilon_pld, receipt.epsilon_pld);
    let job = h.running().admin().job(JOB).unwrap();
    assert_eq!(verified.epsilon_pld, job.epsilon_pld);
    eprintln!(
        "header {header_bytes} B; synthesize {synthesized:?}, restart {restarted:?}, {REAL} real \
         rounds {real_rounds:?}, download + fetch + verify {downloaded:?}, total {:?}",
        started.elapsed()
    );
    h.stop().await;
}

/// Receipts an earlier coordinator stored (the whole history embedded, no
/// reference) are served exactly as stored and keep verifying with this
/// client; versions published after the upgrade carry a reference. No
/// schema migration is needed: the history was always in the ledger.
#[tokio::test]
async fn receipts_stored_before_references_keep_verifying() {
    let mut h = Harness::start().await;
    let spec = support::job(JOB, 1.0, 5.0, 10, 1);
    let rpc = Rpc::new(
        h.pki.client_tls(TENANT, "c1").unwrap(),
        &h.endpoint(),
        Duration::from_secs(60),
    )
    .unwrap()
    .with_release_key(support::release_key().public());
    // Registered before the job exists, so round 1 selects the tenant.
    rpc.register().await.unwrap();
    h.running().admin().create_job(spec).await.unwrap();
    for r in 1..=3 {
        assert_eq!(one_round(&rpc).await, r);
        h.running()
            .admin()
            .wait_for_job(JOB, T, |j| j.rounds_completed == r)
            .await
            .unwrap();
    }
    h.stop().await;
    // What the earlier coordinator stored for versions 1..=3: the privacy
    // crate's receipt over the ledger's charges, serialised whole.
    {
        let conn = db(&h);
        let charges: Vec<RoundCharge> = conn
            .prepare("SELECT charge_json FROM ledger WHERE job_id = ?1 AND kind = 'ROUND' ORDER BY round")
            .unwrap()
            .query_map([JOB], |r| r.get::<_, String>(0))
            .unwrap()
            .map(|j| serde_json::from_str(&j.unwrap()).unwrap())
            .collect();
        for v in 1..=3usize {
            let old = PrivacyReceipt::compute(charges[..v].to_vec(), 1e-5).unwrap();
            let json = serde_json::to_string(&old).unwrap();
            assert!(!json.contains("\"history\""));
            conn.execute(
                "UPDATE model_versions SET receipt_json = ?3 WHERE job_id = ?1 AND version = ?2",
                params![JOB, v as i64, json],
            )
            .unwrap();
        }
    }
    h.restart().await;
    let rpc = Rpc::new(
        h.pki.client_tls(TENANT, "c1").unwrap(),
        &h.endpoint(),
        Duration::from_secs(60),
    )
    .unwrap()
    .with_release_key(support::release_key().public());
    for version in [2, 0] {
        let d = rpc
            .download_model(JOB, version, None, None)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(d.receipt_problem, None, "version {version}");
        let r = d.receipt.unwrap();
        assert_eq!(r.rounds.len(), if version == 0 { 3 } else { 2 });
    }
    // The next version is published with a reference, and verifies too.
    assert_eq!(one_round(&rpc).await, 4);
    h.running()
        .admin()
        .wait_for_job(JOB, T, |j| j.rounds_completed == 4)
        .await
        .unwrap();
    let json: String = db(&h)
        .query_row(
            "SELECT receipt_json FROM model_versions WHERE job_id = ?1 AND version = 4",
            [JOB],
            |r| r.get(0),
        )
        .unwrap();
    assert!(json.contains("\"history\":{\"rounds\":4,"), "{json}");
    let d = rpc
        .download_model(JOB, 0, None, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.receipt_problem, None);
    assert_eq!(d.receipt.unwrap().rounds.len(), 4);
    h.stop().await;
}
