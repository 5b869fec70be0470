//! The coordinator's use of `fedsec-privacy`: noise sources, receipts and
//! their wire form, calibration at job start.
//!
//! All privacy math lives in the privacy crate; this module only chooses
//! which of its pieces a job uses and converts results to the wire types.

use fedsec_privacy::history::INLINE_HISTORY_ROUNDS;
use fedsec_privacy::{
    DiscreteGaussianNoise, EmpiricalAudit, GaussianNoise, HistoryChain, HistoryRef, NoiseKind,
    OpenDpGaussian, PrivacyReceipt, ReceiptSummary, RoundCharge, SimulationGaussian,
};
use fedsec_proto::v1;
use fedsec_round::Statement;
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Mechanism text of receipts of jobs that publish without noise.
pub(crate) const NO_NOISE_MECHANISM: &str = "NONE: noise disabled by a [dangerous] test configuration; \
     the published models carry NO differential-privacy guarantee";

/// A fresh noise source of the given kind. Simulation noise is seeded from
/// the operating system (it is only allowed under `[dangerous]`); the
/// discrete source keys itself from the operating system at first use.
pub(crate) fn noise_source(kind: NoiseKind) -> Box<dyn GaussianNoise> {
    match kind {
        NoiseKind::OpenDp => Box::new(OpenDpGaussian::new()),
        NoiseKind::Discrete => Box::new(DiscreteGaussianNoise::default()),
        NoiseKind::Simulation => Box::new(SimulationGaussian::seeded(rand::random())),
    }
}

/// Noise multiplier z for `rounds` rounds at rate `q` reaching `target_epsilon`
/// at `delta`, by the PLD accountant (the one receipts report).
/// (The round core's [`fedsec_round::calibrate`].)
pub(crate) fn calibrate(
    q: f64,
    rounds: u64,
    delta: f64,
    target_epsilon: f64,
) -> Result<f64, Error> {
    Ok(fedsec_round::calibrate(q, rounds, delta, target_epsilon)?)
}

/// A receipt with its canonical JSON and wire form.
#[derive(Debug, Clone, PartialEq)]
pub struct Receipt {
    /// ε (PLD) stated; +∞ without noise.
    pub epsilon_pld: f64,
    /// ε (RDP) stated; +∞ without noise.
    pub epsilon_rdp: f64,
    /// Canonical JSON as stored and served.
    pub json: String,
    /// Wire form (its `json` field is [`Self::json`]).
    pub proto: v1::PrivacyReceipt,
    body: Body,
}

/// The typed receipt behind the JSON: the summary form, whose round
/// history is inline when short and otherwise only referenced by its digest
/// (issue 16: a version's receipt is O(1) in rounds; the history is stored
/// once per job, in the ledger, and served by `GetRoundHistory`).
#[derive(Debug, Clone, PartialEq)]
enum Body {
    Dp(ReceiptSummary),
    NoGuarantee(NoGuaranteeReceipt),
}

/// The JSON of a receipt without a guarantee (ε fields are `null`); its
/// history is inline or referenced as in [`ReceiptSummary`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct NoGuaranteeReceipt {
    mechanism: String,
    neighbouring: String,
    delta: f64,
    epsilon_pld: Option<f64>,
    epsilon_rdp: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rounds: Option<Vec<RoundCharge>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    history: Option<HistoryRef>,
    accountant_versions: Vec<String>,
    empirical_audit: Option<EmpiricalAudit>,
}

/// `history_rounds` and `history_sha256` of the wire form.
fn history_fields(h: Option<&HistoryRef>) -> (u64, Vec<u8>) {
    h.map_or((0, Vec::new()), |h| {
        (h.rounds, h.digest().map(|d| d.to_vec()).unwrap_or_default())
    })
}

/// Wire form of a ledger charge.
pub(crate) fn charge_to_proto(c: &RoundCharge) -> v1::RoundCharge {
    v1::RoundCharge {
        round: c.round,
        sampling_rate: c.sampling_rate,
        noise_multiplier: c.noise_multiplier,
        clip_norm: c.clip_norm,
        sensitivity: c.sensitivity,
        count_stddev: c.count_stddev,
        expected_cohort: c.expected_cohort,
        committed_unix_ms: c.committed_unix_ms,
    }
}

