//! The crate's error type: one enum for the simulator, the figures and the
//! demo, each variant saying which stage failed.

use std::path::PathBuf;

/// Why an experiment or the demo failed.
#[derive(Debug, thiserror::Error)]
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
    /// Privacy accounting, calibration, clipping or noise.
    #[error("privacy: {0}")]
    Privacy(String),
    /// The round core (plan, accumulate, release), with its source.
    #[error("round: {0}")]
    Round(#[from] fedsec_round::RoundError),
    /// The coordinator (embedded or its pure numerics).
    #[error("coordinator: {0}")]
    Coordinator(#[from] fedsec_coordinator::Error),
    /// A participant (client library).
    #[error("participant: {0}")]
    Client(String),
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
