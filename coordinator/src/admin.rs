//! Administration: the operations behind the `Admin` gRPC service, also
//! callable in-process by a program embedding the coordinator
//! ([`crate::RunningCoordinator::admin`]).
//!
//! Every state-changing operation writes an audit event naming the actor.
//! Incident response (tenant containment, rollback before a client's first
//! contribution, the post-mortem draft) is in [`incident`].

use std::sync::Arc;
use std::time::Duration;

use fedsec_proto::v1;

use crate::accounting::charge_to_proto;
use crate::config::JobSpec;
use crate::engine::{Engine, now_unix_ms};
use crate::error::Error;
use crate::export::{ExportInfo, to_safetensors};
use crate::fields;
use crate::job::{JobRuntime, Published, f32s_from_le};
use crate::store::{ClientRecord, ClientStatus, JobState, LedgerKind, LedgerRecord};

mod incident;

/// Administration of a running coordinator.
#[derive(Debug, Clone)]
pub struct AdminApi {
    engine: Arc<Engine>,
    actor: String,
}

fn client_info(r: &ClientRecord) -> v1::ClientInfo {
    v1::ClientInfo {
        client_id: r.identity.client_id.clone(),
        tenant_id: r.identity.tenant_id.clone(),
        status: match r.status {
            ClientStatus::Active => v1::ClientStatus::Active,
            ClientStatus::Quarantined => v1::ClientStatus::Quarantined,
            ClientStatus::Revoked => v1::ClientStatus::Revoked,
        } as i32,
        status_reason: r.status_reason.clone(),
        registered_unix_ms: r.registered_unix_ms,
        last_seen_unix_ms: r.last_seen_unix_ms,
        rounds_participated: r.rounds_participated,
        software: r.software.clone(),
    }
}

fn ledger_entry(e: &LedgerRecord) -> v1::LedgerEntry {
    v1::LedgerEntry {
        seq: e.seq,
        kind: match e.kind {
            LedgerKind::Round => v1::LedgerEntryKind::Round,
            LedgerKind::Rollback => v1::LedgerEntryKind::Rollback,
        } as i32,
        charge: e.charge.as_ref().map(charge_to_proto),
        attempt: e.attempt,
        epsilon_pld: e.epsilon_pld,
        epsilon_rdp: e.epsilon_rdp,
        delta: e.delta,
        model_version: e.model_version,
        participants: u32::try_from(e.participants).unwrap_or(u32::MAX),
        rejected: u32::try_from(e.rejected).unwrap_or(u32::MAX),
        clipped_fraction: e.clipped_fraction,
        note: e.note.clone(),
        committed_unix_ms: e.committed_unix_ms,
    }
}

impl AdminApi {
    pub(crate) fn new(engine: Arc<Engine>, actor: impl Into<String>) -> Self {
        Self {
            engine,
            actor: actor.into(),
        }
    }

    /// The same API, with audit events naming `actor`.
    pub fn acting_as(&self, actor: impl Into<String>) -> Self {
        Self {
            engine: self.engine.clone(),
            actor: actor.into(),
        }
    }

    fn job_rt(&self, job_id: &str) -> Result<Arc<JobRuntime>, Error> {
        fields::job_id("job_id", job_id)?;
        self.engine
            .job(job_id)
            .ok_or_else(|| Error::NotFound(format!("no job {job_id:?}")))
    }

    /// Creates and starts a job (defaults filled, validated against the
    /// coordinator's `[dangerous]` settings).
    pub async fn create_job(&self, spec: JobSpec) -> Result<v1::Job, Error> {
        // Admin actions are recorded before they are carried out: an
        // action that cannot be audited is refused (issue 21).
        self.engine
            .audit(
                "admin_create_job",
                &spec.id,
                "",
                format!("by {}", self.actor),
            )
            .await?;
        let job = crate::job::create(&self.engine, spec).await?;
        Ok(job.to_proto())
    }

    /// Creates a job from the wire message.
    pub async fn create_job_proto(&self, config: &v1::JobConfig) -> Result<v1::Job, Error> {
        let spec = JobSpec::from_proto(config, &self.engine.settings.dangerous)?;
        self.create_job(spec).await
    }

    /// One job.
    pub fn job(&self, job_id: &str) -> Result<v1::Job, Error> {
        Ok(self.job_rt(job_id)?.to_proto())
    }

