//! Incident response through the Admin API: containing a whole tenant,
//! rolling a job back to before a client's first contribution, and the
//! post-mortem draft ([`crate::incident`]).

use std::collections::BTreeSet;

use fedsec_proto::v1;

use super::{AdminApi, client_info};
use crate::engine::now_unix_ms;
use crate::error::Error;
use crate::fields;
use crate::incident::{self, IncidentReport, Inputs, JobFacts, Subject};
use crate::store::{ClientRecord, ContributionFilter, ContributionOutcome, StoreError, TenantHold};

fn containment(
    hold: &TenantHold,
    contained: bool,
    clients: &[ClientRecord],
    changed: Vec<String>,
) -> v1::TenantContainment {
    v1::TenantContainment {
        tenant_id: hold.tenant_id.clone(),
        contained,
        reason: hold.reason.clone(),
        since_unix_ms: hold.since_unix_ms,
        clients: clients.iter().map(client_info).collect(),
        changed_client_ids: changed,
    }
}

impl AdminApi {
    /// Contains a whole tenant: every active identity of it is quarantined
    /// and no identity of it may register until [`Self::release_tenant`].
    /// Audited (`tenant_contained`) before it is carried out.
    pub async fn quarantine_tenant(
        &self,
        tenant_id: &str,
        reason: &str,
    ) -> Result<v1::TenantContainment, Error> {
        fields::client_id("tenant_id", tenant_id)?;
        fields::reason("reason", reason)?;
        let _order = self.engine.clients.status_lock.lock().await;
        if self.engine.clients.is_contained(tenant_id) {
            return Err(Error::AlreadyExists(format!(
                "tenant {tenant_id:?} is already contained"
            )));
        }
        self.engine
            .audit(
                "tenant_contained",
                "",
                "",
                format!("tenant {tenant_id}: by {}: {reason}", self.actor),
            )
            .await?;
        // Refuse registrations at once; the store's hold covers one that
        // passed this check before it (its identity is stored quarantined).
        self.engine.clients.set_contained(tenant_id, true);
        let (t, r) = (tenant_id.to_owned(), reason.to_owned());
        let stored = self
            .engine
            .db(move |s| s.contain_tenant(&t, &r, now_unix_ms()))
            .await;
        let (hold, clients) = match stored {
            Ok(v) => v,
            Err(e) => {
                self.engine.clients.set_contained(tenant_id, false);
                return Err(match e {
                    Error::Store(StoreError::Conflict(m)) => Error::AlreadyExists(m),
                    other => other,
                });
            }
        };
        for c in &clients {
            self.engine.clients.set_status(c);
        }
        tracing::warn!(tenant = tenant_id, actor = %self.actor, quarantined = hold.quarantined.len(), reason, "tenant contained");
        let changed = hold.quarantined.clone();
        Ok(containment(&hold, true, &clients, changed))
    }

    /// Lifts a tenant's containment: the identities it quarantined become
    /// active again (revoked ones stay revoked). Audited (`tenant_released`).
    pub async fn release_tenant(
        &self,
        tenant_id: &str,
        reason: &str,
    ) -> Result<v1::TenantContainment, Error> {
        fields::client_id("tenant_id", tenant_id)?;
        fields::reason("reason", reason)?;
        let _order = self.engine.clients.status_lock.lock().await;
        if !self.engine.clients.is_contained(tenant_id) {
            return Err(Error::FailedPrecondition(format!(
                "tenant {tenant_id:?} is not contained"
            )));
        }
        self.engine
            .audit(
                "tenant_released",
                "",
                "",
                format!("tenant {tenant_id}: by {}: {reason}", self.actor),
            )
            .await?;
        let (t, r) = (tenant_id.to_owned(), reason.to_owned());
        let (hold, clients) = self
            .engine
            .db(move |s| s.release_tenant(&t, &r))
            .await?
            .ok_or_else(|| {
                Error::FailedPrecondition(format!("tenant {tenant_id:?} is not contained"))
            })?;
        for c in &clients {
            self.engine.clients.set_status(c);
        }
        self.engine.clients.set_contained(tenant_id, false);
        self.engine.wake_all();
        tracing::warn!(tenant = tenant_id, actor = %self.actor, reason, "tenant released");
        let changed = clients
            .iter()
            .filter(|c| hold.quarantined.contains(&c.identity.client_id))
            .filter(|c| c.status == crate::store::ClientStatus::Active)
            .map(|c| c.identity.client_id.clone())
            .collect();
        Ok(containment(&hold, false, &clients, changed))
    }

