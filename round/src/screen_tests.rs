use super::*;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn one_layer(d: usize) -> Vec<Layer> {
    vec![Layer {
        name: "layers.0".into(),
        range: 0..d,
    }]
}

#[test]
fn layers_follow_the_model_spec() {
    // mlp(3 → 2 → 1): layer 0 = 3·2 + 2 values, layer 1 = 2·1 + 1.
    let l = layers(&ModelSpec::mlp(3, vec![2]));
    assert_eq!(
        l,
        vec![
            Layer {
                name: "layers.0".into(),
                range: 0..8
            },
            Layer {
                name: "layers.1".into(),
                range: 8..11
            }
        ]
    );
    assert_eq!(layers(&ModelSpec::logistic(4)).len(), 1);
}

#[test]
fn statistics_are_the_update_against_the_published_direction() {
    let l = vec![
        Layer {
            name: "a".into(),
            range: 0..2,
        },
        Layer {
            name: "b".into(),
            range: 2..4,
        },
    ];
    let reference = Reference::between(&[0.0, 0.0, 0.0, 0.0], &[1.0, 0.0, -1.0, 0.0]).unwrap();
    let s = measure(&[3.0, 0.0, 0.0, 4.0], 2.0, Some(&reference), &l).unwrap();
    assert!((s.norm - 5.0).abs() < 1e-12);
    assert!((s.norm_ratio - 2.5).abs() < 1e-12);
    assert_eq!(s.layer_norms, vec![3.0, 4.0]);
    assert!((s.max_layer_share - 16.0 / 25.0).abs() < 1e-12);
    // dot = 3, |ref| = √2: cos = 3 / (5·√2).
    let cos = s.cosine.unwrap();
    assert!((cos - 3.0 / (5.0 * 2f64.sqrt())).abs() < 1e-12, "{cos}");
    // Only coordinate 0 is non-zero in both, and agrees.
    assert_eq!(s.sign_agreement, Some(1.0));
    let flipped = measure(&[-3.0, 0.0, 0.0, 4.0], 2.0, Some(&reference), &l).unwrap();
    assert_eq!(flipped.sign_agreement, Some(0.0));
    assert!(flipped.cosine.unwrap() < 0.0);
    // No reference (first round): no direction statistics.
    let first = measure(&[3.0, 0.0, 0.0, 4.0], 2.0, None, &l).unwrap();
    assert_eq!((first.cosine, first.sign_agreement), (None, None));
    // Wrong length or non-finite values are the accumulator's to refuse.
    assert!(measure(&[1.0; 3], 1.0, None, &l).is_none());
    assert!(measure(&[1.0, f32::NAN, 0.0, 0.0], 1.0, None, &l).is_none());
    assert!(measure(&[1.0; 4], 1.0, Some(&reference), &one_layer(4)).is_some());
    assert!(Reference::between(&[1.0, 2.0], &[1.0, 2.0]).is_none());
    assert!(Reference::between(&[1.0], &[1.0, 2.0]).is_none());
}

