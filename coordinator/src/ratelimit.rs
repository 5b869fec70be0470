//! Per-identity rate limits: one token bucket (GCRA, `governor`'s keyed
//! limiter) per authenticated identity and call class, plus the throttle
//! that keeps refusals from flooding the audit log.
//!
//! Identities come from the mTLS certificate: `tenant/client` for clients,
//! `admin:name` for admins (who have their own class, [`RpcClass::Admin`]).
//! Memory is bounded: [`RateLimits::sweep`] (run every few seconds by the
//! server) forgets every identity whose buckets are full again, i.e. every
//! identity idle for longer than its burst takes to refill.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock, Reference};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};

use crate::config::RateLimitsConfig;

/// The call classes with a bucket of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum RpcClass {
    /// `Coordinator/Register`.
    Register,
    /// `Coordinator/GetTask` polls.
    GetTask,
    /// `Coordinator/GetModel` downloads.
    GetModel,
    /// `Coordinator/SubmitUpdate` attempts.
    SubmitUpdate,
    /// Every `Admin` call.
    Admin,
    /// `grpc.health.v1` and server-reflection calls.
    Health,
    /// Calls of a revoked or quarantined identity refused by the gate; over
    /// this bucket its connection is closed.
    Refused,
}

/// Number of call classes.
const CLASSES: usize = 7;

impl RpcClass {
    /// The RPC name, also the `rpc` label of `fedsec_rate_limited_total`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Register => "Register",
            Self::GetTask => "GetTask",
            Self::GetModel => "GetModel",
            Self::SubmitUpdate => "SubmitUpdate",
            Self::Admin => "Admin",
            Self::Health => "Health",
            Self::Refused => "Refused",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What [`RateLimits::check`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Within the identity's bucket.
    Allowed,
    /// Over the bucket.
    Limited {
        /// Earliest time at which the same call would be allowed.
        retry_after: Duration,
        /// Whether this refusal is the first of its identity and class in
        /// the audit window (write an audit event for it; later ones are
        /// only counted).
        audit: bool,
    },
}

type Keyed<C> =
    RateLimiter<String, DashMapStateStore<String>, C, NoOpMiddleware<<C as Clock>::Instant>>;
type AuditKeyed<C> = RateLimiter<
    (&'static str, String),
    DashMapStateStore<(&'static str, String)>,
    C,
    NoOpMiddleware<<C as Clock>::Instant>,
>;

/// The sustained rate and burst of one class.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Bucket {
    /// Time in which one call is replenished.
    pub period: Duration,
    /// Calls an idle identity may make at once.
    pub burst: u32,
}

impl Bucket {
    fn quota(self) -> Quota {
        let burst = NonZeroU32::new(self.burst).unwrap_or(NonZeroU32::MIN);
        Quota::with_period(self.period.max(Duration::from_nanos(1)))
            .unwrap_or_else(|| Quota::per_second(burst))
            .allow_burst(burst)
    }

    /// Sustained calls per second.
    pub(crate) fn per_second(self) -> f64 {
        1.0 / self.period.as_secs_f64()
    }
}

/// The buckets of every class as configured.
pub(crate) fn buckets(config: &RateLimitsConfig, poll_interval: Duration) -> [Bucket; CLASSES] {
    let per_minute = |n: f64| Duration::from_secs_f64(60.0 / n);
    [
        Bucket {
            period: per_minute(config.register_per_minute),
            burst: config.register_burst,
        },
        Bucket {
            period: poll_interval.div_f64(config.get_task_per_poll_interval),
            burst: config.get_task_burst,
        },
        Bucket {
            period: per_minute(config.get_model_per_minute),
            burst: config.get_model_burst,
        },
        Bucket {
            period: per_minute(config.submit_update_per_minute),
            burst: config.submit_update_burst,
        },
        Bucket {
            period: per_minute(config.admin_per_minute),
            burst: config.admin_burst,
        },
        Bucket {
            period: per_minute(config.health_per_minute),
            burst: config.health_burst,
        },
        Bucket {
            period: per_minute(config.refused_per_minute),
            burst: config.refused_burst,
        },
    ]
}

/// Keyed token buckets for every class, and the audit throttle.
pub(crate) struct RateLimits<C: Clock = DefaultClock> {
    buckets: [Bucket; CLASSES],
    limiters: Option<[Keyed<C>; CLASSES]>,
    audit: AuditKeyed<C>,
    rows: RowBudget<C>,
    clock: C,
}

impl<C: Clock> std::fmt::Debug for RateLimits<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimits")
            .field("enabled", &self.limiters.is_some())
            .field("buckets", &self.buckets)
            .finish_non_exhaustive()
    }
}

