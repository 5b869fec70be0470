//! Durable state behind the [`Store`] trait: jobs, clients, round attempts,
//! the privacy ledger, model versions, audit events and the coordinator's
//! secrets.
//!
//! The trait is synchronous (SQLite is); async code calls it through
//! `tokio::task::spawn_blocking`. [`sqlite::SqliteStore`] is the embedded
//! default; a PostgreSQL implementation serving several coordinator replicas
//! is planned behind the same trait.
//!
//! Invariant kept by every implementation: a round's ledger entry, its model
//! version, the job's progress and the record of who took part
//! ([`contributions`]) are written in ONE transaction
//! ([`Store::commit_round`]); ledger sequence numbers are 1-based and
//! gap-free per job; model version numbers increase by one. Every release
//! of a version (job creation, round commit, rollback) appends its audit
//! row (`model_released` / `model_rolled_back`) and anchors the version at
//! it in that same transaction: no version is served without its row.

pub mod audit_chain;
pub mod contributions;
pub mod fault;
pub mod seal;
pub mod sqlite;
mod transient;

use fedsec_privacy::RoundCharge;
use fedsec_proto::release::AuditAnchor;
use fedsec_proto::tls::ClientIdentity;
use serde::{Deserialize, Serialize};

use crate::config::JobSpec;

pub use contributions::{
    Contribution, ContributionFilter, ContributionOutcome, ContributionRecord, TenantHold,
};

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database reported an error.
    #[error("database error: {0}")]
    Database(String),
    /// The store cannot do the operation now but may later, nothing was
    /// written: disk full, database busy or locked, I/O error
    /// ([`StoreError::is_transient`]).
    #[error("store temporarily unavailable: {0}")]
    Unavailable(String),
    /// A stored row could not be decoded.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// A write conflicts with the stored state (e.g. committing a round twice).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The data directory could not be used.
    #[error("data directory {path}: {message}")]
    DataDir {
        /// The directory.
        path: std::path::PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The encryption key does not fit the database, or a sealed record
    /// does not open (tampered, moved between records, wrong key).
    #[error("encryption at rest: {0}")]
    Encryption(String),
    /// The database was written by a newer coordinator.
    #[error("database schema version {found} is newer than this coordinator's {supported}")]
    SchemaTooNew {
        /// Version in the file.
        found: i64,
        /// Newest version this build knows.
        supported: i64,
    },
}

/// Result of store operations.
pub type StoreResult<T> = Result<T, StoreError>;

/// Lifecycle state of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobState {
    /// Opening rounds.
    Running,
    /// Paused by an admin.
    Paused,
    /// Ran all its rounds.
    Completed,
    /// The next round would exceed the ε budget.
    BudgetExhausted,
    /// Stopped by an unrecoverable error.
    Failed,
}

impl JobState {
    /// Stored / displayed name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "RUNNING",
            Self::Paused => "PAUSED",
            Self::Completed => "COMPLETED",
            Self::BudgetExhausted => "BUDGET_EXHAUSTED",
            Self::Failed => "FAILED",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "RUNNING" => Self::Running,
            "PAUSED" => Self::Paused,
            "COMPLETED" => Self::Completed,
            "BUDGET_EXHAUSTED" => Self::BudgetExhausted,
            "FAILED" => Self::Failed,
            _ => return None,
        })
    }

    /// Whether the job will never open another round.
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Completed | Self::BudgetExhausted | Self::Failed)
    }
}

/// Parameters fixed when a job starts (first round): sampling rate, cohort
/// and noise. They never change afterwards.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Resolution {
    /// Poisson sampling rate q.
    pub sampling_rate: f64,
    /// Expected cohort q·N, the fixed denominator.
    pub expected_cohort: f64,
    /// Tenants with an active client identity when the job started (for
    /// the record; the denominator uses the declared population). Jobs
    /// started by older coordinators recorded client identities here.
    pub registered_at_start: u64,
    /// Total noise multiplier z the job is accounted with (0: noise disabled).
    pub noise_multiplier: f64,
    /// Noise multiplier z_Δ of the model update (= z without adaptive clipping).
    pub update_noise_multiplier: f64,
    /// Stddev σ_b of the clipped-count noise (0 without adaptive clipping).
    pub count_stddev: f64,
    /// Unix ms at which the job started.
    pub started_unix_ms: i64,
}

/// A job as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRecord {
    /// The job's definition (id filled in).
    pub spec: JobSpec,
    /// Current state.
    pub state: JobState,
    /// Why it is in this state.
    pub state_reason: String,
    /// Creation time.
    pub created_unix_ms: i64,
    /// Start-time parameters, once the job has started.
    pub resolution: Option<Resolution>,
    /// Rounds committed.
    pub rounds_completed: u64,
    /// Current model version.
    pub current_version: u64,
    /// Clip norm for the next round.
    pub clip_norm: f64,
}

