//! `score --rank rules-first`: the tenant's own reference, from a first pass
//! over the log, and the rank of each session in the second pass.
//!
//! Rules first: the weak labeller's vote sum decides; the sessions it ties
//! on (most have no vote) are ordered by a tie-break in [0, 1], the local
//! anomaly percentile ([`RobustProfile`], how unusual the session is for
//! this log) mixed with the model's percentile among this log's sessions
//! ([`tie_break`]), and equal tie-breaks by the raw anomaly score. With no
//! ground truth anywhere this was the best ranking experiment 7 measured
//! (`weak::combine::rules_first` with τ below the rules' weight step, i.e.
//! this lexicographic order, and an anomaly share of 1 on every seed). The
//! key is compared as a tuple, not summed into one number, so the rules come
//! first whatever their weights and the order does not lose precision.
//!
//! The reference is a bounded, deterministic sample of the log's sessions
//! ([`Thinned`]): every session until [`MAX_REFERENCE`], then every second,
//! fourth, ... one, so a long log costs at most `MAX_REFERENCE` feature rows.

use fedsec_detector::features::{self, NUM_FEATURES};
use fedsec_detector::model::Scorer;
use fedsec_detector::weak::anomaly::RobustProfile;
use fedsec_detector::weak::combine::{Percentiles, tie_break};
use fedsec_detector::weak::{Labeller, SessionFacts};

use super::rank::RankKey;

/// Most sessions kept in the reference sample.
pub(super) const MAX_REFERENCE: usize = 100_000;

/// A bounded, deterministic sample of feature rows: all rows until the cap,
/// then every `stride`-th, the stride doubling (and every other kept row
/// dropped) whenever the cap is reached again.
#[derive(Debug, Default)]
pub(super) struct Thinned {
    rows: Vec<f32>,
    seen: u64,
    stride: u64,
}

impl Thinned {
    /// Offers one row of [`NUM_FEATURES`] values.
    pub(super) fn push(&mut self, row: &[f32; NUM_FEATURES]) {
        let stride = self.stride.max(1);
        let take = self.seen.is_multiple_of(stride);
        self.seen += 1;
        if !take {
            return;
        }
        if self.rows.len() / NUM_FEATURES >= MAX_REFERENCE {
            // Keep rows 0, 2, 4, ... of the sample and halve the rate.
            let kept: Vec<f32> = self
                .rows
                .chunks_exact(NUM_FEATURES)
                .step_by(2)
                .flatten()
                .copied()
                .collect();
            self.rows = kept;
            self.stride = stride * 2;
            if !(self.seen - 1).is_multiple_of(self.stride) {
                return;
            }
        }
        self.rows.extend_from_slice(row);
    }

    /// Row-major rows kept.
    pub(super) fn rows(&self) -> &[f32] {
        &self.rows
    }
}

/// What a rules-first rank needs besides the session.
pub(super) struct RulesFirst {
    /// The weak labeller (built-in rules, or `[labels]` of `--labels-config`).
    pub(super) labeller: Labeller,
    profile: Option<RobustProfile>,
    model: Percentiles,
    anomaly_share: f32,
}

/// One session's rules-first rank and its parts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct RankParts {
    /// The rank: (rules' vote sum, tie-break, raw anomaly score).
    pub(super) key: RankKey,
    /// The rules' vote sum (never −0).
    pub(super) rules_score: f64,
    /// The tie-break in [0, 1].
    pub(super) tie_break: f32,
    /// The session's anomaly percentile among this log's sessions.
    pub(super) anomaly_percentile: f32,
}

impl RulesFirst {
    /// The reference from the sampled rows of the first pass; the model's
    /// percentiles only when they carry weight (`anomaly_share < 1`).
    pub(super) fn new(
        labeller: Labeller,
        sample: &Thinned,
        scorer: &Scorer,
        anomaly_share: f32,
    ) -> Result<Self, fedsec_detector::model::ModelError> {
        let profile = RobustProfile::fit(sample.rows(), NUM_FEATURES);
        let model = if anomaly_share < 1.0 {
            Percentiles::new(&scorer.logits(sample.rows())?)
        } else {
            Percentiles::default()
        };
        Ok(Self {
            labeller,
            profile,
            model,
            anomaly_share,
        })
    }

    /// The rank of one session with features `f` and model logit `logit`.
    pub(super) fn rank(
        &self,
        session: &fedsec_detector::session::Session,
        f: &features::SessionFeatures,
        logit: f32,
    ) -> RankParts {
        let score = self.labeller.label(&SessionFacts::of(session, f)).score;
        // + 0.0 turns −0 (cancelling votes) into 0; a non-finite sum is no vote.
        let rules_score = if score.is_finite() { score + 0.0 } else { 0.0 };
        let (anomaly, anomaly_percentile) = match &self.profile {
            Some(p) => {
                let a = p.score(&f.values);
                (a, p.percentile(a))
            }
            None => (0.0, 0.5),
        };
        let t = tie_break(self.model.of(logit), anomaly_percentile, self.anomaly_share);
        RankParts {
            key: RankKey {
                primary: rules_score,
                tie: t,
                anomaly,
            },
            rules_score,
            tie_break: t,
            anomaly_percentile,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(v: f32) -> [f32; NUM_FEATURES] {
        [v; NUM_FEATURES]
    }

    #[test]
    fn the_sample_keeps_everything_below_the_cap_and_thins_evenly_above() {
        let mut t = Thinned::default();
        for i in 0..10 {
            t.push(&row(i as f32));
        }
        assert_eq!(t.rows().len(), 10 * NUM_FEATURES);
        let mut t = Thinned::default();
        let n = MAX_REFERENCE * 4 + 3;
        for i in 0..n {
            t.push(&row(i as f32));
        }
        let kept: Vec<f32> = t.rows().chunks_exact(NUM_FEATURES).map(|r| r[0]).collect();
        assert!(kept.len() <= MAX_REFERENCE, "{}", kept.len());
        assert!(kept.len() >= MAX_REFERENCE / 2, "{}", kept.len());
        // Evenly spread: the same stride between all kept rows, from the start to the end.
        let stride = kept[1] - kept[0];
        assert!(kept.windows(2).all(|w| w[1] - w[0] == stride));
        assert_eq!(kept[0], 0.0);
        assert!(kept[kept.len() - 1] as usize + stride as usize >= n - 1);
    }
}
