//! Ledger entries and privacy receipts.
//!
//! A [`RoundCharge`] is what one released round costs; a [`PrivacyReceipt`]
//! is the statement attached to every published model version: the whole
//! round history, δ, and ε by both accountants. Field names mirror
//! `RoundCharge`, `PrivacyReceipt` and `EmpiricalAudit` in
//! `proto/fedsec/v1/common.proto`.
//!
//! Anyone holding a receipt can [`PrivacyReceipt::verify`] it: ε is
//! recomputed from the round history and the receipt fails if it states less.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::accounting::{Accountant, AccountingError, Mechanism, PldAccountant, RdpAccountant};
use crate::adaptive::effective_noise_multiplier;

/// Human-readable description of the mechanism every receipt covers.
pub const MECHANISM_DESCRIPTION: &str = "Poisson-subsampled Gaussian over tenants: each round includes every \
tenant independently with probability q and takes at most one update per tenant, sums the updates clipped to \
L2 norm C, adds N(0, (z * sensitivity)^2 I) with sensitivity = C + grid rounding inflation, and divides by the \
fixed expected cohort size q*N of the declared population N; every round is released whatever its realised \
cohort; adaptive clipping counts are part of the same Gaussian mechanism (Andrew et al. 2021)";

/// The neighbouring relation every receipt is stated for: the privacy unit
/// is the tenant, with all of its client identities and all of their data.
pub const NEIGHBOURING: &str =
    "add/remove one tenant (all of a tenant's data, under every one of its client identities)";

/// The privacy unit every receipt is stated for (the unit of
/// [`NEIGHBOURING`]).
pub const PRIVACY_UNIT: &str = "tenant";

/// Relative slack [`PrivacyReceipt::verify`] allows for floating-point
/// differences between machines (e.g. different SIMD paths in the FFT).
pub const VERIFY_RELATIVE_SLACK: f64 = 1e-9;

/// One round's privacy charge, as recorded in the ledger and in receipts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RoundCharge {
    /// Round number (1-based) within the job.
    pub round: u64,
    /// Poisson sampling rate `q`.
    pub sampling_rate: f64,
    /// Noise multiplier `z_Δ` of the model update: the noise stddev on the sum
    /// is `noise_multiplier × sensitivity`.
    pub noise_multiplier: f64,
    /// Clip norm `C`.
    pub clip_norm: f64,
    /// L2 sensitivity accounted: `C` plus the sampler's grid inflation plus
    /// the rounding bound of the `f64` sum ([`crate::clip::accumulation_inflation`]).
    pub sensitivity: f64,
    /// Stddev `σ_b` of the noise on the adaptive-clipping count; 0 = fixed clipping.
    pub count_stddev: f64,
    /// Expected cohort size `q·N`, the fixed denominator.
    pub expected_cohort: f64,
    /// Unix time (ms) at which the charge was committed.
    pub committed_unix_ms: i64,
}

impl RoundCharge {
    /// The round as one accounted Gaussian mechanism: the update and (with
    /// adaptive clipping) the count query together, with noise multiplier
    /// `(z_Δ⁻² + (2σ_b)⁻²)^(−1/2)`.
    pub fn mechanism(&self) -> Mechanism {
        Mechanism {
            sampling_rate: self.sampling_rate,
            noise_multiplier: effective_noise_multiplier(self.noise_multiplier, self.count_stddev),
        }
    }

    /// Checks the charge is internally consistent.
    pub fn validate(&self) -> Result<(), ReceiptError> {
        let bad = |field: &'static str, value: f64| ReceiptError::InvalidCharge {
            round: self.round,
            field,
            value,
        };
        if self.round == 0 {
            return Err(bad("round", 0.0));
        }
        if !(self.clip_norm > 0.0 && self.clip_norm.is_finite()) {
            return Err(bad("clip_norm", self.clip_norm));
        }
        if !(self.sensitivity >= self.clip_norm && self.sensitivity.is_finite()) {
            return Err(bad("sensitivity", self.sensitivity));
        }
        if !(self.count_stddev >= 0.0 && self.count_stddev.is_finite()) {
            return Err(bad("count_stddev", self.count_stddev));
        }
        if !(self.expected_cohort > 0.0 && self.expected_cohort.is_finite()) {
            return Err(bad("expected_cohort", self.expected_cohort));
        }
        self.mechanism().validate()?;
        Ok(())
    }
}

