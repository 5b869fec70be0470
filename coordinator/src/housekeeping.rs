//! Periodic housekeeping of a running coordinator: flushing clients'
//! last-seen times, forgetting idle rate-limit buckets (bounded memory) and
//! applying the retention of the audit log and of the record of who took
//! part in each round; plus the start-up check of the
//! open-files limit against `limits.max_connections`.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::engine::Engine;

/// Every 5 s: last-seen times and the rate limiter's sweep; every minute:
/// the audit and contribution retention. Ends at shutdown.
pub(crate) fn spawn(engine: Arc<Engine>) -> JoinHandle<()> {
    let mut rx = engine.shutdown_signal();
    tokio::spawn(async move {
        for tick in 1u64.. {
            let stop = tokio::select! {
                () = tokio::time::sleep(Duration::from_secs(5)) => false,
                r = rx.wait_for(|s| *s) => { drop(r); true }
            };
            if stop {
                return;
            }
            engine.flush_last_seen().await;
            if tick.is_multiple_of(12) {
                prune_audit(&engine).await;
                prune_contributions(&engine).await;
            }
            // Forget identities whose buckets are full again (bounded memory).
            let tracked = engine.limits.sweep();
            engine.metrics.set_rate_limiter_identities(tracked);
        }
    })
}

/// Applies the audit log's retention (`limits.audit_max_rows`,
/// `limits.audit_max_age_days`); failures are logged.
pub(crate) async fn prune_audit(engine: &Arc<Engine>) {
    let r = engine.settings.audit_retention;
    let before =
        crate::engine::now_unix_ms() - i64::try_from(r.max_age.as_millis()).unwrap_or(i64::MAX);
    match engine.db(move |s| s.prune_audit(before, r.max_rows)).await {
        Ok(0) => {}
        Ok(n) => tracing::info!(deleted = n, "audit log retention: old events deleted"),
        Err(e) => tracing::warn!(error = %e, "cannot apply the audit log's retention"),
    }
}

/// Applies the contribution record's retention
/// (`limits.contribution_max_rows`, `limits.contribution_max_age_days`);
/// failures are logged.
pub(crate) async fn prune_contributions(engine: &Arc<Engine>) {
    let r = engine.settings.contribution_retention;
    let before =
        crate::engine::now_unix_ms() - i64::try_from(r.max_age.as_millis()).unwrap_or(i64::MAX);
    match engine
        .db(move |s| s.prune_contributions(before, r.max_rows))
        .await
    {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            deleted = n,
            "contribution record retention: old rows deleted"
        ),
        Err(e) => tracing::warn!(error = %e, "cannot apply the contribution record's retention"),
    }
}

/// Warns when the process may open fewer files than `max_connections`
/// needs (each connection is one descriptor); reads `/proc/self/limits`.
pub(crate) fn warn_if_few_descriptors(max_connections: usize) {
    let Ok(text) = std::fs::read_to_string("/proc/self/limits") else {
        return;
    };
    let soft = text
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<usize>().ok());
    if let Some(soft) = soft
        && soft < max_connections + 256
    {
        tracing::warn!(
            open_files_limit = soft,
            max_connections,
            "the open-files limit (ulimit -n) is below limits.max_connections + 256: under load, accept() fails before the connection cap applies"
        );
    }
}
