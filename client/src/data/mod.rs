//! The participant's local training data: where labelled sessions come from
//! ([`DataSource`]), and the bounded in-memory store that keeps a local
//! holdout set aside ([`LocalStore`]).
//!
//! Labels: training needs to know which sessions were abusive bots. Log
//! files come with a labels file of JSON lines `{"session": "<key>",
//! "class": "human" | "good_bot" | "abusive_bot"}` (or `"is_abuse": bool`;
//! a bare `"is_bot": bool` is read as abusive or not; other fields are
//! ignored, so the synthetic generator's labels files work as they are),
//! where `<key>` is the detector's
//! [`SessionKey`](fedsec_detector::session::SessionKey) string; a host that
//! labels sessions itself hands them in through the
//! [`ParticipantHandle`](crate::ParticipantHandle).
//!
//! Without ground truth (no labels file, or no line for a session yet), a
//! session gets a **weak label** from the detector's rules and the tenant's
//! imported outcomes ([`LabelOptions`], `[labels]` in `client.toml`): a
//! silver label weighted by its confidence, or an abstention (left out or a
//! down-weighted negative). Ground truth takes precedence: a label line that
//! arrives later for a silver-labelled session replaces its label.

mod labels;
mod tail;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use fedsec_detector::dataset::Dataset;
use fedsec_detector::features::NUM_FEATURES;
use fedsec_detector::logs::{Cidr, ClientIpPolicy, JsonFields, ReaderConfig, RealIpHeader};
use fedsec_detector::network::{CrawlerRangesFile, Enrichment};
use fedsec_detector::session::SessionConfig;

use crate::error::BuildError;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub use labels::{LabelOptions, WeakLabelling};
pub use tail::{FileStats, LabelLine, LogTail, Polled, TailRow};

/// One log file and its (optional) labels file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelledLog {
    /// Access log (Combined Log Format or JSON lines).
    pub log: PathBuf,
    /// Ground-truth labels (JSON lines `{"session": key, "class": ...}`);
    /// `None`: logs only, sessions get weak labels ([`LabelOptions`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<PathBuf>,
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
    /// Log syntax: `auto` (JSON lines or the CLF presets, per line), `json`,
    /// a preset (`combined`, `main`, `common`, `vhost_combined`), or the
    /// server's own format string in nginx `log_format` or Apache
    /// `LogFormat` syntax. Default `auto`.
    pub log_format: String,
    /// Field names of JSON logs (default: the detector's names).
    pub json_fields: JsonFields,
    /// Proxies whose forwarding headers are believed (`None`: loopback and
    /// private ranges; `Some(vec![])`: nobody).
    pub trusted_proxies: Option<Vec<Cidr>>,
    /// The header that names the client behind a trusted proxy.
    pub real_ip_header: RealIpHeader,
    /// AS database (MaxMind `.mmdb` or iptoasn TSV); `None`: ASes only as logged.
    pub asn_db: Option<PathBuf>,
    /// Crawler IP-range files (Google/Bing JSON format); empty: crawler
    /// verification is missing.
    pub crawler_ranges: Vec<CrawlerRangesFile>,
    /// Network files already loaded (a host running several participants
    /// shares one copy); when set, `asn_db` and `crawler_ranges` are ignored.
    pub network: Option<SharedEnrichment>,
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
    /// Weak labels for sessions without ground truth (`[labels]`).
    pub labels: LabelOptions,
}

impl Default for DataOptions {
    fn default() -> Self {
        Self {
            log_format: "auto".into(),
            json_fields: JsonFields::default(),
            trusted_proxies: None,
            real_ip_header: RealIpHeader::default(),
            asn_db: None,
            crawler_ranges: Vec::new(),
            network: None,
            sessions: SessionConfig::default(),
            holdout_fraction: 0.2,
            max_examples: 200_000,
            min_examples: 20,
            rescan_interval: Duration::from_secs(10),
            labels: LabelOptions::default(),
        }
    }
}

/// Loaded network files shared between participants (equal when they are
/// the same allocation).
#[derive(Debug, Clone)]
pub struct SharedEnrichment(pub Arc<Enrichment>);

