//! `SubmitUpdate`: receiving one upload.
//!
//! Validation order (each failure is a rejection with its own status,
//! metric label and audit event; nothing of a rejected upload touches the
//! sum):
//!
//! 1. caller identity (UNAUTHENTICATED), registered (FAILED_PRECONDITION),
//!    not quarantined / revoked (PERMISSION_DENIED), rate limit and audit-row
//!    budget (RESOURCE_EXHAUSTED);
//! 2. first message is the header, `job_id` a valid id, nonce of 1–64
//!    bytes (INVALID_ARGUMENT);
//! 3. job exists (NOT_FOUND);
//! 4. round and attempt are the open ones, before the deadline
//!    (FAILED_PRECONDITION "stale round");
//! 5. caller's tenant selected for this attempt (PERMISSION_DENIED);
//! 6. base version is the round's (FAILED_PRECONDITION);
//! 7. declared `num_params` equals the model's (INVALID_ARGUMENT);
//! 8. one submission per tenant and round (the privacy unit): the same
//!    identity and nonce as an accepted update → success with
//!    `newly_accepted = false`; another nonce, or another client identity
//!    of the same tenant → ALREADY_EXISTS ("tenant already submitted this
//!    round"); an upload of the tenant still in progress → ABORTED;
//! 9. the identity's bytes in flight (RESOURCE_EXHAUSTED), then a decode
//!    slot;
//! 10. chunks: aligned, ≤ 1 MiB, ≥ 64 KiB unless the last, exactly
//!     `num_params` values, no second header, trailer last
//!     (INVALID_ARGUMENT); digest (DATA_LOSS);
//! 11. finite values (INVALID_ARGUMENT); then re-clip to C and add.
//!
//! From step 8 on the upload lives no longer than its round: it is cut off
//! (FAILED_PRECONDITION "stale round") when the round closes or its deadline
//! passes, and (CANCELLED) when the peer sends nothing for
//! `limits.upload_message_timeout_ms`; either way its claim, byte share and
//! decode slot are freed at once.

use std::sync::Arc;
use std::time::Duration;

use fedsec_proto::tensor::{TensorDecoder, TensorError};
use fedsec_proto::tls::ClientIdentity;
use fedsec_proto::v1::{
    SubmitUpdateRequest, SubmitUpdateResponse, UpdateHeader, submit_update_request,
};
use tonic::Streaming;

use super::coordinator::CoordinatorService;
use crate::aggregate::DecodeBuffer;
use crate::error::{Error, RejectReason};
use crate::fields::{self, MAX_NONCE_BYTES};
use crate::job::JobRuntime;
use crate::job::screen::scores_json;
use crate::round::{Claim, ClaimGuard, OpenRound};
use crate::shares::ByteShare;

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
            format!(
                "message too large: {}",
                fields::prefix(status.message(), 200)
            ),
        )),
        Ok(Err(status)) => Err(bad(
            RejectReason::StreamError,
            format!(
                "upload stream failed: {}",
                fields::prefix(status.message(), 200)
            ),
        )),
        Ok(Ok(m)) => Ok(m),
    }
}

/// A fully received, digest-checked upload awaiting accumulation.
struct Received {
    claim: ClaimGuard,
    buf: DecodeBuffer,
    _bytes: ByteShare,
}

/// Where a failing upload got to, for attributing the rejection.
#[derive(Default)]
pub(super) struct UploadCtx {
    pub(super) job_id: String,
    pub(super) round: Option<Arc<OpenRound>>,
}