    /// Rolls a job back to the version the client's first published
    /// contribution trained on (the last version served before it),
    /// through [`Self::rollback`] (ROLLBACK ledger entry, spent privacy
    /// stays charged, receipt restated, audited). `job_id` may be empty
    /// when the client contributed to one job only.
    pub async fn rollback_before_client(
        &self,
        job_id: &str,
        client_id: &str,
        reason: &str,
    ) -> Result<v1::Job, Error> {
        fields::optional_job_id("job_id", job_id)?;
        fields::client_id("before_client_id", client_id)?;
        fields::reason("reason", reason)?;
        let id = client_id.to_owned();
        let (records, client) = self
            .engine
            .db(move |s| {
                let records = s.contributions(&ContributionFilter {
                    client_id: Some(id.clone()),
                    ..ContributionFilter::default()
                })?;
                let client = s
                    .clients()?
                    .into_iter()
                    .find(|c| c.identity.client_id == id);
                Ok((records, client))
            })
            .await?;
        let client = client.ok_or_else(|| Error::NotFound(format!("no client {client_id:?}")))?;
        let published: Vec<_> = records
            .iter()
            .filter(|r| {
                r.contribution.outcome == ContributionOutcome::Accepted && r.model_version.is_some()
            })
            .collect();
        let retention = self.engine.settings.contribution_retention;
        if (published.len() as u64) < client.rounds_participated {
            return Err(Error::FailedPrecondition(format!(
                "client {client_id:?} took part in {} committed round(s) but the record of who \
                 took part holds {} (older rows were pruned: limits.contribution_max_age_days = \
                 {}, contribution_max_rows = {}; or they predate the record): its first \
                 contribution cannot be determined; roll back by version instead",
                client.rounds_participated,
                published.len(),
                retention.max_age.as_secs() / 86_400,
                retention.max_rows
            )));
        }
        let jobs: BTreeSet<&str> = published.iter().map(|r| r.job_id.as_str()).collect();
        let job = if job_id.is_empty() {
            match jobs.len() {
                0 => {
                    return Err(Error::FailedPrecondition(format!(
                        "client {client_id:?} never contributed to a published round; nothing \
                         to roll back"
                    )));
                }
                1 => jobs.iter().next().copied().unwrap_or_default().to_owned(),
                _ => {
                    return Err(Error::InvalidArgument(format!(
                        "client {client_id:?} contributed to jobs {}: name one (--job)",
                        jobs.iter().copied().collect::<Vec<_>>().join(", ")
                    )));
                }
            }
        } else {
            job_id.to_owned()
        };
        let job_rt = self.job_rt(&job)?;
        let Some(first) = published.iter().find(|r| r.job_id == job) else {
            return Err(Error::FailedPrecondition(format!(
                "client {client_id:?} never contributed to a published round of job {job:?}; \
                 nothing to roll back"
            )));
        };
        let (j, round, attempt) = (job.clone(), first.round, first.attempt);
        let base = self
            .engine
            .db(move |s| {
                Ok(s.attempts(&j)?
                    .into_iter()
                    .find(|a| a.round == round && a.attempt == attempt)
                    .map(|a| a.base_version))
            })
            .await?
            .ok_or_else(|| {
                Error::Internal("a recorded contribution's attempt is missing from the store")
            })?;
        let first_version = first.model_version.unwrap_or_default();
        let current = job_rt.current().version;
        if current == base {
            return Err(Error::FailedPrecondition(format!(
                "job {job:?} already serves version {base}, the last before client \
                 {client_id:?}'s first contribution"
            )));
        }
        self.engine
            .audit(
                "admin_rollback_before_client",
                &job,
                client_id,
                format!(
                    "by {}: roll back to version {base}, the last before the client's first \
                     contribution (round {round}, published in version {first_version}): {reason}",
                    self.actor
                ),
            )
            .await?;
        let note = format!(
            "before client {client_id}'s first contribution (round {round}, version \
             {first_version}): {reason}"
        );
        self.rollback(&job, base, fields::prefix(&note, fields::MAX_REASON_BYTES))
            .await
    }

