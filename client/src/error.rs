//! Errors of the participant library, and the one place where gRPC statuses
//! and transport failures are classified (transient or definitive) and turned
//! into messages a tenant's operator can act on.
//!
//! tonic reports a refused TLS handshake as an `Unavailable` or `Unknown`
//! status whose source chain holds the rustls error (or, when the coordinator
//! refused the client's certificate after a TLS 1.3 handshake, only a
//! "broken pipe" / "connection reset"); [`ConnectionError::from_status`] walks
//! that chain and names the problem.

use std::error::Error as StdError;
use std::fmt;

use tonic::{Code, Status};

use crate::ledger::LedgerError;

/// Why [`ParticipantBuilder::build`](crate::ParticipantBuilder::build) refused
/// the configuration: which field is missing or invalid, and why.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A required field was not set.
    #[error("{field}: required — {hint}")]
    Missing {
        /// The builder method / config key.
        field: &'static str,
        /// What to set it to.
        hint: &'static str,
    },
    /// A field has an unusable value.
    #[error("{field}: {problem}")]
    Invalid {
        /// The builder method / config key.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// The state directory cannot be used (not creatable, locked by another
    /// participant, or holding a ledger that cannot be read).
    #[error("state_dir: {0}")]
    State(#[from] LedgerError),
}

impl BuildError {
    pub(crate) fn invalid(field: &'static str, problem: impl Into<String>) -> Self {
        Self::Invalid {
            field,
            problem: problem.into(),
        }
    }
}

/// A connection-level failure, named for the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionError {
    /// The coordinator's certificate does not chain to the CA this client
    /// trusts (wrong CA file, or someone else answering on that address).
    ServerCertificateUntrusted {
        /// The coordinator endpoint.
        endpoint: String,
        /// rustls' reason.
        detail: String,
    },
    /// The coordinator's certificate is valid but not for the host name in
    /// the endpoint.
    ServerNameMismatch {
        /// The coordinator endpoint.
        endpoint: String,
        /// rustls' reason.
        detail: String,
    },
    /// The coordinator's certificate has expired or is not yet valid.
    ServerCertificateExpired {
        /// The coordinator endpoint.
        endpoint: String,
        /// rustls' reason.
        detail: String,
    },
    /// The coordinator refused this client's certificate (a TLS alert, or the
    /// connection closed right after the handshake, which is how a TLS 1.3
    /// server refuses a client certificate; see [`crate::probe`]).
    ClientCertificateRefused {
        /// The coordinator endpoint.
        endpoint: String,
        /// What was observed.
        detail: String,
    },
    /// Nothing answered (connection refused, timeout, name resolution).
    Unreachable {
        /// The coordinator endpoint.
        endpoint: String,
        /// What was observed.
        detail: String,
    },
    /// Any other transport failure.
    Transport {
        /// The coordinator endpoint.
        endpoint: String,
        /// What was observed.
        detail: String,
    },
}

impl fmt::Display for ConnectionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ServerCertificateUntrusted { endpoint, detail } => write!(
                f,
                "refusing to connect to {endpoint}: its TLS certificate is not issued by the CA this \
                 client trusts ({detail}); check the `tls.ca` file, or someone else is answering on \
                 that address"
            ),
            Self::ServerNameMismatch { endpoint, detail } => write!(
                f,
                "refusing to connect to {endpoint}: its TLS certificate is not valid for that host \
                 name ({detail}); use the name the coordinator's certificate was issued for"
            ),
            Self::ServerCertificateExpired { endpoint, detail } => write!(
                f,
                "refusing to connect to {endpoint}: its TLS certificate is expired or not yet valid \
                 ({detail})"
            ),
            Self::ClientCertificateRefused { endpoint, detail } => write!(
                f,
                "the coordinator at {endpoint} refused this client's TLS certificate ({detail}); \
                 check that `tls.cert`/`tls.key` were issued by the platform CA, are not expired, \
                 and have not been revoked"
            ),
            Self::Unreachable { endpoint, detail } => {
                write!(f, "cannot reach the coordinator at {endpoint}: {detail}")
            }
            Self::Transport { endpoint, detail } => {
                write!(
                    f,
                    "transport error talking to the coordinator at {endpoint}: {detail}"
                )
            }
        }
    }
}

