//! Alerts: a webhook sink for what an incident responder must hear about
//! at once (issue 22).
//!
//! | kind | raised when | severity |
//! |---|---|---|
//! | `update_anomaly` | the update screening flags an update ([`Alert::update_anomaly`]) | warning (`log`), critical (`exclude`, `quarantine`) |
//! | `client_quarantined` | an admin (or an automatic policy) quarantines a client | warning |
//! | `client_revoked` | a client identity is revoked | warning |
//! | `rejected_updates_burst` | `rejected_burst_count` uploads rejected within `rejected_burst_window_s` | warning |
//! | `budget_nearly_spent` | a round takes a job's ε past `budget_nearly_spent_fraction` of its budget (once per job) | warning |
//! | `budget_exhausted` | a job ends because its next round would exceed its budget | warning |
//! | `job_paused` | an admin pauses a job (info), or the accountant cannot bound ε (critical) | info / critical |
//! | `job_failed` | a job fails | critical |
//! | `store_fault` | a transient store fault starts holding a job | critical |
//! | `store_recovered` | the store recovered and the job resumed | info |
//! | `certificate_expiring` | the server certificate, its CA or a registering client's certificate expires within `cert_expiry_days` | warning (critical under 3 days) |
//!
//! Design:
//!
//! - **Never blocks.** Code raising an alert calls `AlertSink::send`, which
//!   `try_send`s into a bounded queue (`queue_capacity`); a full queue drops
//!   and counts. One background task POSTs (`sink`).
//! - **Retries** with exponential backoff and jitter up to `max_attempts`
//!   (`Retry-After` honoured), then gives up and counts `failed`.
//! - **De-duplication and a per-kind rate limit** (`rules::Gate`).
//! - **The URL is a secret** (`webhook`): read from a 0600 file, never
//!   logged, never in `Debug` output or errors.
//! - **Shutdown flushes** the queue within `flush_timeout_ms`.
//!
//! Every alert's fate is counted in `fedsec_alerts_total{kind, outcome}`
//! (`delivered`, `failed`, `dropped`, `suppressed`, `shutdown`), retries in
//! `fedsec_alert_retries_total`, the queue in `fedsec_alert_queue`.

mod certs;
mod config;
mod event;
mod hooks;
pub mod payload;
mod rules;
mod sink;
mod webhook;

use std::sync::Arc;
use std::time::Duration;

use fedsec_proto::tls::ServerTls;

pub use config::AlertsConfig;
pub use event::{Alert, AlertKind, MAX_DETAIL_CHARS, MAX_DETAILS, MAX_MESSAGE_CHARS, Severity};
pub use payload::AlertFormat;

pub(crate) use certs::check_client;
pub(crate) use hooks::{client_status, job_finished, job_paused, store_fault, store_recovered};
pub(crate) use sink::{AlertSink, Delivery};

use crate::config::ConfigError;
use crate::metrics::Metrics;

/// Starts the sink of `[alerts]` (an inert one without it): reads the
/// webhook URL, starts the delivery task, checks the server's certificates
/// and starts their periodic check. Errors name the key.
pub(crate) fn start(
    config: Option<&AlertsConfig>,
    tls: &ServerTls,
    metrics: Arc<Metrics>,
) -> Result<(AlertSink, Option<Delivery>), ConfigError> {
    let Some(c) = config else {
        return Ok((AlertSink::off(), None));
    };
    c.validate()?;
    let url = webhook::WebhookUrl::load(&c.url_file, c.allow_plain_http)
        .map_err(|e| ConfigError::invalid("alerts.url_file", e))?;
    let ca = match &c.ca_file {
        Some(p) => Some(std::fs::read(p).map_err(|e| {
            ConfigError::invalid(
                "alerts.ca_file",
                format!("cannot read {}: {e}", p.display()),
            )
        })?),
        None => None,
    };
    let https = url.is_https();
    let poster = webhook::Poster::new(url, ca.as_deref(), Duration::from_millis(c.timeout_ms))
        .map_err(|e| ConfigError::invalid("alerts.ca_file", e))?;
    let (sink, mut delivery) = sink::start(c, poster, metrics);
    let watched = certs::watched(tls);
    certs::check(
        &sink,
        &watched,
        crate::engine::now_unix_ms() / 1000,
        c.cert_expiry_days,
    );
    delivery.set_watch(certs::spawn(
        sink.clone(),
        watched,
        Duration::from_secs(c.cert_check_interval_s),
        c.cert_expiry_days,
    ));
    tracing::info!(
        format = ?c.format,
        https,
        queue_capacity = c.queue_capacity,
        "alerts on: webhook sink started (its URL, from alerts.url_file, is never logged)"
    );
    Ok((sink, Some(delivery)))
}
