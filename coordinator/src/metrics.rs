//! Prometheus metrics and the small HTTP server exposing them at `/metrics`
//! ([`http`]: loopback by default, a bearer token and TLS for remote
//! scraping). The metrics carry exact round-level counts for the platform
//! team, inside the trust boundary; they are never to be public.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `fedsec_rounds_total` | counter | `job`, `outcome` (`committed`, `abandoned`) |
//! | `fedsec_round_duration_seconds` | histogram | `job` (open → commit) |
//! | `fedsec_round_participants` | gauge | `job` (accepted updates of the last committed round) |
//! | `fedsec_round_clipped_fraction` | gauge | `job` (last committed round) |
//! | `fedsec_epsilon_spent` | gauge | `job`, `accountant` (`pld`, `rdp`) |
//! | `fedsec_updates_accepted_total` | counter | `job` |
//! | `fedsec_rejections_total` | counter | `reason` |
//! | `fedsec_received_bytes_total` | counter | — (update payload bytes) |
//! | `fedsec_uploads_in_progress` | gauge | — (decode buffers in use) |
//! | `fedsec_registered_clients` | gauge | — |
//! | `fedsec_population` | gauge | `job` (declared tenants the job is sized for) |
//! | `fedsec_population_drift` | gauge | `job` ((registered tenants − population) / population, before each round) |
//! | `fedsec_population_drift_warnings_total` | counter | `job` (times the drift left the job's `population_drift` band) |
//! | `fedsec_job_store_fault` | gauge | `job` (1 while a transient store fault holds the job, else 0) |
//! | `fedsec_store_faults_total` | counter | `job` (failed store tries of the job's driver, each retried) |
//! | `fedsec_rate_limited_total` | counter | `rpc` (calls refused by a per-identity rate limit) |
//! | `fedsec_rate_limiter_identities` | gauge | — ((identity, call class) buckets tracked after the last sweep) |
//! | `fedsec_metrics_unauthorized_total` | counter | — (`/metrics` requests refused for a missing or wrong bearer token) |
//! | `fedsec_connections` | gauge | `state` (`handshaking`, `open`) |
//! | `fedsec_connections_refused_total` | counter | `reason` (a connection cap, `handshake_timeout`, `handshake_failed`) |
//! | `fedsec_connections_closed_total` | counter | `reason` (`refused_identity_flood`, `download_deadline`) |
//! | `fedsec_alerts_total`, `fedsec_alert_retries_total`, `fedsec_alert_queue` | | the alert sink's ([`alerts`]) |

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::error::RejectReason;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabel {
    job: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RoundLabel {
    job: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EpsLabel {
    job: String,
    accountant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RpcLabel {
    rpc: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

type FGauge = Gauge<f64, AtomicU64>;
type HistFamily = Family<JobLabel, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.05, 2.0, 16))
}

/// The coordinator's metrics.
pub struct Metrics {
    registry: Registry,
    rounds: Family<RoundLabel, Counter>,
    round_duration: HistFamily,
    participants: Family<JobLabel, Gauge>,
    clipped_fraction: Family<JobLabel, FGauge>,
    epsilon: Family<EpsLabel, FGauge>,
    accepted: Family<JobLabel, Counter>,
    rejections: Family<ReasonLabel, Counter>,
    received_bytes: Counter,
    uploads_in_progress: Gauge,
    registered_clients: Gauge,
    population: Family<JobLabel, Gauge>,
    population_drift: Family<JobLabel, FGauge>,
    population_drift_warnings: Family<JobLabel, Counter>,
    store_fault: Family<JobLabel, Gauge>,
    store_faults: Family<JobLabel, Counter>,
    metrics_unauthorized: Counter,
    rate_limited: Family<RpcLabel, Counter>,
    rate_limiter_identities: Gauge,
    connections: Family<StateLabel, Gauge>,
    connections_refused: Family<ReasonLabel, Counter>,
    connections_closed: Family<ReasonLabel, Counter>,
    alerts: alerts::AlertMetrics,
    screened: Family<RoundLabel, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("fedsec");
        let rounds = Family::<RoundLabel, Counter>::default();
        registry.register(
            "rounds",
            "Round attempts closed, by outcome",
            rounds.clone(),
        );
        let round_duration: HistFamily = Family::new_with_constructor(duration_histogram);
        registry.register(
            "round_duration_seconds",
            "Time from opening a round to committing it",
            round_duration.clone(),
        );
        let participants = Family::<JobLabel, Gauge>::default();
        registry.register(
            "round_participants",
            "Accepted updates in the last committed round",
            participants.clone(),
        );
        let clipped_fraction = Family::<JobLabel, FGauge>::default();
        registry.register(
            "round_clipped_fraction",
            "Fraction of accepted updates the coordinator clipped in the last committed round",
            clipped_fraction.clone(),
        );
        let epsilon = Family::<EpsLabel, FGauge>::default();
        registry.register(
            "epsilon_spent",
            "Privacy spent so far at the job's delta",
            epsilon.clone(),
        );
        let screened = Family::<RoundLabel, Counter>::default();
        registry.register(
            "updates_screened",
            "Updates the update screen flagged, by job and outcome (logged, excluded, quarantined)",
            screened.clone(),
        );
        let accepted = Family::<JobLabel, Counter>::default();
        registry.register("updates_accepted", "Updates accepted", accepted.clone());
        let rejections = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "rejections",
            "Refused uploads and calls, by reason",
            rejections.clone(),
        );
        let received_bytes = Counter::default();
        registry.register(
            "received_bytes",
            "Update payload bytes received",
            received_bytes.clone(),
        );
        let uploads_in_progress = Gauge::default();
        registry.register(
            "uploads_in_progress",
            "Uploads holding a decode buffer",
            uploads_in_progress.clone(),
        );
        let registered_clients = Gauge::default();
        registry.register(
            "registered_clients",
            "Registered client identities",
            registered_clients.clone(),
        );
        let population = Family::<JobLabel, Gauge>::default();
        registry.register(
            "population",
            "Declared number of tenants the job is sized for",
            population.clone(),
        );
        let population_drift = Family::<JobLabel, FGauge>::default();
        registry.register(
            "population_drift",
            "Relative drift of the registered tenants from the declared population",
            population_drift.clone(),
        );
        let population_drift_warnings = Family::<JobLabel, Counter>::default();
        registry.register(
            "population_drift_warnings",
            "Times the registered tenants drifted out of the job's population_drift band",
            population_drift_warnings.clone(),
        );
        let store_fault = Family::<JobLabel, Gauge>::default();
        registry.register(
            "job_store_fault",
            "1 while a transient store fault (disk full, busy, I/O) holds the job",
            store_fault.clone(),
        );
        let store_faults = Family::<JobLabel, Counter>::default();
        registry.register(
            "store_faults",
            "Failed store tries of the job's driver (each retried with backoff)",
            store_faults.clone(),
        );
        let metrics_unauthorized = Counter::default();
        registry.register(
            "metrics_unauthorized",
            "Requests to /metrics refused for a missing or wrong bearer token",
            metrics_unauthorized.clone(),
        );
        let rate_limited = Family::<RpcLabel, Counter>::default();
        registry.register(
            "rate_limited",
            "Calls refused by a per-identity rate limit, by RPC",
            rate_limited.clone(),
        );
        let rate_limiter_identities = Gauge::default();
        registry.register(
            "rate_limiter_identities",
            "(identity, call class) buckets the rate limiter tracks after its last sweep",
            rate_limiter_identities.clone(),
        );
        let connections = Family::<StateLabel, Gauge>::default();
        registry.register(
            "connections",
            "Connections handshaking and open",
            connections.clone(),
        );
        let connections_refused = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "connections_refused",
            "Connections closed at accept or during the handshake, by reason",
            connections_refused.clone(),
        );
        let connections_closed = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "connections_closed",
            "Open connections the coordinator closed, by reason",
            connections_closed.clone(),
        );
        let alerts = alerts::AlertMetrics::register(&mut registry);
        Self {
            registry,
            alerts,
            rate_limited,
            rate_limiter_identities,
            connections,
            connections_refused,
            connections_closed,
            screened,
            rounds,
            round_duration,
            participants,
            clipped_fraction,
            epsilon,
            accepted,
            rejections,
            received_bytes,
            uploads_in_progress,
            registered_clients,
            population,
            population_drift,
            population_drift_warnings,
            store_fault,
            store_faults,
            metrics_unauthorized,
        }
    }

    /// A `/metrics` request refused for its bearer token.
    pub fn metrics_unauthorized(&self) {
        self.metrics_unauthorized.inc();
    }

    /// A job's declared population and the registered tenants' drift from it.
    pub fn set_population(&self, job: &str, population: u64, drift: f64) {
        let j = JobLabel { job: job.into() };
        self.population
            .get_or_create(&j)
            .set(i64::try_from(population).unwrap_or(i64::MAX));
        self.population_drift.get_or_create(&j).set(drift);
    }

    /// The registered tenants drifted out of a job's band.
    pub fn population_drift_warning(&self, job: &str) {
        self.population_drift_warnings
            .get_or_create(&JobLabel { job: job.into() })
            .inc();
    }

    /// A failed store try of a job (`held`), or its recovery.
    pub fn store_fault(&self, job: &str, held: bool) {
        let j = JobLabel { job: job.into() };
        self.store_fault.get_or_create(&j).set(i64::from(held));
        if held {
            self.store_faults.get_or_create(&j).inc();
        }
    }

    /// Drift warnings of a job so far.
    pub fn population_drift_warnings(&self, job: &str) -> u64 {
        self.population_drift_warnings
            .get(&JobLabel { job: job.into() })
            .map_or(0, |c| c.get())
    }

    /// A committed round.
    pub fn round_committed(
        &self,
        job: &str,
        seconds: f64,
        participants: u64,
        clipped_fraction: f64,
        epsilon_pld: f64,
        epsilon_rdp: f64,
    ) {
        let j = JobLabel { job: job.into() };
        self.rounds
            .get_or_create(&RoundLabel {
                job: job.into(),
                outcome: "committed".into(),
            })
            .inc();
        self.round_duration.get_or_create(&j).observe(seconds);
        self.participants
            .get_or_create(&j)
            .set(i64::try_from(participants).unwrap_or(i64::MAX));
        self.clipped_fraction
            .get_or_create(&j)
            .set(clipped_fraction);
        self.set_epsilon(job, epsilon_pld, epsilon_rdp);
    }

    /// ε spent by a job (also set at start-up for resumed jobs).
    pub fn set_epsilon(&self, job: &str, epsilon_pld: f64, epsilon_rdp: f64) {
        for (acc, v) in [("pld", epsilon_pld), ("rdp", epsilon_rdp)] {
            self.epsilon
                .get_or_create(&EpsLabel {
                    job: job.into(),
                    accountant: acc.into(),
                })
                .set(v);
        }
    }

    /// An abandoned round attempt.
    pub fn round_abandoned(&self, job: &str) {
        self.rounds
            .get_or_create(&RoundLabel {
                job: job.into(),
                outcome: "abandoned".into(),
            })
            .inc();
    }

    /// An accepted update.
    pub fn update_accepted(&self, job: &str) {
        self.accepted
            .get_or_create(&JobLabel { job: job.into() })
            .inc();
    }

    /// An update the screen flagged, by what became of it (`logged`,
    /// `excluded`, `quarantined`).
    pub fn update_screened(&self, job: &str, outcome: &str) {
        self.screened
            .get_or_create(&RoundLabel {
                job: job.into(),
                outcome: outcome.into(),
            })
            .inc();
    }

    /// Updates the screen flagged with this outcome (tests).
    pub fn updates_screened(&self, job: &str, outcome: &str) -> u64 {
        self.screened
            .get_or_create(&RoundLabel {
                job: job.into(),
                outcome: outcome.into(),
            })
            .get()
    }

    /// A rejection.
    pub fn rejected(&self, reason: RejectReason) {
        self.rejections
            .get_or_create(&ReasonLabel {
                reason: reason.label().into(),
            })
            .inc();
    }

    /// Update bytes received.
    pub fn bytes_received(&self, n: u64) {
        self.received_bytes.inc_by(n);
    }

    /// Decode buffers in use.
    pub fn set_uploads_in_progress(&self, n: usize) {
        self.uploads_in_progress
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Registered clients.
    pub fn set_registered_clients(&self, n: usize) {
        self.registered_clients
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// A call refused by a rate limit.
    pub fn rate_limited(&self, rpc: &str) {
        self.rate_limited
            .get_or_create(&RpcLabel { rpc: rpc.into() })
            .inc();
    }

    /// Calls of `rpc` refused by a rate limit so far.
    pub fn rate_limited_count(&self, rpc: &str) -> u64 {
        self.rate_limited
            .get(&RpcLabel { rpc: rpc.into() })
            .map_or(0, |c| c.get())
    }

    /// Buckets tracked by the rate limiter.
    pub fn set_rate_limiter_identities(&self, n: usize) {
        self.rate_limiter_identities
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Connections handshaking and open now.
    pub fn set_connections(&self, handshaking: usize, open: usize) {
        for (state, n) in [("handshaking", handshaking), ("open", open)] {
            self.connections
                .get_or_create(&StateLabel {
                    state: state.into(),
                })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    /// A connection refused at accept or during its handshake.
    pub fn connection_refused(&self, reason: &str) {
        self.connections_refused
            .get_or_create(&ReasonLabel {
                reason: reason.into(),
            })
            .inc();
    }

    /// Connections refused for `reason` so far.
    pub fn connections_refused(&self, reason: &str) -> u64 {
        self.connections_refused
            .get(&ReasonLabel {
                reason: reason.into(),
            })
            .map_or(0, |c| c.get())
    }

    /// An open connection the coordinator closed.
    pub fn connection_closed(&self, reason: &str) {
        self.connections_closed
            .get_or_create(&ReasonLabel {
                reason: reason.into(),
            })
            .inc();
    }

    /// Connections closed for `reason` so far.
    pub fn connections_closed(&self, reason: &str) -> u64 {
        self.connections_closed
            .get(&ReasonLabel {
                reason: reason.into(),
            })
            .map_or(0, |c| c.get())
    }

    /// Rejections counted for `reason` so far.
    pub fn rejections(&self, reason: RejectReason) -> u64 {
        self.rejections
            .get(&ReasonLabel {
                reason: reason.label().into(),
            })
            .map_or(0, |c| c.get())
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

pub(crate) mod alerts;
pub(crate) mod http;

pub(crate) use http::{bind, serve};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_every_metric() {
        let m = Metrics::new();
        m.round_committed("j", 1.5, 7, 0.25, 1.2, 1.4);
        m.round_abandoned("j");
        m.update_accepted("j");
        m.rejected(RejectReason::NonFinite);
        m.rejected(RejectReason::NonFinite);
        m.bytes_received(4096);
        m.set_registered_clients(3);
        m.rate_limited("GetTask");
        m.set_rate_limiter_identities(5);
        m.set_population("j", 40, -0.25);
        m.population_drift_warning("j");
        m.store_fault("j", true);
        m.store_fault("j", true);
        m.store_fault("j", false);
        let text = m.encode();
        for needle in [
            "fedsec_rounds_total{job=\"j\",outcome=\"committed\"} 1",
            "fedsec_job_store_fault{job=\"j\"} 0",
            "fedsec_store_faults_total{job=\"j\"} 2",
            "fedsec_rounds_total{job=\"j\",outcome=\"abandoned\"} 1",
            "fedsec_round_duration_seconds_count{job=\"j\"} 1",
            "fedsec_round_participants{job=\"j\"} 7",
            "fedsec_round_clipped_fraction{job=\"j\"} 0.25",
            "fedsec_epsilon_spent{job=\"j\",accountant=\"pld\"} 1.2",
            "fedsec_updates_accepted_total{job=\"j\"} 1",
            "fedsec_rejections_total{reason=\"non_finite\"} 2",
            "fedsec_received_bytes_total 4096",
            "fedsec_registered_clients 3",
            "fedsec_rate_limited_total{rpc=\"GetTask\"} 1",
            "fedsec_rate_limiter_identities 5",
            "fedsec_population{job=\"j\"} 40",
            "fedsec_population_drift{job=\"j\"} -0.25",
            "fedsec_population_drift_warnings_total{job=\"j\"} 1",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
        assert_eq!(m.rejections(RejectReason::NonFinite), 2);
    }
}
