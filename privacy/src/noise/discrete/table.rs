//! The sampler's tables: blocks, their dyadic envelope, the exact alias
//! table over them, and the tail envelope.
//!
//! With `x(z) = z²/T` (see [`super::scale`]) the target on `z ≥ 0` has weight
//! `2^−x(z)`. The half-line is cut into blocks of `2^s` integers; block `i`
//! covers `[i·2^s, (i+1)·2^s)` and gets the envelope `2^−eᵢ` per integer with
//! `eᵢ = ⌊x(i·2^s)⌋` (an upper bound of the target on the block because `x`
//! increases). Blocks run up to `Z_t = n·2^s`, the first block start with
//! `x ≥ TAIL_EXPONENT`; beyond it, tail block `k ≥ 0` of `2^d` integers
//! starting at `Z_t + k·2^d` gets `2^−(e_t + k)`, where `e_t ≤ ⌊x(Z_t)⌋` and
//! `2^d·2Z_t ≥ T`, so that `x(z) ≥ x(Z_t) + k` there (convexity of `x`).
//!
//! Every envelope mass is a power of two times a common unit, so the alias
//! table that picks a block (or the tail) is built with integer weights and
//! is exact: [`Table::new`] checks, column by column, that each block
//! receives exactly its share.

use super::DiscreteError;
use super::bits::{CHUNK, MAX_DEN, Threshold};
use super::scale::Scale;

/// The first block start with `x ≥ TAIL_EXPONENT` ends the table: the tail
/// envelope then has mass below `2^−TAIL_EXPONENT` of the total.
pub(crate) const TAIL_EXPONENT: u64 = 40;

/// Largest number of alias columns (`2^MAX_COL_BITS`).
const MAX_COL_BITS: u32 = 20;

/// Values beyond `cap` are rejected, i.e. the output is conditioned on
/// `|z| ≤ cap`; [`Table::new`] requires `x(cap) ≥ MIN_CAP_EXPONENT`. The
/// excluded mass is then below `2·2^−x(cap)·(1 + T/(2·cap·ln 2))`
/// `≤ 2^(1 − 1024 + 62) < 2^−960` (the sum beyond `cap` is dominated by a
/// geometric series of ratio `2^(−2·cap/T)`, the normaliser is ≥ 1).
const MIN_CAP_EXPONENT: u128 = 1024;

/// Hot part of an alias column: the first chunk of its threshold
/// ([`Threshold::first_chunk`]) and its alias. The full threshold is in
/// [`Table::column_thresholds`], read only on a tie.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Column {
    pub(crate) first: i16,
    pub(crate) alias: u32,
}

/// Hot part of a block: the first chunk of the fractional part
/// `x(i·2^s) − eᵢ` of its start, and `2i·2^s` for the fine exponent. The full
/// fraction is in [`Table::block_fracs`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Block {
    pub(crate) first: i16,
    pub(crate) two_i_shifted: u64,
}

/// The tail envelope.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tail {
    /// `Z_t`: first integer of the tail.
    pub(crate) start: u64,
    /// `e_t`: envelope exponent of tail block 0.
    pub(crate) exponent: u64,
    /// `d`: tail blocks have `2^d` integers.
    pub(crate) block_bits: u32,
    /// Largest magnitude output.
    pub(crate) cap: u64,
}

/// Exact rational `x(z) = (z² << num_shl) / den`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Exponent {
    pub(crate) num_shl: u32,
    pub(crate) den: u128,
}

/// Free choices of the layout: any choice gives the same distribution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Layout {
    /// Blocks of `2^s` integers (`None`: about `σ′/64`).
    pub(crate) block_bits: Option<u32>,
    /// The table ends at the first block start with `x ≥ tail_exponent`.
    pub(crate) tail_exponent: u64,
}

impl Default for Layout {
    fn default() -> Self {
        Self {
            block_bits: None,
            tail_exponent: TAIL_EXPONENT,
        }
    }
}

