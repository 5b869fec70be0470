//! Incident response (issue 22) over real loopback mTLS with real clients:
//! the per-round record of who took part, the incident report, tenant
//! containment, rollback to before a client's first contribution, the
//! README runbook's commands run with the real binary, and a store fault
//! while the record is written.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use fedsec_coordinator::incident::{IncidentReport, markdown};
use fedsec_coordinator::store::{ContributionFilter, ContributionOutcome, JobState, Store};
use fedsec_proto::v1::{
    self, ClientActionRequest, IncidentReportRequest, JobRef, TenantActionRequest,
    get_task_response,
};
use support::{Harness, TestClient, encrypt_at_rest, job, tenant_of};
use tonic::Code;

const T: Duration = Duration::from_secs(20);
const BIN: &str = env!("CARGO_BIN_EXE_fedsec-coordinator");

/// Plays one round: `submitters` submit a small update, the others stay
/// silent (the round then closes at its deadline); `c002_rejected_first`
/// makes client 2 send a NaN update before its valid one.
async fn round(
    clients: &mut [TestClient],
    after: (u64, u32),
    submitters: &[usize],
    c002_rejected_first: bool,
) -> (u64, u32) {
    let mut at = after;
    for (i, c) in clients.iter_mut().enumerate() {
        if !submitters.contains(&i) {
            continue;
        }
        let t = c.wait_task_after("inc", after, T).await;
        if i == 2 && c002_rejected_first {
            let e = c
                .submit(&t, &[f32::NAN, 0.0, 0.0, 0.0], b"bad")
                .await
                .unwrap_err();
            assert_eq!(e.code(), Code::InvalidArgument, "{e}");
        }
        c.submit(&t, &[0.01 * (i as f32 + 1.0); 4], b"good")
            .await
            .unwrap();
        at = (t.round, t.attempt);
    }
    at
}

