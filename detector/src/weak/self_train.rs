//! Self-training: the global model's confident predictions become labels
//! for the sessions the rules abstained on.
//!
//! Silver labels cover only the rules' obvious cases; a model trained on
//! them alone learns those cases and little else. Each time a tenant trains
//! a round (after [`SelfTraining::warmup_rounds`]), it scores its abstained
//! sessions with the **global model it just downloaded** and
//! [`pseudo_labels`] turns the confident tails into labels:
//!
//! - **both tails**: sessions the model calls abuse and sessions it calls
//!   not abuse, each by at least [`SelfTraining::margin`] from 0.5;
//! - **class-balanced** (as in class-balanced self-training, Zou et al.
//!   2018): of the sessions predicted abuse, the most confident
//!   [`SelfTraining::share`] are taken, and the same share of those
//!   predicted not abuse, so the majority class cannot swamp the minority;
//! - **down-weighted**: a pseudo-label weighs
//!   `weight × 2·|p − 0.5|`, below the rules' own silver labels at the same
//!   confidence when `weight < 1`.
//!
//! The rules still seed (their silver labels keep training unchanged) and
//! ground truth still wins (a session with ground truth is never
//! pseudo-labelled: callers pass only abstained sessions). Pseudo-labels
//! are recomputed every round from the current global model and never
//! stored, so an early mistake is not locked in.
//!
//! Privacy: the global model is already public to every participant (a DP
//! release), the scoring happens inside the tenant, and what leaves is the
//! same clipped update as before; the coordinator's DP argument does not
//! change.

use serde::{Deserialize, Serialize};

/// Self-training settings (`[labels.self_training]` in the client's config).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SelfTraining {
    /// Pseudo-label abstained sessions with the global model (default false).
    pub enabled: bool,
    /// Share of each predicted class's abstained sessions taken, most
    /// confident first, in (0, 1].
    pub share: f64,
    /// Smallest `|p − 0.5|` of a pseudo-label, in [0, 0.5).
    pub margin: f64,
    /// Multiplier of a pseudo-label's confidence `2·|p − 0.5|`, in (0, 1].
    pub weight: f64,
    /// Rounds of the job before pseudo-labelling starts (the global model
    /// first learns from the rules' seeds).
    pub warmup_rounds: u64,
}

impl Default for SelfTraining {
    fn default() -> Self {
        Self {
            enabled: false,
            share: 0.5,
            margin: 0.2,
            weight: 0.5,
            warmup_rounds: 10,
        }
    }
}

/// A self-training value out of range; names the key under `labels.self_training`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("labels.self_training.{key}: must be in {range} (got {value})")]
pub struct SelfTrainingError {
    /// Key.
    pub key: &'static str,
    /// Allowed range.
    pub range: &'static str,
    /// Value given.
    pub value: f64,
}

impl SelfTraining {
    /// Checks every value.
    pub fn validate(&self) -> Result<(), SelfTrainingError> {
        let bad = |key, range, value| Err(SelfTrainingError { key, range, value });
        if !(self.share.is_finite() && self.share > 0.0 && self.share <= 1.0) {
            return bad("share", "(0, 1]", self.share);
        }
        if !(self.margin.is_finite() && (0.0..0.5).contains(&self.margin)) {
            return bad("margin", "[0, 0.5)", self.margin);
        }
        if !(self.weight.is_finite() && self.weight > 0.0 && self.weight <= 1.0) {
            return bad("weight", "(0, 1]", self.weight);
        }
        Ok(())
    }

    /// Whether pseudo-labels apply in `round` (1-based).
    pub fn active(&self, round: u64) -> bool {
        self.enabled && round > self.warmup_rounds
    }
}

