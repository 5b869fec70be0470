//! Metrics against values computed once with scikit-learn 1.9.1
//! (`roc_auc_score`, `average_precision_score`,
//! `max(tpr[fpr <= x])` over `roc_curve(drop_intermediate=False)`,
//! `confusion_matrix(y, s >= t)`). The script that produced them is quoted at
//! the bottom of this file.
#![allow(clippy::unwrap_used)]

use fedsec_detector::metrics::{
    Confusion, MetricError, average_precision, confusion, pr_auc, recall_at_fpr, roc_auc, summary,
};

const A_SCORES: [f32; 16] = [
    0.9, 0.8, 0.8, 0.7, 0.6, 0.6, 0.6, 0.5, 0.4, 0.3, 0.3, 0.2, 0.1, 0.05, 0.9, 0.35,
];
const A_LABELS: [u8; 16] = [1, 1, 0, 1, 0, 1, 0, 0, 1, 0, 0, 0, 1, 0, 0, 1];

/// Scores are k/64 (exact in f32, many ties).
const B_K: [u8; 240] = [
    33, 23, 19, 23, 21, 37, 32, 29, 46, 22, 35, 31, 24, 22, 36, 45, 31, 17, 24, 26, 37, 10, 27, 24,
    20, 34, 18, 32, 21, 12, 25, 25, 21, 32, 26, 33, 26, 49, 25, 11, 18, 23, 16, 32, 37, 25, 35, 27,
    32, 24, 32, 17, 44, 35, 22, 29, 22, 28, 33, 24, 17, 47, 32, 36, 44, 26, 23, 36, 21, 25, 25, 33,
    42, 22, 35, 31, 43, 36, 15, 23, 25, 43, 23, 17, 36, 24, 29, 27, 40, 27, 22, 21, 21, 30, 15, 9,
    34, 20, 33, 13, 16, 38, 35, 23, 23, 42, 19, 16, 25, 25, 28, 37, 25, 21, 33, 28, 27, 17, 34, 22,
    30, 18, 8, 37, 8, 30, 21, 9, 27, 13, 33, 15, 34, 27, 28, 24, 23, 41, 21, 11, 32, 15, 56, 24,
    20, 34, 21, 42, 48, 29, 25, 31, 8, 16, 23, 37, 34, 41, 43, 33, 40, 51, 26, 48, 15, 39, 43, 18,
    36, 20, 41, 28, 38, 18, 16, 27, 13, 22, 34, 47, 17, 28, 28, 22, 27, 32, 33, 26, 32, 24, 34, 24,
    33, 13, 40, 38, 37, 39, 28, 26, 37, 9, 24, 21, 27, 34, 44, 45, 30, 37, 24, 36, 33, 32, 18, 9,
    25, 8, 26, 40, 36, 29, 42, 23, 20, 55, 32, 28, 40, 3, 49, 44, 43, 19, 32, 35, 31, 33, 20, 19,
];
const B_LABELS: &str = "101000110000011110010010100000001101110000001011001000000000011010010000101110101110101000000001101001000100000100100000000110000010100001100010010110100000101010010000001010000010111000000000100011101000001110000100001110101110100110111101";

fn a() -> (Vec<f32>, Vec<bool>) {
    (
        A_SCORES.to_vec(),
        A_LABELS.iter().map(|&y| y == 1).collect(),
    )
}

fn b() -> (Vec<f32>, Vec<bool>) {
    (
        B_K.iter().map(|&k| f32::from(k) / 64.0).collect(),
        B_LABELS.bytes().map(|c| c == b'1').collect(),
    )
}

fn close(x: f64, want: f64) {
    assert!((x - want).abs() < 1e-12, "{x} != {want}");
}

#[test]
fn small_vector_with_ties_matches_sklearn() {
    let (s, y) = a();
    close(roc_auc(&s, &y).unwrap(), 0.6031746031746033);
    close(average_precision(&s, &y).unwrap(), 0.5160173160173159);
    close(pr_auc(&s, &y).unwrap(), 0.5160173160173159);
    for (x, want) in [
        (0.0, 0.0),
        (0.01, 0.0),
        (0.05, 0.0),
        (0.1, 0.0),
        (0.3, 0.42857142857142855),
    ] {
        close(recall_at_fpr(&s, &y, x).unwrap(), want);
    }
    let cm = |tp, fp, tn, fn_| Confusion { tp, fp, tn, fn_ };
    assert_eq!(confusion(&s, &y, 0.5).unwrap(), cm(4, 5, 4, 3));
    assert_eq!(confusion(&s, &y, 0.6).unwrap(), cm(4, 4, 5, 3));
    assert_eq!(confusion(&s, &y, 0.375).unwrap(), cm(5, 5, 4, 2));
}

