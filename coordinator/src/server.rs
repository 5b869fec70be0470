//! Wiring: start-up (data directory lock, store, crash recovery, jobs),
//! the tonic server with mutual TLS, health and reflection, the metrics
//! endpoint, and shutdown.
//!
//! `fedsec-coordinator serve` and programs embedding the coordinator use the
//! same [`Coordinator::start`]; tests and the one-process demo bind port 0
//! and read [`RunningCoordinator::local_addr`].

use std::collections::HashSet;
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use fedsec_proto::private_file::{self, Existing};
use fedsec_proto::tls::ServerTls;
use fedsec_proto::v1::admin_server::AdminServer;
use fedsec_proto::v1::coordinator_server::CoordinatorServer;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::admin::AdminApi;
use crate::aggregate::DecodePool;
use crate::config::{ConfigError, CoordinatorConfig};
use crate::engine::{AuditRetention, Engine, EngineParts, Settings};
use crate::error::Error;
use crate::gate::GateLayer;
use crate::listener::{ConnLimits, Connections};
use crate::metrics::Metrics;
use crate::ratelimit::RateLimits;
use crate::selection::{KEY_NAME, KeyedPoissonSampler};
use crate::service::admin::AdminService;
use crate::service::coordinator::CoordinatorService;
use crate::shares::{ShareLimits, Shares};
use crate::store::Store;
use crate::store::seal::AtRestKey;
use crate::store::sqlite::SqliteStore;

/// Name of the lock file that keeps two coordinators off one data directory.
pub(crate) const LOCK_FILE: &str = "coordinator.lock";

/// Largest gRPC message the Coordinator service decodes: one 1 MiB tensor
/// chunk plus framing. Nothing legitimate is larger.
pub(crate) const MAX_CLIENT_MESSAGE_BYTES: usize =
    fedsec_proto::tensor::MAX_CHUNK_BYTES + 64 * 1024;

/// Largest gRPC message the Admin service decodes.
pub(crate) const MAX_ADMIN_MESSAGE_BYTES: usize = 1 << 20;

/// Grace period for in-flight calls at shutdown.
pub(crate) const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Entry point of the coordinator.
#[derive(Debug, Clone, Copy)]
pub struct Coordinator;

/// A running coordinator: gRPC server, metrics endpoint and job drivers.
///
/// Call [`shutdown`](Self::shutdown) for a graceful stop (open rounds are
/// abandoned, nothing charged). Dropping it without `shutdown` simulates a
/// crash: every task is aborted at once and open rounds stay open in the
/// store, to be restarted as new attempts by the next start.
pub struct RunningCoordinator {
    engine: Arc<Engine>,
    local_addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    data_dir: PathBuf,
    server: Option<JoinHandle<Result<(), tonic::transport::Error>>>,
    metrics_task: Option<JoinHandle<Result<(), Error>>>,
    flusher: Option<JoinHandle<()>>,
    alerts: Option<crate::alerts::Delivery>,
    health: tonic_health::server::HealthReporter,
    lock: Option<File>,
}

impl std::fmt::Debug for RunningCoordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningCoordinator")
            .field("local_addr", &self.local_addr)
            .field("metrics_addr", &self.metrics_addr)
            .field("data_dir", &self.data_dir)
            .finish_non_exhaustive()
    }
}

fn lock_data_dir(dir: &Path) -> Result<File, Error> {
    crate::store::sqlite::create_private_dir(dir)?;
    let path = dir.join(LOCK_FILE);
    let file = private_file::open(&path, Existing::Keep)
        .map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::FailedPrecondition(format!(
            "data directory {} is in use by another coordinator",
            dir.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(Error::io(format!("cannot lock {}", path.display()), e))
        }
    }
}

impl Coordinator {
    /// Starts a coordinator with the TLS files of `config.tls`.
    pub async fn start(config: CoordinatorConfig) -> Result<RunningCoordinator, Error> {
        let files = config.tls.clone().ok_or_else(|| {
            ConfigError::invalid(
                "tls",
                "required: a [tls] section with ca, cert and key (server certificate and client CA)",
            )
        })?;
        let tls = ServerTls::from_files(&files)?;
        Self::start_with_tls(config, tls).await
    }

