//! Random bits for the exact sampler, and exact comparisons of a lazily drawn
//! uniform number with rationals.
//!
//! [`Bits`] hands out exactly as many bits of a 64-bit word stream as each
//! decision needs (the ChaCha20 stream is the expensive part of a sample), and
//! counts the words it used. A uniform real `U ∈ [0, 1)` is never
//! materialised: its binary expansion is drawn [`CHUNK`] bits at a time, only
//! until the comparison is decided. Every comparison is between integers, so
//! the probability of every outcome is exactly the rational it stands for.
//!
//! [`Threshold`] is a number in `[0, 1]` given by its first 64 bits and the
//! exact rational remainder; comparing against it costs [`CHUNK`] bits unless
//! the drawn chunk ties the threshold's (probability `2^−CHUNK`).

use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::Rng;

/// Bits of `U` drawn per comparison step. 8 bits: a tie (and a second step)
/// has probability 1/256, and all exact arithmetic stays within `u128` for
/// denominators below `2^(128 − CHUNK)`.
pub(crate) const CHUNK: u32 = 8;
const CHUNK_MASK: u64 = (1 << CHUNK) - 1;

/// Largest denominator the exact comparisons accept (`2^(128 − CHUNK)`, excluded).
pub(crate) const MAX_DEN: u128 = 1 << (128 - CHUNK);

/// A stream of uniformly random 64-bit words.
pub(crate) trait WordSource {
    /// The next word.
    fn next_word(&mut self) -> u64;
}

impl WordSource for ChaCha20Rng {
    #[inline]
    fn next_word(&mut self) -> u64 {
        self.next_u64()
    }
}

/// A pool of random bits over a [`WordSource`].
#[derive(Debug, Clone)]
pub(crate) struct Bits<R> {
    src: R,
    buf: u64,
    avail: u32,
    words: u64,
    /// Trials started by the sampler (statistics).
    pub(crate) trials: u64,
    /// Trials that went to the tail (statistics).
    pub(crate) tail_trials: u64,
}

impl<R: WordSource> Bits<R> {
    /// A pool drawing from `src`.
    pub(crate) fn new(src: R) -> Self {
        Self {
            src,
            buf: 0,
            avail: 0,
            words: 0,
            trials: 0,
            tail_trials: 0,
        }
    }

    /// Words taken from the source so far.
    pub(crate) fn words(&self) -> u64 {
        self.words
    }

    /// The underlying source.
    pub(crate) fn source_mut(&mut self) -> &mut R {
        &mut self.src
    }

    /// Forgets the buffered bits (they held randomness that decided noise).
    pub(crate) fn clear(&mut self) {
        self.buf = 0;
        self.avail = 0;
    }

    #[inline]
    fn refill(&mut self) -> u64 {
        self.words += 1;
        self.src.next_word()
    }

    /// `k` fresh uniform bits as an integer in `[0, 2^k)`, `1 ≤ k ≤ 64`.
    #[inline]
    pub(crate) fn take(&mut self, k: u32) -> u64 {
        debug_assert!((1..=64).contains(&k));
        if k <= self.avail {
            let v = self.buf & mask(k);
            self.buf = self.buf.checked_shr(k).unwrap_or(0);
            self.avail -= k;
            v
        } else {
            let have = self.avail;
            let lo = self.buf;
            let w = self.refill();
            let need = k - have;
            let v = lo | ((w & mask(need)) << have);
            self.buf = w.checked_shr(need).unwrap_or(0);
            self.avail = 64 - need;
            v
        }
    }

    /// One fair bit.
    #[inline]
    pub(crate) fn bit(&mut self) -> bool {
        self.take(1) == 1
    }

    /// Number of 0 bits before the first 1: `P(g) = 2^−(g+1)`, `g ≥ 0`.
    #[inline]
    pub(crate) fn geometric(&mut self) -> u64 {
        let mut g = 0u64;
        loop {
            if self.avail == 0 {
                self.buf = self.refill();
                self.avail = 64;
            }
            let tz = self.buf.trailing_zeros();
            if tz < self.avail {
                g += u64::from(tz);
                // consume the zeros and the one
                self.buf = self.buf.checked_shr(tz + 1).unwrap_or(0);
                self.avail -= tz + 1;
                return g;
            }
            g += u64::from(self.avail);
            self.buf = 0;
            self.avail = 0;
        }
    }

