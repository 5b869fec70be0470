//! Tensors on the wire: little-endian f32 bytes in chunks of at most
//! [`MAX_CHUNK_BYTES`], with a SHA-256 digest of the whole payload.
//!
//! The chunking rule a receiver enforces is the one the `.proto` states:
//! every chunk is a whole number of f32 values, at most [`MAX_CHUNK_BYTES`]
//! (1 MiB), and at least [`MIN_CHUNK_BYTES`] (64 KiB) unless it is the
//! chunk that completes the tensor. Any sender chunking at a fixed size
//! between 64 KiB and 1 MiB therefore satisfies it for every dimension, and
//! a tensor of `d` values arrives in at most `⌈4d / 65536⌉` chunks: a sender
//! trickling tiny (or empty) chunks is refused at its first such chunk.
//!
//! Encoding borrows the caller's slice (no copy on little-endian hosts until
//! the chunk is handed to the transport); decoding writes each chunk straight
//! into a caller-provided `&mut [f32]` while hashing it, so a receiver needs
//! exactly one buffer of the declared dimension and nothing per element.
//!
//! The digest is SHA-256 (FIPS 180-4) over the concatenated little-endian
//! bytes, in order. SHA-256 was chosen over BLAKE3 because every language's
//! standard library has it; with SHA-NI it hashes at several GB/s, well above
//! what one gRPC stream carries.

use bytes::Bytes;
use sha2::{Digest, Sha256};

/// Largest chunk a sender may emit and a receiver accepts: 1 MiB.
pub const MAX_CHUNK_BYTES: usize = 1 << 20;

/// Number of f32 values in a full chunk.
pub const CHUNK_VALUES: usize = MAX_CHUNK_BYTES / 4;

/// Smallest chunk a receiver accepts, except the chunk that completes the
/// tensor (which may be shorter): 64 KiB.
pub const MIN_CHUNK_BYTES: usize = 64 << 10;

/// Most chunks a conforming sender needs for a tensor of `dim` values:
/// `⌈4·dim / MIN_CHUNK_BYTES⌉` (at least 1 for a non-empty tensor).
pub fn max_chunks(dim: usize) -> usize {
    dim.saturating_mul(4).div_ceil(MIN_CHUNK_BYTES)
}

/// Length of a digest in bytes.
pub const DIGEST_LEN: usize = 32;

/// A SHA-256 digest of a tensor's bytes.
pub type TensorDigest = [u8; DIGEST_LEN];

/// Why a received tensor was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TensorError {
    /// A chunk whose length is not a multiple of 4 bytes.
    #[error("tensor chunk of {len} bytes is not a whole number of f32 values")]
    UnalignedChunk {
        /// Length of the offending chunk in bytes.
        len: usize,
    },
    /// A chunk larger than [`MAX_CHUNK_BYTES`].
    #[error("tensor chunk of {len} bytes exceeds the {max}-byte limit")]
    ChunkTooLarge {
        /// Length of the offending chunk in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// More values arrived than the declared dimension.
    #[error("tensor has more than the declared {declared} values")]
    TooLong {
        /// Declared number of values.
        declared: usize,
    },
    /// The stream ended before the declared dimension was reached.
    #[error("tensor ended after {received} of the declared {declared} values")]
    TooShort {
        /// Declared number of values.
        declared: usize,
        /// Values received.
        received: usize,
    },
    /// A chunk below [`MIN_CHUNK_BYTES`] (empty ones included) that does
    /// not complete the tensor.
    #[error(
        "tensor chunk of {len} bytes is below the {min}-byte minimum and does not complete the tensor ({remaining} bytes remain); chunk at 64 KiB to 1 MiB"
    )]
    ChunkTooSmall {
        /// Length of the offending chunk in bytes.
        len: usize,
        /// The minimum.
        min: usize,
        /// Bytes of the tensor still missing after this chunk.
        remaining: usize,
    },
    /// A digest that is not 32 bytes long.
    #[error("digest is {len} bytes, expected {DIGEST_LEN}")]
    BadDigestLength {
        /// Length received.
        len: usize,
    },
    /// The digest does not match the received bytes.
    #[error("tensor digest does not match its contents")]
    DigestMismatch,
}

/// SHA-256 of the little-endian bytes of `values`.
pub fn digest(values: &[f32]) -> TensorDigest {
    let mut hasher = Sha256::new();
    for chunk in values.chunks(CHUNK_VALUES) {
        hash_values(&mut hasher, chunk);
    }
    hasher.finalize().into()
}

