//! `fedsec.v1.Coordinator`: what federated clients call. `Register` and
//! `GetTask` live here; `SubmitUpdate` in `super::upload` (with its
//! validation order), `GetModel` in [`super::download`].
//!
//! Every request passed the gate first (`crate::gate`: refused
//! identities, per-identity call shares). Every string field is checked
//! against its bound ([`crate::fields`]) before it is used, stored, logged
//! or echoed.

use std::sync::Arc;

use fedsec_proto::model::ModelSpecWire;
use fedsec_proto::tls::{ClientIdentity, PeerIdentity};
use fedsec_proto::v1::coordinator_server::Coordinator;
use fedsec_proto::v1::{
    self, GetModelRequest, GetRoundHistoryRequest, GetRoundHistoryResponse, GetTaskRequest,
    GetTaskResponse, RegisterRequest, RegisterResponse, SubmitUpdateRequest, SubmitUpdateResponse,
    get_task_response,
};
use tonic::{Request, Response, Status, Streaming};

use super::download::{ModelStream, Versions};
use super::upload::UploadCtx;
use crate::engine::{Engine, now_unix_ms};
use crate::error::{Error, RejectReason};
use crate::fields;
use crate::ratelimit::RpcClass;
use crate::store::JobState;

/// The client-facing service.
#[derive(Debug, Clone)]
pub(crate) struct CoordinatorService {
    pub(super) engine: Arc<Engine>,
    versions: Arc<Versions>,
}

impl CoordinatorService {
    pub(crate) fn new(engine: Arc<Engine>) -> Self {
        Self {
            engine,
            versions: Arc::new(Versions::default()),
        }
    }
}

fn client_of<T>(req: &Request<T>) -> Result<ClientIdentity, Error> {
    match PeerIdentity::of_request(req) {
        Ok(PeerIdentity::Client(c)) => Ok(c),
        Ok(PeerIdentity::Admin { name }) => Err(Error::PermissionDenied(format!(
            "admin identity {name:?} cannot call the Coordinator service; use a client certificate"
        ))),
        Err(e) => Err(Error::rejected(
            RejectReason::Unauthenticated,
            e.to_string(),
        )),
    }
}

/// The rate-limit and share key of a client identity: `tenant/client`.
fn rate_key(c: &ClientIdentity) -> String {
    format!("{}/{}", c.tenant_id, c.client_id)
}

/// The key of a caller without an identity (for its audit rows): its address.
fn anonymous_key<T>(req: &Request<T>) -> String {
    req.remote_addr()
        .map_or_else(|| "peer:unknown".to_owned(), |a| format!("peer:{}", a.ip()))
}

impl CoordinatorService {
    async fn get_task_inner(
        &self,
        client: &ClientIdentity,
        job_id: &str,
    ) -> Result<get_task_response::Outcome, Error> {
        let poll =
            u64::try_from(self.engine.settings.poll_interval.as_millis()).unwrap_or(u64::MAX);
        let retry = |reason: String| {
            get_task_response::Outcome::Retry(v1::RetryLater {
                retry_after_ms: poll,
                reason,
            })
        };
        let jobs = if job_id.is_empty() {
            self.engine
                .jobs()
                .into_iter()
                .filter(|j| j.state() == JobState::Running)
                .collect()
        } else {
            let job = self
                .engine
                .job(job_id)
                .ok_or_else(|| Error::NotFound(format!("no job {job_id:?}")))?;
            let state = job.state();
            if state.is_finished() {
                return Ok(get_task_response::Outcome::Finished(v1::JobFinished {
                    job_id: job_id.to_owned(),
                    state: state.as_str().to_owned(),
                    final_version: job.current().version,
                }));
            }
            if state == JobState::Paused {
                return Ok(retry("job paused".into()));
            }
            if job.weather.fault().is_some() && job.open_round().is_none() {
                // Issue 16: the job resumes by itself; bound clients wait.
                return Ok(retry("job waiting for its store to recover".into()));
            }
            vec![job]
        };
        let mut reason = "no open round".to_owned();
        for job in jobs {
            let Some(round) = job.open_round() else {
                continue;
            };
            if !round.accepting() {
                continue;
            }
            if !round.selected.contains(&client.tenant_id) {
                reason = format!("not selected for round {} of job {}", round.round, job.id());
                continue;
            }
            if round.has_accepted(&client.tenant_id) {
                reason = format!(
                    "this tenant's update for round {} of job {} was already received",
                    round.round,
                    job.id()
                );
                continue;
            }
            let mut task = round.task.clone();
            task.remaining_ms = u64::try_from(round.deadline_unix_ms - now_unix_ms()).unwrap_or(0);
            return Ok(get_task_response::Outcome::Task(task));
        }
        Ok(retry(reason))
    }
}

