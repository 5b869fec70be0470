//! The client side of `fedsec.v1.Coordinator`: one call per function, each
//! bounded by a timeout, every byte of the answers validated (a downloaded
//! model's header, spec, size, chunks, SHA-256 digest and values; its
//! release signature, checked against the coordinator's release public key
//! before the model is installed or trained on; its privacy receipt).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use fedsec_model::ModelSpec;
use fedsec_privacy::PrivacyReceipt;
use fedsec_proto::bearer::BearerInterceptor;
use fedsec_proto::model::ModelSpecWire;
use fedsec_proto::release::{ReleasePublicKey, ReleaseStatement};
use fedsec_proto::tensor::{TensorDecoder, digest, encode_chunks};
use fedsec_proto::tls::{ClientTls, TlsError};
use fedsec_proto::v1::coordinator_client::CoordinatorClient;
use fedsec_proto::v1::{
    GetModelRequest, GetTaskRequest, RegisterRequest, RegisterResponse, SubmitUpdateRequest,
    SubmitUpdateResponse, TensorChunk, UpdateHeader, UpdateTrailer, get_model_response,
    get_task_response, submit_update_request,
};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// The generated client on a channel that adds the bearer token (if any).
pub(crate) type Grpc = CoordinatorClient<InterceptedService<Channel, BearerInterceptor>>;

use crate::error::RpcError;
use crate::events::TaskRef;

/// Largest model a client downloads: 2^24 parameters (64 MiB of f32), far
/// above any bot-detection MLP; a coordinator announcing more is refused
/// before anything is allocated.
pub const MAX_MODEL_PARAMS: usize = 1 << 24;

/// Software string sent with `Register`.
pub const SOFTWARE: &str = concat!("fedsec-client/", env!("CARGO_PKG_VERSION"));

/// A coordinator connection: a lazily connecting, self-healing channel,
/// created on first use (tonic needs a running tokio runtime for that, so a
/// participant can be built outside one).
#[derive(Debug, Clone)]
pub struct Rpc {
    tls: ClientTls,
    grpc: Arc<OnceLock<Grpc>>,
    bearer: BearerInterceptor,
    endpoint: String,
    timeout: Duration,
    histories: crate::history::HistoryCache,
    release: ReleaseCheck,
}

/// How downloaded models' release signatures are checked.
#[derive(Debug, Clone)]
enum ReleaseCheck {
    /// Against this key (the coordinator's release public key).
    Key(Arc<ReleasePublicKey>),
    /// No key configured: every download is refused.
    Missing,
    /// Not checked (tests of unrelated protocol parts only).
    Unchecked,
}

/// A verified model download.
#[derive(Debug, Clone)]
pub struct Downloaded {
    /// Job.
    pub job_id: String,
    /// Version.
    pub version: u64,
    /// Round after which it was published.
    pub round: u64,
    /// Architecture.
    pub spec: ModelSpec,
    /// Weights in the canonical layout (digest checked, all finite).
    pub weights: Vec<f32>,
    /// The receipt, if it parsed and verified.
    pub receipt: Option<PrivacyReceipt>,
    /// Why the receipt was not usable, if it was not.
    pub receipt_problem: Option<String>,
    /// The receipt's canonical JSON as served and signed ("" if none).
    pub receipt_json: String,
    /// The release signature (verified unless checks were switched off).
    pub signature: Vec<u8>,
    /// Hash of the audit row the signature anchors the release at.
    pub audit_head: [u8; 32],
}

/// Why a download failed.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// The call failed.
    #[error(transparent)]
    Rpc(#[from] RpcError),
    /// The answer was refused.
    #[error("{0}")]
    Rejected(String),
}

