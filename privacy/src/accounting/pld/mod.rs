//! Privacy-loss-distribution (PLD) accountant: the tight bound fedsec reports.
//!
//! For every distinct mechanism of a composition and for both neighbouring
//! directions (remove and add; the reported ε is the worse), one round's
//! privacy loss is discretised pessimistically on a grid of spacing `h` by
//! *connect the dots* (module `subsampled_gaussian`), the `T` rounds are composed
//! by exponentiation by squaring with FFT convolutions (rustfft; both
//! directions share each FFT through real/imaginary packing), the groups are
//! convolved together, and `ε(δ)` / `δ(ε)` are read off exactly from the
//! discrete distribution. Rounds with `q = 1` compose exactly into one
//! Gaussian of `μ = √(Σ T/z²)` (no discretisation needed when the whole
//! history is full-batch).
//!
//! # Why the result is an upper bound
//!
//! - Connect the dots yields, for each round, a discrete pair that dominates
//!   the true pair at every ε (module `subsampled_gaussian`); the grid's
//!   upper tail (at most `1e-19/T` per round) is booked at `+∞`.
//! - Dominating pairs compose (Zhu, Dong & Wang 2022, Thm. 10), so the
//!   composed discrete PLD dominates the true composition.
//! - The composition is computed on exponentially tilted vectors (module
//!   `pmf`) with the Chernoff-optimal tilt for the question asked (module
//!   `tilt`), and every floating-point error of it is *bounded*, not
//!   estimated: an a-priori bound per FFT (module `fft`), propagated through
//!   every convolution, plus every entry cut from the tails. The read-outs
//!   add that bound, weighted by `exp(ln Z − λε)`, to δ. So the reported
//!   `δ(ε)` is an upper bound on the discretised composition, and `ε(δ)` is
//!   the smallest ε whose upper bound is at most δ.
//! - A call whose error term would exceed [`MAX_ERROR_SHARE`] of δ is
//!   refused (`DeltaBelowFloor`) rather than answered loosely; δ below
//!   [`DELTA_FLOOR`] is always refused. In the supported range (q ≥ 1e-5,
//!   T ≤ 10⁶, δ ≥ 1e-15) the error term is below 1e-4 of δ (tests).
//!
//! # Discretisation interval
//!
//! `h` is chosen per call so the composed distribution spans about
//! [`GRID_POINTS`] grid points: `h = W / GRID_POINTS` with `W` an estimate of
//! the composed support width (`2·8·σ_total` plus the widest single round,
//! from a coarse discretisation), but never below [`H_MIN`]. This keeps the
//! cost independent of `T` and of ε's magnitude (dp_accounting's fixed
//! `h = 1e-4` needs 10⁸ points for the q = 1, z = 0.5, T = 10⁴ row) while the
//! pessimism of connect-the-dots stays second order in `h`; the tests bound
//! the total error against dp_accounting, PRV and the exact `q = 1` values.

mod fft;
mod pmf;
mod subsampled_gaussian;
mod tilt;

use self::fft::Convolver;
use self::pmf::{Pmf, compose_pair};
use self::subsampled_gaussian::{Base, Direction, TAIL, discretise, loss_range};
use self::tilt::Target;
use super::{
    Accountant, AccountingError, Mechanism, check_delta, check_epsilon, checked_composition,
};
use crate::special::{gaussian_delta, gaussian_epsilon};

/// Target number of grid points spanned by the composed distribution.
pub const GRID_POINTS: f64 = 65_536.0;
/// Grid points per standard deviation of one round's privacy loss.
pub const PER_ROUND_POINTS: f64 = 20.0;
/// Most grid points the composed distribution may span by design.
pub const MAX_GRID_POINTS: f64 = 1_048_576.0;
/// Longest array any step may produce: beyond it (heavy-tailed, spiky
/// compositions whose support the width estimate under-rates), the call
/// starts over on a 4× coarser grid — still pessimistic, just looser.
const MAX_ARRAY_LEN: usize = 1 << 21;
/// How many times a call may coarsen its grid before giving up.
const MAX_COARSENINGS: usize = 6;
/// Smallest discretisation interval used.
pub const H_MIN: f64 = 1e-6;
/// Tilted mass cut per side after each convolution (counted as error).
pub const TRUNCATION_TAIL: f64 = 1e-13;
/// Smallest δ accepted at all.
pub const DELTA_FLOOR: f64 = 1e-15;
/// Largest share of δ the error bound (plus the mass at `+∞`) may take
/// before a call is refused.
pub const MAX_ERROR_SHARE: f64 = 0.01;
/// Largest number of grid points one round may need (memory guard).
const MAX_ROUND_POINTS: f64 = MAX_ARRAY_LEN as f64;
/// Width, in standard deviations of the composed loss, of the estimate `W`.
const WIDTH_SIGMAS: f64 = 8.0;
/// Grid points of the coarse discretisation used to estimate moments.
const COARSE_POINTS: f64 = 4096.0;