#[tonic::async_trait]
impl Coordinator for CoordinatorService {
    async fn register(
        &self,
        request: Request<RegisterRequest>,
    ) -> Result<Response<RegisterResponse>, Status> {
        self.engine.check_alive()?;
        let client = match client_of(&request) {
            Ok(c) => c,
            Err(e) => {
                let key = anonymous_key(&request);
                return Err(self.engine.reject(e, &key, "", "").await.into());
            }
        };
        let key = rate_key(&client);
        self.engine
            .throttle(RpcClass::Register, &key, &client.client_id)?;
        if let Some(certs) = request.peer_certs()
            && let Some(leaf) = certs.first()
        {
            crate::alerts::check_client(&self.engine.alerts, &client, leaf.as_ref());
        }
        self.engine.check_rows(&key)?;
        let software = fields::software(&request.get_ref().software);
        if let Err(e) = self.engine.register_client(&client, &software).await {
            return Err(self
                .engine
                .reject(e, &key, "", &client.client_id)
                .await
                .into());
        }
        if let Err(e) = self.engine.clients.authorize(&client) {
            return Err(self
                .engine
                .reject(e, &key, "", &client.client_id)
                .await
                .into());
        }
        Ok(Response::new(RegisterResponse {
            client_id: client.client_id,
            tenant_id: client.tenant_id,
            server_time_unix_ms: now_unix_ms(),
            poll_interval_ms: u64::try_from(self.engine.settings.poll_interval.as_millis())
                .unwrap_or(u64::MAX),
        }))
    }

    async fn get_task(
        &self,
        request: Request<GetTaskRequest>,
    ) -> Result<Response<GetTaskResponse>, Status> {
        self.engine.check_alive()?;
        let client = client_of(&request).inspect_err(|e| self.count(e))?;
        self.engine
            .throttle(RpcClass::GetTask, &rate_key(&client), &client.client_id)?;
        self.engine
            .clients
            .authorize(&client)
            .inspect_err(|e| self.count(e))?;
        let job_id = &request.get_ref().job_id;
        fields::optional_job_id("job_id", job_id)?;
        let outcome = self.get_task_inner(&client, job_id).await?;
        Ok(Response::new(GetTaskResponse {
            outcome: Some(outcome),
        }))
    }

    type GetModelStream = ModelStream;

    async fn get_model(
        &self,
        request: Request<GetModelRequest>,
    ) -> Result<Response<Self::GetModelStream>, Status> {
        self.engine.check_alive()?;
        let client = client_of(&request).inspect_err(|e| self.count(e))?;
        let key = rate_key(&client);
        self.engine
            .throttle(RpcClass::GetModel, &key, &client.client_id)?;
        self.engine
            .clients
            .authorize(&client)
            .inspect_err(|e| self.count(e))?;
        let conn = request
            .remote_addr()
            .and_then(|a| self.engine.connections.get(a));
        let GetModelRequest { job_id, version } = request.into_inner();
        fields::job_id("job_id", &job_id)?;
        let job = self
            .engine
            .job(&job_id)
            .ok_or_else(|| Error::NotFound(format!("no job {job_id:?}")))?;
        let model = self.versions.get(&self.engine, &job, version).await?;
        let bytes = self
            .engine
            .shares
            .bytes(&key, model.bytes.len() as u64)
            .map_err(|e| {
                self.engine
                    .exhausted(&key, &client.client_id, "bytes in flight", e)
            })?;
        let seal = self.engine.seal(&job_id, &job.spec.model, &model).await?;
        Ok(Response::new(ModelStream::new(
            &self.engine,
            &job_id,
            &job.spec.model.to_proto(),
            model,
            seal,
            bytes,
            conn,
        )))
    }