impl std::error::Error for ConnectionError {}

/// Every message of an error's source chain, with I/O errors' inner errors.
fn chain<'a>(err: &'a (dyn StdError + 'static)) -> Vec<&'a (dyn StdError + 'static)> {
    let mut out = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        out.push(e);
        // `io::Error::source` skips the wrapped error itself; look inside.
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
        {
            out.push(inner);
        }
        next = e.source();
    }
    out
}

fn rustls_error<'a>(links: &[&'a (dyn StdError + 'static)]) -> Option<&'a rustls::Error> {
    links.iter().find_map(|e| e.downcast_ref::<rustls::Error>())
}

fn io_kind(links: &[&(dyn StdError + 'static)]) -> Option<std::io::ErrorKind> {
    links
        .iter()
        .find_map(|e| e.downcast_ref::<std::io::Error>().map(std::io::Error::kind))
}

impl ConnectionError {
    /// Classifies a status that came from the transport rather than from the
    /// coordinator's handlers. Returns `None` for statuses the coordinator
    /// produced itself (they carry no transport source).
    pub fn from_status(status: &Status, endpoint: &str) -> Option<Self> {
        Some(Self::from_error(status.source()?, endpoint))
    }

    /// Classifies a transport error (its whole source chain).
    pub fn from_error(source: &(dyn StdError + 'static), endpoint: &str) -> Self {
        let endpoint = endpoint.to_owned();
        let links = chain(source);
        let text = links
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(": ");
        if let Some(e) = rustls_error(&links) {
            use rustls::CertificateError as C;
            let detail = e.to_string();
            return match e {
                rustls::Error::InvalidCertificate(c) => match c {
                    C::NotValidForName | C::NotValidForNameContext { .. } => {
                        Self::ServerNameMismatch { endpoint, detail }
                    }
                    C::Expired
                    | C::ExpiredContext { .. }
                    | C::NotValidYet
                    | C::NotValidYetContext { .. } => {
                        Self::ServerCertificateExpired { endpoint, detail }
                    }
                    _ => Self::ServerCertificateUntrusted { endpoint, detail },
                },
                rustls::Error::AlertReceived(_) => {
                    Self::ClientCertificateRefused { endpoint, detail }
                }
                _ => Self::Transport { endpoint, detail },
            };
        }
        match io_kind(&links) {
            Some(
                std::io::ErrorKind::ConnectionRefused
                | std::io::ErrorKind::TimedOut
                | std::io::ErrorKind::HostUnreachable
                | std::io::ErrorKind::NetworkUnreachable
                | std::io::ErrorKind::AddrNotAvailable,
            ) => Self::Unreachable {
                endpoint,
                detail: text,
            },
            _ if text.contains("dns error") || text.contains("failed to lookup") => {
                Self::Unreachable {
                    endpoint,
                    detail: text,
                }
            }
            _ => Self::Transport {
                endpoint,
                detail: text,
            },
        }
    }

    /// Whether retrying can help without someone changing certificates.
    pub fn is_certificate_problem(&self) -> bool {
        matches!(
            self,
            Self::ServerCertificateUntrusted { .. }
                | Self::ServerNameMismatch { .. }
                | Self::ServerCertificateExpired { .. }
                | Self::ClientCertificateRefused { .. }
        )
    }
}

/// How a failed call should be handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Retry with backoff (and, for uploads, the same nonce).
    Transient,
    /// The coordinator does not know this client (e.g. after it lost its
    /// state): register again, then retry.
    Reregister,
    /// A definitive answer: do not retry this call.
    Definitive,
}

/// Decides whether a failed call is worth retrying.
///
/// Transient: `UNAVAILABLE`, `DEADLINE_EXCEEDED`, `ABORTED` (an earlier upload
/// of ours is still being processed), `RESOURCE_EXHAUSTED`, `CANCELLED` (the
/// coordinator cut a slow stream), `INTERNAL` and `UNKNOWN` (transport
/// errors surface as those). `FAILED_PRECONDITION` saying the client is not
/// registered asks for a new `Register`. Everything else (stale round, not
/// selected, duplicate, invalid argument, digest mismatch, permission
/// denied, unauthenticated, not found) is definitive.
pub fn disposition(status: &Status) -> Disposition {
    match status.code() {
        Code::Unavailable
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::ResourceExhausted
        | Code::Cancelled
        | Code::Internal
        | Code::Unknown => Disposition::Transient,
        Code::FailedPrecondition if status.message().contains("not registered") => {
            Disposition::Reregister
        }
        _ => Disposition::Definitive,
    }
}

/// A gRPC call that failed, with the operation and a readable reason.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{operation} failed: {message}")]
pub struct RpcError {
    /// `Register`, `GetTask`, `GetModel` or `SubmitUpdate`.
    pub operation: &'static str,
    /// The status code.
    pub code: Code,
    /// The coordinator's message, or the transport problem in words.
    pub message: String,
    /// The transport classification, when the failure was not an answer
    /// from the coordinator.
    pub connection: Option<ConnectionError>,
    /// The coordinator's "retry after" hint (`retry-after-ms` metadata of a
    /// rate-limited call), when it sent a well-formed one.
    pub retry_after: Option<std::time::Duration>,
}

impl RpcError {
    /// Wraps a status, naming transport problems.
    pub fn from_status(operation: &'static str, status: &Status, endpoint: &str) -> Self {
        let connection = ConnectionError::from_status(status, endpoint);
        let message = match &connection {
            Some(c) => c.to_string(),
            None => format!("{:?}: {}", status.code(), status.message()),
        };
        Self {
            operation,
            code: status.code(),
            message,
            connection,
            retry_after: retry_after(status),
        }
    }

    /// A failure decided on this side (no status from the coordinator).
    pub fn local(operation: &'static str, code: Code, message: impl Into<String>) -> Self {
        Self {
            operation,
            code,
            message: message.into(),
            connection: None,
            retry_after: None,
        }
    }

    /// A local timeout of the call.
    pub fn timeout(operation: &'static str, after: std::time::Duration) -> Self {
        Self::local(
            operation,
            Code::DeadlineExceeded,
            format!("no answer within {} ms", after.as_millis()),
        )
    }

    /// How to handle it.
    pub fn disposition(&self) -> Disposition {
        disposition(&Status::new(self.code, self.message.clone()))
    }
}

/// The `retry-after-ms` hint of a status: ASCII digits only, anything else
/// (missing, not a number, not ASCII) is ignored and the client backs off on
/// its own schedule.
fn retry_after(status: &Status) -> Option<std::time::Duration> {
    let v = status
        .metadata()
        .get(fedsec_proto::RETRY_AFTER_MS_METADATA)?;
    let ms: u64 = v.to_str().ok()?.trim().parse().ok()?;
    Some(std::time::Duration::from_millis(ms))
}

/// What can stop a participant or a one-off operation.
///
/// `#[non_exhaustive]`: match the variants you handle and keep a wildcard.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A call failed (after retries, where retrying made sense).
    #[error(transparent)]
    Rpc(#[from] RpcError),
    /// The tenant's ledger could not be read or written. The participant
    /// stops rather than contribute without a durable record.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// A downloaded model was refused.
    #[error("model rejected: {0}")]
    ModelRejected(String),
    /// TLS material or endpoint problems.
    #[error(transparent)]
    Tls(#[from] fedsec_proto::tls::TlsError),
    /// A local file could not be read or written.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A background task (guard, training, ledger, data, model) panicked or
    /// was cancelled (a bug, or the runtime shutting down).
    #[error("{what} task: {source}")]
    Task {
        /// Which task.
        what: &'static str,
        /// Why it did not finish.
        #[source]
        source: tokio::task::JoinError,
    },
    /// A broken internal invariant (a bug), named by a fixed message.
    #[error("internal error: {0}")]
    Internal(&'static str),
}

impl Error {
    /// A background task that did not finish.
    pub(crate) fn task(what: &'static str) -> impl FnOnce(tokio::task::JoinError) -> Self {
        move |source| Self::Task { what, source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A background task's failure keeps its `JoinError` as the source
    /// (it used to be flattened into `Internal(String)`).
    #[tokio::test]
    async fn task_failures_keep_their_join_error() {
        let joined = tokio::spawn(async { panic!("boom") }).await.unwrap_err();
        let e = Error::task("training")(joined);
        assert!(e.to_string().starts_with("training task: "), "{e}");
        let source = StdError::source(&e).expect("a source");
        let join = source
            .downcast_ref::<tokio::task::JoinError>()
            .expect("the JoinError");
        assert!(join.is_panic());
    }

    #[test]
    fn retry_after_hints_are_read_and_bad_ones_ignored() {
        let with = |v: &'static str| {
            let mut s = Status::resource_exhausted("rate_limited");
            s.metadata_mut()
                .insert(fedsec_proto::RETRY_AFTER_MS_METADATA, v.parse().unwrap());
            RpcError::from_status("GetTask", &s, "https://x:1").retry_after
        };
        assert_eq!(with("1500"), Some(std::time::Duration::from_millis(1500)));
        assert_eq!(with("soon"), None);
        assert_eq!(with("-5"), None);
        assert_eq!(with("99999999999999999999999"), None);
        let plain = RpcError::from_status("GetTask", &Status::unavailable("x"), "https://x:1");
        assert_eq!(plain.retry_after, None);
    }

    #[test]
    fn dispositions() {
        assert_eq!(
            disposition(&Status::unavailable("x")),
            Disposition::Transient
        );
        assert_eq!(
            disposition(&Status::deadline_exceeded("x")),
            Disposition::Transient
        );
        assert_eq!(disposition(&Status::aborted("x")), Disposition::Transient);
        assert_eq!(
            disposition(&Status::failed_precondition(
                "client \"c\" is not registered; call Register first"
            )),
            Disposition::Reregister
        );
        for s in [
            Status::failed_precondition("stale round: round 2 attempt 1"),
            Status::permission_denied("not selected"),
            Status::already_exists("dup"),
            Status::invalid_argument("bad"),
            Status::data_loss("digest"),
            Status::not_found("job"),
            Status::unauthenticated("who"),
        ] {
            assert_eq!(disposition(&s), Disposition::Definitive, "{s:?}");
        }
    }

    #[test]
    fn statuses_without_transport_source_are_not_connection_errors() {
        assert_eq!(
            ConnectionError::from_status(&Status::unavailable("shutting down"), "https://x:1"),
            None
        );
        let e = RpcError::from_status("GetTask", &Status::not_found("no job"), "https://x:1");
        assert_eq!(e.message, "NotFound: no job");
        assert!(e.connection.is_none());
    }

    #[test]
    fn rustls_errors_inside_io_errors_are_found() {
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, tls);
        let status = Status::from_error(Box::new(io));
        let c = ConnectionError::from_status(&status, "https://localhost:1").unwrap();
        assert!(
            matches!(c, ConnectionError::ServerCertificateUntrusted { .. }),
            "{c:?}"
        );
        assert!(c.to_string().contains("not issued by the CA"), "{c}");
        assert!(c.is_certificate_problem());

        // A bare broken pipe is ambiguous (a restart looks the same): the
        // participant probes the handshake to tell (see `probe`).
        let io = std::io::Error::new(std::io::ErrorKind::BrokenPipe, "broken pipe");
        let status = Status::from_error(Box::new(io));
        let c = ConnectionError::from_status(&status, "https://localhost:1").unwrap();
        assert!(matches!(c, ConnectionError::Transport { .. }), "{c:?}");
        let alert = rustls::Error::AlertReceived(rustls::AlertDescription::UnknownCA);
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, alert);
        let c = ConnectionError::from_error(&io, "https://localhost:1");
        assert!(matches!(
            c,
            ConnectionError::ClientCertificateRefused { .. }
        ));
        assert!(
            c.to_string()
                .contains("refused this client's TLS certificate")
        );
    }
}
