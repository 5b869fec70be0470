//! Plan: before a round opens, its charge, ε after it, and whether it may be
//! released at all. Charge: once it is released, the ledger entry stamped
//! with its commit time (ε unchanged).
//!
//! The decision looks only at data-independent facts — the round number,
//! the committed history, the job's parameters and budget — never at who
//! was selected or reported.

use fedsec_privacy::{PrivacyReceipt, RoundCharge, accumulation_inflation};

use crate::error::RoundError;
use crate::release::NoisePlan;
use crate::resolve::Resolved;

/// What planning a round needs.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanInput {
    /// The round to plan (committed rounds + 1).
    pub round: u64,
    /// Rounds the job runs.
    pub rounds: u64,
    /// Every committed round's charge, in order.
    pub history: Vec<RoundCharge>,
    /// The job's resolved parameters.
    pub resolved: Resolved,
    /// The clip norm `C` of this round.
    pub clip_norm: f64,
    /// The noise source's grid inflation of the sensitivity at the model's
    /// dimension (`GaussianNoise::sensitivity_inflation`; 0 without noise).
    pub source_inflation: f64,
    /// A public bound on the number of updates the sum may hold (the
    /// coordinator's `limits.max_tenants` plus any canaries; never a count of
    /// who registered, which the receipt would reveal): the `f64` sum's
    /// rounding bound depends on it.
    pub max_summands: u64,
    /// δ of the guarantee.
    pub delta: f64,
    /// Whether noise is added at all.
    pub noise_enabled: bool,
    /// The hard ε budget, if any.
    pub budget: Option<f64>,
}

/// The round's privacy statement before it is published: ε by the
/// accountants, or, for a job without noise, none.
#[derive(Debug, Clone, PartialEq)]
pub enum Statement {
    /// ε by PLD and RDP for the history including this round.
    Dp(PrivacyReceipt),
    /// No guarantee (noise disabled under `[dangerous]`).
    NoGuarantee {
        /// The history including this round.
        rounds: Vec<RoundCharge>,
        /// δ of the job.
        delta: f64,
    },
}

impl Statement {
    /// ε (PLD) stated; +∞ without a guarantee.
    pub fn epsilon_pld(&self) -> f64 {
        match self {
            Self::Dp(r) => r.epsilon_pld,
            Self::NoGuarantee { .. } => f64::INFINITY,
        }
    }

    /// ε (RDP) stated; +∞ without a guarantee.
    pub fn epsilon_rdp(&self) -> f64 {
        match self {
            Self::Dp(r) => r.epsilon_rdp,
            Self::NoGuarantee { .. } => f64::INFINITY,
        }
    }

    /// The round history the statement covers.
    pub fn rounds(&self) -> &[RoundCharge] {
        match self {
            Self::Dp(r) => &r.rounds,
            Self::NoGuarantee { rounds, .. } => rounds,
        }
    }

    fn stamp_last(&mut self, charge: RoundCharge) {
        let rounds = match self {
            Self::Dp(r) => &mut r.rounds,
            Self::NoGuarantee { rounds, .. } => rounds,
        };
        if let Some(last) = rounds.last_mut() {
            *last = charge;
        }
    }
}

/// What the plan decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// Every round has run: the job is complete.
    Completed,
    /// Releasing the round would bring ε past the budget: the job ends.
    BudgetExhausted {
        /// The round that was not opened.
        round: u64,
        /// ε after it, had it been released.
        epsilon: f64,
        /// The budget.
        budget: f64,
    },
    /// Open the round; it will be released whatever its realised cohort.
    Release(Box<PlannedRound>),
}

/// A round that may be opened and released.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedRound {
    /// Its charge (commit time 0 until [`PlannedRound::charge`]).
    pub charge: RoundCharge,
    /// The privacy statement after it.
    pub statement: Statement,
    /// The bound on summands the sensitivity was planned for.
    pub max_summands: u64,
    noise_enabled: bool,
}

/// A released round's ledger entry and statement.
#[derive(Debug, Clone, PartialEq)]
pub struct Charged {
    /// The charge, stamped with its commit time.
    pub charge: RoundCharge,
    /// The statement whose last round is that charge.
    pub statement: Statement,
}

/// Plans round `input.round` (see the module documentation). Takes the
/// input by value: the history becomes the statement's.
pub fn plan(input: PlanInput) -> Result<Plan, RoundError> {
    if input.round > input.rounds {
        return Ok(Plan::Completed);
    }
    let res = &input.resolved;
    let inflation = if input.noise_enabled {
        input.source_inflation + accumulation_inflation(input.clip_norm, input.max_summands)
    } else {
        0.0
    };
    let charge = RoundCharge {
        round: input.round,
        sampling_rate: res.sampling_rate,
        noise_multiplier: res.update_noise_multiplier,
        clip_norm: input.clip_norm,
        sensitivity: input.clip_norm + inflation,
        count_stddev: res.count_stddev,
        expected_cohort: res.expected_cohort,
        committed_unix_ms: 0,
    };
    let mut rounds = input.history;
    rounds.push(charge);
    let statement = if input.noise_enabled {
        Statement::Dp(PrivacyReceipt::compute(rounds, input.delta).map_err(RoundError::Receipt)?)
    } else {
        Statement::NoGuarantee {
            rounds,
            delta: input.delta,
        }
    };
    if let Some(budget) = input.budget
        && statement.epsilon_pld() > budget
    {
        return Ok(Plan::BudgetExhausted {
            round: input.round,
            epsilon: statement.epsilon_pld(),
            budget,
        });
    }
    Ok(Plan::Release(Box::new(PlannedRound {
        charge,
        statement,
        max_summands: input.max_summands,
        noise_enabled: input.noise_enabled,
    })))
}

