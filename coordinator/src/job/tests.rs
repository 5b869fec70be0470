//! The real round driver ([`drive`](super::driver::drive), started by
//! [`create`](super::create)) with the real keyed sampler, in process and at
//! scale: N = 1,000 tenants, q = 0.01, `min_clients` = 10, 5,000 rounds.
//!
//! Every selected tenant reports at once (claim and accept on the open round,
//! as the gRPC service does after decoding), so rounds close as soon as the
//! cohort is in. The question is the accountant's assumption: a fixed
//! tenant's inclusion rate in *released* rounds must be q. An older
//! coordinator abandoned attempts with fewer than `min_clients` selected or
//! reporting and redrew the cohort, so released rounds came from cohorts
//! conditioned on size ≥ 10: inclusion 1.23·q at these settings, far outside
//! the 99 % interval of the pooled rate checked below.
//!
//! Two things keep 5,000 rounds to seconds without leaving the real driver:
//! the job publishes without noise (the dangerous test setting; noise plays
//! no part in selection or in the release decision, and the PLD accountant
//! per round would dominate), and the store is the real SQLite store in
//! memory behind a thin wrapper that drops each version's receipt JSON
//! (every receipt holds the whole round history, so 5,000 stored receipts
//! would be O(R²) ≈ 2 GB; the driver never reads them back).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use fedsec_model::ModelSpec;
use fedsec_proto::tls::ClientIdentity;

use super::JobRuntime;
use crate::aggregate::DecodePool;
use crate::config::{DangerousConfig, JobSpec, LimitsConfig, RateLimitsConfig};
use crate::engine::{AuditRetention, Engine, EngineParts, Settings};
use crate::listener::{ConnLimits, Connections};
use crate::metrics::Metrics;
use crate::ratelimit::RateLimits;
use crate::round::Claim;
use crate::selection::KeyedPoissonSampler;
use crate::shares::{ShareLimits, Shares};
use crate::store::sqlite::SqliteStore;
use crate::store::{
    AttemptClose, AttemptRecord, AttemptState, AuditRecord, ClientRecord, ClientStatus, JobRecord,
    JobState, LedgerRecord, ModelVersionRecord, NewAuditEvent, Resolution, RoundCommit, Store,
    StoreResult, VersionInfo,
};

/// The SQLite store in memory, minus the receipts of committed versions.
struct LeanStore(SqliteStore);