/// Privacy-loss-distribution accountant for the Poisson-subsampled Gaussian
/// (connect-the-dots discretisation, FFT composition).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PldAccountant;

/// What an accounting call composes: full-batch rounds merged into one
/// Gaussian, the rest by distinct mechanism.
struct Plan {
    /// `μ²` of all `q = 1` rounds together (0 if none).
    full_batch_mu2: f64,
    /// Subsampled groups `(q, z, count)`.
    groups: Vec<(f64, f64, u64)>,
}

impl Plan {
    fn new(comp: &[(Mechanism, u64)]) -> Self {
        let mut full_batch_mu2 = 0.0;
        let mut groups = Vec::new();
        for (m, n) in comp {
            if m.sampling_rate >= 1.0 {
                full_batch_mu2 += *n as f64 / (m.noise_multiplier * m.noise_multiplier);
            } else {
                groups.push((m.sampling_rate, m.noise_multiplier, *n));
            }
        }
        Self {
            full_batch_mu2,
            groups,
        }
    }

    /// Every group as `(q, z, count)`, with the full-batch part as one round.
    fn rounds(&self) -> Vec<(f64, f64, u64)> {
        let mut v = self.groups.clone();
        if self.full_batch_mu2 > 0.0 {
            v.push((1.0, 1.0 / self.full_batch_mu2.sqrt(), 1));
        }
        v
    }
}

fn numerical(message: String) -> AccountingError {
    AccountingError::Numerical {
        accountant: "pld",
        message,
    }
}

/// Per-round tail left outside the grid for a composition of `rounds` rounds.
fn round_tail(rounds: &[(f64, f64, u64)]) -> f64 {
    let total: f64 = rounds.iter().map(|(_, _, n)| *n as f64).sum();
    TAIL.min(1e-19 / total.max(1.0))
}

/// Coarse discretisations of every round in one direction, with their
/// intervals (for moments and the tilt).
fn coarse(rounds: &[(f64, f64, u64)], dir: Direction) -> Result<Vec<(Base, f64)>, AccountingError> {
    let tail = round_tail(rounds);
    rounds
        .iter()
        .map(|&(q, z, _)| {
            let (lo, hi) = loss_range(q, z, dir, tail);
            let h = ((hi - lo) / COARSE_POINTS).max(H_MIN);
            discretise(q, z, dir, h, tail, 4.0 * COARSE_POINTS)
                .map(|b| (b, h))
                .ok_or_else(|| out_of_range(q, z))
        })
        .collect()
}

