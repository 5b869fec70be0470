//! Pure differential-privacy math for fedsec.
//!
//! - [`clip`]: L2 norms and clipping of `f32` updates (f64 accumulation,
//!   NaN/∞ rejected), and the coordinator's fused clip-and-accumulate.
//! - [`noise`]: Gaussian noise sources — opendp's exact discrete Gaussian
//!   (default, production), fedsec's fast exact discrete Gaussian
//!   (production, integer output) and a seeded simulation sampler.
//! - [`accounting`]: RDP and PLD accountants for the Poisson-subsampled
//!   Gaussian under add/remove-one-client, and the zCDP route through opendp.
//! - [`calibrate`]: noise multiplier for a target ε; rounds for a noise level.
//! - [`adaptive`]: adaptive clipping (Andrew et al. 2021) and its accounting.
//! - [`receipt`]: round charges, privacy receipts and their verification.
//! - [`history`]: the digest of a round history (SHA-256 hash chain) and the
//!   summary form of a receipt that references its history by that digest.
//! - [`audit`]: empirical privacy estimators (lower bounds and estimates).
//!
//! The crate does no I/O: no network, no storage, no async runtime.

pub mod accounting;
pub mod adaptive;
pub mod audit;
pub mod calibrate;
pub mod clip;
pub mod history;
mod kernels;
pub mod noise;
pub mod receipt;
mod special;

pub use accounting::{
    Accountant, AccountingError, Mechanism, PldAccountant, RdpAccountant, accountant_by_name,
};
pub use adaptive::{
    AdaptiveClipState, AdaptiveError, effective_noise_multiplier, update_noise_multiplier,
};
pub use calibrate::{CalibrationError, calibrate_noise_multiplier, max_rounds};
pub use clip::{
    ClipError, ClipOutcome, Measured, accumulation_inflation, clip_and_accumulate, clip_in_place,
    l2_norm,
};
pub use history::{HistoryChain, HistoryError, HistoryRef, ReceiptSummary};
pub use noise::{
    DiscreteGaussianNoise, DrawnNoise, GaussianNoise, NoiseError, NoiseKind, OpenDpGaussian,
    SimulationGaussian,
};
pub use receipt::{EmpiricalAudit, PrivacyReceipt, ReceiptError, RoundCharge, compose};

/// Version of this crate, recorded in receipts through the accountants' versions.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
