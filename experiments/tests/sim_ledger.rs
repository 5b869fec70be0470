//! The simulator and the coordinator drive the same round core: for the same
//! seeded job they write the same ledger — every round's charge (q, z, C,
//! sensitivity with its rounding bound, count noise, expected cohort) and ε
//! after it (PLD and RDP), bit for bit.
//!
//! The coordinator side is real: a coordinator on loopback with mutual TLS,
//! `limits.max_tenants` = 8 (the public bound the sum's rounding is sized
//! for; the simulator sizes it for its population of 8), eight tenants
//! registered over gRPC, a job calibrated to a target ε, run to completion. Nobody uploads: every round is released
//! whatever its realised cohort, so the ledger does not depend on reports.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use fedsec_coordinator::config::DangerousConfig;
use fedsec_coordinator::{Coordinator, CoordinatorConfig, JobSpec};
use fedsec_detector::synth::SynthConfig;
use fedsec_experiments::data::Population;
use fedsec_experiments::figures::{Mode, Setup};
use fedsec_experiments::sim::{self, FedConfig, LedgerEntry, Noise};
use fedsec_privacy::NoiseKind;
use fedsec_proto::devca::LoopbackPki;
use fedsec_proto::v1;
use fedsec_proto::v1::coordinator_client::CoordinatorClient;

const TENANTS: usize = 8;

fn population() -> Population {
    let cfg = SynthConfig {
        tenants: TENANTS,
        seed: 11,
        median_sessions: 40.0,
        min_sessions: 30,
        max_sessions: 60,
        days: 1,
        ..SynthConfig::default()
    };
    Population::generate(&cfg, 0.3, 2, &|_| {}).unwrap()
}

/// The seeded job: 3 rounds, expected cohort 4 of 8 (q = 0.5 exactly),
/// z calibrated for ε = 4 at the figures' δ.
fn fed_config() -> FedConfig {
    let setup = Setup {
        mode: Mode::Fast,
        seed: 17,
        out: std::env::temp_dir(),
        threads: 2,
        quiet: true,
    };
    FedConfig {
        rounds: 3,
        expected_cohort: 4.0,
        eval_every: 0,
        screen: None,
        ..setup.fed_config(TENANTS, Noise::TargetEpsilon(4.0))
    }
}

/// The same job as the coordinator's definition.
fn job_spec(cfg: &FedConfig) -> JobSpec {
    let q = cfg.expected_cohort / TENANTS as f64;
    let mut j = JobSpec::new("same-ledger", cfg.model.clone(), q, TENANTS as u64);
    j.rounds = cfg.rounds;
    j.min_clients = 1;
    j.delta = cfg.delta;
    j.target_epsilon = match cfg.noise {
        Noise::TargetEpsilon(eps) => Some(eps),
        _ => unreachable!("the job is calibrated"),
    };
    j.clipping.clip_norm = cfg.clip_norm;
    // The simulator's noise source (both add no grid inflation).
    j.noise_source = NoiseKind::Simulation;
    j.round_deadline_ms = 50;
    j.fill_defaults();
    j
}

async fn coordinator_ledger(spec: JobSpec) -> Vec<v1::LedgerEntry> {
    let pki = LoopbackPki::generate("sim-ledger CA").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = CoordinatorConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().to_owned(),
        admins: vec!["admin".into()],
        poll_interval_ms: 20,
        dangerous: Some(DangerousConfig {
            allow_simulation_noise: true,
            allow_disabled_noise: false,
        }),
        ..Default::default()
    };
    let mut config = config;
    config.metrics.enabled = false;
    config.limits.max_tenants = TENANTS as u64;
    let running = Coordinator::start_with_tls(config, pki.server_tls().clone())
        .await
        .unwrap();
    let endpoint = running.endpoint();
    for i in 0..TENANTS {
        let channel = pki
            .client_tls(&format!("tenant-{i}"), &format!("client-{i}"))
            .unwrap()
            .channel(&endpoint)
            .unwrap();
        CoordinatorClient::new(channel)
            .register(v1::RegisterRequest {
                software: "sim-ledger test".into(),
            })
            .await
            .unwrap();
    }
    let admin = running.admin();
    let id = spec.id.clone();
    admin.create_job(spec).await.unwrap();
    let job = admin
        .wait_for_job(&id, Duration::from_secs(60), |j| {
            j.state != v1::JobState::Running as i32
        })
        .await
        .unwrap();
    assert_eq!(job.state, v1::JobState::Completed as i32, "{job:?}");
    let ledger = admin.ledger(&id).await.unwrap();
    running.shutdown().await.unwrap();
    ledger
}

fn same(sim: &LedgerEntry, coord: &v1::LedgerEntry) -> Result<(), String> {
    let c = coord
        .charge
        .as_ref()
        .ok_or("a round entry without a charge")?;
    let s = &sim.charge;
    let pairs = [
        ("sampling_rate", s.sampling_rate, c.sampling_rate),
        ("noise_multiplier", s.noise_multiplier, c.noise_multiplier),
        ("clip_norm", s.clip_norm, c.clip_norm),
        ("sensitivity", s.sensitivity, c.sensitivity),
        ("count_stddev", s.count_stddev, c.count_stddev),
        ("expected_cohort", s.expected_cohort, c.expected_cohort),
        ("epsilon_pld", sim.epsilon_pld, coord.epsilon_pld),
        ("epsilon_rdp", sim.epsilon_rdp, coord.epsilon_rdp),
    ];
    if s.round != c.round {
        return Err(format!("round {} vs {}", s.round, c.round));
    }
    for (name, a, b) in pairs {
        if a.to_bits() != b.to_bits() {
            return Err(format!(
                "round {}: {name} {a:e} (simulator) vs {b:e} (coordinator)",
                s.round
            ));
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulator_and_coordinator_write_the_same_ledger() {
    let cfg = fed_config();
    let pop = population();
    let holdout = pop.pooled_holdout();
    let run = sim::run(&pop, &holdout, &cfg, None, &mut |_| {}).unwrap();
    assert_eq!(run.ledger.len(), 3);
    // Not a vacuous comparison: the rounding bound is in the sensitivity,
    // ε grows, and the calibrated z spends (almost) all of ε = 4.
    let last = run.ledger.last().unwrap();
    assert!(
        run.ledger
            .iter()
            .all(|e| e.charge.sensitivity > cfg.clip_norm)
    );
    assert!(
        run.ledger
            .windows(2)
            .all(|w| w[0].epsilon_pld < w[1].epsilon_pld)
    );
    assert!(
        last.epsilon_pld <= 4.0 && last.epsilon_pld > 3.9,
        "{last:?}"
    );

    let ledger = coordinator_ledger(job_spec(&cfg)).await;
    let rounds: Vec<&v1::LedgerEntry> = ledger
        .iter()
        .filter(|e| e.kind == v1::LedgerEntryKind::Round as i32)
        .collect();
    assert_eq!(rounds.len(), run.ledger.len(), "{ledger:?}");
    for (s, c) in run.ledger.iter().zip(rounds) {
        if let Err(e) = same(s, c) {
            panic!("the ledgers differ: {e}");
        }
    }
}