/// The vectorised measure against the plain one-element-at-a-time
/// definition: every length around the lane width, zeros and both signs.
#[test]
fn measure_agrees_with_the_scalar_definition() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    for n in (1..40).chain([1000, 4099, 65_557]) {
        let value = |rng: &mut ChaCha8Rng| -> f32 {
            if rng.random_bool(0.2) {
                0.0
            } else {
                rng.random_range(-1.0f32..1.0)
            }
        };
        let update: Vec<f32> = (0..n).map(|_| value(&mut rng)).collect();
        let previous = vec![0.0f32; n];
        let mut direction: Vec<f32> = (0..n).map(|_| value(&mut rng)).collect();
        direction[0] = 0.5; // never all zero
        let reference = Reference::between(&previous, &direction).unwrap();
        let cut = n / 3;
        let l = vec![
            Layer {
                name: "a".into(),
                range: 0..cut,
            },
            Layer {
                name: "b".into(),
                range: cut..n,
            },
        ];
        let s = measure(&update, 1.0, Some(&reference), &l).unwrap();
        let sq = |v: &[f32]| v.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>();
        let (sa, sb) = (sq(&update[..cut]), sq(&update[cut..]));
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-12 * b.abs().max(1e-300);
        assert!(close(s.norm, (sa + sb).sqrt()), "n = {n}");
        assert!(close(s.layer_norms[0], sa.sqrt()) && close(s.layer_norms[1], sb.sqrt()));
        let dot: f64 = update
            .iter()
            .zip(&direction)
            .map(|(&x, &y)| f64::from(x) * f64::from(y))
            .sum();
        let (mut agree, mut both) = (0u64, 0u64);
        for (&x, &y) in update.iter().zip(&direction) {
            if x != 0.0 && y != 0.0 {
                both += 1;
                agree += u64::from((x > 0.0) == (y > 0.0));
            }
        }
        // The dispatched kernel (AVX2 where the CPU has it) and the portable one.
        for (d, a, b) in [
            dot_and_signs(&update, &direction),
            dot_and_signs_portable(&update, &direction),
        ] {
            let tol = 1e-12 * sq(&update).max(1e-300);
            assert!((d - dot).abs() <= tol, "n = {n}: {d} vs {dot}");
            assert_eq!((a, b), (agree, both), "n = {n}");
        }
        if both > 0 {
            assert_eq!(s.sign_agreement, Some(agree as f64 / both as f64));
        }
        // A bad value in any layer, at any position, is found.
        for i in [0, cut, n - 1] {
            for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                let mut u = update.clone();
                u[i] = bad;
                assert!(
                    measure(&u, 1.0, Some(&reference), &l).is_none(),
                    "n = {n}, i = {i}"
                );
            }
        }
    }
}

#[test]
fn the_norm_rule_flags_boosted_updates_and_spares_clipped_ones() {
    let t = ScreenThresholds::default();
    let l = one_layer(2);
    let clipped = measure(&[0.6, 0.8], 1.0, None, &l).unwrap();
    assert!(decide(&clipped, &t).is_empty());
    let boosted = measure(&[36.0, 48.0], 1.0, None, &l).unwrap();
    let f = decide(&boosted, &t);
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].statistic, Statistic::NormRatio);
    assert!((f[0].value - 60.0).abs() < 1e-9);
    assert_eq!(f[0].to_string(), "norm_ratio 60.0000 > 1.01");
}

#[test]
fn direction_rules_fire_only_when_enabled_and_with_a_reference() {
    let l = one_layer(2);
    let reference = Reference::between(&[0.0, 0.0], &[1.0, 1.0]).unwrap();
    let flipped = measure(&[-0.5, -0.5], 1.0, Some(&reference), &l).unwrap();
    assert!(decide(&flipped, &ScreenThresholds::default()).is_empty());
    let t = ScreenThresholds {
        min_cosine: -0.5,
        min_sign_agreement: 0.2,
        ..ScreenThresholds::default()
    };
    let fired: Vec<_> = decide(&flipped, &t).iter().map(|f| f.statistic).collect();
    assert_eq!(fired, vec![Statistic::Cosine, Statistic::SignAgreement]);
    let first_round = measure(&[-0.5, -0.5], 1.0, None, &l).unwrap();
    assert!(decide(&first_round, &t).is_empty());
    let lopsided = ScreenThresholds {
        max_layer_share: 0.9,
        ..ScreenThresholds::default()
    };
    let two = vec![
        Layer {
            name: "a".into(),
            range: 0..1,
        },
        Layer {
            name: "b".into(),
            range: 1..2,
        },
    ];
    let s = measure(&[0.99, 0.01], 1.0, None, &two).unwrap();
    assert_eq!(decide(&s, &lopsided)[0].statistic, Statistic::LayerShare);
}

