//! The synthetic generator: determinism, exact log/label join for every
//! tenant kind and log layout, non-IID tenants.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use fedsec_detector::synth::{self, Archetype, LineStyle, SynthConfig, SynthFormat, TenantKind};

fn small(format: SynthFormat, seed: u64) -> SynthConfig {
    SynthConfig {
        tenants: 8,
        seed,
        format,
        median_sessions: 250.0,
        min_sessions: 150,
        max_sessions: 400,
        ..SynthConfig::default()
    }
}

#[test]
fn generation_is_deterministic_per_seed_and_tenant() {
    let cfg = small(SynthFormat::Mixed, 7);
    let a = synth::generate_tenant(&cfg, 3).unwrap();
    let b = synth::generate_tenant(&cfg, 3).unwrap();
    assert_eq!(a.log, b.log);
    assert_eq!(a.labels, b.labels);
    assert_eq!(a.summary, b.summary);
    let other_seed = synth::generate_tenant(&small(SynthFormat::Mixed, 8), 3).unwrap();
    assert_ne!(a.log, other_seed.log);
    let other_tenant = synth::generate_tenant(&cfg, 4).unwrap();
    assert_ne!(a.log, other_tenant.log);
    // A tenant does not depend on how many tenants are generated.
    let mut more = cfg.clone();
    more.tenants = 30;
    assert_eq!(synth::generate_tenant(&more, 3).unwrap().log, a.log);
}

#[test]
fn labels_join_exactly_for_every_kind_and_layout() {
    let mut layouts = BTreeSet::new();
    // NAT collisions (several sessions on one (IP, user agent) merged, as
    // the sessionizer merges them) happen and still join exactly.
    let mut nat_merged = 0usize;
    for format in [SynthFormat::Clf, SynthFormat::Json] {
        for seed in [1, 2, 3] {
            let cfg = small(format, seed);
            for i in 0..cfg.tenants {
                let t = synth::generate_tenant(&cfg, i).unwrap();
                let ls = t.labelled_sessions().unwrap();
                let r = &ls.report;
                assert!(r.is_exact(), "{format:?} seed {seed} tenant {i}: {r:?}");
                nat_merged += t.summary.nat_merged_sessions;
                assert_eq!(
                    r.sessions,
                    t.summary.sessions_by_archetype.values().sum::<usize>()
                );
                assert_eq!(r.reader.records as usize, t.summary.lines);
                assert_eq!(ls.dataset.len(), r.sessions);
                // Tags carry the archetype; the label (abuse) and the
                // class agree with it.
                assert_eq!(ls.classes.len(), ls.dataset.len());
                for row in 0..ls.dataset.len() {
                    let a = Archetype::from_id(ls.dataset.tags()[row]).unwrap();
                    assert_eq!(a.class(), ls.classes[row]);
                    assert_eq!(a.class().is_abuse(), ls.dataset.is_bot(row));
                }
                layouts.insert(
                    format!("{:?}", t.summary.profile.style)
                        .split(' ')
                        .next()
                        .unwrap_or("")
                        .to_string()
                        + &match t.summary.profile.style {
                            LineStyle::Clf { flavour } => format!("{flavour:?}"),
                            LineStyle::Json { .. } => String::new(),
                        },
                );
            }
        }
    }
    // All three CLF flavours and JSON were exercised.
    assert_eq!(layouts.len(), 4, "{layouts:?}");
    assert!(nat_merged > 0, "no NAT collision in 48 tenants");
}

#[test]
fn tenants_are_non_iid_and_alpha_controls_it() {
    let spread = |alpha: f64| {
        let cfg = SynthConfig {
            alpha,
            ..small(SynthFormat::Clf, 11)
        };
        // Mean over tenants of the largest bot-archetype share.
        let profiles: Vec<_> = (0..40).map(|i| synth::tenant_profile(&cfg, i)).collect();
        profiles
            .iter()
            .map(|p| p.bot_mix.iter().cloned().fold(0.0, f64::max))
            .sum::<f64>()
            / profiles.len() as f64
    };
    let (very_non_iid, default, near_iid) = (spread(0.1), spread(1.0), spread(10.0));
    assert!(very_non_iid > 0.6, "{very_non_iid}");
    assert!(
        very_non_iid > default && default > near_iid,
        "{very_non_iid} {default} {near_iid}"
    );
    let cfg = small(SynthFormat::Clf, 1);
    let kinds: Vec<TenantKind> = (0..8)
        .map(|i| synth::tenant_profile(&cfg, i).kind)
        .collect();
    assert_eq!(&kinds[..4], &TenantKind::ALL);
    let shares: Vec<f64> = (0..8)
        .map(|i| synth::tenant_profile(&cfg, i).bot_share)
        .collect();
    assert!(
        shares.iter().cloned().fold(0.0, f64::max) - shares.iter().cloned().fold(1.0, f64::min)
            > 0.2
    );
}

#[test]
fn write_dir_writes_logs_labels_and_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SynthConfig {
        tenants: 2,
        ..small(SynthFormat::Json, 5)
    };
    let summaries = synth::write_dir(&cfg, dir.path()).unwrap();
    assert_eq!(summaries.len(), 2);
    for i in 0..2 {
        let (log, labels) = synth::tenant_file_names(i);
        let log = std::fs::read(dir.path().join(log)).unwrap();
        let labels = std::fs::read(dir.path().join(labels)).unwrap();
        let mem = synth::generate_tenant(&cfg, i).unwrap();
        assert_eq!(log, mem.log);
        assert_eq!(labels, mem.labels);
    }
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["tenants"].as_array().unwrap().len(), 2);
    assert_eq!(manifest["config"]["seed"], 5);
}

#[test]
fn invalid_configs_are_refused() {
    for bad in [
        SynthConfig {
            alpha: 0.0,
            ..SynthConfig::default()
        },
        SynthConfig {
            alpha: f64::NAN,
            ..SynthConfig::default()
        },
        SynthConfig {
            days: 0,
            ..SynthConfig::default()
        },
        SynthConfig {
            min_sessions: 10,
            max_sessions: 5,
            ..SynthConfig::default()
        },
    ] {
        assert!(bad.validate().is_err(), "{bad:?}");
        assert!(synth::generate_tenant(&bad, 0).is_err());
    }
}
