//! Unit tests of the guard: both bases, the checks and the memoisation.

use super::*;
use crate::ledger::{EntryStatus, LedgerEntry};
use fedsec_detector::train::TrainConfig;
use fedsec_privacy::{PldAccountant, RdpAccountant};

fn planned(job: &str, round: u64, q: f64, z: f64) -> PlannedRound {
    PlannedRound {
        job_id: job.into(),
        round,
        attempt: 1,
        sampling_rate: q,
        noise_multiplier: z,
        clip_norm: 1.0,
        delta: 1e-5,
        noise_enabled: true,
    }
}

fn entry(p: &PlannedRound) -> LedgerEntry {
    LedgerEntry {
        job_id: p.job_id.clone(),
        round: p.round,
        attempt: p.attempt,
        base_version: p.round - 1,
        sampling_rate: p.sampling_rate,
        noise_multiplier: p.noise_multiplier,
        clip_norm: p.clip_norm,
        delta: p.delta,
        noise_enabled: p.noise_enabled,
        client_noise_stddev: 0.0,
        recorded_unix_ms: 0,
        nonce: "aa".into(),
        update_sha256: String::new(),
        status: EntryStatus::Accepted,
        detail: String::new(),
        epsilon_after: None,
        basis: "participation".into(),
    }
}

fn history(n: u64, q: f64, z: f64) -> Vec<HistoryRound> {
    (1..=n)
        .map(|round| HistoryRound {
            round,
            sampling_rate: q,
            noise_multiplier: z,
            committed_unix_ms: 0,
        })
        .collect()
}

fn pld(parts: &[(Mechanism, u64)], delta: f64) -> f64 {
    PldAccountant.epsilon(parts, delta).unwrap()
}

fn m(q: f64, z: f64) -> Mechanism {
    Mechanism {
        sampling_rate: q,
        noise_multiplier: z,
    }
}

#[test]
fn participation_counts_each_contribution_unamplified() {
    let policy = PrivacyPolicy::new(100.0, 1e-5);
    assert!(!policy.trust_coordinator_sampling, "the default");
    let mut ledger = LedgerFile::default();
    for r in 1..=3 {
        ledger.entries.push(entry(&planned("j", r, 0.1, 2.0)));
    }
    let p = planned("j", 4, 0.1, 2.0);
    let a = assess(&policy, &ledger, &p, Some(&history(3, 0.1, 2.0))).unwrap();
    assert_eq!(a.basis, Basis::Participation);
    assert_eq!(a.amplified_epsilon, None, "not without trust");
    // Four Gaussians at q = 1, whatever the task's q.
    assert_eq!(a.epsilon, pld(&[(m(1.0, 2.0), 4)], 1e-5));
    // The same (job, round, attempt) served again is a new step: it is
    // only trained and uploaded again under a new ledger entry.
    ledger.entries.push(entry(&p));
    let again = assess(&policy, &ledger, &p, None).unwrap();
    assert_eq!(again.epsilon, pld(&[(m(1.0, 2.0), 5)], 1e-5));
    assert!(again.epsilon > a.epsilon);
}

