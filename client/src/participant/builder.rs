//! [`ParticipantBuilder`]: where the TLS material, the data, the policy and
//! the state directory come from, checked when the participant is built.

use crate::ledger::LedgerError;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};

use fedsec_proto::release::ReleasePublicKey;
use fedsec_proto::tls::{ClientTls, TlsFiles, TlsPem};
use tokio::sync::broadcast;

use crate::data::{DataOptions, DataSource, LocalStore, LogTail};
use crate::error::BuildError;
use crate::handle::{GlobalModel, Shared};
use crate::ledger::Ledger;
use crate::policy::{PrivacyPolicy, TrainingLimits};
use crate::rpc::Rpc;
use crate::state::StateDir;

use super::{Config, Participant, Timing};

pub(super) enum TlsSetting {
    Ready(ClientTls),
    Files(TlsFiles),
    Pem(TlsPem),
}

/// Builds a [`Participant`]; every `build` error names the field.
///
/// ```no_run
/// use fedsec_client::{DataSource, Participant, PrivacyPolicy};
/// use fedsec_proto::tls::TlsFiles;
/// # fn demo() -> Result<(), fedsec_client::BuildError> {
/// let participant = Participant::builder()
///     .endpoint("https://coordinator.example:7443")
///     .release_public_key_file("pki/release-signing.pub.pem")
///     .tls_files(TlsFiles {
///         ca: "pki/ca.pem".into(),
///         cert: "pki/clients/client-0001.pem".into(),
///         key: "pki/clients/client-0001.key".into(),
///     })
///     .data(DataSource::watch_dir("/var/log/shop"))
///     .policy(PrivacyPolicy::new(8.0, 1e-6))
///     .state_dir("/var/lib/fedsec-client")
///     .job("bots")
///     .build()?;
/// # Ok(()) }
/// ```
#[must_use]
pub struct ParticipantBuilder {
    endpoint: Option<String>,
    tls: Option<TlsSetting>,
    data: Option<DataSource>,
    data_options: DataOptions,
    policy: Option<PrivacyPolicy>,
    training: TrainingLimits,
    state_dir: Option<PathBuf>,
    seed: u64,
    job_id: Option<String>,
    timing: Timing,
    token_file: Option<PathBuf>,
    release_key: Option<ReleaseKeySetting>,
}

enum ReleaseKeySetting {
    Key(ReleasePublicKey),
    File(PathBuf),
}

impl std::fmt::Debug for ParticipantBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ParticipantBuilder")
            .field("endpoint", &self.endpoint)
            .field("data", &self.data)
            .field("policy", &self.policy)
            .field("state_dir", &self.state_dir)
            .field("job_id", &self.job_id)
            .finish_non_exhaustive()
    }
}

impl ParticipantBuilder {
    pub(super) fn new() -> Self {
        Self {
            endpoint: None,
            tls: None,
            data: None,
            data_options: DataOptions::default(),
            policy: None,
            training: TrainingLimits::default(),
            state_dir: None,
            seed: 0,
            job_id: None,
            timing: Timing::default(),
            release_key: None,
            token_file: None,
        }
    }

    /// The coordinator's release public key (shipped with the CA bundle):
    /// every downloaded model's signature is checked against it before the
    /// model is installed or trained on. Required.
    pub fn release_public_key(mut self, key: ReleasePublicKey) -> Self {
        self.release_key = Some(ReleaseKeySetting::Key(key));
        self
    }