impl JobRecord {
    /// The job id.
    pub fn id(&self) -> &str {
        &self.spec.id
    }
}

/// Status of a client identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ClientStatus {
    /// May be selected.
    Active,
    /// Rejected and never selected until released.
    Quarantined,
    /// Permanently refused.
    Revoked,
}

impl ClientStatus {
    /// Stored / displayed name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "ACTIVE",
            Self::Quarantined => "QUARANTINED",
            Self::Revoked => "REVOKED",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "ACTIVE" => Self::Active,
            "QUARANTINED" => Self::Quarantined,
            "REVOKED" => Self::Revoked,
            _ => return None,
        })
    }
}

/// A registered client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRecord {
    /// Identity from its certificate.
    pub identity: ClientIdentity,
    /// Status.
    pub status: ClientStatus,
    /// Why the status was last changed.
    pub status_reason: String,
    /// First registration.
    pub registered_unix_ms: i64,
    /// Last call seen.
    pub last_seen_unix_ms: i64,
    /// Rounds whose committed aggregate included this client's update.
    pub rounds_participated: u64,
    /// Software string from `Register`.
    pub software: String,
}

/// State of a round attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttemptState {
    /// Collecting updates.
    Open,
    /// Aggregated, charged and published.
    Committed,
    /// Closed without release (pause, rollback, shutdown, crash — never
    /// because of how many reported).
    Abandoned,
}

impl AttemptState {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "OPEN",
            Self::Committed => "COMMITTED",
            Self::Abandoned => "ABANDONED",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "OPEN" => Self::Open,
            "COMMITTED" => Self::Committed,
            "ABANDONED" => Self::Abandoned,
            _ => return None,
        })
    }
}

/// One attempt at one round.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptRecord {
    /// Job.
    pub job_id: String,
    /// Round (1-based).
    pub round: u64,
    /// Attempt (1-based).
    pub attempt: u32,
    /// State.
    pub state: AttemptState,
    /// Model version the round trains on.
    pub base_version: u64,
    /// Opening time.
    pub opened_unix_ms: i64,
    /// Submission deadline.
    pub deadline_unix_ms: i64,
    /// Closing time, once closed.
    pub closed_unix_ms: Option<i64>,
    /// Clients selected.
    pub selected: u64,
    /// Updates accepted.
    pub accepted: u64,
    /// Submissions rejected.
    pub rejected: u64,
    /// Why it closed as it did.
    pub note: String,
}

/// How an attempt was closed without a commit.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptClose {
    /// Updates that had been accepted (and are discarded).
    pub accepted: u64,
    /// Submissions rejected.
    pub rejected: u64,
    /// Why.
    pub note: String,
    /// When.
    pub closed_unix_ms: i64,
    /// The attempt's record of who took part (written with the close, no
    /// version: nothing was published).
    pub contributions: Vec<Contribution>,
}

/// Kind of a ledger entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LedgerKind {
    /// A committed round: privacy charged, a version published.
    Round,
    /// A rollback: nothing charged; spent privacy stays spent.
    Rollback,
}

impl LedgerKind {
    /// Stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Round => "ROUND",
            Self::Rollback => "ROLLBACK",
        }
    }
}

/// One ledger entry.
#[derive(Debug, Clone, PartialEq)]
pub struct LedgerRecord {
    /// Position in the job's ledger (assigned by the store, 1-based, gap-free).
    pub seq: u64,
    /// Kind.
    pub kind: LedgerKind,
    /// The round's charge (ROUND only).
    pub charge: Option<RoundCharge>,
    /// Attempt committed (ROUND only).
    pub attempt: u32,
    /// ε (PLD) after this entry.
    pub epsilon_pld: f64,
    /// ε (RDP) after this entry.
    pub epsilon_rdp: f64,
    /// δ.
    pub delta: f64,
    /// Version published or made current (assigned by the store for ROUND).
    pub model_version: u64,
    /// Accepted reports (operator-only).
    pub participants: u64,
    /// Rejected submissions.
    pub rejected: u64,
    /// Fraction of accepted updates the coordinator clipped.
    pub clipped_fraction: f64,
    /// Free text.
    pub note: String,
    /// Commit time.
    pub committed_unix_ms: i64,
}

