//! When an alert is raised or held back: de-duplication and the per-kind
//! rate limit ([`Gate`]), bursts of rejected uploads ([`Burst`]), the
//! budget threshold ([`budget_crossed`]) and certificate expiry
//! ([`expiry`]). Pure logic with explicit times; no I/O.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::event::{Alert, AlertKind};

/// What identifies "the same alert" for de-duplication.
type DedupKey = (AlertKind, String, String, String, String);

/// Entries the de-duplication map may hold before it is pruned.
const PRUNE_AT: usize = 1024;

/// De-duplication and per-kind rate limit over one window.
#[derive(Debug)]
pub(crate) struct Gate {
    window: Duration,
    max_per_kind: u32,
    seen: HashMap<DedupKey, Instant>,
    per_kind: HashMap<AlertKind, (Instant, u32)>,
}

/// Why an alert was held back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Held {
    /// The same alert was sent within the window.
    Duplicate,
    /// Its kind used up its alerts for the window.
    RateLimited,
}

impl Gate {
    /// A gate over `window` (zero: every alert passes) letting at most
    /// `max_per_kind` alerts of one kind through per window.
    pub(crate) fn new(window: Duration, max_per_kind: u32) -> Self {
        Self {
            window,
            max_per_kind,
            seen: HashMap::new(),
            per_kind: HashMap::new(),
        }
    }

    /// Whether `alert` may be sent at `now` (and if so, records it).
    pub(crate) fn admit(&mut self, alert: &Alert, now: Instant) -> Result<(), Held> {
        if self.window.is_zero() {
            return Ok(());
        }
        let key = (
            alert.kind,
            alert.job.clone(),
            alert.client.clone(),
            alert.tenant.clone(),
            alert.subject.clone(),
        );
        if self
            .seen
            .get(&key)
            .is_some_and(|&t| now.saturating_duration_since(t) < self.window)
        {
            return Err(Held::Duplicate);
        }
        let window = self.window;
        let slot = self.per_kind.entry(alert.kind).or_insert((now, 0));
        if now.saturating_duration_since(slot.0) >= window {
            *slot = (now, 0);
        }
        if slot.1 >= self.max_per_kind {
            return Err(Held::RateLimited);
        }
        slot.1 += 1;
        if self.seen.len() >= PRUNE_AT {
            self.seen
                .retain(|_, t| now.saturating_duration_since(*t) < window);
        }
        self.seen.insert(key, now);
        Ok(())
    }
}

/// One rejected upload.
#[derive(Debug, Clone)]
struct Rejection {
    at: Instant,
    reason: &'static str,
    client: String,
    job: String,
}

/// What a burst of rejections was made of.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct BurstSummary {
    /// Rejections in the burst.
    pub(crate) count: usize,
    /// Seconds from the first to the last.
    pub(crate) span_s: f64,
    /// Rejections per reason.
    pub(crate) reasons: BTreeMap<&'static str, u64>,
    /// Rejections per client (the ten with the most).
    pub(crate) clients: Vec<(String, u64)>,
    /// Distinct clients.
    pub(crate) distinct_clients: usize,
    /// Jobs named by the rejected uploads.
    pub(crate) jobs: Vec<String>,
}

/// Counts rejected uploads over a sliding window; memory is bounded by the
/// threshold.
#[derive(Debug)]
pub(crate) struct Burst {
    window: Duration,
    threshold: usize,
    recent: VecDeque<Rejection>,
}

impl Burst {
    /// A burst is `threshold` rejections within `window`.
    pub(crate) fn new(window: Duration, threshold: u32) -> Self {
        Self {
            window,
            threshold: threshold.max(1) as usize,
            recent: VecDeque::new(),
        }
    }

