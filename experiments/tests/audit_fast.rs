//! The audit experiment in fast mode (what `experiments/scripts/audit.sh
//! fast` runs): a real embedded coordinator with canaries, four calibrated
//! noise levels and one run without noise. Every lower bound stays at or
//! below the accountant's ε, and without noise the audit finds a large ε.
#![allow(clippy::unwrap_used)]

use fedsec_experiments::figures::audit::{self, EPSILONS, Params};
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
    let o = audit::run(&setup).unwrap();
    assert_eq!(o.rows.len(), EPSILONS.len() + 1);
    for (r, target) in o.rows.iter().zip(EPSILONS) {
        assert!(
            (r.accountant_epsilon - target).abs() < 0.05 * target,
            "{r:?}"
        );
        assert!(r.epsilon_lower_bound <= r.accountant_epsilon, "{r:?}");
        assert_eq!(r.rounds, Params::of(Mode::Fast).rounds);
    }
    let open = o.rows.last().unwrap();
    assert_eq!(open.noise_multiplier, 0.0);
    assert!(open.epsilon_lower_bound >= 1.5, "{open:?}");
    // The checks the subcommand applies pass, and fail on a doctored row.
    assert!(audit::check(&o.rows, &o.params).is_empty());
    let mut bad = o.rows.clone();
    bad[0].epsilon_one_run_final = bad[0].accountant_epsilon + 0.1;
    assert_eq!(audit::check(&bad, &o.params).len(), 1);
    let mut powerless = o.rows.clone();
    let last = powerless.len() - 1;
    powerless[last].epsilon_one_shot_final = 1.0;
    powerless[last].epsilon_one_shot_all_iterates = 1.0;
    powerless[last].epsilon_lower_bound = 0.1;
    assert_eq!(audit::check(&powerless, &o.params).len(), 2);

    let bytes = std::fs::read(&o.png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    let csv = std::fs::read_to_string(&o.csv).unwrap();
    assert_eq!(csv.lines().count(), 1 + EPSILONS.len() + 1);
    let readme = std::fs::read_to_string(setup.readme()).unwrap();
    assert!(readme.contains("<!-- section:audit -->"));
    assert!(readme.contains("Checked: every lower bound"));
}
