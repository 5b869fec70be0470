//! The sink: a bounded queue filled with `try_send` from any code path and
//! one background task that POSTs each alert, retrying with exponential
//! backoff and jitter, and flushes with a deadline at shutdown.
//!
//! [`AlertSink::send`] never awaits and never blocks on the network: it
//! takes a short in-memory lock (de-duplication), then `try_send`s. A full
//! queue drops the alert, counts it (`fedsec_alerts_total{outcome="dropped"}`)
//! and logs one warning per minute at most. A round, an upload or an admin
//! call therefore never waits for a webhook, however slow or dead.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::config::AlertsConfig;
use super::event::{Alert, AlertKind, Severity};
use super::payload::{AlertFormat, render};
use super::rules::{Burst, Gate, budget_crossed};
use super::webhook::{Answer, Poster};
use crate::metrics::Metrics;

/// At most one "queue full" warning per this long.
const DROP_LOG_EVERY: Duration = Duration::from_secs(60);

/// Where alerts go: a handle on the queue, cheap to clone; a no-op when
/// `[alerts]` is absent.
#[derive(Debug, Clone, Default)]
pub(crate) struct AlertSink {
    inner: Option<Arc<Inner>>,
}

#[derive(Debug)]
struct Inner {
    tx: mpsc::Sender<Alert>,
    metrics: Arc<Metrics>,
    gate: Mutex<Gate>,
    burst: Mutex<Burst>,
    drops: Mutex<DropLog>,
    budget_fraction: f64,
    cert_expiry_days: u64,
}

