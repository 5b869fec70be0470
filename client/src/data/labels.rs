//! `[labels]`: weak labels for sessions without ground truth — the
//! detector's rules ([`RuleConfig`], `[labels.rules]`), the tenant's
//! imported outcomes (`outcomes_files`, weighted by `[labels.outcomes]`) and
//! how silver labels train ([`SilverPolicy`]). See
//! [`fedsec_detector::weak`].

use std::io::BufReader;
use std::path::PathBuf;

use fedsec_detector::weak::outcomes::ImportStats;
use fedsec_detector::weak::{
    Labeller, OutcomeIndex, OutcomeWeights, RuleConfig, SelfTraining, SilverPolicy, SilverRow,
    WeakLabel,
};
use serde::{Deserialize, Serialize};

use crate::error::BuildError;

/// The `[labels]` table (every key optional).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LabelOptions {
    /// Label sessions without ground truth with the weak labeller (default
    /// true); false: such sessions wait for a ground-truth label, as before.
    pub weak: bool,
    /// JSON-lines files of outcomes the tenant knows (CAPTCHA/challenge
    /// results, WAF blocks, login failures, chargebacks), read at start.
    pub outcomes_files: Vec<PathBuf>,
    /// Multiplier of a silver label's confidence, in (0, 1] (default 1).
    pub silver_weight: f64,
    /// Weight of an abstained session as a negative, in [0, 1]; 0 leaves it
    /// out (default 0.1; the weak-labels experiment's validation split preferred 0).
    pub abstained_weight: f64,
    /// The rules.
    pub rules: RuleConfig,
    /// Weights of the imported outcomes and the IP match window.
    pub outcomes: OutcomeWeights,
    /// Self-training: abstained sessions pseudo-labelled each round by the
    /// global model's confident predictions (`[labels.self_training]`).
    pub self_training: SelfTraining,
}

impl Default for LabelOptions {
    fn default() -> Self {
        let p = SilverPolicy::default();
        Self {
            weak: true,
            outcomes_files: Vec::new(),
            silver_weight: p.silver_weight,
            abstained_weight: p.abstained_weight,
            rules: RuleConfig::default(),
            outcomes: OutcomeWeights::default(),
            self_training: SelfTraining::default(),
        }
    }
}

/// The weak labeller with its training policy and what its imports read.
#[derive(Debug, Clone)]
pub struct WeakLabelling {
    /// Rules and imported outcomes.
    pub labeller: Labeller,
    /// How silver labels train.
    pub policy: SilverPolicy,
    /// Self-training (abstained sessions are kept as unlabelled rows when on).
    pub self_training: SelfTraining,
}

impl LabelOptions {
    /// The training policy.
    pub fn policy(&self) -> SilverPolicy {
        SilverPolicy {
            silver_weight: self.silver_weight,
            abstained_weight: self.abstained_weight,
        }
    }

    /// Checks every value without touching files: `Err((key, problem))`
    /// with the full dotted key (`labels.rules.timing.max_cv`).
    pub fn check(&self) -> Result<(), (String, String)> {
        self.policy().validate().map_err(|e| {
            (
                format!("labels.{}", e.key),
                format!("must be in {} (got {})", e.range, e.value),
            )
        })?;
        self.self_training.validate().map_err(|e| {
            (
                format!("labels.self_training.{}", e.key),
                format!("must be in {} (got {})", e.range, e.value),
            )
        })?;
        self.rules
            .validate()
            .map_err(|e| (format!("labels.{}", e.key), e.message))?;
        self.outcomes
            .validate()
            .map_err(|e| (format!("labels.{}", e.key), e.message))?;
        Ok(())
    }

    /// [`check`](Self::check) as a builder error (field `labels`, the
    /// message naming the full key).
    pub fn validate(&self) -> Result<(), BuildError> {
        self.check()
            .map_err(|(key, problem)| BuildError::invalid("labels", format!("{key}: {problem}")))
    }

    /// Validates and reads the outcome files; `None` when `weak = false`. A
    /// file that cannot be opened is an error naming `labels.outcomes_files`;
    /// malformed lines inside it are counted (logged), never fatal.
    pub fn load(&self) -> Result<Option<WeakLabelling>, BuildError> {
        self.validate()?;
        if !self.weak {
            return Ok(None);
        }
        let mut index = OutcomeIndex::new(self.outcomes.clone())
            .map_err(|e| BuildError::invalid("labels.outcomes", e.message))?;
        for path in &self.outcomes_files {
            let f = std::fs::File::open(path).map_err(|e| {
                BuildError::invalid(
                    "labels.outcomes_files",
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            index.import(BufReader::new(f)).map_err(|e| {
                BuildError::invalid(
                    "labels.outcomes_files",
                    format!("reading {}: {e}", path.display()),
                )
            })?;
        }
        log_import(index.stats());
        let labeller = Labeller::new(self.rules.clone(), index)
            .map_err(|e| BuildError::invalid("labels", e.to_string()))?;
        Ok(Some(WeakLabelling {
            labeller,
            policy: self.policy(),
            self_training: self.self_training,
        }))
    }
}

fn log_import(s: &ImportStats) {
    if s.lines > 0 {
        tracing::info!(
            lines = s.lines,
            accepted = s.accepted,
            by_session = s.by_session,
            by_ip = s.by_ip,
            malformed = s.malformed_total(),
            "imported outcomes for weak labels"
        );
        for (reason, n) in &s.malformed {
            tracing::warn!(reason, lines = n, "outcome lines skipped");
        }
    }
}

impl WeakLabelling {
    /// The training target of a session with no ground truth: (is abuse,
    /// weight) and the labeller's verdict, or `None` target to leave it out.
    pub fn target(&self, label: &WeakLabel) -> Option<(bool, f32)> {
        self.policy.target(&SilverRow::weak(label))
    }
}
