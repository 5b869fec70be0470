//! `GetModel`: serving a published model version.
//!
//! Every download of a version streams slices of one immutable buffer
//! ([`bytes::Bytes`] in an `Arc<Published>`): the current version is the
//! job's own; an older one is loaded once and shared by every download of it
//! while any is running ([`Versions`]). Nothing is copied per download except
//! what the transport encodes and buffers for one chunk.
//!
//! Each download holds, until its stream ends or is dropped:
//!
//! - one of its identity's `GetModel` stream shares (taken by the gate);
//! - the model's size in its identity's bytes-in-flight share;
//! - a deadline (`limits.download_timeout_ms`): past it the stream ends with
//!   `DEADLINE_EXCEEDED`. A stream whose peer stopped reading is no longer
//!   polled, so a watchdog closes its connection a few seconds after the
//!   deadline (the only way to reclaim such a stream).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use fedsec_proto::tensor::MAX_CHUNK_BYTES;
use fedsec_proto::v1::{self, GetModelResponse, get_model_response};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tonic::Status;

use crate::engine::{Engine, Seal};
use crate::error::Error;
use crate::job::{JobRuntime, Published};
use crate::listener::Conn;
use crate::shares::ByteShare;

/// Grace after the deadline before an unread download's connection is closed.
pub(crate) const DOWNLOAD_CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Old versions being served, shared by every download of the same version.
#[derive(Debug, Default)]
pub(crate) struct Versions {
    served: Mutex<HashMap<(String, u64), Weak<Published>>>,
}

impl Versions {
    /// The published version `version` (0: current) of `job`.
    pub(crate) async fn get(
        &self,
        engine: &Engine,
        job: &JobRuntime,
        version: u64,
    ) -> Result<Arc<Published>, Error> {
        let current = job.current();
        if version == 0 || version == current.version {
            return Ok(current);
        }
        let key = (job.id().to_owned(), version);
        if let Some(p) = self.lock().get(&key).and_then(Weak::upgrade) {
            return Ok(p);
        }
        let (id, job_id) = (job.id().to_owned(), job.id().to_owned());
        let record = engine
            .db(move |s| s.version(&id, version))
            .await?
            .ok_or_else(|| Error::NotFound(format!("job {job_id:?} has no version {version}")))?;
        let loaded = Arc::new(Published::from_record(record)?);
        let mut served = self.lock();
        // Another download may have loaded it meanwhile: serve that one.
        if let Some(p) = served.get(&key).and_then(Weak::upgrade) {
            return Ok(p);
        }
        served.retain(|_, w| w.strong_count() > 0);
        served.insert(key, Arc::downgrade(&loaded));
        Ok(loaded)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, u64), Weak<Published>>> {
        self.served.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The response stream of one download.
pub(crate) struct ModelStream {
    header: Option<GetModelResponse>,
    model: Arc<Published>,
    at: usize,
    deadline: Instant,
    timeout: Duration,
    done: bool,
    _bytes: ByteShare,
    _watchdog: Option<oneshot::Sender<()>>,
}

impl std::fmt::Debug for ModelStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelStream")
            .field("version", &self.model.version)
            .field("at", &self.at)
            .finish_non_exhaustive()
    }
}

impl ModelStream {
    /// A download of `model` (of `job_id`, architecture `spec`, signed by
    /// `seal`) holding
    /// `bytes`, ending at `deadline`; with a connection, a watchdog closes it
    /// if the stream is still alive [`DOWNLOAD_CLOSE_GRACE`] after the deadline.
    pub(crate) fn new(
        engine: &Arc<Engine>,
        job_id: &str,
        spec: &v1::ModelSpec,
        model: Arc<Published>,
        seal: Seal,
        bytes: ByteShare,
        conn: Option<Arc<Conn>>,
    ) -> Self {
        let timeout = engine.settings.download_timeout;
        let deadline = Instant::now() + timeout;
        let watchdog = conn.map(|conn| {
            let (tx, rx) = oneshot::channel::<()>();
            let engine = engine.clone();
            tokio::spawn(async move {
                tokio::select! {
                    // The stream was dropped (finished, failed or reset).
                    _ = rx => {}
                    () = tokio::time::sleep_until(deadline + DOWNLOAD_CLOSE_GRACE) => {
                        tracing::info!(peer = %conn.peer(), timeout_ms = timeout.as_millis(), "download past its deadline and not read: closing its connection");
                        engine.metrics.connection_closed("download_deadline");
                        conn.close();
                    }
                }
            });
            tx
        });
        let header = GetModelResponse {
            part: Some(get_model_response::Part::Header(v1::ModelHeader {
                job_id: job_id.to_owned(),
                version: model.version,
                model_spec: Some(spec.clone()),
                num_params: (model.bytes.len() / 4) as u64,
                sha256: model.sha256.to_vec(),
                receipt: Some(model.receipt.proto.clone()),
                round: model.round,
                release_signature: seal.signature,
                signing_key_id: seal.key_id,
                audit_head: seal.audit_head.to_vec(),
            })),
        };
        Self {
            header: Some(header),
            model,
            at: 0,
            deadline,
            timeout,
            done: false,
            _bytes: bytes,
            _watchdog: watchdog,
        }
    }
}

impl tokio_stream::Stream for ModelStream {
    type Item = Result<GetModelResponse, Status>;

    fn poll_next(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        if let Some(h) = self.header.take() {
            return Poll::Ready(Some(Ok(h)));
        }
        let len = self.model.bytes.len();
        if self.at >= len {
            self.done = true;
            return Poll::Ready(None);
        }
        if Instant::now() >= self.deadline {
            self.done = true;
            return Poll::Ready(Some(Err(Status::deadline_exceeded(format!(
                "download not finished within {} ms (limits.download_timeout_ms); {} of {len} bytes sent",
                self.timeout.as_millis(),
                self.at
            )))));
        }
        let end = (self.at + MAX_CHUNK_BYTES).min(len);
        let data = self.model.bytes.slice(self.at..end);
        self.at = end;
        Poll::Ready(Some(Ok(GetModelResponse {
            part: Some(get_model_response::Part::Chunk(v1::TensorChunk { data })),
        })))
    }
}
