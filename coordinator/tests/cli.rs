//! The binary: `certs init`, `serve --config` with JSON logs, `admin ...
//! --json` against it, SIGTERM for a graceful stop, and `serve --check`.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_fedsec-coordinator");

fn admin(dir: &Path, port: u16, args: &[&str]) -> Value {
    let pki = dir.join("pki");
    let out = Command::new(BIN)
        .arg("admin")
        .arg("--endpoint")
        .arg(format!("https://localhost:{port}"))
        .arg("--ca")
        .arg(pki.join("ca.pem"))
        .arg("--cert")
        .arg(pki.join("admin.pem"))
        .arg("--key")
        .arg(pki.join("admin.key"))
        .arg("--json")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "admin {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "admin {args:?}: not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

#[test]
fn serve_admin_and_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ok = Command::new(BIN)
        .args(["certs", "init", "--clients", "1", "--out"])
        .arg(d.join("pki"))
        .status()
        .unwrap();
    assert!(ok.success());
    std::fs::write(
        d.join("coordinator.toml"),
        r#"
listen = "127.0.0.1:0"
data_dir = "data"
admins = ["admin"]
[tls]
ca = "pki/ca.pem"
cert = "pki/server.pem"
key = "pki/server.key"
[metrics]
listen = "127.0.0.1:0"
[[jobs]]
id = "cli-job"
model = { kind = "logistic", input_dim = 3 }
population = 4
sampling_rate = 0.5
rounds = 2
"#,
    )
    .unwrap();
    let check = Command::new(BIN)
        .args(["serve", "--check", "--config"])
        .arg(d.join("coordinator.toml"))
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );

    let mut child = Command::new(BIN)
        .args(["--log-format", "json", "serve", "--config"])
        .arg(d.join("coordinator.toml"))
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let until = Instant::now() + Duration::from_secs(30);
    let port = loop {
        let line = rx
            .recv_timeout(until.saturating_duration_since(Instant::now()))
            .expect("coordinator did not start");
        let v: Value =
            serde_json::from_str(&line).unwrap_or_else(|_| panic!("not a JSON log line: {line}"));
        if v["message"] == "coordinator started" {
            let addr: std::net::SocketAddr = v["local_addr"].as_str().unwrap().parse().unwrap();
            break addr.port();
        }
    };

    let jobs = admin(d, port, &["jobs", "list"]);
    assert_eq!(jobs[0]["job_id"], "cli-job");
    assert_eq!(jobs[0]["state"], "RUNNING");
    assert_eq!(jobs[0]["config"]["noise_source"], "discrete");
    let models = admin(d, port, &["models", "list", "cli-job"]);
    assert_eq!(models[0]["version"], 0);
    assert_eq!(models[0]["current"], true);
    assert_eq!(admin(d, port, &["ledger", "cli-job"]), Value::Array(vec![]));
    assert_eq!(admin(d, port, &["clients", "list"]), Value::Array(vec![]));
    let out = d.join("v0.safetensors");
    let exported = admin(
        d,
        port,
        &[
            "models",
            "export",
            "cli-job",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(exported["bytes"].as_u64().unwrap() > 0);
    assert!(std::fs::metadata(&out).unwrap().len() > 0);
    std::fs::write(
        d.join("job.toml"),
        "id = \"second\"\nmodel = { kind = \"logistic\", input_dim = 2 }\npopulation = 20\nexpected_cohort = 5\n",
    )
    .unwrap();
    let created = admin(
        d,
        port,
        &[
            "jobs",
            "create",
            "--file",
            d.join("job.toml").to_str().unwrap(),
        ],
    );
    assert_eq!(created["job_id"], "second");
    assert_eq!(created["config"]["expected_cohort"], 5);
    assert_eq!(created["config"]["population"], 20);
    let paused = admin(d, port, &["jobs", "pause", "second"]);
    assert_eq!(paused["state"], "PAUSED");
    let audit = admin(d, port, &["audit", "--limit", "50"]);
    let kinds: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"job_created") && kinds.contains(&"job_paused"),
        "{kinds:?}"
    );

    // SIGTERM: graceful stop.
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let until = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < until, "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    let rest: Vec<String> = rx.try_iter().collect();
    assert!(
        rest.iter().any(|l| l.contains("coordinator stopped")),
        "{rest:?}"
    );

    // A restart on the same directory keeps the jobs (config job not duplicated).
    let bad = std::fs::read_to_string(d.join("coordinator.toml"))
        .unwrap()
        .replace("rounds = 2", "rounds = 3");
    std::fs::write(d.join("changed.toml"), bad).unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(d.join("changed.toml"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("jobs[0]") && err.contains("different definition"),
        "{err}"
    );
}

#[test]
fn invalid_config_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[[jobs]]\nid = \"j\"\nmodel = { kind = \"logistic\", input_dim = 3 }\nsampling_rate = 0.1\nclipping = { clip_norm = 0.0 }\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("jobs[0].clipping.clip_norm: must be > 0"),
        "{err}"
    );
}