/// A model version's metadata (no weights).
#[derive(Debug, Clone, PartialEq)]
pub struct VersionInfo {
    /// Version number (0: initial model).
    pub version: u64,
    /// Round after which it was published.
    pub round: u64,
    /// SHA-256 of the weight bytes.
    pub sha256: [u8; 32],
    /// Publication time.
    pub created_unix_ms: i64,
    /// ε (PLD) at publication.
    pub epsilon_pld: f64,
}

/// A model version with its weights.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelVersionRecord {
    /// Metadata.
    pub info: VersionInfo,
    /// Little-endian f32 weights.
    pub weights: Vec<u8>,
    /// FedAvgM momentum buffer after this version (little-endian f32), if used.
    pub momentum: Option<Vec<u8>>,
    /// Clip norm to use for the round after this version.
    pub clip_norm: f64,
    /// The privacy receipt, canonical JSON.
    pub receipt_json: String,
}

/// Everything one committed round writes, in one transaction.
#[derive(Debug, Clone)]
pub struct RoundCommit {
    /// Job.
    pub job_id: String,
    /// Round (must be the job's `rounds_completed + 1`).
    pub round: u64,
    /// Attempt (must be the open one).
    pub attempt: u32,
    /// The ledger entry (`seq` and `model_version` are assigned by the store).
    pub ledger: LedgerRecord,
    /// The new version (`info.version` is assigned by the store).
    pub version: ModelVersionRecord,
    /// Clients whose updates were aggregated.
    pub participants: Vec<String>,
    /// Submissions rejected in this attempt.
    pub rejected: u64,
    /// The attempt's record of who took part, written in the same
    /// transaction with the version it published.
    pub contributions: Vec<Contribution>,
}

/// An audit event to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAuditEvent {
    /// When.
    pub unix_ms: i64,
    /// What, e.g. `update_rejected`.
    pub kind: String,
    /// Job concerned ("" if none).
    pub job_id: String,
    /// Client concerned ("" if none).
    pub client_id: String,
    /// Details.
    pub detail: String,
}

/// A stored audit event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// Increasing id.
    pub id: u64,
    /// The event.
    pub event: NewAuditEvent,
}