impl Store for LeanStore {
    fn secret(&self, name: &str, generate: &dyn Fn() -> Vec<u8>) -> StoreResult<Vec<u8>> {
        self.0.secret(name, generate)
    }
    fn insert_job(&self, job: &JobRecord, initial: &ModelVersionRecord) -> StoreResult<()> {
        self.0.insert_job(job, initial)
    }
    fn jobs(&self) -> StoreResult<Vec<JobRecord>> {
        self.0.jobs()
    }
    fn job(&self, job_id: &str) -> StoreResult<Option<JobRecord>> {
        self.0.job(job_id)
    }
    fn set_job_state(&self, job_id: &str, state: JobState, reason: &str) -> StoreResult<()> {
        self.0.set_job_state(job_id, state, reason)
    }
    fn set_job_resolution(&self, job_id: &str, resolution: &Resolution) -> StoreResult<()> {
        self.0.set_job_resolution(job_id, resolution)
    }
    fn upsert_client(
        &self,
        identity: &ClientIdentity,
        software: &str,
        now_unix_ms: i64,
    ) -> StoreResult<ClientRecord> {
        self.0.upsert_client(identity, software, now_unix_ms)
    }
    fn clients(&self) -> StoreResult<Vec<ClientRecord>> {
        self.0.clients()
    }
    fn set_client_status(
        &self,
        client_id: &str,
        status: ClientStatus,
        reason: &str,
    ) -> StoreResult<Option<ClientRecord>> {
        self.0.set_client_status(client_id, status, reason)
    }
    fn touch_clients(&self, seen: &[(String, i64)]) -> StoreResult<()> {
        self.0.touch_clients(seen)
    }
    fn next_attempt(&self, job_id: &str, round: u64) -> StoreResult<u32> {
        self.0.next_attempt(job_id, round)
    }
    fn open_attempt(&self, attempt: &AttemptRecord) -> StoreResult<()> {
        self.0.open_attempt(attempt)
    }
    fn abandon_attempt(
        &self,
        job_id: &str,
        round: u64,
        attempt: u32,
        close: &AttemptClose,
    ) -> StoreResult<()> {
        self.0.abandon_attempt(job_id, round, attempt, close)
    }
    fn abandon_open_attempts(
        &self,
        note: &str,
        now_unix_ms: i64,
    ) -> StoreResult<Vec<AttemptRecord>> {
        self.0.abandon_open_attempts(note, now_unix_ms)
    }
    fn attempts(&self, job_id: &str) -> StoreResult<Vec<AttemptRecord>> {
        self.0.attempts(job_id)
    }
    fn commit_round(&self, c: &RoundCommit) -> StoreResult<(u64, u64)> {
        let lean = RoundCommit {
            job_id: c.job_id.clone(),
            round: c.round,
            attempt: c.attempt,
            ledger: c.ledger.clone(),
            version: ModelVersionRecord {
                info: c.version.info.clone(),
                weights: c.version.weights.clone(),
                momentum: c.version.momentum.clone(),
                clip_norm: c.version.clip_norm,
                receipt_json: "{}".into(),
            },
            participants: c.participants.clone(),
            rejected: c.rejected,
            contributions: c.contributions.clone(),
        };
        self.0.commit_round(&lean)
    }
    fn rollback(&self, job_id: &str, version: u64, entry: &LedgerRecord) -> StoreResult<u64> {
        self.0.rollback(job_id, version, entry)
    }
    fn ledger(&self, job_id: &str) -> StoreResult<Vec<LedgerRecord>> {
        self.0.ledger(job_id)
    }
    fn versions(&self, job_id: &str) -> StoreResult<Vec<VersionInfo>> {
        self.0.versions(job_id)
    }
    fn version(&self, job_id: &str, version: u64) -> StoreResult<Option<ModelVersionRecord>> {
        self.0.version(job_id, version)
    }
    fn record_empirical_audit(
        &self,
        job_id: &str,
        version: u64,
        audit_json: &str,
        receipt_json: &str,
        now_unix_ms: i64,
    ) -> StoreResult<()> {
        self.0
            .record_empirical_audit(job_id, version, audit_json, receipt_json, now_unix_ms)
    }
    fn empirical_audit(&self, job_id: &str) -> StoreResult<Option<(String, u64)>> {
        self.0.empirical_audit(job_id)
    }
    fn append_audit(&self, event: &NewAuditEvent) -> StoreResult<u64> {
        self.0.append_audit(event)
    }
    fn prune_audit(&self, before_unix_ms: i64, max_rows: u64) -> StoreResult<u64> {
        self.0.prune_audit(before_unix_ms, max_rows)
    }
    fn audit_events(&self, job_id: Option<&str>, limit: usize) -> StoreResult<Vec<AuditRecord>> {
        self.0.audit_events(job_id, limit)
    }
    fn audit_head(&self) -> StoreResult<fedsec_proto::release::AuditAnchor> {
        self.0.audit_head()
    }
    fn release_anchor(
        &self,
        job_id: &str,
        version: u64,
    ) -> StoreResult<Option<fedsec_proto::release::AuditAnchor>> {
        self.0.release_anchor(job_id, version)
    }
    fn audit_events_concerning(
        &self,
        client_ids: &[String],
        tenant_id: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<AuditRecord>> {
        self.0.audit_events_concerning(client_ids, tenant_id, limit)
    }
    fn contributions(
        &self,
        filter: &crate::store::ContributionFilter,
    ) -> StoreResult<Vec<crate::store::ContributionRecord>> {
        self.0.contributions(filter)
    }
    fn prune_contributions(&self, before_unix_ms: i64, max_rows: u64) -> StoreResult<u64> {
        self.0.prune_contributions(before_unix_ms, max_rows)
    }
    fn contain_tenant(
        &self,
        tenant_id: &str,
        reason: &str,
        now_unix_ms: i64,
    ) -> StoreResult<(crate::store::TenantHold, Vec<ClientRecord>)> {
        self.0.contain_tenant(tenant_id, reason, now_unix_ms)
    }
    fn release_tenant(
        &self,
        tenant_id: &str,
        reason: &str,
    ) -> StoreResult<Option<(crate::store::TenantHold, Vec<ClientRecord>)>> {
        self.0.release_tenant(tenant_id, reason)
    }
    fn contained_tenants(&self) -> StoreResult<Vec<crate::store::TenantHold>> {
        self.0.contained_tenants()
    }
}

pub(super) fn engine(key: &[u8]) -> Arc<Engine> {
    let poll = Duration::from_millis(20);
    let l = LimitsConfig::default();
    let metrics = Arc::new(Metrics::new());
    let connections = Connections::new(ConnLimits::from(&l), metrics.clone());
    Arc::new(Engine::new(
        Arc::new(LeanStore(SqliteStore::in_memory().unwrap())),
        metrics,
        EngineParts {
            release_key: Arc::new(fedsec_proto::release::ReleaseKey::from_seed([7; 32])),
            sampler: Arc::new(KeyedPoissonSampler::new(key)),
            pool: DecodePool::new(4),
            settings: Settings {
                admins: HashSet::new(),
                poll_interval: poll,
                upload_message_timeout: Duration::from_secs(5),
                rate_limit_audit_window: Duration::from_secs(60),
                download_timeout: Duration::from_millis(l.download_timeout_ms),
                init_weights_dir: None,
                max_init_weights_bytes: l.max_init_weights_bytes,
                max_tenants: l.max_tenants,
                audit_retention: AuditRetention {
                    max_rows: l.audit_max_rows,
                    max_age: Duration::from_secs(l.audit_max_age_days.saturating_mul(86_400)),
                },
                contribution_retention: AuditRetention {
                    max_rows: l.contribution_max_rows,
                    max_age: Duration::from_secs(
                        l.contribution_max_age_days.saturating_mul(86_400),
                    ),
                },
                dangerous: DangerousConfig {
                    allow_simulation_noise: false,
                    allow_disabled_noise: true,
                },
            },
            limits: RateLimits::new(&RateLimitsConfig::default(), poll),
            shares: Shares::new(ShareLimits {
                streams: [
                    l.max_unary_calls_per_identity,
                    l.max_downloads_per_identity,
                    l.max_uploads_per_identity,
                    l.max_admin_calls_per_identity,
                    l.max_other_calls_per_identity,
                ],
                bytes_in_flight: l.max_bytes_in_flight_per_identity,
            }),
            connections,
        },
    ))
}

/// Tenant `t<i>` with its one client identity `c<i>`.
pub(super) fn identity(i: usize) -> ClientIdentity {
    ClientIdentity::new(&format!("t{i:04}"), &format!("c{i:04}")).unwrap()
}

/// Claims and accepts a zero update for every selected tenant of every
/// round the driver opens, as fast as the driver opens them.
fn report_every_selected(job: Arc<JobRuntime>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let zero = vec![0.0f32; job.dim];
        let mut last = (0, 0);
        loop {
            job.opened.notified().await;
            let Some(open) = job.open_round() else {
                continue;
            };
            if (open.round, open.attempt) == last {
                continue;
            }
            last = (open.round, open.attempt);
            for tenant in &open.selected {
                let client = format!("c{}", &tenant[1..]);
                if let Ok(Claim::Fresh(g)) = open.claim(tenant, &client, b"nonce") {
                    open.accept(g, &zero, true).unwrap();
                }
            }
        }
    })
}