    /// Starts a coordinator with the given server TLS (`config.tls` is ignored).
    pub async fn start_with_tls(
        config: CoordinatorConfig,
        tls: ServerTls,
    ) -> Result<RunningCoordinator, Error> {
        config.validate()?;
        let key =
            match &config.storage.encryption_key_file {
                Some(path) => Some(AtRestKey::load(path).map_err(|e| {
                    ConfigError::invalid("storage.encryption_key_file", e.to_string())
                })?),
                None => None,
            };
        let encrypted = key.is_some();
        let lock = lock_data_dir(&config.data_dir)?;
        let store: Arc<dyn Store> = {
            let dir = config.data_dir.clone();
            Arc::new(
                tokio::task::spawn_blocking(move || SqliteStore::open_with_key(&dir, key))
                    .await
                    .map_err(Error::task("store"))??,
            )
        };
        if encrypted {
            tracing::info!(
                "model versions, ledger charges and secrets are sealed at rest (ChaCha20-Poly1305)"
            );
        }
        Self::start_locked(config, tls, store, lock).await
    }

    /// Starts a coordinator on a store the caller opened (e.g. one wrapping
    /// the SQLite store to inject faults or delays in tests). The data
    /// directory is still locked; `config.storage` is ignored.
    pub async fn start_with_store(
        config: CoordinatorConfig,
        tls: ServerTls,
        store: Arc<dyn Store>,
    ) -> Result<RunningCoordinator, Error> {
        config.validate()?;
        let lock = lock_data_dir(&config.data_dir)?;
        Self::start_locked(config, tls, store, lock).await
    }

    async fn start_locked(
        config: CoordinatorConfig,
        tls: ServerTls,
        store: Arc<dyn Store>,
        lock: File,
    ) -> Result<RunningCoordinator, Error> {
        fedsec_proto::tls::install_default_crypto_provider();
        let data_dir = config.data_dir.clone();
        let key = {
            let s = store.clone();
            tokio::task::spawn_blocking(move || {
                s.secret(KEY_NAME, &KeyedPoissonSampler::generate_key)
            })
            .await
            .map_err(Error::task("store"))??
        };
        let release = crate::signing::load(&config)?;
        let metrics = Arc::new(Metrics::new());
        let (alerts, delivery) =
            crate::alerts::start(config.alerts.as_ref(), &tls, metrics.clone())?;
        let dangerous = config.dangerous();
        if config.dangerous.is_some() {
            tracing::warn!(
                allow_simulation_noise = dangerous.allow_simulation_noise,
                allow_disabled_noise = dangerous.allow_disabled_noise,
                "the configuration has a [dangerous] section: jobs may publish models without a sound privacy guarantee"
            );
        }
        if config.admins.is_empty() {
            tracing::warn!("no admins configured: the Admin service refuses every caller");
        }
        let l = &config.limits;
        let settings = Settings {
            admins: config.admins.iter().cloned().collect::<HashSet<_>>(),
            poll_interval: Duration::from_millis(config.poll_interval_ms),
            upload_message_timeout: Duration::from_millis(l.upload_message_timeout_ms),
            rate_limit_audit_window: Duration::from_millis(config.rate_limits.audit_window_ms),
            download_timeout: Duration::from_millis(l.download_timeout_ms),
            init_weights_dir: config.init_weights_dir.clone(),
            max_init_weights_bytes: l.max_init_weights_bytes,
            max_tenants: l.max_tenants,
            audit_retention: AuditRetention {
                max_rows: l.audit_max_rows,
                max_age: Duration::from_secs(l.audit_max_age_days.saturating_mul(86_400)),
            },
            contribution_retention: AuditRetention {
                max_rows: l.contribution_max_rows,
                max_age: Duration::from_secs(l.contribution_max_age_days.saturating_mul(86_400)),
            },
            dangerous,
        };
        let limits = RateLimits::new(
            &config.rate_limits,
            Duration::from_millis(config.poll_interval_ms),
        );
        if !limits.enabled() {
            tracing::warn!("rate limits are disabled (rate_limits.enabled = false)");
        }
        let shares = Shares::new(ShareLimits {
            streams: [
                l.max_unary_calls_per_identity,
                l.max_downloads_per_identity,
                l.max_uploads_per_identity,
                l.max_admin_calls_per_identity,
                l.max_other_calls_per_identity,
            ],
            bytes_in_flight: l.max_bytes_in_flight_per_identity,
        });
        let connections = Connections::new(ConnLimits::from(l), metrics.clone());
        crate::housekeeping::warn_if_few_descriptors(l.max_connections);
        let engine = Arc::new(
            Engine::new(
                store,
                metrics.clone(),
                EngineParts {
                    release_key: Arc::new(release.key),
                    sampler: Arc::new(KeyedPoissonSampler::new(&key)),
                    pool: DecodePool::new(l.max_concurrent_uploads),
                    settings,
                    limits,
                    shares,
                    connections,
                },
            )
            .with_alerts(alerts),
        );

        // Loading the key that signs every release is a security event: a
        // coordinator that cannot record it does not start.
        if let Err(e) = engine
            .audit("release_key_loaded", "", "", release.detail)
            .await
        {
            engine.kill();
            if let Some(d) = &delivery {
                d.abort();
            }
            return Err(e);
        }
        match launch(&engine, &config, tls).await {
            Ok(l) => Ok(RunningCoordinator {
                engine,
                local_addr: l.local_addr,
                metrics_addr: l.metrics_addr,
                data_dir,
                server: Some(l.server),
                metrics_task: l.metrics_task,
                flusher: Some(l.flusher),
                alerts: delivery,
                health: l.health,
                lock: Some(lock),
            }),
            Err(e) => {
                // Stop the drivers recovery may have started.
                engine.kill();
                if let Some(d) = &delivery {
                    d.abort();
                }
                Err(e)
            }
        }
    }
}