    /// A post-mortem draft about one client identity or one tenant
    /// (optionally one job). Reading who took part is audited
    /// (`incident_report`).
    pub async fn incident_report(
        &self,
        client_id: &str,
        tenant_id: &str,
        job_id: &str,
    ) -> Result<IncidentReport, Error> {
        fields::optional_job_id("job_id", job_id)?;
        match (client_id.is_empty(), tenant_id.is_empty()) {
            (false, true) => fields::client_id("client_id", client_id)?,
            (true, false) => fields::client_id("tenant_id", tenant_id)?,
            _ => {
                return Err(Error::InvalidArgument(
                    "exactly one of client_id and tenant_id is required".into(),
                ));
            }
        }
        if !job_id.is_empty() {
            self.job_rt(job_id)?;
        }
        let all = self.engine.db(|s| s.clients()).await?;
        let identities: Vec<ClientRecord> = all
            .into_iter()
            .filter(|c| {
                if client_id.is_empty() {
                    c.identity.tenant_id == tenant_id
                } else {
                    c.identity.client_id == client_id
                }
            })
            .collect();
        if !client_id.is_empty() && identities.is_empty() {
            return Err(Error::NotFound(format!("no client {client_id:?}")));
        }
        let tenant = if client_id.is_empty() {
            tenant_id.to_owned()
        } else {
            identities
                .first()
                .map(|c| c.identity.tenant_id.clone())
                .unwrap_or_default()
        };
        self.engine
            .audit(
                "incident_report",
                job_id,
                client_id,
                format!("tenant {tenant}: report drawn by {}", self.actor),
            )
            .await?;
        let ids: Vec<String> = identities
            .iter()
            .map(|c| c.identity.client_id.clone())
            .collect();
        let filter = ContributionFilter {
            client_id: (!client_id.is_empty()).then(|| client_id.to_owned()),
            tenant_id: client_id.is_empty().then(|| tenant.clone()),
            job_id: None,
        };
        // The tenant's containment concerns each of its identities too.
        let tenant_events = Some(tenant.clone());
        let (contributions, audit, hold) = self
            .engine
            .db(move |s| {
                let c = s.contributions(&filter)?;
                let a = s.audit_events_concerning(
                    &ids,
                    tenant_events.as_deref(),
                    incident::MAX_AUDIT_EVENTS + 1,
                )?;
                let h = s
                    .contained_tenants()?
                    .into_iter()
                    .find(|h| h.tenant_id == tenant);
                Ok((c, a, h))
            })
            .await?;
        let mut jobs = Vec::new();
        let wanted: BTreeSet<String> = contributions
            .iter()
            .map(|c| c.job_id.clone())
            .filter(|j| job_id.is_empty() || j == job_id)
            .collect();
        for j in wanted {
            let Some(rt) = self.engine.job(&j) else {
                continue;
            };
            let id = j.clone();
            let (ledger, attempts) = self
                .engine
                .db(move |s| Ok((s.ledger(&id)?, s.attempts(&id)?)))
                .await?;
            let status = rt.status();
            jobs.push(JobFacts {
                job_id: j,
                state: status.state,
                current_version: rt.current().version,
                rounds_completed: status.rounds_completed,
                ledger,
                attempts,
            });
        }
        let audit_truncated = audit.len() > incident::MAX_AUDIT_EVENTS;
        let retention = self.engine.settings.contribution_retention;
        Ok(incident::build(Inputs {
            subject: Subject {
                client_id: (!client_id.is_empty()).then(|| client_id.to_owned()),
                tenant_id: Some(
                    identities
                        .first()
                        .map_or_else(|| tenant_id.to_owned(), |c| c.identity.tenant_id.clone()),
                ),
                job_id: (!job_id.is_empty()).then(|| job_id.to_owned()),
            },
            identities,
            hold,
            contributions,
            jobs,
            audit: audit.into_iter().take(incident::MAX_AUDIT_EVENTS).collect(),
            audit_truncated,
            max_age_days: retention.max_age.as_secs() / 86_400,
            max_rows: retention.max_rows,
            generated_by: self.actor.clone(),
            now_unix_ms: now_unix_ms(),
        }))
    }
}
