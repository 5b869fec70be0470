//! What an alert is: its kind, severity, subject (job, client, tenant), a
//! human message and machine-readable details. Pure data; rendering is in
//! [`super::payload`], delivery in `super::sink`.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::engine::now_unix_ms;

/// Longest alert message, in characters (Slack shows at most 3,000 in a
/// section; the rest of the payload needs room too).
pub const MAX_MESSAGE_CHARS: usize = 1500;

/// Longest string detail value, in characters.
pub const MAX_DETAIL_CHARS: usize = 500;

/// Most details one alert carries.
pub const MAX_DETAILS: usize = 24;

/// What happened. The `snake_case` name is the `kind` of the JSON payload
/// and the `kind` label of `fedsec_alerts_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// An update looked anomalous to the update screening (`fedsec::screen`).
    UpdateAnomaly,
    /// A client was quarantined (by an admin or automatically).
    ClientQuarantined,
    /// A client identity was revoked.
    ClientRevoked,
    /// Many uploads were rejected within a short window.
    RejectedUpdatesBurst,
    /// A job's privacy spending crossed its "nearly spent" fraction.
    BudgetNearlySpent,
    /// A job ended because its next round would exceed its budget.
    BudgetExhausted,
    /// A job was paused (by an admin, or by the coordinator on an
    /// accountant error).
    JobPaused,
    /// A job failed.
    JobFailed,
    /// A transient store fault holds a job (it resumes by itself).
    StoreFault,
    /// The store recovered from a fault; the job resumed.
    StoreRecovered,
    /// A certificate (the server's, its CA, or a client's) expires soon or
    /// has expired.
    CertificateExpiring,
}

impl AlertKind {
    /// Every kind, in declaration order.
    pub const ALL: [Self; 11] = [
        Self::UpdateAnomaly,
        Self::ClientQuarantined,
        Self::ClientRevoked,
        Self::RejectedUpdatesBurst,
        Self::BudgetNearlySpent,
        Self::BudgetExhausted,
        Self::JobPaused,
        Self::JobFailed,
        Self::StoreFault,
        Self::StoreRecovered,
        Self::CertificateExpiring,
    ];

    /// The `snake_case` name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UpdateAnomaly => "update_anomaly",
            Self::ClientQuarantined => "client_quarantined",
            Self::ClientRevoked => "client_revoked",
            Self::RejectedUpdatesBurst => "rejected_updates_burst",
            Self::BudgetNearlySpent => "budget_nearly_spent",
            Self::BudgetExhausted => "budget_exhausted",
            Self::JobPaused => "job_paused",
            Self::JobFailed => "job_failed",
            Self::StoreFault => "store_fault",
            Self::StoreRecovered => "store_recovered",
            Self::CertificateExpiring => "certificate_expiring",
        }
    }

    /// A short title for people ("store fault").
    pub fn title(self) -> &'static str {
        match self {
            Self::UpdateAnomaly => "anomalous update",
            Self::ClientQuarantined => "client quarantined",
            Self::ClientRevoked => "client revoked",
            Self::RejectedUpdatesBurst => "burst of rejected updates",
            Self::BudgetNearlySpent => "privacy budget nearly spent",
            Self::BudgetExhausted => "privacy budget exhausted",
            Self::JobPaused => "job paused",
            Self::JobFailed => "job failed",
            Self::StoreFault => "store fault",
            Self::StoreRecovered => "store recovered",
            Self::CertificateExpiring => "certificate expiring",
        }
    }
}

/// How urgent an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// For the record (e.g. the store recovered).
    Info,
    /// Someone should look soon.
    Warning,
    /// Someone should look now.
    Critical,
}

impl Severity {
    /// The `snake_case` name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Info => "info",
            Self::Warning => "warning",
            Self::Critical => "critical",
        }
    }
}

/// One alert.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// What happened.
    pub kind: AlertKind,
    /// How urgent it is.
    pub severity: Severity,
    /// The job concerned ("" if none).
    pub job: String,
    /// The client identity concerned ("" if none).
    pub client: String,
    /// The tenant concerned ("" if none).
    pub tenant: String,
    /// One or two sentences for a person (at most [`MAX_MESSAGE_CHARS`]).
    pub message: String,
    /// When it happened (Unix milliseconds).
    pub unix_ms: i64,
    /// Machine-readable facts (at most [`MAX_DETAILS`]).
    pub details: Map<String, Value>,
    /// What else tells two alerts of one kind, job, client and tenant
    /// apart for de-duplication (e.g. which certificate). Not sent.
    pub subject: String,
}

