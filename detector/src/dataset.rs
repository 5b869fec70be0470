//! [`Dataset`]: a row-major feature matrix with 0/1 labels and an opaque tag
//! per row (the synthetic generator stores the archetype there), plus seeded,
//! stratified train/holdout splits; and [`TrafficClass`], the three classes
//! of traffic.
//!
//! **Three classes, one score.** Traffic is human, a good bot (crawlers that
//! announce themselves, uptime monitors) or an abusive bot. The model scores
//! *abuse*: label 1 is an abusive bot, 0 is a human or a good bot. Good bots
//! are told apart from abuse by what they are — a crawler whose address is
//! in its published ranges, a bot that names itself and behaves — which the
//! features carry (`crawler_verified`, `ua_known_bot`, ...), and they are
//! reported separately by `score` and by the class metrics
//! ([`crate::metrics::class_report`]). A third output would need a wider
//! model (the wire's `ModelSpec` has one logit) and would teach the shared
//! model to reward a bot for *claiming* to be good.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

/// Why rows were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DatasetError {
    /// A row has the wrong width.
    #[error("row has {got} values, the dataset has {dim} features")]
    Width {
        /// Dataset width.
        dim: usize,
        /// Row width.
        got: usize,
    },
    /// A value is NaN or infinite.
    #[error("row {row}, feature {feature} is not finite")]
    NonFinite {
        /// Row index.
        row: usize,
        /// Feature index.
        feature: usize,
    },
    /// Feature, label and tag vectors disagree.
    #[error(
        "{features} feature values, {labels} labels and {tags} tags do not describe the same rows"
    )]
    Lengths {
        /// Feature values.
        features: usize,
        /// Labels.
        labels: usize,
        /// Tags.
        tags: usize,
    },
    /// A label other than 0 or 1.
    #[error("label of row {0} is not 0 or 1")]
    Label(usize),
    /// A training weight that is not finite and positive.
    #[error("weight of row {0} is not finite and positive")]
    Weight(usize),
}

/// The three classes of traffic.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum TrafficClass {
    /// A person.
    Human,
    /// A bot the site wants: announced crawlers, monitors.
    GoodBot,
    /// A bot abusing the site (the positive class of the model).
    AbusiveBot,
}

impl TrafficClass {
    /// All classes.
    pub const ALL: [TrafficClass; 3] = [Self::Human, Self::GoodBot, Self::AbusiveBot];

    /// Stable name (`human`, `good_bot`, `abusive_bot`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Human => "human",
            Self::GoodBot => "good_bot",
            Self::AbusiveBot => "abusive_bot",
        }
    }

    /// The model's label: abusive bots are positive.
    pub fn is_abuse(self) -> bool {
        self == Self::AbusiveBot
    }
}

impl std::str::FromStr for TrafficClass {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|c| c.name() == s)
            .ok_or_else(|| format!("unknown class {s:?} (expected human, good_bot or abusive_bot)"))
    }
}

impl std::fmt::Display for TrafficClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Feature rows with labels (1 = abusive bot, the model's positive class),
/// tags and per-row training weights (1 unless a row was pushed with
/// [`Dataset::push_weighted`]: a silver label's confidence, see
/// [`crate::weak::silver`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Dataset {
    dim: usize,
    features: Vec<f32>,
    labels: Vec<f32>,
    tags: Vec<u32>,
    weights: Vec<f32>,
}

impl Dataset {
    /// An empty dataset of `dim` features.
    pub fn new(dim: usize) -> Self {
        Self {
            dim,
            ..Self::default()
        }
    }

    /// Wraps existing vectors after checking them.
    pub fn from_parts(
        dim: usize,
        features: Vec<f32>,
        labels: Vec<f32>,
        tags: Vec<u32>,
    ) -> Result<Self, DatasetError> {
        if dim == 0 || features.len() != labels.len() * dim || tags.len() != labels.len() {
            return Err(DatasetError::Lengths {
                features: features.len(),
                labels: labels.len(),
                tags: tags.len(),
            });
        }
        if let Some(i) = features.iter().position(|v| !v.is_finite()) {
            return Err(DatasetError::NonFinite {
                row: i / dim,
                feature: i % dim,
            });
        }
        if let Some(i) = labels.iter().position(|&y| y != 0.0 && y != 1.0) {
            return Err(DatasetError::Label(i));
        }
        let weights = vec![1.0; labels.len()];
        Ok(Self {
            dim,
            features,
            labels,
            tags,
            weights,
        })
    }

    /// Appends a row with tag 0.
    pub fn push(&mut self, row: &[f32], is_bot: bool) -> Result<(), DatasetError> {
        self.push_tagged(row, is_bot, 0)
    }

    /// Appends a row with a tag.
    pub fn push_tagged(&mut self, row: &[f32], is_bot: bool, tag: u32) -> Result<(), DatasetError> {
        self.push_weighted(row, is_bot, tag, 1.0)
    }

