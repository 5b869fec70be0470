//! The `fedsec-client` binary's participant commands against a real
//! coordinator: `run --config client.toml` trains until the job finishes,
//! `ledger --json` shows the tenant's own rounds (matching the
//! coordinator's ledger), `model pull` writes a model `score` can read, and
//! configuration and certificate problems are clear errors.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use fedsec_coordinator::{AdminApi, Coordinator, CoordinatorConfig, JobSpec};
use fedsec_proto::devca::{DevPkiOptions, write_dev_pki};
use fedsec_proto::v1;
use support::{T, job, tenant_logs};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_fedsec-client"))
}

/// Asserts that `out` is a success, showing its standard error if not.
#[track_caller]
fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `fedsec-client run --config CONFIG` in the background, its stderr kept.
fn spawn_run(config: &Path) -> Child {
    bin()
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for `clients` registrations, then runs `spec` until it completes.
async fn run_once_registered(admin: &AdminApi, clients: usize, spec: JobSpec) -> v1::Job {
    let until = tokio::time::Instant::now() + T;
    while admin.clients().await.unwrap().len() < clients {
        assert!(
            tokio::time::Instant::now() < until,
            "CLI clients did not register"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let id = spec.id.clone();
    admin.create_job(spec).await.unwrap();
    admin
        .wait_for_job(&id, T, |j| j.state == v1::JobState::Completed as i32)
        .await
        .unwrap()
}

/// Waits for a client process to exit and asserts that it succeeded.
async fn assert_exits_ok(child: Child) {
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert_success(&out);
}

fn client_toml(
    endpoint: &str,
    pki: &Path,
    client: &str,
    log: &Path,
    labels: &Path,
    state: &Path,
) -> String {
    format!(
        r#"
endpoint = "{endpoint}"
job = "cli"
state_dir = "{state}"
seed = 3
release_public_key = "{pki}/release-signing.pub.pem"

[tls]
ca = "{pki}/ca.pem"
cert = "{pki}/clients/{client}.pem"
key = "{pki}/clients/{client}.key"

[data]
files = [{{ log = "{log}", labels = "{labels}" }}]
min_examples = 10

[privacy]
max_epsilon = 50.0
delta = 1e-5

[timing]
backoff_initial_ms = 30
backoff_max_ms = 300
model_refresh_ms = 100
"#,
        state = state.display(),
        pki = pki.display(),
        log = log.display(),
        labels = labels.display(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_ledger_model_pull_and_score() {
    let dir = tempfile::tempdir().unwrap();
    let pki_dir = dir.path().join("pki");
    let manifest = write_dev_pki(
        &pki_dir,
        &DevPkiOptions {
            clients: 2,
            tenants: vec!["shop".into(), "bank".into()],
            ..DevPkiOptions::default()
        },
    )
    .unwrap();
    let mut config = support::coordinator_config(&dir.path().join("coord"), "127.0.0.1:0");
    config.tls = Some(manifest.server.clone());
    // The dev PKI's release key: the clients verify with its public half.
    config.signing.key_file = manifest.release_signing_key.clone();
    let running = Coordinator::start(CoordinatorConfig { ..config })
        .await
        .unwrap();
    let endpoint = running.endpoint();
    let logs = tenant_logs(&dir.path().join("logs"), 2, 17);

    let mut children = Vec::new();
    let mut states = Vec::new();
    for (i, entry) in manifest.clients.iter().enumerate() {
        let state = dir.path().join(format!("state-{i}"));
        let toml = client_toml(
            &endpoint,
            &pki_dir,
            &entry.client_id,
            &logs[i].log,
            logs[i].labels.as_deref().unwrap(),
            &state,
        );
        let path = dir.path().join(format!("client-{i}.toml"));
        std::fs::write(&path, toml).unwrap();
        children.push(spawn_run(&path));
        states.push((state, path));
    }
    let admin = running.admin();
    let done = run_once_registered(&admin, 2, job("cli", 1.0, 1.0, 2, 2)).await;
    assert_eq!(done.rounds_completed, 2);
    // Bound to the job, each process exits when it finishes.
    for child in children {
        assert_exits_ok(child).await;
    }

    // `ledger --json`: the tenant's rounds, as the coordinator charged them.
    let coord = admin.ledger("cli").await.unwrap();
    for (state, _) in &states {
        let out = bin()
            .args(["ledger", "--json", "--state"])
            .arg(state)
            .output()
            .unwrap();
        assert_success(&out);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let entries = v["entries"].as_array().unwrap();
        assert_eq!(entries.len(), 2);
        for (e, c) in entries.iter().zip(&coord) {
            let charge = c.charge.unwrap();
            assert_eq!(e["round"], charge.round);
            assert_eq!(e["attempt"], c.attempt);
            assert_eq!(e["sampling_rate"], charge.sampling_rate);
            assert_eq!(e["noise_multiplier"], charge.noise_multiplier);
            assert_eq!(e["status"], "accepted");
        }
        // With q = 1 both bases agree with the coordinator's ε (same δ).
        let pld = &v["spent"]["pld"];
        let eps = pld["participation_epsilon"].as_f64().unwrap();
        let last = coord.last().unwrap().epsilon_pld;
        assert!((eps - last).abs() <= 1e-9 * last, "{eps} vs {last}");
        let rdp = v["spent"]["rdp"]["participation_epsilon"].as_f64().unwrap();
        assert!(rdp >= eps, "RDP is the looser bound");
        // The text view works too.
        let out = bin()
            .args(["ledger", "--state"])
            .arg(state)
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(text.contains("accepted") && text.contains("PLD"), "{text}");
    }

    // `model pull` writes the current model; `score` reads it.
    let model = dir.path().join("model.safetensors");
    let out = bin()
        .args(["model", "pull", "--config"])
        .arg(&states[0].1)
        .arg("--out")
        .arg(&model)
        .output()
        .unwrap();
    assert_success(&out);
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["version"], done.current_version);
    // Both the pulled file and the coordinator's export carry the release
    // signature; `model verify` checks it offline, and refuses a changed
    // weight byte, a changed metadata value, or another key.
    let public = manifest.release_public_key.clone().unwrap();
    let export = dir.path().join("export.safetensors");
    std::fs::write(&export, admin.export("cli", 0).await.unwrap()).unwrap();
    let other = dir.path().join("other.pem");
    fedsec_proto::release::ReleaseKey::generate()
        .write(&other, false)
        .unwrap();
    let verify = |file: &Path, key: &Path| {
        bin()
            .args(["model", "verify"])
            .arg(file)
            .arg("--public-key")
            .arg(key)
            .output()
            .unwrap()
    };
    for file in [&model, &export] {
        let out = verify(file, &public);
        assert_success(&out);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["verified"], true);
        assert_eq!(v["version"], done.current_version);
        let out = verify(file, &dir.path().join("other.pub.pem"));
        assert!(!out.status.success(), "another key verified");
        let bytes = std::fs::read(file).unwrap();
        // The last byte is tensor data (a weight).
        let mut changed = bytes.clone();
        *changed.last_mut().unwrap() ^= 1;
        // A metadata value: the version, in the JSON header.
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let header = String::from_utf8(bytes[8..8 + n].to_vec()).unwrap();
        let v = done.current_version;
        let forged_header = header
            .replacen(
                &format!("\\\"version\\\":{v}"),
                &format!("\\\"version\\\":{}", v + 1),
                1,
            )
            .replacen(
                &format!("\"version\":\"{v}\""),
                &format!("\"version\":\"{}\"", v + 1),
                1,
            );
        assert_ne!(forged_header, header, "no version in {header}");
        let mut forged = bytes[..8].to_vec();
        forged.extend_from_slice(forged_header.as_bytes());
        forged.extend_from_slice(&bytes[8 + n..]);
        for (what, b) in [("a weight", changed), ("the version", forged)] {
            let path = dir.path().join("tampered.safetensors");
            std::fs::write(&path, b).unwrap();
            let out = verify(&path, &public);
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{what} changed, still verified");
            assert!(err.contains("refused"), "{what}: {err}");
        }
    }
    let file = fedsec_detector::model::ModelFile::load(&model).unwrap();
    assert_eq!(
        file.spec.num_params(),
        fedsec_detector::features::NUM_FEATURES + 1
    );
    let out = bin()
        .args(["score", "--top", "3", "--model"])
        .arg(&model)
        .arg("--logs")
        .arg(&logs[0].log)
        .output()
        .unwrap();
    assert_success(&out);
    running.shutdown().await.unwrap();
}

#[test]
fn configuration_errors_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    let toml = client_toml(
        "https://localhost:1",
        Path::new("pki"),
        "client-0001",
        Path::new("a.log"),
        Path::new("a.labels.jsonl"),
        &dir.path().join("state"),
    )
    .replace("max_epsilon = 50.0", "max_epsilon = -2.0");
    std::fs::write(&path, toml).unwrap();
    let out = bin().args(["run", "--config"]).arg(&path).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("privacy.max_epsilon"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_refuses_a_coordinator_from_another_ca_and_exits() {
    let dir = tempfile::tempdir().unwrap();
    let ours = write_dev_pki(&dir.path().join("ours"), &DevPkiOptions::default()).unwrap();
    let theirs = write_dev_pki(&dir.path().join("theirs"), &DevPkiOptions::default()).unwrap();
    let mut config = support::coordinator_config(&dir.path().join("coord"), "127.0.0.1:0");
    config.tls = Some(theirs.server.clone());
    let running = Coordinator::start(config).await.unwrap();
    let logs = tenant_logs(&dir.path().join("logs"), 1, 3);
    let path = dir.path().join("client.toml");
    std::fs::write(
        &path,
        client_toml(
            &running.endpoint(),
            &dir.path().join("ours"),
            &ours.clients[0].client_id,
            &logs[0].log,
            logs[0].labels.as_deref().unwrap(),
            &dir.path().join("state"),
        ),
    )
    .unwrap();
    let out = tokio::task::spawn_blocking(move || {
        bin().args(["run", "--config"]).arg(&path).output().unwrap()
    })
    .await
    .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refusing to connect"), "{err}");
    assert!(err.contains("not issued by the CA"), "{err}");
    running.shutdown().await.unwrap();
}

/// Tokens on (`[auth.tokens]` on the coordinator, a local issuer): a
/// `fedsec-client run` with `[auth] token_file` trains through the job and
/// `model pull` works; the same config without the token is refused with a
/// clear UNAUTHENTICATED message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_and_model_pull_with_a_bearer_token_file() {
    use fedsec_coordinator::auth::mint::{self, AccessClaims, SigningKey};
    use fedsec_coordinator::config::TokensConfig;
    let dir = tempfile::tempdir().unwrap();
    let pki_dir = dir.path().join("pki");
    let manifest = write_dev_pki(
        &pki_dir,
        &DevPkiOptions {
            clients: 1,
            tenants: vec!["shop".into()],
            ..DevPkiOptions::default()
        },
    )
    .unwrap();
    let key = SigningKey::generate_file(&dir.path().join("issuer.key"), false).unwrap();
    let jwks = dir.path().join("jwks.json");
    mint::add_to_jwks(&jwks, &key).unwrap();
    let mut config = support::coordinator_config(&dir.path().join("coord"), "127.0.0.1:0");
    config.tls = Some(manifest.server.clone());
    config.signing.key_file = manifest.release_signing_key.clone();
    config.auth.tokens = Some(TokensConfig::with_jwks_file(
        "https://issuer.test",
        "fedsec",
        &jwks,
    ));
    let running = Coordinator::start(config).await.unwrap();
    let entry = &manifest.clients[0];
    let subject = format!(
        "spiffe://fedsec/tenant/{}/client/{}",
        entry.tenant_id, entry.client_id
    );
    let claims = AccessClaims::new(
        "https://issuer.test",
        "fedsec",
        &subject,
        &["fedsec.client".to_owned()],
        Duration::from_secs(600),
    )
    .unwrap();
    let token_file = dir.path().join("client.token");
    std::fs::write(&token_file, key.issue(&claims).unwrap()).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let logs = tenant_logs(&dir.path().join("logs"), 1, 17);
    let state = dir.path().join("state");
    let plain = client_toml(
        &running.endpoint(),
        &pki_dir,
        &entry.client_id,
        &logs[0].log,
        logs[0].labels.as_deref().unwrap(),
        &state,
    );
    let with_token = format!(
        "{plain}\n[auth]\ntoken_file = \"{}\"\n",
        token_file.display()
    );
    let path = dir.path().join("client.toml");
    std::fs::write(&path, &with_token).unwrap();
    let child = spawn_run(&path);
    let admin = running.admin();
    let done = run_once_registered(&admin, 1, job("cli", 1.0, 1.0, 1, 1)).await;
    assert_eq!(done.rounds_completed, 1);
    assert_exits_ok(child).await;
    let pull = |config: &Path| {
        bin()
            .args(["model", "pull", "--config"])
            .arg(config)
            .arg("--out")
            .arg(dir.path().join("model.safetensors"))
            .output()
            .unwrap()
    };
    let out = pull(&path);
    assert_success(&out);
    let bare = dir.path().join("bare.toml");
    std::fs::write(&bare, &plain).unwrap();
    let out = pull(&bare);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bearer token is required"), "{err}");
    running.shutdown().await.unwrap();
}