#[test]
fn every_upload_is_a_step_whatever_its_numbering() {
    // A coordinator that keeps round = 1 and bumps the attempt, with a
    // receipt that never grows: each task is one more step on both bases.
    let trusting = PrivacyPolicy {
        trust_coordinator_sampling: true,
        ..PrivacyPolicy::new(100.0, 1e-5)
    };
    let mut ledger = LedgerFile::default();
    let mut last = (0.0, 0.0);
    for k in 1..=6u32 {
        let p = PlannedRound {
            attempt: k,
            ..planned("j", 1, 0.01, 1.0)
        };
        let a = assess(&trusting, &ledger, &p, Some(&[])).unwrap();
        let n = u64::from(k);
        assert_eq!(a.participation_epsilon, pld(&[(m(1.0, 1.0), n)], 1e-5));
        // Amplified: the planned round plus one step per earlier upload
        // that no committed round accounts for.
        assert_eq!(a.amplified_epsilon, Some(pld(&[(m(0.01, 1.0), n)], 1e-5)));
        assert!(
            a.participation_epsilon > last.0 && a.amplified_epsilon.unwrap() > last.1,
            "{k} steps: {a:?}, {} step(s) before: {last:?}",
            k - 1
        );
        last = (a.participation_epsilon, a.amplified_epsilon.unwrap());
        ledger.entries.push(entry(&p));
    }
    // With an honest history, an upload per listed round is covered by
    // it, once: two uploads numbered round 2 cost one extra step.
    let mut ledger = LedgerFile::default();
    ledger.entries.push(entry(&planned("j", 2, 0.01, 1.0)));
    ledger.entries.push(entry(&PlannedRound {
        attempt: 2,
        ..planned("j", 2, 0.01, 1.0)
    }));
    let a = assess(
        &trusting,
        &ledger,
        &planned("j", 4, 0.01, 1.0),
        Some(&history(3, 0.01, 1.0)),
    )
    .unwrap();
    assert_eq!(a.amplified_epsilon, Some(pld(&[(m(0.01, 1.0), 5)], 1e-5)));
}

#[test]
fn a_failing_amplified_accountant_falls_back_to_participation() {
    let trusting = PrivacyPolicy {
        trust_coordinator_sampling: true,
        ..PrivacyPolicy::new(100.0, 1e-5)
    };
    let ledger = LedgerFile::default();
    let p = planned("j", 3, 0.5, 1.0);
    // A history round the accountant refuses (q = 0): no amplified
    // bound, but the task is still assessed, on the participation basis.
    let mut h = history(2, 0.5, 1.0);
    h[0].sampling_rate = 0.0;
    let a = decide(&trusting, &ledger, &p, Some(&h)).unwrap();
    assert_eq!(a.basis, Basis::Participation);
    assert_eq!(a.epsilon, pld(&[(m(1.0, 1.0), 1)], 1e-5));
    let why = a.amplified_unavailable.unwrap();
    assert!(why.contains("amplified accountant failed"), "{why}");
}

#[test]
fn training_floors_refuse_tasks_that_would_expose_a_few_sessions() {
    let policy = PrivacyPolicy::new(10.0, 1e-5);
    let task = |batch: u32, steps: u32, lr: f64| TrainConfig {
        epochs: 1,
        batch_size: batch,
        learning_rate: lr,
        max_steps: steps,
        ..TrainConfig::default()
    };
    // The attack of the issue: one session, one step.
    assert_eq!(
        check_training(&policy, task(1, 1, 0.1), 1000).unwrap_err(),
        SkipReason::BatchSizeBelowFloor {
            batch_size: 1,
            floor: 16
        }
    );
    // Big enough batches, but one step: 16 < 32 examples per update.
    assert_eq!(
        check_training(&policy, task(16, 1, 0.1), 1000).unwrap_err(),
        SkipReason::TooFewExamplesPerUpdate {
            examples: 16,
            floor: 32
        }
    );
    // Too little local data is the same refusal.
    assert!(matches!(
        check_training(&policy, task(16, 0, 0.1), 20),
        Err(SkipReason::TooFewExamplesPerUpdate { examples: 20, .. })
    ));
    // A sane task passes; its steps are capped at ⌊100 / lr⌋.
    let ok = check_training(&policy, task(32, 0, 0.5), 100_000).unwrap();
    assert_eq!(ok.max_steps, 200);
    let ok = check_training(&policy, task(32, 50, 0.5), 100_000).unwrap();
    assert_eq!(ok.max_steps, 50, "a tighter task cap stays");
    // A learning rate above the ceiling even for one step is refused.
    let strict = PrivacyPolicy {
        max_learning_rate_steps: 0.05,
        ..policy.clone()
    };
    assert_eq!(
        check_training(&strict, task(32, 0, 0.1), 1000).unwrap_err(),
        SkipReason::LearningRateAboveCeiling {
            learning_rate: 0.1,
            ceiling: 0.05
        }
    );
    // Capping steps can bring the examples below the floor.
    let tight = PrivacyPolicy {
        max_learning_rate_steps: 0.1,
        ..policy
    };
    assert_eq!(
        check_training(&tight, task(16, 0, 0.1), 1000).unwrap_err(),
        SkipReason::TooFewExamplesPerUpdate {
            examples: 16,
            floor: 32
        }
    );
}