    /// Uniform in `[0, n)`, exactly (rejection of out-of-range bit strings),
    /// `n ≥ 1`. Uses no bits for `n = 1`.
    #[inline]
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n >= 1);
        if n == 1 {
            return 0;
        }
        let k = 64 - (n - 1).leading_zeros();
        loop {
            let v = self.take(k);
            if v < n {
                return v;
            }
        }
    }

    /// `Bernoulli(num/den)` for `num ≤ den`, exactly: `U < num/den` with `U`
    /// drawn [`CHUNK`] bits at a time. `0 < den < MAX_DEN`.
    pub(crate) fn lt_ratio(&mut self, mut num: u128, den: u128) -> bool {
        debug_assert!(den > 0 && den < MAX_DEN);
        if num >= den {
            return true;
        }
        loop {
            if num == 0 {
                return false;
            }
            // U = (u + V)/2^C with V uniform in [0, 1): compare u + V with num·2^C/den.
            let u = u128::from(self.take(CHUNK));
            let lhs = u * den;
            let rhs = num << CHUNK;
            if lhs + den <= rhs {
                return true;
            }
            if lhs >= rhs {
                return false;
            }
            // u < num·2^C/den < u + 1: V against the fractional part.
            num = rhs - lhs;
        }
    }

    /// `U < θ` for a [`Threshold`] `θ`, exactly.
    #[inline]
    pub(crate) fn lt(&mut self, th: &Threshold) -> bool {
        self.lt_from(th, 64)
    }

    /// `U < θ` when the first `64 − shift` bits of `U` (a multiple of
    /// [`CHUNK`]) are known to equal those of `θ`'s prefix: compares the rest.
    pub(crate) fn lt_from(&mut self, th: &Threshold, mut shift: u32) -> bool {
        while shift > 0 {
            shift -= CHUNK;
            let c = (th.prefix >> shift) & CHUNK_MASK;
            let u = self.take(CHUNK);
            if u != c {
                return u < c;
            }
        }
        self.lt_ratio(u128::from(th.rem), u128::from(th.den))
    }

    /// `Bernoulli(ln 2)`: draw `k ≥ 1` with `P(k) = 2^−k`, then
    /// `Bernoulli(1/k)`; `Σ 2^−k/k = ln 2`.
    #[inline]
    pub(crate) fn bern_ln2(&mut self) -> bool {
        // k = 1 and k = 2 from three bits (the bits not looked at are
        // discarded, which never depends on their values).
        let r = self.take(3);
        if r & 1 == 1 {
            return true; // k = 1: Bernoulli(1/1)
        }
        if r & 2 == 2 {
            return r & 4 == 0; // k = 2: Bernoulli(1/2)
        }
        let k = self.geometric().saturating_add(3);
        self.below(k) == 0
    }
}

#[inline]
fn mask(k: u32) -> u64 {
    if k >= 64 { u64::MAX } else { (1u64 << k) - 1 }
}

/// A number in `[0, 1]`: `(prefix + rem/den) / 2^64`, `rem ≤ den`, `den > 0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Threshold {
    prefix: u64,
    rem: u64,
    den: u64,
}

impl Threshold {
    /// The threshold `num/den` (`num ≤ den`, `0 < den < 2^64`).
    pub(crate) fn new(num: u64, den: u64) -> Self {
        assert!(
            den > 0 && num <= den,
            "threshold {num}/{den} is not in [0, 1]"
        );
        if num == den {
            // 1 = (2^64 − 1 + 1)/2^64: the remainder term is den/den.
            return Self {
                prefix: u64::MAX,
                rem: den,
                den,
            };
        }
        let scaled = u128::from(num) << 64;
        let d = u128::from(den);
        // num < den, so the quotient is < 2^64 and the remainder < den.
        Self {
            prefix: (scaled / d) as u64,
            rem: (scaled % d) as u64,
            den,
        }
    }

