//! fedsec-client: the participant a tenant embeds in its own service.
//!
//! It registers with the coordinator over mutual TLS, polls for work, and
//! when selected downloads and verifies the global model, checks the task
//! against the tenant's own privacy policy and ledger, trains locally on the
//! tenant's labelled sessions (a local holdout kept aside), clips the update,
//! records the round in the tenant's ledger and uploads it. Meanwhile the
//! host scores sessions with the latest global model.
//!
//! ```no_run
//! use fedsec_client::{DataSource, Event, Participant, PrivacyPolicy};
//! use fedsec_proto::tls::TlsFiles;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let participant = Participant::builder()
//!     .endpoint("https://coordinator.example:7443")
//!     .release_public_key_file("pki/release-signing.pub.pem")
//!     .tls_files(TlsFiles {
//!         ca: "pki/ca.pem".into(),
//!         cert: "pki/clients/client-0001.pem".into(),
//!         key: "pki/clients/client-0001.key".into(),
//!     })
//!     .data(DataSource::watch_dir("/var/log/shop"))
//!     .policy(PrivacyPolicy::new(8.0, 1e-6))
//!     .state_dir("/var/lib/fedsec-client")
//!     .build()?;
//! let handle = participant.handle();
//! let mut events = participant.subscribe();
//! let task = tokio::spawn(participant.run(async {
//!     let _ = tokio::signal::ctrl_c().await;
//! }));
//! while let Ok(event) = events.recv().await {
//!     if let Event::ModelUpdated { version, .. } = event {
//!         println!("model v{version}: {:?}", handle.score(&[0.0; 38])?);
//!     }
//! }
//! task.await??;
//! # Ok(()) }
//! ```
//!
//! Modules, by what they own:
//!
//! - [`participant`]: the builder and the protocol loop;
//! - [`handle`]: the host's handle (events, scoring, explanations, data);
//! - [`history`]: the round history a receipt references: fetched page by
//!   page, checked against its digest, then verified;
//! - [`events`]: what the participant reports;
//! - [`policy`]: the tenant's privacy policy and training limits;
//! - [`guard`]: the tenant-side privacy guard (pure accounting decisions);
//! - [`ledger`]: the tenant's ledger file;
//! - [`state`]: the state directory (lock, atomic writes, cached model);
//! - [`data`]: local labelled sessions from log files, directories or the host;
//! - [`rpc`]: the gRPC calls and the validation of everything received;
//! - [`task`]: a task's terms, parsed and validated once where it arrives;
//! - [`probe`]: naming a refused TLS handshake;
//! - [`update`]: clipping and client-side noise of the update;
//! - [`wire`]: the wire form of the detector's training config and of a
//!   task's reference;
//! - [`retry`]: backoff and poll timing;
//! - [`config`]: the `client.toml` file of the `fedsec-client` binary;
//! - [`error`]: errors, and the classification of failures and TLS problems.

pub mod config;
pub mod data;
pub mod error;
pub mod events;
pub mod guard;
pub mod handle;
pub mod history;
pub mod ledger;
pub mod participant;
pub mod policy;
pub mod probe;
pub mod release_file;
pub mod retry;
pub mod rpc;
pub mod state;
pub mod task;
pub mod update;
pub mod wire;

pub use data::{
    DataOptions, DataPipeline, DataSource, LabelOptions, LabelledLog, SharedEnrichment,
    WeakLabelling,
};
pub use error::{BuildError, ConnectionError, Error, RpcError};
pub use events::{Event, HoldoutReport, TaskRef, TrainReport};
pub use guard::{Basis, SkipReason};
pub use handle::{Explanations, GlobalModel, ParticipantHandle, ScoreError, SessionExplanation};
pub use participant::{Participant, ParticipantBuilder, Registration, RunOutcome, Timing};
pub use policy::{AccountantKind, PrivacyPolicy, TrainingLimits};
