//! The simulator's round logic: reproducible whatever the thread count,
//! server-side clipping bounds what any tenant can do to the model, the
//! denominator is the expected cohort, and ε follows the accountant.
#![allow(clippy::unwrap_used)]

use fedsec_detector::synth::SynthConfig;
use fedsec_experiments::attack::{Adversary, Attack};
use fedsec_experiments::data::Population;
use fedsec_experiments::figures::{self, Mode, Setup};
use fedsec_experiments::sim::{self, FedConfig, Noise};

fn population() -> Population {
    let cfg = SynthConfig {
        tenants: 8,
        seed: 3,
        median_sessions: 50.0,
        min_sessions: 30,
        max_sessions: 80,
        days: 1,
        ..SynthConfig::default()
    };
    Population::generate(&cfg, 0.3, 2, &|_| {}).unwrap()
}

fn config(noise: Noise, threads: usize) -> FedConfig {
    let setup = Setup {
        mode: Mode::Fast,
        seed: 5,
        out: std::env::temp_dir(),
        threads,
        quiet: true,
    };
    FedConfig {
        rounds: 3,
        eval_every: 1,
        screen: None,
        server_momentum: 0.0,
        ..setup.fed_config(8, noise)
    }
}

fn norm(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| f64::from(x - y).powi(2))
        .sum::<f64>()
        .sqrt()
}