fn bounded(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

impl Alert {
    /// An alert of `kind` stamped now, with no subject yet.
    pub fn new(kind: AlertKind, severity: Severity, message: impl AsRef<str>) -> Self {
        Self {
            kind,
            severity,
            job: String::new(),
            client: String::new(),
            tenant: String::new(),
            message: bounded(message.as_ref(), MAX_MESSAGE_CHARS),
            unix_ms: now_unix_ms(),
            details: Map::new(),
            subject: String::new(),
        }
    }

    /// Names the job.
    #[must_use]
    pub fn job(mut self, job: &str) -> Self {
        job.clone_into(&mut self.job);
        self
    }

    /// Names the client and its tenant.
    #[must_use]
    pub fn client(mut self, client: &str, tenant: &str) -> Self {
        client.clone_into(&mut self.client);
        tenant.clone_into(&mut self.tenant);
        self
    }

    /// Names the tenant alone (e.g. a whole tenant quarantined).
    #[must_use]
    pub fn tenant(mut self, tenant: &str) -> Self {
        tenant.clone_into(&mut self.tenant);
        self
    }

    /// Adds a detail (strings are cut at [`MAX_DETAIL_CHARS`]; past
    /// [`MAX_DETAILS`] details, further ones are ignored).
    #[must_use]
    pub fn detail(mut self, key: &str, value: impl Into<Value>) -> Self {
        if self.details.len() < MAX_DETAILS || self.details.contains_key(key) {
            let value = match value.into() {
                Value::String(s) => Value::String(bounded(&s, MAX_DETAIL_CHARS)),
                other => other,
            };
            self.details.insert(key.to_owned(), value);
        }
        self
    }

    /// Sets the de-duplication subject.
    #[must_use]
    pub fn subject(mut self, subject: &str) -> Self {
        subject.clone_into(&mut self.subject);
        self
    }

    /// The alert the update screening raises for one update (the hook of
    /// the `fedsec::screen` events): `action` is what the job's policy did
    /// (`log`, `exclude`, `quarantine`), `reasons` which statistics were
    /// out of bounds and `score` the screening score.
    pub fn update_anomaly(
        job: &str,
        client: &str,
        tenant: &str,
        round: u64,
        score: f64,
        reasons: &str,
        action: &str,
    ) -> Self {
        let severity = if action == "log" {
            Severity::Warning
        } else {
            Severity::Critical
        };
        Self::new(
            AlertKind::UpdateAnomaly,
            severity,
            format!(
                "anomalous update from client {client} (tenant {tenant}) in round {round} of job \
                 {job}: {reasons}; policy action: {action}"
            ),
        )
        .job(job)
        .client(client, tenant)
        .subject(&round.to_string())
        .detail("round", round)
        .detail("score", finite(score))
        .detail("reasons", reasons)
        .detail("action", action)
    }
}

/// A finite f64 as JSON (non-finite values become `null`).
pub(crate) fn finite(x: f64) -> Value {
    serde_json::Number::from_f64(x).map_or(Value::Null, Value::Number)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_details_are_bounded() {
        let long = "é".repeat(MAX_MESSAGE_CHARS + 10);
        let a = Alert::new(AlertKind::JobFailed, Severity::Critical, &long);
        assert_eq!(a.message.chars().count(), MAX_MESSAGE_CHARS + 1);
        let mut a = a.detail("x", "y".repeat(MAX_DETAIL_CHARS * 2));
        assert_eq!(
            a.details["x"].as_str().unwrap().chars().count(),
            MAX_DETAIL_CHARS + 1
        );
        for i in 0..100 {
            a = a.detail(&format!("k{i}"), i);
        }
        assert_eq!(a.details.len(), MAX_DETAILS);
    }

    #[test]
    fn kinds_have_distinct_names() {
        let names: std::collections::HashSet<_> =
            AlertKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names.len(), AlertKind::ALL.len());
        for k in AlertKind::ALL {
            assert_eq!(
                serde_json::to_value(k).unwrap(),
                Value::String(k.as_str().into())
            );
        }
    }

    #[test]
    fn an_anomaly_alert_names_who_and_what() {
        let a = Alert::update_anomaly("j", "c1", "t1", 7, f64::NAN, "norm 9.1 > 3", "exclude");
        assert_eq!(
            (a.job.as_str(), a.client.as_str(), a.tenant.as_str()),
            ("j", "c1", "t1")
        );
        assert_eq!(a.severity, Severity::Critical);
        assert_eq!(a.details["score"], Value::Null);
        assert_eq!(a.details["round"], 7);
        assert!(a.message.contains("round 7"));
    }
}
