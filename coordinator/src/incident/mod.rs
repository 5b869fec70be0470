//! Incident reports: a post-mortem draft about one client identity or one
//! tenant, built from the per-round record of who took part
//! ([`crate::store::contributions`]), the ledger, the round attempts, the
//! model versions and the hash-chained audit log.
//!
//! [`build`] is pure (records in, report out) so that what a report claims
//! is testable without a coordinator; [`markdown`] renders it. The Admin
//! RPC `IncidentReport` (admin read scope, audited) returns the report as
//! JSON and `fedsec-coordinator admin incident report` writes both files.
//!
//! Model lineage: every committed attempt trains on a base version and
//! publishes a new one, so versions form a tree. A version *carries* an
//! identity's influence when the identity's accepted update was in it or
//! in one of its ancestors; the current version's status is stated that
//! way, and the remediation point is the version the identity's first
//! published contribution was trained on (its last version served before
//! that contribution), which is the newest version on that lineage free of
//! it.

mod build;
pub mod markdown;

use serde::{Deserialize, Serialize};

pub use build::{Inputs, JobFacts, build};

/// Schema name of the JSON report.
pub const SCHEMA: &str = "fedsec.incident_report.v1";

/// Most contribution rows a report lists per job (the oldest first: the
/// first contributions matter most); more are counted, not listed.
pub const MAX_ROWS_PER_JOB: usize = 5_000;

/// Most audit events a report lists.
pub const MAX_AUDIT_EVENTS: usize = 2_000;

/// Who a report is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subject {
    /// The client identity (client reports).
    pub client_id: Option<String>,
    /// The tenant (tenant reports; for client reports, the client's tenant).
    pub tenant_id: Option<String>,
    /// Only this job, if the report was restricted to one.
    pub job_id: Option<String>,
}

/// One identity the report covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// Client id.
    pub client_id: String,
    /// Tenant id.
    pub tenant_id: String,
    /// ACTIVE, QUARANTINED or REVOKED.
    pub status: String,
    /// Why the status was last changed.
    pub status_reason: String,
    /// First registration (Unix ms).
    pub registered_unix_ms: i64,
    /// Last call seen (Unix ms).
    pub last_seen_unix_ms: i64,
    /// Committed rounds its update was aggregated into (all time, all jobs).
    pub rounds_participated: u64,
}

/// The tenant's containment, if any.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Containment {
    /// The admin's reason.
    pub reason: String,
    /// Since (Unix ms).
    pub since_unix_ms: i64,
    /// Identities the containment quarantined.
    pub quarantined: Vec<String>,
}

/// One recorded submission of the subject.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Round.
    pub round: u64,
    /// Attempt.
    pub attempt: u32,
    /// Submitting identity.
    pub client_id: String,
    /// ACCEPTED, REJECTED or EXCLUDED.
    pub outcome: String,
    /// Why rejected or excluded.
    pub reason: String,
    /// Norm as received.
    pub norm: Option<f64>,
    /// Whether it was re-clipped.
    pub clipped: bool,
    /// Version the attempt published (none: abandoned, nothing released).
    pub published_version: Option<u64>,
    /// The version the attempt trained on.
    pub base_version: Option<u64>,
    /// Update screening scores, when screening ran.
    pub screen: Option<serde_json::Value>,
    /// When (Unix ms).
    pub unix_ms: i64,
}

/// Privacy spent by a job so far (from its ledger).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spent {
    /// ε (PLD) at δ after the last entry.
    pub epsilon_pld: f64,
    /// ε (RDP) at δ after the last entry.
    pub epsilon_rdp: f64,
    /// δ.
    pub delta: f64,
    /// Rounds charged.
    pub rounds_charged: u64,
}

/// What the subject did to one job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobImpact {
    /// Job.
    pub job_id: String,
    /// Its state now.
    pub state: String,
    /// Its current version.
    pub current_version: u64,
    /// Rounds committed.
    pub rounds_completed: u64,
    /// Committed rounds that aggregated an update of the subject.
    pub rounds_contributed: Vec<u64>,
    /// Versions whose own round aggregated an update of the subject.
    pub versions_contributed: Vec<u64>,
    /// Versions carrying the subject's influence (contributed to, or
    /// descended from one that was).
    pub versions_carrying: Vec<u64>,
    /// Whether the current version carries the subject's influence.
    pub current_carries: bool,
    /// The subject's first published contribution: (round, version).
    pub first_contribution: Option<(u64, u64)>,
    /// The last version served before it: the version that round trained
    /// on (what `admin models rollback --before-client` returns to).
    pub last_version_before: Option<u64>,
    /// Rejected submissions of the subject.
    pub rejected: u64,
    /// Excluded submissions of the subject.
    pub excluded: u64,
    /// Privacy already spent by the job (rollbacks do not refund it).
    pub spent: Spent,
    /// The subject's recorded submissions to this job, oldest first.
    pub entries: Vec<Entry>,
    /// Entries not listed (past [`MAX_ROWS_PER_JOB`]).
    pub entries_not_listed: u64,
}

/// An audit event concerning the subject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEntry {
    /// Row id in the hash-chained log.
    pub id: u64,
    /// When.
    pub unix_ms: i64,
    /// Kind.
    pub kind: String,
    /// Job ("" if none).
    pub job_id: String,
    /// Client ("" if none).
    pub client_id: String,
    /// Details.
    pub detail: String,
    /// Whether it records an admin action.
    pub admin_action: bool,
}

/// One line of the timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimelineEntry {
    /// When.
    pub unix_ms: i64,
    /// What happened.
    pub what: String,
}

/// How much history the report could see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Coverage {
    /// `limits.contribution_max_age_days`.
    pub contribution_max_age_days: u64,
    /// `limits.contribution_max_rows`.
    pub contribution_max_rows: u64,
    /// Whether every committed contribution the identities' counters know
    /// of is in the record (false: retention pruned some, or they predate
    /// the record).
    pub complete: bool,
    /// Whether more audit events concern the subject than are listed.
    pub audit_truncated: bool,
}

/// A post-mortem draft.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IncidentReport {
    /// [`SCHEMA`].
    pub schema: String,
    /// When generated (Unix ms).
    pub generated_unix_ms: i64,
    /// Who asked.
    pub generated_by: String,
    /// Who it is about.
    pub subject: Subject,
    /// The identities covered.
    pub identities: Vec<Identity>,
    /// The tenant's containment, if contained.
    pub containment: Option<Containment>,
    /// Per job the subject submitted to.
    pub jobs: Vec<JobImpact>,
    /// Audit events concerning the subject, oldest first.
    pub audit: Vec<AuditEntry>,
    /// Everything above in time order.
    pub timeline: Vec<TimelineEntry>,
    /// What the report could see.
    pub coverage: Coverage,
}

/// Audit kinds that record an admin action.
pub const ADMIN_KINDS: &[&str] = &[
    "client_quarantined",
    "client_released",
    "client_revoked",
    "tenant_contained",
    "tenant_released",
    "admin_rollback_before_client",
    "incident_report",
];
