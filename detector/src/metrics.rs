//! Detection metrics on scores and 0/1 labels: ROC-AUC (exact, ties count
//! one half), PR-AUC as average precision, recall at a fixed false-positive
//! rate, and the confusion matrix at a threshold. Conventions follow
//! scikit-learn (`roc_auc_score`, `average_precision_score`, `roc_curve`,
//! `confusion_matrix` with `score >= threshold` as positive); the tests check
//! values computed with scikit-learn 1.x.

/// Why a metric is undefined.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetricError {
    /// Score and label vectors differ in length.
    #[error("{scores} scores but {labels} labels")]
    Lengths {
        /// Scores.
        scores: usize,
        /// Labels.
        labels: usize,
    },
    /// A score is NaN.
    #[error("score {0} is NaN")]
    NanScore(usize),
    /// Only one class present.
    #[error("need both classes, got {positives} positives and {negatives} negatives")]
    OneClass {
        /// Positives.
        positives: usize,
        /// Negatives.
        negatives: usize,
    },
}

fn check(scores: &[f32], labels: &[bool]) -> Result<(usize, usize), MetricError> {
    if scores.len() != labels.len() {
        return Err(MetricError::Lengths {
            scores: scores.len(),
            labels: labels.len(),
        });
    }
    if let Some(i) = scores.iter().position(|s| s.is_nan()) {
        return Err(MetricError::NanScore(i));
    }
    let positives = labels.iter().filter(|&&l| l).count();
    let negatives = labels.len() - positives;
    if positives == 0 || negatives == 0 {
        return Err(MetricError::OneClass {
            positives,
            negatives,
        });
    }
    Ok((positives, negatives))
}

/// Indices sorted by decreasing score.
fn by_score_desc(scores: &[f32]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    idx
}

/// One point of the ROC / PR curves per distinct score, from the highest
/// threshold down: (true positives, false positives) at `score >= threshold`.
fn curve(scores: &[f32], labels: &[bool]) -> Vec<(usize, usize, f32)> {
    let idx = by_score_desc(scores);
    let mut out = Vec::new();
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut i = 0;
    while i < idx.len() {
        let s = scores[idx[i]];
        while i < idx.len() && scores[idx[i]] == s {
            if labels[idx[i]] {
                tp += 1;
            } else {
                fp += 1;
            }
            i += 1;
        }
        out.push((tp, fp, s));
    }
    out
}

/// Area under the ROC curve: the probability that a random bot scores above a
/// random human, ties counting one half (Mann–Whitney U with mid-ranks; equal
/// to scikit-learn's trapezoidal `roc_auc_score`).
pub fn roc_auc(scores: &[f32], labels: &[bool]) -> Result<f64, MetricError> {
    let (pos, neg) = check(scores, labels)?;
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut rank_sum_pos = 0.0f64;
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j < idx.len() && scores[idx[j]] == scores[idx[i]] {
            j += 1;
        }
        // Ranks i+1 ..= j share the mid-rank.
        let mid = (i + 1 + j) as f64 / 2.0;
        let pos_in_tie = idx[i..j].iter().filter(|&&k| labels[k]).count();
        rank_sum_pos += mid * pos_in_tie as f64;
        i = j;
    }
    let (p, n) = (pos as f64, neg as f64);
    Ok((rank_sum_pos - p * (p + 1.0) / 2.0) / (p * n))
}

/// Average precision (the step-wise area under the precision–recall curve,
/// scikit-learn's `average_precision_score`): Σ (Rₖ − Rₖ₋₁)·Pₖ over distinct
/// thresholds.
pub fn average_precision(scores: &[f32], labels: &[bool]) -> Result<f64, MetricError> {
    let (pos, _) = check(scores, labels)?;
    let mut ap = 0.0;
    let mut prev_recall = 0.0;
    for (tp, fp, _) in curve(scores, labels) {
        let recall = tp as f64 / pos as f64;
        let precision = tp as f64 / (tp + fp) as f64;
        ap += (recall - prev_recall) * precision;
        prev_recall = recall;
    }
    Ok(ap)
}

/// PR-AUC, reported as average precision (see [`average_precision`]).
pub fn pr_auc(scores: &[f32], labels: &[bool]) -> Result<f64, MetricError> {
    average_precision(scores, labels)
}

/// Highest recall (true-positive rate) among thresholds whose false-positive
/// rate is at most `max_fpr` (scikit-learn: `max(tpr[fpr <= max_fpr])` over
/// `roc_curve`). 0 if even the highest threshold exceeds `max_fpr`.
pub fn recall_at_fpr(scores: &[f32], labels: &[bool], max_fpr: f64) -> Result<f64, MetricError> {
    let (pos, neg) = check(scores, labels)?;
    let mut best = 0.0f64;
    for (tp, fp, _) in curve(scores, labels) {
        if fp as f64 / neg as f64 <= max_fpr {
            best = best.max(tp as f64 / pos as f64);
        }
    }
    Ok(best)
}

/// Counts at a threshold (positive = `score >= threshold`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Confusion {
    /// Bots flagged.
    pub tp: u64,
    /// Humans flagged.
    pub fp: u64,
    /// Humans passed.
    pub tn: u64,
    /// Bots passed.
    pub fn_: u64,
}

impl Confusion {
    /// tp / (tp + fn), 0 when undefined.
    pub fn recall(&self) -> f64 {
        ratio(self.tp, self.tp + self.fn_)
    }
    /// tp / (tp + fp), 0 when undefined.
    pub fn precision(&self) -> f64 {
        ratio(self.tp, self.tp + self.fp)
    }
    /// fp / (fp + tn), 0 when undefined.
    pub fn fpr(&self) -> f64 {
        ratio(self.fp, self.fp + self.tn)
    }
    /// (tp + tn) / all.
    pub fn accuracy(&self) -> f64 {
        ratio(self.tp + self.tn, self.tp + self.tn + self.fp + self.fn_)
    }
    /// Harmonic mean of precision and recall.
    pub fn f1(&self) -> f64 {
        ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn_)
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// Confusion matrix at `threshold` (NaN scores count as negative predictions).
pub fn confusion(
    scores: &[f32],
    labels: &[bool],
    threshold: f32,
) -> Result<Confusion, MetricError> {
    if scores.len() != labels.len() {
        return Err(MetricError::Lengths {
            scores: scores.len(),
            labels: labels.len(),
        });
    }
    let mut c = Confusion::default();
    for (&s, &y) in scores.iter().zip(labels) {
        match (s >= threshold, y) {
            (true, true) => c.tp += 1,
            (true, false) => c.fp += 1,
            (false, false) => c.tn += 1,
            (false, true) => c.fn_ += 1,
        }
    }
    Ok(c)
}

/// The usual summary of a scored holdout set.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Summary {
    /// ROC-AUC.
    pub roc_auc: f64,
    /// PR-AUC (average precision).
    pub pr_auc: f64,
    /// Recall at 1 % false-positive rate.
    pub recall_at_1pct_fpr: f64,
    /// Confusion at threshold 0.5.
    pub at_half: Confusion,
}

/// Computes [`Summary`].
pub fn summary(scores: &[f32], labels: &[bool]) -> Result<Summary, MetricError> {
    Ok(Summary {
        roc_auc: roc_auc(scores, labels)?,
        pr_auc: pr_auc(scores, labels)?,
        recall_at_1pct_fpr: recall_at_fpr(scores, labels, 0.01)?,
        at_half: confusion(scores, labels, 0.5)?,
    })
}
