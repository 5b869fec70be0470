//! Streaming aggregation: one f64 running sum per open round, and a bounded
//! pool of per-upload decode buffers.
//!
//! Memory is O(model), independent of the number of clients: a round holds
//! `8·d` bytes of sum, and at most `limits.max_concurrent_uploads` uploads
//! hold a `4·d`-byte decode buffer each; an upload waits for a buffer before
//! it reads its first chunk, so HTTP/2 flow control holds back the bytes of
//! the others. Buffers are recycled, so the steady state allocates nothing.
//!
//! The sum itself ([`RoundSum`], which re-clips every update) is the round
//! core's (`fedsec_round::accumulate`), re-exported here.

use std::sync::{Arc, Mutex};

pub(crate) use fedsec_round::accumulate::{AddError, Added, RoundSum};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A pool of decode buffers bounded by a semaphore.
#[derive(Debug, Clone)]
pub(crate) struct DecodePool {
    permits: Arc<Semaphore>,
    free: Arc<Mutex<Vec<Vec<f32>>>>,
    size: usize,
}

impl DecodePool {
    /// A pool lending at most `size` buffers at a time.
    pub(crate) fn new(size: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(size)),
            free: Arc::new(Mutex::new(Vec::new())),
            size,
        }
    }

    /// Buffers currently lent out.
    pub(crate) fn in_use(&self) -> usize {
        self.size - self.permits.available_permits()
    }

    /// Waits for a free slot and returns a zeroed buffer of `dim` values.
    pub(crate) async fn acquire(&self, dim: usize) -> DecodeBuffer {
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
pub(crate) struct DecodeBuffer {
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

#[cfg(test)]
mod tests {
    use super::*;

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
