//! `fedsec.v1.Coordinator`: what federated clients call.
//!
//! `SubmitUpdate` validation order (each failure is a rejection with its own
//! status, metric label and audit event; nothing of a rejected upload
//! touches the sum):
//!
//! 1. caller identity (UNAUTHENTICATED), registered (FAILED_PRECONDITION),
//!    not quarantined / revoked (PERMISSION_DENIED);
//! 2. first message is the header, nonce of 1–64 bytes (INVALID_ARGUMENT);
//! 3. job exists (NOT_FOUND);
//! 4. round and attempt are the open ones, before the deadline
//!    (FAILED_PRECONDITION "stale round");
//! 5. caller selected for this attempt (PERMISSION_DENIED);
//! 6. base version is the round's (FAILED_PRECONDITION);
//! 7. declared `num_params` equals the model's (INVALID_ARGUMENT);
//! 8. one submission per client and round: same nonce as an accepted
//!    update → success with `newly_accepted = false`; another nonce →
//!    ALREADY_EXISTS; an upload still in progress → ABORTED;
//! 9. chunks: aligned, ≤ 1 MiB, not too many, exactly `num_params` values,
//!    no second header, trailer last (INVALID_ARGUMENT); digest
//!    (DATA_LOSS);
//! 10. finite values (INVALID_ARGUMENT); then re-clip to C and add.

use std::sync::Arc;
use std::time::Duration;

use fedsec_proto::tensor::{MAX_CHUNK_BYTES, TensorDecoder, TensorError};
use fedsec_proto::tls::{ClientIdentity, PeerIdentity};
use fedsec_proto::v1::coordinator_server::Coordinator;
use fedsec_proto::v1::{
    self, GetModelRequest, GetModelResponse, GetTaskRequest, GetTaskResponse, RegisterRequest,
    RegisterResponse, SubmitUpdateRequest, SubmitUpdateResponse, get_model_response,
    get_task_response, submit_update_request,
};
use tonic::{Request, Response, Status, Streaming};

use crate::engine::{Engine, now_unix_ms};
use crate::error::{Error, RejectReason};
use crate::job::Published;
use crate::ratelimit::RpcClass;
use crate::round::{Claim, OpenRound};
use crate::store::JobState;

/// Longest nonce accepted.
pub const MAX_NONCE_BYTES: usize = 64;

/// Longest software string kept from `Register`.
pub const MAX_SOFTWARE_BYTES: usize = 128;

/// The client-facing service.
#[derive(Debug, Clone)]
pub struct CoordinatorService {
    engine: Arc<Engine>,
}

