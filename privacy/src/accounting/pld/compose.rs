//! The composition of a plan's rounds: coarse per-round discretisations
//! (for the grid interval and the tilts), the grid interval, the tilts, and
//! the tilted FFT composition itself (exponentiation by squaring per
//! distinct mechanism, groups convolved together), restarted on a coarser
//! grid when an array outgrows its limit.

use super::fft::Convolver;
use super::pmf::{Pmf, compose_pair};
use super::subsampled_gaussian::{Base, Direction, TAIL, discretise, loss_range};
use super::tilt::{LogMgf, Target};
use super::{
    COARSE_POINTS, GRID_POINTS, H_MIN, MAX_ARRAY_LEN, MAX_COARSENINGS, MAX_GRID_POINTS,
    MAX_ROUND_POINTS, PER_ROUND_POINTS, TRUNCATION_TAIL, WIDTH_SIGMAS, numerical,
};
use crate::accounting::{AccountingError, Mechanism};

/// Per-round tail left outside the grid for a composition of `rounds` rounds.
fn round_tail(rounds: &[(f64, f64, u64)]) -> f64 {
    let total: f64 = rounds.iter().map(|(_, _, n)| *n as f64).sum();
    TAIL.min(1e-19 / total.max(1.0))
}

/// Coarse discretisations of every round, with their intervals (for moments
/// and the tilt), per direction (remove, add).
pub(super) struct Coarse([Vec<(Base, f64)>; 2]);

impl Coarse {
    pub(super) fn new(rounds: &[(f64, f64, u64)]) -> Result<Self, AccountingError> {
        let tail = round_tail(rounds);
        let one = |dir| {
            rounds
                .iter()
                .map(|&(q, z, _)| {
                    let (lo, hi) = loss_range(q, z, dir, tail);
                    let h = ((hi - lo) / COARSE_POINTS).max(H_MIN);
                    discretise(q, z, dir, h, tail, 4.0 * COARSE_POINTS)
                        .map(|b| (b, h))
                        .ok_or_else(|| out_of_range(q, z))
                })
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(Self([one(Direction::Remove)?, one(Direction::Add)?]))
    }

    fn dir(&self, dir: Direction) -> &[(Base, f64)] {
        match dir {
            Direction::Remove => &self.0[0],
            Direction::Add => &self.0[1],
        }
    }
}

/// The discretisation interval for a plan (see the module docs).
pub(super) fn choose_interval(
    rounds: &[(f64, f64, u64)],
    coarse: &Coarse,
) -> Result<f64, AccountingError> {
    let tail = round_tail(rounds);
    let mut width: f64 = 0.0;
    let mut finest_sd = f64::INFINITY;
    for dir in [Direction::Remove, Direction::Add] {
        let mut var = 0.0;
        let mut widest: f64 = 0.0;
        for (&(q, z, n), (base, h)) in rounds.iter().zip(coarse.dir(dir)) {
            let (lo, hi) = loss_range(q, z, dir, tail);
            let (_, v) = base.mean_var(*h);
            var += n as f64 * v;
            if v > 0.0 {
                finest_sd = finest_sd.min(v.sqrt());
            }
            widest = widest.max(hi - lo);
        }
        width = width.max(2.0 * WIDTH_SIGMAS * var.sqrt() + widest);
    }
    if !width.is_finite() {
        return Err(numerical(format!(
            "composed loss width {width} is not finite"
        )));
    }
    // Resolve the composed width with GRID_POINTS points, but also every
    // round's own spread with PER_ROUND_POINTS (a grid as coarse as the loss
    // of one round inflates its variance, and the error compounds over T
    // rounds), unless that would exceed MAX_GRID_POINTS.
    let h = (width / GRID_POINTS)
        .min(finest_sd / PER_ROUND_POINTS)
        .max(width / MAX_GRID_POINTS)
        .max(H_MIN);
    Ok(h)
}

/// The log-MGFs of a plan's composition (remove, add), from its coarse
/// discretisations: they choose the tilts and predict their error weights.
pub(super) struct Tilts([LogMgf; 2]);

impl Tilts {
    pub(super) fn new(rounds: &[(f64, f64, u64)], coarse: &Coarse) -> Self {
        let one = |dir| {
            let groups: Vec<(&Base, f64, u64)> = coarse
                .dir(dir)
                .iter()
                .zip(rounds)
                .map(|((b, h), &(_, _, n))| (b, *h, n))
                .collect();
            LogMgf::new(&groups)
        };
        Self([one(Direction::Remove), one(Direction::Add)])
    }

    /// The tilts `(remove, add)` for a question about the plan.
    pub(super) fn choose(&self, target: Target) -> (f64, f64) {
        (self.0[0].choose(target), self.0[1].choose(target))
    }

