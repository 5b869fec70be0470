//! The audit experiment in fast mode (what `experiments/scripts/audit.sh
//! fast` runs): a real embedded coordinator with canaries, four calibrated
//! noise levels and one run without noise, on one seed, plus the same
//! audit recomputed through the pooling path. Every lower bound stays at or
//! below the accountant's ε, and without noise the audit finds a large ε.
#![allow(clippy::unwrap_used)]

use fedsec_experiments::figures::audit::{self, EPSILONS, POOLED, Params};
use fedsec_experiments::figures::{Mode, Setup};

#[test]
fn audit_fast_mode_bounds_stay_below_the_accountant_and_no_noise_is_caught() {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup {
        mode: Mode::Fast,
        seed: 1,
        out: dir.path().to_owned(),
        threads: 2,
        quiet: true,
    };
    // Fast mode keeps CI's cost: one seed (full mode runs three).
    assert_eq!(audit::seeds(&setup), vec![1]);
    let o = audit::run(&setup).unwrap();
    let jobs = EPSILONS.len() + 1;
    assert_eq!(o.rows.len(), 2 * jobs);
    let (seed, pooled) = o.rows.split_at(jobs);
    for (r, target) in seed.iter().zip(EPSILONS) {
        assert_eq!(r.seed, "1");
        assert!(
            (r.accountant_epsilon - target).abs() < 0.05 * target,
            "{r:?}"
        );
        assert!(r.epsilon_lower_bound <= r.accountant_epsilon, "{r:?}");
        assert_eq!(r.rounds, Params::of(Mode::Fast).rounds);
    }
    let open = &seed[jobs - 1];
    assert_eq!(open.noise_multiplier, 0.0);
    assert!(open.epsilon_lower_bound >= 1.5, "{open:?}");
    // Pooling one seed recomputes exactly the coordinator's own audit from
    // its per-canary statistics.
    for (s, p) in seed.iter().zip(pooled) {
        assert_eq!(p.seed, POOLED);
        assert_eq!(
            audit::Row {
                seed: s.seed.clone(),
                seconds: s.seconds,
                ..p.clone()
            },
            *s
        );
    }
    // The checks the subcommand applies pass, and fail on a doctored row
    // (per seed or pooled).
    assert!(audit::check(&o.rows, &o.params).is_empty());
    let mut bad = o.rows.clone();
    bad[0].epsilon_one_run_final = bad[0].accountant_epsilon + 0.1;
    bad[jobs].epsilon_clopper_pearson_all_iterates = bad[jobs].accountant_epsilon + 0.1;
    assert_eq!(audit::check(&bad, &o.params).len(), 2);
    let mut powerless = o.rows.clone();
    let last = powerless.len() - 1;
    powerless[last].epsilon_one_shot_final = 1.0;
    powerless[last].epsilon_one_shot_all_iterates = 1.0;
    powerless[last].epsilon_lower_bound = 0.1;
    assert_eq!(audit::check(&powerless, &o.params).len(), 2);
    let mut missing = o.rows.clone();
    missing.remove(jobs - 1);
    assert_eq!(audit::check(&missing, &o.params).len(), 1);

    let bytes = std::fs::read(&o.png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    let csv = std::fs::read_to_string(&o.csv).unwrap();
    assert_eq!(csv.lines().count(), 1 + 2 * jobs);
    let readme = std::fs::read_to_string(setup.readme()).unwrap();
    assert!(readme.contains("<!-- section:audit -->"));
    assert!(readme.contains("Checked: every lower bound"));
    // Both tables' headers, pooled and per seed.
    for header in [
        "| target ε | z | accountant ε | ε̂ final | ε̂ all iterates | one-run final | one-run all iterates | CP final | CP all iterates | lower bound (95 %) |",
        "| target ε | z | accountant ε | ε̂ final | ε̂ all iterates | lower bound (95 %), seed ",
    ] {
        assert!(readme.contains(header), "{header} not in {readme}");
    }
}
