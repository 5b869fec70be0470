//! Streaming aggregation: one f64 running sum per open round, and a bounded
//! pool of per-upload decode buffers.
//!
//! Memory is O(model), independent of the number of clients: a round holds
//! `8·d` bytes of sum, and at most `limits.max_concurrent_uploads` uploads
//! hold a `4·d`-byte decode buffer each; an upload waits for a buffer before
//! it reads its first chunk, so HTTP/2 flow control holds back the bytes of
//! the others. Buffers are recycled, so the steady state allocates nothing.
//!
//! [`RoundSum::add`] re-clips every update to the round's `C` (the
//! coordinator never trusts a client's clipping). It takes a
//! `fedsec_privacy::Measured` update: validation (NaN/Inf) and the norm are
//! computed before the round's lock is taken, so the lock covers one pass
//! of `sum[i] += scale·v[i]`. A rejected update leaves the sum untouched.

use std::sync::{Arc, Mutex};

use fedsec_privacy::{ClipError, Measured};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A pool of decode buffers bounded by a semaphore.
#[derive(Debug, Clone)]
pub struct DecodePool {
    permits: Arc<Semaphore>,
    free: Arc<Mutex<Vec<Vec<f32>>>>,
    size: usize,
}

impl DecodePool {
    /// A pool lending at most `size` buffers at a time.
    pub fn new(size: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(size)),
            free: Arc::new(Mutex::new(Vec::new())),
            size,
        }
    }

    /// Number of buffers that can be lent at once.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Buffers currently lent out.
    pub fn in_use(&self) -> usize {
        self.size - self.permits.available_permits()
    }

    /// Waits for a free slot and returns a zeroed buffer of `dim` values.
    pub async fn acquire(&self, dim: usize) -> DecodeBuffer {
        let permit = match self.permits.clone().acquire_owned().await {
            Ok(p) => p,
            // The semaphore is never closed.
            Err(_) => unreachable!("decode pool semaphore closed"),
        };
        let recycled = self.free.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let mut buf = recycled.unwrap_or_default();
        buf.clear();
        buf.resize(dim, 0.0);
        DecodeBuffer {
            buf,
            _permit: permit,
            free: self.free.clone(),
            keep: self.size,
        }
    }
}

/// A decode buffer lent by a [`DecodePool`]; returned to it on drop.
#[derive(Debug)]
pub struct DecodeBuffer {
    buf: Vec<f32>,
    _permit: OwnedSemaphorePermit,
    free: Arc<Mutex<Vec<Vec<f32>>>>,
    keep: usize,
}

impl std::ops::Deref for DecodeBuffer {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.buf
    }
}

impl std::ops::DerefMut for DecodeBuffer {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.buf
    }
}

impl Drop for DecodeBuffer {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        if free.len() < self.keep {
            free.push(buf);
        }
    }
}

/// What adding one update did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Added {
    /// L2 norm as received.
    pub norm: f64,
    /// Whether the coordinator had to clip it.
    pub clipped: bool,
    /// The adaptive-clipping bit counted for it: the client's claim that its
    /// update was within C, and false whenever the coordinator had to clip.
    pub within_clip: bool,
}

/// Why an update could not be added.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AddError {
    /// NaN or infinity at the given position (caught by `Measured::new`
    /// before the update gets here; kept so the mapping is total).
    #[error("update value {index} is NaN or infinite")]
    NonFinite {
        /// Position of the first offending value.
        index: usize,
    },
    /// Wrong length.
    #[error("update has {actual} values, the model has {expected}")]
    Dimension {
        /// Model dimension.
        expected: usize,
        /// Received.
        actual: usize,
    },
    /// The clip norm is unusable (a bug: it is validated at job creation).
    #[error("invalid clip norm {0}")]
    ClipNorm(f64),
}

/// The running sum of one round attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct RoundSum {
    sum: Vec<f64>,
    accepted: u64,
    clipped: u64,
    within_clip: u64,
}