impl RateLimits<DefaultClock> {
    /// Limits from the configuration, on the monotonic clock.
    pub(crate) fn new(config: &RateLimitsConfig, poll_interval: Duration) -> Self {
        Self::with_clock(config, poll_interval, DefaultClock::default())
    }
}

impl<C: Clock + Clone> RateLimits<C> {
    /// Limits on a given clock (tests use `governor::clock::FakeRelativeClock`).
    pub(crate) fn with_clock(config: &RateLimitsConfig, poll_interval: Duration, clock: C) -> Self {
        let buckets = buckets(config, poll_interval);
        let limiters = config.enabled.then(|| {
            buckets
                .map(|b| RateLimiter::new(b.quota(), DashMapStateStore::default(), clock.clone()))
        });
        let window = Duration::from_millis(config.audit_window_ms.max(1));
        let audit_quota = Quota::with_period(window)
            .unwrap_or_else(|| Quota::per_minute(NonZeroU32::MIN))
            .allow_burst(NonZeroU32::MIN);
        Self {
            buckets,
            limiters,
            audit: RateLimiter::new(audit_quota, DashMapStateStore::default(), clock.clone()),
            rows: RowBudget::new(config, clock.clone()),
            clock,
        }
    }

    /// The audit-row budget of identities.
    pub(crate) fn rows(&self) -> &RowBudget<C> {
        &self.rows
    }

    /// Takes one token of `identity`'s `class` bucket, if there is one.
    pub(crate) fn check(&self, class: RpcClass, identity: &str) -> Decision {
        let Some(limiters) = &self.limiters else {
            return Decision::Allowed;
        };
        let key = identity.to_owned();
        match limiters[class.index()].check_key(&key) {
            Ok(()) => Decision::Allowed,
            Err(not_until) => Decision::Limited {
                retry_after: not_until.wait_time_from(self.clock.now()),
                audit: self.audit.check_key(&(class.name(), key)).is_ok(),
            },
        }
    }

    /// Whether this is the first refusal of `identity` for `what` in the
    /// audit window (refusals other than rate limits, e.g. exhausted shares).
    pub(crate) fn first_in_window(&self, what: &'static str, identity: &str) -> bool {
        self.audit.check_key(&(what, identity.to_owned())).is_ok()
    }

    /// The configured bucket of `class`.
    pub(crate) fn bucket(&self, class: RpcClass) -> Bucket {
        self.buckets[class.index()]
    }

    /// Whether limits are enforced.
    pub(crate) fn enabled(&self) -> bool {
        self.limiters.is_some()
    }

    /// Forgets identities whose buckets are full again (indistinguishable
    /// from a fresh identity) and audit windows that have passed; returns
    /// the number of (identity, class) entries still tracked.
    pub(crate) fn sweep(&self) -> usize {
        self.audit.retain_recent();
        self.audit.shrink_to_fit();
        self.rows.sweep();
        let mut n = 0;
        for l in self.limiters.iter().flatten() {
            l.retain_recent();
            l.shrink_to_fit();
            n += l.len();
        }
        n
    }

    /// (identity, class) entries tracked now (the buckets only).
    #[cfg(test)]
    pub(crate) fn tracked(&self) -> usize {
        self.limiters.iter().flatten().map(|l| l.len()).sum()
    }
}

