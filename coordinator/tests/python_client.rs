//! A client written from the `.proto` alone, in another language: Python's
//! grpcio with stubs generated from `proto/` by grpcio-tools at test time
//! (into the target directory, never committed) goes through a full round —
//! Register, GetTask, GetModel, SubmitUpdate in 64 KiB chunks — against a
//! real coordinator over mutual TLS (`tests/python/fedsec_client.py`).
//!
//! Python comes from `FEDSEC_PYTHON`, else CI's venv `target/ci-venv`
//! (`.ci/run` creates it; `scripts/test` and `.ci/run` set `FEDSEC_PYTHON`
//! to it). Without a Python that imports `grpc` and `grpc_tools` the test is
//! skipped with a message — unless `CI` or `FEDSEC_PYTHON` is set, where it
//! fails.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use fedsec_model::ModelSpec;
use fedsec_proto::tls::ClientIdentity;
use support::{Harness, TestClient, job, tenant_of};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// A Python with grpcio and grpcio-tools, or why there is none.
fn python() -> Result<PathBuf, String> {
    let candidate = std::env::var_os("FEDSEC_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/ci-venv/bin/python"));
    let out = Command::new(&candidate)
        .args(["-c", "import grpc, grpc_tools"])
        .output()
        .map_err(|e| format!("{}: {e}", candidate.display()))?;
    if out.status.success() {
        Ok(candidate)
    } else {
        Err(format!(
            "{} cannot import grpc and grpc_tools: {}",
            candidate.display(),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Contract: a grpcio client built only from `proto/fedsec/v1/*.proto`
/// completes a round with 64 KiB chunks at d = 200,001 (13 chunks; the old
/// chunk-count limit of `2·⌈d/2¹⁸⌉ + 8` = 10 refused it), and the committed
/// model is exactly the base plus its update (q × population = 1, no noise).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_grpcio_client_completes_a_round_with_64_kib_chunks() {
    let Some(python) = usable_python() else {
        return;
    };
    let stubs = stubs(&python);

    const D: u32 = 200_001;
    let h = Harness::start().await;
    // The identity is registered before the job starts, so the first
    // round's cohort (drawn from the tenants registered when it opens)
    // includes it; the script's own Register is then a re-registration.
    TestClient::connect(&h.pki, &tenant_of("python"), "python", &h.endpoint())
        .register()
        .await
        .unwrap();
    let mut spec = job("py", D, 1.0);
    spec.population = Some(1);
    spec.rounds = 1;
    spec.min_clients = 1;
    spec.round_deadline_ms = 60_000;
    spec.disable_noise = true;
    let admin = h.running().admin();
    admin.create_job(spec).await.unwrap();
    let weights = |bytes: Vec<u8>| {
        fedsec_coordinator::export::from_safetensors(&ModelSpec::logistic(D - 1), &bytes)
            .unwrap()
            .0
    };
    let w0 = weights(admin.export("py", 0).await.unwrap());

    let pem = h
        .pki
        .ca()
        .issue_client(&ClientIdentity::new(&tenant_of("python"), "python").unwrap())
        .unwrap();
    let files = tempfile::tempdir().unwrap();
    let path = |n: &str| files.path().join(n);
    std::fs::write(path("ca.pem"), h.pki.ca_pem()).unwrap();
    std::fs::write(path("client.pem"), &pem.cert_pem).unwrap();
    std::fs::write(path("client.key"), &pem.key_pem).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/fedsec_client.py");
    let child = Command::new(&python)
        .arg(&script)
        .arg("--stubs")
        .arg(stubs.path())
        .args([
            "--endpoint",
            &format!("localhost:{}", h.running().local_addr().port()),
        ])
        .arg("--ca")
        .arg(path("ca.pem"))
        .arg("--cert")
        .arg(path("client.pem"))
        .arg("--key")
        .arg(path("client.key"))
        .args(["--job", "py", "--chunk-bytes", "65536"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = finish(child, Duration::from_secs(90)).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the Python client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(report["client_id"], "python");
    assert_eq!(report["tenant_id"], tenant_of("python"));
    assert_eq!(report["num_params"], D);
    assert_eq!(report["chunk_bytes"], 65_536);
    assert_eq!(report["chunks"], 13);
    assert_eq!(report["newly_accepted"], true);
    // Issue 16: the history the receipt references, fetched and checked by
    // an implementation of the documented hash chain that is not ours.
    assert_eq!(report["history_rounds"], 1);
    assert_eq!(report["history_digest_ok"], true);
    assert_eq!(report["inline_rounds_match"], true);

    admin
        .wait_for_job("py", Duration::from_secs(60), |j| j.rounds_completed == 1)
        .await
        .unwrap();
    let w1 = weights(admin.export("py", 0).await.unwrap());
    for (i, (a, b)) in w0.iter().zip(&w1).enumerate() {
        let u = ((i % 5) as f64 - 2.0) * 1e-4;
        let expected = f64::from(*a) + f64::from(u as f32);
        assert!((f64::from(*b) - expected).abs() < 1e-6, "value {i}");
    }
}

/// Tokens on: the same grpcio client, given a bearer token file, sends
/// `authorization: Bearer <JWT>` through grpcio's call credentials on every
/// call (Register, GetTask, GetModel, the streamed SubmitUpdate,
/// GetRoundHistory) and completes the round; without the token the
/// coordinator refuses it (`UNAUTHENTICATED`). The token comes from the
/// embedded issuer (a local ES256 key and its JWKS file).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_grpcio_client_completes_a_round_with_a_bearer_token() {
    use fedsec_coordinator::auth::mint::{self, AccessClaims, SigningKey};
    use fedsec_coordinator::config::TokensConfig;
    let Some(python) = usable_python() else {
        return;
    };
    let stubs = stubs(&python);
    const D: u32 = 1_001;
    let files = tempfile::tempdir().unwrap();
    let path = |n: &str| files.path().join(n);
    let key = SigningKey::generate_file(&path("issuer.key"), false).unwrap();
    mint::add_to_jwks(&path("jwks.json"), &key).unwrap();
    let h = Harness::start_with(|c| {
        c.auth.tokens = Some(TokensConfig::with_jwks_file(
            "https://issuer.test",
            "fedsec",
            path("jwks.json"),
        ));
    })
    .await;
    let identity = ClientIdentity::new(&tenant_of("python"), "python").unwrap();
    let uri = fedsec_proto::tls::PeerIdentity::Client(identity.clone()).to_uri();
    let claims = AccessClaims::new(
        "https://issuer.test",
        "fedsec",
        &uri,
        &["fedsec.client".to_owned()],
        Duration::from_secs(600),
    )
    .unwrap();
    let token = key.issue(&claims).unwrap();
    std::fs::write(path("token"), format!("{token}\n")).unwrap();
    // Registered (with the token) before the job starts, as above.
    let mut pre = TestClient::connect(&h.pki, &tenant_of("python"), "python", &h.endpoint());
    let mut req = tonic::Request::new(fedsec_proto::v1::RegisterRequest {
        software: "pre".into(),
    });
    req.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    pre.grpc.register(req).await.unwrap();
    let mut spec = job("py", D, 1.0);
    spec.population = Some(1);
    spec.rounds = 1;
    spec.round_deadline_ms = 60_000;
    spec.disable_noise = true;
    let admin = h.running().admin();
    admin.create_job(spec).await.unwrap();
    let pem = h.pki.ca().issue_client(&identity).unwrap();
    std::fs::write(path("ca.pem"), h.pki.ca_pem()).unwrap();
    std::fs::write(path("client.pem"), &pem.cert_pem).unwrap();
    std::fs::write(path("client.key"), &pem.key_pem).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/fedsec_client.py");
    let child = Command::new(&python)
        .arg(&script)
        .arg("--stubs")
        .arg(stubs.path())
        .args([
            "--endpoint",
            &format!("localhost:{}", h.running().local_addr().port()),
        ])
        .arg("--ca")
        .arg(path("ca.pem"))
        .arg("--cert")
        .arg(path("client.pem"))
        .arg("--key")
        .arg(path("client.key"))
        .arg("--token-file")
        .arg(path("token"))
        .args(["--job", "py"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let out = finish(child, Duration::from_secs(90)).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the Python client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(report["refused_without_token"], true);
    assert_eq!(report["newly_accepted"], true);
    assert_eq!(report["history_digest_ok"], true);
    admin
        .wait_for_job("py", Duration::from_secs(60), |j| j.rounds_completed == 1)
        .await
        .unwrap();
}

/// The Python to run, or `None` (test skipped with a message) outside CI.
fn usable_python() -> Option<PathBuf> {
    match python() {
        Ok(p) => Some(p),
        Err(why)
            if std::env::var_os("CI").is_some() || std::env::var_os("FEDSEC_PYTHON").is_some() =>
        {
            panic!("CI or FEDSEC_PYTHON is set but there is no usable Python: {why}")
        }
        Err(why) => {
            eprintln!("SKIPPED: no Python with grpcio and grpcio-tools ({why}); set FEDSEC_PYTHON");
            None
        }
    }
}

/// Python stubs from the .proto files, generated fresh into the target directory.
fn stubs(python: &Path) -> tempfile::TempDir {
    let stubs = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let protos: Vec<String> = std::fs::read_dir(workspace().join("proto/fedsec/v1"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".proto"))
        .map(|n| format!("fedsec/v1/{n}"))
        .collect();
    let status = Command::new(python)
        .current_dir(workspace().join("proto"))
        .args(["-m", "grpc_tools.protoc", "-I", "."])
        .arg(format!("--python_out={}", stubs.path().display()))
        .arg(format!("--grpc_python_out={}", stubs.path().display()))
        .args(&protos)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "grpcio-tools could not compile {protos:?}"
    );

    stubs
}

/// Waits for `child` (killing it after `timeout`) and collects its output.
async fn finish(mut child: std::process::Child, timeout: Duration) -> std::process::Output {
    let until = tokio::time::Instant::now() + timeout;
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if tokio::time::Instant::now() >= until {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "the Python client did not finish within {timeout:?}:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