#[test]
fn policies_parse_by_name_and_unknown_ones_are_refused() {
    for p in ScreenPolicy::ALL {
        assert_eq!(p.as_str().parse::<ScreenPolicy>(), Ok(p));
    }
    assert!(!ScreenPolicy::Log.excludes());
    assert!(ScreenPolicy::Exclude.excludes() && ScreenPolicy::Quarantine.excludes());
    let e = "drop".parse::<ScreenPolicy>().unwrap_err();
    assert!(e.to_string().contains("\"drop\""), "{e}");
}

#[test]
fn thresholds_are_validated_by_name() {
    assert_eq!(ScreenThresholds::default().validate(), Ok(()));
    let cases: [(&str, ScreenThresholds); 7] = [
        (
            "max_norm_ratio",
            ScreenThresholds {
                max_norm_ratio: 0.5,
                ..Default::default()
            },
        ),
        (
            "min_cosine",
            ScreenThresholds {
                min_cosine: 1.5,
                ..Default::default()
            },
        ),
        (
            "min_sign_agreement",
            ScreenThresholds {
                min_sign_agreement: f64::NAN,
                ..Default::default()
            },
        ),
        (
            "max_layer_share",
            ScreenThresholds {
                max_layer_share: 0.0,
                ..Default::default()
            },
        ),
        (
            "history_len",
            ScreenThresholds {
                history_len: 0,
                ..Default::default()
            },
        ),
        (
            "min_history",
            ScreenThresholds {
                min_history: 17,
                ..Default::default()
            },
        ),
        (
            "max_norm_z",
            ScreenThresholds {
                max_norm_z: f64::INFINITY,
                ..Default::default()
            },
        ),
    ];
    for (field, t) in cases {
        assert_eq!(t.validate().unwrap_err().field, field);
    }
}

#[test]
fn a_tenants_own_history_flags_a_jump_and_stays_bounded() {
    let t = ScreenThresholds {
        history_len: 5,
        min_history: 3,
        ..ScreenThresholds::default()
    };
    let mut s = Screener::new(
        ScreenConfig {
            policy: ScreenPolicy::Exclude,
            thresholds: t,
        },
        10,
    );
    let l = one_layer(1);
    let small = || measure(&[0.1], 1.0, None, &l).unwrap();
    // Too little history: the z-score is not computed yet.
    for _ in 0..2 {
        let r = s.screen("a", small());
        assert!(r.stats.norm_z.is_none() && !r.flagged());
    }
    let r = s.screen("a", small());
    assert!(r.stats.norm_z.is_none());
    // A jump from 0.1·C to C: (1 − 0.1) / (1.4826·0.05) ≈ 12 > 6.
    let jump = s.screen("a", measure(&[1.0], 1.0, None, &l).unwrap());
    assert!(jump.exclude, "{jump:?}");
    assert_eq!(jump.findings[0].statistic, Statistic::NormHistory);
    assert!(jump.summary().starts_with("norm_z "), "{}", jump.summary());
    // Flagged scores do not enter the history; it stays at most history_len.
    assert_eq!(s.history("a").unwrap().len(), 3);
    for _ in 0..10 {
        s.screen("a", small());
    }
    assert_eq!(s.history("a").unwrap().len(), 5);
    // Another tenant starts with no history: the same jump is not flagged.
    assert!(
        !s.screen("b", measure(&[1.0], 1.0, None, &l).unwrap())
            .flagged()
    );
    // With policy log the update is flagged but kept.
    let mut logging = Screener::new(
        ScreenConfig {
            policy: ScreenPolicy::Log,
            thresholds: t,
        },
        10,
    );
    let r = logging.screen("x", measure(&[5.0], 1.0, None, &l).unwrap());
    assert!(r.flagged() && !r.exclude);
}

