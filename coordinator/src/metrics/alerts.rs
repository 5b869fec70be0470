//! The alert sink's metrics (`crate::alerts`):
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `fedsec_alerts_total` | counter | `kind`, `outcome` (`delivered`, `failed`, `dropped` (queue full), `suppressed` (de-duplicated or rate-limited), `shutdown` (left at the flush deadline)) |
//! | `fedsec_alert_retries_total` | counter | — (delivery attempts retried) |
//! | `fedsec_alert_queue` | gauge | — (alerts waiting for delivery) |

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::Metrics;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AlertLabel {
    kind: String,
    outcome: String,
}

/// The alert metrics, registered with the coordinator's registry.
#[derive(Debug, Default)]
pub(crate) struct AlertMetrics {
    alerts: Family<AlertLabel, Counter>,
    retries: Counter,
    queue: Gauge,
}

impl AlertMetrics {
    /// Registers the metrics in `registry`.
    pub(crate) fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "alerts",
            "Alerts by kind and outcome (delivered, failed, dropped, suppressed, shutdown)",
            m.alerts.clone(),
        );
        registry.register(
            "alert_retries",
            "Alert delivery attempts retried",
            m.retries.clone(),
        );
        registry.register(
            "alert_queue",
            "Alerts waiting for delivery",
            m.queue.clone(),
        );
        m
    }
}

impl Metrics {
    /// Counts an alert of `kind` ending as `outcome`.
    pub fn alert(&self, kind: &str, outcome: &str) {
        self.alerts
            .alerts
            .get_or_create(&AlertLabel {
                kind: kind.into(),
                outcome: outcome.into(),
            })
            .inc();
    }

    /// Alerts of `kind` counted as `outcome` so far.
    pub fn alerts(&self, kind: &str, outcome: &str) -> u64 {
        self.alerts
            .alerts
            .get(&AlertLabel {
                kind: kind.into(),
                outcome: outcome.into(),
            })
            .map_or(0, |c| c.get())
    }

    /// A delivery attempt that will be retried.
    pub fn alert_retry(&self) {
        self.alerts.retries.inc();
    }

    /// Delivery attempts retried so far.
    pub fn alert_retries(&self) -> u64 {
        self.alerts.retries.get()
    }

    /// Alerts waiting in the queue.
    pub fn set_alert_queue(&self, n: usize) {
        self.alerts.queue.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Alerts waiting in the queue now.
    pub fn alert_queue(&self) -> i64 {
        self.alerts.queue.get()
    }
}
