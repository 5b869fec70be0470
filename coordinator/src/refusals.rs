//! How the coordinator refuses a caller, and what a refusal may cost it:
//! rate limits, exhausted shares, rejections and the audit rows they cause.
//!
//! Every refusal is counted in `fedsec_rejections_total{reason}`. What is
//! *stored* is bounded per identity: an audit event a caller causes takes a
//! token of its row budget ([`crate::ratelimit::RowBudget`]); rate-limit and
//! share refusals store at most one event per identity, class and audit
//! window. With its row budget used up, a caller's calls that may store rows
//! are refused with `RESOURCE_EXHAUSTED` and `retry-after-ms` before
//! anything is read or written.

use std::sync::Arc;
use std::time::Duration;

use fedsec_proto::tls::PeerIdentity;

use crate::auth::TokenError;
use crate::engine::Engine;
use crate::error::{Error, RejectReason};
use crate::listener::{Conn, identity_key};
use crate::ratelimit::{Decision, RpcClass};
use crate::shares::Exhausted;

fn millis(d: Duration) -> u64 {
    // Rounded up: a client that waits exactly the hint must find a token
    // (rounding down told it to come back up to 1 ms too early).
    u64::try_from(d.as_nanos().div_ceil(1_000_000))
        .unwrap_or(u64::MAX)
        .max(1)
}

impl Engine {
    /// Takes a token of `identity`'s bucket for `class`; over the limit, the
    /// call is refused (`RESOURCE_EXHAUSTED` with a retry-after hint),
    /// counted, and the first refusal per identity, class and audit window
    /// is logged and audited (in the background: refusals must stay cheap).
    pub(crate) fn throttle(
        self: &Arc<Self>,
        class: RpcClass,
        identity: &str,
        client_id: &str,
    ) -> Result<(), Error> {
        let Decision::Limited { retry_after, audit } = self.limits.check(class, identity) else {
            return Ok(());
        };
        let bucket = self.limits.bucket(class);
        let rate = bucket.per_second();
        let limit = if rate >= 1.0 {
            format!("{rate:.1}/s sustained, burst {}", bucket.burst)
        } else {
            format!("{:.1}/min sustained, burst {}", rate * 60.0, bucket.burst)
        };
        let err = Error::RateLimited {
            rpc: class.name(),
            identity: identity.to_owned(),
            limit,
            retry_after_ms: millis(retry_after),
        };
        self.metrics.rejected(RejectReason::RateLimited);
        self.metrics.rate_limited(class.name());
        if audit {
            self.notice(identity, client_id, "rate_limited", class.name(), &err);
        }
        Err(err)
    }

    /// The error for an exhausted share: `RESOURCE_EXHAUSTED`, retry after
    /// one poll interval; counted, and noticed once per identity, class and
    /// audit window.
    pub(crate) fn exhausted(
        self: &Arc<Self>,
        identity: &str,
        client_id: &str,
        class: &'static str,
        e: Exhausted,
    ) -> Error {
        let err = Error::ShareExhausted {
            identity: identity.to_owned(),
            what: e.what,
            limit: e.limit,
            retry_after_ms: millis(self.settings.poll_interval),
        };
        self.metrics.rejected(RejectReason::ShareExhausted);
        if self.limits.first_in_window(class, identity) {
            self.notice(identity, client_id, "share_exhausted", class, &err);
        }
        err
    }

    /// Logs and (row budget permitting) audits the first refusal of its
    /// kind in a window, in the background.
    fn notice(
        self: &Arc<Self>,
        identity: &str,
        client_id: &str,
        kind: &'static str,
        class: &str,
        err: &Error,
    ) {
        let window_s = self.settings.rate_limit_audit_window.as_secs();
        tracing::warn!(rpc = class, identity, error = %err, "{kind} (further refusals of this identity and call are counted, not logged, for {window_s} s)");
        let detail = format!(
            "{err}; further {class} refusals of this identity in the next {window_s} s are only counted"
        );
        let (engine, identity, client_id) =
            (self.clone(), identity.to_owned(), client_id.to_owned());
        tokio::spawn(async move {
            let _ = engine
                .audit_by(&identity, kind, "", &client_id, detail)
                .await;
        });
    }

    /// Refuses a call that may store audit rows while `identity`'s row
    /// budget is used up.
    pub(crate) fn check_rows(&self, identity: &str) -> Result<(), Error> {
        match self.limits.rows().exhausted_for(identity) {
            None => Ok(()),
            Some(wait) => {
                self.metrics.rejected(RejectReason::ShareExhausted);
                Err(self.rows_exhausted(identity, wait, None))
            }
        }
    }

    fn rows_exhausted(
        &self,
        identity: &str,
        wait: Duration,
        refused: Option<RejectReason>,
    ) -> Error {
        let per_hour = self.limits.rows().per_hour();
        Error::ShareExhausted {
            identity: identity.to_owned(),
            what: match refused {
                Some(r) => format!(
                    "caused {per_hour} audit events this hour (this call was refused: {})",
                    r.label()
                ),
                None => format!("caused {per_hour} audit events this hour"),
            },
            limit: format!("{per_hour} per hour"),
            retry_after_ms: millis(wait),
        }
    }

