//! Store faults are weather: a transient store error (disk full, database
//! busy or locked, I/O error; [`crate::store::StoreError::is_transient`])
//! pauses the job it hits, is retried with exponential backoff, and the job
//! resumes by itself when the store recovers. It never fails the job.
//!
//! Two places retry:
//!
//! - **in place** ([`persist`]) for writes whose inputs cannot be
//!   recomputed: the round commit (the accepted updates and the noised
//!   release exist only in memory) and the abandonment of an attempt. The
//!   same commit is retried until it lands, so nothing accepted is lost; a
//!   retry first looks in the ledger for the commit (a fault reported after
//!   the write), so nothing is charged twice. Nothing is published before
//!   the commit lands. A shutdown ends the retry: the attempt stays open in
//!   the store and the next start abandons it (as after a crash);
//! - **around a whole step** ([`wait_out`], by the driver) for everything
//!   before a round opens (resolution, attempt numbering, opening, final
//!   state): the step is re-run from scratch after the backoff, and
//!   [`recover`] first abandons any attempt the store holds open that is
//!   not the job's open round.
//!
//! Memory only changes after the store accepted the write, so memory and
//! the database never disagree. While a fault holds the job, the Admin API
//! shows `JOB_STATE_STALLED` with a `store_fault` (since, retries, error,
//! next try), `fedsec_job_store_fault{job}` is 1, each failed try counts in
//! `fedsec_store_faults_total{job}`, the first failure logs a warning and
//! the recovery logs and audits `job_store_recovered`. The durable state
//! stays `RUNNING`: a restart during the fault simply retries.

use std::sync::Arc;
use std::time::Duration;

use fedsec_proto::v1;

use super::{JobRuntime, lock};
use crate::engine::{Engine, now_unix_ms};
use crate::error::Error;
use crate::store::{AttemptClose, AttemptState, LedgerKind, Store, StoreResult};

/// Delay before the first retry.
pub(crate) const FIRST_RETRY: Duration = Duration::from_millis(100);
/// Longest delay between retries (the backoff doubles up to this).
pub(crate) const MAX_RETRY: Duration = Duration::from_secs(5);

/// The backoff before retry number `retries + 1`: [`FIRST_RETRY`] doubled
/// per failed try, at most [`MAX_RETRY`].
pub(crate) fn backoff(retries: u32) -> Duration {
    FIRST_RETRY
        .saturating_mul(1u32 << retries.min(16))
        .min(MAX_RETRY)
}

/// A transient store fault holding a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoreFault {
    /// The store's error of the last failed try.
    pub error: String,
    /// When the fault was first seen.
    pub since_unix_ms: i64,
    /// Failed tries so far.
    pub retries: u32,
    /// When the next try is due.
    pub next_retry_unix_ms: i64,
}

impl StoreFault {
    /// As the Admin API's message.
    pub(crate) fn to_proto(&self) -> v1::StoreFault {
        v1::StoreFault {
            error: self.error.clone(),
            since_unix_ms: self.since_unix_ms,
            retries: self.retries,
            next_retry_unix_ms: self.next_retry_unix_ms,
        }
    }
}

/// The fault (if any) holding one job.
#[derive(Debug, Default)]
pub(crate) struct Weather {
    fault: std::sync::Mutex<Option<StoreFault>>,
}

impl Weather {
    /// The fault holding the job now, if any.
    pub(crate) fn fault(&self) -> Option<StoreFault> {
        lock(&self.fault).clone()
    }

    /// Records a failed try; returns the delay before the next one and
    /// whether this failure started the fault.
    fn record(&self, error: String) -> (Duration, bool) {
        let mut f = lock(&self.fault);
        let now = now_unix_ms();
        let first = f.is_none();
        let fault = f.get_or_insert_with(|| StoreFault {
            error: String::new(),
            since_unix_ms: now,
            retries: 0,
            next_retry_unix_ms: now,
        });
        let delay = backoff(fault.retries);
        fault.retries = fault.retries.saturating_add(1);
        fault.error = error;
        fault.next_retry_unix_ms = now + i64::try_from(delay.as_millis()).unwrap_or(i64::MAX / 4);
        (delay, first)
    }

    fn clear(&self) -> Option<StoreFault> {
        lock(&self.fault).take()
    }
}

/// After a transient error `e`: marks the job as held (state, metric, log),
/// then sleeps the backoff. Returns `false` if the coordinator shuts down
/// meanwhile.
pub(crate) async fn wait_out(engine: &Engine, job: &JobRuntime, what: &str, e: &Error) -> bool {
    let mut shutdown = engine.shutdown_signal();
    if *shutdown.borrow() {
        return false;
    }
    let (delay, first) = job.weather.record(e.to_string());
    engine.metrics.store_fault(job.id(), true);
    if first {
        tracing::warn!(
            job = job.id(),
            during = what,
            error = %e,
            "job paused by a transient store fault; nothing is lost, retrying with backoff (first retry in {} ms)",
            delay.as_millis()
        );
        crate::alerts::store_fault(
            &engine.alerts,
            job.id(),
            what,
            &e.to_string(),
            u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
        );
    } else {
        tracing::debug!(job = job.id(), during = what, error = %e, retry_in_ms = delay.as_millis() as u64, "store still failing");
    }
    tokio::select! {
        () = tokio::time::sleep(delay) => true,
        _ = shutdown.changed() => false,
    }
}