    /// All jobs, newest first.
    pub fn jobs(&self) -> Vec<v1::Job> {
        self.engine.jobs().iter().map(|j| j.to_proto()).collect()
    }

    /// Pauses a running job; an open round is abandoned (nothing charged).
    pub async fn pause_job(&self, job_id: &str) -> Result<v1::Job, Error> {
        let job = self.job_rt(job_id)?;
        let _guard = job.commit_lock.lock().await;
        match job.state() {
            JobState::Running => {}
            JobState::Paused => return Ok(job.to_proto()),
            other => {
                return Err(Error::FailedPrecondition(format!(
                    "job {job_id:?} is {}",
                    other.as_str()
                )));
            }
        }
        let reason = format!("paused by {}", self.actor);
        self.engine
            .audit("job_paused", job_id, "", reason.clone())
            .await?;
        {
            let (id, r) = (job_id.to_owned(), reason.clone());
            self.engine
                .db(move |s| s.set_job_state(&id, JobState::Paused, &r))
                .await?;
        }
        job.set_state(JobState::Paused, &reason);
        job.wake.notify_one();
        tracing::info!(job = job_id, actor = %self.actor, "job paused");
        crate::alerts::job_paused(&self.engine.alerts, job_id, &reason, true);
        Ok(job.to_proto())
    }

    /// Resumes a paused job.
    pub async fn resume_job(&self, job_id: &str) -> Result<v1::Job, Error> {
        let job = self.job_rt(job_id)?;
        let _guard = job.commit_lock.lock().await;
        if let Some(why) = job
            .spec
            .dangerous_violation(&self.engine.settings.dangerous)
        {
            return Err(Error::FailedPrecondition(format!(
                "job {job_id:?} cannot resume: the current configuration forbids it: {why}"
            )));
        }
        match job.state() {
            JobState::Paused => {}
            JobState::Running => return Ok(job.to_proto()),
            other => {
                return Err(Error::FailedPrecondition(format!(
                    "job {job_id:?} is {}",
                    other.as_str()
                )));
            }
        }
        self.engine
            .audit("job_resumed", job_id, "", format!("by {}", self.actor))
            .await?;
        {
            let id = job_id.to_owned();
            self.engine
                .db(move |s| s.set_job_state(&id, JobState::Running, ""))
                .await?;
        }
        job.set_state(JobState::Running, "");
        job.wake.notify_one();
        tracing::info!(job = job_id, actor = %self.actor, "job resumed");
        Ok(job.to_proto())
    }

    /// Registered clients.
    pub async fn clients(&self) -> Result<Vec<v1::ClientInfo>, Error> {
        self.engine.flush_last_seen().await;
        let clients = self.engine.db(|s| s.clients()).await?;
        Ok(clients.iter().map(client_info).collect())
    }

    async fn set_status(
        &self,
        client_id: &str,
        status: ClientStatus,
        reason: &str,
        kind: &str,
    ) -> Result<v1::ClientInfo, Error> {
        fields::client_id("client_id", client_id)?;
        fields::reason("reason", reason)?;
        // Store write and mirror under one lock: status changes reach memory
        // in the order they were stored, and no Register can undo them.
        let _order = self.engine.clients.status_lock.lock().await;
        if self.engine.clients.status(client_id) == Some(ClientStatus::Revoked)
            && status != ClientStatus::Revoked
        {
            return Err(Error::FailedPrecondition(format!(
                "client {client_id:?} is revoked; revocation is permanent"
            )));
        }
        self.engine
            .audit(kind, "", client_id, format!("by {}: {reason}", self.actor))
            .await?;
        let (id, r) = (client_id.to_owned(), reason.to_owned());
        let record = self
            .engine
            .db(move |s| s.set_client_status(&id, status, &r))
            .await?
            .ok_or_else(|| Error::NotFound(format!("no client {client_id:?}")))?;
        self.engine.clients.set_status(&record);
        tracing::info!(client = client_id, status = status.as_str(), actor = %self.actor, reason, "client status changed");
        crate::alerts::client_status(
            &self.engine.alerts,
            client_id,
            &record.identity.tenant_id,
            status,
            &self.actor,
            reason,
        );
        Ok(client_info(&record))
    }

    /// Quarantines a client: its calls are rejected and it is never selected.
    pub async fn quarantine_client(
        &self,
        client_id: &str,
        reason: &str,
    ) -> Result<v1::ClientInfo, Error> {
        self.set_status(
            client_id,
            ClientStatus::Quarantined,
            reason,
            "client_quarantined",
        )
        .await
    }