    /// Appends an audit event `identity` caused, if its row budget allows;
    /// otherwise stores nothing and returns the `RESOURCE_EXHAUSTED` error.
    pub(crate) async fn audit_by(
        &self,
        identity: &str,
        kind: &str,
        job_id: &str,
        client_id: &str,
        detail: String,
    ) -> Result<(), Error> {
        if let Err(wait) = self.limits.rows().take(identity) {
            return Err(self.rows_exhausted(identity, wait, None));
        }
        self.audit(kind, job_id, client_id, detail).await
    }

    /// Records a refused bearer token (issue 21, the token half calls it):
    /// an audit row `token_refused` caused by `identity` (the certificate's
    /// rate key), within its row budget like every rejection. `Err` is the
    /// `RESOURCE_EXHAUSTED` of a used-up budget or the `UNAVAILABLE` of an
    /// audit log that cannot be written; either way the call stays refused.
    pub(crate) async fn audit_token_refused(
        &self,
        identity: &str,
        client_id: &str,
        detail: String,
    ) -> Result<(), Error> {
        self.audit_by(identity, "token_refused", "", client_id, detail)
            .await
    }

    /// Counts, logs and audits a rejection of `identity`'s call, and returns
    /// the error for the caller: the rejection itself, or `RESOURCE_EXHAUSTED`
    /// when the identity's audit rows for the hour are used up (then nothing
    /// is logged or stored).
    pub(crate) async fn reject(
        &self,
        err: Error,
        identity: &str,
        job_id: &str,
        client_id: &str,
    ) -> Error {
        let Some(reason) = err.reject_reason() else {
            return err;
        };
        self.metrics.rejected(reason);
        if matches!(
            reason,
            RejectReason::RateLimited | RejectReason::ShareExhausted
        ) {
            // Already noticed (once per window) where they were refused.
            return err;
        }
        if let Err(wait) = self.limits.rows().take(identity) {
            self.metrics.rejected(RejectReason::ShareExhausted);
            return self.rows_exhausted(identity, wait, Some(reason));
        }
        tracing::info!(reason = reason.label(), job = job_id, client = client_id, error = %err, "rejected");
        // A refusal that cannot be recorded is answered UNAVAILABLE: the
        // call stays refused, never unrecorded.
        if let Err(e) = self
            .audit("update_rejected", job_id, client_id, err.to_string())
            .await
        {
            return e;
        }
        err
    }
}

impl Engine {
    /// A refused bearer token (`[auth.tokens]`): counted
    /// (`fedsec_rejections_total{reason="token_invalid"|"token_denied"}`),
    /// audited as `token_refused` naming the caller, the call and the check
    /// that failed (never the token), within the caller's row budget — past
    /// it the caller gets `RESOURCE_EXHAUSTED` and nothing is stored or
    /// logged — and throttled like a revoked identity's calls: past the
    /// caller's `Refused` bucket its connection is closed. The one place
    /// token refusals are recorded (the audit chain hooks in here).
    pub(crate) async fn token_refused(
        self: &Arc<Self>,
        conn: Option<&Conn>,
        identity: Option<&PeerIdentity>,
        path: &str,
        refusal: TokenError,
    ) -> tonic::Status {
        let why = refusal.label();
        let err = Error::from(refusal);
        let (key, client_id) = match identity {
            Some(id) => (
                identity_key(id),
                match id {
                    PeerIdentity::Client(c) => c.client_id.clone(),
                    PeerIdentity::Admin { .. } => String::new(),
                },
            ),
            None => (
                conn.map_or_else(
                    || "peer:unknown".to_owned(),
                    |c| format!("peer:{}", c.peer().ip()),
                ),
                String::new(),
            ),
        };
        if let Some(reason) = err.reject_reason() {
            self.metrics.rejected(reason);
        }
        if self.throttle(RpcClass::Refused, &key, &client_id).is_err()
            && let Some(conn) = conn
        {
            self.metrics.connection_closed("refused_token_flood");
            tracing::debug!(peer = %conn.peer(), identity = key, "closing the connection of an identity that keeps sending refused tokens");
            conn.close();
        }
        let method = crate::auth::scope::method_of(path);
        let detail = format!("{method} refused for {key} ({why}): {err}");
        if let Err(unrecorded) = self.audit_token_refused(&key, &client_id, detail).await {
            // Row budget used up (RESOURCE_EXHAUSTED) or the audit log cannot
            // be written (UNAVAILABLE): the call stays refused either way.
            return unrecorded.into();
        }
        tracing::info!(identity = %key, method, check = why, error = %err, "bearer token refused");
        err.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_hints_round_up_to_whole_milliseconds() {
        assert_eq!(millis(Duration::ZERO), 1);
        assert_eq!(millis(Duration::from_nanos(1)), 1);
        assert_eq!(millis(Duration::from_micros(2_999_500)), 3_000);
        assert_eq!(millis(Duration::from_millis(7)), 7);
        assert_eq!(millis(Duration::MAX), u64::MAX);
    }
}