/// Groups identical mechanisms (bit-equal `q` and effective `z`), in order of
/// first appearance, so that a homogeneous history of `T` rounds becomes one
/// `(mechanism, T)` entry and costs the accountants `O(log T)` instead of `O(T)`.
pub fn compose(charges: &[RoundCharge]) -> Vec<(Mechanism, u64)> {
    let mut out: Vec<(Mechanism, u64)> = Vec::new();
    for c in charges {
        let m = c.mechanism();
        let key = (m.sampling_rate.to_bits(), m.noise_multiplier.to_bits());
        match out
            .iter_mut()
            .find(|(o, _)| (o.sampling_rate.to_bits(), o.noise_multiplier.to_bits()) == key)
        {
            Some((_, n)) => *n += 1,
            None => out.push((m, 1)),
        }
    }
    out
}

/// Result of a canary audit: a measurement (lower bounds and estimates), not
/// a proof. Every ε is stated at [`Self::delta`]; one-shot values are
/// estimates that may fall on either side of the true ε, and the lower bounds
/// hold only under the assumptions of their estimators ([`crate::audit`]).
///
/// In JSON, an infinite ε (e.g. the one-shot estimate of a job without noise)
/// is written as the string `"inf"`, since JSON numbers cannot be infinite.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct EmpiricalAudit {
    /// Number of inserted canaries.
    pub canaries: u32,
    /// One-shot ε estimate (Andrew et al. 2024) from the final model.
    #[serde(with = "float_or_inf")]
    pub epsilon_one_shot_final: f64,
    /// One-shot ε estimate over all published iterates.
    #[serde(with = "float_or_inf")]
    pub epsilon_one_shot_all_iterates: f64,
    /// Statistically valid lower bound on ε at [`Self::confidence`]: the
    /// larger one-run bound, each computed at `(1 − confidence)/2`.
    #[serde(with = "float_or_inf")]
    pub epsilon_lower_bound: f64,
    /// Confidence of the lower bound (e.g. 0.95).
    pub confidence: f64,
    /// δ at which every ε of the audit is stated (0 in receipts written
    /// before this field existed).
    #[serde(default)]
    pub delta: f64,
    /// Canaries drawn but never inserted (the null sample).
    #[serde(default)]
    pub unseen_canaries: u32,
    /// One-run lower bound (Steinke, Nasr & Jagielski 2023) from the
    /// final-model statistic, at confidence `1 − (1 − confidence)/2`.
    #[serde(default, with = "float_or_inf")]
    pub epsilon_one_run_final: f64,
    /// One-run lower bound from the all-iterates statistic.
    #[serde(default, with = "float_or_inf")]
    pub epsilon_one_run_all_iterates: f64,
    /// Clopper–Pearson bound (Jagielski, Ullman & Oprea 2020) from the
    /// final-model statistic at [`Self::confidence`]; heuristic within one
    /// run (it treats the canaries as independent trials).
    #[serde(default, with = "float_or_inf")]
    pub epsilon_clopper_pearson_final: f64,
    /// The same from the all-iterates statistic.
    #[serde(default, with = "float_or_inf")]
    pub epsilon_clopper_pearson_all_iterates: f64,
}

/// Serde for an `f64` that may be infinite: finite values as JSON numbers,
/// `±∞` as the strings `"inf"` / `"-inf"` (NaN as `"nan"`).
mod float_or_inf {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f64(*v)
        } else if v.is_nan() {
            s.serialize_str("nan")
        } else if *v > 0.0 {
            s.serialize_str("inf")
        } else {
            s.serialize_str("-inf")
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Number(f64),
        Text(String),
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        match Repr::deserialize(d)? {
            Repr::Number(v) => Ok(v),
            Repr::Text(t) => match t.as_str() {
                "inf" => Ok(f64::INFINITY),
                "-inf" => Ok(f64::NEG_INFINITY),
                "nan" => Ok(f64::NAN),
                other => Err(serde::de::Error::custom(format!(
                    "expected a number, \"inf\", \"-inf\" or \"nan\", got {other:?}"
                ))),
            },
        }
    }
}

/// The privacy statement attached to every published model version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrivacyReceipt {
    /// Human-readable mechanism description.
    pub mechanism: String,
    /// Neighbouring relation the guarantee is stated for.
    pub neighbouring: String,
    /// δ of the `(ε, δ)` statement.
    pub delta: f64,
    /// ε from the PLD accountant (the reported, tight bound).
    pub epsilon_pld: f64,
    /// ε from the RDP accountant (conservative cross-check).
    pub epsilon_rdp: f64,
    /// Every round charged so far, in order.
    pub rounds: Vec<RoundCharge>,
    /// Accountant implementation versions (PLD first, then RDP).
    pub accountant_versions: Vec<String>,
    /// Empirical audit of the job, if one was run (a lower bound, not a guarantee).
    pub empirical_audit: Option<EmpiricalAudit>,
}