impl CoordinatorService {
    /// Receives, validates and accumulates one upload (see the module docs).
    pub(super) async fn receive(
        &self,
        client: &ClientIdentity,
        identity: &str,
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
        fields::header_job_id(&header.job_id)?;
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
        if !round.selected.contains(&client.tenant_id) {
            return Err(bad(
                RejectReason::NotSelected,
                format!(
                    "tenant {:?} was not selected for round {} attempt {}",
                    client.tenant_id, round.round, round.attempt
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
        let claim = match round.claim(&client.tenant_id, &client.client_id, &header.nonce)? {
            Claim::AlreadyAccepted => {
                return Ok(SubmitUpdateResponse {
                    newly_accepted: false,
                    round: round.round,
                });
            }
            Claim::Fresh(g) => g,
        };
        // Receiving never outlives the round; dropping the receiving future
        // frees the claim, byte share and decode slot. Accumulating is not
        // cut: `accept` itself refuses a closed or late round, so an update
        // is in the sum exactly when its sender is told so.
        let received = tokio::select! {
            r = self.receive_body(client, identity, stream, &job, claim) => r?,
            () = tokio::time::sleep_until(round.deadline) => return Err(bad(
                RejectReason::StaleRound,
                "stale round: the round's deadline passed during the upload; upload cut off",
            )),
            () = round.closed() => return Err(bad(
                RejectReason::StaleRound,
                "stale round: the round closed during the upload; upload cut off",
            )),
        };
        self.accumulate(client, &job, &round, &header, received)
            .await
    }

    /// Receives the chunks and trailer into a decode buffer.
    async fn receive_body(
        &self,
        client: &ClientIdentity,
        identity: &str,
        stream: &mut Streaming<SubmitUpdateRequest>,
        job: &JobRuntime,
        claim: ClaimGuard,
    ) -> Result<Received, Error> {
        let timeout = self.engine.settings.upload_message_timeout;
        let bytes_share = self
            .engine
            .shares
            .bytes(identity, job.dim as u64 * 4)
            .map_err(|e| {
                self.engine
                    .exhausted(identity, &client.client_id, "bytes in flight", e)
            })?;
        let mut buf = self.engine.pool.acquire(job.dim).await;
        self.engine
            .metrics
            .set_uploads_in_progress(self.engine.pool.in_use());
        let mut received = 0u64;
        {
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
        }
        if next_message(stream, timeout).await?.is_some() {
            return Err(bad(RejectReason::BadChunk, "messages after the trailer"));
        }
        self.engine.metrics.bytes_received(received);
        Ok(Received {
            claim,
            buf,
            _bytes: bytes_share,
        })
    }

    /// Screens a received update, then re-clips and adds it to the round's
    /// sum, or leaves it out (the screen flagged it and the job's policy
    /// excludes).
    async fn accumulate(
        &self,
        client: &ClientIdentity,
        job: &Arc<JobRuntime>,
        round: &Arc<OpenRound>,
        header: &UpdateHeader,
        received: Received,
    ) -> Result<SubmitUpdateResponse, Error> {
        let Received { claim, buf, _bytes } = received;
        // A quarantine may have arrived while the bytes streamed in.
        self.engine.clients.authorize(client)?;
        let (r, j) = (round.clone(), job.clone());
        let within = header.within_clip;
        let tenant = client.tenant_id.clone();
        let (outcome, screened, buf) = tokio::task::spawn_blocking(move || {
            // Scored on this update and public state only, outside the
            // round's lock; decided before anything touches the sum.
            let screened = j.screen.screen(&tenant, &buf, r.clip_norm);
            // The scores go into the attempt's record of who took part.
            let json = screened.as_ref().map(|s| scores_json(s).to_string());
            let outcome = match &screened {
                Some(s) if s.exclude => r.exclude(claim, s.stats.norm, json).map(|()| None),
                _ => r.accept_screened(claim, &buf, within, json).map(Some),
            };
            (outcome, screened, buf)
        })
        .await
        .map_err(Error::task("accumulate"))?;
        drop(buf);
        self.engine
            .metrics
            .set_uploads_in_progress(self.engine.pool.in_use());
        if let Some(s) = screened.as_ref().filter(|s| s.flagged()) {
            self.flagged(client, job, round, s, &outcome).await;
        }
        let Some(added) = outcome? else {
            let summary = screened.map(|s| s.summary()).unwrap_or_default();
            return Err(bad(
                RejectReason::Screened,
                format!(
                    "update excluded by the job's update screen ({summary}); honest clients \
                     clip their update to the task's clip norm"
                ),
            ));
        };
        self.engine.metrics.update_accepted(&header.job_id);
        tracing::debug!(job = %header.job_id, round = round.round, client = %client.client_id, norm = added.norm, clipped = added.clipped, "update accepted");
        Ok(SubmitUpdateResponse {
            newly_accepted: true,
            round: round.round,
        })
    }
}