/// Everything the sampler reads.
#[derive(Debug, Clone)]
pub(crate) struct Table {
    pub(crate) scale: Scale,
    /// Blocks have `2^s` integers.
    pub(crate) s: u32,
    pub(crate) col_bits: u32,
    pub(crate) columns: Vec<Column>,
    pub(crate) column_thresholds: Vec<Threshold>,
    pub(crate) blocks: Vec<Block>,
    pub(crate) block_fracs: Vec<Threshold>,
    /// Index of the tail in the alias table (= number of blocks).
    pub(crate) tail_index: u32,
    pub(crate) tail: Tail,
    pub(crate) x: Exponent,
}

fn bits(m: u128) -> u32 {
    128 - m.leading_zeros()
}

fn layout_err(msg: impl Into<String>) -> DiscreteError {
    DiscreteError::Layout(msg.into())
}

impl Table {
    /// Tables for `scale` with the given layout.
    pub(crate) fn new(scale: Scale, layout: Layout) -> Result<Self, DiscreteError> {
        let (t, e) = (scale.t, scale.e);
        let block_bits = layout.block_bits;
        if !(1..=TAIL_EXPONENT).contains(&layout.tail_exponent) {
            return Err(layout_err("tail exponent outside [1, 40]"));
        }
        // log2 T ∈ [e + 62, e + 63) and σ′² = T/1.386…: σ′ ≈ 2^((e + 62)/2).
        let s = block_bits.unwrap_or_else(|| ((e + 62).div_euclid(2) - 6).max(0) as u32);
        if s + CHUNK + 1 > 64 {
            // the sampler draws offset, fine chunk and sign in one 64-bit take
            return Err(layout_err(format!("blocks of 2^{s} are too wide")));
        }
        // x(i·2^s) = i²·2^a / t with a = 2s − e ≥ 0.
        let a = 2 * s as i64 - i64::from(e);
        if a < 0 {
            return Err(layout_err(format!(
                "blocks of 2^{s} are too small for T = t·2^{e}"
            )));
        }
        let a = a as u32;
        let x = Exponent {
            num_shl: (-e).max(0) as u32,
            den: u128::from(t) << e.max(0),
        };
        if x.den >= MAX_DEN {
            return Err(layout_err("T is too large"));
        }
        let block_x = |i: u64| -> Result<u128, DiscreteError> {
            let sq = u128::from(i) * u128::from(i);
            if bits(sq) + a > 127 {
                return Err(layout_err("block exponent overflows"));
            }
            Ok(sq << a)
        };
        let tail_target = u128::from(layout.tail_exponent) * u128::from(t);
        // n = smallest block count with x(n·2^s) ≥ TAIL_EXPONENT.
        let mut n = if a >= 70 {
            1u64
        } else {
            ((tail_target >> a).isqrt() as u64).max(1)
        };
        while n > 1 && block_x(n - 1)? >= tail_target {
            n -= 1;
        }
        while block_x(n)? < tail_target {
            n += 1;
        }
        let col_bits = 64 - n.leading_zeros(); // 2^col_bits ≥ n + 1
        if col_bits > MAX_COL_BITS {
            return Err(layout_err(format!("{n} blocks are too many")));
        }
        let start = n
            .checked_shl(s)
            .filter(|z| *z < 1 << 62)
            .ok_or_else(|| layout_err("the tail starts beyond 2^62"))?;

        let mut exps = Vec::with_capacity(n as usize);
        let mut blocks = Vec::with_capacity(n as usize);
        let mut block_fracs = Vec::with_capacity(n as usize);
        if bits(u128::from(2 * n)) + s > 64 {
            return Err(layout_err("block offsets overflow"));
        }
        for i in 0..n {
            let xi = block_x(i)?;
            let t128 = u128::from(t);
            exps.push((xi / t128) as u64);
            let frac = Threshold::new((xi % t128) as u64, t);
            blocks.push(Block {
                first: frac.first_chunk(),
                two_i_shifted: (2 * i) << s,
            });
            block_fracs.push(frac);
        }
        let e_ref = *exps.last().unwrap_or(&0);

        // Tail blocks of 2^d with Z_t·2^(d+1) ≥ T = t·2^e, compared at a
        // common exponent m = min(d + 1, e).
        let holds = |d: u32| -> bool {
            let m = (i64::from(d) + 1).min(i64::from(e));
            let lsh = (i64::from(d) + 1 - m) as u32;
            let rsh = (i64::from(e) - m) as u32;
            if bits(u128::from(start)) + lsh > 127 {
                return true;
            }
            (u128::from(start) << lsh) >= (u128::from(t) << rsh)
        };
        let mut d = 0u32;
        while !holds(d) {
            d += 1;
            if d > 62 {
                return Err(layout_err("no tail block size fits"));
            }
        }
        let unit = s.min(d);
        let floor_x_start = (block_x(n)? / u128::from(t)) as u64;
        // The tail envelope may be raised (a smaller exponent) to keep every
        // weight an integer: still an upper bound of the target.
        let e_tail = floor_x_start.min(e_ref + u64::from(d + 1 - unit));
        let mut weights: Vec<u128> = exps
            .iter()
            .map(|&ei| 1u128 << (u64::from(s - unit) + (e_ref - ei)))
            .collect();
        weights.push(1u128 << (u64::from(d + 1 - unit) + e_ref - e_tail));
        let total: u128 = weights.iter().sum();
        if total >= 1 << 63 {
            return Err(layout_err("envelope weights overflow"));
        }
        let column_thresholds = alias_columns(&weights, col_bits)?;
        let columns = column_thresholds
            .iter()
            .map(|(th, alias)| Column {
                first: th.first_chunk(),
                alias: *alias,
            })
            .collect();
        let column_thresholds = column_thresholds.into_iter().map(|(th, _)| th).collect();

        // Fine exponent Δ = ((2ib << s) + b²) << num_shl over den: bound the numerator.
        let max_num = {
            let i = u128::from(n - 1);
            let b = (1u128 << s) - 1;
            let v = ((2 * i * b) << s) + b * b;
            bits(v) + x.num_shl
        };
        if max_num > 127 - CHUNK {
            return Err(layout_err("fine exponent overflows"));
        }
        // Cap: z² << num_shl < 2^127, z ≤ 2^62, and x(cap) ≥ MIN_CAP_EXPONENT.
        let cap = ((u128::MAX >> 1) >> x.num_shl).isqrt().min(1 << 62) as u64;
        let cap_x = (u128::from(cap) * u128::from(cap)) << x.num_shl;
        if cap_x / x.den < MIN_CAP_EXPONENT {
            return Err(layout_err(
                "the output range would truncate the distribution",
            ));
        }
        Ok(Self {
            scale,
            s,
            col_bits,
            columns,
            column_thresholds,
            blocks,
            block_fracs,
            tail_index: n as u32,
            tail: Tail {
                start,
                exponent: e_tail,
                block_bits: d,
                cap,
            },
            x,
        })
    }