impl Rpc {
    /// A connection to `endpoint` (`https://host:port`) with `tls`; every
    /// call is cut off after `timeout`. Checks the endpoint; connects on the
    /// first call.
    pub fn new(tls: ClientTls, endpoint: &str, timeout: Duration) -> Result<Self, TlsError> {
        let bad = |why: &str| TlsError::BadEndpoint(endpoint.into(), why.into());
        let uri: http::Uri = endpoint.parse().map_err(|_| bad("not a URL"))?;
        if uri.scheme_str() != Some("https") {
            return Err(bad("the scheme must be https"));
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err(bad("no host"));
        }
        Ok(Self {
            tls,
            grpc: Arc::new(OnceLock::new()),
            bearer: BearerInterceptor::none(),
            endpoint: endpoint.to_owned(),
            timeout,
            histories: crate::history::HistoryCache::default(),
            release: ReleaseCheck::Missing,
        })
    }

    /// Verifies every downloaded model against `key`, the coordinator's
    /// release public key (shipped with the CA bundle). Without a key every
    /// download is refused.
    pub fn with_release_key(mut self, key: ReleasePublicKey) -> Self {
        self.release = ReleaseCheck::Key(Arc::new(key));
        self
    }

    /// Accepts models without checking their release signature. Dangerous:
    /// for tests of unrelated protocol parts against scripted coordinators
    /// that sign nothing.
    pub fn dangerously_skip_release_check(mut self) -> Self {
        self.release = ReleaseCheck::Unchecked;
        self
    }

    /// Sends `bearer`'s token (`authorization: Bearer <JWT>`) on every call,
    /// for coordinators with `[auth.tokens]`. Call before the first call.
    pub fn with_bearer(mut self, bearer: BearerInterceptor) -> Self {
        self.bearer = bearer;
        self.grpc = Arc::new(OnceLock::new());
        self
    }

