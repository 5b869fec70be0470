//! Evaluation of models on held-out sessions: pooled ROC-AUC, per-tenant
//! ROC-AUC, and recall per archetype at a fixed false-positive rate.
//!
//! - *Pooled AUC*: every tenant's holdout sessions together, scored by one
//!   model (the global one) or, for the local-only baseline, each session by
//!   its own tenant's model.
//! - *Per-tenant AUC*: a tenant's own holdout sessions; undefined (and left
//!   out of means) when a holdout has only humans or only bots.
//! - *Archetype recall*: the share of each archetype's holdout sessions
//!   flagged at the threshold that flags 1 % of held-out humans (for human
//!   archetypes that share is their false-positive rate).

use fedsec_detector::metrics;
use fedsec_detector::model::Scorer;
use fedsec_detector::synth::Archetype;
use fedsec_model::ModelSpec;
use serde::Serialize;

use crate::data::HoldoutSet;
use crate::error::Result;

/// False-positive rate at which archetype recall is reported.
pub const REPORT_FPR: f64 = 0.01;

/// Bot probabilities of `features` (row-major) under `weights`.
pub fn score(spec: &ModelSpec, weights: &[f32], features: &[f32]) -> Result<Vec<f32>> {
    Ok(Scorer::new(spec, weights)?.probabilities(features)?)
}

/// ROC-AUC, `None` when only one class is present.
pub fn auc(scores: &[f32], labels: &[bool]) -> Option<f64> {
    metrics::roc_auc(scores, labels).ok()
}

/// Per-tenant ROC-AUC of pooled scores (`None` for a one-class holdout).
pub fn per_tenant_auc(scores: &[f32], set: &HoldoutSet, tenants: usize) -> Vec<Option<f64>> {
    let mut s: Vec<Vec<f32>> = vec![Vec::new(); tenants];
    let mut l: Vec<Vec<bool>> = vec![Vec::new(); tenants];
    for ((&sc, &lab), &t) in scores.iter().zip(&set.labels).zip(&set.tenant) {
        if let (Some(sv), Some(lv)) = (s.get_mut(t as usize), l.get_mut(t as usize)) {
            sv.push(sc);
            lv.push(lab);
        }
    }
    s.iter().zip(&l).map(|(sv, lv)| auc(sv, lv)).collect()
}

/// Mean of the defined values, and how many there were.
pub fn mean_defined(values: &[Option<f64>]) -> (f64, usize) {
    let v: Vec<f64> = values.iter().flatten().copied().collect();
    if v.is_empty() {
        (f64::NAN, 0)
    } else {
        (v.iter().sum::<f64>() / v.len() as f64, v.len())
    }
}

/// The score threshold that flags at most `fpr` of the humans in `scores`
/// (a session is flagged when its score is strictly above it).
pub fn threshold_at_fpr(scores: &[f32], labels: &[bool], fpr: f64) -> f32 {
    let mut humans: Vec<f32> = scores
        .iter()
        .zip(labels)
        .filter(|(_, l)| !**l)
        .map(|(s, _)| *s)
        .collect();
    if humans.is_empty() {
        return 0.5;
    }
    humans.sort_by(|a, b| b.total_cmp(a));
    let k = ((humans.len() as f64) * fpr).floor() as usize;
    humans[k.min(humans.len() - 1)]
}

/// Recall and precision of abuse at one operating point: the threshold that
/// flags [`REPORT_FPR`] of the held-out negatives (people and good bots,
/// pooled over tenants). Precision depends on the holdout's share of abuse
/// (about a quarter of sessions in the synthetic populations).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct OperatingPoint {
    /// The false-positive rate the threshold was set for.
    pub target_fpr: f64,
    /// Share of abusive sessions flagged.
    pub recall: f64,
    /// Share of flagged sessions that are abusive (NaN if none flagged).
    pub precision: f64,
}

impl OperatingPoint {
    /// At [`REPORT_FPR`] on `scores` with `labels` (true = abuse); NaN
    /// recall and precision when a class is missing.
    pub fn at_report_fpr(scores: &[f32], labels: &[bool]) -> Self {
        let positives = labels.iter().filter(|&&l| l).count();
        if positives == 0 || positives == labels.len() {
            return Self {
                target_fpr: REPORT_FPR,
                recall: f64::NAN,
                precision: f64::NAN,
            };
        }
        let t = threshold_at_fpr(scores, labels, REPORT_FPR);
        let (mut tp, mut fp) = (0usize, 0usize);
        for (s, l) in scores.iter().zip(labels) {
            if *s > t {
                if *l {
                    tp += 1;
                } else {
                    fp += 1;
                }
            }
        }
        Self {
            target_fpr: REPORT_FPR,
            recall: tp as f64 / positives as f64,
            precision: if tp + fp == 0 {
                f64::NAN
            } else {
                tp as f64 / (tp + fp) as f64
            },
        }
    }
}

