//! Shared support of the client's integration tests: a development PKI, a
//! real coordinator on a loopback port with mutual TLS, synthetic tenant
//! logs from the detector's generator, participants with fast timing, and
//! helpers to wait for events.

#![allow(dead_code, unreachable_pub, missing_docs, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use fedsec_client::{
    DataOptions, DataSource, Event, LabelledLog, Participant, ParticipantBuilder, PrivacyPolicy,
    Timing,
};
use fedsec_coordinator::config::DangerousConfig;
use fedsec_coordinator::{Coordinator, CoordinatorConfig, JobSpec, RunningCoordinator};
use fedsec_detector::synth::{SynthConfig, SynthFormat, generate_tenant};
use fedsec_model::ModelSpec;
use fedsec_privacy::NoiseKind;
use fedsec_proto::devca::LoopbackPki;
use fedsec_proto::release::ReleaseKey;
use fedsec_proto::tls::ClientTls;
use tokio::sync::broadcast;

pub const TENANT: &str = "tenant-a";
pub const T: Duration = Duration::from_secs(60);

/// A fresh loopback PKI (CA, server TLS for localhost) for one test.
pub fn pki() -> Arc<LoopbackPki> {
    Arc::new(LoopbackPki::generate("fedsec client test CA").unwrap())
}

/// The release signing key of every coordinator these tests start (one per
/// test process, written next to the data directory).
pub fn release_key() -> &'static ReleaseKey {
    static KEY: OnceLock<ReleaseKey> = OnceLock::new();
    KEY.get_or_init(|| ReleaseKey::from_seed([42; 32]))
}

pub fn coordinator_config(data_dir: &Path, listen: &str) -> CoordinatorConfig {
    let key_file = data_dir
        .parent()
        .unwrap_or(data_dir)
        .join("release-signing.pem");
    if !key_file.exists() {
        release_key().write(&key_file, true).unwrap();
    }
    let mut c = CoordinatorConfig {
        listen: listen.parse().unwrap(),
        data_dir: data_dir.to_owned(),
        admins: vec!["admin".into()],
        poll_interval_ms: 20,
        dangerous: Some(DangerousConfig {
            allow_simulation_noise: true,
            allow_disabled_noise: false,
        }),
        ..Default::default()
    };
    c.metrics.enabled = false;
    c.signing.key_file = Some(key_file);
    c
}

/// A coordinator under test with its PKI and data directory.
pub struct Harness {
    pub pki: Arc<LoopbackPki>,
    pub dir: tempfile::TempDir,
    pub running: Option<RunningCoordinator>,
    pub port: u16,
}

impl Harness {
    pub async fn start() -> Self {
        let pki = pki();
        let dir = tempfile::tempdir().unwrap();
        let running = Coordinator::start_with_tls(
            coordinator_config(&dir.path().join("coordinator"), "127.0.0.1:0"),
            pki.server_tls().clone(),
        )
        .await
        .unwrap();
        let port = running.local_addr().port();
        Self {
            pki,
            dir,
            running: Some(running),
            port,
        }
    }

    pub fn running(&self) -> &RunningCoordinator {
        self.running.as_ref().unwrap()
    }

    pub fn endpoint(&self) -> String {
        format!("https://localhost:{}", self.port)
    }

    /// Graceful stop.
    pub async fn stop(&mut self) {
        self.running.take().unwrap().shutdown().await.unwrap();
    }

    /// Starts again on the same data directory and port.
    pub async fn restart(&mut self) {
        assert!(self.running.is_none());
        let listen = format!("127.0.0.1:{}", self.port);
        let mut last = None;
        // The port was just released; retry briefly if the OS holds it.
        for _ in 0..50 {
            match Coordinator::start_with_tls(
                coordinator_config(&self.dir.path().join("coordinator"), &listen),
                self.pki.server_tls().clone(),
            )
            .await
            {
                Ok(r) => {
                    self.running = Some(r);
                    return;
                }
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("restart failed: {last:?}");
    }
}

/// A logistic-regression job over the detector's 38 features, sized for
/// `population` tenants.
pub fn job(id: &str, q: f64, z: f64, rounds: u64, population: u64) -> JobSpec {
    let mut j = JobSpec::new(
        id,
        ModelSpec::logistic(fedsec_detector::features::NUM_FEATURES as u32),
        q,
        population,
    );
    j.rounds = rounds;
    j.min_clients = 1;
    j.round_deadline_ms = 20_000;
    j.noise_source = NoiseKind::Simulation;
    j.noise_multiplier = Some(z);
    j.training.local_epochs = 1;
    j.training.batch_size = 32;
    j.training.learning_rate = 0.1;
    j.fill_defaults();
    j
}

/// Small synthetic tenants: (log, labels) files per tenant in `dir`.
pub fn tenant_logs(dir: &Path, tenants: usize, seed: u64) -> Vec<LabelledLog> {
    let cfg = SynthConfig {
        tenants,
        seed,
        format: SynthFormat::Mixed,
        days: 1,
        median_sessions: 150.0,
        sessions_sigma: 0.2,
        min_sessions: 100,
        max_sessions: 220,
        ..SynthConfig::default()
    };
    std::fs::create_dir_all(dir).unwrap();
    (0..tenants)
        .map(|i| {
            let t = generate_tenant(&cfg, i).unwrap();
            let files = LabelledLog {
                log: dir.join(format!("tenant-{i:03}.log")),
                labels: Some(dir.join(format!("tenant-{i:03}.labels.jsonl"))),
            };
            std::fs::write(&files.log, &t.log).unwrap();
            std::fs::write(files.labels.as_ref().unwrap(), &t.labels).unwrap();
            files
        })
        .collect()
}

pub fn fast_timing() -> Timing {
    Timing {
        rpc_timeout: Duration::from_secs(10),
        min_poll: Duration::from_millis(10),
        max_poll: Duration::from_millis(500),
        backoff_initial: Duration::from_millis(30),
        backoff_max: Duration::from_millis(300),
        model_refresh: Duration::from_millis(100),
    }
}

/// A participant builder with test defaults: fast timing, small data needs.
pub fn builder(
    endpoint: &str,
    tls: ClientTls,
    data: DataSource,
    policy: PrivacyPolicy,
    state: &Path,
    seed: u64,
) -> ParticipantBuilder {
    Participant::builder()
        .endpoint(endpoint)
        .tls(tls)
        .data(data)
        .data_options(DataOptions {
            min_examples: 10,
            rescan_interval: Duration::from_millis(200),
            ..DataOptions::default()
        })
        .policy(policy)
        .state_dir(state)
        .seed(seed)
        .timing(fast_timing())
        .release_public_key(release_key().public())
}

/// Waits for the first event matching `pred`.
pub async fn wait_for(
    rx: &mut broadcast::Receiver<Event>,
    what: &str,
    pred: impl Fn(&Event) -> bool,
) -> Event {
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, rx.recv()).await {
            Err(_) => panic!("timed out waiting for {what}"),
            Ok(Ok(e)) if pred(&e) => return e,
            Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
            Ok(Err(e)) => panic!("event channel closed while waiting for {what}: {e}"),
        }
    }
}