    /// The exact value `num/den` the threshold was built from (tests).
    #[cfg(test)]
    pub(crate) fn ratio_for_tests(&self) -> (u128, u128) {
        if self.is_one() {
            return (u128::from(self.den), u128::from(self.den));
        }
        let d = u128::from(self.den);
        // prefix = floor(num·2^64/den), rem = num·2^64 mod den
        let scaled = (u128::from(self.prefix) * d + u128::from(self.rem)) >> 64;
        (scaled, d)
    }

    /// The first [`CHUNK`] bits of the threshold, for a first comparison
    /// step done by the caller: `−1` for exactly 0 (no chunk is below it) and
    /// `2^CHUNK` for exactly 1 (every chunk is below it), so that a tie with
    /// the returned value always means "continue with [`Bits::lt_from`]".
    pub(crate) fn first_chunk(&self) -> i16 {
        if self.is_zero() {
            -1
        } else if self.is_one() {
            1 << CHUNK
        } else {
            (self.prefix >> (64 - CHUNK)) as i16
        }
    }

    /// Whether the threshold is exactly 0 (`U < θ` never holds).
    pub(crate) fn is_zero(&self) -> bool {
        self.prefix == 0 && self.rem == 0
    }

    /// Whether the threshold is exactly 1 (`U < θ` always holds).
    pub(crate) fn is_one(&self) -> bool {
        self.prefix == u64::MAX && self.rem == self.den
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rand::SeedableRng;

    /// A word source replaying a fixed list, then zeros.
    #[derive(Debug, Clone)]
    pub(crate) struct Script(pub(crate) Vec<u64>, pub(crate) usize);

    impl WordSource for Script {
        fn next_word(&mut self) -> u64 {
            let w = self.0.get(self.1).copied().unwrap_or(0);
            self.1 += 1;
            w
        }
    }

    pub(crate) fn seeded(seed: u64) -> Bits<ChaCha20Rng> {
        Bits::new(ChaCha20Rng::seed_from_u64(seed))
    }

    #[test]
    fn take_reads_the_stream_in_order_across_word_boundaries() {
        let words = vec![
            0x0123_4567_89ab_cdef,
            0xfedc_ba98_7654_3210,
            0xdead_beef_0bad_f00d,
        ];
        let mut b = Bits::new(Script(words.clone(), 0));
        // Reassemble the 192-bit stream from odd-sized takes.
        let mut got: u128 = 0;
        let mut pos = 0;
        for k in [3u32, 7, 13, 29, 41, 5, 20] {
            got |= u128::from(b.take(k)) << pos;
            pos += k;
        }
        assert_eq!(pos, 118);
        let want = (u128::from(words[1]) << 64 | u128::from(words[0])) & ((1u128 << 118) - 1);
        assert_eq!(got, want);
        assert_eq!(b.words(), 2);
        assert_eq!(b.take(64), (words[1] >> 54) | (words[2] << 10));
    }

    #[test]
    fn geometric_counts_zeros_across_words() {
        // bit 0 of word 0 is 1 → 0; then 63 zeros, word 1 all zero, bit 5 of word 2.
        let mut b = Bits::new(Script(vec![1, 0, 1 << 5, u64::MAX], 0));
        assert_eq!(b.geometric(), 0);
        assert_eq!(b.geometric(), 63 + 64 + 5);
        // the rest of word 2 is 58 zeros, then bit 0 of word 3 is a one
        assert_eq!(b.geometric(), 58);
    }

    #[test]
    fn geometric_and_below_have_the_right_law() {
        let mut b = seeded(1);
        let n = 400_000;
        let mut hist = [0u64; 4];
        let mut small = [0u64; 3];
        for _ in 0..n {
            let g = b.geometric();
            hist[g.min(3) as usize] += 1;
            small[b.below(3) as usize] += 1;
        }
        let expect = [0.5, 0.25, 0.125, 0.125];
        for (h, p) in hist.iter().zip(expect) {
            let sd = (n as f64 * p * (1.0 - p)).sqrt();
            assert!((*h as f64 - n as f64 * p).abs() < 6.0 * sd, "{hist:?}");
        }
        for s in small {
            let p = 1.0 / 3.0;
            let sd = (n as f64 * p * (1.0 - p)).sqrt();
            assert!((s as f64 - n as f64 * p).abs() < 6.0 * sd, "{small:?}");
        }
    }

    #[test]
    fn ratio_comparisons_are_exact_on_every_tie_path() {
        // U's first chunk equals floor(r·2^8) exactly, forcing the tie path.
        // r = 1/3: binary 0.0101 0101 …; the first 8 bits are 0x55.
        // Next chunk 0x55 again (tie), then 0x54 (< 0x55 → U < r) or 0x56 (>).
        let words = |second: u64| vec![0x55 | (0x55 << 8) | (second << 16)];
        assert!(Bits::new(Script(words(0x54), 0)).lt_ratio(1, 3));
        assert!(!Bits::new(Script(words(0x56), 0)).lt_ratio(1, 3));
        // r = 1/2 exactly: first chunk 0x80 means U ≥ 1/2.
        assert!(!Bits::new(Script(vec![0x80], 0)).lt_ratio(1, 2));
        assert!(Bits::new(Script(vec![0x7f], 0)).lt_ratio(1, 2));
        // Degenerate ratios use no bits.
        let mut b = Bits::new(Script(vec![], 0));
        assert!(b.lt_ratio(5, 5));
        assert!(!b.lt_ratio(0, 5));
        assert_eq!(b.words(), 0);
    }

    #[test]
    fn thresholds_compare_through_prefix_and_remainder() {
        // θ = 1/3: prefix 0x5555…5, remainder 1/3. A stream equal to the
        // prefix for all 64 bits must fall through to the remainder.
        let th = Threshold::new(1, 3);
        let p = 0x5555_5555_5555_5555u64;
        // take() reads LSB first, and lt() compares chunks from the top of the
        // prefix: feed the chunks in that order.
        let mut w = 0u64;
        for i in 0..8 {
            w |= ((p >> (56 - 8 * i)) & 0xff) << (8 * i);
        }
        assert!(Bits::new(Script(vec![w, 0x54], 0)).lt(&th));
        assert!(!Bits::new(Script(vec![w, 0x56], 0)).lt(&th));
        assert!(Threshold::new(0, 7).is_zero());
        assert!(Threshold::new(7, 7).is_one());
        let one = Threshold::new(7, 7);
        assert!(Bits::new(Script(vec![u64::MAX, u64::MAX], 0)).lt(&one));
        let zero = Threshold::new(0, 7);
        assert!(!Bits::new(Script(vec![0, 0], 0)).lt(&zero));
    }

    #[test]
    fn comparisons_have_the_right_frequencies() {
        let mut b = seeded(2);
        let n = 200_000u64;
        for (num, den) in [(1u64, 3u64), (2, 7), (999_999, 1_000_000), (1, 1 << 40)] {
            let th = Threshold::new(num, den);
            let p = num as f64 / den as f64;
            let (mut a, mut c) = (0u64, 0u64);
            for _ in 0..n {
                a += u64::from(b.lt(&th));
                c += u64::from(b.lt_ratio(u128::from(num), u128::from(den)));
            }
            let sd = (n as f64 * p * (1.0 - p)).sqrt().max(1.0);
            for k in [a, c] {
                assert!(
                    (k as f64 - n as f64 * p).abs() < 6.0 * sd,
                    "{num}/{den}: {k}"
                );
            }
        }
    }

    #[test]
    fn bern_ln2_has_probability_ln2() {
        let mut b = seeded(3);
        let n = 400_000;
        let k = (0..n).filter(|_| b.bern_ln2()).count() as f64;
        let p = std::f64::consts::LN_2;
        let sd = (n as f64 * p * (1.0 - p)).sqrt();
        assert!((k - n as f64 * p).abs() < 6.0 * sd, "{k}");
    }
}