/// Splits `values` into chunks of at most [`MAX_CHUNK_BYTES`] little-endian bytes.
///
/// An empty tensor yields no chunks. Each item is an owned [`Bytes`] ready to
/// be placed in a `TensorChunk`; the iterator is lazy, so a sender holds at most
/// one chunk beyond the source slice.
pub fn encode_chunks(values: &[f32]) -> impl Iterator<Item = Bytes> + '_ {
    values.chunks(CHUNK_VALUES).map(le_bytes)
}

/// Little-endian bytes of `values` as one buffer.
pub fn le_bytes(values: &[f32]) -> Bytes {
    if cfg!(target_endian = "little") {
        Bytes::copy_from_slice(bytemuck::cast_slice(values))
    } else {
        let mut out = Vec::with_capacity(values.len() * 4);
        for v in values {
            out.extend_from_slice(&v.to_le_bytes());
        }
        Bytes::from(out)
    }
}

/// Decodes chunks of one tensor into a caller-provided buffer, hashing as it goes.
///
/// ```
/// use fedsec_proto::tensor::{digest, encode_chunks, TensorDecoder};
/// let values = vec![1.5f32, -2.0, 3.25];
/// let mut out = vec![0f32; values.len()];
/// let mut dec = TensorDecoder::new(&mut out);
/// for chunk in encode_chunks(&values) {
///     dec.push(&chunk)?;
/// }
/// dec.finish(&digest(&values))?;
/// assert_eq!(out, values);
/// # Ok::<(), fedsec_proto::tensor::TensorError>(())
/// ```
#[derive(Debug)]
pub struct TensorDecoder<'a> {
    dst: &'a mut [f32],
    filled: usize,
    chunks: usize,
    hasher: Sha256,
}

impl<'a> TensorDecoder<'a> {
    /// A decoder filling `dst`, whose length is the declared dimension.
    pub fn new(dst: &'a mut [f32]) -> Self {
        Self {
            dst,
            filled: 0,
            chunks: 0,
            hasher: Sha256::new(),
        }
    }

    /// Number of chunks accepted so far (at most [`max_chunks`] of the dimension).
    pub fn chunks(&self) -> usize {
        self.chunks
    }

    /// Number of values received so far.
    pub fn received(&self) -> usize {
        self.filled
    }

