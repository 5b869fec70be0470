//! fedsec-detector: the bot-abuse detection domain of fedsec.
//!
//! From request logs to a calibrated, explainable bot score, with no network
//! and no storage:
//!
//! - [`logs`]: streaming readers for nginx/Apache combined logs (and nginx
//!   `main` with `X-Forwarded-For`) and JSON lines, with per-line malformed
//!   reports;
//! - [`session`]: an incremental sessionizer with an idle timeout and bounded
//!   memory;
//! - [`features`]: the fixed, documented per-session feature vector;
//! - [`ua`], [`paths`]: user-agent classes and path/referer reading;
//! - [`synth`]: the seeded synthetic tenant generator (real log text + labels);
//! - [`dataset`]: feature matrices with labels, seeded splits, the label join;
//! - [`model`]: burn logistic regression and MLP in the canonical flat layout
//!   of [`fedsec_model`], scoring, and the model file;
//! - [`train`]: local training returning `delta = local − global`;
//! - [`metrics`]: ROC-AUC, PR-AUC (average precision), recall at a fixed FPR,
//!   confusion matrices;
//! - [`explain`]: per-session attributions against a baseline of typical
//!   humans and plain-words reasons (presence first, absences with context);
//! - [`shape`], [`evidence`]: request-target shapes without personal values,
//!   per-session evidence (paths, statuses, page walks, time window) and
//!   related sessions by address, user agent and AS;
//! - [`weak`]: weak (silver) labels with abstention from rules and imported
//!   outcomes, training rows from them, and the day-one local anomaly score.

pub mod dataset;
pub mod evidence;
pub mod explain;
pub mod features;
pub mod logs;
pub mod metrics;
pub mod model;
pub mod network;
pub mod paths;
pub mod session;
pub mod shape;
pub mod synth;
pub mod train;
pub mod ua;
pub mod weak;