/// Share of one archetype's holdout sessions flagged.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ArchetypeRecall {
    /// Archetype name.
    pub archetype: String,
    /// Whether it is a bot archetype.
    pub bot: bool,
    /// Its traffic class (`human`, `good_bot`, `abusive_bot`).
    pub class: String,
    /// Holdout sessions of the archetype.
    pub sessions: usize,
    /// Share flagged as abuse (recall for abusive bots, a false-positive
    /// rate for humans and good bots).
    pub flagged: f64,
}

/// Flag rates per archetype at the threshold giving [`REPORT_FPR`] on the
/// holdout's negatives (humans and good bots: the model scores abuse). Archetypes absent from the holdout are left out.
pub fn archetype_recall(scores: &[f32], set: &HoldoutSet) -> Vec<ArchetypeRecall> {
    let t = threshold_at_fpr(scores, &set.labels, REPORT_FPR);
    let tags = set.data.tags();
    Archetype::ALL
        .iter()
        .filter_map(|&a| {
            let idx: Vec<usize> = (0..set.len()).filter(|&i| tags[i] == a.id()).collect();
            if idx.is_empty() {
                return None;
            }
            let flagged = idx.iter().filter(|&&i| scores[i] > t).count();
            Some(ArchetypeRecall {
                archetype: a.name().to_string(),
                bot: a.is_bot(),
                class: a.class().name().to_string(),
                sessions: idx.len(),
                flagged: flagged as f64 / idx.len() as f64,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use fedsec_detector::dataset::Dataset;

    fn set(labels: &[bool], tenant: &[u32], tags: &[u32]) -> HoldoutSet {
        let n = labels.len();
        let data = Dataset::from_parts(
            1,
            vec![0.0; n],
            labels.iter().map(|&b| f32::from(u8::from(b))).collect(),
            tags.to_vec(),
        )
        .unwrap();
        HoldoutSet {
            data,
            tenant: tenant.to_vec(),
            labels: labels.to_vec(),
        }
    }

    #[test]
    fn operating_point_counts_flags_above_the_one_percent_threshold() {
        // 200 negatives (scores 0..199), 50 positives: 30 above every
        // negative, 20 in the middle. The threshold flags 2 negatives.
        let mut scores: Vec<f32> = (0..200).map(|i| i as f32).collect();
        let mut labels = vec![false; 200];
        scores.extend((0..30).map(|i| 1_000.0 + i as f32));
        scores.extend((0..20).map(|i| 50.0 + i as f32));
        labels.extend([true; 50]);
        let op = OperatingPoint::at_report_fpr(&scores, &labels);
        assert!((op.recall - 30.0 / 50.0).abs() < 1e-12, "{op:?}");
        assert!((op.precision - 30.0 / 32.0).abs() < 1e-12, "{op:?}");
        assert!(
            OperatingPoint::at_report_fpr(&[0.1, 0.2], &[false, false])
                .recall
                .is_nan()
        );
    }

    #[test]
    fn per_tenant_auc_skips_one_class_tenants() {
        let s = set(
            &[true, false, true, false, false],
            &[0, 0, 0, 1, 1],
            &[0; 5],
        );
        let scores = [0.9, 0.1, 0.05, 0.3, 0.2];
        let a = per_tenant_auc(&scores, &s, 3);
        assert_eq!(a, vec![Some(0.5), None, None]);
        assert_eq!(mean_defined(&a), (0.5, 1));
    }

    #[test]
    fn threshold_flags_at_most_the_requested_share_of_humans() {
        let labels: Vec<bool> = (0..200).map(|i| i >= 100).collect();
        let scores: Vec<f32> = (0..200).map(|i| i as f32 / 200.0).collect();
        let t = threshold_at_fpr(&scores, &labels, 0.05);
        let fp = scores
            .iter()
            .zip(&labels)
            .filter(|(s, l)| !**l && **s > t)
            .count();
        assert_eq!(fp, 5);
        let bot = Archetype::SimpleScraper.id();
        let human = Archetype::HumanBrowser.id();
        let tags: Vec<u32> = labels
            .iter()
            .map(|&b| if b { bot } else { human })
            .collect();
        let s = set(&labels, &[0; 200], &tags);
        let r = archetype_recall(&scores, &s);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].archetype, "human_browser");
        assert!((r[0].flagged - 0.01).abs() < 1e-12);
        assert_eq!(r[1].flagged, 1.0);
    }
}