    /// Lifts a quarantine (refused while the client's tenant is contained:
    /// release the tenant).
    pub async fn release_client(
        &self,
        client_id: &str,
        reason: &str,
    ) -> Result<v1::ClientInfo, Error> {
        if let Some(t) = self.engine.clients.tenant_of(client_id)
            && self.engine.clients.is_contained(&t)
        {
            return Err(Error::FailedPrecondition(format!(
                "client {client_id:?} belongs to tenant {t:?}, which is contained; release the \
                 tenant (admin clients release --tenant {t})"
            )));
        }
        let info = self
            .set_status(client_id, ClientStatus::Active, reason, "client_released")
            .await?;
        self.engine.wake_all();
        Ok(info)
    }

    /// Permanently refuses a client identity.
    pub async fn revoke_client(
        &self,
        client_id: &str,
        reason: &str,
    ) -> Result<v1::ClientInfo, Error> {
        self.set_status(client_id, ClientStatus::Revoked, reason, "client_revoked")
            .await
    }

    /// A job's ledger.
    pub async fn ledger(&self, job_id: &str) -> Result<Vec<v1::LedgerEntry>, Error> {
        self.job_rt(job_id)?;
        let id = job_id.to_owned();
        let entries = self.engine.db(move |s| s.ledger(&id)).await?;
        Ok(entries.iter().map(ledger_entry).collect())
    }

    /// A job's model versions, oldest first.
    pub async fn models(&self, job_id: &str) -> Result<Vec<v1::ModelVersionInfo>, Error> {
        let job = self.job_rt(job_id)?;
        let current = job.current().version;
        let id = job_id.to_owned();
        let versions = self.engine.db(move |s| s.versions(&id)).await?;
        Ok(versions
            .iter()
            .map(|v| v1::ModelVersionInfo {
                version: v.version,
                round: v.round,
                sha256: v.sha256.to_vec(),
                created_unix_ms: v.created_unix_ms,
                epsilon_pld: v.epsilon_pld,
                current: v.version == current,
            })
            .collect())
    }

    /// Makes an earlier version current. The ledger gains a ROLLBACK entry;
    /// privacy already spent stays spent. An open round is abandoned.
    pub async fn rollback(
        &self,
        job_id: &str,
        version: u64,
        reason: &str,
    ) -> Result<v1::Job, Error> {
        let job = self.job_rt(job_id)?;
        fields::reason("reason", reason)?;
        let _guard = job.commit_lock.lock().await;
        if job.current().version == version {
            return Err(Error::FailedPrecondition(format!(
                "version {version} of job {job_id:?} is already current"
            )));
        }
        let record = {
            let id = job_id.to_owned();
            self.engine
                .db(move |s| s.version(&id, version))
                .await?
                .ok_or_else(|| {
                    Error::NotFound(format!("job {job_id:?} has no version {version}"))
                })?
        };
        let status = job.status();
        let entry = LedgerRecord {
            seq: 0,
            kind: LedgerKind::Rollback,
            charge: None,
            attempt: 0,
            epsilon_pld: status.epsilon_pld,
            epsilon_rdp: status.epsilon_rdp,
            delta: job.spec.delta,
            model_version: version,
            participants: 0,
            rejected: 0,
            clipped_fraction: 0.0,
            note: format!(
                "rollback to version {version} by {}: {reason}; privacy already spent stays spent",
                self.actor
            ),
            committed_unix_ms: now_unix_ms(),
        };
        let seq = {
            let (id, e) = (job_id.to_owned(), entry.clone());
            self.engine
                .db(move |s| s.rollback(&id, version, &e))
                .await?
        };
        // Served with a receipt stating the full spend (the ledger's), not
        // the rolled-back-to version's own, older statement.
        let mut published = Published::from_record(record)?;
        let charges = job.status().charges;
        if published.receipt.history_rounds() < charges.len() as u64 {
            let audit = published.receipt.empirical_audit();
            published.receipt =
                crate::accounting::Receipt::compute(charges, job.spec.delta, job.noise_enabled())?
                    .with_optional_audit(audit)?;
        }
        job.publish(published);
        // The previous published update no longer leads to the served model:
        // the screen's direction rules pause until the next round publishes.
        job.screen.set_reference(None);
        job.wake.notify_one();
        // Its audit row (model_rolled_back, with the note) was written by
        // the store in the rollback's transaction and anchors the release.
        tracing::warn!(job = job_id, version, ledger_seq = seq, actor = %self.actor, reason, "model rolled back");
        Ok(job.to_proto())
    }