    async fn get_round_history(
        &self,
        request: Request<GetRoundHistoryRequest>,
    ) -> Result<Response<GetRoundHistoryResponse>, Status> {
        // Gated like a download (issue 16: the history a receipt references).
        self.engine.check_alive()?;
        let client = client_of(&request).inspect_err(|e| self.count(e))?;
        self.engine
            .throttle(RpcClass::GetModel, &rate_key(&client), &client.client_id)?;
        self.engine
            .clients
            .authorize(&client)
            .inspect_err(|e| self.count(e))?;
        let req = request.into_inner();
        fields::job_id("job_id", &req.job_id)?;
        let job = self
            .engine
            .job(&req.job_id)
            .ok_or_else(|| Error::NotFound(format!("no job {:?}", req.job_id)))?;
        Ok(Response::new(super::history::page(&job, &req)?))
    }

    async fn submit_update(
        &self,
        request: Request<Streaming<SubmitUpdateRequest>>,
    ) -> Result<Response<SubmitUpdateResponse>, Status> {
        self.engine.check_alive()?;
        let client = match client_of(&request) {
            Ok(c) => c,
            Err(e) => {
                let key = anonymous_key(&request);
                return Err(self.engine.reject(e, &key, "", "").await.into());
            }
        };
        let key = rate_key(&client);
        // Before the stream is read or a slot claimed: a refused attempt
        // costs nothing and may be retried within the round.
        self.engine
            .throttle(RpcClass::SubmitUpdate, &key, &client.client_id)?;
        self.engine.check_rows(&key)?;
        if let Err(e) = self.engine.clients.authorize(&client) {
            if let Some(reason) = e.reject_reason() {
                self.engine
                    .alerts
                    .rejected_update("", &client.client_id, reason.label());
            }
            return Err(self
                .engine
                .reject(e, &key, "", &client.client_id)
                .await
                .into());
        }
        let mut stream = request.into_inner();
        let mut ctx = UploadCtx::default();
        let received = self.receive(&client, &key, &mut stream, &mut ctx).await;
        // A cut-off or failed upload has returned its decode slot by now.
        self.engine
            .metrics
            .set_uploads_in_progress(self.engine.pool.in_use());
        match received {
            Ok(resp) => Ok(Response::new(resp)),
            Err(e) => {
                // An excluded update was counted (and recorded) by the round
                // when it was excluded (race-free with the round's close),
                // and raised its own update-anomaly alert.
                if let (Some(round), Some(reason)) = (&ctx.round, e.reject_reason())
                    && reason != RejectReason::Screened
                {
                    round.record_rejection(
                        &client.tenant_id,
                        &client.client_id,
                        reason,
                        &e.to_string(),
                    );
                    self.engine.alerts.rejected_update(
                        &ctx.job_id,
                        &client.client_id,
                        reason.label(),
                    );
                }
                Err(self
                    .engine
                    .reject(e, &key, &ctx.job_id, &client.client_id)
                    .await
                    .into())
            }
        }
    }
}

impl CoordinatorService {
    /// Counts a refused poll or download (no audit event: pollers would flood it).
    fn count(&self, e: &Error) {
        if let Some(reason) = e.reject_reason() {
            self.engine.metrics.rejected(reason);
        }
    }
}
