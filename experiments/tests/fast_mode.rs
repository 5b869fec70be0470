//! Every experiment in fast mode (what `experiments/scripts/*.sh fast` runs):
//! CSV, PNG and README section written, and the results say what the
//! experiment is about (ε falls as z grows, clipping bounds an attacker, the
//! noise on the mean falls with the number of tenants).
#![allow(clippy::unwrap_used)]

use std::path::Path;

use fedsec_experiments::figures::{self, Mode, Setup};

fn setup(dir: &Path) -> Setup {
    Setup {
        mode: Mode::Fast,
        seed: 1,
        out: dir.to_owned(),
        threads: 2,
        quiet: true,
    }
}

fn check_png(path: &Path) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{}", path.display());
    assert!(
        bytes.len() < 250_000,
        "{} is {} bytes",
        path.display(),
        bytes.len()
    );
}

fn csv_rows(path: &Path) -> usize {
    let mut r = csv::Reader::from_path(path).unwrap();
    r.records().collect::<Result<Vec<_>, _>>().unwrap().len()
}

#[test]
fn all_five_experiments_write_their_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup(dir.path());

    let pu = figures::privacy_utility::run(&s).unwrap();
    check_png(&pu.png);
    // Every experiment runs over the fast mode's seeds (mean ± sd); the
    // CSV has one row per seed.
    let seeds = figures::SEEDS_FAST as usize;
    assert_eq!(s.seeds(), vec![1, 2]);
    assert_eq!(
        csv_rows(&pu.csv),
        seeds * (3 + figures::privacy_utility::Z_FAST.len())
    );
    let dp: Vec<_> = pu
        .rows
        .iter()
        .filter(|r| r.method == "federated_dp" && r.seed == 1)
        .collect();
    for w in dp.windows(2) {
        assert!(w[0].noise_multiplier < w[1].noise_multiplier);
        assert!(w[0].epsilon > w[1].epsilon, "ε must fall as z grows");
    }
    let no_noise = pu
        .rows
        .iter()
        .find(|r| r.method == "federated_no_noise" && r.seed == 1)
        .unwrap();
    for r in &pu.rows {
        assert!(
            r.recall_at_1pct_fpr.is_nan() || (0.0..=1.0).contains(&r.recall_at_1pct_fpr),
            "{r:?}"
        );
    }
    assert!(no_noise.epsilon.is_infinite());
    assert!(
        dp.last().unwrap().mean_tenant_auc < no_noise.mean_tenant_auc,
        "z = 8 on a tiny cohort must cost utility"
    );

    let ni = figures::non_iid::run(&s).unwrap();
    check_png(&ni.png);
    assert_eq!(
        ni.rows.len(),
        seeds * 4 * figures::non_iid::ALPHAS_FAST.len()
    );
    for r in ni.rows.iter().filter(|r| r.method == "federated_dp") {
        assert!(r.epsilon <= figures::TARGET_EPSILON + 1e-9 && r.epsilon > 2.9);
    }

    let sc = figures::scale::run(&s).unwrap();
    check_png(&sc.png);
    let noise: Vec<f64> = sc
        .rows
        .iter()
        .filter(|r| r.method == "federated_dp" && r.seed == 1)
        .map(|r| r.noise_to_clip)
        .collect();
    assert_eq!(noise.len(), figures::scale::TENANTS_FAST.len());
    assert!(noise.windows(2).all(|w| w[1] < w[0]), "{noise:?}");

    let po = figures::poisoning::run(&s).unwrap();
    check_png(&po.png);
    let get = |attack: &str, k: usize, clip: bool| {
        po.rows
            .iter()
            .find(|r| {
                r.attack == attack
                    && r.malicious == k
                    && r.server_clipping == clip
                    && r.screen == "off"
            })
            .unwrap()
    };
    // The update screen (policy exclude, default thresholds): no honest
    // update flagged, the model without attack unchanged, every boosted
    // attacker's update flagged and none of them in the sum.
    let screened = |attack: &str, k: usize| {
        po.rows
            .iter()
            .find(|r| r.attack == attack && r.malicious == k && r.screen == "exclude")
            .unwrap()
    };
    let none_on = screened("none", 0);
    assert_eq!(none_on.honest_flagged, 0, "{none_on:?}");
    assert!(none_on.honest_screened > 0);
    assert_eq!(
        none_on.mean_tenant_auc,
        get("none", 0, true).mean_tenant_auc
    );
    for k in figures::poisoning::MALICIOUS_FAST {
        let r = screened("backdoor", k);
        assert_eq!(r.malicious_flagged, r.malicious_screened, "{r:?}");
        assert_eq!(r.rounds_with_attacker, 0, "{r:?}");
        assert_eq!(r.honest_flagged, 0, "{r:?}");
        // The adaptive attacker stays under the norm threshold: not flagged
        // by the norm rule, in the sum whenever selected.
        let a = screened("adaptive_backdoor", k);
        assert!(
            a.malicious_screened > 0 && a.rounds_with_attacker > 0,
            "{a:?}"
        );
    }
    // Clipping's effect on a sign flip is measured with one attacker: in
    // fast mode the population is small and its model weak (mean AUC ~0.58
    // without attack since issue 19's abuse-only labels and 51 features), so
    // three boosted attackers push both variants to chance and the order
    // between two chance-level AUCs is noise. Full mode shows the curve.
    let (k1, k_max) = (
        figures::poisoning::MALICIOUS_FAST[0],
        *figures::poisoning::MALICIOUS_FAST.last().unwrap(),
    );
    assert!(
        get("scaled_sign_flip", k1, true).mean_tenant_auc
            > get("scaled_sign_flip", k1, false).mean_tenant_auc,
        "{:#?}",
        po.rows
    );
    // The trigger is neutral: without attacker it hides (almost) no
    // detected bot. The earlier trigger (HEAD and 304 shares 80 %, a
    // current browser) hid every one of them on the fast-mode model
    // (success 1.0 with no attacker), so "success" saturated and the
    // clipping comparison below came out the wrong way round (1.0 with
    // clipping against 0.94 without, the unclipped model being the better
    // detector) once the harder generator landed.
    let alone = get("none", 0, true);
    assert!(alone.backdoor_success <= 0.2, "{alone:?}");
    for r in &po.rows {
        assert_eq!(r.trigger_alone, alone.backdoor_success, "{r:?}");
    }
    // Clipping bounds the boosted backdoor: far less success with the
    // server's re-clipping than without.
    let (clipped, unclipped) = (
        get("backdoor", k_max, true).backdoor_success,
        get("backdoor", k_max, false).backdoor_success,
    );
    assert!(
        clipped + 0.3 < unclipped,
        "clipped {clipped}, unclipped {unclipped}: {:#?}",
        po.rows
    );

    let st = figures::small_tenants::run(&s).unwrap();
    check_png(&st.png);
    assert!(st.rows.iter().any(|r| r.method == "local_only"));
    assert!(st.rows.iter().any(|r| r.seed == 2));

    let readme = std::fs::read_to_string(dir.path().join("README.md")).unwrap();
    assert!(readme.contains("mean ± sample standard deviation over the 2 seeds"));
    assert!(readme.contains("95 % Wilson"));
    for key in fedsec_experiments::report::SECTION_ORDER {
        assert!(readme.contains(&format!("<!-- section:{key} -->")), "{key}");
    }
    for f in [
        "privacy_utility",
        "non_iid",
        "scale",
        "poisoning",
        "small_tenants",
    ] {
        assert!(readme.contains(&format!("({f}.png)")), "{f}");
        assert!(readme.contains(&format!("({f}.csv)")), "{f}");
    }
}

