//! The coordinator's error type and its one mapping to gRPC statuses.
//!
//! Every failure a caller can see is an [`Error`]; handlers return it and the
//! single `From<Error> for tonic::Status` below decides the status code, so
//! the statuses documented in the README are defined in exactly one place.
//! Rejected uploads carry a [`RejectReason`], which also names the
//! `fedsec_rejections_total{reason=..}` metric label and the audit event.

use tonic::{Code, Status};

use crate::config::ConfigError;
use crate::store::StoreError;

/// Why an update upload (or a client's call) was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// The stream did not start with a header, or sent a second one.
    BadHeader,
    /// The header names a job that does not exist.
    UnknownJob,
    /// The round/attempt is not the open one, or its deadline has passed.
    StaleRound,
    /// The caller was not selected for this round.
    NotSelected,
    /// The update was computed against a model version that is not current.
    StaleBaseVersion,
    /// The declared or received dimension differs from the model's.
    WrongDimension,
    /// A different update (other nonce) was already accepted this round.
    Duplicate,
    /// An upload with the same nonce is still being received.
    InProgress,
    /// A malformed chunk (unaligned, oversized, too many) or stream framing error.
    BadChunk,
    /// The trailer's digest does not match the received bytes.
    DigestMismatch,
    /// The update contains NaN or an infinity.
    NonFinite,
    /// The client's stream failed or stalled before the trailer.
    StreamError,
    /// The caller is not a registered client.
    Unregistered,
    /// The caller is quarantined.
    Quarantined,
    /// The caller's identity was revoked.
    Revoked,
    /// The caller's client id is registered to another tenant.
    TenantMismatch,
    /// No usable client certificate identity.
    Unauthenticated,
    /// The identity exceeded its rate limit for this call.
    RateLimited,
    /// The identity used up a share: concurrent streams of this call, bytes
    /// in flight, or audit rows stored per hour.
    ShareExhausted,
    /// A caller that is not a listed admin called the Admin service.
    AdminRefused,
    /// `Register` of a new tenant when `limits.max_tenants` tenants are
    /// already registered.
    TenantCapacity,
    /// With `[auth.tokens]`: no bearer token, or one that is malformed,
    /// forged, expired, not yet valid, for another issuer or audience, or
    /// issued to another identity than the certificate's.
    TokenInvalid,
    /// With `[auth.tokens]`: a valid token that does not grant the call
    /// (scope, or MFA for an admin write).
    TokenDenied,
    /// The job's update screen flagged the update and its policy
    /// (`exclude`, `quarantine`) left it out of the sum.
    Screened,
}

impl RejectReason {
    /// The metric label and audit-event detail key of this reason.
    pub fn label(self) -> &'static str {
        match self {
            Self::BadHeader => "bad_header",
            Self::UnknownJob => "unknown_job",
            Self::StaleRound => "stale_round",
            Self::NotSelected => "not_selected",
            Self::StaleBaseVersion => "stale_base_version",
            Self::WrongDimension => "wrong_dimension",
            Self::Duplicate => "duplicate",
            Self::InProgress => "in_progress",
            Self::BadChunk => "bad_chunk",
            Self::DigestMismatch => "digest_mismatch",
            Self::NonFinite => "non_finite",
            Self::StreamError => "stream_error",
            Self::Unregistered => "unregistered",
            Self::Quarantined => "quarantined",
            Self::Revoked => "revoked",
            Self::TenantMismatch => "tenant_mismatch",
            Self::Unauthenticated => "unauthenticated",
            Self::RateLimited => "rate_limited",
            Self::ShareExhausted => "share_exhausted",
            Self::AdminRefused => "admin_refused",
            Self::TenantCapacity => "tenant_capacity",
            Self::TokenInvalid => "token_invalid",
            Self::TokenDenied => "token_denied",
            Self::Screened => "screened",
        }
    }

    /// The gRPC status code callers receive for this reason.
    pub fn code(self) -> Code {
        match self {
            Self::BadHeader | Self::WrongDimension | Self::BadChunk | Self::NonFinite => {
                Code::InvalidArgument
            }
            Self::UnknownJob => Code::NotFound,
            Self::StaleRound | Self::StaleBaseVersion | Self::Unregistered => {
                Code::FailedPrecondition
            }
            Self::NotSelected
            | Self::Quarantined
            | Self::Revoked
            | Self::TenantMismatch
            | Self::AdminRefused
            | Self::TokenDenied
            | Self::Screened => Code::PermissionDenied,
            Self::Duplicate => Code::AlreadyExists,
            Self::InProgress => Code::Aborted,
            Self::DigestMismatch => Code::DataLoss,
            Self::StreamError => Code::Cancelled,
            Self::Unauthenticated | Self::TokenInvalid => Code::Unauthenticated,
            Self::RateLimited | Self::ShareExhausted | Self::TenantCapacity => {
                Code::ResourceExhausted
            }
        }
    }
}