    /// Records a rejection at `now`; returns the burst it completes, if
    /// any (the window then starts afresh).
    pub(crate) fn record(
        &mut self,
        now: Instant,
        reason: &'static str,
        client: &str,
        job: &str,
    ) -> Option<BurstSummary> {
        while self
            .recent
            .front()
            .is_some_and(|r| now.saturating_duration_since(r.at) >= self.window)
        {
            self.recent.pop_front();
        }
        self.recent.push_back(Rejection {
            at: now,
            reason,
            client: client.to_owned(),
            job: job.to_owned(),
        });
        if self.recent.len() < self.threshold {
            return None;
        }
        let burst: Vec<Rejection> = self.recent.drain(..).collect();
        let mut reasons = BTreeMap::new();
        let mut clients: HashMap<&str, u64> = HashMap::new();
        let mut jobs: Vec<String> = Vec::new();
        for r in &burst {
            *reasons.entry(r.reason).or_insert(0) += 1;
            *clients.entry(r.client.as_str()).or_insert(0) += 1;
            if !r.job.is_empty() && !jobs.contains(&r.job) && jobs.len() < 10 {
                jobs.push(r.job.clone());
            }
        }
        let distinct_clients = clients.len();
        let mut clients: Vec<(String, u64)> = clients
            .into_iter()
            .map(|(c, n)| (c.to_owned(), n))
            .collect();
        clients.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        clients.truncate(10);
        let span_s = burst.last().zip(burst.first()).map_or(0.0, |(l, f)| {
            l.at.saturating_duration_since(f.at).as_secs_f64()
        });
        Some(BurstSummary {
            count: burst.len(),
            span_s,
            reasons,
            clients,
            distinct_clients,
            jobs,
        })
    }
}

/// Whether a round that took a job's ε from `before` to `after` crossed
/// `fraction` of `budget`. ε never decreases (a rollback refunds nothing),
/// so this holds for exactly one round of a job: the alert is raised once,
/// across restarts too, with no state to keep.
pub(crate) fn budget_crossed(before: f64, after: f64, budget: f64, fraction: f64) -> bool {
    let line = fraction * budget;
    budget > 0.0 && line.is_finite() && before < line && after >= line
}

/// A certificate's name and end of validity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Expiry {
    /// Its subject (distinguished name).
    pub(crate) subject: String,
    /// The end of its validity, Unix seconds.
    pub(crate) not_after: i64,
}

/// The subject and end of validity of a DER certificate.
pub(crate) fn expiry(der: &[u8]) -> Result<Expiry, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("not an X.509 certificate: {e}"))?;
    Ok(Expiry {
        subject: cert.subject().to_string(),
        not_after: cert.validity().not_after.timestamp(),
    })
}

