//! The crate's error type: one enum for the simulator, the figures and the
//! demo, each variant saying which stage failed.

use std::path::PathBuf;

/// Why an experiment or the demo failed.
///
/// `#[non_exhaustive]`: match the variants you handle and keep a wildcard.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing a file.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Generating or sessionizing synthetic tenants.
    #[error("synthetic tenant {tenant}: {message}")]
    Synth {
        /// Tenant index.
        tenant: usize,
        /// What went wrong.
        message: String,
    },
    /// Local or central training.
    #[error("training: {0}")]
    Train(#[from] fedsec_detector::train::TrainError),
    /// Scoring a model.
    #[error("scoring: {0}")]
    Model(#[from] fedsec_detector::model::ModelError),
    /// The privacy accountant could not bound ε.
    #[error("privacy accounting: {0}")]
    Accounting(#[source] fedsec_privacy::AccountingError),
    /// An update could not be measured or clipped.
    #[error("clipping: {0}")]
    Clip(#[source] fedsec_privacy::ClipError),
    /// A measured update could not be added to the round's sum.
    #[error("accumulating: {0}")]
    Accumulate(#[source] fedsec_round::AddError),
    /// An audit's measured bound contradicts its claim (each failed check,
    /// in words).
    #[error("audit check failed: {}", .0.join("; "))]
    AuditCheck(Vec<String>),
    /// The round core (plan, accumulate, release), with its source.
    #[error("round: {0}")]
    Round(#[from] fedsec_round::RoundError),
    /// The coordinator (embedded or its pure numerics).
    #[error("coordinator: {0}")]
    Coordinator(#[from] fedsec_coordinator::Error),
    /// A participant (client library: building, TLS, a call), with its
    /// source.
    #[error("participant: {0}")]
    Client(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Fewer participants registered than the demo started, before its
    /// deadline.
    #[error("only {registered} of {expected} participants registered in time")]
    Registration {
        /// Registered by the deadline.
        registered: usize,
        /// Started.
        expected: usize,
    },
    /// Drawing a figure.
    #[error("figure {path}: {message}")]
    Plot {
        /// The PNG file.
        path: PathBuf,
        /// The backend's message.
        message: String,
    },
    /// Writing a CSV file.
    #[error("csv {path}: {source}")]
    Csv {
        /// The CSV file.
        path: PathBuf,
        /// The writer's error.
        source: csv::Error,
    },
    /// An invalid setting.
    #[error("invalid setting: {0}")]
    Config(String),
    /// A metric is undefined (e.g. one class only in a holdout set).
    #[error("metric: {0}")]
    Metric(#[from] fedsec_detector::metrics::MetricError),
}

impl Error {
    /// A participant's failure (building it, its TLS material, a call).
    pub fn client(source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Client(Box::new(source))
    }

    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    /// Privacy and participant failures keep their typed source (they used
    /// to be flattened into `Privacy(String)` / `Client(String)`).
    #[test]
    fn privacy_and_participant_failures_keep_their_source() {
        let e = Error::Clip(fedsec_privacy::ClipError::InvalidClipNorm(-1.0));
        assert!(
            e.source()
                .is_some_and(|s| s.is::<fedsec_privacy::ClipError>())
        );
        let e = Error::Accumulate(fedsec_round::AddError::ClipNorm(0.0));
        assert!(e.source().is_some_and(|s| s.is::<fedsec_round::AddError>()));
        let tls = fedsec_proto::tls::TlsError::NoCertificate("c.pem".into());
        let e = Error::client(tls);
        assert!(e.to_string().starts_with("participant: "), "{e}");
        assert!(
            e.source()
                .is_some_and(|s| s.is::<fedsec_proto::tls::TlsError>()),
            "{e:?}"
        );
        let e = Error::AuditCheck(vec!["a".into(), "b".into()]);
        assert_eq!(e.to_string(), "audit check failed: a; b");
    }
}
