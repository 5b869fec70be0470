//! Waiting: exponential backoff with jitter after failures, and jittered
//! polling that never comes back earlier than the coordinator asked.

use std::time::Duration;

use rand::RngExt;

/// Exponential backoff with "equal jitter": after `n` consecutive failures
/// the wait is `d/2 + U(0, d/2)` with `d = min(max, initial · 2ⁿ⁻¹)`.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    /// A backoff starting at `initial`, capped at `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max: max.max(initial),
            failures: 0,
        }
    }

    /// Consecutive failures recorded.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Records a failure and returns how long to wait.
    pub fn fail(&mut self, rng: &mut impl rand::Rng) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let exp = self.failures.saturating_sub(1).min(30);
        let d = self.initial.saturating_mul(1u32 << exp).min(self.max);
        let half = d / 2;
        let jitter = rng.random_range(0..=half.as_micros() as u64);
        half + Duration::from_micros(jitter)
    }

    /// Records a failure and returns how long to wait: the backoff, or the
    /// coordinator's `retry_after` hint when that is longer (capped at the
    /// backoff's maximum, so a bad hint cannot park the client).
    pub fn fail_at_least(
        &mut self,
        rng: &mut impl rand::Rng,
        retry_after: Option<Duration>,
    ) -> Duration {
        let d = self.fail(rng);
        d.max(retry_after.unwrap_or_default().min(self.max))
    }

    /// Records a success.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

/// The wait before the next poll: the coordinator's `retry_after` (or
/// `fallback` when it sent 0), clamped to `[min, max]`, plus up to 20 %
/// jitter so that clients told the same thing do not come back together.
pub fn poll_delay(
    retry_after: Duration,
    fallback: Duration,
    min: Duration,
    max: Duration,
    rng: &mut impl rand::Rng,
) -> Duration {
    let base = if retry_after.is_zero() {
        fallback
    } else {
        retry_after
    };
    let base = base.clamp(min, max.max(min));
    let extra = rng.random_range(0..=(base.as_micros() as u64 / 5));
    base + Duration::from_micros(extra)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn a_longer_hint_wins_but_is_capped() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let hint = Some(Duration::from_millis(700));
        assert_eq!(b.fail_at_least(&mut rng, hint), Duration::from_millis(700));
        let huge = Some(Duration::from_secs(3600));
        assert_eq!(b.fail_at_least(&mut rng, huge), Duration::from_secs(2));
        for _ in 0..4 {
            b.fail(&mut rng);
        }
        // The backoff (1–2 s by now) beats a short hint.
        let d = b.fail_at_least(&mut rng, Some(Duration::from_millis(10)));
        assert!(d >= Duration::from_secs(1), "{d:?}");
        assert_eq!(b.failures(), 7);
    }

    #[test]
    fn backoff_doubles_is_capped_and_jittered() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let waits: Vec<Duration> = (0..8).map(|_| b.fail(&mut rng)).collect();
        let caps = [100u64, 200, 400, 800, 1600, 2000, 2000, 2000];
        for (w, cap) in waits.iter().zip(caps) {
            let cap = Duration::from_millis(cap);
            assert!(*w >= cap / 2 && *w <= cap, "{w:?} vs {cap:?}");
        }
        assert_eq!(b.failures(), 8);
        // Jitter: not all waits at the cap are equal.
        assert!(waits[5..].windows(2).any(|p| p[0] != p[1]));
        b.reset();
        assert!(b.fail(&mut rng) <= Duration::from_millis(100));
    }

    #[test]
    fn polls_never_come_back_early() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
        let (min, max) = (Duration::from_millis(10), Duration::from_secs(60));
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let d = poll_delay(
                Duration::from_millis(500),
                Duration::ZERO,
                min,
                max,
                &mut rng,
            );
            assert!(d >= Duration::from_millis(500) && d <= Duration::from_millis(600));
            seen.insert(d);
        }
        assert!(seen.len() > 50, "jittered");
        let d = poll_delay(Duration::ZERO, Duration::from_secs(2), min, max, &mut rng);
        assert!(d >= Duration::from_secs(2));
        let d = poll_delay(
            Duration::from_secs(3600),
            Duration::ZERO,
            min,
            max,
            &mut rng,
        );
        assert!(d <= Duration::from_secs(72));
    }
}