impl PartialEq for SharedEnrichment {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// What [`DataOptions`] compile to: the reader settings, the loaded
/// network files and the weak labeller, shared by every log the participant reads.
#[derive(Debug, Clone)]
pub struct DataPipeline {
    /// Reader settings (format, JSON fields, client policy).
    pub reader: ReaderConfig,
    /// AS database and crawler ranges.
    pub enrichment: Arc<Enrichment>,
    /// The weak labeller (rules and imported outcomes) with its policy;
    /// `None` when `labels.weak = false`.
    pub weak: Option<Arc<WeakLabelling>>,
}

impl DataOptions {
    /// Compiles the log format and loads the network files; an error names
    /// the key (`data.log_format`, `data.asn_db`, ...).
    pub fn pipeline(&self) -> Result<DataPipeline, BuildError> {
        let mut reader = ReaderConfig::from_log_format(&self.log_format)
            .map_err(|e| BuildError::invalid("data.log_format", e.problem))?;
        self.json_fields
            .validate()
            .map_err(|e| BuildError::invalid("data.json_fields", e))?;
        reader.json_fields = Arc::new(self.json_fields.clone());
        let mut policy = ClientIpPolicy {
            header: self.real_ip_header,
            ..ClientIpPolicy::default()
        };
        if let Some(t) = &self.trusted_proxies {
            policy.trusted_proxies = t.clone();
        }
        reader.client_ip = Arc::new(policy);
        let weak = self.labels.load()?.map(Arc::new);
        if let Some(shared) = &self.network {
            return Ok(DataPipeline {
                reader,
                enrichment: shared.0.clone(),
                weak,
            });
        }
        let asn = match &self.asn_db {
            Some(p) => Some(
                fedsec_detector::network::AsnDb::open(p)
                    .map_err(|e| BuildError::invalid("data.asn_db", e.to_string()))?,
            ),
            None => None,
        };
        let crawlers = fedsec_detector::network::CrawlerRanges::load(&self.crawler_ranges)
            .map_err(|e| BuildError::invalid("data.crawler_ranges", e.to_string()))?;
        Ok(DataPipeline {
            reader,
            enrichment: Arc::new(Enrichment { asn, crawlers }),
            weak,
        })
    }
}

#[derive(Debug, Clone, Copy)]
struct Example {
    x: [f32; NUM_FEATURES],
    bot: bool,
    /// Training weight: 1 for ground truth, a silver label's weight otherwise.
    weight: f32,
    /// FNV-1a of the session key of a silver-labelled row (0: none), so
    /// ground truth arriving later can replace its label.
    key: u64,
    /// Abstained, kept for self-training: `weight` is the abstained weight
    /// (0: trains only when pseudo-labelled).
    unlabelled: bool,
}

/// Training rows the weak labeller abstained on, kept for self-training
/// ([`fedsec_detector::weak::self_train`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Unlabelled {
    /// Row-major features ([`NUM_FEATURES`] per row).
    pub features: Vec<f32>,
    /// Each row's weight as a negative when it gets no pseudo-label (0: left out).
    pub weights: Vec<f32>,
}

impl Unlabelled {
    /// Rows.
    pub fn len(&self) -> usize {
        self.weights.len()
    }

    /// No rows.
    pub fn is_empty(&self) -> bool {
        self.weights.is_empty()
    }

    /// Rows that train without a pseudo-label (weight > 0).
    pub fn weighted(&self) -> usize {
        self.weights.iter().filter(|&&w| w > 0.0).count()
    }
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
    /// A training weight that is not finite and positive.
    #[error("a row's training weight must be finite and positive")]
    Weight,
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

    /// Adds one row with a ground-truth label.
    pub fn push(&mut self, x: &[f32], bot: bool) -> Result<(), RowError> {
        self.push_weighted(x, bot, 1.0, 0)
    }

    /// Adds one row with a training weight in (0, 1] (a silver label's) and
    /// the FNV-1a hash of its session key (0: none).
    pub fn push_weighted(
        &mut self,
        x: &[f32],
        bot: bool,
        weight: f32,
        key: u64,
    ) -> Result<(), RowError> {
        if !(weight.is_finite() && weight > 0.0) {
            return Err(RowError::Weight);
        }
        self.insert(x, bot, weight, key, false)
    }