async fn report(h: &Harness, client: &str, tenant: &str) -> IncidentReport {
    let r = h
        .admin_grpc("admin")
        .incident_report(IncidentReportRequest {
            client_id: client.into(),
            tenant_id: tenant.into(),
            job_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    serde_json::from_str(&r.report_json).unwrap()
}

/// Writes the CA and an admin certificate for the CLI.
fn admin_files(h: &Harness, dir: &Path) {
    let admin = h.pki.ca().issue_admin("admin").unwrap();
    std::fs::write(dir.join("ca.pem"), h.pki.ca_pem()).unwrap();
    std::fs::write(dir.join("admin.pem"), &admin.cert_pem).unwrap();
    std::fs::write(dir.join("admin.key"), &admin.key_pem).unwrap();
}

/// Runs `fedsec-coordinator admin ARGS` (the runbook's commands); returns
/// (success, stdout, stderr).
fn cli(h: &Harness, dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .arg("admin")
        .arg("--endpoint")
        .arg(h.endpoint())
        .arg("--ca")
        .arg(dir.join("ca.pem"))
        .arg("--cert")
        .arg(dir.join("admin.pem"))
        .arg("--key")
        .arg(dir.join("admin.key"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Four rounds, three clients (each its own tenant), encryption at rest on
/// (the record is sealed). c002 is silent in rounds 1 and 3, and in round
/// 2 its first upload is rejected before its valid one is accepted.
/// Checks: the report lists exactly rounds 2 and 4 for c002 with its
/// rejected upload, the versions they published, the last version before
/// its first contribution (1) and the privacy spent; a tenant report lists
/// every round of c000. Then the runbook's commands with the real binary:
/// contain c002's tenant, roll back before c002 (lands on version 1, spent
/// privacy stays charged), write the post-mortem files, release.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_lists_exactly_the_rounds_and_rejections_and_the_runbook_commands_work() {
    let h = Harness::start_with(encrypt_at_rest).await;
    let mut clients = h.clients(3).await;
    let mut spec = job("inc", 4, 1.0);
    spec.rounds = 4;
    spec.round_deadline_ms = 2_500;
    h.running().admin().create_job(spec).await.unwrap();

    let at = round(&mut clients, (0, 0), &[0, 1], false).await;
    let at = round(&mut clients, at, &[0, 1, 2], true).await;
    let at = round(&mut clients, at, &[0, 1], false).await;
    round(&mut clients, at, &[0, 1, 2], false).await;
    let done = h
        .running()
        .admin()
        .wait_for_job("inc", T, |j| j.rounds_completed == 4)
        .await
        .unwrap();
    assert_eq!(done.current_version, 4);

    let r = report(&h, "c002", "").await;
    assert_eq!(r.schema, "fedsec.incident_report.v1");
    assert_eq!(r.subject.tenant_id.as_deref(), Some("tenant-c002"));
    assert!(r.coverage.complete, "{:?}", r.coverage);
    assert_eq!(r.jobs.len(), 1);
    let j = &r.jobs[0];
    assert_eq!(j.rounds_contributed, vec![2, 4], "exactly its rounds");
    assert_eq!(j.versions_contributed, vec![2, 4]);
    assert_eq!(j.first_contribution, Some((2, 2)));
    assert_eq!(j.last_version_before, Some(1));
    assert!(j.current_carries);
    assert_eq!(j.versions_carrying, vec![2, 3, 4], "3 descends from 2");
    assert_eq!(j.rejected, 1);
    let outcomes: Vec<(u64, &str)> = j
        .entries
        .iter()
        .map(|e| (e.round, e.outcome.as_str()))
        .collect();
    assert_eq!(
        outcomes,
        [(2, "REJECTED"), (2, "ACCEPTED"), (4, "ACCEPTED")]
    );
    assert!(
        j.entries[0].reason.starts_with("non_finite"),
        "{:?}",
        j.entries[0]
    );
    assert!(j.entries[1].norm.unwrap() > 0.0);
    let ledger = h.running().admin().ledger("inc").await.unwrap();
    let last = ledger.last().unwrap();
    assert!(last.epsilon_pld > 0.0);
    assert_eq!(j.spent.epsilon_pld, last.epsilon_pld);
    assert_eq!(j.spent.rounds_charged, 4);
    assert!(r.audit.iter().any(|a| a.kind == "update_rejected"));
    assert!(
        r.audit
            .iter()
            .any(|a| a.kind == "incident_report" && a.admin_action),
        "drawing the report is audited"
    );
    let md = markdown::render(&r);
    assert!(
        md.contains("## Rejected uploads") && md.contains("non_finite"),
        "{md}"
    );
    let by_tenant = report(&h, "", &tenant_of("c000")).await;
    assert_eq!(by_tenant.jobs[0].rounds_contributed, vec![1, 2, 3, 4]);
    assert_eq!(by_tenant.jobs[0].last_version_before, Some(0));

    // The runbook, with the real binary.
    let dir = tempfile::tempdir().unwrap();
    admin_files(&h, dir.path());
    let (ok, out, err) = cli(
        &h,
        dir.path(),
        &[
            "clients",
            "quarantine",
            "--tenant",
            "tenant-c002",
            "--reason",
            "backdoor suspected",
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains("tenant tenant-c002 contained"), "{out}");
    assert_eq!(
        clients[2].get_task("inc").await.unwrap_err().code(),
        Code::PermissionDenied
    );
    let (ok, out, err) = cli(
        &h,
        dir.path(),
        &[
            "models",
            "rollback",
            "--before-client",
            "c002",
            "--job",
            "inc",
            "--reason",
            "c002 poisoned",
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains("rolled back to version 1"), "{out}");
    let job = h.running().admin().job("inc").unwrap();
    assert_eq!(job.current_version, 1);
    assert_eq!(
        job.epsilon_pld, last.epsilon_pld,
        "spent privacy stays charged"
    );
    let ledger = h.running().admin().ledger("inc").await.unwrap();
    let rb = ledger.last().unwrap();
    assert_eq!(
        (rb.kind, rb.model_version),
        (v1::LedgerEntryKind::Rollback as i32, 1)
    );
    assert!(rb.note.contains("c002"), "{}", rb.note);
    // Served with the restated receipt: the full spend, not version 1's.
    let (header, _) = clients[0].get_model("inc", 0).await;
    assert_eq!(header.version, 1);
    let served = header.receipt.as_ref().unwrap().epsilon_pld;
    assert!(
        (served - last.epsilon_pld).abs() < 1e-9,
        "{served} vs {}",
        last.epsilon_pld
    );

    let reports = dir.path().join("reports");
    let (ok, out, err) = cli(
        &h,
        dir.path(),
        &[
            "incident",
            "report",
            "--client",
            "c002",
            "--out",
            reports.to_str().unwrap(),
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains("wrote"), "{out}");
    let written: IncidentReport = serde_json::from_str(
        &std::fs::read_to_string(reports.join("incident-client-c002.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(written.jobs[0].rounds_contributed, vec![2, 4]);
    assert!(!written.jobs[0].current_carries, "version 1 predates c002");
    assert!(written.containment.is_some());
    assert!(
        written
            .audit
            .iter()
            .any(|a| a.kind == "admin_rollback_before_client")
    );
    let md = std::fs::read_to_string(reports.join("incident-client-c002.md")).unwrap();
    assert!(md.contains("# Incident report: client `c002`"), "{md}");
    assert!(md.contains("tenant_contained"), "{md}");

    // Refusals: a client that never contributed, an unknown one.
    let mut c9 = h.client("c009").await;
    c9.register().await.unwrap();
    let (ok, _, err) = cli(
        &h,
        dir.path(),
        &["models", "rollback", "--before-client", "c009"],
    );
    assert!(!ok && err.contains("never contributed"), "{err}");
    let (ok, _, err) = cli(
        &h,
        dir.path(),
        &["models", "rollback", "--before-client", "nobody"],
    );
    assert!(!ok && err.contains("no client"), "{err}");

    let (ok, out, err) = cli(
        &h,
        dir.path(),
        &[
            "clients",
            "release",
            "--tenant",
            "tenant-c002",
            "--reason",
            "cleaned up",
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains("1 identit(ies) active again"), "{out}");
    assert!(matches!(
        clients[2].get_task("inc").await.unwrap(),
        get_task_response::Outcome::Finished(_)
    ));
}

/// Tenant containment: both identities of tenant "evil" are refused, a new
/// identity of it cannot register, a known one cannot re-register, and
/// tenant "good" is unaffected; a single identity of a contained tenant
/// cannot be released alone; releasing the tenant restores what the
/// containment quarantined (not an identity quarantined before it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_quarantine_refuses_every_identity_and_new_registrations_until_released() {
    let h = Harness::start().await;
    let ep = h.endpoint();
    let mut e1 = TestClient::connect(&h.pki, "evil", "e1", &ep);
    let mut e2 = TestClient::connect(&h.pki, "evil", "e2", &ep);
    let mut e0 = TestClient::connect(&h.pki, "evil", "e0", &ep);
    let mut g1 = TestClient::connect(&h.pki, "good", "g1", &ep);
    for c in [&mut e1, &mut e2, &mut e0, &mut g1] {
        c.register().await.unwrap();
    }
    let mut spec = job("tq", 4, 1.0);
    spec.rounds = 1_000;
    h.running().admin().create_job(spec).await.unwrap();
    let mut admin = h.admin_grpc("admin");
    admin
        .quarantine_client(ClientActionRequest {
            client_id: "e0".into(),
            reason: "earlier, unrelated".into(),
        })
        .await
        .unwrap();

    let contained = admin
        .quarantine_tenant(TenantActionRequest {
            tenant_id: "evil".into(),
            reason: "poisoning".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(contained.contained);
    assert_eq!(contained.changed_client_ids, vec!["e1", "e2"]);
    for c in [&mut e1, &mut e2] {
        assert_eq!(
            c.get_task("tq").await.unwrap_err().code(),
            Code::PermissionDenied
        );
        let e = c.register().await.unwrap_err();
        assert_eq!(
            e.code(),
            Code::PermissionDenied,
            "a renewal is refused: {e}"
        );
        assert!(e.message().contains("contained"), "{e}");
    }
    let mut e3 = TestClient::connect(&h.pki, "evil", "e3", &ep);
    let e = e3.register().await.unwrap_err();
    assert_eq!(
        e.code(),
        Code::PermissionDenied,
        "a new identity is refused"
    );
    // The other tenant is unaffected.
    g1.register().await.unwrap();
    g1.get_task("tq").await.unwrap();
    let mut g2 = TestClient::connect(&h.pki, "good", "g2", &ep);
    g2.register().await.unwrap();
    // Twice: refused; one identity alone: refused while contained.
    let again = admin
        .quarantine_tenant(TenantActionRequest {
            tenant_id: "evil".into(),
            reason: "again".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::AlreadyExists);
    let alone = admin
        .release_client(ClientActionRequest {
            client_id: "e1".into(),
            reason: "just this one".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(alone.code(), Code::FailedPrecondition, "{alone}");
    let bad = admin
        .quarantine_tenant(TenantActionRequest {
            tenant_id: "../evil".into(),
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);

    // Audited.
    let events = h.running().admin().audit_events(None, 100).await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.kind == "tenant_contained" && e.detail.starts_with("tenant evil:"))
    );

    let released = admin
        .release_tenant(TenantActionRequest {
            tenant_id: "evil".into(),
            reason: "cleaned".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!released.contained);
    assert_eq!(released.changed_client_ids, vec!["e1", "e2"]);
    e1.register().await.unwrap();
    e1.get_task("tq").await.unwrap();
    e2.get_task("tq").await.unwrap();
    e3.register().await.unwrap();
    assert_eq!(
        e0.get_task("tq").await.unwrap_err().code(),
        Code::PermissionDenied,
        "quarantined before the containment: stays quarantined"
    );
    let not = admin
        .release_tenant(TenantActionRequest {
            tenant_id: "evil".into(),
            reason: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(not.code(), Code::FailedPrecondition);
    // Containment survives a restart.
    admin
        .quarantine_tenant(TenantActionRequest {
            tenant_id: "evil".into(),
            reason: "again".into(),
        })
        .await
        .unwrap();
    let mut h = h;
    h.shutdown().await;
    h.reopen(|_| {}).await;
    let mut e5 = TestClient::connect(&h.pki, "evil", "e5", &h.endpoint());
    assert_eq!(
        e5.register().await.unwrap_err().code(),
        Code::PermissionDenied
    );
}

/// A store fault while the round's record is written (a trigger on the
/// `contributions` table, installed by a second connection to the live
/// database, fails the insert inside the commit transaction): the round
/// is not published — no version, no ledger entry, clients still get
/// version 1 — and the record and the ledger agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_fault_while_recording_contributions_publishes_nothing() {
    let (h, store) = Harness::start_injected().await;
    let mut clients = h.clients(2).await;
    let mut spec = job("fault", 4, 1.0);
    spec.rounds = 3;
    h.running().admin().create_job(spec).await.unwrap();
    let mut at = (0, 0);
    for c in clients.iter_mut() {
        let t = c.wait_task_after("fault", (0, 0), T).await;
        c.submit(&t, &[0.01; 4], b"n").await.unwrap();
        at = (t.round, t.attempt);
    }
    assert_eq!(at, (1, 1));
    h.running()
        .admin()
        .wait_for_job("fault", T, |j| j.rounds_completed == 1)
        .await
        .unwrap();
    let db = rusqlite::Connection::open(h.dir.path().join("coordinator.db")).unwrap();
    db.execute_batch(
        "CREATE TRIGGER fault BEFORE INSERT ON contributions \
         BEGIN SELECT RAISE(ABORT, 'injected fault while recording a contribution'); END;",
    )
    .unwrap();
    for c in clients.iter_mut() {
        let t = c.wait_task_after("fault", at, T).await;
        c.submit(&t, &[0.01; 4], b"n").await.unwrap();
    }
    let failed = h
        .running()
        .admin()
        .wait_for_job("fault", T, |j| j.state != v1::JobState::Running as i32)
        .await
        .unwrap();
    assert_eq!(failed.state, v1::JobState::Failed as i32, "{failed:?}");
    assert!(failed.state_reason.contains("injected fault"), "{failed:?}");
    assert_eq!(failed.rounds_completed, 1);
    assert_eq!(failed.current_version, 1, "nothing published");
    let (header, _) = clients[0].get_model("fault", 0).await;
    assert_eq!(header.version, 1);
    assert_eq!(store.versions("fault").unwrap().len(), 2);
    assert_eq!(store.job("fault").unwrap().unwrap().state, JobState::Failed);
    let ledger = store.ledger("fault").unwrap();
    assert_eq!(ledger.len(), 1);
    // The record holds exactly the committed round's participants, with
    // its version.
    let rows = store.contributions(&ContributionFilter::default()).unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows.iter().all(|r| r.round == 1
        && r.model_version == Some(1)
        && r.contribution.outcome == ContributionOutcome::Accepted));
    assert_eq!(ledger[0].participants, 2);
    let job = h
        .admin_grpc("admin")
        .get_job(JobRef {
            job_id: "fault".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(job.current_version, 1);
}