/// After a successful store call: ends the fault holding the job (if any)
/// with a log line, the metric and an audit event.
pub(crate) async fn cleared(engine: &Engine, job: &JobRuntime) {
    let Some(f) = job.weather.clear() else {
        return;
    };
    engine.metrics.store_fault(job.id(), false);
    let seconds = (now_unix_ms() - f.since_unix_ms) as f64 / 1000.0;
    let detail = format!(
        "the store recovered after {seconds:.1} s and {} failed tries (last error: {}); the job resumed",
        f.retries, f.error
    );
    tracing::info!(job = job.id(), retries = f.retries, seconds, "{detail}");
    crate::alerts::store_recovered(&engine.alerts, job.id(), &detail, f.retries);
    // The store just took a write; if this row still fails, the job waits
    // (a fixed 1 s backoff, without recording a new fault) until it lands.
    while let Err(e) = engine
        .audit("job_store_recovered", job.id(), "", detail.clone())
        .await
    {
        if !e.is_transient() {
            tracing::error!(job = job.id(), error = %e, "the store recovered but its audit row cannot be written");
            return;
        }
        let mut shutdown = engine.shutdown_signal();
        tokio::select! {
            () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Appends a job's audit event (issue 21), holding the job while the
/// write fails transiently (retried with backoff, like any store write of
/// the job); a permanent failure is returned.
pub(crate) async fn audit(
    engine: &Engine,
    job: &JobRuntime,
    kind: &str,
    detail: String,
) -> Result<(), Error> {
    loop {
        match engine.audit(kind, job.id(), "", detail.clone()).await {
            Ok(()) => {
                cleared(engine, job).await;
                return Ok(());
            }
            Err(e) if e.is_transient() => {
                if !wait_out(engine, job, "audit log", &e).await {
                    return Err(Error::ShuttingDown);
                }
            }
            Err(e) => return Err(e),
        }
    }
}

/// Runs a store write for `job`, retrying transient faults in place with
/// backoff until it succeeds, fails permanently, or the coordinator shuts
/// down ([`Error::ShuttingDown`]). `write` gets the number of failed tries
/// so far: from the second try on it must first check whether an earlier
/// try landed after all (a fault reported after the write).
pub(crate) async fn persist<T: Send + 'static>(
    engine: &Engine,
    job: &JobRuntime,
    what: &str,
    write: impl Fn(&dyn Store, u32) -> StoreResult<T> + Send + Sync + 'static,
) -> Result<T, Error> {
    let write = Arc::new(write);
    let mut tries = 0u32;
    loop {
        let w = write.clone();
        match engine.db(move |s| w(s, tries)).await {
            Ok(v) => {
                cleared(engine, job).await;
                return Ok(v);
            }
            Err(e) if e.is_transient() => {
                if !wait_out(engine, job, what, &e).await {
                    return Err(Error::ShuttingDown);
                }
                tries = tries.saturating_add(1);
            }
            Err(e) => return Err(e),
        }
    }
}

/// The `(ledger seq, model version)` of the commit of `round` attempt
/// `attempt`, if it is in the ledger.
pub(crate) fn committed(
    store: &dyn Store,
    job_id: &str,
    round: u64,
    attempt: u32,
) -> StoreResult<Option<(u64, u64)>> {
    Ok(store
        .ledger(job_id)?
        .iter()
        .rev()
        .find(|e| {
            e.kind == LedgerKind::Round
                && e.attempt == attempt
                && e.charge.is_some_and(|c| c.round == round)
        })
        .map(|e| (e.seq, e.model_version)))
}

/// Before a step re-runs after a fault: abandons the attempts the store
/// holds open for this job that are not its open round in memory (an
/// opening reported failed after the write). Nothing was collected for
/// them, so nothing is lost.
pub(crate) async fn recover(engine: &Engine, job: &JobRuntime) -> Result<(), Error> {
    let live = job.open_round().map(|r| (r.round, r.attempt));
    let id = job.id().to_owned();
    let note = "abandoned after a store fault: the opening was never confirmed";
    engine
        .db(move |s| {
            for a in s.attempts(&id)? {
                if a.state == AttemptState::Open && Some((a.round, a.attempt)) != live {
                    let close = AttemptClose {
                        accepted: 0,
                        rejected: 0,
                        note: note.to_owned(),
                        closed_unix_ms: now_unix_ms(),
                    };
                    s.abandon_attempt(&id, a.round, a.attempt, &close)?;
                }
            }
            Ok(())
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_100_ms_to_a_5_s_cap() {
        let ms: Vec<u128> = (0..9).map(|r| backoff(r).as_millis()).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
        assert_eq!(backoff(u32::MAX), MAX_RETRY);
    }

    #[test]
    fn a_fault_counts_its_tries_and_clears_once() {
        let w = Weather::default();
        assert!(w.fault().is_none());
        let (d1, first) = w.record("disk full".into());
        assert!(first);
        assert_eq!(d1, FIRST_RETRY);
        let (d2, first) = w.record("disk still full".into());
        assert!(!first);
        assert_eq!(d2, 2 * FIRST_RETRY);
        let f = w.fault().unwrap();
        assert_eq!((f.retries, f.error.as_str()), (2, "disk still full"));
        assert!(f.next_retry_unix_ms >= f.since_unix_ms);
        assert_eq!(w.clear().unwrap().retries, 2);
        assert!(w.clear().is_none());
    }
}