    /// Appends a row with a tag and a training weight (finite, in (0, 1];
    /// anything else is stored as 1 if above, refused if not positive).
    pub fn push_weighted(
        &mut self,
        row: &[f32],
        is_bot: bool,
        tag: u32,
        weight: f32,
    ) -> Result<(), DatasetError> {
        if !(weight.is_finite() && weight > 0.0) {
            return Err(DatasetError::Weight(self.len()));
        }
        if row.len() != self.dim {
            return Err(DatasetError::Width {
                dim: self.dim,
                got: row.len(),
            });
        }
        if let Some(feature) = row.iter().position(|v| !v.is_finite()) {
            return Err(DatasetError::NonFinite {
                row: self.len(),
                feature,
            });
        }
        self.features.extend_from_slice(row);
        self.labels.push(if is_bot { 1.0 } else { 0.0 });
        self.tags.push(tag);
        self.weights.push(weight.min(1.0));
        Ok(())
    }

    /// Number of features per row.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// No rows.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Row-major features (`len × dim`).
    pub fn features(&self) -> &[f32] {
        &self.features
    }

    /// Labels, 1.0 for abusive bots.
    pub fn labels(&self) -> &[f32] {
        &self.labels
    }

    /// Tags.
    pub fn tags(&self) -> &[u32] {
        &self.tags
    }

    /// Training weight of each row (1 for ground truth).
    pub fn weights(&self) -> &[f32] {
        &self.weights
    }

    /// Row `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.features[i * self.dim..(i + 1) * self.dim]
    }

    /// Label of row `i`: an abusive bot (the positive class).
    pub fn is_bot(&self, i: usize) -> bool {
        self.labels[i] == 1.0
    }

    /// Number of positive (abusive) rows.
    pub fn positives(&self) -> usize {
        self.labels.iter().filter(|&&y| y == 1.0).count()
    }

    /// The rows at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> Dataset {
        let mut out = Dataset::new(self.dim);
        out.features.reserve(indices.len() * self.dim);
        for &i in indices {
            out.features.extend_from_slice(self.row(i));
            out.labels.push(self.labels[i]);
            out.tags.push(self.tags[i]);
            out.weights.push(self.weights[i]);
        }
        out
    }

    /// Appends every row of `other` (same width).
    pub fn extend_from(&mut self, other: &Dataset) -> Result<(), DatasetError> {
        if other.dim != self.dim && !other.is_empty() {
            return Err(DatasetError::Width {
                dim: self.dim,
                got: other.dim,
            });
        }
        self.features.extend_from_slice(&other.features);
        self.labels.extend_from_slice(&other.labels);
        self.tags.extend_from_slice(&other.tags);
        self.weights.extend_from_slice(&other.weights);
        Ok(())
    }

    /// Seeded split stratified by label: `round(holdout_fraction × count)` of
    /// the bots and of the humans go to the holdout set. Returns (train, holdout).
    pub fn split(&self, holdout_fraction: f64, seed: u64) -> (Dataset, Dataset) {
        let (train, hold) = self.split_indices(holdout_fraction, seed);
        (self.subset(&train), self.subset(&hold))
    }

    /// The row indices of [`split`](Self::split): (train, holdout), each ascending.
    pub fn split_indices(&self, holdout_fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
        let frac = if holdout_fraction.is_finite() {
            holdout_fraction.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut train = Vec::new();
        let mut hold = Vec::new();
        for class in [0.0f32, 1.0] {
            let mut idx: Vec<usize> = (0..self.len())
                .filter(|&i| self.labels[i] == class)
                .collect();
            idx.shuffle(&mut rng);
            let k = (frac * idx.len() as f64).round() as usize;
            hold.extend_from_slice(&idx[..k]);
            train.extend_from_slice(&idx[k..]);
        }
        train.sort_unstable();
        hold.sort_unstable();
        (train, hold)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toy(n: usize) -> Dataset {
        let mut d = Dataset::new(2);
        for i in 0..n {
            d.push_tagged(&[i as f32, 1.0], i % 4 == 0, i as u32)
                .unwrap();
        }
        d
    }

    #[test]
    fn split_is_seeded_stratified_and_a_partition() {
        let d = toy(400);
        let (tr, ho) = d.split(0.25, 7);
        assert_eq!((tr.len(), ho.len()), (300, 100));
        assert_eq!((tr.positives(), ho.positives()), (75, 25));
        let mut tags: Vec<u32> = tr.tags().iter().chain(ho.tags()).copied().collect();
        tags.sort_unstable();
        assert_eq!(tags, (0..400).collect::<Vec<u32>>());
        for i in 0..ho.len() {
            assert_eq!(ho.row(i)[0] as u32, ho.tags()[i]);
        }
        assert_eq!(d.split(0.25, 7), (tr, ho.clone()));
        assert_ne!(d.split(0.25, 8).1, ho);
    }

    #[test]
    fn rejects_bad_rows() {
        let mut d = Dataset::new(2);
        assert_eq!(
            d.push(&[1.0], true),
            Err(DatasetError::Width { dim: 2, got: 1 })
        );
        assert_eq!(
            d.push(&[1.0, f32::NAN], true),
            Err(DatasetError::NonFinite { row: 0, feature: 1 })
        );
        assert!(d.is_empty());
        assert!(Dataset::from_parts(2, vec![0.0; 4], vec![0.0, 0.5], vec![0, 0]).is_err());
        assert!(Dataset::from_parts(2, vec![0.0; 3], vec![0.0, 1.0], vec![0, 0]).is_err());
        assert!(Dataset::from_parts(2, vec![0.0; 4], vec![0.0, 1.0], vec![0, 0]).is_ok());
    }
}
