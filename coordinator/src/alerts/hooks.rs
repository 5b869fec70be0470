//! The alerts the coordinator raises, one function per place that raises
//! them, so each call site stays one line. All are no-ops without
//! `[alerts]`, and none waits.

use super::event::{Alert, AlertKind, Severity};
use super::sink::AlertSink;
use crate::store::{ClientStatus, JobState};

/// A job reached a final state: `job_failed` or `budget_exhausted`
/// (completion raises nothing).
pub(crate) fn job_finished(sink: &AlertSink, job: &str, state: JobState, reason: &str) {
    let (kind, severity) = match state {
        JobState::Failed => (AlertKind::JobFailed, Severity::Critical),
        JobState::BudgetExhausted => (AlertKind::BudgetExhausted, Severity::Warning),
        _ => return,
    };
    sink.send(
        Alert::new(
            kind,
            severity,
            format!("job {job} ended {}: {reason}", state.as_str()),
        )
        .job(job)
        .detail("state", state.as_str())
        .detail("reason", reason),
    );
}

/// A job was paused: by an admin (`info`) or by the coordinator itself
/// (`critical`: it needs a person).
pub(crate) fn job_paused(sink: &AlertSink, job: &str, reason: &str, by_admin: bool) {
    let severity = if by_admin {
        Severity::Info
    } else {
        Severity::Critical
    };
    sink.send(
        Alert::new(
            AlertKind::JobPaused,
            severity,
            format!("job {job} {reason}"),
        )
        .job(job)
        .detail("reason", reason)
        .detail("by_admin", by_admin),
    );
}

/// A transient store fault started holding a job.
pub(crate) fn store_fault(sink: &AlertSink, job: &str, during: &str, error: &str, retry_ms: u64) {
    sink.send(
        Alert::new(
            AlertKind::StoreFault,
            Severity::Critical,
            format!(
                "job {job} is held by a store fault during {during}: {error}; nothing is lost, \
                 the coordinator retries with backoff and the job resumes when the store recovers"
            ),
        )
        .job(job)
        .detail("during", during)
        .detail("error", error)
        .detail("retry_in_ms", retry_ms),
    );
}

/// The store recovered from the fault that held a job.
pub(crate) fn store_recovered(sink: &AlertSink, job: &str, detail: &str, retries: u32) {
    sink.send(
        Alert::new(
            AlertKind::StoreRecovered,
            Severity::Info,
            format!("job {job}: {detail}"),
        )
        .job(job)
        .detail("failed_tries", retries),
    );
}

/// An admin (or an automatic policy acting as one) changed a client's
/// status: quarantine and revocation raise alerts.
pub(crate) fn client_status(
    sink: &AlertSink,
    client: &str,
    tenant: &str,
    status: ClientStatus,
    actor: &str,
    reason: &str,
) {
    let (kind, verb) = match status {
        ClientStatus::Quarantined => (AlertKind::ClientQuarantined, "quarantined"),
        ClientStatus::Revoked => (AlertKind::ClientRevoked, "revoked"),
        ClientStatus::Active => return,
    };
    sink.send(
        Alert::new(
            kind,
            Severity::Warning,
            format!("client {client} (tenant {tenant}) {verb} by {actor}: {reason}"),
        )
        .client(client, tenant)
        .detail("actor", actor)
        .detail("reason", reason),
    );
}