#[test]
fn histories_are_bounded_by_the_tenant_cap() {
    let mut s = Screener::new(ScreenConfig::default(), 3);
    let l = one_layer(1);
    for t in ["a", "b", "c", "d"] {
        s.screen(t, measure(&[0.5], 1.0, None, &l).unwrap());
    }
    assert!(
        s.history("a").is_none(),
        "the least recently seen is dropped"
    );
    assert!(s.history("d").is_some() && s.history("b").is_some());
}

/// The DP argument's property: whether tenant A's update is excluded does
/// not depend on whether tenant B (or anyone else) took part, at any round,
/// given the same public state (published directions). Over seeds, random
/// cohorts, random update sizes (honest and boosted), orders shuffled.
#[test]
fn a_tenants_decision_does_not_depend_on_other_tenants() {
    let d = 12;
    let l = vec![
        Layer {
            name: "layers.0".into(),
            range: 0..8,
        },
        Layer {
            name: "layers.1".into(),
            range: 8..d,
        },
    ];
    let thresholds = ScreenThresholds {
        min_cosine: -0.6,
        min_sign_agreement: 0.2,
        max_layer_share: 0.97,
        history_len: 6,
        min_history: 2,
        max_norm_z: 3.0,
        max_cosine_z: 3.0,
        ..ScreenThresholds::default()
    };
    let config = ScreenConfig {
        policy: ScreenPolicy::Exclude,
        thresholds,
    };
    let tenants = ["a", "b", "c", "d", "e"];
    let mut flagged_any = 0;
    for seed in 0..40u64 {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        // Public state: one published direction per round (None first).
        let rounds = 12;
        let refs: Vec<Option<Reference>> = (0..rounds)
            .map(|r| {
                (r > 0).then(|| {
                    let cur: Vec<f32> = (0..d).map(|_| rng.random_range(-1.0..1.0)).collect();
                    Reference::between(&vec![0.0; d], &cur).unwrap()
                })
            })
            .collect();
        // Every tenant's would-be update per round, and who is in each round.
        let updates: Vec<Vec<Vec<f32>>> = (0..rounds)
            .map(|_| {
                tenants
                    .iter()
                    .map(|_| {
                        let scale: f32 = if rng.random_bool(0.15) {
                            rng.random_range(1.0..60.0)
                        } else {
                            rng.random_range(0.05..1.0)
                        };
                        let v: Vec<f32> = (0..d).map(|_| rng.random_range(-1.0f32..1.0)).collect();
                        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
                        v.iter().map(|x| x / n * scale).collect()
                    })
                    .collect()
            })
            .collect();
        let cohorts: Vec<Vec<usize>> = (0..rounds)
            .map(|_| {
                (0..tenants.len())
                    .filter(|_| rng.random_bool(0.7))
                    .collect()
            })
            .collect();
        let order_seed: u64 = rng.random();
        // Run the rounds with B in every cohort it was drawn for, and without B at all.
        let run = |with_b: bool| -> Vec<(usize, usize, bool)> {
            let mut screener = Screener::new(config, 16);
            let mut shuffle = ChaCha8Rng::seed_from_u64(order_seed);
            let mut out = Vec::new();
            for (r, cohort) in cohorts.iter().enumerate() {
                let mut members: Vec<usize> = cohort
                    .iter()
                    .copied()
                    .filter(|&t| with_b || tenants[t] != "b")
                    .collect();
                // Arrival order varies with the cohort (as uploads race).
                for i in (1..members.len()).rev() {
                    members.swap(i, shuffle.random_range(0..=i));
                }
                for t in members {
                    let stats = measure(&updates[r][t], 1.0, refs[r].as_ref(), &l).unwrap();
                    let s = screener.screen(tenants[t], stats);
                    if tenants[t] != "b" {
                        out.push((r, t, s.exclude));
                    }
                }
            }
            out.sort_unstable();
            out
        };
        let with_b = run(true);
        assert_eq!(with_b, run(false), "seed {seed}");
        flagged_any += with_b.iter().filter(|x| x.2).count();
    }
    assert!(
        flagged_any > 0,
        "the property must be exercised on flagged updates"
    );
}