    /// Appends one chunk. On error nothing of this chunk is written.
    ///
    /// Refused: a chunk over [`MAX_CHUNK_BYTES`], not a whole number of f32
    /// values, past the declared dimension (any chunk, even an empty one,
    /// after the tensor is complete), or below [`MIN_CHUNK_BYTES`] without
    /// completing the tensor.
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), TensorError> {
        if chunk.len() > MAX_CHUNK_BYTES {
            return Err(TensorError::ChunkTooLarge {
                len: chunk.len(),
                max: MAX_CHUNK_BYTES,
            });
        }
        if !chunk.len().is_multiple_of(4) {
            return Err(TensorError::UnalignedChunk { len: chunk.len() });
        }
        let n = chunk.len() / 4;
        let end = self
            .filled
            .checked_add(n)
            .filter(|&end| end <= self.dst.len() && self.filled < self.dst.len())
            .ok_or(TensorError::TooLong {
                declared: self.dst.len(),
            })?;
        if chunk.len() < MIN_CHUNK_BYTES && end < self.dst.len() {
            return Err(TensorError::ChunkTooSmall {
                len: chunk.len(),
                min: MIN_CHUNK_BYTES,
                remaining: (self.dst.len() - end) * 4,
            });
        }
        let dst = &mut self.dst[self.filled..end];
        if cfg!(target_endian = "little") {
            bytemuck::cast_slice_mut::<f32, u8>(dst).copy_from_slice(chunk);
        } else {
            for (d, b) in dst.iter_mut().zip(chunk.chunks_exact(4)) {
                *d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        self.hasher.update(chunk);
        self.filled = end;
        self.chunks += 1;
        Ok(())
    }

    /// Checks that the declared dimension was reached and that `expected`
    /// is the SHA-256 of everything received.
    pub fn finish(self, expected: &[u8]) -> Result<(), TensorError> {
        if self.filled != self.dst.len() {
            return Err(TensorError::TooShort {
                declared: self.dst.len(),
                received: self.filled,
            });
        }
        if expected.len() != DIGEST_LEN {
            return Err(TensorError::BadDigestLength {
                len: expected.len(),
            });
        }
        let actual: TensorDigest = self.hasher.finalize().into();
        if actual.as_slice() != expected {
            return Err(TensorError::DigestMismatch);
        }
        Ok(())
    }
}

fn hash_values(hasher: &mut Sha256, values: &[f32]) {
    if cfg!(target_endian = "little") {
        hasher.update(bytemuck::cast_slice::<f32, u8>(values));
    } else {
        for v in values {
            hasher.update(v.to_le_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn roundtrip(values: &[f32]) -> Vec<f32> {
        let mut out = vec![0f32; values.len()];
        let mut dec = TensorDecoder::new(&mut out);
        for chunk in encode_chunks(values) {
            assert!(chunk.len() <= MAX_CHUNK_BYTES);
            dec.push(&chunk).expect("valid chunk");
        }
        dec.finish(&digest(values)).expect("valid digest");
        out
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    fn pseudo_random(n: usize, seed: u64) -> Vec<f32> {
        use rand::{RngExt, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        // Arbitrary bit patterns, NaNs and infinities included: the codec
        // must carry them bit-exactly (validation is the receiver's job).
        (0..n)
            .map(|_| f32::from_bits(rng.random::<u32>()))
            .collect()
    }

    #[test]
    fn roundtrip_the_named_sizes_bit_exactly() {
        for (i, n) in [0usize, 1, 262_144, 1_000_003].into_iter().enumerate() {
            let v = pseudo_random(n, i as u64);
            assert_eq!(bits(&roundtrip(&v)), bits(&v), "n = {n}");
        }
    }

    #[test]
    fn chunk_counts_follow_the_1_mib_limit() {
        assert_eq!(encode_chunks(&[]).count(), 0);
        assert_eq!(encode_chunks(&vec![0.0; CHUNK_VALUES]).count(), 1);
        assert_eq!(encode_chunks(&vec![0.0; CHUNK_VALUES + 1]).count(), 2);
        assert_eq!(encode_chunks(&vec![0.0; 1_000_003]).count(), 4);
    }

    proptest! {
        #[test]
        fn roundtrip_any_vector(v in proptest::collection::vec(any::<u32>(), 0..5000)) {
            let v: Vec<f32> = v.into_iter().map(f32::from_bits).collect();
            prop_assert_eq!(bits(&roundtrip(&v)), bits(&v));
        }

        #[test]
        fn roundtrip_any_chunking_between_64_kib_and_1_mib(
            len in 1usize..200_000,
            chunk_values in (MIN_CHUNK_BYTES / 4)..=CHUNK_VALUES,
            seed in any::<u64>(),
        ) {
            let v = pseudo_random(len, seed);
            let mut out = vec![0f32; v.len()];
            let mut dec = TensorDecoder::new(&mut out);
            for c in v.chunks(chunk_values) {
                dec.push(&le_bytes(c)).unwrap();
            }
            prop_assert!(dec.chunks() <= max_chunks(len));
            dec.finish(&digest(&v)).unwrap();
            prop_assert_eq!(bits(&out), bits(&v));
        }
    }

    #[test]
    fn every_fixed_chunking_from_64_kib_to_1_mib_is_accepted_at_every_size() {
        let sizes = [1usize, 16_383, 16_384, 16_385, 262_145, 1_000_003];
        let chunk_bytes = [
            MIN_CHUNK_BYTES,
            MIN_CHUNK_BYTES + 4,
            100_000,
            256 << 10,
            MAX_CHUNK_BYTES - 4,
            MAX_CHUNK_BYTES,
        ];
        for (i, &d) in sizes.iter().enumerate() {
            let v = pseudo_random(d, i as u64);
            for &cb in &chunk_bytes {
                let mut out = vec![0f32; d];
                let mut dec = TensorDecoder::new(&mut out);
                for c in v.chunks(cb / 4) {
                    dec.push(&le_bytes(c))
                        .unwrap_or_else(|e| panic!("d = {d}, chunk {cb}: {e}"));
                }
                assert!(dec.chunks() <= max_chunks(d), "d = {d}, chunk {cb}");
                dec.finish(&digest(&v)).unwrap();
                assert_eq!(bits(&out), bits(&v), "d = {d}, chunk {cb}");
            }
        }
        assert_eq!(max_chunks(1), 1);
        assert_eq!(max_chunks(16_384), 1);
        assert_eq!(max_chunks(16_385), 2);
    }

    #[test]
    fn unaligned_chunk_is_rejected() {
        let mut out = vec![0f32; 4];
        let mut dec = TensorDecoder::new(&mut out);
        assert_eq!(
            dec.push(&[0u8; 6]),
            Err(TensorError::UnalignedChunk { len: 6 })
        );
    }

    #[test]
    fn oversized_chunk_is_rejected() {
        let mut out = vec![0f32; CHUNK_VALUES * 2];
        let mut dec = TensorDecoder::new(&mut out);
        let big = vec![0u8; MAX_CHUNK_BYTES + 4];
        assert_eq!(
            dec.push(&big),
            Err(TensorError::ChunkTooLarge {
                len: MAX_CHUNK_BYTES + 4,
                max: MAX_CHUNK_BYTES
            })
        );
    }

    #[test]
    fn too_many_values_are_rejected_without_writing() {
        let m = MIN_CHUNK_BYTES / 4;
        let mut out = vec![7f32; m + 3];
        let mut dec = TensorDecoder::new(&mut out);
        dec.push(&le_bytes(&vec![1.0; m])).unwrap();
        assert_eq!(
            dec.push(&le_bytes(&[3.0; 4])),
            Err(TensorError::TooLong { declared: m + 3 })
        );
        assert_eq!(dec.received(), m);
        drop(dec);
        assert_eq!(out[m - 1..], [1.0, 7.0, 7.0, 7.0]);
    }

    #[test]
    fn too_few_values_are_rejected() {
        let v = vec![1.0f32; MIN_CHUNK_BYTES / 4];
        let mut out = vec![0f32; v.len() + 1];
        let mut dec = TensorDecoder::new(&mut out);
        dec.push(&le_bytes(&v)).unwrap();
        assert_eq!(
            dec.finish(&digest(&v)),
            Err(TensorError::TooShort {
                declared: v.len() + 1,
                received: v.len()
            })
        );
    }

    #[test]
    fn small_chunks_that_do_not_complete_the_tensor_are_rejected() {
        // A trickle of tiny chunks is refused at its first chunk...
        let mut out = vec![0f32; 100];
        let mut dec = TensorDecoder::new(&mut out);
        assert_eq!(
            dec.push(&le_bytes(&[1.0])),
            Err(TensorError::ChunkTooSmall {
                len: 4,
                min: MIN_CHUNK_BYTES,
                remaining: 396
            })
        );
        // ... and so is an empty one.
        assert!(matches!(
            dec.push(&[]),
            Err(TensorError::ChunkTooSmall { len: 0, .. })
        ));
        assert_eq!(dec.received(), 0);
        // A short chunk that completes the tensor is its last chunk: fine.
        dec.push(&le_bytes(&[1.0; 100])).unwrap();
        // Nothing may follow a complete tensor, not even an empty chunk.
        assert_eq!(dec.push(&[]), Err(TensorError::TooLong { declared: 100 }));
        // A large tensor: full chunks, then a short one that does not complete it.
        let d = 3 * CHUNK_VALUES;
        let mut out = vec![0f32; d];
        let mut dec = TensorDecoder::new(&mut out);
        dec.push(&vec![0u8; MAX_CHUNK_BYTES]).unwrap();
        dec.push(&vec![0u8; MIN_CHUNK_BYTES]).unwrap();
        assert!(matches!(
            dec.push(&vec![0u8; MIN_CHUNK_BYTES - 4]),
            Err(TensorError::ChunkTooSmall { .. })
        ));
        assert_eq!(dec.chunks(), 2);
    }

    #[test]
    fn digest_mismatch_is_rejected() {
        let v = [1.0f32, 2.0, 3.0];
        let mut out = vec![0f32; 3];
        let mut dec = TensorDecoder::new(&mut out);
        dec.push(&le_bytes(&v)).unwrap();
        let mut wrong = digest(&v);
        wrong[0] ^= 1;
        assert_eq!(dec.finish(&wrong), Err(TensorError::DigestMismatch));
    }

    #[test]
    fn short_digest_is_rejected() {
        let mut out: Vec<f32> = vec![];
        let dec = TensorDecoder::new(&mut out);
        assert_eq!(
            dec.finish(&[0u8; 16]),
            Err(TensorError::BadDigestLength { len: 16 })
        );
    }

    #[test]
    fn digest_is_sha256_of_little_endian_bytes() {
        // SHA-256 of the 4 bytes 00 00 80 3f (1.0f32 little-endian), from
        // Python's hashlib.
        assert_eq!(
            hex::encode(digest(&[1.0])),
            "e00e5eb9444182f352323374ef4e08ebcb784725fdd4fd612d7730540b3e0c8c"
        );
        // Chunking does not change the digest.
        let v: Vec<f32> = (0..CHUNK_VALUES + 3).map(|i| i as f32).collect();
        let mut h = Sha256::new();
        h.update(le_bytes(&v));
        let whole: TensorDigest = h.finalize().into();
        assert_eq!(digest(&v), whole);
    }
}