    /// Number of main blocks.
    #[cfg(test)]
    pub(crate) fn block_count(&self) -> usize {
        self.blocks.len()
    }
}

/// Vose's alias method with integer weights: `2^col_bits` columns, column
/// `c` keeps itself iff `U < threshold` and otherwise goes to its alias, so
/// entry `j` is chosen with probability exactly `w_j / Σw`. Verified before
/// returning.
fn alias_columns(weights: &[u128], col_bits: u32) -> Result<Vec<(Threshold, u32)>, DiscreteError> {
    let ncols = 1usize << col_bits;
    let total: u128 = weights.iter().sum();
    // scaled[j] = w_j · ncols; a full column holds `total`.
    let mut scaled: Vec<u128> = (0..ncols)
        .map(|j| weights.get(j).copied().unwrap_or(0) * ncols as u128)
        .collect();
    let mut thr = vec![total; ncols];
    let mut alias: Vec<u32> = (0..ncols as u32).collect();
    let (mut small, mut large): (Vec<usize>, Vec<usize>) =
        (0..ncols).partition(|&j| scaled[j] < total);
    while let (Some(sm), Some(&lg)) = (small.pop(), large.last()) {
        thr[sm] = scaled[sm];
        alias[sm] = lg as u32;
        scaled[lg] -= total - scaled[sm];
        if scaled[lg] < total {
            large.pop();
            small.push(lg);
        }
    }
    // Exact integer arithmetic leaves no column short; check every entry.
    let mut mass = vec![0u128; ncols];
    for c in 0..ncols {
        mass[c] += thr[c];
        mass[alias[c] as usize] += total - thr[c];
    }
    for (j, m) in mass.iter().enumerate() {
        if *m != weights.get(j).copied().unwrap_or(0) * ncols as u128 {
            return Err(DiscreteError::Layout(format!(
                "alias table gives entry {j} mass {m}, not its weight"
            )));
        }
    }
    let den = total as u64;
    Ok((0..ncols)
        .map(|c| (Threshold::new(thr[c] as u64, den), alias[c]))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alias_table_is_exact_for_awkward_weights() {
        let w = [3u128, 0, 1 << 40, 7, 1, 1, 0, 12345];
        let cols = alias_columns(&w, 3).unwrap();
        assert_eq!(cols.len(), 8);
        // Recompute every entry's mass from what the sampler reads.
        let total: u128 = w.iter().sum();
        let mut mass = [0u128; 8];
        for (c, (th, alias)) in cols.iter().enumerate() {
            let (num, den) = th.ratio_for_tests();
            assert_eq!(den, total);
            mass[c] += num;
            mass[*alias as usize] += total - num;
        }
        for j in 0..8 {
            assert_eq!(mass[j], w[j] * 8, "entry {j}");
        }
        // A single non-zero weight: every column ends on it.
        let cols = alias_columns(&[0, 0, 5, 0], 2).unwrap();
        for (i, (th, alias)) in cols.iter().enumerate() {
            let target = if th.is_one() { i } else { *alias as usize };
            assert!(th.is_one() || th.is_zero());
            assert_eq!(target, 2, "{cols:?}");
        }
    }

    #[test]
    fn tables_cover_the_supported_range() {
        for sigma in [
            super::super::scale::MIN_SIGMA,
            0.1,
            1.0,
            3.0,
            100.0,
            1000.0,
            1e6,
            1099511627776.0,
            super::super::scale::MAX_SIGMA,
        ] {
            for extra in [0u64, 64] {
                let scale = Scale::new(sigma, extra).unwrap();
                let tab = Table::new(scale, Layout::default()).unwrap();
                assert!(tab.block_count() >= 1);
                assert!(tab.tail.start >= tab.block_count() as u64);
                assert!(tab.tail.cap >= tab.tail.start, "σ = {sigma}");
                // Blocks are about σ/64 wide: at most a few thousand of them.
                assert!(
                    tab.block_count() < 4096,
                    "σ = {sigma}: {}",
                    tab.block_count()
                );
            }
        }
    }

    #[test]
    fn tail_envelope_dominates_the_target() {
        // 2^d·2·Z_t ≥ T and e_t ≤ ⌊x(Z_t)⌋, checked in f64 with margin.
        for sigma in [0.2, 1.0, 7.0, 5000.0, 1e9, 1e15] {
            let tab = Table::new(Scale::new(sigma, 0).unwrap(), Layout::default()).unwrap();
            let tf = tab.scale.t_f64();
            let zt = tab.tail.start as f64;
            assert!(2f64.powi(tab.tail.block_bits as i32) * 2.0 * zt >= tf * (1.0 - 1e-12));
            assert!(tab.tail.exponent as f64 <= zt * zt / tf + 1e-9);
            assert!(zt * zt / tf >= TAIL_EXPONENT as f64 - 1e-9);
        }
    }

    #[test]
    fn impossible_layouts_are_errors_not_panics() {
        let scale = Scale::new(1e6, 0).unwrap();
        // Blocks of one integer at σ = 10^6: millions of blocks.
        assert!(matches!(
            Table::new(
                scale,
                Layout {
                    block_bits: Some(0),
                    ..Layout::default()
                }
            ),
            Err(DiscreteError::Layout(_))
        ));
        // Blocks so wide that the tail would start beyond 2^62.
        assert!(
            Table::new(
                scale,
                Layout {
                    block_bits: Some(62),
                    ..Layout::default()
                }
            )
            .is_err()
        );
    }
}