#[test]
fn weak_labels_fast_mode_writes_its_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let s = setup(dir.path());
    let opts = figures::weak_labels::Options {
        seeds: 1,
        export_features: Some(dir.path().join("features")),
    };
    let o = figures::weak_labels::run(&s, &opts).unwrap();
    check_png(&o.png);
    assert_eq!(csv_rows(&o.csv), o.rows.len());
    let fed: Vec<_> = o.rows.iter().filter(|r| r.method == "federated").collect();
    assert_eq!(
        fed.iter().map(|r| r.gt_share).collect::<Vec<_>>(),
        figures::weak_labels::GT_SHARES.to_vec()
    );
    for r in &fed {
        assert!(r.epsilon > 0.0 && r.epsilon <= 3.0 + 1e-9, "{r:?}");
        assert!(r.mean_tenant_auc.is_finite(), "{r:?}");
    }
    for m in [
        "rules_alone",
        "local_anomaly",
        "federated_plus_anomaly",
        "federated_plus_rules",
        "federated_rules_first",
        "rules_first_anomaly",
        "self_training",
        "self_training_plus_rules",
        "central_silver",
    ] {
        assert!(o.rows.iter().any(|r| r.method == m), "{m}");
    }
    // Self-training runs where some tenant lacks ground truth, under the
    // same privacy budget.
    let st: Vec<_> = o
        .rows
        .iter()
        .filter(|r| r.method == "self_training")
        .collect();
    assert_eq!(
        st.iter().map(|r| r.gt_share).collect::<Vec<_>>(),
        vec![0.0, 0.1]
    );
    for r in &st {
        assert!(r.epsilon > 0.0 && r.epsilon <= 3.0 + 1e-9, "{r:?}");
    }
    // The IsolationForest script's input: tenant, split, label, 51 features.
    let features = std::fs::read_to_string(dir.path().join("features/features-seed1.csv")).unwrap();
    let header = features.lines().next().unwrap();
    assert!(header.starts_with("tenant,split,label,f0,"));
    assert_eq!(header.split(',').count(), 3 + 51);
    // weak_methods.py's input: the same rows with the labeller's verdict and
    // every rule's vote.
    let weak = std::fs::read_to_string(dir.path().join("features/weak-seed1.csv")).unwrap();
    let header = weak.lines().next().unwrap();
    assert!(header.starts_with("tenant,split,label,tag,vote,confidence,score,r_user_agent,"));
    let width = 7 + figures::weak_labels::RULE_NAMES.len() + 51;
    assert_eq!(header.split(',').count(), width);
    assert!(weak.lines().skip(1).all(|l| l.split(',').count() == width));
    let readme = std::fs::read_to_string(dir.path().join("README.md")).unwrap();
    assert!(readme.contains("<!-- section:weak-labels -->"));
    assert!(readme.contains("(weak_labels.png)") && readme.contains("(weak_labels.csv)"));
}