    /// A version (0: current) as a safetensors file with the model spec and
    /// the privacy receipt in its metadata.
    pub async fn export(&self, job_id: &str, version: u64) -> Result<Vec<u8>, Error> {
        let job = self.job_rt(job_id)?;
        let published = if version == 0 || version == job.current().version {
            job.current()
        } else {
            let id = job_id.to_owned();
            let record = self
                .engine
                .db(move |s| s.version(&id, version))
                .await?
                .ok_or_else(|| {
                    Error::NotFound(format!("job {job_id:?} has no version {version}"))
                })?;
            Arc::new(Published::from_record(record)?)
        };
        let seal = self
            .engine
            .seal(job_id, &job.spec.model, &published)
            .await?;
        let spec = job.spec.model.clone();
        let id = job_id.to_owned();
        let bytes = tokio::task::spawn_blocking(move || {
            let weights = f32s_from_le(&published.bytes);
            to_safetensors(
                &spec,
                &weights,
                &ExportInfo {
                    job_id: &id,
                    version: published.version,
                    round: published.round,
                    receipt_json: &published.receipt.json,
                    release: Some(crate::export::ReleaseMetadata {
                        signature: seal.signature,
                        key_id: seal.key_id,
                        audit_head: seal.audit_head,
                    }),
                },
            )
        })
        .await
        .map_err(Error::task("export"))?
        .map_err(Error::Export)?;
        Ok(bytes)
    }

    /// The per-canary statistics of an audited job that has finished its
    /// audit (`None` for a job without canaries or whose audit is not
    /// computed yet): those the audit was computed from, or after a restart
    /// recomputed from the published versions the same way
    /// ([`crate::canary`]). For experiments that pool the canaries of
    /// several jobs ([`crate::canary::pooled_estimate`]). In-process only:
    /// the Admin RPC does not serve it.
    pub async fn canary_statistics(
        &self,
        job_id: &str,
    ) -> Result<Option<crate::canary::CanaryStatistics>, Error> {
        let job = self.job_rt(job_id)?;
        let Some(set) = job.canaries else {
            return Ok(None);
        };
        if job.audit().is_none() {
            return Ok(None);
        }
        if let Some(stats) = job.audit_statistics() {
            return Ok(Some((*stats).clone()));
        }
        let (id, dim) = (job_id.to_owned(), job.dim);
        let stats = self
            .engine
            .db(move |s| crate::job::audit::audit_statistics(s, &id, &set, dim))
            .await?;
        Ok(Some(stats))
    }

    /// Audit events, newest first (`limit` 0 means 100).
    pub async fn audit_events(
        &self,
        job_id: Option<&str>,
        limit: usize,
    ) -> Result<Vec<v1::AuditEvent>, Error> {
        if let Some(j) = job_id {
            fields::job_id("job_id", j)?;
        }
        let limit = if limit == 0 { 100 } else { limit.min(10_000) };
        let job = job_id.map(str::to_owned);
        let events = self
            .engine
            .db(move |s| s.audit_events(job.as_deref(), limit))
            .await?;
        Ok(events
            .into_iter()
            .map(|e| v1::AuditEvent {
                id: e.id,
                unix_ms: e.event.unix_ms,
                kind: e.event.kind,
                job_id: e.event.job_id,
                client_id: e.event.client_id,
                detail: e.event.detail,
            })
            .collect())
    }

    /// Polls a job until `done` holds or `timeout` passes; returns the last
    /// state seen (for tests and the one-process demo).
    pub async fn wait_for_job(
        &self,
        job_id: &str,
        timeout: Duration,
        done: impl Fn(&v1::Job) -> bool,
    ) -> Result<v1::Job, Error> {
        let until = tokio::time::Instant::now() + timeout;
        loop {
            let job = self.job(job_id)?;
            if done(&job) {
                return Ok(job);
            }
            if tokio::time::Instant::now() >= until {
                return Err(Error::FailedPrecondition(format!(
                    "timed out after {timeout:?} waiting for job {job_id:?} (state {:?}, {} rounds)",
                    v1::JobState::try_from(job.state).unwrap_or_default(),
                    job.rounds_completed
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