/// Whole days from `now` (Unix seconds) to `not_after`, rounded down
/// (negative once expired); `Some` when within `within_days`.
pub(crate) fn days_left(not_after: i64, now: i64, within_days: u64) -> Option<i64> {
    let left = not_after.saturating_sub(now);
    let limit = i64::try_from(within_days)
        .unwrap_or(i64::MAX / 86_400)
        .saturating_mul(86_400);
    (left < limit).then(|| left.div_euclid(86_400))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::event::Severity;

    fn alert(kind: AlertKind, client: &str) -> Alert {
        Alert::new(kind, Severity::Warning, "m").client(client, "t")
    }

    #[test]
    fn the_gate_suppresses_duplicates_within_the_window_only() {
        let t0 = Instant::now();
        let mut g = Gate::new(Duration::from_secs(60), 100);
        let a = alert(AlertKind::ClientQuarantined, "c1");
        assert_eq!(g.admit(&a, t0), Ok(()));
        assert_eq!(
            g.admit(&a, t0 + Duration::from_secs(59)),
            Err(Held::Duplicate)
        );
        assert_eq!(
            g.admit(&alert(AlertKind::ClientQuarantined, "c2"), t0),
            Ok(())
        );
        assert_eq!(g.admit(&alert(AlertKind::ClientRevoked, "c1"), t0), Ok(()));
        assert_eq!(g.admit(&a.clone().subject("other"), t0), Ok(()));
        assert_eq!(g.admit(&a, t0 + Duration::from_secs(60)), Ok(()));
    }

    #[test]
    fn the_gate_limits_each_kind_per_window() {
        let t0 = Instant::now();
        let mut g = Gate::new(Duration::from_secs(10), 3);
        for i in 0..3 {
            assert_eq!(
                g.admit(&alert(AlertKind::UpdateAnomaly, &format!("c{i}")), t0),
                Ok(())
            );
        }
        assert_eq!(
            g.admit(&alert(AlertKind::UpdateAnomaly, "c9"), t0),
            Err(Held::RateLimited)
        );
        assert_eq!(
            g.admit(&alert(AlertKind::JobPaused, "c9"), t0),
            Ok(()),
            "per kind"
        );
        let later = t0 + Duration::from_secs(10);
        assert_eq!(
            g.admit(&alert(AlertKind::UpdateAnomaly, "c9"), later),
            Ok(())
        );
    }

    #[test]
    fn a_zero_window_lets_everything_through() {
        let mut g = Gate::new(Duration::ZERO, 1);
        let a = alert(AlertKind::StoreFault, "");
        let t0 = Instant::now();
        for _ in 0..5 {
            assert_eq!(g.admit(&a, t0), Ok(()));
        }
    }

    #[test]
    fn the_gate_stays_small() {
        let t0 = Instant::now();
        let mut g = Gate::new(Duration::from_millis(1), 10_000);
        for i in 0..5000u64 {
            let now = t0 + Duration::from_millis(i);
            g.admit(&alert(AlertKind::UpdateAnomaly, &format!("c{i}")), now)
                .unwrap();
        }
        assert!(g.seen.len() <= PRUNE_AT + 1, "{}", g.seen.len());
    }

    #[test]
    fn a_burst_needs_the_threshold_within_the_window() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut b = Burst::new(Duration::from_secs(10), 4);
        assert!(b.record(t0, "non_finite", "a", "j").is_none());
        assert!(b.record(t0 + s, "non_finite", "a", "j").is_none());
        assert!(b.record(t0 + 2 * s, "wrong_dimension", "b", "j").is_none());
        // The first two fall out of the window: no burst yet.
        assert!(b.record(t0 + 11 * s, "non_finite", "c", "").is_none());
        assert!(b.record(t0 + 12 * s, "non_finite", "c", "k").is_none());
        assert!(b.record(t0 + 12 * s, "non_finite", "c", "k").is_none());
        let burst = b.record(t0 + 12 * s, "stale_round", "d", "k").unwrap();
        assert_eq!(burst.count, 4);
        assert_eq!(burst.distinct_clients, 2);
        assert_eq!(burst.clients[0], ("c".to_owned(), 3));
        assert_eq!(burst.reasons["non_finite"], 3);
        assert_eq!(burst.jobs, vec!["k".to_owned()]);
        assert!((burst.span_s - 1.0).abs() < 1e-9);
        // It starts afresh.
        assert!(b.record(t0 + 12 * s, "x", "e", "k").is_none());
        assert_eq!(b.recent.len(), 1);
    }

    #[test]
    fn the_budget_line_is_crossed_once() {
        let eps = [0.0, 1.0, 2.0, 3.1, 3.5, 4.0];
        let crossings: Vec<usize> = eps
            .windows(2)
            .enumerate()
            .filter(|(_, w)| budget_crossed(w[0], w[1], 4.0, 0.75))
            .map(|(i, _)| i + 1)
            .collect();
        assert_eq!(crossings, vec![3]);
        assert!(budget_crossed(0.0, 3.0, 4.0, 0.75), "exactly at the line");
        assert!(!budget_crossed(3.0, 3.5, 4.0, 0.75), "already past it");
        assert!(!budget_crossed(0.0, 9.0, 0.0, 0.75));
        assert!(!budget_crossed(0.0, 9.0, f64::INFINITY, 0.75));
    }

    #[test]
    fn days_left_counts_down_and_goes_negative() {
        let day = 86_400;
        assert_eq!(days_left(100 * day, 0, 14), None);
        assert_eq!(
            days_left(14 * day, 0, 14),
            None,
            "exactly 14 days is not within"
        );
        assert_eq!(days_left(14 * day - 1, 0, 14), Some(13));
        assert_eq!(days_left(3 * day + 5, 0, 14), Some(3));
        assert_eq!(days_left(0, 1, 14), Some(-1), "expired");
    }

    #[test]
    fn expiry_reads_a_real_certificate() {
        use rustls::pki_types::pem::PemObject;
        let ca = fedsec_proto::devca::DevCa::generate("expiry test CA").unwrap();
        let cert = ca
            .issue_server(
                &["localhost".into()],
                fedsec_proto::devca::Validity::Days(3),
            )
            .unwrap();
        let der = rustls::pki_types::CertificateDer::from_pem_slice(cert.cert_pem.as_bytes());
        let e = expiry(der.unwrap().as_ref()).unwrap();
        assert!(e.subject.contains("localhost"), "{}", e.subject);
        let now = crate::engine::now_unix_ms() / 1000;
        // Validity ends on a whole second: 3 days minus less than 1 s, or 3.
        assert!(matches!(days_left(e.not_after, now, 14), Some(2 | 3)));
        assert!(expiry(b"junk").is_err());
    }
}
