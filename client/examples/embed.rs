//! A tenant's web service embedding the fedsec participant.
//!
//! ```sh
//! cargo run -p fedsec-client --example embed
//! ```
//!
//! The host here is a shop's request pipeline. Next to its own work it runs
//! the participant on the same tokio runtime:
//!
//! 1. **Request handling** (the host's job): sessions arrive on a channel and
//!    each is answered with a bot probability from the *latest global model*
//!    (`ParticipantHandle::score_sessions`); before the first model arrives
//!    the handler lets traffic through.
//! 2. **Labelling**: when the shop later learns whether a session was a bot
//!    (chargebacks, challenge results, its fraud team), it hands the label to
//!    the participant (`add_labelled_sessions`); that is the only data the
//!    participant trains on (`DataSource::Host`), with a local holdout kept
//!    aside. Nothing but clipped, noised-on-the-server updates leaves.
//! 3. **Events**: a task logs what the participant does (selected, trained
//!    with its local and holdout loss, recorded in the tenant's ledger,
//!    submitted, skipped by policy, new model).
//! 4. **Explanations**: at the end, the most bot-like sessions are explained
//!    in plain words against this tenant's typical humans (`explain_sessions`).
//!
//! So that the example runs on its own, it first starts what normally lives
//! elsewhere: a coordinator on a loopback port (development PKI, fast
//! simulation noise — never in production) with a 4-round job, and two other
//! tenants' participants reading their log files.

#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::time::Duration;

use fedsec_client::{
    DataOptions, DataSource, Event, LabelledLog, Participant, ParticipantHandle, PrivacyPolicy,
    Timing,
};
use fedsec_coordinator::config::DangerousConfig;
use fedsec_coordinator::{Coordinator, CoordinatorConfig, JobSpec};
use fedsec_detector::features::NUM_FEATURES;
use fedsec_detector::logs::{LogReader, ReaderConfig};
use fedsec_detector::session::{Session, Sessionizer, sessionize};
use fedsec_detector::synth::{SynthConfig, generate_tenant, read_labels};
use fedsec_model::ModelSpec;
use fedsec_privacy::NoiseKind;
use fedsec_proto::devca::LoopbackPki;
use tokio::sync::mpsc;

const JOB: &str = "bots-v1";

/// The host's request handler: answer every session with a decision.
async fn handle_requests(
    participant: ParticipantHandle,
    mut requests: mpsc::Receiver<(Session, Option<bool>)>,
) {
    let (mut allowed, mut challenged, mut unscored) = (0u32, 0u32, 0u32);
    while let Some((session, label)) = requests.recv().await {
        // The host's own work: decide on the request with the latest model.
        match participant.score_sessions(std::slice::from_ref(&session)) {
            Ok(p) if p[0] >= 0.5 => challenged += 1,
            Ok(_) => allowed += 1,
            Err(_) => unscored += 1, // no global model yet: let it through
        }
        // Later, the shop learns the truth about some sessions and hands
        // them to the participant as local training data.
        if let Some(is_bot) = label {
            participant.add_labelled_sessions([(&session, is_bot)]);
        }
    }
    println!(
        "[host] handled {} sessions: {allowed} allowed, {challenged} challenged, {unscored} before any model",
        allowed + challenged + unscored
    );
}

/// Logs the participant's events.
async fn log_events(mut events: tokio::sync::broadcast::Receiver<Event>) {
    while let Ok(e) = events.recv().await {
        match e {
            Event::TaskReceived {
                task,
                sampling_rate,
                noise_multiplier,
                ..
            } => println!(
                "[fedsec] selected for {task} (q = {sampling_rate}, z = {noise_multiplier})"
            ),
            Event::Trained { task, report } => {
                let holdout = report
                    .holdout
                    .map(|h| {
                        format!(
                            ", holdout loss {:.3} → {:.3} on {} sessions",
                            h.loss_global, h.loss_local, h.examples
                        )
                    })
                    .unwrap_or_default();
                println!(
                    "[fedsec] trained {task} on {} sessions: loss {:.3} → {:.3}{holdout}",
                    report.examples, report.loss_before, report.loss_after
                );
            }
            Event::Recorded { task, epsilon, .. } => {
                println!("[fedsec] {task} recorded in the tenant ledger: ε would be {epsilon:.3}")
            }
            Event::Submitted { task, .. } => println!("[fedsec] {task} update accepted"),
            Event::Skipped { task, reason } => println!("[fedsec] {task} skipped: {reason}"),
            Event::ModelUpdated {
                version, epsilon, ..
            } => println!(
                "[fedsec] new global model v{version} (ε = {})",
                epsilon.map_or("-".into(), |e| format!("{e:.3}"))
            ),
            Event::JobFinished { job_id, state, .. } => {
                println!("[fedsec] job {job_id} finished: {state}")
            }
            _ => {}
        }
    }
}

