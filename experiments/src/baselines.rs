//! The two reference points every federated result is read against:
//!
//! - **centralised, non-private**: one model trained on every tenant's
//!   training rows pooled in one place (what fedsec avoids doing), scored on
//!   the pooled holdout;
//! - **local-only**: each tenant trains its own model on its own training
//!   rows and scores its own holdout sessions (no collaboration, no privacy
//!   cost). Its pooled AUC ranks every holdout session by its own tenant's
//!   model; its per-tenant AUC is what each tenant actually gets.

use fedsec_detector::train::{TrainConfig, train_local};
use fedsec_model::ModelSpec;
use serde::Serialize;

use crate::data::{HoldoutSet, Population};
use crate::error::Result;
use crate::eval;
use crate::sim::parallel_map;

/// Scores of a baseline on the pooled holdout.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Baseline {
    /// Pooled held-out ROC-AUC.
    pub pooled_auc: f64,
    /// Held-out ROC-AUC per tenant (`None`: one-class holdout).
    pub tenant_auc: Vec<Option<f64>>,
    /// Score of every pooled holdout row.
    #[serde(skip)]
    pub scores: Vec<f32>,
    /// Recall and precision at 1 % FPR on the pooled holdout.
    pub operating: eval::OperatingPoint,
}

impl Baseline {
    /// Mean per-tenant AUC over tenants where it is defined.
    pub fn mean_tenant_auc(&self) -> f64 {
        eval::mean_defined(&self.tenant_auc).0
    }
}

/// Settings of the baselines' training.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BaselineConfig {
    /// Model architecture (the federated one).
    pub model: ModelSpec,
    /// Seed of the initial weights.
    pub init_seed: u64,
    /// Centralised training.
    pub central: TrainConfig,
    /// Each tenant's local-only training.
    pub local: TrainConfig,
    /// Seed of the minibatch order.
    pub seed: u64,
    /// Threads (local-only trains tenants in parallel).
    pub threads: usize,
}

/// Trains the centralised non-private model and scores the holdout.
pub fn central(pop: &Population, holdout: &HoldoutSet, cfg: &BaselineConfig) -> Result<Baseline> {
    let w0 = cfg.model.init_weights(cfg.init_seed);
    let out = train_local(&cfg.model, &w0, &pop.pooled_train(), &cfg.central, cfg.seed)?;
    let w: Vec<f32> = w0.iter().zip(&out.delta).map(|(a, d)| a + d).collect();
    let scores = eval::score(&cfg.model, &w, holdout.data.features())?;
    Ok(Baseline {
        pooled_auc: eval::auc(&scores, &holdout.labels).unwrap_or(f64::NAN),
        tenant_auc: eval::per_tenant_auc(&scores, holdout, pop.len()),
        operating: eval::OperatingPoint::at_report_fpr(&scores, &holdout.labels),
        scores,
    })
}

/// Trains one model per tenant on its own rows and scores its own holdout.
/// A tenant whose training rows are all of one class still trains (the model
/// then learns a constant score).
pub fn local_only(
    pop: &Population,
    holdout: &HoldoutSet,
    cfg: &BaselineConfig,
) -> Result<Baseline> {
    let w0 = cfg.model.init_weights(cfg.init_seed);
    let per_tenant = parallel_map(&pop.tenants, cfg.threads, |t| -> Result<Vec<f32>> {
        if t.holdout.is_empty() {
            return Ok(Vec::new());
        }
        let w = if t.train.is_empty() {
            w0.clone()
        } else {
            let out = train_local(
                &cfg.model,
                &w0,
                &t.train,
                &cfg.local,
                cfg.seed ^ t.index as u64,
            )?;
            w0.iter().zip(&out.delta).map(|(a, d)| a + d).collect()
        };
        eval::score(&cfg.model, &w, t.holdout.features())
    });
    let mut scores = Vec::with_capacity(holdout.len());
    for s in per_tenant {
        scores.extend(s?);
    }
    Ok(Baseline {
        pooled_auc: eval::auc(&scores, &holdout.labels).unwrap_or(f64::NAN),
        tenant_auc: eval::per_tenant_auc(&scores, holdout, pop.len()),
        operating: eval::OperatingPoint::at_report_fpr(&scores, &holdout.labels),
        scores,
    })
}
