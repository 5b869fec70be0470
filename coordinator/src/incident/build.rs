//! Building a report from records (pure).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::{
    ADMIN_KINDS, AuditEntry, Containment, Coverage, Entry, Identity, IncidentReport, JobImpact,
    MAX_ROWS_PER_JOB, SCHEMA, Spent, Subject, TimelineEntry,
};
use crate::store::{
    AttemptRecord, AttemptState, AuditRecord, ClientRecord, ContributionOutcome,
    ContributionRecord, JobState, LedgerKind, LedgerRecord, TenantHold,
};

/// What one job contributes to a report.
#[derive(Debug, Clone)]
pub struct JobFacts {
    /// Job id.
    pub job_id: String,
    /// State now.
    pub state: JobState,
    /// Current version.
    pub current_version: u64,
    /// Rounds committed.
    pub rounds_completed: u64,
    /// Its ledger.
    pub ledger: Vec<LedgerRecord>,
    /// Its attempts.
    pub attempts: Vec<AttemptRecord>,
}

/// Everything a report is built from.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// Who it is about.
    pub subject: Subject,
    /// The identities covered (the client, or the tenant's).
    pub identities: Vec<ClientRecord>,
    /// The tenant's containment.
    pub hold: Option<TenantHold>,
    /// The identities' recorded contributions (every job: the coverage
    /// check counts them all), oldest first.
    pub contributions: Vec<ContributionRecord>,
    /// Facts of every job they submitted to.
    pub jobs: Vec<JobFacts>,
    /// Audit events concerning them, newest first.
    pub audit: Vec<AuditRecord>,
    /// Whether the audit query hit its limit.
    pub audit_truncated: bool,
    /// `limits.contribution_max_age_days`.
    pub max_age_days: u64,
    /// `limits.contribution_max_rows`.
    pub max_rows: u64,
    /// Who asked.
    pub generated_by: String,
    /// Now (Unix ms).
    pub now_unix_ms: i64,
}

/// The version each committed attempt published, and what it trained on.
fn lineage(job: &JobFacts) -> (HashMap<(u64, u32), u64>, HashMap<u64, u64>) {
    let mut published = HashMap::new();
    for e in &job.ledger {
        if e.kind == LedgerKind::Round
            && let Some(c) = &e.charge
        {
            published.insert((c.round, e.attempt), e.model_version);
        }
    }
    let mut parent = HashMap::new();
    for a in &job.attempts {
        if a.state == AttemptState::Committed
            && let Some(&v) = published.get(&(a.round, a.attempt))
        {
            parent.insert(v, a.base_version);
        }
    }
    (published, parent)
}

fn impact(job: &JobFacts, rows: &[&ContributionRecord]) -> JobImpact {
    let (_, parent) = lineage(job);
    let base: HashMap<(u64, u32), u64> = job
        .attempts
        .iter()
        .map(|a| ((a.round, a.attempt), a.base_version))
        .collect();
    let mut rounds = BTreeSet::new();
    let mut versions = BTreeSet::new();
    let mut first: Option<(u64, u64, u32)> = None;
    let (mut rejected, mut excluded) = (0, 0);
    for r in rows {
        match r.contribution.outcome {
            ContributionOutcome::Accepted => {
                if let Some(v) = r.model_version {
                    rounds.insert(r.round);
                    versions.insert(v);
                    if first.is_none_or(|(_, fv, _)| v < fv) {
                        first = Some((r.round, v, r.attempt));
                    }
                }
            }
            ContributionOutcome::Rejected => rejected += 1,
            ContributionOutcome::Excluded => excluded += 1,
        }
    }
    // A version carries the subject's influence if it, or an ancestor, was
    // contributed to.
    let carries = |mut v: u64| {
        let mut hops = 0;
        loop {
            if versions.contains(&v) {
                return true;
            }
            match parent.get(&v) {
                Some(&p) if hops < 1_000_000 && p != v => {
                    v = p;
                    hops += 1;
                }
                _ => return false,
            }
        }
    };
    let mut all_versions: BTreeSet<u64> = parent.keys().copied().collect();
    all_versions.insert(job.current_version);
    let versions_carrying: Vec<u64> = all_versions.into_iter().filter(|&v| carries(v)).collect();
    let current_carries = carries(job.current_version);
    let spent = job.ledger.last().map_or(
        Spent {
            epsilon_pld: 0.0,
            epsilon_rdp: 0.0,
            delta: 0.0,
            rounds_charged: 0,
        },
        |e| Spent {
            epsilon_pld: e.epsilon_pld,
            epsilon_rdp: e.epsilon_rdp,
            delta: e.delta,
            rounds_charged: job
                .ledger
                .iter()
                .filter(|e| e.kind == LedgerKind::Round)
                .count() as u64,
        },
    );
    let entries =
        rows.iter()
            .take(MAX_ROWS_PER_JOB)
            .map(|r| Entry {
                round: r.round,
                attempt: r.attempt,
                client_id: r.contribution.client_id.clone(),
                outcome: r.contribution.outcome.as_str().to_owned(),
                reason: r.contribution.reason.clone(),
                norm: r.contribution.norm,
                clipped: r.contribution.clipped,
                published_version: r.model_version,
                base_version: base.get(&(r.round, r.attempt)).copied(),
                screen: r.contribution.screen_json.as_deref().map(|s| {
                    serde_json::from_str(s).unwrap_or(serde_json::Value::String(s.into()))
                }),
                unix_ms: r.contribution.unix_ms,
            })
            .collect();
    JobImpact {
        job_id: job.job_id.clone(),
        state: job.state.as_str().to_owned(),
        current_version: job.current_version,
        rounds_completed: job.rounds_completed,
        rounds_contributed: rounds.into_iter().collect(),
        versions_contributed: versions.iter().copied().collect(),
        current_carries,
        versions_carrying,
        first_contribution: first.map(|(r, v, _)| (r, v)),
        last_version_before: first.and_then(|(r, _, a)| base.get(&(r, a)).copied()),
        rejected,
        excluded,
        spent,
        entries,
        entries_not_listed: rows.len().saturating_sub(MAX_ROWS_PER_JOB) as u64,
    }
}

