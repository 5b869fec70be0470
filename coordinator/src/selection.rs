//! Cohort selection: Poisson sampling by keyed hash.
//!
//! Each registered, non-quarantined client is in round `r` (attempt `a`) of
//! job `j` iff `u(j, r, a, client) < q`, where `u` is the first 64 bits of
//! HMAC-SHA256 under a 256-bit key mapped to `[0, 1)`. The key is generated
//! once per data directory and kept in the store, so:
//!
//! - inclusion is an independent Bernoulli(q) per client, round and attempt
//!   (HMAC is a PRF), which is exactly the Poisson sampling the accountant
//!   assumes;
//! - a restarted coordinator recomputes the same cohort for the same
//!   (job, round, attempt) — but a crashed attempt is never reused: the
//!   round restarts with a new attempt number and hence a fresh cohort;
//! - clients, who do not know the key, cannot predict or steer selection.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Decides whether a client is in a round's cohort.
///
/// Implementations must be deterministic for a given key and independent
/// across (job, round, attempt, client). A second implementation (e.g.
/// sampling inside a secure enclave, or fixed-size sampling for another
/// accountant) would plug in here.
pub(crate) trait Sampler: Send + Sync + 'static {
    /// The client's uniform draw in `[0, 1)` for this round attempt.
    fn draw(&self, job_id: &str, round: u64, attempt: u32, client_id: &str) -> f64;

    /// Whether the client is selected at rate `q`.
    fn selected(&self, job_id: &str, round: u64, attempt: u32, client_id: &str, q: f64) -> bool {
        self.draw(job_id, round, attempt, client_id) < q
    }
}

/// Length of the selection key in bytes.
pub(crate) const KEY_LEN: usize = 32;

/// Name of the selection key in the store's secrets.
pub(crate) const KEY_NAME: &str = "selection-hmac-sha256";

/// Poisson sampling with HMAC-SHA256 as the pseudo-random function.
#[derive(Clone)]
pub(crate) struct KeyedPoissonSampler {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for KeyedPoissonSampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyedPoissonSampler")
            .finish_non_exhaustive()
    }
}

impl KeyedPoissonSampler {
    /// A sampler with the given secret key (any length; 32 bytes recommended).
    pub(crate) fn new(key: &[u8]) -> Self {
        // HMAC accepts keys of any length; this cannot fail.
        let mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        Self { mac }
    }

    /// A fresh random key from the operating system's CSPRNG.
    pub(crate) fn generate_key() -> Vec<u8> {
        let mut key = vec![0u8; KEY_LEN];
        rand::fill(&mut key[..]);
        key
    }
}

fn put_str(mac: &mut Hmac<Sha256>, s: &str) {
    // Length-prefixed so that ("ab", "c") and ("a", "bc") differ.
    mac.update(&(s.len() as u64).to_le_bytes());
    mac.update(s.as_bytes());
}