#[test]
fn larger_vector_matches_sklearn() {
    let (s, y) = b();
    assert_eq!((s.len(), y.len()), (240, 240));
    close(roc_auc(&s, &y).unwrap(), 0.7620431893687708);
    close(average_precision(&s, &y).unwrap(), 0.6195327912062902);
    for (x, want) in [
        (0.0, 0.023255813953488372),
        (0.01, 0.023255813953488372),
        (0.05, 0.2441860465116279),
        (0.1, 0.37209302325581395),
        (0.3, 0.7441860465116279),
    ] {
        close(recall_at_fpr(&s, &y, x).unwrap(), want);
    }
    let c = confusion(&s, &y, 0.5).unwrap();
    assert_eq!(
        c,
        Confusion {
            tp: 58,
            fp: 37,
            tn: 117,
            fn_: 28
        }
    );
    close(c.recall(), 58.0 / 86.0);
    close(c.precision(), 58.0 / 95.0);
    close(c.fpr(), 37.0 / 154.0);
    assert_eq!(
        confusion(&s, &y, 0.6).unwrap(),
        Confusion {
            tp: 25,
            fp: 10,
            tn: 144,
            fn_: 61
        }
    );
    assert_eq!(
        confusion(&s, &y, 0.375).unwrap(),
        Confusion {
            tp: 74,
            fp: 86,
            tn: 68,
            fn_: 12
        }
    );
    let sm = summary(&s, &y).unwrap();
    close(sm.recall_at_1pct_fpr, 0.023255813953488372);
}

#[test]
fn invariances_and_edge_cases() {
    let (s, y) = b();
    // AUC is invariant under strictly increasing maps and flips under negation.
    let t: Vec<f32> = s.iter().map(|x| x * 3.0 - 1.0).collect();
    close(roc_auc(&t, &y).unwrap(), roc_auc(&s, &y).unwrap());
    let neg: Vec<f32> = s.iter().map(|x| -x).collect();
    close(roc_auc(&neg, &y).unwrap(), 1.0 - roc_auc(&s, &y).unwrap());
    // All tied: 0.5.
    close(roc_auc(&vec![0.3; 240], &y).unwrap(), 0.5);
    // Perfect separation.
    let perfect: Vec<f32> = y.iter().map(|&l| if l { 1.0 } else { 0.0 }).collect();
    close(roc_auc(&perfect, &y).unwrap(), 1.0);
    close(average_precision(&perfect, &y).unwrap(), 1.0);
    close(recall_at_fpr(&perfect, &y, 0.0).unwrap(), 1.0);
    assert_eq!(
        roc_auc(&[0.1, 0.2], &[true, true]),
        Err(MetricError::OneClass {
            positives: 2,
            negatives: 0
        })
    );
    assert_eq!(
        roc_auc(&[0.1], &[true, false]),
        Err(MetricError::Lengths {
            scores: 1,
            labels: 2
        })
    );
    assert_eq!(
        roc_auc(&[0.1, f32::NAN], &[true, false]),
        Err(MetricError::NanScore(1))
    );
}

// The reference script (Python 3.11, numpy, scikit-learn 1.9.1):
//
// a_s = [0.9, 0.8, 0.8, 0.7, 0.6, 0.6, 0.6, 0.5, 0.4, 0.3, 0.3, 0.2, 0.1, 0.05, 0.9, 0.35]
// a_y = [1,1,0,1,0,1,0,0,1,0,0,0,1,0,0,1]
// rng = np.random.default_rng(20240304); n = 240
// b_y = (rng.random(n) < 0.35).astype(int)
// b_k = np.clip(np.round(rng.normal(24 + 10*b_y, 9)), 0, 63).astype(int); b_s = b_k / 64.0
// def rec(s, y, x):
//     fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
//     return max(tpr[fpr <= x])
// for s, y in [(np.array(a_s, dtype=np.float32), a_y), (b_s, b_y)]:
//     roc_auc_score(y, s); average_precision_score(y, s)
//     [rec(s, y, x) for x in [0, 0.01, 0.05, 0.1, 0.3]]
//     [confusion_matrix(y, (s >= t).astype(int)).ravel() for t in [0.5, 0.6, 0.375]]