fn identity(c: &ClientRecord) -> Identity {
    Identity {
        client_id: c.identity.client_id.clone(),
        tenant_id: c.identity.tenant_id.clone(),
        status: c.status.as_str().to_owned(),
        status_reason: c.status_reason.clone(),
        registered_unix_ms: c.registered_unix_ms,
        last_seen_unix_ms: c.last_seen_unix_ms,
        rounds_participated: c.rounds_participated,
    }
}

fn timeline(
    identities: &[Identity],
    jobs: &[JobImpact],
    audit: &[AuditEntry],
) -> Vec<TimelineEntry> {
    let mut t = Vec::new();
    for i in identities {
        t.push(TimelineEntry {
            unix_ms: i.registered_unix_ms,
            what: format!(
                "client {} (tenant {}) first registered",
                i.client_id, i.tenant_id
            ),
        });
    }
    for j in jobs {
        for e in &j.entries {
            let what = match (e.outcome.as_str(), e.published_version) {
                ("ACCEPTED", Some(v)) => format!(
                    "job {} round {} attempt {}: update of {} accepted (norm {}{}), published in version {v}",
                    j.job_id,
                    e.round,
                    e.attempt,
                    e.client_id,
                    e.norm.map_or("?".into(), |n| format!("{n:.4}")),
                    if e.clipped { ", re-clipped" } else { "" },
                ),
                ("ACCEPTED", None) => format!(
                    "job {} round {} attempt {}: update of {} accepted, attempt abandoned (nothing released)",
                    j.job_id, e.round, e.attempt, e.client_id
                ),
                (outcome, _) => format!(
                    "job {} round {} attempt {}: upload of {} {}: {}",
                    j.job_id,
                    e.round,
                    e.attempt,
                    e.client_id,
                    outcome.to_lowercase(),
                    e.reason
                ),
            };
            t.push(TimelineEntry {
                unix_ms: e.unix_ms,
                what,
            });
        }
    }
    for a in audit {
        t.push(TimelineEntry {
            unix_ms: a.unix_ms,
            what: format!(
                "audit #{} {}{}{}: {}",
                a.id,
                a.kind,
                if a.job_id.is_empty() {
                    String::new()
                } else {
                    format!(" job {}", a.job_id)
                },
                if a.client_id.is_empty() {
                    String::new()
                } else {
                    format!(" client {}", a.client_id)
                },
                a.detail
            ),
        });
    }
    t.sort_by(|a, b| a.unix_ms.cmp(&b.unix_ms).then_with(|| a.what.cmp(&b.what)));
    t
}

/// Builds the report.
pub fn build(inputs: Inputs) -> IncidentReport {
    let Inputs {
        subject,
        identities,
        hold,
        contributions,
        jobs,
        audit,
        audit_truncated,
        max_age_days,
        max_rows,
        generated_by,
        now_unix_ms,
    } = inputs;
    let mut by_job: BTreeMap<&str, Vec<&ContributionRecord>> = BTreeMap::new();
    for c in &contributions {
        if subject.job_id.as_deref().is_none_or(|j| j == c.job_id) {
            by_job.entry(c.job_id.as_str()).or_default().push(c);
        }
    }
    let impacts: Vec<JobImpact> = jobs
        .iter()
        .filter_map(|j| by_job.get(j.job_id.as_str()).map(|rows| impact(j, rows)))
        .collect();
    // Complete when the record holds every committed contribution the
    // identities' counters know of (all jobs).
    let recorded_published = contributions
        .iter()
        .filter(|c| {
            c.contribution.outcome == ContributionOutcome::Accepted && c.model_version.is_some()
        })
        .count() as u64;
    let counted: u64 = identities.iter().map(|c| c.rounds_participated).sum();
    let complete = recorded_published >= counted;
    let identities: Vec<Identity> = identities.iter().map(identity).collect();
    let mut audit: Vec<AuditEntry> = audit
        .into_iter()
        .map(|a| AuditEntry {
            admin_action: ADMIN_KINDS.contains(&a.event.kind.as_str()),
            id: a.id,
            unix_ms: a.event.unix_ms,
            kind: a.event.kind,
            job_id: a.event.job_id,
            client_id: a.event.client_id,
            detail: a.event.detail,
        })
        .collect();
    audit.sort_by_key(|a| a.id);
    let timeline = timeline(&identities, &impacts, &audit);
    IncidentReport {
        schema: SCHEMA.to_owned(),
        generated_unix_ms: now_unix_ms,
        generated_by,
        subject,
        identities,
        containment: hold.map(|h| Containment {
            reason: h.reason,
            since_unix_ms: h.since_unix_ms,
            quarantined: h.quarantined,
        }),
        jobs: impacts,
        audit,
        timeline,
        coverage: Coverage {
            contribution_max_age_days: max_age_days,
            contribution_max_rows: max_rows,
            complete,
            audit_truncated,
        },
    }
}
