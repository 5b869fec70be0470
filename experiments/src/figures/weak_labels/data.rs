//! The weak-labels experiment's population: each synthetic tenant's
//! sessions with ground truth (for evaluation and for the tenants that have
//! it), the default labeller's verdict on every session, and a three-way
//! split: holdout (evaluation only), validation (the experiment's choices
//! only) and training.

use std::io::Write;
use std::path::Path;

use fedsec_detector::dataset::Dataset;
use fedsec_detector::features::NUM_FEATURES;
use fedsec_detector::synth::{self, SynthConfig};
use fedsec_detector::weak::{Labeller, SilverPolicy, SilverRow, Vote};

use crate::data::{HoldoutSet, Population, TenantData};
use crate::error::{Error, Result};
use crate::sim::parallel_map;

/// Share of each tenant's non-holdout sessions kept for validation.
pub const VALIDATION_FRACTION: f64 = 0.25;

/// The labeller's verdict on one session.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WeakRow {
    /// Vote.
    pub vote: Vote,
    /// Confidence of the label (0 when abstaining).
    pub confidence: f64,
    /// Σ abuse − Σ not-abuse weights: the rules-alone score.
    pub score: f64,
    /// Each rule's signed vote weight (+ abuse, − not abuse, 0 abstain), in
    /// [`RULE_NAMES`] order: what a label model over the rules' votes reads.
    pub votes: [f32; RULE_NAMES.len()],
}

/// The default labeller's rules, in the order of [`WeakRow::votes`].
pub const RULE_NAMES: [&str; 10] = [
    "user_agent",
    "crawler",
    "honeypot",
    "robots_txt",
    "failed_logins",
    "declined_payments",
    "status_4xx_flood",
    "head_share",
    "timing",
    "browser",
];

/// One tenant's rows.
#[derive(Debug, Clone)]
pub struct WeakTenant {
    /// Training rows with ground truth (labels) and holdout rows.
    pub data: TenantData,
    /// Validation rows with ground truth.
    pub validation: Dataset,
    /// Verdicts on the training rows.
    pub train_weak: Vec<WeakRow>,
    /// Verdicts on the validation rows.
    pub validation_weak: Vec<WeakRow>,
    /// Verdicts on the holdout rows.
    pub holdout_weak: Vec<WeakRow>,
}

/// A population for the experiment.
#[derive(Debug, Clone)]
pub struct WeakPopulation {
    /// Tenants by index.
    pub tenants: Vec<WeakTenant>,
}

fn mix(seed: u64, index: usize, salt: u64) -> u64 {
    seed ^ salt ^ 0x9e37_79b9_7f4a_7c15u64.wrapping_mul(index as u64 + 1)
}

fn generate_one(cfg: &SynthConfig, index: usize, holdout_fraction: f64) -> Result<WeakTenant> {
    let synth_err = |message: String| Error::Synth {
        tenant: index,
        message,
    };
    let t = synth::generate_tenant(cfg, index).map_err(|e| synth_err(e.to_string()))?;
    let ls = t
        .labelled_sessions()
        .map_err(|e| synth_err(e.to_string()))?;
    if !ls.report.is_exact() || ls.facts.len() != ls.dataset.len() {
        return Err(synth_err(format!(
            "sessions and labels do not match exactly: {:?}",
            ls.report
        )));
    }
    let labeller = Labeller::default();
    let weak: Vec<WeakRow> = ls
        .facts
        .iter()
        .map(|f| {
            let l = labeller.label(f);
            let mut votes = [0f32; RULE_NAMES.len()];
            for fired in &l.fired {
                if let Some(j) = RULE_NAMES.iter().position(|&r| r == fired.rule) {
                    votes[j] += match fired.vote {
                        Vote::Abuse => fired.weight as f32,
                        Vote::NotAbuse => -(fired.weight as f32),
                        Vote::Abstain => 0.0,
                    };
                }
            }
            WeakRow {
                vote: l.vote,
                confidence: l.confidence,
                score: l.score,
                votes,
            }
        })
        .collect();
    let (rest, hold) = ls
        .dataset
        .split_indices(holdout_fraction, mix(cfg.seed, index, 0x686f_6c64));
    let rest_set = ls.dataset.subset(&rest);
    let (tr, va) = rest_set.split_indices(VALIDATION_FRACTION, mix(cfg.seed, index, 0x7661_6c69));
    let pick = |ix: &[usize]| -> Vec<WeakRow> { ix.iter().map(|&i| weak[i]).collect() };
    let train_global: Vec<usize> = tr.iter().map(|&i| rest[i]).collect();
    let val_global: Vec<usize> = va.iter().map(|&i| rest[i]).collect();
    Ok(WeakTenant {
        data: TenantData {
            index,
            name: t.summary.profile.name.clone(),
            kind: t.summary.profile.kind,
            train: ls.dataset.subset(&train_global),
            holdout: ls.dataset.subset(&hold),
        },
        validation: ls.dataset.subset(&val_global),
        train_weak: pick(&train_global),
        validation_weak: pick(&val_global),
        holdout_weak: pick(&hold),
    })
}

impl WeakTenant {
    /// Indices of the training rows the labeller abstained on.
    pub fn abstained(&self) -> Vec<usize> {
        self.train_weak
            .iter()
            .enumerate()
            .filter(|(_, w)| w.vote == Vote::Abstain)
            .map(|(i, _)| i)
            .collect()
    }