/// Why a receipt could not be computed or does not verify.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ReceiptError {
    /// An accountant failed or refused the history.
    #[error(transparent)]
    Accounting(#[from] AccountingError),
    /// A round charge has an invalid field.
    #[error("round {round}: invalid {field} = {value}")]
    InvalidCharge {
        /// Round number of the charge.
        round: u64,
        /// Offending field.
        field: &'static str,
        /// Its value.
        value: f64,
    },
    /// Rounds are not numbered 1, 2, 3, … in order.
    #[error("round history is not consecutive: position {position} holds round {round}")]
    RoundsOutOfOrder {
        /// 0-based position in the history.
        position: usize,
        /// Round number found there.
        round: u64,
    },
    /// The stated ε is below what the history costs.
    #[error("stated epsilon_{accountant} = {stated} is below the recomputed {recomputed}")]
    EpsilonUnderstated {
        /// Which accountant.
        accountant: &'static str,
        /// ε written in the receipt.
        stated: f64,
        /// ε recomputed from the history.
        recomputed: f64,
    },
    /// The receipt's fixed descriptions differ from this implementation's.
    #[error("receipt describes a different {field}: {found:?}")]
    UnknownStatement {
        /// `mechanism` or `neighbouring`.
        field: &'static str,
        /// The receipt's text.
        found: String,
    },
}

fn validate_history(rounds: &[RoundCharge]) -> Result<(), ReceiptError> {
    for (position, c) in rounds.iter().enumerate() {
        if c.round != position as u64 + 1 {
            return Err(ReceiptError::RoundsOutOfOrder {
                position,
                round: c.round,
            });
        }
        c.validate()?;
    }
    Ok(())
}

impl PrivacyReceipt {
    /// Computes ε by PLD and RDP for the round history at `delta`.
    pub fn compute(rounds: Vec<RoundCharge>, delta: f64) -> Result<Self, ReceiptError> {
        validate_history(&rounds)?;
        let composition = compose(&rounds);
        let pld = PldAccountant;
        let rdp = RdpAccountant;
        let epsilon_pld = pld.epsilon(&composition, delta)?;
        let epsilon_rdp = rdp.epsilon(&composition, delta)?;
        Ok(Self {
            mechanism: MECHANISM_DESCRIPTION.to_string(),
            neighbouring: NEIGHBOURING.to_string(),
            delta,
            epsilon_pld,
            epsilon_rdp,
            rounds,
            accountant_versions: vec![pld.version(), rdp.version()],
            empirical_audit: None,
        })
    }

