//! Privacy receipts across modules: computed from a ledger history with fixed
//! and adaptive clipping, serialised, verified, and rejected when tampered.
#![allow(clippy::unwrap_used)]

use fedsec_privacy::accounting::{Accountant, PldAccountant, RdpAccountant};
use fedsec_privacy::adaptive::update_noise_multiplier;
use fedsec_privacy::noise::{GaussianNoise, OpenDpGaussian};
use fedsec_privacy::receipt::{EmpiricalAudit, PrivacyReceipt, ReceiptError, RoundCharge, compose};

fn history() -> Vec<RoundCharge> {
    let inflation = OpenDpGaussian::new().sensitivity_inflation(100_000);
    let mut rounds = Vec::new();
    // 200 fixed-clipping rounds, then 100 adaptive rounds keeping total z = 1.1
    // with σ_b = 10, and a changed cohort.
    for r in 1..=300u64 {
        let adaptive = r > 200;
        let (z, sb) = if adaptive {
            (update_noise_multiplier(1.1, 10.0).unwrap(), 10.0)
        } else {
            (1.1, 0.0)
        };
        let q = if r > 250 { 0.02 } else { 0.01 };
        let clip = 0.5;
        rounds.push(RoundCharge {
            round: r,
            sampling_rate: q,
            noise_multiplier: z,
            clip_norm: clip,
            sensitivity: clip + inflation,
            count_stddev: sb,
            expected_cohort: q * 10_000.0,
            committed_unix_ms: 1_700_000_000_000 + r as i64 * 60_000,
        });
    }
    rounds
}

#[test]
fn receipt_states_both_accountants_on_the_composed_history() {
    let h = history();
    let c = compose(&h);
    // Rounds group by (q, effective z): the adaptive rounds keep the total z at 1.1
    // (bit-equal or not, depending on rounding), q = 0.02 is separate.
    assert!(c.len() == 2 || c.len() == 3, "{c:?}");
    assert_eq!(c.iter().map(|(_, n)| n).sum::<u64>(), 300);
    for (m, _) in &c {
        assert!((m.noise_multiplier - 1.1).abs() < 1e-12, "{m:?}");
    }
    assert_eq!(
        c.last().map(|(m, n)| (m.sampling_rate, *n)),
        Some((0.02, 50))
    );
    let r = PrivacyReceipt::compute(h.clone(), 1e-6).unwrap();
    assert_eq!(r.epsilon_pld, PldAccountant.epsilon(&c, 1e-6).unwrap());
    assert_eq!(r.epsilon_rdp, RdpAccountant.epsilon(&c, 1e-6).unwrap());
    assert!(r.epsilon_pld < r.epsilon_rdp);
    assert_eq!(
        r.accountant_versions,
        vec![PldAccountant.version(), RdpAccountant.version()]
    );
    assert!(r.empirical_audit.is_none());
    r.verify().unwrap();
}

#[test]
fn receipts_survive_json_and_keep_verifying() {
    let mut r = PrivacyReceipt::compute(history(), 1e-6).unwrap();
    r.empirical_audit = Some(EmpiricalAudit {
        canaries: 64,
        epsilon_one_shot_final: 0.4,
        epsilon_one_shot_all_iterates: 0.9,
        epsilon_lower_bound: 0.1,
        confidence: 0.95,
        ..EmpiricalAudit::default()
    });
    let json = serde_json::to_string(&r).unwrap();
    for key in [
        "mechanism",
        "neighbouring",
        "delta",
        "epsilon_pld",
        "epsilon_rdp",
        "rounds",
        "accountant_versions",
        "empirical_audit",
    ] {
        assert!(json.contains(&format!("\"{key}\"")), "{key}");
    }
    let back: PrivacyReceipt = serde_json::from_str(&json).unwrap();
    assert_eq!(back, r);
    back.verify().unwrap();
}

#[test]
fn tampered_receipts_fail_verification() {
    let r = PrivacyReceipt::compute(history(), 1e-6).unwrap();

    let mut low = r.clone();
    low.epsilon_pld *= 0.99;
    assert!(matches!(
        low.verify(),
        Err(ReceiptError::EpsilonUnderstated {
            accountant: "pld",
            ..
        })
    ));

    let mut low = r.clone();
    low.epsilon_rdp = 0.0;
    assert!(matches!(
        low.verify(),
        Err(ReceiptError::EpsilonUnderstated {
            accountant: "rdp",
            ..
        })
    ));

    // More noise claimed than used: the recomputed ε drops, the stated one is now
    // too *high*, which is still a true statement; less noise claimed → fails.
    let mut less_noise = r.clone();
    less_noise.rounds[10].noise_multiplier *= 0.5;
    assert!(matches!(
        less_noise.verify(),
        Err(ReceiptError::EpsilonUnderstated { .. })
    ));

    let mut dropped = r.clone();
    dropped.rounds.remove(5);
    assert!(matches!(
        dropped.verify(),
        Err(ReceiptError::RoundsOutOfOrder {
            position: 5,
            round: 7
        })
    ));

    let mut bad = r.clone();
    bad.rounds[3].sensitivity = bad.rounds[3].clip_norm * 0.5;
    assert!(matches!(
        bad.verify(),
        Err(ReceiptError::InvalidCharge {
            field: "sensitivity",
            ..
        })
    ));

    let mut other = r.clone();
    other.neighbouring = "replace one".into();
    assert!(matches!(
        other.verify(),
        Err(ReceiptError::UnknownStatement { .. })
    ));

    let mut bad_delta = r;
    bad_delta.delta = 0.0;
    assert!(matches!(
        bad_delta.verify(),
        Err(ReceiptError::Accounting(_))
    ));
}

#[test]
fn empty_history_costs_nothing() {
    let r = PrivacyReceipt::compute(Vec::new(), 1e-6).unwrap();
    assert_eq!((r.epsilon_pld, r.epsilon_rdp), (0.0, 0.0));
    r.verify().unwrap();
}
