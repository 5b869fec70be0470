//! Drawing one value: rejection from the dyadic block envelope, with exact
//! Bernoulli factories for the acceptance `2^−y`.
//!
//! One trial (for `|z|`):
//! 1. pick a block (or the tail) from the alias table: `P(i) ∝ 2^s·2^−eᵢ`;
//! 2. *coarse* acceptance with probability `2^−(x(i·2^s) − eᵢ)`, a constant
//!    per block, decided before any low-order bit is drawn;
//! 3. draw the offset `b` (`s` raw bits), `z = i·2^s + b`;
//! 4. *fine* acceptance with probability `2^−(x(z) − x(i·2^s))`, a small
//!    exponent (blocks are ~σ/64 wide), so one comparison usually decides.
//!
//! Steps 2 and 4 together accept `z` with probability `2^−(x(z) − eᵢ)`:
//! target over envelope. Then a sign bit; `z = 0` with a negative sign is
//! rejected, because `±0` would count zero twice. A rejection anywhere
//! restarts the whole trial, so the output is exactly the target.
//!
//! `Bernoulli(2^−y)` for rational `y ∈ [0, 1)` is Canonne–Kamath–Steinke's
//! `Bernoulli(exp(−γ))` with `γ = y·ln 2`: `K` = index of the first failing
//! `Bernoulli(γ/K)`, accept iff `K` is odd; each `Bernoulli(γ/K)` is the
//! product of `Bernoulli(1/K)`, `Bernoulli(y)` (an exact comparison) and
//! `Bernoulli(ln 2)` ([`super::bits::Bits::bern_ln2`]). For `y ≥ 1`, the
//! integer part is `⌊y⌋` fair bits that must all be 0.

use super::bits::{Bits, CHUNK, WordSource};
use super::table::Table;

/// Finishes `Bernoulli(2^−y)`, `y ∈ [0, 1)`, after the first `Bernoulli(y)`
/// of the `K = 1` step came out 1.
fn cks_continue<R: WordSource>(
    bits: &mut Bits<R>,
    mut bern_y: impl FnMut(&mut Bits<R>) -> bool,
) -> bool {
    // K = 1: Bernoulli(y·ln 2) = Bernoulli(y) ∧ Bernoulli(ln 2).
    if !bits.bern_ln2() {
        return true;
    }
    let mut k: u64 = 2;
    loop {
        // Bernoulli(y·ln 2 / k) = Bernoulli(1/k) ∧ Bernoulli(y) ∧ Bernoulli(ln 2)
        if bits.below(k) != 0 || !bern_y(bits) || !bits.bern_ln2() {
            return k % 2 == 1;
        }
        k = k.saturating_add(1);
    }
}

/// `Bernoulli(2^−num/den)` for any `num ≥ 0`, `0 < den < MAX_DEN`.
pub(crate) fn exp2_neg_ratio<R: WordSource>(bits: &mut Bits<R>, num: u128, den: u128) -> bool {
    let (whole, rest) = if num < den {
        (0, num)
    } else {
        (num / den, num % den)
    };
    let mut i = 0u128;
    while i < whole {
        if bits.bit() {
            return false;
        }
        i += 1;
    }
    rest == 0 || !bits.lt_ratio(rest, den) || cks_continue(bits, |b| b.lt_ratio(rest, den))
}

/// Whether `U < num/den` for `U = (u + V)/2^CHUNK` with the chunk `u`
/// already drawn (`num < den`).
#[inline]
fn below_after_chunk<R: WordSource>(bits: &mut Bits<R>, u: u64, num: u128, den: u128) -> bool {
    let lhs = u128::from(u) * den;
    let rhs = num << CHUNK;
    if lhs >= rhs {
        false
    } else if lhs + den <= rhs {
        true
    } else {
        bits.lt_ratio(rhs - lhs, den)
    }
}

const CHUNK_MASK: u64 = (1 << CHUNK) - 1;

impl Table {
    /// One draw of `N_ℤ(0, σ′²)`.
    #[inline]
    pub(crate) fn sample<R: WordSource>(&self, bits: &mut Bits<R>) -> i64 {
        loop {
            let Some((m, negative)) = self.trial(bits) else {
                continue;
            };
            if m == 0 && negative {
                continue;
            }
            // m ≤ cap ≤ 2^62
            let m = m as i64;
            return if negative { -m } else { m };
        }
    }