    /// Recomputes ε from the round history and fails if either stated ε is
    /// lower than the recomputed one (beyond [`VERIFY_RELATIVE_SLACK`]), or the
    /// history or statements are malformed.
    pub fn verify(&self) -> Result<(), ReceiptError> {
        if self.mechanism != MECHANISM_DESCRIPTION {
            return Err(ReceiptError::UnknownStatement {
                field: "mechanism",
                found: self.mechanism.clone(),
            });
        }
        if self.neighbouring != NEIGHBOURING {
            return Err(ReceiptError::UnknownStatement {
                field: "neighbouring",
                found: self.neighbouring.clone(),
            });
        }
        validate_history(&self.rounds)?;
        let composition = compose(&self.rounds);
        let accountants: [(&dyn Accountant, f64); 2] = [
            (&PldAccountant, self.epsilon_pld),
            (&RdpAccountant, self.epsilon_rdp),
        ];
        for (acct, stated) in accountants {
            let recomputed = acct.epsilon(&composition, self.delta)?;
            if stated.is_nan() || stated < recomputed * (1.0 - VERIFY_RELATIVE_SLACK) {
                return Err(ReceiptError::EpsilonUnderstated {
                    accountant: acct.name(),
                    stated,
                    recomputed,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn charge(round: u64, q: f64, z: f64, sb: f64) -> RoundCharge {
        RoundCharge {
            round,
            sampling_rate: q,
            noise_multiplier: z,
            clip_norm: 1.0,
            sensitivity: 1.0 + 1e-9,
            count_stddev: sb,
            expected_cohort: 100.0,
            committed_unix_ms: 1_700_000_000_000 + round as i64,
        }
    }

    #[test]
    fn receipts_state_the_tenant_as_the_unit_and_refuse_another() {
        let r = PrivacyReceipt::compute(vec![charge(1, 0.01, 1.0, 0.0)], 1e-5).unwrap();
        assert!(r.neighbouring.contains(&format!("one {PRIVACY_UNIT}")));
        assert!(r.mechanism.contains("at most one update per tenant"));
        r.verify().unwrap();
        // A receipt stated per client identity (as fedsec once did) makes a
        // different claim: verification refuses it rather than re-reading it.
        let per_client = PrivacyReceipt {
            neighbouring: "add/remove one client (all of a client's data)".into(),
            ..r
        };
        assert!(matches!(
            per_client.verify(),
            Err(ReceiptError::UnknownStatement {
                field: "neighbouring",
                ..
            })
        ));
    }

    #[test]
    fn compose_groups_identical_mechanisms_in_order() {
        let mut h: Vec<RoundCharge> = (1..=5).map(|r| charge(r, 0.01, 1.0, 0.0)).collect();
        h.push(charge(6, 0.02, 1.0, 0.0));
        h.push(charge(7, 0.01, 1.0, 0.0));
        h.push(charge(8, 0.01, 1.0, 5.0)); // adaptive clipping: different effective z
        let c = compose(&h);
        assert_eq!(c.len(), 3);
        assert_eq!(
            c[0],
            (
                Mechanism {
                    sampling_rate: 0.01,
                    noise_multiplier: 1.0
                },
                6
            )
        );
        assert_eq!(c[1].1, 1);
        assert_eq!(
            c[2].0.noise_multiplier,
            effective_noise_multiplier(1.0, 5.0)
        );
        assert!(c[2].0.noise_multiplier < 1.0);
        assert!(compose(&[]).is_empty());
    }

    #[test]
    fn charges_are_validated() {
        let mut c = charge(1, 0.01, 1.0, 0.0);
        assert!(c.validate().is_ok());
        c.sensitivity = 0.5;
        assert!(matches!(
            c.validate(),
            Err(ReceiptError::InvalidCharge {
                field: "sensitivity",
                ..
            })
        ));
        let mut c = charge(1, 0.01, 1.0, 0.0);
        c.sampling_rate = 0.0;
        assert!(matches!(c.validate(), Err(ReceiptError::Accounting(_))));
        let h = vec![charge(1, 0.01, 1.0, 0.0), charge(3, 0.01, 1.0, 0.0)];
        assert!(matches!(
            validate_history(&h),
            Err(ReceiptError::RoundsOutOfOrder {
                position: 1,
                round: 3
            })
        ));
    }

    #[test]
    fn empirical_audits_keep_infinite_estimates_and_read_old_receipts() {
        let a = EmpiricalAudit {
            canaries: 10,
            epsilon_one_shot_final: f64::INFINITY,
            epsilon_one_shot_all_iterates: 3.5,
            epsilon_lower_bound: 1.25,
            confidence: 0.95,
            delta: 1e-6,
            unseen_canaries: 12,
            ..EmpiricalAudit::default()
        };
        let json = serde_json::to_string(&a).unwrap();
        assert!(
            json.contains("\"epsilon_one_shot_final\":\"inf\""),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<EmpiricalAudit>(&json).unwrap(), a);
        // Written before the extra fields existed: they default to 0.
        let old = r#"{"canaries":3,"epsilon_one_shot_final":0.5,"epsilon_one_shot_all_iterates":0.7,"epsilon_lower_bound":0.1,"confidence":0.95}"#;
        let back: EmpiricalAudit = serde_json::from_str(old).unwrap();
        assert_eq!((back.canaries, back.epsilon_lower_bound), (3, 0.1));
        assert_eq!((back.delta, back.unseen_canaries), (0.0, 0));
        assert!(serde_json::from_str::<EmpiricalAudit>(&old.replace("0.5", "\"big\"")).is_err());
    }

    #[test]
    fn serde_field_names_mirror_the_proto() {
        let v = serde_json::to_value(charge(1, 0.01, 1.0, 0.0)).unwrap();
        for k in [
            "round",
            "sampling_rate",
            "noise_multiplier",
            "clip_norm",
            "sensitivity",
            "count_stddev",
            "expected_cohort",
            "committed_unix_ms",
        ] {
            assert!(v.get(k).is_some(), "missing {k}");
        }
    }
}