/// What [`launch`] started.
struct Launched {
    local_addr: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    server: JoinHandle<Result<(), tonic::transport::Error>>,
    metrics_task: Option<JoinHandle<Result<(), Error>>>,
    flusher: JoinHandle<()>,
    health: tonic_health::server::HealthReporter,
}

/// Binds the listeners, recovers and resumes jobs, creates the config's
/// new jobs, and starts serving.
async fn launch(
    engine: &Arc<Engine>,
    config: &CoordinatorConfig,
    tls: ServerTls,
) -> Result<Launched, Error> {
    let data_dir = &config.data_dir;
    let metrics = engine.metrics.clone();
    // Bearer tokens: the JWKS must be usable before anything is served.
    let tokens = match &config.auth.tokens {
        Some(c) => Some(Arc::new(crate::auth::TokenAuth::load(c).await?)),
        None => None,
    };
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| Error::io(format!("cannot bind {}", config.listen), e))?;
    let local_addr = listener
        .local_addr()
        .map_err(|e| Error::io("listener address", e))?;
    let metrics_listener = if config.metrics.enabled {
        let access = metrics_access(config)?;
        Some((crate::metrics::bind(config.metrics.listen).await?, access))
    } else {
        None
    };
    crate::recovery::recover(engine).await?;
    for (i, spec) in config.jobs.iter().enumerate() {
        let mut spec = spec.clone();
        spec.fill_defaults();
        match engine.job(&spec.id) {
            None => {
                crate::job::create(engine, spec).await?;
            }
            Some(existing) if existing.spec == spec => {}
            Some(_) => {
                return Err(ConfigError::invalid(
                    format!("jobs[{i}]"),
                    format!(
                        "job {:?} already exists in {} with a different definition; \
                         a job's definition cannot change (use a new id)",
                        spec.id,
                        data_dir.display()
                    ),
                )
                .into());
            }
        }
    }

    let (metrics_addr, metrics_task) = if let Some((l, access)) = metrics_listener {
        let addr = l
            .local_addr()
            .map_err(|e| Error::io("metrics address", e))?;
        let mut rx = engine.shutdown_signal();
        tracing::info!(%addr, bearer_token = access.token.is_some(), tls = access.tls.is_some(), "serving /metrics (platform team only: exact per-round counts; never public)");
        if !addr.ip().is_loopback() && access.tls.is_none() {
            tracing::warn!(%addr, "/metrics is reachable beyond loopback without TLS: its bearer token crosses the network in clear (set metrics.tls = true)");
        }
        let task = tokio::spawn(crate::metrics::serve(
            l,
            metrics.clone(),
            access,
            async move {
                let _ = rx.wait_for(|s| *s).await;
            },
        ));
        (Some(addr), Some(task))
    } else {
        (None, None)
    };

    let (health_reporter, health) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<CoordinatorServer<CoordinatorService>>()
        .await;
    health_reporter
        .set_serving::<AdminServer<AdminService>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(fedsec_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(Error::Reflection)?;
    let coordinator = CoordinatorServer::new(CoordinatorService::new(engine.clone()))
        .max_decoding_message_size(MAX_CLIENT_MESSAGE_BYTES);
    let admin = AdminServer::new(AdminService::new(
        engine.clone(),
        AdminApi::new(engine.clone(), "admin"),
    ))
    .max_decoding_message_size(MAX_ADMIN_MESSAGE_BYTES);
    let incoming =
        crate::listener::incoming(listener, tls.rustls_config(), engine.connections.clone());
    let mut rx = engine.shutdown_signal();
    let l = &config.limits;
    let server = tonic::transport::Server::builder()
        .initial_stream_window_size(Some(l.http2_stream_window_bytes))
        .initial_connection_window_size(Some(l.http2_connection_window_bytes))
        .max_concurrent_streams(Some(l.max_concurrent_streams_per_connection))
        .http2_max_header_list_size(Some(l.http2_max_header_list_bytes))
        .http2_max_pending_accept_reset_streams(Some(l.http2_max_pending_reset_streams))
        .http2_max_local_error_reset_streams(Some(l.http2_max_local_error_reset_streams))
        .http2_keepalive_interval(Some(Duration::from_millis(l.http2_keepalive_interval_ms)))
        .http2_keepalive_timeout(Some(Duration::from_millis(l.http2_keepalive_timeout_ms)))
        .layer(GateLayer::new(engine.clone(), tokens))
        .add_service(health)
        .add_service(reflection)
        .add_service(coordinator)
        .add_service(admin)
        .serve_with_incoming_shutdown(incoming, async move {
            let _ = rx.wait_for(|s| *s).await;
        });
    let server = tokio::spawn(server);

    crate::housekeeping::prune_audit(engine).await;
    crate::housekeeping::prune_contributions(engine).await;
    let flusher = crate::housekeeping::spawn(engine.clone());
    engine.metrics.set_registered_clients(engine.clients.len());
    tracing::info!(%local_addr, metrics = ?metrics_addr, data_dir = %data_dir.display(), jobs = engine.jobs().len(), "coordinator started");
    engine
        .audit(
            "coordinator_started",
            "",
            "",
            format!("listening on {local_addr}"),
        )
        .await?;
    Ok(Launched {
        local_addr,
        metrics_addr,
        server,
        metrics_task,
        flusher,
        health: health_reporter,
    })
}