/// Everything that can go wrong in the coordinator.
///
/// `#[non_exhaustive]`: match the variants you handle and keep a wildcard.
/// Failures inside the trust boundary keep their source (`source()`), so
/// the log shows the whole chain; callers only ever see their status.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A client's call or upload was refused.
    #[error("{}: {detail}", reason.label())]
    Rejected {
        /// Why.
        reason: RejectReason,
        /// Human-readable detail for the caller and the audit log.
        detail: String,
    },
    /// The caller's identity exceeded its rate limit for this call.
    #[error(
        "rate_limited: {identity} exceeded its {rpc} rate limit ({limit}); retry after {retry_after_ms} ms"
    )]
    RateLimited {
        /// The call (`GetTask`, ...).
        rpc: &'static str,
        /// The identity (`tenant/client` or `admin:name`).
        identity: String,
        /// The limit, for the message (e.g. `2/s sustained, burst 60`).
        limit: String,
        /// Earliest retry that would be allowed, in ms.
        retry_after_ms: u64,
    },
    /// The caller's identity used up one of its shares (concurrent streams
    /// of a call, bytes in flight, audit rows per hour).
    #[error(
        "share_exhausted: {identity} has {what} (limit {limit}); retry after {retry_after_ms} ms"
    )]
    ShareExhausted {
        /// The identity (`tenant/client` or `admin:name`).
        identity: String,
        /// What is used up, e.g. `4 GetModel streams open`.
        what: String,
        /// The limit, for the message.
        limit: String,
        /// Suggested wait before retrying, in ms.
        retry_after_ms: u64,
    },
    /// The configuration (file or a job definition) is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A request argument is invalid.
    #[error("{0}")]
    InvalidArgument(String),
    /// Something named in the request does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request conflicts with the current state.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The caller may not do this.
    #[error("{0}")]
    PermissionDenied(String),
    /// Something with this name already exists.
    #[error("{0}")]
    AlreadyExists(String),
    /// The coordinator is shutting down.
    #[error("the coordinator is shutting down")]
    ShuttingDown,
    /// A dependency the call needs is unavailable for now (e.g. the token
    /// keys could not be refreshed for longer than allowed); retry later.
    #[error("{0}")]
    Unavailable(String),
    /// The storage backend failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A step of the round core failed: the accountant (a running job
    /// pauses on [`fedsec_round::RoundError::is_accounting`]), the noise
    /// source, or a bound the release checks.
    #[error("round core: {}", error_chain(.0))]
    Round(#[from] fedsec_round::RoundError),
    /// A privacy receipt could not be computed.
    #[error("cannot compute the privacy receipt: {0}")]
    Receipt(#[source] fedsec_privacy::ReceiptError),
    /// A receipt or an audit could not be written as JSON, or a stored one
    /// read back.
    #[error("{what}: {source}")]
    Json {
        /// What was being written or read.
        what: &'static str,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// The canary audit could not be estimated.
    #[error("canary audit: {0}")]
    Audit(#[source] fedsec_privacy::audit::AuditError),
    /// A blocking task (store, accountant, release, export, ...) panicked
    /// or was cancelled.
    #[error("{what} task: {source}")]
    Task {
        /// Which task.
        what: &'static str,
        /// Why it did not finish.
        #[source]
        source: tokio::task::JoinError,
    },
    /// TLS material could not be loaded.
    #[error(transparent)]
    Tls(#[from] fedsec_proto::tls::TlsError),
    /// An I/O error (binding sockets, reading files).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// An update or a canary could not be measured or clipped (the round's
    /// clip norm is invalid, or the values are unusable).
    #[error("{what}: {source}")]
    Clip {
        /// What was being clipped (`an update`, `a canary update`).
        what: &'static str,
        /// The clipping error.
        #[source]
        source: fedsec_privacy::ClipError,
    },
    /// A measured update could not be added to the round's sum for a reason
    /// that is not the client's (the round's clip norm is invalid).
    #[error("accumulating an update: {0}")]
    Accumulate(#[source] fedsec_round::AddError),
    /// The gRPC reflection service could not be built from the descriptors.
    #[error("reflection service: {0}")]
    Reflection(#[source] tonic_reflection::server::Error),
    /// A job's current model version is missing from the store.
    #[error("job {job:?}: current version {version} is missing from the store")]
    MissingVersion {
        /// The job.
        job: String,
        /// The version its record names as current.
        version: u64,
    },
    /// A job's stored canary audit cannot be read back.
    #[error("job {job:?}: stored audit is unreadable: {source}")]
    StoredAudit {
        /// The job.
        job: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// A model version could not be exported as safetensors.
    #[error("export: {0}")]
    Export(#[source] crate::export::ExportError),
    /// A broken internal invariant (a bug), named by a fixed message: details
    /// with a source have their own variant above.
    #[error("internal error: {0}")]
    Internal(&'static str),
    /// An audit event could not be appended to the tamper-evident audit
    /// log: the operation it records was refused or held (issue 21), never
    /// carried out unrecorded.
    #[error("the audit log cannot be written ({kind}): {source}")]
    AuditLog {
        /// Kind of the event that could not be written.
        kind: String,
        /// The store's error.
        #[source]
        source: StoreError,
    },
    /// The release signing key could not be loaded or created.
    #[error(transparent)]
    Signing(#[from] fedsec_proto::release::ReleaseError),
}

/// An error and its sources, `outer: inner: ...`.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

impl Error {
    /// A blocking task that did not finish.
    pub(crate) fn task(what: &'static str) -> impl FnOnce(tokio::task::JoinError) -> Self {
        move |source| Self::Task { what, source }
    }

    /// A JSON error while writing or reading `what`.
    pub(crate) fn json(what: &'static str) -> impl FnOnce(serde_json::Error) -> Self {
        move |source| Self::Json { what, source }
    }

    /// Whether this is the accountant failing to bound a job's ε (the job
    /// pauses: nothing may be released until the cause is fixed).
    pub fn is_accounting(&self) -> bool {
        match self {
            Self::Round(e) => e.is_accounting(),
            Self::Receipt(_) => true,
            _ => false,
        }
    }

    /// A rejection with its reason and detail.
    pub fn rejected(reason: RejectReason, detail: impl Into<String>) -> Self {
        Self::Rejected {
            reason,
            detail: detail.into(),
        }
    }

    /// An I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    /// Whether this is a transient store fault (disk full, busy, I/O): the
    /// operation may succeed later, so a job pauses and retries instead of
    /// failing, and a caller gets `UNAVAILABLE`.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Store(e) | Self::AuditLog { source: e, .. } if e.is_transient())
    }

    /// The rejection reason, if this is a rejection.
    pub fn reject_reason(&self) -> Option<RejectReason> {
        match self {
            Self::Rejected { reason, .. } => Some(*reason),
            Self::RateLimited { .. } => Some(RejectReason::RateLimited),
            Self::ShareExhausted { .. } => Some(RejectReason::ShareExhausted),
            _ => None,
        }
    }
}

/// Metadata key of a `RESOURCE_EXHAUSTED` status carrying the retry-after
/// hint in milliseconds (also in the message); defined with the wire
/// contract in `fedsec_proto`.
pub use fedsec_proto::RETRY_AFTER_MS_METADATA;

/// Result with the coordinator's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        match e {
            Error::Rejected { reason, detail } => Status::new(reason.code(), detail),
            e @ (Error::RateLimited { retry_after_ms, .. }
            | Error::ShareExhausted { retry_after_ms, .. }) => {
                let mut status = Status::resource_exhausted(e.to_string());
                // Machine-readable hint next to the message (ASCII metadata).
                status
                    .metadata_mut()
                    .insert(RETRY_AFTER_MS_METADATA, retry_after_ms.into());
                status
            }
            Error::Config(e) => Status::invalid_argument(e.to_string()),
            Error::InvalidArgument(m) => Status::invalid_argument(m),
            Error::NotFound(m) => Status::not_found(m),
            Error::FailedPrecondition(m) => Status::failed_precondition(m),
            Error::PermissionDenied(m) => Status::permission_denied(m),
            Error::AlreadyExists(m) => Status::already_exists(m),
            Error::ShuttingDown => Status::unavailable("the coordinator is shutting down"),
            Error::Unavailable(m) => Status::unavailable(m),
            // Disk full, busy, I/O: the caller may retry (details to the log).
            e @ Error::Store(StoreError::Unavailable(_)) => {
                tracing::warn!(error = %e, "store fault answered with UNAVAILABLE");
                Status::unavailable(
                    "the coordinator's store is temporarily unavailable; retry later",
                )
            }
            e @ Error::AuditLog { .. } => {
                tracing::error!(error = %e, "audit log write failed: the call is refused");
                Status::unavailable(
                    "the coordinator cannot record this call in its audit log; nothing was done, \
                     retry later",
                )
            }
            // Internal details go to the log, not to the caller.
            e @ (Error::Store(_)
            | Error::Signing(_)
            | Error::Round(_)
            | Error::Receipt(_)
            | Error::Json { .. }
            | Error::Audit(_)
            | Error::Task { .. }
            | Error::Tls(_)
            | Error::Io { .. }
            | Error::Clip { .. }
            | Error::Accumulate(_)
            | Error::Reflection(_)
            | Error::MissingVersion { .. }
            | Error::StoredAudit { .. }
            | Error::Export(_)
            | Error::Internal(_)) => {
                tracing::error!(error = %e, "internal error answered with INTERNAL");
                Status::internal("internal error; see the coordinator's log")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejections_map_to_their_documented_codes() {
        let cases = [
            (RejectReason::BadHeader, Code::InvalidArgument),
            (RejectReason::UnknownJob, Code::NotFound),
            (RejectReason::StaleRound, Code::FailedPrecondition),
            (RejectReason::NotSelected, Code::PermissionDenied),
            (RejectReason::StaleBaseVersion, Code::FailedPrecondition),
            (RejectReason::WrongDimension, Code::InvalidArgument),
            (RejectReason::Duplicate, Code::AlreadyExists),
            (RejectReason::BadChunk, Code::InvalidArgument),
            (RejectReason::DigestMismatch, Code::DataLoss),
            (RejectReason::NonFinite, Code::InvalidArgument),
            (RejectReason::TokenInvalid, Code::Unauthenticated),
            (RejectReason::TokenDenied, Code::PermissionDenied),
        ];
        for (reason, code) in cases {
            let status = Status::from(Error::rejected(reason, "x"));
            assert_eq!(status.code(), code, "{reason:?}");
            assert_eq!(status.message(), "x");
        }
    }

    #[test]
    fn rate_limits_are_resource_exhausted_with_a_retry_hint() {
        let e = Error::RateLimited {
            rpc: "GetTask",
            identity: "t/c".into(),
            limit: "2/s sustained, burst 60".into(),
            retry_after_ms: 250,
        };
        assert_eq!(e.reject_reason(), Some(RejectReason::RateLimited));
        let status = Status::from(e);
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert!(
            status.message().contains("retry after 250 ms"),
            "{status:?}"
        );
        assert!(status.message().contains("GetTask"), "{status:?}");
        assert_eq!(
            status.metadata().get(RETRY_AFTER_MS_METADATA).unwrap(),
            "250"
        );
    }

    #[test]
    fn transient_store_faults_are_unavailable_without_details() {
        let e = Error::Store(StoreError::Unavailable(
            "database or disk is full: /srv/x".into(),
        ));
        assert!(e.is_transient());
        let status = Status::from(e);
        assert_eq!(status.code(), Code::Unavailable);
        assert!(!status.message().contains("/srv/x"));
        assert!(!Error::Store(StoreError::Corrupt("x".into())).is_transient());
        assert!(!Error::ShuttingDown.is_transient());
    }

    #[test]
    fn internal_errors_do_not_leak_details() {
        let status = Status::from(Error::Internal("secret path /var/x"));
        assert_eq!(status.code(), Code::Internal);
        assert!(!status.message().contains("secret"));
    }

    /// The failures that used to be `Internal(format!(..))` keep their
    /// source (the log shows the whole chain) and still answer INTERNAL
    /// without details.
    #[test]
    fn typed_internal_failures_keep_their_source_and_hide_it_from_callers() {
        use std::error::Error as _;
        let json = serde_json::from_str::<u32>("{").unwrap_err();
        type IsSource = fn(&(dyn std::error::Error + 'static)) -> bool;
        let cases: Vec<(Error, IsSource)> = vec![
            (
                Error::Clip {
                    what: "a canary update",
                    source: fedsec_privacy::ClipError::InvalidClipNorm(-1.0),
                },
                |s| s.is::<fedsec_privacy::ClipError>(),
            ),
            (
                Error::Accumulate(fedsec_round::AddError::ClipNorm(-1.0)),
                |s| s.is::<fedsec_round::AddError>(),
            ),
            (
                Error::StoredAudit {
                    job: "j".into(),
                    source: json,
                },
                |s| s.is::<serde_json::Error>(),
            ),
            (
                Error::Export(crate::export::ExportError::Dimension {
                    expected: 2,
                    got: 1,
                }),
                |s| s.is::<crate::export::ExportError>(),
            ),
        ];
        for (e, is_source) in cases {
            let shown = e.to_string();
            let source = e.source().unwrap_or_else(|| panic!("{shown}: no source"));
            assert!(is_source(source), "{shown}: wrong source {source:?}");
            assert!(error_chain(&e).contains(&source.to_string()), "{shown}");
            let status = Status::from(e);
            assert_eq!(status.code(), Code::Internal, "{shown}");
            assert_eq!(
                status.message(),
                "internal error; see the coordinator's log",
                "{shown}"
            );
        }
        let missing = Error::MissingVersion {
            job: "j".into(),
            version: 7,
        };
        assert!(missing.to_string().contains("version 7"), "{missing}");
        assert_eq!(Status::from(missing).code(), Code::Internal);
    }
}
