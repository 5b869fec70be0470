//! Detection metrics on scores and 0/1 labels: ROC-AUC (exact, ties count
//! one half), PR-AUC as average precision, recall at a fixed false-positive
//! rate, and the confusion matrix at a threshold. Conventions follow
//! scikit-learn (`roc_auc_score`, `average_precision_score`, `roc_curve`,
//! `confusion_matrix` with `score >= threshold` as positive); the tests check
//! values computed with scikit-learn 1.x. [`class_report`] breaks an abuse
//! score down by the three traffic classes.

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

/// How an abuse score treats each of the three classes.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ClassReport {
    /// ROC-AUC of abusive bots against everything else.
    pub abuse_vs_rest_auc: f64,
    /// ROC-AUC of abusive bots against humans only.
    pub abuse_vs_human_auc: f64,
    /// ROC-AUC of abusive bots against good bots only (NaN without good bots).
    pub abuse_vs_good_bot_auc: f64,
    /// The score threshold with at most 1 % of humans above it.
    pub threshold_1pct_human_fpr: f64,
    /// Share of abusive bots at or above that threshold.
    pub abuse_recall: f64,
    /// Share of good bots at or above it (flagged as abuse by mistake).
    pub good_bot_flag_rate: f64,
    /// Share of humans at or above it (≤ 1 %).
    pub human_flag_rate: f64,
    /// Rows per class: human, good bot, abusive bot.
    pub counts: [usize; 3],
}

/// Breaks an abuse score down by class. Needs humans and abusive bots.
pub fn class_report(
    scores: &[f32],
    classes: &[crate::dataset::TrafficClass],
) -> Result<ClassReport, MetricError> {
    use crate::dataset::TrafficClass as C;
    let abuse: Vec<bool> = classes.iter().map(|c| c.is_abuse()).collect();
    check(scores, &abuse)?;
    let subset = |keep: C| {
        let (s, l): (Vec<f32>, Vec<bool>) = scores
            .iter()
            .zip(classes)
            .filter(|(_, c)| **c == C::AbusiveBot || **c == keep)
            .map(|(s, c)| (*s, c.is_abuse()))
            .unzip();
        roc_auc(&s, &l)
    };
    let mut human: Vec<f32> = scores
        .iter()
        .zip(classes)
        .filter(|(_, c)| **c == C::Human)
        .map(|(s, _)| *s)
        .collect();
    if human.is_empty() {
        return Err(MetricError::OneClass {
            positives: abuse.iter().filter(|&&a| a).count(),
            negatives: 0,
        });
    }
    human.sort_by(|a, b| b.total_cmp(a));
    // Smallest threshold with at most 1 % of humans at or above it: just
    // above the score of the human at rank floor(1 % · n).
    let k = human.len() / 100;
    let threshold = f64::from(human[k]).next_up();
    let share = |c: C| {
        let (n, hit) = scores
            .iter()
            .zip(classes)
            .filter(|(_, x)| **x == c)
            .fold((0usize, 0usize), |(n, h), (s, _)| {
                (n + 1, h + usize::from(f64::from(*s) >= threshold))
            });
        if n == 0 {
            f64::NAN
        } else {
            hit as f64 / n as f64
        }
    };
    let count = |c: C| classes.iter().filter(|x| **x == c).count();
    Ok(ClassReport {
        abuse_vs_rest_auc: roc_auc(scores, &abuse)?,
        abuse_vs_human_auc: subset(C::Human)?,
        abuse_vs_good_bot_auc: subset(C::GoodBot).unwrap_or(f64::NAN),
        threshold_1pct_human_fpr: threshold,
        abuse_recall: share(C::AbusiveBot),
        good_bot_flag_rate: share(C::GoodBot),
        human_flag_rate: share(C::Human),
        counts: [count(C::Human), count(C::GoodBot), count(C::AbusiveBot)],
    })
}

#[cfg(test)]
mod class_tests {
    use super::*;
    use crate::dataset::TrafficClass as C;

    #[test]
    fn the_three_classes_are_reported_apart() {
        // 200 humans at 0.00..0.199, 10 good bots at 0.9, 10 abusive at 0.5..0.95.
        let mut scores = Vec::new();
        let mut classes = Vec::new();
        for i in 0..200 {
            scores.push(i as f32 / 1000.0);
            classes.push(C::Human);
        }
        for _ in 0..10 {
            scores.push(0.9);
            classes.push(C::GoodBot);
        }
        for i in 0..10 {
            scores.push(0.5 + i as f32 * 0.05);
            classes.push(C::AbusiveBot);
        }
        let r = class_report(&scores, &classes).unwrap();
        assert_eq!(r.counts, [200, 10, 10]);
        assert_eq!(r.abuse_vs_human_auc, 1.0);
        // 2 humans (0.198, 0.199) may be above: threshold just above 0.198.
        assert!(r.human_flag_rate <= 0.01);
        assert_eq!(r.abuse_recall, 1.0);
        assert_eq!(
            r.good_bot_flag_rate, 1.0,
            "every good bot scores like abuse here"
        );
        // abusive 0.5..0.95 vs good 0.9: 1 tie-ish above, 8 below.
        assert!(r.abuse_vs_good_bot_auc < 0.3, "{}", r.abuse_vs_good_bot_auc);
        assert!(r.abuse_vs_rest_auc < 1.0 && r.abuse_vs_rest_auc > r.abuse_vs_good_bot_auc);
        let no_humans = class_report(&[0.1, 0.9], &[C::GoodBot, C::AbusiveBot]);
        assert!(no_humans.is_err());
    }
}
