//! The participant's local training data: where labelled sessions come from
//! ([`DataSource`]), and the bounded in-memory store that keeps a local
//! holdout set aside ([`LocalStore`]).
//!
//! Labels: training needs to know which sessions were bots. Log files come
//! with a labels file of JSON lines `{"session": "<key>", "is_bot": bool}`
//! (other fields are ignored, so the synthetic generator's labels files work
//! as they are), where `<key>` is the detector's
//! [`SessionKey`](fedsec_detector::session::SessionKey) string; a host that
//! labels sessions itself hands them in through the
//! [`ParticipantHandle`](crate::ParticipantHandle).

mod tail;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Duration;

use fedsec_detector::dataset::Dataset;
use fedsec_detector::features::NUM_FEATURES;
use fedsec_detector::logs::LogFormat;
use fedsec_detector::session::SessionConfig;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub use tail::{FileStats, LogTail};

/// One log file and its labels file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelledLog {
    /// Access log (Combined Log Format or JSON lines).
    pub log: PathBuf,
    /// Labels (JSON lines `{"session": key, "is_bot": bool}`).
    pub labels: PathBuf,
}

/// Where the participant's labelled sessions come from.
#[derive(Debug, Clone, PartialEq)]
pub enum DataSource {
    /// These log files (read incrementally: lines appended later are picked up).
    Files(Vec<LabelledLog>),
    /// Every `*<log_suffix>` file in a directory, with its labels in
    /// `<stem><labels_suffix>`; new and growing files are picked up.
    WatchDir {
        /// The directory.
        dir: PathBuf,
        /// Suffix of log files (e.g. `.log`).
        log_suffix: String,
        /// Suffix replacing `log_suffix` for the labels file (e.g. `.labels.jsonl`).
        labels_suffix: String,
    },
    /// Only sessions the host hands in through the handle.
    Host,
}

impl DataSource {
    /// A directory watched with the default suffixes `.log` and `.labels.jsonl`.
    pub fn watch_dir(dir: impl Into<PathBuf>) -> Self {
        Self::WatchDir {
            dir: dir.into(),
            log_suffix: ".log".into(),
            labels_suffix: ".labels.jsonl".into(),
        }
    }
}

/// How local data is read and kept.
#[derive(Debug, Clone, PartialEq)]
pub struct DataOptions {
    /// Log line format. Default auto-detect per line.
    pub format: LogFormat,
    /// Sessionizer limits. Default: the detector's defaults (30 min idle).
    pub sessions: SessionConfig,
    /// Share of examples kept aside as the local holdout. Default 0.2.
    pub holdout_fraction: f64,
    /// Most examples kept (train and holdout together); the oldest go first.
    /// Default 200 000.
    pub max_examples: usize,
    /// Fewest training examples for the client to take part. Default 20.
    pub min_examples: usize,
    /// How often files are re-read. Default 10 s.
    pub rescan_interval: Duration,
}

impl Default for DataOptions {
    fn default() -> Self {
        Self {
            format: LogFormat::Auto,
            sessions: SessionConfig::default(),
            holdout_fraction: 0.2,
            max_examples: 200_000,
            min_examples: 20,
            rescan_interval: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Example {
    x: [f32; NUM_FEATURES],
    bot: bool,
}

/// Bounded store of labelled feature rows, split once and for all into
/// training and holdout rows when each row arrives (a seeded coin with the
/// holdout fraction), so a row never moves between the two as data grows.
#[derive(Debug)]
pub struct LocalStore {
    train: VecDeque<Example>,
    holdout: VecDeque<Example>,
    rng: ChaCha8Rng,
    holdout_fraction: f64,
    max_examples: usize,
    added: u64,
}

/// Why a row was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RowError {
    /// Not [`NUM_FEATURES`] values.
    #[error("a session has {NUM_FEATURES} features, got {0}")]
    Width(usize),
    /// NaN or infinite.
    #[error("feature {0} is not finite")]
    NonFinite(usize),
}

impl LocalStore {
    /// An empty store.
    pub fn new(holdout_fraction: f64, max_examples: usize, seed: u64) -> Self {
        Self {
            train: VecDeque::new(),
            holdout: VecDeque::new(),
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0x686f_6c64_6f75_7421),
            holdout_fraction: holdout_fraction.clamp(0.0, 0.9),
            max_examples: max_examples.max(1),
            added: 0,
        }
    }

    /// Adds one labelled row.
    pub fn push(&mut self, x: &[f32], bot: bool) -> Result<(), RowError> {
        let row: [f32; NUM_FEATURES] = x.try_into().map_err(|_| RowError::Width(x.len()))?;
        if let Some(i) = row.iter().position(|v| !v.is_finite()) {
            return Err(RowError::NonFinite(i));
        }
        let e = Example { x: row, bot };
        if self.rng.random_bool(self.holdout_fraction) {
            self.holdout.push_back(e);
        } else {
            self.train.push_back(e);
        }
        self.added += 1;
        while self.train.len() + self.holdout.len() > self.max_examples {
            // Drop from whichever side is over its share, oldest first.
            let over_holdout = self.holdout.len() as f64
                > self.holdout_fraction * (self.train.len() + self.holdout.len()) as f64;
            if over_holdout {
                self.holdout.pop_front();
            } else {
                self.train.pop_front();
            }
        }
        Ok(())
    }

    /// Training rows.
    pub fn train_len(&self) -> usize {
        self.train.len()
    }

    /// Holdout rows.
    pub fn holdout_len(&self) -> usize {
        self.holdout.len()
    }

    /// Rows ever added.
    pub fn added(&self) -> u64 {
        self.added
    }

    fn dataset(rows: &VecDeque<Example>) -> Dataset {
        let mut d = Dataset::new(NUM_FEATURES);
        for e in rows {
            // Rows were validated on the way in.
            let _ = d.push(&e.x, e.bot);
        }
        d
    }

    /// Copies of the training and holdout sets.
    pub fn snapshot(&self) -> (Dataset, Dataset) {
        (Self::dataset(&self.train), Self::dataset(&self.holdout))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holdout_share_is_close_to_the_fraction_and_stable() {
        let mut s = LocalStore::new(0.25, 100_000, 3);
        for i in 0..4000 {
            s.push(&[i as f32; NUM_FEATURES], i % 3 == 0).unwrap();
        }
        let (tr, ho) = s.snapshot();
        assert_eq!(tr.len() + ho.len(), 4000);
        // Binomial(4000, 0.25): mean 1000, sd ≈ 27; 5 sd.
        assert!((ho.len() as i64 - 1000).abs() < 140, "{}", ho.len());
        // Rows never move: the first row's side is fixed once decided.
        let first_in_holdout = ho.row(0)[0];
        for i in 4000..5000 {
            s.push(&[i as f32; NUM_FEATURES], false).unwrap();
        }
        assert_eq!(s.snapshot().1.row(0)[0], first_in_holdout);
    }

    #[test]
    fn the_store_is_bounded_and_validates_rows() {
        let mut s = LocalStore::new(0.2, 100, 1);
        for i in 0..1000 {
            s.push(&[i as f32; NUM_FEATURES], false).unwrap();
        }
        assert_eq!(s.train_len() + s.holdout_len(), 100);
        let (tr, _) = s.snapshot();
        assert!(tr.row(0)[0] >= 850.0, "oldest rows are dropped first");
        assert_eq!(s.push(&[0.0; 3], true), Err(RowError::Width(3)));
        let mut bad = [0.0; NUM_FEATURES];
        bad[4] = f32::NAN;
        assert_eq!(s.push(&bad, true), Err(RowError::NonFinite(4)));
    }
}