/// Pseudo-labels of sessions the rules abstained on, from the global
/// model's abuse probabilities: `Some((is_abuse, weight))` for the
/// confident tails (see the [module docs](self)), `None` for the rest.
/// A non-finite probability is never labelled.
pub fn pseudo_labels(probabilities: &[f32], cfg: &SelfTraining) -> Vec<Option<(bool, f32)>> {
    let mut out = vec![None; probabilities.len()];
    let margin = cfg.margin as f32;
    let mut abuse: Vec<usize> = Vec::new();
    let mut not_abuse: Vec<usize> = Vec::new();
    for (i, &p) in probabilities.iter().enumerate() {
        if !p.is_finite() {
            continue;
        }
        if p >= 0.5 {
            abuse.push(i);
        } else {
            not_abuse.push(i);
        }
    }
    // Most confident first; ties by index, so the result is deterministic.
    let conf = |i: usize| (probabilities[i] - 0.5).abs();
    for (class, members) in [(true, &mut abuse), (false, &mut not_abuse)] {
        let take = (cfg.share * members.len() as f64).ceil() as usize;
        members.sort_by(|&a, &b| conf(b).total_cmp(&conf(a)).then(a.cmp(&b)));
        for &i in members.iter().take(take) {
            let c = conf(i);
            if c < margin || c == 0.0 {
                break;
            }
            let w = (cfg.weight as f32 * 2.0 * c).clamp(f32::MIN_POSITIVE, 1.0);
            out[i] = Some((class, w));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(share: f64, margin: f64) -> SelfTraining {
        SelfTraining {
            enabled: true,
            share,
            margin,
            weight: 1.0,
            warmup_rounds: 0,
        }
    }

    #[test]
    fn both_tails_are_labelled_and_the_middle_is_not() {
        let p = [0.99, 0.02, 0.55, 0.45, 0.9, 0.1];
        let l = pseudo_labels(&p, &cfg(1.0, 0.2));
        assert_eq!(l[0].map(|x| x.0), Some(true));
        assert_eq!(l[4].map(|x| x.0), Some(true));
        assert_eq!(l[1].map(|x| x.0), Some(false));
        assert_eq!(l[5].map(|x| x.0), Some(false));
        assert_eq!(l[2], None, "inside the margin");
        assert_eq!(l[3], None, "inside the margin");
        // Weight = 2·|p − 0.5|: the more confident, the heavier.
        let w = |i: usize| l[i].map(|x| x.1).unwrap();
        assert!((w(0) - 0.98).abs() < 1e-6 && (w(4) - 0.8).abs() < 1e-6);
    }

    #[test]
    fn the_share_is_per_predicted_class_so_the_minority_class_is_not_swamped() {
        // 2 predicted abuse, 8 predicted not abuse, all confident.
        let mut p = vec![0.95, 0.9];
        p.extend([0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08]);
        let l = pseudo_labels(&p, &cfg(0.5, 0.1));
        let abuse = l.iter().flatten().filter(|x| x.0).count();
        let not_abuse = l.iter().flatten().filter(|x| !x.0).count();
        assert_eq!((abuse, not_abuse), (1, 4));
        // The most confident of each class.
        assert_eq!(l[0].map(|x| x.0), Some(true));
        assert_eq!(l[1], None);
        assert!(l[2..6].iter().all(Option::is_some));
        assert!(l[6..].iter().all(Option::is_none));
    }

    #[test]
    fn weight_scales_and_non_finite_or_empty_input_is_safe() {
        let c = SelfTraining {
            weight: 0.5,
            ..cfg(1.0, 0.0)
        };
        let l = pseudo_labels(&[1.0, f32::NAN, f32::INFINITY, 0.5], &c);
        assert_eq!(l[0], Some((true, 0.5)));
        assert_eq!(l[1], None);
        assert_eq!(l[2], None);
        assert_eq!(l[3], None, "p = 0.5 carries no information");
        assert!(pseudo_labels(&[], &c).is_empty());
    }

    #[test]
    fn warmup_and_validation() {
        let c = SelfTraining {
            enabled: true,
            warmup_rounds: 3,
            ..SelfTraining::default()
        };
        assert!(!c.active(3) && c.active(4));
        assert!(!SelfTraining::default().active(100), "off by default");
        assert!(c.validate().is_ok());
        let e = SelfTraining { margin: 0.5, ..c }.validate().unwrap_err();
        assert_eq!(
            e.to_string(),
            "labels.self_training.margin: must be in [0, 0.5) (got 0.5)"
        );
        assert!(SelfTraining { share: 0.0, ..c }.validate().is_err());
        assert!(SelfTraining { weight: 1.5, ..c }.validate().is_err());
    }
}