    /// The gRPC client, creating the channel on first use.
    pub(crate) fn client(&self, op: &'static str) -> Result<Grpc, RpcError> {
        if let Some(c) = self.grpc.get() {
            return Ok(c.clone());
        }
        let channel = self
            .tls
            .channel(&self.endpoint)
            .map_err(|e| RpcError::local(op, tonic::Code::InvalidArgument, e.to_string()))?;
        let client = CoordinatorClient::with_interceptor(channel, self.bearer.clone())
            // A model chunk is ≤ 1 MiB, a history page ~1.1 MB, a header's
            // receipt O(1) in rounds (a long history is fetched separately).
            .max_decoding_message_size(8 << 20);
        let _ = self.grpc.set(client.clone());
        Ok(client)
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The per-call timeout.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The last verified round history per job ([`crate::history`]).
    pub(crate) fn histories(&self) -> &crate::history::HistoryCache {
        &self.histories
    }

    pub(crate) fn err(&self, op: &'static str, s: &tonic::Status) -> RpcError {
        RpcError::from_status(op, s, &self.endpoint)
    }

    /// `Register`.
    pub async fn register(&self) -> Result<RegisterResponse, RpcError> {
        let mut grpc = self.client("Register")?;
        let call = grpc.register(RegisterRequest {
            software: SOFTWARE.into(),
        });
        match tokio::time::timeout(self.timeout, call).await {
            Err(_) => Err(RpcError::timeout("Register", self.timeout)),
            Ok(Err(s)) => Err(self.err("Register", &s)),
            Ok(Ok(r)) => Ok(r.into_inner()),
        }
    }

    /// `GetTask`.
    pub async fn get_task(&self, job_id: &str) -> Result<get_task_response::Outcome, RpcError> {
        let mut grpc = self.client("GetTask")?;
        let call = grpc.get_task(GetTaskRequest {
            job_id: job_id.into(),
        });
        let r = match tokio::time::timeout(self.timeout, call).await {
            Err(_) => return Err(RpcError::timeout("GetTask", self.timeout)),
            Ok(Err(s)) => return Err(self.err("GetTask", &s)),
            Ok(Ok(r)) => r.into_inner(),
        };
        r.outcome.ok_or_else(|| {
            RpcError::local(
                "GetTask",
                tonic::Code::Internal,
                "the coordinator sent an empty answer",
            )
        })
    }

    /// `GetModel` of `version` (0: current). When `skip_if_version` is the
    /// version announced in the header, the download stops after the header
    /// and `Ok(None)` is returned. When `expect_spec` is given the model must
    /// have exactly that architecture.
    pub async fn download_model(
        &self,
        job_id: &str,
        version: u64,
        expect_spec: Option<&ModelSpec>,
        skip_if_version: Option<u64>,
    ) -> Result<Option<Downloaded>, DownloadError> {
        let fut = self.download_inner(job_id, version, expect_spec, skip_if_version);
        match tokio::time::timeout(self.timeout, fut).await {
            Err(_) => Err(RpcError::timeout("GetModel", self.timeout).into()),
            Ok(r) => r,
        }
    }

    async fn download_inner(
        &self,
        job_id: &str,
        version: u64,
        expect_spec: Option<&ModelSpec>,
        skip_if_version: Option<u64>,
    ) -> Result<Option<Downloaded>, DownloadError> {
        let reject = |m: String| DownloadError::Rejected(m);
        let mut grpc = self.client("GetModel")?;
        let mut stream = grpc
            .get_model(GetModelRequest {
                job_id: job_id.into(),
                version,
            })
            .await
            .map_err(|s| self.err("GetModel", &s))?
            .into_inner();
        let first = stream
            .message()
            .await
            .map_err(|s| self.err("GetModel", &s))?;
        let header = match first.and_then(|m| m.part) {
            Some(get_model_response::Part::Header(h)) => h,
            _ => {
                return Err(reject(
                    "the download did not start with a model header".into(),
                ));
            }
        };
        if header.job_id != job_id {
            return Err(reject(format!(
                "asked for job {job_id:?}, the header is for job {:?}",
                header.job_id
            )));
        }
        if version != 0 && header.version != version {
            return Err(reject(format!(
                "asked for version {version}, the header says {}",
                header.version
            )));
        }
        if skip_if_version == Some(header.version) {
            return Ok(None);
        }
        let spec_msg = header
            .model_spec
            .as_ref()
            .ok_or_else(|| reject("the model header has no spec".into()))?;
        let spec = ModelSpec::from_proto(spec_msg)
            .map_err(|e| reject(format!("invalid model spec: {e}")))?;
        if let Some(expected) = expect_spec
            && *expected != spec
        {
            return Err(reject(format!(
                "the model is {spec}, but the task trains {expected}"
            )));
        }
        let n = spec.num_params();
        if n > MAX_MODEL_PARAMS {
            return Err(reject(format!(
                "{spec} has {n} parameters, more than this client accepts ({MAX_MODEL_PARAMS})"
            )));
        }
        if header.num_params != n as u64 {
            return Err(reject(format!(
                "the header declares {} parameters, {spec} has {n}",
                header.num_params
            )));
        }
        let mut weights = vec![0f32; n];
        {
            let mut decoder = TensorDecoder::new(&mut weights);
            while let Some(m) = stream
                .message()
                .await
                .map_err(|s| self.err("GetModel", &s))?
            {
                match m.part {
                    Some(get_model_response::Part::Chunk(c)) => decoder
                        .push(&c.data)
                        .map_err(|e| reject(format!("model chunk refused: {e}")))?,
                    Some(get_model_response::Part::Header(_)) => {
                        return Err(reject("a second model header in one download".into()));
                    }
                    None => return Err(reject("an empty download message".into())),
                }
            }
            decoder.finish(&header.sha256).map_err(|e| {
                reject(format!("version {} of job {job_id:?}: {e}", header.version))
            })?;
        }
        if let Some(i) = weights.iter().position(|w| !w.is_finite()) {
            return Err(reject(format!("weight {i} is not finite")));
        }
        // The signature covers the header, the weights' digest (checked
        // against the bytes above) and the receipt's JSON: checked before
        // anything is installed, trained on or fetched for the receipt.
        let receipt_json = header
            .receipt
            .as_ref()
            .map(|r| r.json.clone())
            .unwrap_or_default();
        let sha256: [u8; 32] = header
            .sha256
            .as_slice()
            .try_into()
            .map_err(|_| reject("the header's sha256 is not 32 bytes".into()))?;
        let audit_head: [u8; 32] = header.audit_head.as_slice().try_into().unwrap_or([0; 32]);
        match &self.release {
            ReleaseCheck::Unchecked => {}
            ReleaseCheck::Missing => {
                return Err(reject(
                    "no release public key is configured (release_public_key), so no model \
                     can be verified"
                        .into(),
                ));
            }
            ReleaseCheck::Key(key) => {
                if header.audit_head.len() != 32 {
                    return Err(reject(format!(
                        "version {} of job {job_id:?}: the release's audit head is {} bytes, not 32",
                        header.version,
                        header.audit_head.len()
                    )));
                }
                let statement = ReleaseStatement::new(
                    &header.job_id,
                    header.version,
                    header.round,
                    &spec,
                    sha256,
                    &receipt_json,
                    audit_head,
                );
                key.verify(&statement, &header.release_signature)
                    .map_err(|e| {
                        reject(format!(
                            "version {} of job {job_id:?} refused: {e}",
                            header.version
                        ))
                    })?;
            }
        }
        // Issue 16: a long history is referenced, fetched and checked here.
        let (receipt, receipt_problem) = match self
            .resolve_receipt(job_id, header.receipt.as_ref())
            .await?
        {
            Ok(p) => (Some(p), None),
            Err(problem) => (None, Some(problem)),
        };
        Ok(Some(Downloaded {
            job_id: header.job_id,
            version: header.version,
            round: header.round,
            spec,
            weights,
            receipt,
            receipt_problem,
            receipt_json,
            signature: header.release_signature,
            audit_head,
        }))
    }

    /// One `SubmitUpdate` of pre-built messages (cheap to clone for retries).
    pub async fn submit(
        &self,
        messages: &[SubmitUpdateRequest],
    ) -> Result<SubmitUpdateResponse, RpcError> {
        let mut grpc = self.client("SubmitUpdate")?;
        let call = grpc.submit_update(tokio_stream::iter(messages.to_vec()));
        match tokio::time::timeout(self.timeout, call).await {
            Err(_) => Err(RpcError::timeout("SubmitUpdate", self.timeout)),
            Ok(Err(s)) => Err(self.err("SubmitUpdate", &s)),
            Ok(Ok(r)) => Ok(r.into_inner()),
        }
    }
}

/// Header, ≤ 1 MiB chunks and digest trailer of one upload. The chunk
/// payloads are reference-counted, so retrying costs no copy.
pub fn update_messages(
    task: &TaskRef,
    nonce: &[u8],
    update: &[f32],
    within_clip: bool,
) -> Arc<[SubmitUpdateRequest]> {
    let mut out = Vec::with_capacity(2 + update.len() / fedsec_proto::tensor::CHUNK_VALUES + 1);
    out.push(SubmitUpdateRequest {
        part: Some(submit_update_request::Part::Header(UpdateHeader {
            job_id: task.job_id.clone(),
            round: task.round,
            attempt: task.attempt,
            base_version: task.base_version,
            nonce: nonce.to_vec(),
            num_params: update.len() as u64,
            within_clip,
        })),
    });
    out.extend(encode_chunks(update).map(|data| SubmitUpdateRequest {
        part: Some(submit_update_request::Part::Chunk(TensorChunk { data })),
    }));
    out.push(SubmitUpdateRequest {
        part: Some(submit_update_request::Part::Trailer(UpdateTrailer {
            sha256: digest(update).to_vec(),
        })),
    });
    out.into()
}