/// Audit rows each identity may cause per hour (`rate_limits.audit_rows_per_hour`).
///
/// Rejections, refused Admin calls and rate-limit notices an identity causes
/// are stored as audit events; each takes a token of its identity's row
/// bucket. With no token left the event is not stored, the call is answered
/// `RESOURCE_EXHAUSTED` with the time until the next token, and until then
/// the identity's calls that may store rows (`Register`, `SubmitUpdate`,
/// `Admin`) are refused at once ([`RowBudget::exhausted_for`]).
pub(crate) struct RowBudget<C: Clock = DefaultClock> {
    per_hour: u32,
    limiter: Option<Keyed<C>>,
    until: std::sync::Mutex<std::collections::HashMap<String, C::Instant>>,
    clock: C,
}

impl<C: Clock> std::fmt::Debug for RowBudget<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RowBudget")
            .field("per_hour", &self.per_hour)
            .finish_non_exhaustive()
    }
}

impl<C: Clock + Clone> RowBudget<C> {
    fn new(config: &RateLimitsConfig, clock: C) -> Self {
        let per_hour = config.audit_rows_per_hour;
        let limiter = (config.enabled && per_hour > 0).then(|| {
            let burst = NonZeroU32::new(per_hour).unwrap_or(NonZeroU32::MIN);
            let quota = Quota::with_period(Duration::from_secs(3600) / per_hour.max(1))
                .unwrap_or_else(|| Quota::per_hour(burst))
                .allow_burst(burst);
            RateLimiter::new(quota, DashMapStateStore::default(), clock.clone())
        });
        Self {
            per_hour,
            limiter,
            until: std::sync::Mutex::new(std::collections::HashMap::new()),
            clock,
        }
    }

    /// Rows an identity may cause per hour (0: unlimited).
    pub(crate) fn per_hour(&self) -> u32 {
        if self.limiter.is_some() {
            self.per_hour
        } else {
            0
        }
    }

