//! The Admin service against hostile callers and inputs, over a real
//! server with mTLS: every refused call is audited, and past the caller's
//! audit rows neither stored nor logged; `init_weights_path` reads only
//! regular files inside `init_weights_dir`, within a size cap.

#![allow(clippy::unwrap_used)]

mod support;

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use fedsec_coordinator::RejectReason;
use fedsec_coordinator::export::{ExportInfo, to_safetensors};
use fedsec_model::ModelSpec;
use fedsec_proto::model::ModelSpecWire;
use fedsec_proto::v1::admin_client::AdminClient;
use fedsec_proto::v1::{
    ClientActionRequest, CreateJobRequest, JobConfig, ListJobsRequest, job_config,
};
use support::{Harness, tenant_of};
use tonic::Code;

/// Attack: a tenant's certificate and an admin certificate whose name is
/// not in `admins` call the Admin service. Bound: each call is refused
/// (`PERMISSION_DENIED`), counted (`admin_refused`) and audited as an
/// `admin_refused` event naming the caller and the method. (Before: refused,
/// but not audited.)
#[tokio::test]
async fn every_refused_admin_call_is_audited() {
    let h = Harness::start().await;
    let _cs = h.clients(1).await;
    let mut as_tenant = AdminClient::new(
        h.pki
            .client_tls(&tenant_of("c000"), "c000")
            .unwrap()
            .channel(&h.endpoint())
            .unwrap(),
    );
    let e = as_tenant.list_jobs(ListJobsRequest {}).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = as_tenant
        .revoke_client(ClientActionRequest {
            client_id: "c001".into(),
            reason: "x".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    let e = h
        .admin_grpc("rogue")
        .list_jobs(ListJobsRequest {})
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);

    let events = h.running().admin().audit_events(None, 100).await.unwrap();
    let refused: Vec<_> = events
        .iter()
        .filter(|e| e.kind == "admin_refused")
        .collect();
    assert_eq!(refused.len(), 3, "{events:?}");
    assert!(refused.iter().any(|e| e.client_id == "c000"
        && e.detail.contains("Admin/RevokeClient")
        && e.detail.contains(&format!("{}/c000", tenant_of("c000")))));
    assert!(
        refused
            .iter()
            .any(|e| e.detail.contains("Admin/ListJobs") && e.detail.contains("admin:rogue"))
    );
    assert!(h.running().metrics().rejections(RejectReason::AdminRefused) >= 3);
}

/// Counts the log lines that say "Admin call refused".
#[derive(Clone)]
struct RefusedLines(Arc<AtomicU64>);

impl Write for RefusedLines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = buf
            .windows(b"Admin call refused".len())
            .filter(|w| w == b"Admin call refused")
            .count();
        self.0.fetch_add(n as u64, Ordering::Relaxed);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Attack (found by `scripts/chaos`): a tenant calls the Admin service in a
/// loop. Bound: once its audit rows for the hour are used up
/// (`rate_limits.audit_rows_per_hour`, 5 here) its calls are answered
/// `RESOURCE_EXHAUSTED` and log nothing: 300 calls log 5 lines. (Before:
/// every refused call logged a line, ~310 bytes, whatever the row budget:
/// the chaos run's admin attacker grew the log by 2 MB in 4 s.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_admin_calls_past_the_row_budget_are_not_logged() {
    let lines = Arc::new(AtomicU64::new(0));
    let writer = RefusedLines(lines.clone());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .with_writer(move || writer.clone())
        .try_init();
    let h = Harness::start_with(|c| c.rate_limits.audit_rows_per_hour = 5).await;
    let _cs = h.clients(1).await;
    let mut as_tenant = AdminClient::new(
        h.pki
            .client_tls(&tenant_of("c000"), "c000")
            .unwrap()
            .channel(&h.endpoint())
            .unwrap(),
    );
    let mut codes = Vec::new();
    for _ in 0..300 {
        codes.push(
            as_tenant
                .list_jobs(ListJobsRequest {})
                .await
                .unwrap_err()
                .code(),
        );
    }
    assert!(
        codes[..5].iter().all(|c| *c == Code::PermissionDenied),
        "{codes:?}"
    );
    assert!(
        codes[5..].iter().all(|c| *c == Code::ResourceExhausted),
        "{codes:?}"
    );
    let logged = lines.load(Ordering::Relaxed);
    assert_eq!(logged, 5, "300 refused Admin calls logged {logged} lines");
    let events = h.running().admin().audit_events(None, 1000).await.unwrap();
    let refused = events.iter().filter(|e| e.kind == "admin_refused").count();
    assert_eq!(refused, 5, "{events:?}");
}

