//! The README's incident runbook walked on the demo (issue 22): the demo's
//! own code path ([`demo::run_with`]: synthetic logs on disk, a dev CA, a
//! real coordinator and one real participant per tenant over loopback
//! mTLS), and an operator who reads the admin access the demo wrote
//! (`<work>/admin.env`) and runs every step of the runbook over the Admin
//! API with the demo's admin certificate, in order: look (incident report)
//! → contain (quarantine the tenant, pause the job) → remediate (rollback
//! `--before-client`) → recover (resume) → post-mortem (incident report,
//! release the tenant). Each step's observable result is asserted.
//!
//! Cost: ~10 s in a debug build (6 tenants, 12 rounds, q = 1).
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use fedsec_coordinator::incident::IncidentReport;
use fedsec_experiments::demo::{self, AdminAccess, DemoConfig, DemoHooks, JOB_ID};
use fedsec_proto::tls::{ClientTls, TlsFiles};
use fedsec_proto::v1::admin_client::AdminClient;
use fedsec_proto::v1::{
    ClientStatus, IncidentReportRequest, JobRef, JobState, LedgerEntry, LedgerEntryKind,
    ListClientsRequest, RollbackModelRequest, TenantActionRequest,
};
use tokio::sync::oneshot;
use tonic::transport::Channel;

const ROUNDS: u64 = 12;
const TENANTS: usize = 6;
const SUBJECT: &str = "client-0002";
const SUBJECT_TENANT: &str = "tenant-0002";

/// The `export NAME='value'` lines of the demo's environment file.
fn read_env(path: &std::path::Path) -> HashMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("export "))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap();
            (k.to_owned(), v.trim_matches('\'').to_owned())
        })
        .collect()
}

async fn try_ledger(admin: &mut AdminClient<Channel>) -> Result<Vec<LedgerEntry>, tonic::Status> {
    Ok(admin
        .list_ledger(JobRef {
            job_id: JOB_ID.into(),
        })
        .await?
        .into_inner()
        .entries)
}

async fn ledger(admin: &mut AdminClient<Channel>) -> Vec<LedgerEntry> {
    try_ledger(admin).await.unwrap()
}

fn rounds_in(l: &[LedgerEntry]) -> usize {
    l.iter()
        .filter(|e| e.kind == LedgerEntryKind::Round as i32)
        .count()
}

async fn report(admin: &mut AdminClient<Channel>) -> IncidentReport {
    let r = admin
        .incident_report(IncidentReportRequest {
            client_id: SUBJECT.into(),
            tenant_id: String::new(),
            job_id: JOB_ID.into(),
        })
        .await
        .unwrap()
        .into_inner();
    serde_json::from_str(&r.report_json).unwrap()
}

