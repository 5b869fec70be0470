//! The per-round record of who took part (issue 22, incident response):
//! one row per submission that reached an open round attempt — accepted
//! into the sum, rejected with its reason, or excluded by screening — with
//! the norm as received, whether the coordinator clipped it, and the model
//! version the attempt published (none when the attempt was abandoned).
//!
//! The rows of a committed attempt are written in the round's commit
//! transaction ([`super::Store::commit_round`]) and those of an abandoned
//! attempt with its close ([`super::Store::abandon_attempt`]): the record
//! can never disagree with the ledger. It is cohort-revealing, so with
//! encryption at rest everything that names or measures a participant is
//! sealed (see `sqlite/contributions.rs`), and it is kept for a bounded
//! time (`limits.contribution_max_age_days`, `limits.contribution_max_rows`).

use serde::{Deserialize, Serialize};

/// What became of one submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ContributionOutcome {
    /// Re-clipped and added to the round's sum.
    Accepted,
    /// Refused with a reason (nothing of it touched the sum).
    Rejected,
    /// Received and valid, but left out of the sum by update screening.
    Excluded,
}

impl ContributionOutcome {
    /// Stored / displayed name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "ACCEPTED",
            Self::Rejected => "REJECTED",
            Self::Excluded => "EXCLUDED",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "ACCEPTED" => Self::Accepted,
            "REJECTED" => Self::Rejected,
            "EXCLUDED" => Self::Excluded,
            _ => return None,
        })
    }
}

/// One submission to a round attempt, as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contribution {
    /// The submitting client identity.
    pub client_id: String,
    /// Its tenant.
    pub tenant_id: String,
    /// What became of it.
    pub outcome: ContributionOutcome,
    /// Why it was rejected or excluded (`reason_label: detail`); empty when
    /// accepted.
    pub reason: String,
    /// L2 norm of the update as received, before re-clipping (`None` when
    /// it was rejected before being decoded and measured).
    pub norm: Option<f64>,
    /// Whether the coordinator's re-clipping shrank it.
    pub clipped: bool,
    /// The update screening's scores (JSON), when screening ran.
    pub screen_json: Option<String>,
    /// When the outcome was decided (Unix ms).
    pub unix_ms: i64,
}

/// A recorded contribution with the attempt it belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct ContributionRecord {
    /// Job.
    pub job_id: String,
    /// Round (1-based).
    pub round: u64,
    /// Attempt (1-based).
    pub attempt: u32,
    /// Position within the attempt's record (1-based).
    pub seq: u32,
    /// Version the attempt published; `None` if it was abandoned.
    pub model_version: Option<u64>,
    /// The contribution.
    pub contribution: Contribution,
}

/// Which contributions to read (every set field must match).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContributionFilter {
    /// Only this job's.
    pub job_id: Option<String>,
    /// Only this client identity's.
    pub client_id: Option<String>,
    /// Only this tenant's identities'.
    pub tenant_id: Option<String>,
}

impl ContributionFilter {
    /// Whether `r` passes the filter.
    pub fn matches(&self, r: &ContributionRecord) -> bool {
        self.job_id.as_deref().is_none_or(|j| j == r.job_id)
            && self
                .client_id
                .as_deref()
                .is_none_or(|c| c == r.contribution.client_id)
            && self
                .tenant_id
                .as_deref()
                .is_none_or(|t| t == r.contribution.tenant_id)
    }
}

/// A contained tenant: every identity it had was quarantined, and no
/// identity of it may register until an admin releases it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantHold {
    /// The tenant.
    pub tenant_id: String,
    /// Why (the admin's reason).
    pub reason: String,
    /// Since when (Unix ms).
    pub since_unix_ms: i64,
    /// Client identities the containment quarantined (active ones at the
    /// time, and any registered while contained): the ones a release
    /// makes active again. Identities quarantined or revoked for other
    /// reasons keep their status.
    pub quarantined: Vec<String>,
}