/// Wire form of an empirical audit (receipts and `Job.audit`).
pub(crate) fn audit_to_proto(a: &EmpiricalAudit) -> v1::EmpiricalAudit {
    v1::EmpiricalAudit {
        canaries: a.canaries,
        epsilon_one_shot_final: a.epsilon_one_shot_final,
        epsilon_one_shot_all_iterates: a.epsilon_one_shot_all_iterates,
        epsilon_lower_bound: a.epsilon_lower_bound,
        confidence: a.confidence,
        delta: a.delta,
        unseen_canaries: a.unseen_canaries,
        epsilon_one_run_final: a.epsilon_one_run_final,
        epsilon_one_run_all_iterates: a.epsilon_one_run_all_iterates,
        epsilon_clopper_pearson_final: a.epsilon_clopper_pearson_final,
        epsilon_clopper_pearson_all_iterates: a.epsilon_clopper_pearson_all_iterates,
    }
}

impl Receipt {
    /// The published receipt of a round core statement
    /// ([`fedsec_round::Statement`], built once per round, at commit).
    pub fn from_statement(statement: Statement) -> Result<Self, Error> {
        match statement {
            Statement::Dp(r) => Self::from_receipt(&r),
            Statement::NoGuarantee { rounds, delta } => Self::compute(rounds, delta, false),
        }
    }

    /// The receipt for a job's round history at `delta`: ε by PLD and RDP,
    /// or, for a job without noise, an explicit no-guarantee statement.
    pub fn compute(
        rounds: Vec<RoundCharge>,
        delta: f64,
        noise_enabled: bool,
    ) -> Result<Self, Error> {
        if noise_enabled {
            let r = PrivacyReceipt::compute(rounds, delta).map_err(Error::Receipt)?;
            Self::from_receipt(&r)
        } else {
            let chain = HistoryChain::of(&rounds)
                .map_err(|_| Error::Internal("round history not numbered 1, 2, 3, …"))?;
            let r = NoGuaranteeReceipt {
                mechanism: NO_NOISE_MECHANISM.into(),
                neighbouring: fedsec_privacy::receipt::NEIGHBOURING.into(),
                delta,
                epsilon_pld: None,
                epsilon_rdp: None,
                rounds: (rounds.len() <= INLINE_HISTORY_ROUNDS).then_some(rounds),
                history: Some(chain.to_ref()),
                accountant_versions: Vec::new(),
                empirical_audit: None,
            };
            let json = serde_json::to_string(&r).map_err(Error::json("receipt JSON"))?;
            Ok(Self::from_no_guarantee(r, json))
        }
    }

    fn from_receipt(r: &PrivacyReceipt) -> Result<Self, Error> {
        let summary = ReceiptSummary::of(r)
            .map_err(|_| Error::Internal("round history not numbered 1, 2, 3, …"))?;
        Self::from_summary(summary)
    }

    fn from_summary(r: ReceiptSummary) -> Result<Self, Error> {
        let json = serde_json::to_string(&r).map_err(Error::json("receipt JSON"))?;
        let (history_rounds, history_sha256) = history_fields(r.history.as_ref());
        let proto = v1::PrivacyReceipt {
            mechanism: r.mechanism.clone(),
            neighbouring: r.neighbouring.clone(),
            delta: r.delta,
            epsilon_pld: r.epsilon_pld,
            epsilon_rdp: r.epsilon_rdp,
            rounds: r.rounds.iter().flatten().map(charge_to_proto).collect(),
            accountant_versions: r.accountant_versions.clone(),
            empirical_audit: r.empirical_audit.as_ref().map(audit_to_proto),
            json: json.clone(),
            history_rounds,
            history_sha256,
        };
        Ok(Self {
            epsilon_pld: r.epsilon_pld,
            epsilon_rdp: r.epsilon_rdp,
            json,
            proto,
            body: Body::Dp(r),
        })
    }