/// Records every event of a participant in the background.
#[derive(Clone)]
pub struct Recorder {
    events: Arc<std::sync::Mutex<Vec<Event>>>,
}

impl Recorder {
    pub fn start(mut rx: broadcast::Receiver<Event>) -> Self {
        let events = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = events.clone();
        tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(e) => sink.lock().unwrap().push(e),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        panic!("test recorder lagged by {n} events")
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Self { events }
    }

    pub fn events(&self) -> Vec<Event> {
        self.events.lock().unwrap().clone()
    }

    /// Waits until no event arrived for 100 ms (the recorder runs behind
    /// the participant), then returns them all.
    pub async fn settled(&self) -> Vec<Event> {
        loop {
            let before = self.events.lock().unwrap().len();
            tokio::time::sleep(Duration::from_millis(100)).await;
            if self.events.lock().unwrap().len() == before {
                return self.events();
            }
        }
    }

    pub fn count(&self, pred: impl Fn(&Event) -> bool) -> usize {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|e| pred(e))
            .count()
    }
}

pub fn state_dir(root: &Path, name: &str) -> PathBuf {
    root.join("state").join(name)
}

/// The privacy crate's view of a wire charge.
pub fn charge(c: &fedsec_proto::v1::RoundCharge) -> fedsec_privacy::RoundCharge {
    fedsec_privacy::RoundCharge {
        round: c.round,
        sampling_rate: c.sampling_rate,
        noise_multiplier: c.noise_multiplier,
        clip_norm: c.clip_norm,
        sensitivity: c.sensitivity,
        count_stddev: c.count_stddev,
        expected_cohort: c.expected_cohort,
        committed_unix_ms: c.committed_unix_ms,
    }
}

/// Checks a client's ledger against the coordinator's: every accepted
/// entry is either the committed attempt of its round (same attempt, q,
/// effective z, C and δ as the coordinator's ledger) or an attempt the
/// coordinator abandoned (nothing released; the tenant still counts it).
/// Returns the rounds whose committed attempt the client contributed to.
pub fn check_ledger_against(
    file: &fedsec_client::ledger::LedgerFile,
    coordinator: &[fedsec_proto::v1::LedgerEntry],
    attempts: &[fedsec_coordinator::store::AttemptRecord],
) -> Vec<u64> {
    use fedsec_coordinator::store::AttemptState;
    let mut rounds = Vec::new();
    for e in &file.entries {
        if e.status != fedsec_client::ledger::EntryStatus::Accepted {
            continue;
        }
        let c = coordinator
            .iter()
            .find(|c| c.charge.as_ref().is_some_and(|ch| ch.round == e.round))
            .unwrap_or_else(|| panic!("round {} is not in the coordinator's ledger", e.round));
        if c.attempt != e.attempt {
            let a = attempts
                .iter()
                .find(|a| a.job_id == e.job_id && a.round == e.round && a.attempt == e.attempt)
                .unwrap_or_else(|| panic!("round {} attempt {} unknown", e.round, e.attempt));
            assert_eq!(a.state, AttemptState::Abandoned, "{a:?}");
            continue;
        }
        let ch = charge(c.charge.as_ref().unwrap());
        assert_eq!(e.sampling_rate, ch.sampling_rate);
        assert_eq!(e.noise_multiplier, ch.mechanism().noise_multiplier);
        assert_eq!(e.clip_norm, ch.clip_norm);
        assert_eq!(e.delta, c.delta);
        assert_eq!(e.base_version + 1, c.model_version);
        rounds.push(e.round);
    }
    rounds
}