/// Sessions of a generated tenant's log, with their labels.
fn sessions_of(log: &[u8], labels: &[u8]) -> Vec<(Session, Option<bool>)> {
    let labels = read_labels(labels).unwrap();
    let mut out = Vec::new();
    let mut reader = LogReader::new(log, ReaderConfig::default());
    sessionize(
        &mut reader,
        &mut Sessionizer::default(),
        |s| {
            let label = labels.get(&s.key.to_string()).map(|l| l.is_bot);
            out.push((s, label));
        },
        |_| {},
    )
    .unwrap();
    out
}

fn fast_timing() -> Timing {
    Timing {
        model_refresh: Duration::from_millis(200),
        backoff_initial: Duration::from_millis(50),
        backoff_max: Duration::from_millis(500),
        ..Timing::default()
    }
}

#[tokio::main]
async fn main() {
    let work = tempfile::tempdir().unwrap();

    // --- What normally runs elsewhere: the platform's coordinator. ---------
    let pki = LoopbackPki::generate("example CA").unwrap();
    let mut config = CoordinatorConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: work.path().join("coordinator"),
        poll_interval_ms: 50,
        dangerous: Some(DangerousConfig {
            allow_simulation_noise: true,
            allow_disabled_noise: false,
        }),
        ..Default::default()
    };
    config.metrics.enabled = false;
    let coordinator = Coordinator::start_with_tls(config, pki.server_tls().clone())
        .await
        .unwrap();
    let endpoint = coordinator.endpoint();
    // Shipped to tenants with the CA bundle in a real deployment.
    let release_key = coordinator.release_public_key();
    let identity = |tenant: &str, client: &str| pki.client_tls(tenant, client).unwrap();

    // --- Synthetic traffic: tenant 0 is our shop, 1 and 2 are others. ------
    let synth = SynthConfig {
        tenants: 3,
        seed: 7,
        days: 1,
        median_sessions: 400.0,
        min_sessions: 300,
        max_sessions: 600,
        ..SynthConfig::default()
    };
    let tenants: Vec<_> = (0..3)
        .map(|i| generate_tenant(&synth, i).unwrap())
        .collect();
    let mut others = Vec::new();
    for (i, t) in tenants.iter().enumerate().skip(1) {
        let files = LabelledLog {
            log: work.path().join(format!("tenant-{i}.log")),
            labels: Some(work.path().join(format!("tenant-{i}.labels.jsonl"))),
        };
        std::fs::write(&files.log, &t.log).unwrap();
        if let Some(labels) = &files.labels {
            std::fs::write(labels, &t.labels).unwrap();
        }
        let p = Participant::builder()
            .endpoint(&endpoint)
            .release_public_key(release_key.clone())
            .tls(identity(&format!("tenant-{i}"), &format!("client-{i}")))
            .data(DataSource::Files(vec![files]))
            .policy(PrivacyPolicy::new(20.0, 1e-5))
            .state_dir(work.path().join(format!("state-{i}")))
            .job(JOB)
            .timing(fast_timing())
            .build()
            .unwrap();
        others.push(tokio::spawn(p.run(std::future::pending())));
    }

    // --- The host: our shop's service. --------------------------------------
    // Build the participant (no connection yet), keep its handle, spawn it.
    let participant = Participant::builder()
        .endpoint(&endpoint)
        .release_public_key(release_key.clone())
        .tls(identity("shop", "shop-eu-1"))
        .data(DataSource::Host)
        .data_options(DataOptions {
            min_examples: 50,
            ..DataOptions::default()
        })
        // The shop's own rules: at most ε = 20 at δ = 1e-5 over everything it
        // ever contributes, and no job with less noise than z = 0.8.
        .policy(PrivacyPolicy {
            min_noise_multiplier: 0.8,
            ..PrivacyPolicy::new(20.0, 1e-5)
        })
        .state_dir(work.path().join("state-shop"))
        .job(JOB)
        .timing(fast_timing())
        .build()
        .unwrap();
    let handle = participant.handle();
    let events = tokio::spawn(log_events(participant.subscribe()));
    // `run` ends on the host's shutdown (here Ctrl-C) or when the job ends.
    let fedsec = tokio::spawn(participant.run(async {
        let _ = tokio::signal::ctrl_c().await;
    }));

    // The platform team opens the job once the three tenants are registered.
    let admin = coordinator.admin();
    while admin.clients().await.unwrap().len() < 3 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Sized for the three tenants (the privacy unit), each in every round.
    let mut job = JobSpec::new(JOB, ModelSpec::mlp(NUM_FEATURES as u32, [16]), 1.0, 3);
    job.rounds = 4;
    job.min_clients = 2;
    job.round_deadline_ms = 5_000;
    job.noise_multiplier = Some(1.0);
    job.noise_source = NoiseKind::Simulation; // simulation only
    job.training.local_epochs = 2;
    job.training.learning_rate = 0.1;
    job.fill_defaults();
    admin.create_job(job).await.unwrap();

    // Yesterday's sessions, labelled since, are the shop's starting data;
    // today's traffic flows through the host's handler while training goes on.
    let mut traffic = sessions_of(&tenants[0].log, &tenants[0].labels);
    let today = traffic.split_off(traffic.len() / 2);
    let history = traffic;
    let kept = handle.add_labelled_sessions(
        history
            .iter()
            .filter_map(|(s, label)| label.map(|bot| (s, bot))),
    );
    println!("[host] handed {kept} labelled sessions from yesterday to the participant");
    let traffic = today;
    let (tx, rx) = mpsc::channel(64);
    let handler = tokio::spawn(handle_requests(handle.clone(), rx));
    for request in traffic.iter().cloned() {
        tx.send(request).await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await; // requests trickle in
    }
    drop(tx);
    handler.await.unwrap();

    // The participants are bound to the job: they return when it finishes.
    println!(
        "[host] participant ended: {:?}",
        fedsec.await.unwrap().unwrap()
    );
    for o in others {
        o.await.unwrap().unwrap();
    }

    // The final global model: score today's traffic, explain the worst.
    let model = handle.model().unwrap();
    println!(
        "[host] global model v{} of {} (ε = {:.3} at δ = 1e-5)",
        model.version,
        model.spec,
        model.epsilon.unwrap_or(f64::NAN)
    );
    let sessions: Vec<Session> = traffic.into_iter().map(|(s, _)| s).collect();
    // Reasons compare with this tenant's typical humans: the sessions of
    // today's traffic the model scores as human (as `fedsec-client score`).
    let ex = handle.explain_sessions(&sessions, 3).unwrap();
    println!("[host] {}", ex.baseline.notice());
    let mut order: Vec<usize> = (0..sessions.len()).collect();
    order.sort_by(|&a, &b| ex.sessions[b].logit.total_cmp(&ex.sessions[a].logit));
    for &i in order.iter().take(3) {
        let (s, e) = (&sessions[i], &ex.sessions[i]);
        println!(
            "  {} {:>4} requests  logit {:.2}  p(bot) = {:.2}",
            s.ip,
            s.requests.len(),
            e.logit,
            e.probability
        );
        for r in &e.reasons {
            println!("      - {}", r.text);
        }
    }
    let (train, holdout) = handle.data_counts();
    println!("[host] local data: {train} training and {holdout} holdout sessions (never sent)");
    coordinator.shutdown().await.unwrap();
    events.abort();
}