    /// Adds one row the weak labeller abstained on, for self-training: it
    /// trains with a pseudo-label when the global model is confident, else
    /// as a negative at `weight` in [0, 1] (0: not at all).
    pub fn push_unlabelled(&mut self, x: &[f32], weight: f32, key: u64) -> Result<(), RowError> {
        if !(weight.is_finite() && weight >= 0.0) {
            return Err(RowError::Weight);
        }
        self.insert(x, false, weight, key, true)
    }

    fn insert(
        &mut self,
        x: &[f32],
        bot: bool,
        weight: f32,
        key: u64,
        unlabelled: bool,
    ) -> Result<(), RowError> {
        let row: [f32; NUM_FEATURES] = x.try_into().map_err(|_| RowError::Width(x.len()))?;
        if let Some(i) = row.iter().position(|v| !v.is_finite()) {
            return Err(RowError::NonFinite(i));
        }
        let e = Example {
            x: row,
            bot,
            weight: weight.min(1.0),
            key,
            unlabelled,
        };
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

    /// Ground truth arrived for a silver-labelled session: its row takes
    /// the true label at weight 1. Returns whether the row was still held.
    pub fn relabel(&mut self, key: u64, bot: bool) -> bool {
        if key == 0 {
            return false;
        }
        for e in self.train.iter_mut().chain(self.holdout.iter_mut()) {
            if e.key == key {
                e.bot = bot;
                e.weight = 1.0;
                e.key = 0;
                e.unlabelled = false;
                return true;
            }
        }
        false
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

    fn dataset<'a>(rows: impl Iterator<Item = &'a Example>) -> Dataset {
        let mut d = Dataset::new(NUM_FEATURES);
        for e in rows.filter(|e| e.weight > 0.0) {
            // Rows were validated on the way in.
            let _ = d.push_weighted(&e.x, e.bot, 0, e.weight);
        }
        d
    }

    /// Copies of the training and holdout sets (unlabelled rows as
    /// negatives at their weight, or left out at weight 0).
    pub fn snapshot(&self) -> (Dataset, Dataset) {
        (
            Self::dataset(self.train.iter()),
            Self::dataset(self.holdout.iter()),
        )
    }

    /// Like [`snapshot`](Self::snapshot), with the unlabelled training rows
    /// apart (for self-training): (labelled training rows, unlabelled
    /// training rows, holdout).
    pub fn snapshot_parts(&self) -> (Dataset, Unlabelled, Dataset) {
        let mut u = Unlabelled::default();
        for e in self.train.iter().filter(|e| e.unlabelled) {
            u.features.extend_from_slice(&e.x);
            u.weights.push(e.weight);
        }
        (
            Self::dataset(self.train.iter().filter(|e| !e.unlabelled)),
            u,
            Self::dataset(self.holdout.iter()),
        )
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

    #[test]
    fn unlabelled_rows_are_kept_apart_and_ground_truth_replaces_them() {
        let mut s = LocalStore::new(0.0, 100, 1);
        s.push(&[1.0; NUM_FEATURES], true).unwrap();
        s.push_unlabelled(&[2.0; NUM_FEATURES], 0.0, 7).unwrap();
        s.push_unlabelled(&[3.0; NUM_FEATURES], 0.1, 8).unwrap();
        assert_eq!(
            s.push_unlabelled(&[3.0; NUM_FEATURES], f32::NAN, 9),
            Err(RowError::Weight)
        );
        // Today's snapshot: weight-0 rows left out, others as negatives.
        let (tr, _) = s.snapshot();
        assert_eq!(tr.len(), 2);
        let (labelled, u, _) = s.snapshot_parts();
        assert_eq!(labelled.len(), 1);
        assert_eq!((u.len(), u.weighted()), (2, 1));
        assert_eq!(u.features[0], 2.0);
        // Ground truth wins: the row leaves the unlabelled pool.
        assert!(s.relabel(7, true));
        let (labelled, u, _) = s.snapshot_parts();
        assert_eq!((labelled.len(), u.len()), (2, 1));
        assert!(labelled.is_bot(1));
    }
}