impl CoordinatorService {
    pub(crate) fn new(engine: Arc<Engine>) -> Self {
        Self { engine }
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

/// The rate-limit key of a client identity: `tenant/client`.
fn rate_key(c: &ClientIdentity) -> String {
    format!("{}/{}", c.tenant_id, c.client_id)
}

fn bad(reason: RejectReason, detail: impl Into<String>) -> Error {
    Error::rejected(reason, detail)
}

fn tensor_error(e: TensorError) -> Error {
    let reason = match e {
        TensorError::TooLong { .. } | TensorError::TooShort { .. } => RejectReason::WrongDimension,
        TensorError::DigestMismatch => RejectReason::DigestMismatch,
        TensorError::UnalignedChunk { .. }
        | TensorError::ChunkTooLarge { .. }
        | TensorError::ChunkTooSmall { .. }
        | TensorError::BadDigestLength { .. } => RejectReason::BadChunk,
    };
    bad(reason, e.to_string())
}

async fn next_message(
    stream: &mut Streaming<SubmitUpdateRequest>,
    timeout: Duration,
) -> Result<Option<SubmitUpdateRequest>, Error> {
    match tokio::time::timeout(timeout, stream.message()).await {
        Err(_) => Err(bad(
            RejectReason::StreamError,
            format!("no message for {} ms; upload cut off", timeout.as_millis()),
        )),
        Ok(Err(status)) if status.code() == tonic::Code::OutOfRange => Err(bad(
            RejectReason::BadChunk,
            format!("message too large: {}", status.message()),
        )),
        Ok(Err(status)) => Err(bad(
            RejectReason::StreamError,
            format!("upload stream failed: {}", status.message()),
        )),
        Ok(Ok(m)) => Ok(m),
    }
}

/// Where a failing upload got to, for attributing the rejection.
#[derive(Default)]
struct UploadCtx {
    job_id: String,
    round: Option<Arc<OpenRound>>,
}

impl CoordinatorService {
    async fn receive(
        &self,
        client: &ClientIdentity,
        stream: &mut Streaming<SubmitUpdateRequest>,
        ctx: &mut UploadCtx,
    ) -> Result<SubmitUpdateResponse, Error> {
        let timeout = self.engine.settings.upload_message_timeout;
        let header = match next_message(stream, timeout).await? {
            Some(SubmitUpdateRequest {
                part: Some(submit_update_request::Part::Header(h)),
            }) => h,
            Some(_) => {
                return Err(bad(
                    RejectReason::BadHeader,
                    "the first message of an upload must be its header",
                ));
            }
            None => return Err(bad(RejectReason::BadHeader, "empty upload stream")),
        };
        if header.nonce.is_empty() || header.nonce.len() > MAX_NONCE_BYTES {
            return Err(bad(
                RejectReason::BadHeader,
                format!(
                    "nonce must be 1 to {MAX_NONCE_BYTES} bytes, got {}",
                    header.nonce.len()
                ),
            ));
        }
        ctx.job_id.clone_from(&header.job_id);
        let job = self.engine.job(&header.job_id).ok_or_else(|| {
            bad(
                RejectReason::UnknownJob,
                format!("no job {:?}", header.job_id),
            )
        })?;
        let round = match job.open_round() {
            Some(r) if r.round == header.round && r.attempt == header.attempt && r.accepting() => r,
            open => {
                let now = open
                    .map(|r| format!("round {} attempt {} is open", r.round, r.attempt))
                    .unwrap_or_else(|| "no round is open".into());
                return Err(bad(
                    RejectReason::StaleRound,
                    format!(
                        "stale round: round {} attempt {} of job {:?} is not accepting updates ({now})",
                        header.round, header.attempt, header.job_id
                    ),
                ));
            }
        };
        ctx.round = Some(round.clone());
        if !round.selected.contains(&client.client_id) {
            return Err(bad(
                RejectReason::NotSelected,
                format!(
                    "client {:?} was not selected for round {} attempt {}",
                    client.client_id, round.round, round.attempt
                ),
            ));
        }
        if header.base_version != round.base_version {
            return Err(bad(
                RejectReason::StaleBaseVersion,
                format!(
                    "update computed against version {}, but round {} trains version {}",
                    header.base_version, round.round, round.base_version
                ),
            ));
        }
        if header.num_params != job.dim as u64 {
            return Err(bad(
                RejectReason::WrongDimension,
                format!(
                    "header declares {} values, the model has {}",
                    header.num_params, job.dim
                ),
            ));
        }
        let claim = match round.claim(&client.client_id, &header.nonce)? {
            Claim::AlreadyAccepted => {
                return Ok(SubmitUpdateResponse {
                    newly_accepted: false,
                    round: round.round,
                });
            }
            Claim::Fresh(g) => g,
        };
        let mut buf = tokio::time::timeout_at(round.deadline, self.engine.pool.acquire(job.dim))
            .await
            .map_err(|_| {
                bad(
                    RejectReason::StaleRound,
                    "stale round: the deadline passed while the upload waited for a decode slot",
                )
            })?;
        self.engine
            .metrics
            .set_uploads_in_progress(self.engine.pool.in_use());
        let mut received = 0u64;
        let trailer = {
            let mut decoder = TensorDecoder::new(&mut buf);
            let trailer = loop {
                match next_message(stream, timeout).await? {
                    Some(SubmitUpdateRequest {
                        part: Some(submit_update_request::Part::Chunk(c)),
                    }) => {
                        received += c.data.len() as u64;
                        decoder.push(&c.data).map_err(tensor_error)?;
                    }
                    Some(SubmitUpdateRequest {
                        part: Some(submit_update_request::Part::Trailer(t)),
                    }) => break t,
                    Some(SubmitUpdateRequest {
                        part: Some(submit_update_request::Part::Header(_)),
                    }) => {
                        return Err(bad(
                            RejectReason::BadHeader,
                            "a second header in one upload",
                        ));
                    }
                    Some(SubmitUpdateRequest { part: None }) => {
                        return Err(bad(RejectReason::BadChunk, "an empty upload message"));
                    }
                    None => {
                        return Err(bad(
                            RejectReason::BadChunk,
                            "the upload ended before its trailer",
                        ));
                    }
                }
            };
            decoder.finish(&trailer.sha256).map_err(tensor_error)?;
            trailer
        };
        let _ = trailer;
        if next_message(stream, timeout).await?.is_some() {
            return Err(bad(RejectReason::BadChunk, "messages after the trailer"));
        }
        self.engine.metrics.bytes_received(received);
        // A quarantine may have arrived while the bytes streamed in.
        self.engine.clients.authorize(client)?;
        let r = round.clone();
        let within = header.within_clip;
        let (added, buf) = tokio::task::spawn_blocking(move || {
            let added = r.accept(claim, &buf, within);
            (added, buf)
        })
        .await
        .map_err(|e| Error::Internal(format!("accumulate task: {e}")))?;
        drop(buf);
        self.engine
            .metrics
            .set_uploads_in_progress(self.engine.pool.in_use());
        let added = added?;
        self.engine.metrics.update_accepted(&header.job_id);
        tracing::debug!(job = %header.job_id, round = round.round, client = %client.client_id, norm = added.norm, clipped = added.clipped, "update accepted");
        Ok(SubmitUpdateResponse {
            newly_accepted: true,
            round: round.round,
        })
    }

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
            if !round.selected.contains(&client.client_id) {
                reason = format!("not selected for round {} of job {}", round.round, job.id());
                continue;
            }
            if round.has_accepted(&client.client_id) {
                reason = format!(
                    "update already received for round {} of job {}",
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

type ModelStream = tokio_stream::Iter<std::vec::IntoIter<Result<GetModelResponse, Status>>>;

fn model_messages(
    job_id: &str,
    spec: &v1::ModelSpec,
    p: &Published,
) -> Vec<Result<GetModelResponse, Status>> {
    let mut out = Vec::with_capacity(2 + p.bytes.len() / MAX_CHUNK_BYTES);
    out.push(Ok(GetModelResponse {
        part: Some(get_model_response::Part::Header(v1::ModelHeader {
            job_id: job_id.to_owned(),
            version: p.version,
            model_spec: Some(spec.clone()),
            num_params: (p.bytes.len() / 4) as u64,
            sha256: p.sha256.to_vec(),
            receipt: Some(p.receipt.proto.clone()),
            round: p.round,
        })),
    }));
    let mut at = 0;
    while at < p.bytes.len() {
        let end = (at + MAX_CHUNK_BYTES).min(p.bytes.len());
        out.push(Ok(GetModelResponse {
            part: Some(get_model_response::Part::Chunk(v1::TensorChunk {
                data: p.bytes.slice(at..end),
            })),
        }));
        at = end;
    }
    out
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
            Err(e) => return Err(self.engine.reject(e, "", "").await.into()),
        };
        self.engine
            .throttle(RpcClass::Register, &rate_key(&client), &client.client_id)?;
        let mut software = request.into_inner().software;
        if software.len() > MAX_SOFTWARE_BYTES {
            let mut cut = MAX_SOFTWARE_BYTES;
            while !software.is_char_boundary(cut) {
                cut -= 1;
            }
            software.truncate(cut);
        }
        if let Err(e) = self.engine.register_client(&client, &software).await {
            return Err(self.engine.reject(e, "", &client.client_id).await.into());
        }
        if let Err(e) = self.engine.clients.authorize(&client) {
            return Err(self.engine.reject(e, "", &client.client_id).await.into());
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
        let outcome = self
            .get_task_inner(&client, &request.get_ref().job_id)
            .await?;
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
        self.engine
            .throttle(RpcClass::GetModel, &rate_key(&client), &client.client_id)?;
        self.engine
            .clients
            .authorize(&client)
            .inspect_err(|e| self.count(e))?;
        let GetModelRequest { job_id, version } = request.into_inner();
        let job = self
            .engine
            .job(&job_id)
            .ok_or_else(|| Error::NotFound(format!("no job {job_id:?}")))?;
        let current = job.current();
        let published = if version == 0 || version == current.version {
            current
        } else {
            let id = job_id.clone();
            let record = self
                .engine
                .db(move |s| s.version(&id, version))
                .await?
                .ok_or_else(|| {
                    Error::NotFound(format!("job {job_id:?} has no version {version}"))
                })?;
            Arc::new(Published::from_record(record)?)
        };
        let messages = model_messages(&job_id, &job.spec.model.to_proto(), &published);
        Ok(Response::new(tokio_stream::iter(messages)))
    }

    async fn submit_update(
        &self,
        request: Request<Streaming<SubmitUpdateRequest>>,
    ) -> Result<Response<SubmitUpdateResponse>, Status> {
        self.engine.check_alive()?;
        let client = match client_of(&request) {
            Ok(c) => c,
            Err(e) => return Err(self.engine.reject(e, "", "").await.into()),
        };
        // Before the stream is read or a slot claimed: a refused attempt
        // costs nothing and may be retried within the round.
        self.engine.throttle(
            RpcClass::SubmitUpdate,
            &rate_key(&client),
            &client.client_id,
        )?;
        if let Err(e) = self.engine.clients.authorize(&client) {
            return Err(self.engine.reject(e, "", &client.client_id).await.into());
        }
        let mut stream = request.into_inner();
        let mut ctx = UploadCtx::default();
        match self.receive(&client, &mut stream, &mut ctx).await {
            Ok(resp) => Ok(Response::new(resp)),
            Err(e) => {
                if let (Some(round), Some(_)) = (&ctx.round, e.reject_reason()) {
                    round.count_rejection();
                }
                Err(self
                    .engine
                    .reject(e, &ctx.job_id, &client.client_id)
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
