//! Unit tests of the demo's settings.

use std::path::PathBuf;

use fedsec_client::PrivacyPolicy;

use super::config::DEMO_MIN_EXAMPLES;
use super::*;

/// A tenant takes part only if its own guard would let it serve the
/// demo's tasks: below the examples-per-update floor it would skip
/// every task (and, selected, hold the round open until its deadline:
/// the first full demo run after issue 13 lost 9 × 120 s that way).
#[test]
fn tenants_below_their_own_floor_sit_out() {
    let cfg = DemoConfig::standard(PathBuf::from("unused"));
    let floor = PrivacyPolicy::new(1.0, cfg.delta).min_examples_per_update;
    assert!(floor > DEMO_MIN_EXAMPLES, "the case the check exists for");
    assert!(!cfg.serves(floor - 1));
    assert!(cfg.serves(floor));
    assert!(!cfg.serves(0));
    for n in [DEMO_MIN_EXAMPLES, floor - 1, floor, 1000] {
        let guard = fedsec_client::guard::check_training(
            &PrivacyPolicy::new(1.0, cfg.delta),
            figures::round_training(),
            n,
        );
        assert_eq!(cfg.serves(n), guard.is_ok(), "{n} examples");
    }
}

/// The job is sized for the tenants that take part.
#[test]
fn the_job_population_is_the_participating_tenants() {
    let cfg = DemoConfig::standard(PathBuf::from("unused"));
    let job = cfg.job(297);
    assert_eq!(job.population, Some(297));
    assert_eq!(job.expected_cohort, Some(60));
    assert_eq!(cfg.job(40).expected_cohort, Some(40));
}
