//! The day-one local anomaly score: how far a session's features sit from
//! the tenant's own typical session, with nothing learned from labels.
//!
//! [`RobustProfile::fit`] takes the tenant's own feature rows and keeps, per
//! feature, the median and the median absolute deviation (MAD, scaled by
//! 1.4826 so it estimates σ for normal data). A session's score is the mean
//! over features of its robust z-score `|x − median| / MAD`, each capped at
//! [`Z_CAP`] so one extreme feature cannot dominate; features whose MAD is 0
//! on this tenant (constant for most sessions) use the mean absolute
//! deviation instead, or are skipped when that is 0 too. The profile
//! also keeps its training scores sorted, so [`RobustProfile::percentile`]
//! maps a score to its rank among the tenant's own sessions, in [0, 1]: the
//! scale the blend with the global model uses ([`blend`]).
//!
//! The profile is local: it is fitted on the tenant's rows and never sent
//! (it would leak them); it only ranks sessions for the tenant itself.

/// Cap on one feature's robust z-score.
pub const Z_CAP: f32 = 10.0;

/// Per-feature medians and scales of one tenant's sessions.
#[derive(Debug, Clone, PartialEq)]
pub struct RobustProfile {
    median: Vec<f32>,
    scale: Vec<f32>,
    sorted_scores: Vec<f32>,
}

fn median_of(xs: &mut [f32]) -> f32 {
    xs.sort_by(f32::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

impl RobustProfile {
    /// Fits on row-major `features` of width `dim`; `None` without rows.
    pub fn fit(features: &[f32], dim: usize) -> Option<Self> {
        if dim == 0 || features.is_empty() || !features.len().is_multiple_of(dim) {
            return None;
        }
        let n = features.len() / dim;
        let mut median = Vec::with_capacity(dim);
        let mut scale = Vec::with_capacity(dim);
        let mut col = vec![0f32; n];
        for j in 0..dim {
            for (i, c) in col.iter_mut().enumerate() {
                *c = features[i * dim + j];
            }
            let m = median_of(&mut col);
            let mut dev: Vec<f32> = col.iter().map(|x| (x - m).abs()).collect();
            let mean_dev = dev.iter().sum::<f32>() / n as f32;
            let mad = 1.4826 * median_of(&mut dev);
            median.push(m);
            scale.push(if mad > 1e-6 {
                mad
            } else if mean_dev > 1e-6 {
                1.2533 * mean_dev
            } else {
                0.0
            });
        }
        let mut p = Self {
            median,
            scale,
            sorted_scores: Vec::new(),
        };
        let mut s = p.scores(features);
        s.sort_by(f32::total_cmp);
        p.sorted_scores = s;
        Some(p)
    }

    /// Width the profile was fitted on.
    pub fn dim(&self) -> usize {
        self.median.len()
    }

    /// Score of one row (higher = more unusual for this tenant).
    pub fn score(&self, row: &[f32]) -> f32 {
        let mut sum = 0.0f32;
        let mut used = 0u32;
        for ((x, m), s) in row.iter().zip(&self.median).zip(&self.scale) {
            if *s > 0.0 {
                sum += ((x - m).abs() / s).min(Z_CAP);
                used += 1;
            }
        }
        if used == 0 { 0.0 } else { sum / used as f32 }
    }

    /// Scores of row-major rows of width [`dim`](Self::dim).
    pub fn scores(&self, features: &[f32]) -> Vec<f32> {
        features
            .chunks_exact(self.dim().max(1))
            .map(|r| self.score(r))
            .collect()
    }

    /// Share of the tenant's own sessions scoring at or below `score`, in [0, 1].
    pub fn percentile(&self, score: f32) -> f32 {
        if self.sorted_scores.is_empty() {
            return 0.5;
        }
        let k = self.sorted_scores.partition_point(|&s| s <= score);
        k as f32 / self.sorted_scores.len() as f32
    }
}

/// The day-one score: `(1 − β)·p + β·percentile`, with `p` the global
/// model's abuse probability and `percentile` the session's local anomaly
/// rank; β in [0, 1] (0 = the global model alone).
pub fn blend(probability: f32, percentile: f32, beta: f32) -> f32 {
    let b = beta.clamp(0.0, 1.0);
    (1.0 - b) * probability + b * percentile
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outliers_score_above_typical_rows_and_percentiles_are_ranks() {
        // 99 rows near (0, 0), one far away.
        let mut rows = Vec::new();
        for i in 0..99 {
            rows.extend_from_slice(&[(i % 7) as f32 * 0.1, (i % 5) as f32 * 0.1]);
        }
        rows.extend_from_slice(&[5.0, -4.0]);
        let p = RobustProfile::fit(&rows, 2).unwrap();
        let s = p.scores(&rows);
        let far = s[99];
        assert!(s[..99].iter().all(|&x| x < far), "the outlier ranks last");
        assert_eq!(p.percentile(far), 1.0);
        assert!(p.percentile(0.0) < 0.5);
        assert!(RobustProfile::fit(&[], 2).is_none());
        assert!(RobustProfile::fit(&[1.0, 2.0, 3.0], 2).is_none());
    }

    #[test]
    fn constant_features_are_skipped_and_blend_is_a_convex_mix() {
        let rows = [1.0, 0.0, 1.0, 1.0, 1.0, 2.0, 1.0, 3.0];
        let p = RobustProfile::fit(&rows, 2).unwrap();
        // Feature 0 is constant: a row differing only there scores like the median row.
        assert_eq!(p.score(&[9.0, 1.5]), p.score(&[1.0, 1.5]));
        assert_eq!(blend(0.8, 0.2, 0.0), 0.8);
        assert_eq!(blend(0.8, 0.2, 1.0), 0.2);
        assert!((blend(0.8, 0.2, 0.5) - 0.5).abs() < 1e-6);
    }
}