#[test]
fn amplified_counts_every_round_of_the_job_and_beats_participation_for_small_q() {
    let policy = PrivacyPolicy {
        trust_coordinator_sampling: true,
        ..PrivacyPolicy::new(100.0, 1e-5)
    };
    let mut ledger = LedgerFile::default();
    ledger.entries.push(entry(&planned("j", 2, 0.05, 1.0)));
    ledger.entries.push(entry(&planned("j", 7, 0.05, 1.0)));
    // Another job, always on the participation basis.
    ledger.entries.push(entry(&planned("other", 1, 0.05, 3.0)));
    let p = planned("j", 10, 0.05, 1.0);
    let h = history(9, 0.05, 1.0);
    let a = assess(&policy, &ledger, &p, Some(&h)).unwrap();
    let amplified = pld(&[(m(1.0, 3.0), 1), (m(0.05, 1.0), 10)], 1e-5);
    let participation = pld(&[(m(1.0, 1.0), 3), (m(1.0, 3.0), 1)], 1e-5);
    assert_eq!(a.amplified_epsilon, Some(amplified));
    assert_eq!(a.participation_epsilon, participation);
    assert!(amplified < participation);
    assert_eq!((a.basis, a.epsilon), (Basis::Amplified, amplified));
    // Without trusting the coordinator's sampling, the participation basis.
    let no_amp = PrivacyPolicy {
        trust_coordinator_sampling: false,
        ..policy
    };
    let b = assess(&no_amp, &ledger, &p, Some(&h)).unwrap();
    assert_eq!((b.basis, b.epsilon), (Basis::Participation, participation));
}

#[test]
fn counting_only_joined_rounds_at_q_would_under_count() {
    // The invalid shortcut the module docs reject, next to the amplified
    // bound over all rounds: the shortcut is far smaller.
    let q = 0.05;
    let all_rounds = pld(&[(m(q, 1.0), 100)], 1e-5);
    let joined_only = pld(&[(m(q, 1.0), 5)], 1e-5);
    assert!(
        joined_only < 0.5 * all_rounds,
        "{joined_only} vs {all_rounds}"
    );
}

#[test]
fn a_history_that_disagrees_with_the_clients_tasks_loses_the_amplified_basis() {
    let policy = PrivacyPolicy {
        trust_coordinator_sampling: true,
        ..PrivacyPolicy::new(100.0, 1e-5)
    };
    let mut ledger = LedgerFile::default();
    ledger.entries.push(entry(&planned("j", 2, 0.05, 1.0)));
    let p = planned("j", 4, 0.05, 1.0);
    let mut h = history(3, 0.05, 1.0);
    h[1].noise_multiplier = 5.0; // the receipt claims more noise than the task said
    let a = assess(&policy, &ledger, &p, Some(&h)).unwrap();
    assert_eq!(a.basis, Basis::Participation);
    assert!(a.amplified_unavailable.unwrap().contains("round 2"));
    let short = history(2, 0.05, 1.0);
    let a = assess(&policy, &ledger, &p, Some(&short)).unwrap();
    assert!(a.amplified_unavailable.unwrap().contains("lists 2 rounds"));
}

#[test]
fn the_cap_skips_with_the_numbers() {
    let mut policy = PrivacyPolicy::new(5.0, 1e-5);
    policy.accountant = AccountantKind::Rdp;
    let mut ledger = LedgerFile::default();
    let mut r = 1;
    loop {
        let p = planned("j", r, 1.0, 2.0);
        match decide(&policy, &ledger, &p, None) {
            Ok(a) => {
                assert!(a.epsilon <= 5.0);
                ledger.entries.push(entry(&p));
                r += 1;
            }
            Err(SkipReason::EpsilonCap {
                epsilon_after, cap, ..
            }) => {
                assert!(epsilon_after > cap);
                let expect = RdpAccountant.epsilon(&[(m(1.0, 2.0), r)], 1e-5).unwrap();
                assert_eq!(epsilon_after, expect);
                break;
            }
            Err(other) => panic!("{other}"),
        }
    }
    assert!(r > 1, "at least one round fits under the cap");
}