impl RoundSum {
    /// An empty sum of dimension `dim`.
    pub fn new(dim: usize) -> Self {
        Self {
            sum: vec![0.0; dim],
            accepted: 0,
            clipped: 0,
            within_clip: 0,
        }
    }

    /// Re-clips a validated, measured update to `clip_norm` and adds it in
    /// one pass. On error the sum is unchanged.
    pub fn add(
        &mut self,
        update: &Measured<'_>,
        clip_norm: f64,
        claims_within_clip: bool,
    ) -> Result<Added, AddError> {
        let outcome = update
            .clip_into(clip_norm, &mut self.sum)
            .map_err(|e| match e {
                ClipError::LengthMismatch { expected, actual } => {
                    AddError::Dimension { expected, actual }
                }
                ClipError::InvalidClipNorm(c) => AddError::ClipNorm(c),
                ClipError::NonFinite { index } => AddError::NonFinite { index },
            })?;
        let within = claims_within_clip && !outcome.clipped;
        self.accepted += 1;
        self.clipped += u64::from(outcome.clipped);
        self.within_clip += u64::from(within);
        Ok(Added {
            norm: outcome.norm,
            clipped: outcome.clipped,
            within_clip: within,
        })
    }

    /// Updates added.
    pub fn accepted(&self) -> u64 {
        self.accepted
    }

    /// Updates the coordinator had to clip.
    pub fn clipped(&self) -> u64 {
        self.clipped
    }

    /// Updates counted as within the clip norm (adaptive clipping's count).
    pub fn within_clip(&self) -> u64 {
        self.within_clip
    }

    /// Fraction of added updates that were clipped (0 when none were added).
    pub fn clipped_fraction(&self) -> f64 {
        if self.accepted == 0 {
            0.0
        } else {
            self.clipped as f64 / self.accepted as f64
        }
    }

    /// The sum, consuming the accumulator.
    pub fn into_sum(self) -> Vec<f64> {
        self.sum
    }

    /// The sum so far.
    pub fn sum(&self) -> &[f64] {
        &self.sum
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_are_reclipped_and_wrong_sizes_leave_the_sum_alone() {
        let m = |v: &'static [f32]| Measured::new(v).unwrap();
        let mut s = RoundSum::new(2);
        let a = s.add(&m(&[3.0, 4.0]), 1.0, true).unwrap();
        assert!(a.clipped && !a.within_clip);
        assert!((a.norm - 5.0).abs() < 1e-12);
        let b = s.add(&m(&[0.1, 0.0]), 1.0, true).unwrap();
        assert!(!b.clipped && b.within_clip);
        let before = s.sum().to_vec();
        assert_eq!(
            s.add(&m(&[1.0]), 1.0, true),
            Err(AddError::Dimension {
                expected: 2,
                actual: 1
            })
        );
        assert_eq!(s.sum(), &before[..]);
        assert_eq!((s.accepted(), s.clipped(), s.within_clip()), (2, 1, 1));
        let norm = (s.sum()[0] - 0.1f32 as f64).hypot(s.sum()[1]);
        assert!(norm <= 1.0 && norm > 1.0 - 1e-9, "{norm}");
        assert_eq!(s.clipped_fraction(), 0.5);
    }

    #[tokio::test]
    async fn the_pool_bounds_and_recycles_buffers() {
        let pool = DecodePool::new(2);
        let mut a = pool.acquire(4).await;
        a[0] = 9.0;
        let b = pool.acquire(3).await;
        assert_eq!(pool.in_use(), 2);
        let third =
            tokio::time::timeout(std::time::Duration::from_millis(50), pool.acquire(1)).await;
        assert!(third.is_err(), "a third buffer must wait");
        drop(a);
        let c = pool.acquire(4).await;
        assert_eq!(&c[..], &[0.0; 4], "recycled buffers are zeroed");
        drop((b, c));
        assert_eq!(pool.in_use(), 0);
    }
}