/// Rate-limits the "queue full" warning.
#[derive(Debug, Default)]
struct DropLog {
    last: Option<Instant>,
    since_last: u64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl AlertSink {
    /// A sink that sends nothing (`[alerts]` absent).
    pub(crate) fn off() -> Self {
        Self::default()
    }

    /// The `cert_expiry_days` threshold, when alerts are on.
    pub(crate) fn cert_expiry_days(&self) -> Option<u64> {
        self.inner.as_ref().map(|i| i.cert_expiry_days)
    }

    /// Queues `alert` for delivery unless de-duplicated or rate-limited;
    /// drops and counts it if the queue is full. Never waits.
    pub(crate) fn send(&self, alert: Alert) {
        let Some(inner) = &self.inner else {
            return;
        };
        let kind = alert.kind.as_str();
        if let Err(held) = lock(&inner.gate).admit(&alert, Instant::now()) {
            inner.metrics.alert(kind, "suppressed");
            tracing::debug!(kind, ?held, "alert suppressed");
            return;
        }
        match inner.tx.try_send(alert) {
            Ok(()) => {
                inner
                    .metrics
                    .set_alert_queue(inner.tx.max_capacity() - inner.tx.capacity());
            }
            Err(mpsc::error::TrySendError::Full(_) | mpsc::error::TrySendError::Closed(_)) => {
                inner.metrics.alert(kind, "dropped");
                let mut log = lock(&inner.drops);
                log.since_last += 1;
                if log.last.is_none_or(|t| t.elapsed() >= DROP_LOG_EVERY) {
                    tracing::warn!(
                        kind,
                        capacity = inner.tx.max_capacity(),
                        dropped = log.since_last,
                        "alert queue full (the webhook is slow or down): alerts are being dropped \
                         ({} since the last notice; see fedsec_alerts_total{{outcome=\"dropped\"}})",
                        log.since_last
                    );
                    log.last = Some(Instant::now());
                    log.since_last = 0;
                }
            }
        }
    }

    /// Counts a rejected upload; a burst (`rejected_burst_count` within
    /// `rejected_burst_window_s`) raises an alert.
    pub(crate) fn rejected_update(&self, job: &str, client: &str, reason: &'static str) {
        let Some(inner) = &self.inner else {
            return;
        };
        let Some(b) = lock(&inner.burst).record(Instant::now(), reason, client, job) else {
            return;
        };
        let reasons: serde_json::Map<String, serde_json::Value> = b
            .reasons
            .iter()
            .map(|(r, n)| ((*r).to_owned(), (*n).into()))
            .collect();
        let top: serde_json::Map<String, serde_json::Value> = b
            .clients
            .iter()
            .map(|(c, n)| (c.clone(), (*n).into()))
            .collect();
        let mut alert = Alert::new(
            AlertKind::RejectedUpdatesBurst,
            Severity::Warning,
            format!(
                "{} uploads rejected within {:.1} s from {} client(s); most common reason: {}",
                b.count,
                b.span_s,
                b.distinct_clients,
                b.reasons
                    .iter()
                    .max_by_key(|(_, n)| **n)
                    .map_or("?", |(r, _)| *r)
            ),
        )
        .detail("count", b.count)
        .detail("span_s", super::event::finite(b.span_s))
        .detail("distinct_clients", b.distinct_clients)
        .detail("reasons", reasons)
        .detail("top_clients", top)
        .detail("jobs", b.jobs.clone());
        if let [only] = b.jobs.as_slice() {
            alert = alert.job(only);
        }
        self.send(alert);
    }

    /// After a round took `job`'s ε (at `delta`) from `before` to `after`:
    /// raises `budget_nearly_spent` if that crossed the configured
    /// fraction of `budget`.
    pub(crate) fn budget_after_round(
        &self,
        job: &str,
        round: u64,
        budget: Option<f64>,
        (before, after): (f64, f64),
        delta: f64,
    ) {
        let (Some(inner), Some(budget)) = (&self.inner, budget) else {
            return;
        };
        let fraction = inner.budget_fraction;
        if !budget_crossed(before, after, budget, fraction) {
            return;
        }
        self.send(
            Alert::new(
                AlertKind::BudgetNearlySpent,
                Severity::Warning,
                format!(
                    "job {job} has spent ε = {after:.4} of its budget {budget} (δ = {delta}) after \
                     round {round}: past {:.0} %; it ends when the next round would exceed the budget",
                    fraction * 100.0
                ),
            )
            .job(job)
            .detail("round", round)
            .detail("epsilon", super::event::finite(after))
            .detail("budget", super::event::finite(budget))
            .detail("fraction", super::event::finite(after / budget))
            .detail("threshold", super::event::finite(fraction))
            .detail("delta", super::event::finite(delta)),
        );
    }
}

/// Retry policy of the delivery task.
#[derive(Debug, Clone, Copy)]
struct Policy {
    max_attempts: u32,
    initial: Duration,
    max: Duration,
}

/// The delay before attempt `attempt + 1` (after `attempt` failures,
/// `attempt >= 1`) for a uniform draw `u` in `[0, 1)`: the base delay
/// `initial · 2^(attempt-1)`, at most `max`, jittered over its upper half.
fn backoff(policy: &Policy, attempt: u32, u: f64) -> Duration {
    let base = policy
        .initial
        .saturating_mul(1u32 << (attempt.saturating_sub(1)).min(20))
        .min(policy.max);
    base.mul_f64(0.5 + 0.5 * u.clamp(0.0, 1.0))
}

/// The running delivery: its task, the certificate watch, and the signal
/// that starts the flush.
#[derive(Debug)]
pub(crate) struct Delivery {
    stop: watch::Sender<Option<tokio::time::Instant>>,
    task: JoinHandle<()>,
    watch: Option<JoinHandle<()>>,
    flush: Duration,
}

impl Delivery {
    /// Graceful stop: delivers what is queued within `flush_timeout_ms`
    /// (the rest is counted as `outcome="shutdown"`).
    pub(crate) async fn shutdown(mut self) {
        if let Some(w) = self.watch.take() {
            w.abort();
        }
        let deadline = tokio::time::Instant::now() + self.flush;
        self.stop.send_replace(Some(deadline));
        // The task stops by itself at the deadline; the grace is for a task
        // stuck outside a deadline-bounded wait.
        let abort = self.task.abort_handle();
        if tokio::time::timeout(self.flush + Duration::from_secs(1), &mut self.task)
            .await
            .is_err()
        {
            abort.abort();
        }
    }

    /// Immediate stop (a simulated crash): queued alerts are lost.
    pub(crate) fn abort(&self) {
        self.task.abort();
        if let Some(w) = &self.watch {
            w.abort();
        }
    }

