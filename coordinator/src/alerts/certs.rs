//! Certificates expiring soon: the server's own chain and the CA it
//! verifies clients against (checked at start and every
//! `cert_check_interval_s`), and each client's certificate when it
//! registers (one parse per `Register`, nothing per call).

use std::time::Duration;

use fedsec_proto::tls::{ClientIdentity, ServerTls};
use tokio::task::JoinHandle;

use super::event::{Alert, AlertKind, Severity};
use super::rules::{Expiry, days_left, expiry};
use super::sink::AlertSink;
use crate::engine::now_unix_ms;

/// At most this many days left makes an expiry alert critical.
const CRITICAL_DAYS: i64 = 3;

/// A certificate the coordinator depends on.
#[derive(Debug, Clone)]
pub(crate) struct Watched {
    /// What it is to the coordinator ("server certificate", "client CA").
    pub(crate) role: &'static str,
    /// Its subject and end of validity.
    pub(crate) expiry: Expiry,
}

/// The server's chain and client CAs, parsed once (a certificate that
/// cannot be parsed is logged and skipped: rustls accepted it, so the
/// server still serves).
pub(crate) fn watched(tls: &ServerTls) -> Vec<Watched> {
    let chain = tls.certificates().iter().enumerate().map(|(i, c)| {
        let role = if i == 0 {
            "server certificate"
        } else {
            "server chain certificate"
        };
        (role, c)
    });
    let cas = tls.ca_certificates().iter().map(|c| ("client CA", c));
    chain
        .chain(cas)
        .filter_map(|(role, der)| match expiry(der.as_ref()) {
            Ok(expiry) => Some(Watched { role, expiry }),
            Err(e) => {
                tracing::warn!(role, error = %e, "cannot read a certificate's expiry; it is not watched");
                None
            }
        })
        .collect()
}

fn when(not_after: i64) -> String {
    crate::store::sqlite::audit::rfc3339(not_after.saturating_mul(1000))
}

fn expiring(role: &str, e: &Expiry, left: i64) -> Alert {
    let severity = if left < CRITICAL_DAYS {
        Severity::Critical
    } else {
        Severity::Warning
    };
    let state = if left < 0 || e.not_after <= now_unix_ms() / 1000 {
        format!("expired on {}", when(e.not_after))
    } else {
        format!("expires on {} ({left} day(s) left)", when(e.not_after))
    };
    Alert::new(
        AlertKind::CertificateExpiring,
        severity,
        format!("the {role} ({}) {state}", e.subject),
    )
    .subject(&format!("{role}: {}", e.subject))
    .detail("role", role)
    .detail("certificate_subject", e.subject.as_str())
    .detail("not_after", when(e.not_after))
    .detail("days_left", left)
}

/// Raises an alert (and logs a warning) for each watched certificate
/// expiring within `within_days` of `now_s` (Unix seconds).
pub(crate) fn check(sink: &AlertSink, certs: &[Watched], now_s: i64, within_days: u64) {
    for w in certs {
        if let Some(left) = days_left(w.expiry.not_after, now_s, within_days) {
            let alert = expiring(w.role, &w.expiry, left);
            tracing::warn!(role = w.role, days_left = left, "{}", alert.message);
            sink.send(alert);
        }
    }
}

/// Re-checks `certs` every `interval` until aborted.
pub(crate) fn spawn(
    sink: AlertSink,
    certs: Vec<Watched>,
    interval: Duration,
    within_days: u64,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await; // the start-up check already ran
        loop {
            tick.tick().await;
            check(&sink, &certs, now_unix_ms() / 1000, within_days);
        }
    })
}

/// At `Register`: alerts if `client`'s certificate (`der`) expires within
/// the threshold. No-op without `[alerts]`.
pub(crate) fn check_client(sink: &AlertSink, client: &ClientIdentity, der: &[u8]) {
    let Some(within) = sink.cert_expiry_days() else {
        return;
    };
    // Parsed once per registration; rustls verified it already.
    let Ok(e) = expiry(der) else {
        return;
    };
    if let Some(left) = days_left(e.not_after, now_unix_ms() / 1000, within) {
        sink.send(
            expiring("client certificate", &e, left).client(&client.client_id, &client.tenant_id),
        );
    }
}
