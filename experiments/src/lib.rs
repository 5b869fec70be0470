//! fedsec-experiments: the one-command demo and the reproducible experiments.
//!
//! - [`data`]: synthetic tenant populations (the detector's generator,
//!   sessionized, split into local train and holdout sets);
//! - [`sim`]: the in-process DP-FedAvg simulator (the coordinator's release
//!   and accounting, [`fedsec_privacy::SimulationGaussian`] noise);
//! - [`baselines`]: the centralised non-private and local-only references;
//! - [`attack`]: poisoning adversaries (scaled sign-flip, backdoor);
//! - [`eval`]: held-out AUC, per-tenant AUC, archetype recall, recall and
//!   precision at an operating point;
//! - [`seeds`]: the multi-seed harness (mean ± sd over seeds, Wilson and
//!   bootstrap intervals, choosing on a validation split);
//! - [`figures`]: the five experiments (CSV + PNG + README section each);
//! - [`plot`]: the PNG charts; [`report`]: CSV and Markdown output;
//! - [`progress`]: indicatif bars;
//! - [`demo`]: the one-command demo on the real path (coordinator and
//!   participants over loopback mTLS, opendp noise).

pub mod attack;
pub mod baselines;
pub mod data;
pub mod demo;
pub mod error;
pub mod eval;
pub mod figures;
pub mod loopback;
pub mod plot;
pub mod progress;
pub mod report;
pub mod seeds;
pub mod sim;

pub use error::{Error, Result};