    /// `K(λ) − λε` of each direction (remove, add): the log of the weight
    /// of a unit of tilted error at ε.
    pub(super) fn log_weights(&self, (l_remove, l_add): (f64, f64), eps: f64) -> [f64; 2] {
        [
            self.0[0].log_weight(l_remove, eps),
            self.0[1].log_weight(l_add, eps),
        ]
    }
}

fn out_of_range(q: f64, z: f64) -> AccountingError {
    numerical(format!(
        "the privacy loss of q = {q}, z = {z} cannot be discretised within {MAX_ROUND_POINTS} grid points"
    ))
}

/// The composed, tilted PLDs (remove, add) of a plan on the grid `h·ℤ`.
fn compose_plan(
    rounds: &[(f64, f64, u64)],
    h: f64,
    (l_remove, l_add): (f64, f64),
) -> Result<(Pmf, Pmf), Compose> {
    let mut conv = Convolver::new();
    let mut total: Option<(Pmf, Pmf)> = None;
    let tail = round_tail(rounds);
    for &(q, z, n) in rounds {
        let base = |dir, lambda| {
            discretise(q, z, dir, h, tail, MAX_ROUND_POINTS)
                .map(|b| Pmf::tilted(h, b.offset, &b.probs, b.inf_mass, lambda))
                .ok_or_else(|| Compose::Failed(out_of_range(q, z)))
        };
        let base = (
            base(Direction::Remove, l_remove)?,
            base(Direction::Add, l_add)?,
        );
        let powered = self_compose(&mut conv, base, n)?;
        total = Some(match total {
            None => powered,
            Some(t) => compose_pair(
                &mut conv,
                (&t.0, &t.1),
                (&powered.0, &powered.1),
                false,
                TRUNCATION_TAIL,
            )
            .map_err(failed)
            .and_then(guard_len)?,
        });
    }
    total.ok_or_else(|| Compose::Failed(numerical("empty plan".into())))
}

/// Why a composition stopped.
enum Compose {
    /// An array outgrew [`MAX_ARRAY_LEN`]: retry on a coarser grid.
    TooLarge,
    /// A numerical failure: no bound.
    Failed(AccountingError),
}

fn failed(message: String) -> Compose {
    Compose::Failed(numerical(message))
}

fn guard_len(pair: (Pmf, Pmf)) -> Result<(Pmf, Pmf), Compose> {
    if pair.0.probs.len().max(pair.1.probs.len()) > MAX_ARRAY_LEN {
        Err(Compose::TooLarge)
    } else {
        Ok(pair)
    }
}

/// `base^n` by binary exponentiation (squarings share one FFT pair). A
/// truncation of a partial result for `m` rounds cuts at most
/// [`TRUNCATION_TAIL`]`·m/n` (its error is carried by the `n/m` copies of it).
fn self_compose(conv: &mut Convolver, base: (Pmf, Pmf), n: u64) -> Result<(Pmf, Pmf), Compose> {
    let tau = |rounds: u64| TRUNCATION_TAIL * (rounds as f64 / n as f64).min(1.0);
    let mut result: Option<((Pmf, Pmf), u64)> = None;
    let mut power = base;
    let mut power_rounds = 1u64;
    let mut rest = n;
    loop {
        if rest & 1 == 1 {
            result = Some(match result {
                None => (power.clone(), power_rounds),
                Some((r, m)) => {
                    let m = m + power_rounds;
                    let c = compose_pair(conv, (&r.0, &r.1), (&power.0, &power.1), false, tau(m))
                        .map_err(failed)
                        .and_then(guard_len)?;
                    (c, m)
                }
            });
        }
        rest >>= 1;
        if rest == 0 {
            break;
        }
        power_rounds *= 2;
        power = compose_pair(
            conv,
            (&power.0, &power.1),
            (&power.0, &power.1),
            true,
            tau(power_rounds),
        )
        .map_err(failed)
        .and_then(guard_len)?;
    }
    // n ≥ 1 is guaranteed by checked_composition.
    Ok(result.map_or(power, |(r, _)| r))
}

pub(super) fn rounds_of(comp: &[(Mechanism, u64)]) -> Vec<(f64, f64, u64)> {
    comp.iter()
        .map(|(m, n)| (m.sampling_rate, m.noise_multiplier, *n))
        .collect()
}

/// The composed, tilted PLDs (remove, add) of a plan on the grid `h·ℤ`, or,
/// when `fixed` is false and an array outgrows [`MAX_ARRAY_LEN`], on a grid
/// up to 4^[`MAX_COARSENINGS`] times coarser; with the interval used.
pub(super) fn compose(
    rounds: &[(f64, f64, u64)],
    mut h: f64,
    tilts: (f64, f64),
    fixed: bool,
) -> Result<(f64, Pmf, Pmf), AccountingError> {
    for _ in 0..=MAX_COARSENINGS {
        match compose_plan(rounds, h, tilts) {
            Ok((remove, add)) => return Ok((h, remove, add)),
            Err(Compose::TooLarge) if fixed => {
                return Err(numerical(format!(
                    "interval {h} needs arrays longer than {MAX_ARRAY_LEN}"
                )));
            }
            Err(Compose::TooLarge) => h *= 4.0,
            Err(Compose::Failed(e)) => return Err(e),
        }
    }
    Err(numerical(format!(
        "the composition needs arrays longer than {MAX_ARRAY_LEN} even at h = {h}"
    )))
}
