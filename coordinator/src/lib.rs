//! The fedsec coordinator: DP-FedAvg rounds over gRPC with mutual TLS,
//! streaming aggregation with server-side re-clipping, central Gaussian
//! noise, and a crash-safe privacy ledger.
//!
//! A library with a thin binary: `fedsec-coordinator serve` and programs
//! embedding the coordinator (end-to-end tests, the one-process demo) share
//! [`Coordinator::start`]:
//!
//! ```no_run
//! # async fn demo() -> Result<(), fedsec_coordinator::Error> {
//! use fedsec_coordinator::{Coordinator, CoordinatorConfig, JobSpec};
//! use fedsec_model::ModelSpec;
//!
//! let config = CoordinatorConfig {
//!     listen: "127.0.0.1:0".parse().unwrap(),
//!     data_dir: "coordinator-data".into(),
//!     tls: Some(fedsec_proto::tls::TlsFiles {
//!         ca: "pki/ca.pem".into(),
//!         cert: "pki/server.pem".into(),
//!         key: "pki/server.key".into(),
//!     }),
//!     admins: vec!["admin".into()],
//!     ..Default::default()
//! };
//! let running = Coordinator::start(config).await?;
//! let job = running
//!     .admin()
//!     .create_job(JobSpec::new("bots", ModelSpec::mlp(25, [64]), 0.1, 200))
//!     .await?;
//! println!("job {} on {}", job.job_id, running.endpoint());
//! running.shutdown().await?;
//! # Ok(()) }
//! ```
//!
//! # The public surface, and why
//!
//! A small facade: what the binary, programs embedding the coordinator, the
//! benches, the experiments and the integration tests use — nothing else.
//!
//! - At the root: [`Coordinator`] and [`RunningCoordinator`] (start, serve,
//!   shut down), [`AdminApi`] (every Admin operation in-process),
//!   [`CoordinatorConfig`] and [`JobSpec`] (what an embedder writes),
//!   [`Error`], [`RejectReason`] and [`Result`], [`Receipt`] (parse a stored
//!   or served privacy receipt) and [`now_unix_ms`].
//! - Eight deliberately public modules, because users name their items:
//!   - [`alerts`]: the `[alerts]` webhook sink's configuration, the alert
//!     kinds and the payload schema receivers parse;
//!   - [`auth`]: bearer tokens on top of mTLS: the `[auth.tokens]`
//!     configuration, the refusal type, and local token minting
//!     ([`auth::mint`], what `fedsec-coordinator tokens` uses);
//!   - [`config`]: the configuration types (`[limits]`, `[rate_limits]`,
//!     `[metrics]`, `[storage]`, `[dangerous]`, the job-spec family) and
//!     their validation errors;
//!   - [`store`]: the [`store::Store`] trait and its records (inspection of a
//!     running coordinator's state, a future PostgreSQL backend),
//!     [`store::sqlite::SqliteStore`], at-rest sealing ([`store::seal`]) and
//!     fault injection for tests ([`store::fault`]);
//!   - [`error`]: the error type, its one mapping to gRPC statuses and the
//!     retry-after metadata key;
//!   - [`export`]: the safetensors files model versions are exported as
//!     (and initial weights imported from);
//!   - [`incident`]: the incident report (post-mortem draft) the Admin
//!     API returns as JSON, and its Markdown rendering (what the
//!     `admin incident report` command writes).
//!
//! Everything else is `pub(crate)`: the round machinery, services,
//! listeners, limits and metrics are internals that change with the
//! implementation (secure aggregation will rewrite the round path).
//!
//! # Modules, by what they own
//!
//! - [`alerts`]: the webhook alert sink (bounded queue, retries,
//!   de-duplication) and the alerts the coordinator raises.
//! - [`auth`]: OAuth2 / OIDC bearer tokens checked on top of mTLS
//!   (JWKS, claims, scopes, MFA) and local minting.
//! - [`config`]: the TOML configuration and job definitions, validation
//!   (`config/job_check.rs`).
//! - `limits`: the `[limits]` and `[rate_limits]` tables (every bound on one
//!   identity or connection; re-exported from [`config`]).
//! - [`error`]: the error type and its single mapping to gRPC statuses.
//! - `fields`: bounds on every string and bytes field callers send.
//! - [`store`]: durable state behind the [`store::Store`] trait (SQLite).
//! - `selection`: Poisson cohort sampling by keyed hash.
//! - `aggregate`: the streaming f64 sum and bounded decode buffers.
//! - `round`: one open round attempt and its submission bookkeeping (the
//!   sum, the plan and the release are the round core's, `fedsec_round`).
//! - [`canary`]: canary clients of audited jobs and the empirical-audit
//!   statistics (public: the statistics and their pooling over jobs).
//! - `accounting`: the coordinator's use of `fedsec-privacy` (receipts,
//!   noise sources).
//! - `job`: a job at run time and the task driving its rounds.
//! - `admin`: administration operations ([`AdminApi`]).
//! - `service`: the tonic `Coordinator` and `Admin` services.
//! - `metrics`: Prometheus metrics and the `/metrics` endpoint.
//! - `ratelimit`: per-identity token buckets per call class.
//! - `registry`: registered clients and their status, mirrored from the
//!   store.
//! - `shares`: per-identity concurrent calls and bytes in flight.
//! - `gate`: the tower layer every call passes (refused identities, health
//!   throttling, per-identity call shares).
//! - `listener`: the TLS listener (connection and handshake caps,
//!   connections that can be closed).
//! - `refusals`: how a caller is refused and what a refusal may store.
//! - `housekeeping`: periodic flushing, limiter sweeps and audit retention.
//! - [`export`]: safetensors export and import.
//! - [`incident`]: incident reports from the record of who took part.
//! - `server`: start-up, serving and shutdown; `recovery`: crash recovery
//!   and resumption of every job at start.

pub(crate) mod accounting;
pub(crate) mod admin;
pub(crate) mod aggregate;
pub mod alerts;
pub mod auth;
pub mod canary;
pub mod config;
mod engine;
pub mod error;
pub mod export;
pub(crate) mod fields;
mod gate;
mod housekeeping;
pub mod incident;
pub(crate) mod job;
pub(crate) mod limits;
pub(crate) mod listener;
pub(crate) mod metrics;
pub(crate) mod ratelimit;
mod recovery;
mod refusals;
mod registry;
pub(crate) mod round;
pub(crate) mod selection;
pub(crate) mod server;
pub(crate) mod service;
pub(crate) mod shares;
mod signing;
pub mod store;

pub use accounting::Receipt;
pub use admin::AdminApi;
pub use config::{CoordinatorConfig, JobSpec};
pub use engine::now_unix_ms;
pub use error::{Error, RejectReason, Result};
pub use server::{Coordinator, RunningCoordinator};