/// Who may read `/metrics`: the bearer token and the TLS configuration the
/// config asks for (errors name the key).
fn metrics_access(config: &CoordinatorConfig) -> Result<crate::metrics::http::Access, Error> {
    use crate::metrics::http::{Access, BearerToken, tls_config};
    let token = match &config.metrics.bearer_token_file {
        Some(path) => Some(
            BearerToken::load(path)
                .map_err(|e| ConfigError::invalid("metrics.bearer_token_file", e))?,
        ),
        None => None,
    };
    let tls = if config.metrics.tls {
        let files = config.tls.as_ref().ok_or_else(|| {
            ConfigError::invalid(
                "metrics.tls",
                "needs the server certificate and key of the [tls] section",
            )
        })?;
        let read = |p: &Path| {
            std::fs::read(p).map_err(|e| {
                ConfigError::invalid("metrics.tls", format!("cannot read {}: {e}", p.display()))
            })
        };
        Some(
            tls_config(&read(&files.cert)?, &read(&files.key)?)
                .map_err(|e| ConfigError::invalid("metrics.tls", e))?,
        )
    } else {
        None
    };
    Ok(Access { token, tls })
}

impl RunningCoordinator {
    /// The gRPC address (with the actual port when 0 was configured).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `https://localhost:PORT`, for `ClientTls::channel` (the dev server
    /// certificate names `localhost`).
    pub fn endpoint(&self) -> String {
        format!("https://localhost:{}", self.local_addr.port())
    }