fn write_weights(path: &Path, spec: &ModelSpec, fill: f32) -> Vec<f32> {
    let w = vec![fill; spec.num_params()];
    let info = ExportInfo {
        job_id: "x",
        version: 0,
        round: 0,
        receipt_json: "{}",
        release: None,
    };
    std::fs::write(path, to_safetensors(spec, &w, &info).unwrap()).unwrap();
    w
}

fn create(id: &str, path: &str) -> CreateJobRequest {
    CreateJobRequest {
        config: Some(JobConfig {
            job_id: id.into(),
            model_spec: Some(ModelSpec::logistic(5).to_proto()),
            init_weights_path: path.into(),
            sampling: Some(job_config::Sampling::SamplingRate(1.0)),
            population: 4,
            ..Default::default()
        }),
    }
}

/// Attack: an admin (or a stolen admin key) names host files as
/// `init_weights_path`: a file outside the allowed directory (absolute, and
/// via `..`), `/dev/zero`, a FIFO, a symlink inside the directory pointing
/// out, and an oversized file. Bound: each is refused with
/// `INVALID_ARGUMENT` naming `config.init_weights_path`, promptly (nothing
/// is read past the cap: 4 bytes per parameter + 1 MiB); a regular file
/// inside `init_weights_dir` is used; without `init_weights_dir` no path is
/// read. (Before: any host file was read whole: `/dev/zero` ran the
/// coordinator out of memory.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_weights_are_read_only_from_regular_files_inside_init_weights_dir() {
    let allowed = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let spec = ModelSpec::logistic(5);
    let w = write_weights(&allowed.path().join("ok.safetensors"), &spec, 0.25);
    let stray = outside.path().join("stray.safetensors");
    write_weights(&stray, &spec, 0.5);
    std::os::unix::fs::symlink(&stray, allowed.path().join("escape.safetensors")).unwrap();
    std::fs::write(
        allowed.path().join("big.safetensors"),
        vec![0u8; (1 << 20) + 4 * 6 + 1],
    )
    .unwrap();
    let fifo = allowed.path().join("fifo.safetensors");
    let have_fifo = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .is_ok_and(|s| s.success());

    let dir = allowed.path().to_owned();
    let h = Harness::start_with(move |c| c.init_weights_dir = Some(dir)).await;
    let mut admin = h.admin_grpc("admin");
    let rel_outside = format!(
        "../{}/stray.safetensors",
        outside.path().file_name().unwrap().to_str().unwrap()
    );
    let mut refused = vec![
        (stray.display().to_string(), "not inside init_weights_dir"),
        (rel_outside, "not inside init_weights_dir"),
        ("/dev/zero".to_owned(), "not inside init_weights_dir"),
        (
            "escape.safetensors".to_owned(),
            "not inside init_weights_dir",
        ),
        ("big.safetensors".to_owned(), "bytes"),
        ("missing.safetensors".to_owned(), "No such file"),
    ];
    if have_fifo {
        refused.push(("fifo.safetensors".to_owned(), "not a regular file"));
    }
    for (i, (path, why)) in refused.iter().enumerate() {
        let e = tokio::time::timeout(
            Duration::from_secs(10),
            admin.create_job(create(&format!("bad{i}"), path)),
        )
        .await
        .unwrap_or_else(|_| panic!("{path}: not refused within 10 s"))
        .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{path}: {e:?}");
        assert!(
            e.message().contains("config.init_weights_path") && e.message().contains(why),
            "{path}: {e:?}"
        );
    }
    let job = admin
        .create_job(create("good", "ok.safetensors"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(job.job_id, "good");
    let mut c = h.clients(1).await.pop().unwrap();
    let (_, got) = c.get_model("good", 0).await;
    assert_eq!(got, w);

    // Without init_weights_dir, no file is read at all.
    let h2 = Harness::start().await;
    let e = h2
        .admin_grpc("admin")
        .create_job(create(
            "any",
            &allowed.path().join("ok.safetensors").display().to_string(),
        ))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("init_weights_dir"), "{e:?}");
}