/// Durable state of a coordinator.
pub trait Store: Send + Sync + 'static {
    /// A named secret, generated by `generate` and stored on first use.
    fn secret(&self, name: &str, generate: &dyn Fn() -> Vec<u8>) -> StoreResult<Vec<u8>>;

    /// Creates a job with its initial model version 0.
    /// Fails with `Conflict` if the id exists.
    fn insert_job(&self, job: &JobRecord, initial: &ModelVersionRecord) -> StoreResult<()>;
    /// All jobs, newest first.
    fn jobs(&self) -> StoreResult<Vec<JobRecord>>;
    /// One job.
    fn job(&self, job_id: &str) -> StoreResult<Option<JobRecord>>;
    /// Sets a job's state and reason.
    fn set_job_state(&self, job_id: &str, state: JobState, reason: &str) -> StoreResult<()>;
    /// Records the start-time parameters (once).
    fn set_job_resolution(&self, job_id: &str, resolution: &Resolution) -> StoreResult<()>;

    /// Registers a client or refreshes its software string and last-seen
    /// time; keeps its status. Fails with `Conflict` if the client id is
    /// registered to another tenant. A new identity of a contained tenant
    /// ([`Store::contain_tenant`]) is stored QUARANTINED and joins the
    /// hold's list (the service refuses such registrations before; this
    /// closes the race with a containment stored in between).
    fn upsert_client(
        &self,
        identity: &ClientIdentity,
        software: &str,
        now_unix_ms: i64,
    ) -> StoreResult<ClientRecord>;
    /// All clients, by client id.
    fn clients(&self) -> StoreResult<Vec<ClientRecord>>;
    /// Changes a client's status; `None` if unknown.
    fn set_client_status(
        &self,
        client_id: &str,
        status: ClientStatus,
        reason: &str,
    ) -> StoreResult<Option<ClientRecord>>;
    /// Updates last-seen times (only forward).
    fn touch_clients(&self, seen: &[(String, i64)]) -> StoreResult<()>;

    /// The attempt number the next attempt at `round` gets (1 + the highest so far).
    fn next_attempt(&self, job_id: &str, round: u64) -> StoreResult<u32>;
    /// Records an opened attempt.
    fn open_attempt(&self, attempt: &AttemptRecord) -> StoreResult<()>;
    /// Closes an open attempt as abandoned, with its record of who took
    /// part (no version), in one transaction.
    fn abandon_attempt(
        &self,
        job_id: &str,
        round: u64,
        attempt: u32,
        close: &AttemptClose,
    ) -> StoreResult<()>;
    /// Marks every attempt still open as abandoned (start-up after a crash);
    /// returns them.
    fn abandon_open_attempts(
        &self,
        note: &str,
        now_unix_ms: i64,
    ) -> StoreResult<Vec<AttemptRecord>>;
    /// Attempts of a job, in order.
    fn attempts(&self, job_id: &str) -> StoreResult<Vec<AttemptRecord>>;

    /// Commits a round in one transaction: ledger entry, model version, job
    /// progress, attempt state, participants' counters and the attempt's
    /// record of who took part (with the version). Returns the assigned
    /// `(ledger seq, model version)`.
    fn commit_round(&self, commit: &RoundCommit) -> StoreResult<(u64, u64)>;
    /// Makes `version` current and appends a ROLLBACK ledger entry, in one
    /// transaction; returns the entry's seq.
    fn rollback(&self, job_id: &str, version: u64, entry: &LedgerRecord) -> StoreResult<u64>;
    /// A job's ledger in commit order.
    fn ledger(&self, job_id: &str) -> StoreResult<Vec<LedgerRecord>>;
    /// A job's versions, oldest first (no weights).
    fn versions(&self, job_id: &str) -> StoreResult<Vec<VersionInfo>>;
    /// One version with its weights.
    fn version(&self, job_id: &str, version: u64) -> StoreResult<Option<ModelVersionRecord>>;

    /// Records a job's empirical (canary) audit and replaces the receipt of
    /// `version` by `receipt_json` (the same receipt with the audit
    /// attached), in one transaction. Fails with `Conflict` if the job or
    /// version does not exist or an audit is already recorded.
    fn record_empirical_audit(
        &self,
        job_id: &str,
        version: u64,
        audit_json: &str,
        receipt_json: &str,
        now_unix_ms: i64,
    ) -> StoreResult<()>;
    /// The job's recorded empirical audit (JSON of
    /// `fedsec_privacy::EmpiricalAudit`) and the version it is attached to.
    fn empirical_audit(&self, job_id: &str) -> StoreResult<Option<(String, u64)>>;

    /// Appends an audit event chained to the log's head
    /// ([`audit_chain`]); returns its id.
    fn append_audit(&self, event: &NewAuditEvent) -> StoreResult<u64>;
    /// Deletes audit events older than `before_unix_ms`, and the oldest
    /// ones beyond the newest `max_rows`, moving the chain's checkpoint to
    /// the last one deleted; returns how many were deleted.
    fn prune_audit(&self, before_unix_ms: i64, max_rows: u64) -> StoreResult<u64>;
    /// The audit chain's head (newest row, or the checkpoint, or genesis).
    fn audit_head(&self) -> StoreResult<AuditAnchor>;
    /// The audit row a model version's latest release (creation, commit or
    /// rollback to it) is anchored at; `None` for an unknown version.
    fn release_anchor(&self, job_id: &str, version: u64) -> StoreResult<Option<AuditAnchor>>;
    /// Audit events, newest first.
    fn audit_events(&self, job_id: Option<&str>, limit: usize) -> StoreResult<Vec<AuditRecord>>;
    /// Audit events naming one of `client_ids`, or (with `tenant_id`)
    /// tenant-wide events of that tenant (`tenant_contained`,
    /// `tenant_released`), newest first.
    fn audit_events_concerning(
        &self,
        client_ids: &[String],
        tenant_id: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<AuditRecord>>;

    /// Recorded contributions passing `filter`, oldest first (by job,
    /// round, attempt, position).
    fn contributions(&self, filter: &ContributionFilter) -> StoreResult<Vec<ContributionRecord>>;
    /// Deletes contributions recorded before `before_unix_ms`, and the
    /// oldest beyond the newest `max_rows`; returns how many were deleted.
    fn prune_contributions(&self, before_unix_ms: i64, max_rows: u64) -> StoreResult<u64>;

    /// Contains a tenant, in one transaction: records the hold and
    /// quarantines every active identity of the tenant. Returns the hold
    /// and the tenant's identities. Fails with `Conflict` if already
    /// contained.
    fn contain_tenant(
        &self,
        tenant_id: &str,
        reason: &str,
        now_unix_ms: i64,
    ) -> StoreResult<(TenantHold, Vec<ClientRecord>)>;
    /// Releases a contained tenant, in one transaction: deletes the hold
    /// and makes active again the identities it quarantined (still
    /// quarantined ones; revoked stay revoked). `None` if not contained.
    fn release_tenant(
        &self,
        tenant_id: &str,
        reason: &str,
    ) -> StoreResult<Option<(TenantHold, Vec<ClientRecord>)>>;
    /// Contained tenants.
    fn contained_tenants(&self) -> StoreResult<Vec<TenantHold>>;
}