    /// The metrics address, if enabled.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// The public key of the release signing key: what clients verify
    /// served models against.
    pub fn release_public_key(&self) -> fedsec_proto::release::ReleasePublicKey {
        self.engine.release_key.public()
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The store (read it for inspection; writing bypasses the coordinator).
    pub fn store(&self) -> Arc<dyn Store> {
        self.engine.store.clone()
    }

    /// The metrics registry.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.engine.metrics.clone()
    }

    /// In-process administration (no TLS; audit events name `embedded`).
    pub fn admin(&self) -> AdminApi {
        AdminApi::new(self.engine.clone(), "embedded")
    }

    /// Graceful stop: open rounds are abandoned (nothing charged), in-flight
    /// calls get [`SHUTDOWN_GRACE`], last-seen times are flushed.
    pub async fn shutdown(mut self) -> Result<(), Error> {
        tracing::info!("coordinator shutting down");
        self.health
            .set_not_serving::<CoordinatorServer<CoordinatorService>>()
            .await;
        self.health
            .set_not_serving::<AdminServer<AdminService>>()
            .await;
        self.engine.begin_shutdown();
        for job in self.engine.jobs() {
            job.wake.notify_one();
        }
        for d in self.engine.take_drivers() {
            let abort = d.abort_handle();
            if tokio::time::timeout(SHUTDOWN_GRACE * 6, d).await.is_err() {
                abort.abort();
            }
        }
        if let Some(server) = self.server.take() {
            let abort = server.abort_handle();
            match tokio::time::timeout(SHUTDOWN_GRACE, server).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => tracing::warn!(error = %e, "gRPC server ended with an error"),
                Ok(Err(e)) => tracing::warn!(error = %e, "gRPC server task failed"),
                Err(_) => {
                    tracing::warn!("in-flight calls did not finish within the grace period");
                    abort.abort();
                }
            }
        }
        if let Some(m) = self.metrics_task.take() {
            let abort = m.abort_handle();
            if tokio::time::timeout(SHUTDOWN_GRACE, m).await.is_err() {
                abort.abort();
            }
        }
        if let Some(f) = self.flusher.take() {
            f.abort();
        }
        self.engine.flush_last_seen().await;
        if let Some(d) = self.alerts.take() {
            d.shutdown().await;
        }
        if let Err(e) = self
            .engine
            .audit("coordinator_stopped", "", "", "graceful shutdown".into())
            .await
        {
            // Stopping cannot be refused; the next start's row follows.
            tracing::error!(error = %e, "cannot record the shutdown in the audit log");
        }
        self.lock.take();
        tracing::info!("coordinator stopped");
        Ok(())
    }
}

impl Drop for RunningCoordinator {
    fn drop(&mut self) {
        if self.lock.is_none() {
            return;
        }
        // Not shut down: behave like a crash.
        self.engine.kill();
        for h in [self.server.take()].into_iter().flatten() {
            h.abort();
        }
        if let Some(h) = self.metrics_task.take() {
            h.abort();
        }
        if let Some(h) = self.flusher.take() {
            h.abort();
        }
        if let Some(d) = &self.alerts {
            d.abort();
        }
    }
}