/// Whether `q` is inside the two-sided 99 % Clopper–Pearson interval of
/// `k` successes in `n` trials.
fn in_99_interval(k: u64, n: u64, q: f64) -> (bool, f64, f64) {
    use fedsec_privacy::audit::clopper_pearson_upper;
    let hi = clopper_pearson_upper(k, n, 0.005).unwrap();
    let lo = 1.0 - clopper_pearson_upper(n - k, n, 0.005).unwrap();
    (lo <= q && q <= hi, lo, hi)
}

/// Whether `total` successes in `n` Bernoulli(q) trials is within the 99 %
/// normal interval of its mean (n·q in the thousands here).
fn pooled_in_99_interval(total: u64, n: u64, q: f64) -> (bool, f64) {
    let (mean, sd) = (n as f64 * q, (n as f64 * q * (1.0 - q)).sqrt());
    let z = (total as f64 - mean) / sd;
    (z.abs() <= 2.576, z)
}

#[test]
fn the_intervals_reject_a_size_conditioned_rate() {
    // 50 of 5000 at q = 0.01 is in; the 1.23·q of a cohort conditioned on
    // size ≥ 10 is out when pooled over 1000 tenants.
    assert!(in_99_interval(50, 5000, 0.01).0);
    assert!(!in_99_interval(120, 5000, 0.01).0);
    assert!(pooled_in_99_interval(50_000, 5_000_000, 0.01).0);
    assert!(!pooled_in_99_interval(61_500, 5_000_000, 0.01).0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn released_rounds_include_a_fixed_tenant_at_rate_q_over_5000_in_process_rounds() {
    const N: usize = 1000;
    const Q: f64 = 0.01;
    const ROUNDS: u64 = 5000;
    let engine = engine(b"fedsec in-process release test key");
    for i in 0..N {
        engine.register_client(&identity(i), "test").await.unwrap();
    }
    let mut spec = JobSpec::new("inproc", ModelSpec::logistic(1), Q, N as u64);
    spec.min_clients = 10;
    spec.rounds = ROUNDS;
    spec.disable_noise = true;
    spec.round_deadline_ms = 5_000;
    let job = super::create(&engine, spec).await.unwrap();
    let reporter = report_every_selected(job.clone());
    let started = std::time::Instant::now();
    while !job.state().is_finished() {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "{} rounds after {:?}",
            job.status().rounds_completed,
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    reporter.abort();
    assert_eq!(job.state(), JobState::Completed, "{}", job.status().reason);
    let store = engine.store.clone();
    let (ledger, attempts, clients) = tokio::task::spawn_blocking(move || {
        (
            store.ledger("inproc").unwrap(),
            store.attempts("inproc").unwrap(),
            store.clients().unwrap(),
        )
    })
    .await
    .unwrap();

    // Every attempt was released, each the first attempt of its round: no
    // attempt numbers that move with cohort sizes.
    assert_eq!(ledger.len() as u64, ROUNDS);
    assert_eq!(attempts.len() as u64, ROUNDS);
    assert!(
        attempts
            .iter()
            .all(|a| a.state == AttemptState::Committed && a.attempt == 1)
    );
    let small = attempts.iter().filter(|a| a.selected < 10).count();
    assert!(
        small > 1000,
        "cohorts below min_clients = 10 are released too ({small})"
    );

    // A fixed tenant's inclusion rate in released rounds is q (its 99 %
    // interval), and so is the pooled rate over all N tenants (N·R
    // independent Bernoulli(q) draws; the size-conditioned sample of an
    // older coordinator gives 1.23·q, hundreds of standard deviations off).
    let participated = |i: usize| {
        clients
            .iter()
            .find(|c| c.identity == identity(i))
            .unwrap()
            .rounds_participated
    };
    let fixed = participated(0);
    let (ok, lo, hi) = in_99_interval(fixed, ROUNDS, Q);
    assert!(
        ok,
        "tenant t0000 in {fixed} of {ROUNDS} released rounds: 99 % interval [{lo:.5}, {hi:.5}] \
         misses q = {Q}"
    );
    let pooled: u64 = clients.iter().map(|c| c.rounds_participated).sum();
    let selected: u64 = attempts.iter().map(|a| a.selected).sum();
    assert_eq!(pooled, selected, "every selected tenant reported");
    let (ok, z) = pooled_in_99_interval(pooled, ROUNDS * N as u64, Q);
    assert!(
        ok,
        "{pooled} inclusions in {ROUNDS} rounds × {N} tenants: rate {:.5} vs q = {Q} (z = {z:.1})",
        pooled as f64 / (ROUNDS as f64 * N as f64)
    );
    eprintln!(
        "{ROUNDS} released rounds in {:.1} s; fixed tenant {fixed}, pooled rate {:.5}",
        started.elapsed().as_secs_f64(),
        pooled as f64 / (ROUNDS as f64 * N as f64)
    );
}