    /// The release public key from an SPKI PEM file (read by `build`).
    pub fn release_public_key_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.release_key = Some(ReleaseKeySetting::File(path.into()));
        self
    }

    /// The coordinator, `https://host:port`. Required.
    pub fn endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// The client's TLS identity and the platform CA. Required (this or
    /// [`tls_files`](Self::tls_files) / [`tls_pem`](Self::tls_pem)).
    pub fn tls(mut self, tls: ClientTls) -> Self {
        self.tls = Some(TlsSetting::Ready(tls));
        self
    }

    /// The TLS identity from PEM files (read by `build`).
    pub fn tls_files(mut self, files: TlsFiles) -> Self {
        self.tls = Some(TlsSetting::Files(files));
        self
    }

    /// The TLS identity from PEM bytes.
    pub fn tls_pem(mut self, pem: TlsPem) -> Self {
        self.tls = Some(TlsSetting::Pem(pem));
        self
    }

    /// Where labelled sessions come from. Required.
    pub fn data(mut self, source: DataSource) -> Self {
        self.data = Some(source);
        self
    }

    /// How local data is read and kept (defaults: see [`DataOptions`]).
    pub fn data_options(mut self, options: DataOptions) -> Self {
        self.data_options = options;
        self
    }

    /// The tenant's privacy policy. Required.
    pub fn policy(mut self, policy: PrivacyPolicy) -> Self {
        self.policy = Some(policy);
        self
    }

    /// Limits on local training. Default: none beyond the task's.
    pub fn training_limits(mut self, limits: TrainingLimits) -> Self {
        self.training = limits;
        self
    }

    /// Directory of the ledger, the lock and the cached model. Required.
    pub fn state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state_dir = Some(dir.into());
        self
    }

    /// Seed of the holdout split and local training shuffles. Default 0.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Serve only this job (and return from `run` when it finishes).
    /// Default: any running job. Amplified accounting needs a bound job.
    pub fn job(mut self, job_id: impl Into<String>) -> Self {
        self.job_id = Some(job_id.into());
        self
    }

    /// A bearer token file for coordinators with `[auth.tokens]`: its token
    /// goes on every call (`authorization: Bearer <JWT>`) and is re-read
    /// whenever the file changes, so short-lived tokens can be refreshed in
    /// place. Default none (mTLS alone).
    pub fn token_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.token_file = Some(path.into());
        self
    }

    /// Protocol timing (defaults: see [`Timing`]).
    pub fn timing(mut self, timing: Timing) -> Self {
        self.timing = timing;
        self
    }

    /// Validates everything, takes the state directory's lock and opens the
    /// ledger. Does not connect (see [`Participant::register`]) and needs no
    /// tokio runtime.
    pub fn build(self) -> Result<Participant, BuildError> {
        let endpoint = self.endpoint.ok_or(BuildError::Missing {
            field: "endpoint",
            hint: "the coordinator's https://host:port",
        })?;
        let tls =
            match self.tls.ok_or(BuildError::Missing {
                field: "tls",
                hint: "the client certificate, its key and the platform CA",
            })? {
                TlsSetting::Ready(t) => t,
                TlsSetting::Files(f) => ClientTls::from_files(&f)
                    .map_err(|e| BuildError::invalid("tls", e.to_string()))?,
                TlsSetting::Pem(p) => ClientTls::from_pem(&p)
                    .map_err(|e| BuildError::invalid("tls", e.to_string()))?,
            };
        let release_key = match self.release_key.ok_or(BuildError::Missing {
            field: "release_public_key",
            hint: "the coordinator's release public key (release-signing.pub.pem, shipped with \
                   the CA bundle)",
        })? {
            ReleaseKeySetting::Key(k) => k,
            ReleaseKeySetting::File(p) => ReleasePublicKey::load(&p)
                .map_err(|e| BuildError::invalid("release_public_key", e.to_string()))?,
        };
        let rpc = Rpc::new(tls.clone(), &endpoint, self.timing.rpc_timeout)
            .map_err(|e| BuildError::invalid("endpoint", e.to_string()))?
            .with_release_key(release_key)
            .with_bearer(fedsec_proto::bearer::BearerInterceptor::optional(
                self.token_file.as_deref(),
            ));
        let data = self.data.ok_or(BuildError::Missing {
            field: "data",
            hint: "log files, a directory to watch, or DataSource::Host",
        })?;
        match &data {
            DataSource::Files(files) if files.is_empty() => {
                return Err(BuildError::invalid("data.files", "the list is empty"));
            }
            DataSource::WatchDir {
                dir, log_suffix, ..
            } => {
                if !dir.is_dir() {
                    return Err(BuildError::invalid(
                        "data.watch_dir",
                        format!("{} is not a directory", dir.display()),
                    ));
                }
                if log_suffix.is_empty() {
                    return Err(BuildError::invalid("data.log_suffix", "must not be empty"));
                }
            }
            _ => {}
        }
        let o = &self.data_options;
        if !(0.0..=0.9).contains(&o.holdout_fraction) {
            return Err(BuildError::invalid(
                "data.holdout_fraction",
                format!("must be in [0, 0.9] (got {})", o.holdout_fraction),
            ));
        }
        if o.max_examples == 0 {
            return Err(BuildError::invalid(
                "data.max_examples",
                "must be at least 1",
            ));
        }
        if o.min_examples == 0 {
            return Err(BuildError::invalid(
                "data.min_examples",
                "must be at least 1",
            ));
        }
        let pipeline = Arc::new(o.pipeline()?);
        let policy = self.policy.ok_or(BuildError::Missing {
            field: "privacy",
            hint: "the tenant's privacy policy, at least its ε cap",
        })?;
        policy.validate()?;
        self.training.validate()?;
        if let Some(j) = &self.job_id
            && !fedsec_proto::tls::is_valid_id(j)
        {
            return Err(BuildError::invalid(
                "job",
                format!("{j:?} is not a valid job id"),
            ));
        }
        let t = &self.timing;
        if t.rpc_timeout.is_zero() || t.backoff_initial.is_zero() || t.model_refresh.is_zero() {
            return Err(BuildError::invalid(
                "timing",
                "rpc_timeout, backoff_initial and model_refresh must be > 0",
            ));
        }
        let state_dir = self.state_dir.ok_or(BuildError::Missing {
            field: "state_dir",
            hint: "a directory for the tenant's ledger (keep it; deleting it forgets spent privacy)",
        })?;
        let state = StateDir::open(&state_dir).map_err(LedgerError::from)?;
        let ledger = Ledger::open(&state.ledger_path())?;
        let shared = Arc::new(Shared {
            events: broadcast::channel(1024).0,
            model: RwLock::new(None),
            store: Mutex::new(LocalStore::new(
                o.holdout_fraction,
                o.max_examples,
                self.seed,
            )),
        });
        if let Some(m) = state.load_model().and_then(GlobalModel::from_model_file) {
            shared.set_model(Arc::new(m));
        }
        let tails = match &data {
            DataSource::Files(files) => files
                .iter()
                .map(|f| LogTail::new(f.clone(), &self.data_options, &pipeline))
                .collect(),
            _ => Vec::new(),
        };
        Ok(Participant {
            config: Arc::new(Config {
                data,
                data_options: self.data_options,
                pipeline,
                policy,
                training: self.training,
                seed: self.seed,
                job_id: self.job_id,
                timing: self.timing.clone(),
            }),
            rpc,
            tls,
            shared,
            state,
            ledger: Some(ledger),
            tails: Some(tails),
        })
    }
}