    /// The tenant's training rows: ground truth when `truth`, else silver
    /// labels under `policy`; `pseudo` (one entry per row of
    /// [`abstained`](Self::abstained), in order) replaces the policy's
    /// treatment of an abstained row where it is `Some((is_abuse, weight))`.
    pub fn training_rows(
        &self,
        truth: bool,
        policy: &SilverPolicy,
        pseudo: Option<&[Option<(bool, f32)>]>,
    ) -> Dataset {
        let mut train = Dataset::new(NUM_FEATURES);
        let d = &self.data.train;
        let mut next_abstained = 0usize;
        for (i, w) in self.train_weak.iter().enumerate() {
            let row = if truth {
                SilverRow::truth(d.is_bot(i))
            } else {
                SilverRow {
                    truth: None,
                    vote: w.vote,
                    confidence: w.confidence,
                }
            };
            let mut target = policy.target(&row);
            if !truth && w.vote == Vote::Abstain {
                if let Some(Some(p)) = pseudo.and_then(|p| p.get(next_abstained)) {
                    target = Some(*p);
                }
                next_abstained += 1;
            }
            if let Some((y, weight)) = target {
                // Rows come from a valid dataset and weights are positive.
                let _ = train.push_weighted(d.row(i), y, d.tags()[i], weight);
            }
        }
        train
    }
}

impl WeakPopulation {
    /// Generates `cfg.tenants` tenants on `threads` threads.
    pub fn generate(cfg: &SynthConfig, holdout_fraction: f64, threads: usize) -> Result<Self> {
        cfg.validate().map_err(|e| Error::Config(e.to_string()))?;
        let idx: Vec<usize> = (0..cfg.tenants).collect();
        let tenants = parallel_map(&idx, threads, |&i| generate_one(cfg, i, holdout_fraction))
            .into_iter()
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { tenants })
    }

    /// Number of tenants.
    pub fn len(&self) -> usize {
        self.tenants.len()
    }

    /// No tenants.
    pub fn is_empty(&self) -> bool {
        self.tenants.is_empty()
    }

    /// The pooled holdout (ground truth).
    pub fn holdout(&self) -> HoldoutSet {
        HoldoutSet::pool(self.tenants.iter().map(|t| &t.data.holdout))
    }

    /// The pooled validation rows (ground truth), as a holdout set.
    pub fn validation(&self) -> HoldoutSet {
        HoldoutSet::pool(self.tenants.iter().map(|t| &t.validation))
    }

    /// The simulator's population for one scenario: tenants in `with_truth`
    /// train on their ground-truth labels, the others on silver labels under
    /// `policy` (ground truth, where present, takes precedence).
    pub fn scenario(
        &self,
        cfg: &SynthConfig,
        holdout_fraction: f64,
        with_truth: &[bool],
        policy: &SilverPolicy,
    ) -> Population {
        let tenants = self
            .tenants
            .iter()
            .zip(with_truth)
            .map(|(t, &truth)| TenantData {
                train: t.training_rows(truth, policy, None),
                ..t.data.clone()
            })
            .collect();
        Population {
            config: cfg.clone(),
            holdout_fraction,
            tenants,
        }
    }

    /// Writes every tenant's training and holdout features with ground truth
    /// (`tenant,split,label,f0..f50`) for the IsolationForest script.
    pub fn export_features(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let f = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
        let mut w = std::io::BufWriter::new(f);
        let mut header = String::from("tenant,split,label");
        for j in 0..NUM_FEATURES {
            header.push_str(&format!(",f{j}"));
        }
        writeln!(w, "{header}").map_err(|e| Error::io(path, e))?;
        for t in &self.tenants {
            for (split, d) in [("train", &t.data.train), ("holdout", &t.data.holdout)] {
                for i in 0..d.len() {
                    let mut line = format!("{},{split},{}", t.data.index, u8::from(d.is_bot(i)));
                    for v in d.row(i) {
                        line.push_str(&format!(",{v}"));
                    }
                    writeln!(w, "{line}").map_err(|e| Error::io(path, e))?;
                }
            }
        }
        w.flush().map_err(|e| Error::io(path, e))
    }

    /// Writes every session of every tenant with what the weak-label
    /// research scripts need (`experiments/scripts/weak_methods.py`):
    /// `tenant,split,label,tag,vote,confidence,score,<rule votes>,f0..f50`,
    /// split one of train/validation/holdout, vote -1/0/1, the rules' signed
    /// weights in [`RULE_NAMES`] order.
    pub fn export_weak(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let f = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
        let mut w = std::io::BufWriter::new(f);
        let mut header = String::from("tenant,split,label,tag,vote,confidence,score");
        for r in RULE_NAMES {
            header.push_str(&format!(",r_{r}"));
        }
        for j in 0..NUM_FEATURES {
            header.push_str(&format!(",f{j}"));
        }
        writeln!(w, "{header}").map_err(|e| Error::io(path, e))?;
        for t in &self.tenants {
            for (split, d, weak) in [
                ("train", &t.data.train, &t.train_weak),
                ("validation", &t.validation, &t.validation_weak),
                ("holdout", &t.data.holdout, &t.holdout_weak),
            ] {
                for (i, wr) in weak.iter().enumerate().take(d.len()) {
                    let vote = match wr.vote {
                        Vote::Abuse => 1,
                        Vote::NotAbuse => -1,
                        Vote::Abstain => 0,
                    };
                    let mut line = format!(
                        "{},{split},{},{},{vote},{},{}",
                        t.data.index,
                        u8::from(d.is_bot(i)),
                        d.tags()[i],
                        wr.confidence,
                        wr.score
                    );
                    for v in wr.votes {
                        line.push_str(&format!(",{v}"));
                    }
                    for v in d.row(i) {
                        line.push_str(&format!(",{v}"));
                    }
                    writeln!(w, "{line}").map_err(|e| Error::io(path, e))?;
                }
            }
        }
        w.flush().map_err(|e| Error::io(path, e))
    }
}
