//! FFT plans shared by every accounting call of the process.
//!
//! Planning a transform of length `N` computes its `N` twiddle factors (a
//! sine and a cosine each) and costs several times the transform itself at
//! the lengths the accountant uses (10⁴–10⁶). One call needs about ten
//! lengths, and a job asks the same question again every round (and
//! calibration asks it ~20 times), so the plans are kept between calls:
//! the most recently used, at most [`MAX_CACHED_PLANS`] lengths of at most
//! [`MAX_CACHED_POINTS`] points in total. A plan holds about `N` complex
//! twiddles per direction, so the cache stays of the order of
//! `2 · 16 B · MAX_CACHED_POINTS` = 64 MiB at most; lengths beyond that
//! are planned per call and not kept.

use std::sync::{Arc, Mutex, PoisonError};

use rustfft::{Fft, FftPlanner};

/// A planned transform.
pub(crate) type Plan = Arc<dyn Fft<f64>>;

/// Most points (sum of the lengths) the cache holds.
const MAX_CACHED_POINTS: usize = 1 << 21;
/// Most lengths the cache holds.
const MAX_CACHED_PLANS: usize = 32;

/// `(length, forward, inverse)`, least recently used first.
static CACHE: Mutex<Vec<(usize, Plan, Plan)>> = Mutex::new(Vec::new());

/// The forward and inverse plans of length `len`, from the cache or newly
/// planned (and cached if they fit).
pub(crate) fn get(len: usize) -> (Plan, Plan) {
    {
        // A panic elsewhere while the lock was held cannot leave the list
        // inconsistent (every update is a single push or remove): go on.
        let mut cache = CACHE.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(pos) = cache.iter().position(|(n, _, _)| *n == len) {
            let entry = cache.remove(pos);
            let plans = (Arc::clone(&entry.1), Arc::clone(&entry.2));
            cache.push(entry);
            return plans;
        }
    }
    // Planned without the lock: other calls need not wait for it.
    let mut planner = FftPlanner::new();
    let (fwd, inv) = (planner.plan_fft_forward(len), planner.plan_fft_inverse(len));
    if len <= MAX_CACHED_POINTS {
        let mut cache = CACHE.lock().unwrap_or_else(PoisonError::into_inner);
        if !cache.iter().any(|(n, _, _)| *n == len) {
            cache.push((len, Arc::clone(&fwd), Arc::clone(&inv)));
        }
        while cache.len() > MAX_CACHED_PLANS
            || cache.iter().map(|(n, _, _)| n).sum::<usize>() > MAX_CACHED_POINTS
        {
            cache.remove(0);
        }
    }
    (fwd, inv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_plans_are_reused_and_bounded() {
        let (f1, i1) = get(4608);
        let (f2, i2) = get(4608);
        assert!(Arc::ptr_eq(&f1, &f2) && Arc::ptr_eq(&i1, &i2));
        assert_eq!(f1.len(), 4608);
        // Far more lengths than the cache holds: it stays within its bounds
        // (other tests may use it at the same time, so only bounds are checked).
        for len in 1..=3 * MAX_CACHED_PLANS {
            let _ = get(len * 6);
        }
        let cache = CACHE.lock().unwrap_or_else(PoisonError::into_inner);
        assert!(cache.len() <= MAX_CACHED_PLANS);
        assert!(cache.iter().map(|(n, _, _)| n).sum::<usize>() <= MAX_CACHED_POINTS);
    }
}
