//! What a running participant tells its host: a broadcast stream of
//! [`Event`]s. Sending never blocks the participant; a host that reads too
//! slowly sees `RecvError::Lagged` and misses the oldest events.

use crate::guard::{Basis, SkipReason};

/// Identifies the task an event is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRef {
    /// Job.
    pub job_id: String,
    /// Round.
    pub round: u64,
    /// Attempt.
    pub attempt: u32,
    /// Model version the round trains.
    pub base_version: u64,
}

impl std::fmt::Display for TaskRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "job {} round {} attempt {}",
            self.job_id, self.round, self.attempt
        )
    }
}

/// How the local model did on the local holdout set (never sent anywhere).
#[derive(Debug, Clone, PartialEq)]
pub struct HoldoutReport {
    /// Holdout examples.
    pub examples: usize,
    /// Loss of the global model on the holdout.
    pub loss_global: f64,
    /// Loss of the locally trained model on the holdout.
    pub loss_local: f64,
    /// ROC-AUC of the global model (when both classes are present).
    pub auc_global: Option<f64>,
    /// ROC-AUC of the local model (when both classes are present).
    pub auc_local: Option<f64>,
}

/// What local training produced.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainReport {
    /// Training examples used.
    pub examples: usize,
    /// Optimiser steps.
    pub steps: u64,
    /// Training loss of the global weights.
    pub loss_before: f64,
    /// Training loss of the local weights.
    pub loss_after: f64,
    /// Holdout evaluation, if the holdout is not empty.
    pub holdout: Option<HoldoutReport>,
    /// L2 norm of `local − global` before clipping.
    pub update_norm: f64,
    /// Whether the update had to be clipped.
    pub clipped: bool,
    /// Stddev of the noise the client added itself (0 in central mode).
    pub client_noise_stddev: f64,
}

/// Something the participant did or saw.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// Registered with the coordinator.
    Registered {
        /// Tenant id from the certificate.
        tenant_id: String,
        /// Client id from the certificate.
        client_id: String,
    },
    /// Selected: a task arrived.
    TaskReceived {
        /// The task.
        task: TaskRef,
        /// q.
        sampling_rate: f64,
        /// z.
        noise_multiplier: f64,
        /// C.
        clip_norm: f64,
    },
    /// A task was not trained on (policy, cap, data, model).
    Skipped {
        /// The task.
        task: TaskRef,
        /// Why, with the numbers.
        reason: SkipReason,
    },
    /// Local training finished.
    Trained {
        /// The task.
        task: TaskRef,
        /// What it produced.
        report: TrainReport,
    },
    /// The contribution was written to the tenant's ledger (before upload).
    Recorded {
        /// The task.
        task: TaskRef,
        /// The guard's ε after this round, at the tenant's δ.
        epsilon: f64,
        /// Basis of that ε.
        basis: Basis,
    },
    /// The update was accepted by the coordinator.
    Submitted {
        /// The task.
        task: TaskRef,
        /// False when the coordinator already had it (a retried upload).
        newly_accepted: bool,
        /// Upload attempts it took.
        attempts: u32,
    },
    /// The coordinator definitively refused the upload.
    SubmitRejected {
        /// The task.
        task: TaskRef,
        /// The refusal.
        message: String,
    },
    /// A newer global model was downloaded and verified.
    ModelUpdated {
        /// Job.
        job_id: String,
        /// Version.
        version: u64,
        /// Round after which it was published.
        round: u64,
        /// ε (PLD) stated by its receipt, if it has a guarantee.
        epsilon: Option<f64>,
    },
    /// A failed call that will be retried.
    Retrying {
        /// Which call.
        operation: &'static str,
        /// The failure, in words.
        error: String,
        /// Consecutive failures so far.
        failures: u32,
        /// Wait before the next try, ms.
        delay_ms: u64,
    },
    /// New labelled local examples were loaded.
    DataLoaded {
        /// Examples added by this load.
        added: usize,
        /// Training examples held.
        train: usize,
        /// Holdout examples held.
        holdout: usize,
    },
    /// Something the operator should know that did not stop anything.
    Warning {
        /// The message.
        message: String,
    },
    /// The job the participant is bound to will open no more rounds.
    JobFinished {
        /// Job.
        job_id: String,
        /// Final state, e.g. `COMPLETED`.
        state: String,
        /// Last published version.
        final_version: u64,
    },
}