    fn from_no_guarantee(r: NoGuaranteeReceipt, json: String) -> Self {
        let pld = r.epsilon_pld.unwrap_or(f64::INFINITY);
        let rdp = r.epsilon_rdp.unwrap_or(f64::INFINITY);
        let (history_rounds, history_sha256) = history_fields(r.history.as_ref());
        Self {
            epsilon_pld: pld,
            epsilon_rdp: rdp,
            proto: v1::PrivacyReceipt {
                mechanism: r.mechanism.clone(),
                neighbouring: r.neighbouring.clone(),
                delta: r.delta,
                epsilon_pld: pld,
                epsilon_rdp: rdp,
                rounds: r.rounds.iter().flatten().map(charge_to_proto).collect(),
                accountant_versions: r.accountant_versions.clone(),
                empirical_audit: r.empirical_audit.as_ref().map(audit_to_proto),
                json: json.clone(),
                history_rounds,
                history_sha256,
            },
            json,
            body: Body::NoGuarantee(r),
        }
    }

    /// Reads a stored receipt: a summary (history inline or referenced),
    /// or one written before references existed (history always inline).
    pub fn from_json(json: &str) -> Result<Self, Error> {
        match serde_json::from_str::<ReceiptSummary>(json) {
            Ok(r) => {
                let mut out = Self::from_summary(r)?;
                // Keep the stored bytes exactly.
                out.json = json.to_owned();
                out.proto.json = json.to_owned();
                Ok(out)
            }
            Err(_) => {
                let r: NoGuaranteeReceipt = serde_json::from_str(json)
                    .map_err(Error::json("stored receipt is unreadable"))?;
                Ok(Self::from_no_guarantee(r, json.to_owned()))
            }
        }
    }

    /// The same receipt with an empirical audit attached (the ε statement
    /// and the round history are unchanged; only `empirical_audit` is set).
    pub fn with_audit(&self, audit: EmpiricalAudit) -> Result<Self, Error> {
        match &self.body {
            Body::Dp(r) => {
                let mut r = r.clone();
                r.empirical_audit = Some(audit);
                Self::from_summary(r)
            }
            Body::NoGuarantee(r) => {
                let mut r = r.clone();
                r.empirical_audit = Some(audit);
                let json = serde_json::to_string(&r).map_err(Error::json("receipt JSON"))?;
                Ok(Self::from_no_guarantee(r, json))
            }
        }
    }

    /// The same receipt with `audit` attached if there is one.
    pub fn with_optional_audit(self, audit: Option<EmpiricalAudit>) -> Result<Self, Error> {
        match audit {
            Some(a) => self.with_audit(a),
            None => Ok(self),
        }
    }

    /// The empirical audit attached to this receipt, if any.
    pub fn empirical_audit(&self) -> Option<EmpiricalAudit> {
        match &self.body {
            Body::Dp(r) => r.empirical_audit,
            Body::NoGuarantee(r) => r.empirical_audit,
        }
    }

