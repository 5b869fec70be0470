//! The round core of fedsec: one DP-FedAvg round as a synchronous, I/O-free
//! sequence of pure steps with explicit inputs and outputs
//! (`ARCHITECTURE.md`, "One round"):
//!
//! 1. [`resolve`] — once per job: the sampling rate, the fixed denominator
//!    (expected cohort), the noise multipliers (calibrated to a target ε by
//!    the PLD accountant) and the adaptive-clipping count noise;
//! 2. [`plan`] — before a round opens: its charge (sensitivity = `C` plus the
//!    noise source's grid inflation plus the `f64` sum's rounding bound), ε
//!    after it, and the decision: release it, or end the job (all rounds run,
//!    or the budget would be exceeded) — never looking at who reported;
//! 3. select — the caller's (the coordinator's keyed hash, the simulator's
//!    seeded draws): the core needs only the rate `q` it plans with;
//! 4. [`accumulate`] — re-clip every update to `C` and add it into an `f64`
//!    sum (O(model) memory), with the counts adaptive clipping needs;
//! 5. [`noise`] — once the round is planned, its noise is drawn ahead
//!    ([`RoundNoise::draw`]: it does not depend on the data), while the
//!    round collects updates;
//! 6. [`release`] — adds the drawn noise (consuming it), the fixed
//!    denominator, adaptive clipping and the server optimiser: the next model;
//! 7. charge — [`plan::PlannedRound::charge`]: the ledger entry stamped with
//!    its commit time, ε unchanged; the caller commits it with the model
//!    (the coordinator in one database transaction) before publishing.
//!
//! Between receiving an update and accumulating it, [`screen`] scores it on
//! statistics of that update and public state only (norm before re-clipping,
//! agreement with the previous published update, per-layer norms, the
//! tenant's own history) and decides, by the job's policy, whether it joins
//! the sum; no decision looks at another tenant's update.
//!
//! The coordinator's driver wraps these steps with async, locks and the
//! store; the experiments' simulator drives the same steps in a loop. A new
//! aggregation (secure aggregation, robust aggregation) plugs in at
//! [`accumulate`], [`noise`] and [`release`].
//!
//! Why a crate of its own: the core needs `fedsec-privacy` and nothing else.
//! Inside the coordinator the simulator would have to link tonic, rustls and
//! SQLite to reuse it; inside `fedsec-privacy` it would mix the server
//! optimiser and round policy into a crate that is DP math only.

pub mod accumulate;
pub mod error;
pub mod noise;
pub mod plan;
pub mod release;
pub mod resolve;
pub mod screen;

pub use accumulate::{AddError, Added, RoundSum};
pub use error::RoundError;
pub use noise::{NoiseRequest, RoundNoise};
pub use plan::{Charged, Plan, PlanInput, PlannedRound, Statement, plan};
pub use release::{AdaptivePlan, NoisePlan, Release, Released, ServerOpt, release};
pub use resolve::{JobParams, NoiseLevel, Resolved, calibrate, resolve};
pub use screen::{ScreenConfig, ScreenPolicy, ScreenThresholds, Screened, Screener};
