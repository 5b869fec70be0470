//! Privacy-loss-distribution accountant (in progress: returns an error until
//! the discretisation and FFT composition land).

use super::{
    Accountant, AccountingError, Mechanism, check_delta, check_epsilon, checked_composition,
};

/// PLD accountant for the Poisson-subsampled Gaussian.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PldAccountant;

impl Accountant for PldAccountant {
    fn name(&self) -> &'static str {
        "pld"
    }

    fn version(&self) -> String {
        format!("fedsec-privacy {} pld (unfinished)", crate::VERSION)
    }

    fn epsilon(
        &self,
        composition: &[(Mechanism, u64)],
        delta: f64,
    ) -> Result<f64, AccountingError> {
        check_delta(delta)?;
        checked_composition(composition)?;
        Err(AccountingError::Numerical {
            accountant: "pld",
            message: "the PLD accountant is not implemented yet".into(),
        })
    }

    fn delta(
        &self,
        composition: &[(Mechanism, u64)],
        epsilon: f64,
    ) -> Result<f64, AccountingError> {
        check_epsilon(epsilon)?;
        checked_composition(composition)?;
        Err(AccountingError::Numerical {
            accountant: "pld",
            message: "the PLD accountant is not implemented yet".into(),
        })
    }
}