impl Sampler for KeyedPoissonSampler {
    fn draw(&self, job_id: &str, round: u64, attempt: u32, client_id: &str) -> f64 {
        let mut mac = self.mac.clone();
        mac.update(b"fedsec-selection-v1");
        put_str(&mut mac, job_id);
        mac.update(&round.to_le_bytes());
        mac.update(&attempt.to_le_bytes());
        put_str(&mut mac, client_id);
        let out = mac.finalize().into_bytes();
        let mut first = [0u8; 8];
        first.copy_from_slice(&out[..8]);
        // Top 53 bits → a double in [0, 1) with every value equally likely.
        (u64::from_le_bytes(first) >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clients(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("client-{i:05}")).collect()
    }

    /// Two-sided binomial check at ~5 standard deviations: fails for a
    /// broken sampler, essentially never for a correct one.
    fn assert_binomial(count: usize, n: usize, p: f64, what: &str) {
        let mean = n as f64 * p;
        let sd = (n as f64 * p * (1.0 - p)).sqrt();
        assert!(
            (count as f64 - mean).abs() <= 5.0 * sd,
            "{what}: {count} of {n}, expected {mean:.1} ± {sd:.1}"
        );
    }

    #[test]
    fn inclusion_frequency_matches_q() {
        let s = KeyedPoissonSampler::new(&[7u8; 32]);
        let ids = clients(20_000);
        for q in [0.01, 0.1, 0.5, 0.9] {
            let n = ids.iter().filter(|c| s.selected("job", 1, 1, c, q)).count();
            assert_binomial(n, ids.len(), q, &format!("q = {q}"));
        }
        // Per-client frequency across many rounds is also q.
        let n = (1..=20_000u64)
            .filter(|&r| s.selected("job", r, 1, "client-00001", 0.2))
            .count();
        assert_binomial(n, 20_000, 0.2, "one client over rounds");
        // q = 1 selects everyone; the draw is never 1.
        assert!(ids.iter().all(|c| s.selected("job", 1, 1, c, 1.0)));
    }

    #[test]
    fn draws_are_uniform() {
        // Chi-square over 20 bins, 40k draws: the 1e-6 tail of χ²(19) is ~62.
        let s = KeyedPoissonSampler::new(b"uniformity");
        let ids = clients(40_000);
        let mut bins = [0usize; 20];
        for c in &ids {
            let u = s.draw("j", 3, 1, c);
            assert!((0.0..1.0).contains(&u));
            bins[(u * 20.0) as usize] += 1;
        }
        let e = ids.len() as f64 / 20.0;
        let chi2: f64 = bins.iter().map(|&b| (b as f64 - e).powi(2) / e).sum();
        assert!(chi2 < 62.0, "chi2 = {chi2:.1}, bins {bins:?}");
    }

    #[test]
    fn rounds_and_attempts_are_independent() {
        // P(in r and in r+1) must be q² for independent rounds; same for
        // two attempts of one round.
        let s = KeyedPoissonSampler::new(&[1u8; 32]);
        let ids = clients(40_000);
        let q = 0.3;
        let both_rounds = ids
            .iter()
            .filter(|c| s.selected("j", 1, 1, c, q) && s.selected("j", 2, 1, c, q))
            .count();
        assert_binomial(both_rounds, ids.len(), q * q, "rounds 1 and 2");
        let both_attempts = ids
            .iter()
            .filter(|c| s.selected("j", 1, 1, c, q) && s.selected("j", 1, 2, c, q))
            .count();
        assert_binomial(both_attempts, ids.len(), q * q, "attempts 1 and 2");
        let both_jobs = ids
            .iter()
            .filter(|c| s.selected("a", 1, 1, c, q) && s.selected("b", 1, 1, c, q))
            .count();
        assert_binomial(both_jobs, ids.len(), q * q, "jobs a and b");
    }

    #[test]
    fn reproducible_with_the_key_after_restart() {
        let dir = tempfile::tempdir().unwrap();
        let key = || {
            use crate::store::Store;
            crate::store::sqlite::SqliteStore::open(dir.path())
                .unwrap()
                .secret(KEY_NAME, &KeyedPoissonSampler::generate_key)
                .unwrap()
        };
        let (k1, k2) = (key(), key());
        assert_eq!(k1, k2, "the key persists in the data directory");
        assert_eq!(k1.len(), KEY_LEN);
        let (a, b) = (KeyedPoissonSampler::new(&k1), KeyedPoissonSampler::new(&k2));
        for c in clients(1000) {
            assert_eq!(
                a.draw("j", 4, 2, &c).to_bits(),
                b.draw("j", 4, 2, &c).to_bits()
            );
        }
    }

    #[test]
    fn unpredictable_without_the_key() {
        // Another key gives a cohort that agrees with the real one no more
        // than chance: |A ∩ B| ~ Binomial(n, q²).
        let real = KeyedPoissonSampler::new(&KeyedPoissonSampler::generate_key());
        let guess = KeyedPoissonSampler::new(&KeyedPoissonSampler::generate_key());
        let ids = clients(40_000);
        let q = 0.2;
        let overlap = ids
            .iter()
            .filter(|c| real.selected("j", 1, 1, c, q) && guess.selected("j", 1, 1, c, q))
            .count();
        assert_binomial(overlap, ids.len(), q * q, "overlap with a guessed key");
        assert_ne!(
            KeyedPoissonSampler::generate_key(),
            KeyedPoissonSampler::generate_key()
        );
    }

    #[test]
    fn inputs_are_unambiguous() {
        let s = KeyedPoissonSampler::new(b"k");
        assert_ne!(s.draw("ab", 1, 1, "c"), s.draw("a", 1, 1, "bc"));
    }
}