    /// Keeps the certificate watch's task, to stop it with the delivery.
    pub(crate) fn set_watch(&mut self, watch: JoinHandle<()>) {
        self.watch = Some(watch);
    }
}

/// Builds the sink of `config` and starts its delivery task.
pub(crate) fn start(
    config: &AlertsConfig,
    poster: Poster,
    metrics: Arc<Metrics>,
) -> (AlertSink, Delivery) {
    let (tx, rx) = mpsc::channel(config.queue_capacity);
    let inner = Arc::new(Inner {
        tx,
        metrics: metrics.clone(),
        gate: Mutex::new(Gate::new(
            Duration::from_secs(config.dedup_window_s),
            config.max_per_kind_per_window,
        )),
        burst: Mutex::new(Burst::new(
            Duration::from_secs(config.rejected_burst_window_s),
            config.rejected_burst_count,
        )),
        drops: Mutex::new(DropLog::default()),
        budget_fraction: config.budget_nearly_spent_fraction,
        cert_expiry_days: config.cert_expiry_days,
    });
    let policy = Policy {
        max_attempts: config.max_attempts,
        initial: Duration::from_millis(config.backoff_initial_ms),
        max: Duration::from_millis(config.backoff_max_ms),
    };
    let (stop, stop_rx) = watch::channel(None);
    let task = tokio::spawn(run(rx, poster, config.format, policy, metrics, stop_rx));
    (
        AlertSink { inner: Some(inner) },
        Delivery {
            stop,
            task,
            watch: None,
            flush: Duration::from_millis(config.flush_timeout_ms),
        },
    )
}

type Stop = watch::Receiver<Option<tokio::time::Instant>>;

/// Runs `f` to completion, or until the flush deadline (then `None`).
async fn until_deadline<F: std::future::Future>(stop: &mut Stop, f: F) -> Option<F::Output> {
    tokio::pin!(f);
    loop {
        let deadline = *stop.borrow_and_update();
        if let Some(d) = deadline {
            return tokio::time::timeout_at(d, &mut f).await.ok();
        }
        tokio::select! {
            out = &mut f => return Some(out),
            changed = stop.changed() => {
                if changed.is_err() {
                    // The delivery handle is gone: no deadline will come.
                    return Some(f.await);
                }
            }
        }
    }
}

/// The delivery task.
async fn run(
    mut rx: mpsc::Receiver<Alert>,
    poster: Poster,
    format: AlertFormat,
    policy: Policy,
    metrics: Arc<Metrics>,
    mut stop: Stop,
) {
    loop {
        let flushing = stop.borrow_and_update().is_some();
        let alert = if flushing {
            // Flushing: what is queued, then stop.
            match rx.try_recv() {
                Ok(a) => a,
                Err(_) => break,
            }
        } else {
            tokio::select! {
                a = rx.recv() => match a {
                    Some(a) => a,
                    None => break,
                },
                changed = stop.changed() => {
                    if changed.is_err() {
                        // The delivery handle is gone without a shutdown.
                        return;
                    }
                    continue;
                }
            }
        };
        metrics.set_alert_queue(rx.len());
        if !deliver(&alert, &poster, format, policy, &metrics, &mut stop).await {
            metrics.alert(alert.kind.as_str(), "shutdown");
            let mut left = 1u64;
            while let Ok(a) = rx.try_recv() {
                metrics.alert(a.kind.as_str(), "shutdown");
                left += 1;
            }
            metrics.set_alert_queue(0);
            tracing::warn!(
                undelivered = left,
                "shutdown: {left} alert(s) not delivered within alerts.flush_timeout_ms"
            );
            return;
        }
    }
    metrics.set_alert_queue(0);
}

/// Delivers one alert with retries; `false` if the flush deadline passed
/// first.
async fn deliver(
    alert: &Alert,
    poster: &Poster,
    format: AlertFormat,
    policy: Policy,
    metrics: &Metrics,
    stop: &mut Stop,
) -> bool {
    let kind = alert.kind.as_str();
    let body = Bytes::from(render(format, alert));
    for attempt in 1..=policy.max_attempts {
        let Some(answer) = until_deadline(stop, poster.post(body.clone())).await else {
            return false;
        };
        let (why, after) = match answer {
            Answer::Delivered => {
                metrics.alert(kind, "delivered");
                tracing::debug!(kind, attempt, "alert delivered");
                return true;
            }
            Answer::Refused { why } => {
                metrics.alert(kind, "failed");
                tracing::warn!(kind, attempt, "alert not delivered: {why}; not retried");
                return true;
            }
            Answer::Retry { why, after } => (why, after),
        };
        if attempt == policy.max_attempts {
            metrics.alert(kind, "failed");
            tracing::warn!(
                kind,
                attempts = attempt,
                "alert not delivered after {attempt} attempt(s): {why}"
            );
            return true;
        }
        let delay = after.map_or_else(
            || backoff(&policy, attempt, rand::random::<f64>()),
            |a| a.min(policy.max),
        );
        metrics.alert_retry();
        tracing::info!(
            kind,
            attempt,
            retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            "alert delivery failed, retrying: {why}"
        );
        if until_deadline(stop, tokio::time::sleep(delay))
            .await
            .is_none()
        {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::webhook::WebhookUrl;

    fn policy() -> Policy {
        Policy {
            max_attempts: 5,
            initial: Duration::from_millis(100),
            max: Duration::from_millis(1000),
        }
    }

    #[test]
    fn backoff_doubles_with_jitter_over_the_upper_half_and_caps() {
        let p = policy();
        let ms = |a, u| backoff(&p, a, u).as_millis();
        assert_eq!([ms(1, 0.0), ms(1, 1.0)], [50, 100]);
        assert_eq!([ms(2, 0.0), ms(2, 1.0)], [100, 200]);
        assert_eq!([ms(3, 0.5), ms(4, 1.0)], [300, 800]);
        assert_eq!([ms(5, 1.0), ms(30, 1.0), ms(30, 0.0)], [1000, 1000, 500]);
    }

    fn sink(capacity: usize, dedup_s: u64) -> (AlertSink, Delivery, Arc<Metrics>) {
        let mut c = AlertsConfig::with_url_file("unused");
        c.queue_capacity = capacity;
        c.dedup_window_s = dedup_s;
        c.max_per_kind_per_window = 10_000;
        // A port nothing listens on: every attempt fails at once.
        let url = WebhookUrl::parse("http://127.0.0.1:9/h", false).unwrap();
        let poster = Poster::new(url, None, Duration::from_millis(100)).unwrap();
        let metrics = Arc::new(Metrics::new());
        let (s, d) = start(&c, poster, metrics.clone());
        (s, d, metrics)
    }

    /// The queue is bounded and `send` never waits: with the delivery task
    /// busy retrying (backoff 1 s), 1,000 sends return at once, at most
    /// `capacity` (+1 in flight) are kept and the rest are counted.
    #[tokio::test]
    async fn a_full_queue_drops_and_counts_without_waiting() {
        let (s, d, m) = sink(4, 0);
        let t = Instant::now();
        for i in 0..1000 {
            s.send(Alert::new(
                AlertKind::UpdateAnomaly,
                Severity::Warning,
                format!("{i}"),
            ));
        }
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "{:?}",
            t.elapsed()
        );
        let dropped = m.alerts("update_anomaly", "dropped");
        assert!((995..=996).contains(&dropped), "{dropped}");
        d.abort();
    }

    #[tokio::test]
    async fn duplicates_are_suppressed_and_counted() {
        let (s, d, m) = sink(16, 600);
        let a = Alert::new(AlertKind::JobPaused, Severity::Info, "x").job("j");
        for _ in 0..3 {
            s.send(a.clone());
        }
        assert_eq!(m.alerts("job_paused", "suppressed"), 2);
        d.abort();
    }

    #[tokio::test]
    async fn the_flush_deadline_bounds_shutdown_and_counts_what_is_left() {
        let (s, d, m) = sink(16, 0);
        for i in 0..5 {
            s.send(Alert::new(
                AlertKind::StoreFault,
                Severity::Critical,
                format!("{i}"),
            ));
        }
        let t = Instant::now();
        let mut d = d;
        d.flush = Duration::from_millis(300);
        d.shutdown().await;
        assert!(
            t.elapsed() < Duration::from_millis(1200),
            "{:?}",
            t.elapsed()
        );
        assert_eq!(
            m.alerts("store_fault", "shutdown") + m.alerts("store_fault", "failed"),
            5
        );
        assert!(m.alerts("store_fault", "shutdown") >= 4);
    }

    #[tokio::test]
    async fn an_off_sink_does_nothing() {
        let s = AlertSink::off();
        assert!(s.cert_expiry_days().is_none());
        s.send(Alert::new(AlertKind::JobFailed, Severity::Critical, "x"));
        s.rejected_update("j", "c", "non_finite");
        s.budget_after_round("j", 1, Some(1.0), (0.0, 1.0), 1e-5);
    }
}