/// The discretisation interval for a plan (see the module docs).
fn choose_interval(rounds: &[(f64, f64, u64)]) -> Result<f64, AccountingError> {
    let tail = round_tail(rounds);
    let mut width: f64 = 0.0;
    let mut finest_sd = f64::INFINITY;
    for dir in [Direction::Remove, Direction::Add] {
        let mut var = 0.0;
        let mut widest: f64 = 0.0;
        for (&(q, z, n), (base, h)) in rounds.iter().zip(coarse(rounds, dir)?) {
            let (lo, hi) = loss_range(q, z, dir, tail);
            let (_, v) = base.mean_var(h);
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

/// The tilts `(remove, add)` for a question about a plan.
fn choose_tilts(rounds: &[(f64, f64, u64)], target: Target) -> Result<(f64, f64), AccountingError> {
    let mut out = [0.0; 2];
    for (slot, dir) in out.iter_mut().zip([Direction::Remove, Direction::Add]) {
        let bases = coarse(rounds, dir)?;
        let groups: Vec<(&Base, f64, u64)> = bases
            .iter()
            .zip(rounds)
            .map(|((b, h), &(_, _, n))| (b, *h, n))
            .collect();
        *slot = tilt::choose(&groups, target);
    }
    Ok((out[0], out[1]))
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

fn rounds_of(comp: &[(Mechanism, u64)]) -> Vec<(f64, f64, u64)> {
    comp.iter()
        .map(|(m, n)| (m.sampling_rate, m.noise_multiplier, *n))
        .collect()
}

impl PldAccountant {
    /// ε at `delta` with a caller-chosen discretisation interval `h` and
    /// without the exact full-batch shortcut: every group, `q = 1` included,
    /// is discretised and composed by FFT. For diagnostics and tests (e.g.
    /// reproducing dp_accounting's fixed `h = 1e-4`, or checking the FFT
    /// machinery against the exact `q = 1` values); prefer [`Accountant::epsilon`].
    pub fn epsilon_with_interval(
        &self,
        composition: &[(Mechanism, u64)],
        delta: f64,
        interval: f64,
    ) -> Result<f64, AccountingError> {
        check_delta(delta)?;
        if !(interval > 0.0 && interval.is_finite()) {
            return Err(numerical(format!("interval {interval} must be > 0")));
        }
        let comp = checked_composition(composition)?;
        if comp.is_empty() {
            return Ok(0.0);
        }
        let rounds = rounds_of(&comp);
        let tilts = choose_tilts(&rounds, Target::Delta(delta))?;
        let (remove, add) = compose_plan(&rounds, interval, tilts).map_err(|e| match e {
            Compose::TooLarge => numerical(format!(
                "interval {interval} needs arrays longer than {MAX_ARRAY_LEN}"
            )),
            Compose::Failed(e) => e,
        })?;
        Ok(discrete_epsilon(interval, &remove, &add, delta)?.epsilon)
    }

    /// ε at `delta` with the rigorous error term it includes (see
    /// [`PldEpsilon`]).
    pub fn epsilon_detailed(
        &self,
        composition: &[(Mechanism, u64)],
        delta: f64,
    ) -> Result<PldEpsilon, AccountingError> {
        check_delta(delta)?;
        if delta < DELTA_FLOOR {
            return Err(AccountingError::DeltaBelowFloor {
                accountant: "pld",
                delta,
                floor: DELTA_FLOOR,
            });
        }
        let comp = checked_composition(composition)?;
        if comp.is_empty() {
            return Ok(PldEpsilon::exact(0.0));
        }
        let out = match Self::composed(&comp, Target::Delta(delta))? {
            Composed::Gaussian(mu) => PldEpsilon::exact(gaussian_epsilon(mu, delta)),
            Composed::Discrete { h, remove, add } => {
                match discrete_epsilon(h, &remove, &add, delta) {
                    Ok(e) => e,
                    // The PLD's own error bound would take too much of δ: the
                    // RDP bound (valid for every δ, looser) answers instead.
                    Err(AccountingError::DeltaBelowFloor { .. }) => PldEpsilon {
                        epsilon: super::RdpAccountant.epsilon(&comp, delta)?,
                        error_delta: 0.0,
                        rdp_fallback: true,
                    },
                    Err(e) => return Err(e),
                }
            }
        };
        if out.epsilon.is_nan() {
            return Err(numerical("epsilon is NaN".into()));
        }
        Ok(out)
    }

    /// The discretisation interval [`Accountant::epsilon`] uses for a
    /// composition (`None` when it is computed exactly, i.e. full-batch only).
    pub fn interval(
        &self,
        composition: &[(Mechanism, u64)],
    ) -> Result<Option<f64>, AccountingError> {
        let comp = checked_composition(composition)?;
        let plan = Plan::new(&comp);
        if plan.groups.is_empty() {
            return Ok(None);
        }
        Ok(Some(choose_interval(&plan.rounds())?))
    }

    fn composed(comp: &[(Mechanism, u64)], target: Target) -> Result<Composed, AccountingError> {
        let plan = Plan::new(comp);
        if plan.groups.is_empty() {
            return Ok(Composed::Gaussian(plan.full_batch_mu2.sqrt()));
        }
        let rounds = plan.rounds();
        let mut h = choose_interval(&rounds)?;
        let tilts = choose_tilts(&rounds, target)?;
        for _ in 0..=MAX_COARSENINGS {
            match compose_plan(&rounds, h, tilts) {
                Ok((remove, add)) => return Ok(Composed::Discrete { h, remove, add }),
                Err(Compose::TooLarge) => h *= 4.0,
                Err(Compose::Failed(e)) => return Err(e),
            }
        }
        Err(numerical(format!(
            "the composition needs arrays longer than {MAX_ARRAY_LEN} even at h = {h}"
        )))
    }
}

/// ε from [`PldAccountant::epsilon_detailed`]: the value and the share of δ
/// spent on the bound of the computation's own error.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PldEpsilon {
    /// The ε reported (an upper bound on the true one).
    pub epsilon: f64,
    /// δ spent at that ε on the floating-point error bound and the mass at
    /// `+∞` of the discretisation (0 for the exact full-batch case).
    pub error_delta: f64,
    /// Whether the PLD's error bound would have taken more than
    /// [`MAX_ERROR_SHARE`] of δ, so that ε is the RDP accountant's (a valid,
    /// looser bound), judged at the reported ε (see `discrete_epsilon`).
    /// `budget epsilon` in the CLI says when it happens.
    pub rdp_fallback: bool,
}

impl PldEpsilon {
    fn exact(epsilon: f64) -> Self {
        Self {
            epsilon,
            error_delta: 0.0,
            rdp_fallback: false,
        }
    }
}

/// ε of the worse direction, refusing δ the error bound would eat.
///
/// Each direction's ε is the smallest at which its bound (estimate plus
/// error term plus mass at `+∞`) is at most δ; the answer is the larger.
/// Every bound decreases in ε, so at the answer both directions stay within
/// δ, and the share of δ the error takes is judged *there*, in both
/// directions. (Judging the non-binding direction at its own, smaller ε
/// charged it an error weight `exp(ln Z − λε)` that is irrelevant to the
/// answer: for `q = 0.001, z = 0.5, T = 1` the add direction's loss is
/// bounded by `−ln(1 − q)`, its tilt is large, and at its own ε ≈ 0.001 the
/// weight is ~10³ where at the answer ε ≈ 0.34 it is ~e^(−3·10⁵).)
fn discrete_epsilon(
    h: f64,
    remove: &Pmf,
    add: &Pmf,
    delta: f64,
) -> Result<PldEpsilon, AccountingError> {
    let epsilon = remove
        .epsilon_for_delta(h, delta)
        .max(add.epsilon_for_delta(h, delta));
    let spent = |p: &Pmf| p.error_term(epsilon) + p.inf_mass;
    let spent = spent(remove).max(spent(add));
    if spent > MAX_ERROR_SHARE * delta || !epsilon.is_finite() {
        return Err(AccountingError::DeltaBelowFloor {
            accountant: "pld",
            delta,
            floor: spent / MAX_ERROR_SHARE,
        });
    }
    Ok(PldEpsilon {
        epsilon,
        error_delta: spent,
        rdp_fallback: false,
    })
}

enum Composed {
    /// Full-batch only: one Gaussian with this `μ` (exact).
    Gaussian(f64),
    /// Discretised remove and add PLDs.
    Discrete { h: f64, remove: Pmf, add: Pmf },
}

impl Accountant for PldAccountant {
    fn name(&self) -> &'static str {
        "pld"
    }

    fn version(&self) -> String {
        format!(
            "fedsec-privacy {} pld (connect-the-dots, {} points per composed width, {} per round sd, \
             tilted FFT composition with a rigorous error bound, add+remove)",
            crate::VERSION,
            GRID_POINTS,
            PER_ROUND_POINTS,
        )
    }

    fn epsilon(
        &self,
        composition: &[(Mechanism, u64)],
        delta: f64,
    ) -> Result<f64, AccountingError> {
        Ok(self.epsilon_detailed(composition, delta)?.epsilon)
    }

    fn delta(
        &self,
        composition: &[(Mechanism, u64)],
        epsilon: f64,
    ) -> Result<f64, AccountingError> {
        check_epsilon(epsilon)?;
        let comp = checked_composition(composition)?;
        if comp.is_empty() {
            return Ok(0.0);
        }
        let d = match Self::composed(&comp, Target::Epsilon(epsilon))? {
            Composed::Gaussian(mu) => gaussian_delta(mu, epsilon),
            Composed::Discrete { h, remove, add } => remove
                .delta_for_epsilon(h, epsilon)
                .max(add.delta_for_epsilon(h, epsilon))
                .min(1.0),
        };
        if d.is_nan() {
            return Err(numerical("delta is NaN".into()));
        }
        Ok(d)
    }
}

#[cfg(test)]
mod tests;