    /// Rounds the statement covers (inline or referenced).
    pub fn history_rounds(&self) -> u64 {
        match &self.body {
            Body::Dp(r) => r.history_rounds(),
            Body::NoGuarantee(r) => r.history.as_ref().map_or_else(
                || r.rounds.as_ref().map_or(0, |v| v.len() as u64),
                |h| h.rounds,
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn charge(round: u64) -> RoundCharge {
        RoundCharge {
            round,
            sampling_rate: 0.1,
            noise_multiplier: 1.0,
            clip_norm: 1.0,
            sensitivity: 1.0,
            count_stddev: 0.0,
            expected_cohort: 10.0,
            committed_unix_ms: 1,
        }
    }

    #[test]
    fn receipts_roundtrip_through_json() {
        let r = Receipt::compute(vec![charge(1), charge(2)], 1e-5, true).unwrap();
        assert!(r.epsilon_pld > 0.0 && r.epsilon_pld.is_finite());
        assert!(r.epsilon_rdp >= r.epsilon_pld * 0.99);
        let back = Receipt::from_json(&r.json).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.proto.rounds.len(), 2);
        assert_eq!(r.history_rounds(), 2);
        assert_eq!(r.proto.history_rounds, 2);
        assert_eq!(r.proto.history_sha256.len(), 32);
        let empty = Receipt::compute(vec![], 1e-5, true).unwrap();
        assert_eq!(empty.epsilon_pld, 0.0);
        // The round core's statement gives the same receipt.
        let dp = PrivacyReceipt::compute(vec![charge(1), charge(2)], 1e-5).unwrap();
        assert_eq!(
            Receipt::from_statement(Statement::Dp(dp)).unwrap(),
            Receipt::compute(vec![charge(1), charge(2)], 1e-5, true).unwrap()
        );
        let none = Statement::NoGuarantee {
            rounds: vec![charge(1)],
            delta: 1e-5,
        };
        assert_eq!(
            Receipt::from_statement(none).unwrap(),
            Receipt::compute(vec![charge(1)], 1e-5, false).unwrap()
        );
    }

    #[test]
    fn long_histories_are_referenced_not_embedded() {
        let history: Vec<RoundCharge> = (1..=1000).map(charge).collect();
        for noise in [true, false] {
            let r = Receipt::compute(history.clone(), 1e-5, noise).unwrap();
            assert!(r.proto.rounds.is_empty());
            assert!(!r.json.contains("\"rounds\":["), "{}", r.json);
            assert!(r.json.len() < 1_500, "{} bytes", r.json.len());
            assert_eq!((r.history_rounds(), r.proto.history_rounds), (1000, 1000));
            let chain = HistoryChain::of(&history).unwrap();
            assert_eq!(r.proto.history_sha256, chain.digest().to_vec());
            let back = Receipt::from_json(&r.json).unwrap();
            assert_eq!(back, r);
        }
    }

    #[test]
    fn receipts_stored_before_references_are_served_as_stored() {
        // The JSON an earlier coordinator stored: the privacy crate's
        // receipt with its whole history and no reference.
        let old = PrivacyReceipt::compute((1..=3).map(charge).collect(), 1e-5).unwrap();
        let json = serde_json::to_string(&old).unwrap();
        let r = Receipt::from_json(&json).unwrap();
        assert_eq!(r.json, json);
        assert_eq!(r.proto.rounds.len(), 3);
        assert_eq!((r.history_rounds(), r.proto.history_rounds), (3, 0));
        assert!(r.proto.history_sha256.is_empty());
        let served: PrivacyReceipt = serde_json::from_str(&r.proto.json).unwrap();
        served.verify().unwrap();
    }

    #[test]
    fn no_noise_receipts_state_no_guarantee() {
        let r = Receipt::compute(vec![charge(1)], 1e-5, false).unwrap();
        assert!(r.epsilon_pld.is_infinite());
        assert_eq!(r.proto.mechanism, NO_NOISE_MECHANISM);
        assert!(r.json.contains("\"epsilon_pld\":null"), "{}", r.json);
        assert_eq!(Receipt::from_json(&r.json).unwrap(), r);
    }

    #[test]
    fn audits_attach_to_both_kinds_of_receipt_without_changing_epsilon() {
        let audit = EmpiricalAudit {
            canaries: 40,
            epsilon_one_shot_final: f64::INFINITY,
            epsilon_lower_bound: 3.0,
            confidence: 0.95,
            delta: 1e-5,
            unseen_canaries: 24,
            ..EmpiricalAudit::default()
        };
        for noise in [true, false] {
            let r = Receipt::compute(vec![charge(1)], 1e-5, noise).unwrap();
            let a = r.with_audit(audit).unwrap();
            assert_eq!(a.epsilon_pld.to_bits(), r.epsilon_pld.to_bits());
            assert_eq!(a.empirical_audit(), Some(audit));
            let p = a.proto.empirical_audit.unwrap();
            assert!(p.epsilon_one_shot_final.is_infinite());
            assert_eq!((p.canaries, p.unseen_canaries), (40, 24));
            assert!(a.json.contains("\"empirical_audit\":{"), "{}", a.json);
            let back = Receipt::from_json(&a.json).unwrap();
            assert_eq!(back, a);
            if noise {
                let typed: PrivacyReceipt = serde_json::from_str(&a.json).unwrap();
                typed.verify().unwrap();
            }
        }
    }
}