    /// One trial: `Some((|z|, negative))` if accepted. Bits drawn ahead and
    /// left unused are discarded; that never depends on their values.
    #[inline]
    fn trial<R: WordSource>(&self, bits: &mut Bits<R>) -> Option<(u64, bool)> {
        bits.trials += 1;
        let cb = self.col_bits;
        // column, first chunk of U for the alias, first chunk of U for the coarse step
        let r = bits.take(cb + 2 * CHUNK);
        let c = (r & ((1 << cb) - 1)) as usize;
        let ua = ((r >> cb) & CHUNK_MASK) as i16;
        let uf = ((r >> (cb + CHUNK)) & CHUNK_MASK) as i16;
        let col = self.columns[c];
        let own = if ua != col.first {
            ua < col.first
        } else {
            bits.lt_from(&self.column_thresholds[c], 64 - CHUNK)
        };
        let entry = if own { c } else { col.alias as usize };
        if entry == self.tail_index as usize {
            return self.tail_trial(bits).map(|m| (m, bits.bit()));
        }
        let block = self.blocks[entry];
        // Coarse: Bernoulli(2^−frac); its first Bernoulli(frac) is U < frac.
        let below_frac = if uf != block.first {
            uf < block.first
        } else {
            bits.lt_from(&self.block_fracs[entry], 64 - CHUNK)
        };
        if below_frac {
            let frac = &self.block_fracs[entry];
            if !cks_continue(bits, |b| b.lt(frac)) {
                return None;
            }
        }
        if self.s == 0 {
            return Some((entry as u64, bits.bit()));
        }
        // offset, first chunk of U for the fine step, sign
        let s = self.s;
        let r = bits.take(s + CHUNK + 1);
        let off = r & ((1 << s) - 1);
        let uf = (r >> s) & CHUNK_MASK;
        let negative = (r >> (s + CHUNK)) & 1 == 1;
        if off != 0 {
            // Fine: Bernoulli(2^−Δ), Δ = x(z) − x(i·2^s) = ((2i·2^s)·b + b²) << num_shl / den.
            let b = u128::from(off);
            let mut num = u128::from(block.two_i_shifted) * b + b * b;
            if self.x.num_shl != 0 {
                num <<= self.x.num_shl;
            }
            let den = self.x.den;
            let accept = if num >= den {
                exp2_neg_ratio(bits, num, den)
            } else {
                !below_after_chunk(bits, uf, num, den)
                    || cks_continue(bits, |b| b.lt_ratio(num, den))
            };
            if !accept {
                return None;
            }
        }
        Some(((entry as u64) << s | off, negative))
    }

    /// A trial in the tail: tail block `k` (`P(k) = 2^−(k+1)`), a uniform
    /// offset, acceptance `2^−(x(z) − e_t − k)`; beyond the cap, rejected.
    #[cold]
    fn tail_trial<R: WordSource>(&self, bits: &mut Bits<R>) -> Option<u64> {
        bits.tail_trials += 1;
        let tail = &self.tail;
        let k = bits.geometric();
        let off = if tail.block_bits == 0 {
            0
        } else {
            bits.take(tail.block_bits)
        };
        let z = k
            .checked_shl(tail.block_bits)
            .filter(|kd| kd >> tail.block_bits == k)
            .and_then(|kd| kd.checked_add(tail.start))
            .and_then(|z| z.checked_add(off))
            .filter(|z| *z <= tail.cap)?;
        let num = (u128::from(z) * u128::from(z)) << self.x.num_shl;
        let den = self.x.den;
        // x(z) = whole + rest/den ≥ e_t + k by construction of the envelope.
        let whole = num / den;
        let rest = num % den;
        let shift = u128::from(tail.exponent) + u128::from(k);
        debug_assert!(whole >= shift, "tail envelope below the target");
        // y = x(z) − e_t − k = int_part + rest/den: int_part fair zero bits,
        // then Bernoulli(2^−rest/den).
        let int_part = whole.saturating_sub(shift);
        let mut i = 0u128;
        while i < int_part {
            if bits.bit() {
                return None;
            }
            i += 1;
        }
        exp2_neg_ratio(bits, rest, den).then_some(z)
    }
}