    fn until(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, C::Instant>> {
        self.until.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a row token of `identity`; `Err(wait)` if none is left.
    pub(crate) fn take(&self, identity: &str) -> Result<(), Duration> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        match limiter.check_key(&identity.to_owned()) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                let now = self.clock.now();
                let wait = not_until.wait_time_from(now);
                self.until()
                    .insert(identity.to_owned(), not_until.earliest_possible());
                Err(wait)
            }
        }
    }

    /// How long `identity` must wait before a call that may store rows is
    /// admitted again, if its budget is used up.
    pub(crate) fn exhausted_for(&self, identity: &str) -> Option<Duration> {
        let now = self.clock.now();
        let mut until = self.until();
        let at = *until.get(identity)?;
        if at > now {
            Some(at.duration_since(now).into())
        } else {
            until.remove(identity);
            None
        }
    }

    fn sweep(&self) {
        let now = self.clock.now();
        self.until().retain(|_, at| *at > now);
        if let Some(l) = &self.limiter {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    fn config() -> RateLimitsConfig {
        RateLimitsConfig {
            register_per_minute: 60.0,
            register_burst: 2,
            get_task_per_poll_interval: 2.0,
            get_task_burst: 3,
            audit_window_ms: 10_000,
            ..Default::default()
        }
    }

    fn limits() -> (RateLimits<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        let l = RateLimits::with_clock(&config(), Duration::from_millis(1000), clock.clone());
        (l, clock)
    }

    #[test]
    fn burst_then_refusal_with_retry_after_then_refill() {
        let (l, clock) = limits();
        // get_task: 2 per 1000 ms poll interval = one token per 500 ms, burst 3.
        assert_eq!(
            l.bucket(RpcClass::GetTask).period,
            Duration::from_millis(500)
        );
        for _ in 0..3 {
            assert_eq!(l.check(RpcClass::GetTask, "t/a"), Decision::Allowed);
        }
        match l.check(RpcClass::GetTask, "t/a") {
            Decision::Limited { retry_after, audit } => {
                assert_eq!(retry_after, Duration::from_millis(500));
                assert!(audit, "the first refusal is audited");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        // Later refusals in the window are not audited.
        assert_eq!(
            l.check(RpcClass::GetTask, "t/a"),
            Decision::Limited {
                retry_after: Duration::from_millis(500),
                audit: false
            }
        );
        clock.advance(Duration::from_millis(200));
        assert!(matches!(
            l.check(RpcClass::GetTask, "t/a"),
            Decision::Limited { retry_after, audit: false } if retry_after == Duration::from_millis(300)
        ));
        clock.advance(Duration::from_millis(300));
        assert_eq!(l.check(RpcClass::GetTask, "t/a"), Decision::Allowed);
        assert!(matches!(
            l.check(RpcClass::GetTask, "t/a"),
            Decision::Limited { .. }
        ));
        // A new audit window audits the next refusal again.
        clock.advance(Duration::from_millis(10_000));
        for _ in 0..3 {
            assert_eq!(l.check(RpcClass::GetTask, "t/a"), Decision::Allowed);
        }
        assert!(matches!(
            l.check(RpcClass::GetTask, "t/a"),
            Decision::Limited { audit: true, .. }
        ));
    }

    #[test]
    fn identities_and_classes_are_independent() {
        let (l, _clock) = limits();
        for _ in 0..3 {
            assert_eq!(l.check(RpcClass::GetTask, "t/flood"), Decision::Allowed);
        }
        assert!(matches!(
            l.check(RpcClass::GetTask, "t/flood"),
            Decision::Limited { .. }
        ));
        // Another client, and another class of the same client, are unaffected.
        for _ in 0..3 {
            assert_eq!(l.check(RpcClass::GetTask, "t/calm"), Decision::Allowed);
        }
        assert_eq!(l.check(RpcClass::Register, "t/flood"), Decision::Allowed);
        assert_eq!(
            l.check(RpcClass::SubmitUpdate, "t/flood"),
            Decision::Allowed
        );
        // Same client id in another tenant is another identity.
        assert_eq!(l.check(RpcClass::GetTask, "u/flood"), Decision::Allowed);
    }

    #[test]
    fn a_client_polling_at_the_suggested_interval_is_never_limited() {
        let (l, clock) = limits();
        for _ in 0..10_000 {
            assert_eq!(l.check(RpcClass::GetTask, "t/good"), Decision::Allowed);
            clock.advance(Duration::from_millis(1000));
        }
        // Polling twice as often as told is still fine with the default of 2x headroom here.
        for _ in 0..1_000 {
            assert_eq!(l.check(RpcClass::GetTask, "t/good"), Decision::Allowed);
            clock.advance(Duration::from_millis(500));
        }
    }

    #[test]
    fn idle_identities_are_evicted() {
        let (l, clock) = limits();
        for i in 0..1000 {
            assert_eq!(
                l.check(RpcClass::GetTask, &format!("t/c{i}")),
                Decision::Allowed
            );
        }
        assert_eq!(l.tracked(), 1000);
        // Not yet refilled: kept (forgetting them would hand out fresh bursts).
        assert_eq!(l.sweep(), 1000);
        // Every bucket is full again soon after one period (one token was taken).
        clock.advance(Duration::from_millis(1100));
        assert_eq!(l.sweep(), 0);
        // An identity over its limit stays tracked until it has refilled.
        for _ in 0..4 {
            let _ = l.check(RpcClass::GetTask, "t/flood");
        }
        clock.advance(Duration::from_millis(1000));
        assert_eq!(l.sweep(), 1);
        clock.advance(Duration::from_millis(2000));
        assert_eq!(l.sweep(), 0);
    }

    #[test]
    fn disabled_limits_allow_everything() {
        let c = RateLimitsConfig {
            enabled: false,
            ..config()
        };
        let l = RateLimits::with_clock(&c, Duration::from_secs(1), FakeRelativeClock::default());
        for _ in 0..1000 {
            assert_eq!(l.check(RpcClass::Register, "t/a"), Decision::Allowed);
        }
        assert_eq!(l.sweep(), 0);
    }

    #[test]
    fn defaults_leave_headroom_over_the_suggested_poll_rate() {
        let b = buckets(&RateLimitsConfig::default(), Duration::from_millis(2000));
        let get_task = b[RpcClass::GetTask.index()];
        assert_eq!(get_task.period, Duration::from_millis(500));
        assert_eq!(get_task.burst, 60);
        assert!((b[RpcClass::GetModel.index()].per_second() - 10.0).abs() < 1e-9);
        assert!((b[RpcClass::Register.index()].per_second() - 1.0).abs() < 1e-9);
    }
}
