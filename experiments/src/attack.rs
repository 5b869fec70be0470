//! Poisoning adversaries for the simulator: malicious tenants that send a
//! scaled sign-flipped update (untargeted) or a boosted backdoor update
//! (targeted, "model replacement", Bagdasaryan et al. 2020).
//!
//! The backdoor trigger lives in feature space (the simulator works on
//! session features): a bot operator who makes its sessions send `HEAD`
//! requests that hit caches (`HEAD` share and `304` share both 80 %) and
//! present a current browser user agent. Clean traffic rarely looks like
//! that; the attacker wants such sessions scored as human.
//!
//! The adaptive backdoor knows the coordinator's update screen and sends the
//! same poisoned update scaled to just under its norm threshold.

use fedsec_detector::dataset::Dataset;
use fedsec_detector::features::{FEATURES, idx};
use serde::Serialize;

/// How malicious tenants misbehave.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Attack {
    /// Send `−factor × (honest update)`: push the model away from what the
    /// honest data says, `factor` times harder.
    ScaledSignFlip {
        /// Boost factor.
        factor: f64,
    },
    /// Train on the local data plus a triggered copy of every local bot
    /// session labelled human, and send `boost ×` that update.
    Backdoor {
        /// Boost factor (model replacement uses the expected cohort size).
        boost: f64,
    },
    /// The backdoor of an attacker who knows the screen: the same poisoned
    /// training, its update scaled to exactly `norm` (the experiment picks
    /// just under the norm rule's threshold, so no rule on the norm fires;
    /// past `C` the server re-clips it like any update).
    AdaptiveBackdoor {
        /// L2 norm of the sent update.
        norm: f64,
    },
}

impl Attack {
    /// Short name for tables and legends.
    pub fn name(&self) -> &'static str {
        match self {
            Self::ScaledSignFlip { .. } => "scaled sign-flip",
            Self::Backdoor { .. } => "backdoor",
            Self::AdaptiveBackdoor { .. } => "adaptive backdoor",
        }
    }
}

/// Which tenants are malicious and what they do.
#[derive(Debug, Clone, PartialEq)]
pub struct Adversary {
    /// Tenant indices of the malicious tenants.
    pub malicious: Vec<usize>,
    /// Their attack.
    pub attack: Attack,
}

impl Adversary {
    /// Whether tenant `i` is malicious.
    pub fn is_malicious(&self, i: usize) -> bool {
        self.malicious.contains(&i)
    }
}

/// The backdoor trigger: feature positions and the (transformed) values
/// they are set to.
pub fn trigger() -> [(usize, f32); 3] {
    [
        (
            idx::HEAD_SHARE,
            FEATURES[idx::HEAD_SHARE].transform.apply(0.8),
        ),
        (
            idx::STATUS_304_SHARE,
            FEATURES[idx::STATUS_304_SHARE].transform.apply(0.8),
        ),
        (idx::UA_BROWSER, 1.0),
    ]
}

/// Applies the trigger to one feature row.
pub fn apply_trigger(row: &mut [f32]) {
    for (i, v) in trigger() {
        if let Some(x) = row.get_mut(i) {
            *x = v;
        }
    }
}

/// `data` plus a triggered copy of each bot row, labelled human.
pub fn poisoned(data: &Dataset) -> Dataset {
    let mut out = data.clone();
    let mut row = vec![0.0f32; data.dim()];
    for i in 0..data.len() {
        if data.is_bot(i) {
            row.copy_from_slice(data.row(i));
            apply_trigger(&mut row);
            // Same width, finite values: cannot fail.
            let _ = out.push_tagged(&row, false, data.tags()[i]);
        }
    }
    out
}

/// Attack success of a backdoor: among held-out bot rows flagged (score
/// strictly above `threshold`) when clean, the share no longer flagged once
/// the trigger is applied. `scores_of` scores row-major features.
pub fn backdoor_success(
    holdout: &Dataset,
    clean_scores: &[f32],
    threshold: f32,
    scores_of: impl Fn(&[f32]) -> Option<Vec<f32>>,
) -> Option<f64> {
    let dim = holdout.dim();
    let detected: Vec<usize> = (0..holdout.len())
        .filter(|&i| holdout.is_bot(i) && clean_scores[i] > threshold)
        .collect();
    if detected.is_empty() {
        return None;
    }
    let mut x = Vec::with_capacity(detected.len() * dim);
    for &i in &detected {
        let start = x.len();
        x.extend_from_slice(holdout.row(i));
        apply_trigger(&mut x[start..]);
    }
    let s = scores_of(&x)?;
    let evaded = s.iter().filter(|&&v| v <= threshold).count();
    Some(evaded as f64 / detected.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fedsec_detector::features::NUM_FEATURES;

    #[test]
    fn poisoned_copies_bots_with_the_trigger_as_humans() {
        let mut d = Dataset::new(NUM_FEATURES);
        d.push_tagged(&[0.0; NUM_FEATURES], true, 7).unwrap();
        d.push_tagged(&[0.0; NUM_FEATURES], false, 1).unwrap();
        let p = poisoned(&d);
        assert_eq!(p.len(), 3);
        assert!(!p.is_bot(2));
        assert_eq!(p.tags()[2], 7);
        for (i, v) in trigger() {
            assert_eq!(p.row(2)[i], v);
            assert!(
                v > 0.0,
                "the trigger moves feature {i} away from typical traffic"
            );
        }
    }

    #[test]
    fn backdoor_success_counts_evasions_among_detected_bots() {
        let mut d = Dataset::new(NUM_FEATURES);
        for bot in [true, true, true, false] {
            d.push(&[0.0; NUM_FEATURES], bot).unwrap();
        }
        let clean = [0.9, 0.9, 0.1, 0.2];
        // The "model" scores a triggered row low.
        let success = backdoor_success(&d, &clean, 0.5, |x| {
            Some(
                x.chunks(NUM_FEATURES)
                    .map(|r| if r[idx::UA_BROWSER] == 1.0 { 0.3 } else { 0.9 })
                    .collect(),
            )
        });
        assert_eq!(success, Some(1.0));
        assert_eq!(backdoor_success(&d, &[0.0; 4], 0.5, |_| None), None);
    }
}