#[test]
fn runs_are_reproducible_and_thread_count_independent() {
    let pop = population();
    let h = pop.pooled_holdout();
    let a = sim::run(
        &pop,
        &h,
        &config(Noise::Multiplier(1.0), 1),
        None,
        &mut |_| {},
    )
    .unwrap();
    let b = sim::run(
        &pop,
        &h,
        &config(Noise::Multiplier(1.0), 3),
        None,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(a, b);
    assert_eq!(a.records.len(), 3);
    assert!(a.records.iter().all(|r| r.auc.is_some()));
    // ε after each round is the accountant's.
    for r in &a.records {
        let e = sim::epsilon_after(a.sampling_rate, 1.0, r.round, figures::DELTA).unwrap();
        assert_eq!(r.epsilon, e);
    }
    let c = sim::run(
        &pop,
        &h,
        &config(Noise::Multiplier(2.0), 1),
        None,
        &mut |_| {},
    )
    .unwrap();
    assert_ne!(a.weights, c.weights, "the noise enters the model");
}

#[test]
fn server_clipping_bounds_a_boosted_attacker_and_the_denominator_is_fixed() {
    let pop = population();
    let h = pop.pooled_holdout();
    let adversary = Adversary {
        malicious: (0..8).collect(),
        attack: Attack::ScaledSignFlip { factor: 1e4 },
    };
    // One round, no noise, plain FedAvg: the step is Σ clipped / m.
    let cfg = FedConfig {
        rounds: 1,
        ..config(Noise::Off, 2)
    };
    let w0 = cfg.model.init_weights(cfg.init_seed);
    let clipped = sim::run(&pop, &h, &cfg, Some(&adversary), &mut |_| {}).unwrap();
    let r = &clipped.records[0];
    assert_eq!(r.malicious, r.participants);
    assert_eq!(
        r.server_clipped, r.participants,
        "every boosted update is re-clipped"
    );
    let step = norm(&clipped.weights, &w0);
    let bound = r.participants as f64 * cfg.clip_norm / cfg.expected_cohort;
    assert!(step <= bound * (1.0 + 1e-5), "{step} > {bound}");
    // Sign-flipped updates of one round all point the same way: the step is
    // close to the bound, so the denominator really is m, not the count.
    assert!(step > 0.5 * bound, "{step} vs {bound}");

    let unclipped = sim::run(
        &pop,
        &h,
        &FedConfig {
            server_clipping: false,
            ..cfg.clone()
        },
        Some(&adversary),
        &mut |_| {},
    )
    .unwrap();
    assert!(norm(&unclipped.weights, &w0) > 100.0 * bound);
}

#[test]
fn target_epsilon_is_met_exactly_at_the_last_round() {
    let pop = population();
    let h = pop.pooled_holdout();
    let run = sim::run(
        &pop,
        &h,
        &config(Noise::TargetEpsilon(3.0), 2),
        None,
        &mut |_| {},
    )
    .unwrap();
    let last = run.final_epsilon();
    assert!(last <= 3.0 && last > 2.99, "{last}");
    let eps: Vec<f64> = run.records.iter().map(|r| r.epsilon).collect();
    assert!(eps.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn tenants_whose_training_diverges_on_a_wrecked_model_report_nothing() {
    let pop = population();
    let h = pop.pooled_holdout();
    // Without server clipping one hugely boosted attacker wrecks the model in
    // its first round; afterwards honest training diverges, and those
    // tenants drop out of the round instead of failing the whole job.
    let adversary = Adversary {
        malicious: (0..8).collect(),
        attack: Attack::ScaledSignFlip { factor: 1e30 },
    };
    let cfg = FedConfig {
        rounds: 3,
        server_clipping: false,
        ..config(Noise::Off, 2)
    };
    let run = sim::run(&pop, &h, &cfg, Some(&adversary), &mut |_| {}).unwrap();
    assert_eq!(run.records.len(), 3);
    assert_eq!(run.records[0].diverged, 0);
    let later = &run.records[2];
    assert!(later.diverged > 0, "{later:?}");
    assert!(run.weights.iter().all(|w| w.is_finite()));
}

#[test]
fn the_screen_excludes_boosted_attackers_and_leaves_honest_rounds_alone() {
    use fedsec_round::{ScreenConfig, ScreenPolicy};
    let pop = population();
    let h = pop.pooled_holdout();
    let screened = |policy| FedConfig {
        rounds: 3,
        screen: Some(ScreenConfig {
            policy,
            ..ScreenConfig::default()
        }),
        ..config(Noise::Off, 2)
    };
    let plain = FedConfig {
        rounds: 3,
        ..config(Noise::Off, 2)
    };
    // No attacker: honest clients clip to C themselves, nothing is flagged,
    // and the model is bit for bit the one without a screen.
    let off = sim::run(&pop, &h, &plain, None, &mut |_| {}).unwrap();
    let on = sim::run(
        &pop,
        &h,
        &screened(ScreenPolicy::Exclude),
        None,
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(on.weights, off.weights);
    assert!(on.records.iter().all(|r| r.flagged == 0 && r.excluded == 0));
    assert!(!on.screen_samples.is_empty());
    assert!(on.screen_samples.iter().all(|s| s.norm_ratio <= 1.0 + 1e-6));
    // Boosted attackers: every one of their updates is flagged and left out,
    // nobody else's is; the round keeps the honest reports.
    let adversary = Adversary {
        malicious: (0..4).collect(),
        attack: Attack::Backdoor { boost: 8.0 },
    };
    let run = sim::run(
        &pop,
        &h,
        &screened(ScreenPolicy::Exclude),
        Some(&adversary),
        &mut |_| {},
    )
    .unwrap();
    let selected_malicious = run.screen_samples.iter().filter(|s| s.malicious).count();
    assert!(selected_malicious > 0);
    for r in &run.records {
        assert_eq!(r.malicious, 0, "round {}: an attacker got in", r.round);
        assert_eq!(r.flagged, r.flagged_malicious);
        assert_eq!(r.excluded, r.flagged);
    }
    let excluded: usize = run.records.iter().map(|r| r.excluded).sum();
    assert_eq!(excluded, selected_malicious);
    // Policy log: flagged, but in the sum.
    let logged = sim::run(
        &pop,
        &h,
        &screened(ScreenPolicy::Log),
        Some(&adversary),
        &mut |_| {},
    )
    .unwrap();
    assert!(logged.records.iter().all(|r| r.excluded == 0));
    assert_eq!(
        logged.records.iter().map(|r| r.flagged).sum::<usize>(),
        selected_malicious
    );
    assert!(logged.records.iter().any(|r| r.malicious > 0));
}
