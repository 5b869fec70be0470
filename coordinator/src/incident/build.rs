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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Contribution, LedgerRecord};
    use fedsec_privacy::RoundCharge;
    use fedsec_proto::tls::ClientIdentity;

    fn entry(round: u64, version: u64, eps: f64) -> LedgerRecord {
        LedgerRecord {
            seq: 0,
            kind: LedgerKind::Round,
            charge: Some(RoundCharge {
                round,
                sampling_rate: 1.0,
                noise_multiplier: 1.0,
                clip_norm: 1.0,
                sensitivity: 1.0,
                count_stddev: 0.0,
                expected_cohort: 3.0,
                committed_unix_ms: 0,
            }),
            attempt: 1,
            epsilon_pld: eps,
            epsilon_rdp: eps + 0.1,
            delta: 1e-6,
            model_version: version,
            participants: 2,
            rejected: 0,
            clipped_fraction: 0.0,
            note: String::new(),
            committed_unix_ms: 0,
        }
    }

    fn committed(round: u64, base: u64) -> AttemptRecord {
        AttemptRecord {
            job_id: "j".into(),
            round,
            attempt: 1,
            state: AttemptState::Committed,
            base_version: base,
            opened_unix_ms: 0,
            deadline_unix_ms: 0,
            closed_unix_ms: None,
            selected: 3,
            accepted: 2,
            rejected: 0,
            note: String::new(),
        }
    }

    fn row(
        client: &str,
        round: u64,
        version: u64,
        outcome: ContributionOutcome,
    ) -> ContributionRecord {
        ContributionRecord {
            job_id: "j".into(),
            round,
            attempt: 1,
            seq: 1,
            model_version: Some(version),
            contribution: Contribution {
                client_id: client.into(),
                tenant_id: format!("t-{client}"),
                outcome,
                reason: String::new(),
                norm: Some(0.5),
                clipped: false,
                screen_json: Some(r#"{"cosine":0.1}"#.into()),
                unix_ms: round as i64 * 10,
            },
        }
    }

    fn client(id: &str, rounds: u64) -> ClientRecord {
        ClientRecord {
            identity: ClientIdentity::new(&format!("t-{id}"), id).unwrap(),
            status: crate::store::ClientStatus::Active,
            status_reason: String::new(),
            registered_unix_ms: 1,
            last_seen_unix_ms: 2,
            rounds_participated: rounds,
            software: String::new(),
        }
    }

    /// Versions 1 → 2 (Y poisons), an admin rolls back to 1, then 1 → 3
    /// (X's first) → 4 (X). The version before X's first contribution is
    /// 1, the one its round trained on — not 2, the highest number
    /// published before it, which sits on the branch Y poisoned.
    fn job() -> JobFacts {
        let mut ledger = vec![entry(1, 1, 0.5), entry(2, 2, 0.7)];
        let mut rollback = entry(0, 1, 0.7);
        rollback.kind = LedgerKind::Rollback;
        rollback.charge = None;
        ledger.push(rollback);
        ledger.extend([entry(3, 3, 0.9), entry(4, 4, 1.1)]);
        JobFacts {
            job_id: "j".into(),
            state: JobState::Running,
            current_version: 4,
            rounds_completed: 4,
            ledger,
            attempts: vec![
                committed(1, 0),
                committed(2, 1),
                committed(3, 1),
                committed(4, 3),
            ],
        }
    }

    fn inputs(who: ClientRecord, rows: Vec<ContributionRecord>) -> Inputs {
        Inputs {
            subject: Subject {
                client_id: Some(who.identity.client_id.clone()),
                tenant_id: Some(who.identity.tenant_id.clone()),
                job_id: None,
            },
            identities: vec![who],
            hold: None,
            contributions: rows,
            jobs: vec![job()],
            audit: Vec::new(),
            audit_truncated: false,
            max_age_days: 90,
            max_rows: 1_000_000,
            generated_by: "admin a".into(),
            now_unix_ms: 99,
        }
    }

    #[test]
    fn the_version_before_a_first_contribution_follows_the_lineage() {
        let mut rejected = row("x", 3, 3, ContributionOutcome::Rejected);
        rejected.model_version = Some(3);
        let r = build(inputs(
            client("x", 2),
            vec![
                rejected,
                row("x", 3, 3, ContributionOutcome::Accepted),
                row("x", 4, 4, ContributionOutcome::Accepted),
            ],
        ));
        let j = &r.jobs[0];
        assert_eq!(j.rounds_contributed, vec![3, 4]);
        assert_eq!(j.first_contribution, Some((3, 3)));
        assert_eq!(j.last_version_before, Some(1), "not 2: another branch");
        assert_eq!(j.versions_carrying, vec![3, 4]);
        assert!(j.current_carries);
        assert_eq!((j.rejected, j.excluded), (1, 0));
        assert_eq!(j.spent.epsilon_pld, 1.1);
        assert_eq!(j.spent.rounds_charged, 4, "the rollback charges nothing");
        assert_eq!(
            j.entries[1].screen,
            Some(serde_json::json!({"cosine": 0.1}))
        );
        assert!(r.coverage.complete);
        assert_eq!(
            r.timeline.first().map(|t| t.unix_ms),
            Some(1),
            "registration first"
        );
        let md = super::super::markdown::render(&r);
        assert!(
            md.contains("last version before it (rollback target"),
            "{md}"
        );

        // Y poisoned version 2, which the rollback left: the current version
        // does not carry it.
        let y = build(inputs(
            client("y", 1),
            vec![row("y", 2, 2, ContributionOutcome::Accepted)],
        ));
        assert_eq!(y.jobs[0].versions_carrying, vec![2]);
        assert!(!y.jobs[0].current_carries);
        assert_eq!(y.jobs[0].last_version_before, Some(1));
    }

    #[test]
    fn a_record_shorter_than_the_participation_counter_is_flagged_incomplete() {
        let r = build(inputs(
            client("x", 5),
            vec![row("x", 4, 4, ContributionOutcome::Accepted)],
        ));
        assert!(!r.coverage.complete);
        assert!(super::super::markdown::render(&r).contains("Coverage warning"));
        // Excluded and abandoned rows are not published contributions.
        let mut abandoned = row("x", 3, 0, ContributionOutcome::Accepted);
        abandoned.model_version = None;
        let r = build(inputs(
            client("x", 0),
            vec![abandoned, row("x", 4, 4, ContributionOutcome::Excluded)],
        ));
        assert!(r.jobs[0].rounds_contributed.is_empty());
        assert_eq!(r.jobs[0].last_version_before, None);
        assert!(!r.jobs[0].current_carries);
        assert_eq!(r.jobs[0].excluded, 1);
    }
}