impl PlannedRound {
    /// The noise on the sum: stddev `z_Δ × sensitivity` per coordinate, or
    /// `None` for a job without noise.
    pub fn noise_plan(&self) -> Option<NoisePlan> {
        self.noise_enabled.then_some(NoisePlan {
            update_stddev: self.charge.noise_multiplier * self.charge.sensitivity,
        })
    }

    /// What to draw for this round's noise ([`crate::RoundNoise::draw`]) on
    /// a model of `dim` parameters, with adaptive clipping's σ_b if the job
    /// clips adaptively; `None` for a job without noise. Known as soon as
    /// the round is planned: the noise does not depend on the data.
    pub fn noise_request(
        &self,
        dim: usize,
        count_stddev: Option<f64>,
    ) -> Option<crate::NoiseRequest> {
        self.noise_plan().map(|plan| crate::NoiseRequest {
            plan,
            dim,
            count_stddev,
        })
    }

    /// Refuses a sum of more updates than the sensitivity was planned for
    /// (a bug upstream: each unit sends at most one update).
    pub fn check_summands(&self, accepted: u64) -> Result<(), RoundError> {
        if accepted > self.max_summands {
            return Err(RoundError::TooManySummands {
                accepted,
                max_summands: self.max_summands,
            });
        }
        Ok(())
    }

    /// The ledger entry of the released round: the planned charge with its
    /// commit time (same mechanism, so ε is unchanged).
    pub fn charge(self, committed_unix_ms: i64) -> Charged {
        let charge = RoundCharge {
            committed_unix_ms,
            ..self.charge
        };
        let mut statement = self.statement;
        statement.stamp_last(charge);
        Charged { charge, statement }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RES: Resolved = Resolved {
        sampling_rate: 0.1,
        expected_cohort: 10.0,
        noise_multiplier: 1.0,
        update_noise_multiplier: 1.0,
        count_stddev: 0.0,
    };

    fn input(round: u64, history: &[RoundCharge], budget: Option<f64>) -> PlanInput {
        PlanInput {
            round,
            rounds: 5,
            history: history.to_vec(),
            resolved: RES,
            clip_norm: 1.0,
            source_inflation: 1e-6,
            max_summands: 100,
            delta: 1e-6,
            noise_enabled: true,
            budget,
        }
    }

    #[test]
    fn plans_charges_and_stamps_rounds() {
        let Plan::Release(p) = plan(input(1, &[], None)).unwrap() else {
            panic!("round 1 must be released");
        };
        assert_eq!(p.charge.round, 1);
        assert!(p.charge.sensitivity > 1.0 + 1e-6, "inflation carried");
        assert_eq!(
            p.noise_plan(),
            Some(NoisePlan {
                update_stddev: p.charge.sensitivity
            })
        );
        let eps1 = p.statement.epsilon_pld();
        assert!(eps1.is_finite() && eps1 > 0.0);
        assert!(p.check_summands(100).is_ok());
        assert!(p.check_summands(101).is_err());
        let charged = p.charge(42);
        assert_eq!(charged.charge.committed_unix_ms, 42);
        assert_eq!(charged.statement.rounds().last(), Some(&charged.charge));
        assert_eq!(charged.statement.epsilon_pld(), eps1);
        let history = [charged.charge];
        let Plan::Release(p2) = plan(input(2, &history, None)).unwrap() else {
            panic!("round 2 must be released");
        };
        assert!(p2.statement.epsilon_pld() > eps1);
        assert_eq!(plan(input(6, &history, None)).unwrap(), Plan::Completed);
    }

    #[test]
    fn the_budget_is_never_exceeded() {
        let Plan::Release(p) = plan(input(1, &[], None)).unwrap() else {
            panic!("round 1 must be released");
        };
        let eps1 = p.statement.epsilon_pld();
        let history = [p.charge(1).charge];
        match plan(input(2, &history, Some(eps1 * 1.01))).unwrap() {
            Plan::BudgetExhausted {
                round,
                epsilon,
                budget,
            } => {
                assert_eq!(round, 2);
                assert!(epsilon > budget && budget > eps1);
            }
            other => panic!("expected the budget to stop round 2, got {other:?}"),
        }
    }

    #[test]
    fn without_noise_there_is_no_guarantee_and_no_inflation() {
        let mut i = input(1, &[], None);
        i.noise_enabled = false;
        let Plan::Release(p) = plan(i).unwrap() else {
            panic!("round 1 must be released");
        };
        assert_eq!(p.charge.sensitivity, 1.0);
        assert_eq!(p.noise_plan(), None);
        assert_eq!(p.statement.epsilon_pld(), f64::INFINITY);
    }
}