#[test]
fn policy_floors_and_ceilings() {
    let mut policy = PrivacyPolicy::new(10.0, 1e-5);
    policy.min_noise_multiplier = 0.8;
    policy.max_clip_norm = Some(2.0);
    let ledger = LedgerFile::default();
    let low = planned("j", 1, 0.5, 0.7);
    assert_eq!(
        decide(&policy, &ledger, &low, None).unwrap_err(),
        SkipReason::NoiseMultiplierBelowFloor {
            noise_multiplier: 0.7,
            floor: 0.8
        }
    );
    let mut big_c = planned("j", 1, 0.5, 1.0);
    big_c.clip_norm = 3.0;
    assert!(matches!(
        decide(&policy, &ledger, &big_c, None),
        Err(SkipReason::ClipNormAboveCeiling { .. })
    ));
    let mut off = planned("j", 1, 0.5, 0.0);
    off.noise_enabled = false;
    assert_eq!(
        decide(&policy, &ledger, &off, None).unwrap_err(),
        SkipReason::NoiseDisabled
    );
    // Allowed by policy: the round makes ε unbounded, so a finite cap still refuses it…
    policy.refuse_noise_disabled = false;
    assert!(matches!(
        decide(&policy, &ledger, &off, None),
        Err(SkipReason::EpsilonCap { .. })
    ));
    // …and only an infinite cap lets it through.
    policy.max_epsilon = f64::INFINITY;
    let a = decide(&policy, &ledger, &off, None).unwrap();
    assert!(a.epsilon.is_infinite());
    let bad_q = planned("j", 1, 1.5, 1.0);
    assert!(matches!(
        decide(&policy, &ledger, &bad_q, None),
        Err(SkipReason::InvalidTask(_))
    ));
    for bad in [planned("j", 0, 0.5, 1.0), planned("../j", 1, 0.5, 1.0)] {
        assert!(matches!(
            decide(&policy, &ledger, &bad, None),
            Err(SkipReason::InvalidTask(_))
        ));
    }
}

#[test]
fn memoised_results_equal_fresh_ones_under_concurrency() {
    let parts = vec![(m(0.37, 1.3), 17), (m(1.0, 2.9), 2)];
    let fresh = PldAccountant.epsilon(&parts, 3e-6).unwrap();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let parts = parts.clone();
            std::thread::spawn(move || cached_epsilon(&PldAccountant, &parts, 3e-6).unwrap())
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), fresh);
    }
    // Another accountant or δ is another key.
    let rdp = cached_epsilon(&RdpAccountant, &parts, 3e-6).unwrap();
    assert_eq!(rdp, RdpAccountant.epsilon(&parts, 3e-6).unwrap());
    assert_ne!(rdp, fresh);
}

#[test]
fn spent_reports_both_bases_per_job() {
    let mut ledger = LedgerFile::default();
    ledger.entries.push(entry(&planned("a", 1, 0.5, 2.0)));
    ledger.entries.push(entry(&planned("a", 3, 0.5, 2.0)));
    ledger.entries.push(entry(&planned("b", 1, 0.5, 4.0)));
    ledger.jobs.insert(
        "a".into(),
        crate::ledger::JobHistory {
            version: 3,
            rounds: history(3, 0.5, 2.0),
        },
    );
    let s = spent(&ledger, 1e-5, AccountantKind::Pld).unwrap();
    assert_eq!(
        s.participation_epsilon,
        pld(&[(m(1.0, 2.0), 2), (m(1.0, 4.0), 1)], 1e-5)
    );
    assert_eq!(s.jobs.len(), 2);
    assert_eq!(s.jobs[0].contributions, 2);
    assert_eq!(
        s.jobs[0].amplified,
        Some((3, pld(&[(m(0.5, 2.0), 3)], 1e-5)))
    );
    assert_eq!(s.jobs[1].amplified, None);
}