/// Polls the ledger until `done` holds (30 s at most; the job is created
/// once every participant has registered).
async fn wait_ledger(
    admin: &mut AdminClient<Channel>,
    what: &str,
    done: impl Fn(&[LedgerEntry]) -> bool,
) -> Vec<LedgerEntry> {
    let t0 = Instant::now();
    loop {
        match try_ledger(admin).await {
            Ok(l) if done(&l) => return l,
            Ok(_) => {}
            Err(e) => assert_eq!(e.code(), tonic::Code::NotFound, "{e}"),
        }
        assert!(t0.elapsed() < Duration::from_secs(30), "waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_incident_runbook_walks_on_the_demo() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    let mut cfg = DemoConfig::standard(dir.path().join("report"));
    cfg.tenants = TENANTS;
    cfg.rounds = ROUNDS;
    cfg.cohort = TENANTS as u32;
    cfg.epsilon = 50.0;
    cfg.median_sessions = 70.0;
    cfg.quiet = true;
    cfg.threads = 2;
    cfg.work_dir = Some(work.clone());

    let (access_tx, access_rx) = oneshot::channel::<AdminAccess>();
    let (held_tx, held_rx) = oneshot::channel::<String>();
    let (go_tx, go_rx) = oneshot::channel::<()>();
    let hooks = DemoHooks {
        on_admin: Some(Box::new(move |a: &AdminAccess| {
            let _ = access_tx.send(a.clone());
        })),
        hold: Some(Box::new(move |o: &demo::DemoOutcome| {
            let _ = held_tx.send(o.job_state.clone());
            Box::pin(async move {
                let _ = go_rx.await;
            })
        })),
    };
    let demo = tokio::spawn(demo::run_with(cfg, hooks));

    // The operator's side: the environment file the demo wrote, nothing else.
    let access = tokio::time::timeout(Duration::from_secs(60), access_rx)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(access.env_file, work.join(demo::ENV_FILE));
    let env = read_env(&access.env_file);
    assert_eq!(env["FEDSEC_ENDPOINT"], access.endpoint);
    assert_eq!(env["FEDSEC_DEMO_JOB"], JOB_ID);
    assert!(
        access
            .identities
            .contains(&(SUBJECT.to_owned(), SUBJECT_TENANT.to_owned()))
    );
    let files = TlsFiles {
        ca: PathBuf::from(&env["FEDSEC_CA"]),
        cert: PathBuf::from(&env["FEDSEC_CERT"]),
        key: PathBuf::from(&env["FEDSEC_KEY"]),
    };
    let channel = ClientTls::from_files(&files)
        .unwrap()
        .channel(&env["FEDSEC_ENDPOINT"])
        .unwrap();
    let mut admin = AdminClient::new(channel);

    // 0. look: the subject has contributed (q = 1: every round so far).
    let before = wait_ledger(&mut admin, "two rounds", |l| rounds_in(l) >= 2).await;
    // Everyone who runs a participant reports every round (q = 1).
    let everyone = before.last().unwrap().participants;
    assert!(everyone >= 4, "{before:?}");
    let r0 = report(&mut admin).await;
    let j0 = &r0.jobs[0];
    assert!(j0.rounds_contributed.len() >= 2, "{j0:?}");
    assert_eq!(j0.first_contribution.map(|f| f.0), Some(1));
    assert_eq!(j0.last_version_before, Some(0), "before round 1: version 0");
    assert!(j0.current_carries);
    assert!(rounds_in(&before) < ROUNDS as usize, "the job still runs");

    // 1. contain: the tenant quarantined, the job paused.
    let c = admin
        .quarantine_tenant(TenantActionRequest {
            tenant_id: SUBJECT_TENANT.into(),
            reason: "INC-1: runbook drill".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(c.contained);
    assert_eq!(c.changed_client_ids, vec![SUBJECT.to_owned()]);
    let paused = admin
        .pause_job(JobRef {
            job_id: JOB_ID.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(paused.state, JobState::Paused as i32);
    // Paused: no round is released while it stays paused.
    let at_pause = ledger(&mut admin).await.len();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        ledger(&mut admin).await.len(),
        at_pause,
        "paused: no release"
    );
    let clients = admin
        .list_clients(ListClientsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .clients;
    let subject = clients.iter().find(|c| c.client_id == SUBJECT).unwrap();
    assert_eq!(
        subject.status,
        ClientStatus::Quarantined as i32,
        "{subject:?}"
    );

    // 2. remediate: serve the last version from before its first contribution.
    let spent = ledger(&mut admin).await.last().unwrap().epsilon_pld;
    let rolled = admin
        .rollback_model(RollbackModelRequest {
            job_id: JOB_ID.into(),
            version: 0,
            reason: "INC-1".into(),
            before_client_id: SUBJECT.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rolled.current_version, 0);
    let l = ledger(&mut admin).await;
    let last = l.last().unwrap();
    assert_eq!(last.kind, LedgerEntryKind::Rollback as i32);
    assert_eq!(last.model_version, 0);
    assert_eq!(last.epsilon_pld, spent, "privacy already spent stays spent");
    assert_eq!(rolled.state, JobState::Paused as i32, "still contained");

    // 3. recover: rounds resume on the clean version without the tenant.
    let resumed = admin
        .resume_job(JobRef {
            job_id: JOB_ID.into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resumed.state, JobState::Running as i32);
    let rollback_seq = last.seq;
    let after = wait_ledger(&mut admin, "a round after the rollback", |l| {
        l.iter()
            .any(|e| e.seq > rollback_seq && e.kind == LedgerEntryKind::Round as i32)
    })
    .await;
    let next = after.iter().find(|e| e.seq > rollback_seq).unwrap();
    assert_eq!(
        next.participants,
        everyone - 1,
        "the contained tenant takes no part"
    );
    let r1 = report(&mut admin).await;
    assert!(!r1.jobs[0].current_carries, "{:?}", r1.jobs[0]);

    // The demo runs the job to its end and holds for the post-mortem.
    let Ok(state) = tokio::time::timeout(Duration::from_secs(60), held_rx).await else {
        let job = admin
            .get_job(JobRef {
                job_id: JOB_ID.into(),
            })
            .await
            .unwrap()
            .into_inner();
        panic!(
            "the job did not end within 60 s: {job:?}\n{:#?}",
            ledger(&mut admin).await
        );
    };
    let state = state.unwrap();
    assert_eq!(state, "COMPLETED");

    // 4. post-mortem: everything above is in the report; then release.
    let pm = report(&mut admin).await;
    let j = &pm.jobs[0];
    assert_eq!(j.rounds_contributed, r1.jobs[0].rounds_contributed);
    let final_ledger = ledger(&mut admin).await;
    let contained_round = next.charge.as_ref().unwrap().round;
    assert!(
        j.rounds_contributed.iter().all(|&r| r < contained_round),
        "no contribution after containment: {:?}",
        j.rounds_contributed
    );
    assert!(!j.current_carries);
    assert_eq!(
        j.spent.epsilon_pld,
        final_ledger.last().unwrap().epsilon_pld
    );
    assert_eq!(j.spent.rounds_charged, ROUNDS);
    assert!(pm.containment.is_some(), "{:?}", pm.containment);
    let kinds: Vec<&str> = pm.audit.iter().map(|a| a.kind.as_str()).collect();
    for k in [
        "client_registered",
        "tenant_contained",
        "admin_rollback_before_client",
        "incident_report",
    ] {
        assert!(kinds.contains(&k), "{k} in {kinds:?}");
    }
    let released = admin
        .release_tenant(TenantActionRequest {
            tenant_id: SUBJECT_TENANT.into(),
            reason: "INC-1 closed".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!released.contained);

    go_tx.send(()).unwrap();
    let o = tokio::time::timeout(Duration::from_secs(60), demo)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(o.job_state, "COMPLETED");
    assert_eq!(o.rounds.len() as u64, ROUNDS);
    assert_eq!(o.rounds.last().unwrap().participants, everyone - 1);
    assert_eq!(o.participating as u32, everyone);
    // The coordinator is gone once the demo returns.
    assert!(
        admin
            .get_job(JobRef {
                job_id: JOB_ID.into()
            })
            .await
            .is_err()
    );
}
