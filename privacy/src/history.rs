//! Round histories by reference: a SHA-256 hash chain over the charges and
//! the summary form of a receipt that names its history by that digest.
//!
//! A job's round history grows by one [`RoundCharge`] per round and every
//! published version's statement covers the whole history so far. Embedding
//! the history in every version's receipt costs O(rounds × versions) bytes
//! (179 B per round per version as JSON) and makes the receipt of a long
//! job larger than a download header may be. A [`ReceiptSummary`] instead
//! carries the statement (δ, ε by both accountants, accountant versions,
//! audit) and a [`HistoryRef`]: the number of rounds `R` and the chain value
//! after round `R`. The charges themselves are stored once per job and
//! fetched on demand; whoever holds them checks them against the reference
//! with a [`HistoryChain`] and then runs [`PrivacyReceipt::verify`].
//!
//! The chain: `h₀ = SHA-256("fedsec.v1 round history")`,
//! `hᵣ = SHA-256(hᵣ₋₁ ‖ encode(chargeᵣ))`, where [`encode_charge`] is a fixed
//! 64-byte little-endian encoding of every field of the charge. Every
//! prefix has its own value, so a verifier that already checked rounds
//! `1..=k` extends its chain with rounds `k+1..=R` only.
//!
//! Histories of at most [`INLINE_HISTORY_ROUNDS`] rounds stay inline in the
//! summary (with the reference beside them), so short jobs' receipts read
//! exactly as before by software that predates references.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::receipt::{EmpiricalAudit, PrivacyReceipt, RoundCharge};

/// Domain separator hashed as the chain's start value `h₀`.
pub const HISTORY_DOMAIN: &[u8] = b"fedsec.v1 round history";

/// Bytes of [`encode_charge`].
pub const CHARGE_ENCODING_BYTES: usize = 64;

/// Longest history a [`ReceiptSummary`] keeps inline: at most 256 × 179 B
/// = 46 KB per version, and at most ~5.9 MB summed over the first 256
/// versions of a job; every later version's receipt is O(1) in rounds.
pub const INLINE_HISTORY_ROUNDS: usize = 256;

/// The canonical encoding of a charge hashed into the chain: `round` (u64),
/// then the IEEE-754 bits of `sampling_rate`, `noise_multiplier`,
/// `clip_norm`, `sensitivity`, `count_stddev`, `expected_cohort` (f64), then
/// `committed_unix_ms` (i64), each little-endian.
pub fn encode_charge(c: &RoundCharge) -> [u8; CHARGE_ENCODING_BYTES] {
    let mut out = [0u8; CHARGE_ENCODING_BYTES];
    let words: [[u8; 8]; 8] = [
        c.round.to_le_bytes(),
        c.sampling_rate.to_bits().to_le_bytes(),
        c.noise_multiplier.to_bits().to_le_bytes(),
        c.clip_norm.to_bits().to_le_bytes(),
        c.sensitivity.to_bits().to_le_bytes(),
        c.count_stddev.to_bits().to_le_bytes(),
        c.expected_cohort.to_bits().to_le_bytes(),
        c.committed_unix_ms.to_le_bytes(),
    ];
    for (slot, w) in out.chunks_exact_mut(8).zip(words) {
        slot.copy_from_slice(&w);
    }
    out
}

/// Why a history does not match its reference.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum HistoryError {
    /// A charge is not the next round of the chain.
    #[error("round history is not consecutive: expected round {expected}, got round {found}")]
    OutOfOrder {
        /// The round the chain expected next.
        expected: u64,
        /// The round found.
        found: u64,
    },
    /// The history has a different number of rounds than its reference.
    #[error("the receipt references {expected} rounds of history, {found} were given")]
    Length {
        /// Rounds the reference names.
        expected: u64,
        /// Rounds given.
        found: u64,
    },
    /// The history's digest differs from the reference's.
    #[error(
        "the round history does not match the receipt's digest: rounds 1..={rounds} hash to \
         {found}, the receipt states {expected}"
    )]
    Mismatch {
        /// Rounds hashed.
        rounds: u64,
        /// Digest stated by the receipt (hex).
        expected: String,
        /// Digest of the history given (hex).
        found: String,
    },
    /// The reference's digest is not 32 bytes of hex.
    #[error("the receipt's history digest is not 64 hex digits: {0:?}")]
    BadDigest(String),
    /// The receipt has neither an inline history nor a reference to one.
    #[error("the receipt has no round history and no reference to one")]
    NoHistory,
}

/// A running SHA-256 hash chain over a round history (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryChain {
    rounds: u64,
    value: [u8; 32],
}

impl Default for HistoryChain {
    fn default() -> Self {
        Self::new()
    }
}

impl HistoryChain {
    /// The chain of the empty history (`h₀`).
    pub fn new() -> Self {
        Self {
            rounds: 0,
            value: Sha256::digest(HISTORY_DOMAIN).into(),
        }
    }

    /// Appends the next round's charge; it must be round `rounds() + 1`.
    pub fn push(&mut self, c: &RoundCharge) -> Result<(), HistoryError> {
        let expected = self.rounds + 1;
        if c.round != expected {
            return Err(HistoryError::OutOfOrder {
                expected,
                found: c.round,
            });
        }
        let mut h = Sha256::new();
        h.update(self.value);
        h.update(encode_charge(c));
        self.value = h.finalize().into();
        self.rounds = expected;
        Ok(())
    }

    /// The chain over `charges` (rounds 1, 2, … in order).
    pub fn of(charges: &[RoundCharge]) -> Result<Self, HistoryError> {
        let mut chain = Self::new();
        for c in charges {
            chain.push(c)?;
        }
        Ok(chain)
    }

    /// Rounds hashed so far.
    pub fn rounds(&self) -> u64 {
        self.rounds
    }

    /// The chain value after the last round hashed.
    pub fn digest(&self) -> [u8; 32] {
        self.value
    }

    /// The reference naming this history.
    pub fn to_ref(&self) -> HistoryRef {
        HistoryRef {
            rounds: self.rounds,
            sha256: hex::encode(self.value),
        }
    }

    /// Checks that this chain is the history `reference` names.
    pub fn check(&self, reference: &HistoryRef) -> Result<(), HistoryError> {
        let expected = reference.digest()?;
        if self.rounds != reference.rounds {
            return Err(HistoryError::Length {
                expected: reference.rounds,
                found: self.rounds,
            });
        }
        if self.value != expected {
            return Err(HistoryError::Mismatch {
                rounds: self.rounds,
                expected: reference.sha256.clone(),
                found: hex::encode(self.value),
            });
        }
        Ok(())
    }
}

/// A receipt's reference to its round history: rounds `1..=rounds`, whose
/// [`HistoryChain`] value is `sha256`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryRef {
    /// Rounds in the history.
    pub rounds: u64,
    /// Chain value after the last round, lowercase hex (64 digits).
    pub sha256: String,
}

impl HistoryRef {
    /// The digest as bytes.
    pub fn digest(&self) -> Result<[u8; 32], HistoryError> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(&self.sha256, &mut out)
            .map_err(|_| HistoryError::BadDigest(self.sha256.chars().take(80).collect()))?;
        Ok(out)
    }
}

/// A privacy receipt as stored with a model version and served in its
/// download header: the statement of a [`PrivacyReceipt`] with the round
/// history inline (short histories, and receipts written before references
/// existed) or only referenced by [`HistoryRef`].
///
/// Its JSON is a [`PrivacyReceipt`]'s plus a `history` object; a long
/// history's summary has no `rounds` key, so software that only knows
/// [`PrivacyReceipt`] refuses to read it instead of verifying an empty
/// history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReceiptSummary {
    /// Human-readable mechanism description.
    pub mechanism: String,
    /// Neighbouring relation the guarantee is stated for.
    pub neighbouring: String,
    /// δ of the `(ε, δ)` statement.
    pub delta: f64,
    /// ε from the PLD accountant.
    pub epsilon_pld: f64,
    /// ε from the RDP accountant.
    pub epsilon_rdp: f64,
    /// The round history, when inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rounds: Option<Vec<RoundCharge>>,
    /// The reference to the round history (absent in receipts written
    /// before references existed, which always hold the history inline).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<HistoryRef>,
    /// Accountant implementation versions (PLD first, then RDP).
    pub accountant_versions: Vec<String>,
    /// Empirical audit of the job, if one was run.
    pub empirical_audit: Option<EmpiricalAudit>,
}

impl ReceiptSummary {
    /// The summary of `receipt`: its history referenced by digest, and kept
    /// inline too when it has at most [`INLINE_HISTORY_ROUNDS`] rounds.
    pub fn of(receipt: &PrivacyReceipt) -> Result<Self, HistoryError> {
        let chain = HistoryChain::of(&receipt.rounds)?;
        Ok(Self::with_chain(receipt, &chain))
    }

    /// The summary of `receipt` whose history's chain is `chain` (computed
    /// incrementally by the caller; not re-checked here).
    pub fn with_chain(receipt: &PrivacyReceipt, chain: &HistoryChain) -> Self {
        let inline = receipt.rounds.len() <= INLINE_HISTORY_ROUNDS;
        Self {
            mechanism: receipt.mechanism.clone(),
            neighbouring: receipt.neighbouring.clone(),
            delta: receipt.delta,
            epsilon_pld: receipt.epsilon_pld,
            epsilon_rdp: receipt.epsilon_rdp,
            rounds: inline.then(|| receipt.rounds.clone()),
            history: Some(chain.to_ref()),
            accountant_versions: receipt.accountant_versions.clone(),
            empirical_audit: receipt.empirical_audit,
        }
    }

    /// Rounds the statement covers.
    pub fn history_rounds(&self) -> u64 {
        match (&self.history, &self.rounds) {
            (Some(h), _) => h.rounds,
            (None, Some(r)) => r.len() as u64,
            (None, None) => 0,
        }
    }

    /// Whether the history must be fetched (it is only referenced).
    pub fn needs_history(&self) -> bool {
        self.rounds.is_none()
    }

    /// The full receipt, with the inline history or else `fetched`, after
    /// checking the history against the reference (when there is one). The
    /// caller then runs [`PrivacyReceipt::verify`] on it.
    pub fn expand(self, fetched: Option<Vec<RoundCharge>>) -> Result<PrivacyReceipt, HistoryError> {
        let rounds = self.rounds.or(fetched).ok_or(HistoryError::NoHistory)?;
        if let Some(reference) = &self.history {
            if rounds.len() as u64 != reference.rounds {
                return Err(HistoryError::Length {
                    expected: reference.rounds,
                    found: rounds.len() as u64,
                });
            }
            HistoryChain::of(&rounds)?.check(reference)?;
        }
        Ok(PrivacyReceipt {
            mechanism: self.mechanism,
            neighbouring: self.neighbouring,
            delta: self.delta,
            epsilon_pld: self.epsilon_pld,
            epsilon_rdp: self.epsilon_rdp,
            rounds,
            accountant_versions: self.accountant_versions,
            empirical_audit: self.empirical_audit,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn charge(round: u64) -> RoundCharge {
        RoundCharge {
            round,
            sampling_rate: 0.01,
            noise_multiplier: 1.1,
            clip_norm: 1.0,
            sensitivity: 1.0 + 1e-9,
            count_stddev: 0.0,
            expected_cohort: 100.0,
            committed_unix_ms: 1_700_000_000_000 + round as i64,
        }
    }

    fn history(n: u64) -> Vec<RoundCharge> {
        (1..=n).map(charge).collect()
    }

    #[test]
    fn every_field_of_a_charge_moves_the_digest() {
        let base = HistoryChain::of(&history(3)).unwrap().digest();
        let tweaks: [fn(&mut RoundCharge); 7] = [
            |c| c.sampling_rate = 0.02,
            |c| c.noise_multiplier = 1.2,
            |c| c.clip_norm = 2.0,
            |c| c.sensitivity = 2.0,
            |c| c.count_stddev = 1.0,
            |c| c.expected_cohort = 99.0,
            |c| c.committed_unix_ms += 1,
        ];
        for t in tweaks {
            let mut h = history(3);
            t(&mut h[1]);
            assert_ne!(HistoryChain::of(&h).unwrap().digest(), base);
        }
        // Prefixes have their own values, and extending a prefix reaches the whole.
        let mut chain = HistoryChain::of(&history(2)).unwrap();
        assert_ne!(chain.digest(), base);
        chain.push(&charge(3)).unwrap();
        assert_eq!(chain.digest(), base);
        assert_eq!(
            chain.push(&charge(5)),
            Err(HistoryError::OutOfOrder {
                expected: 4,
                found: 5
            })
        );
    }

    #[test]
    fn the_chain_is_the_documented_one() {
        // Recomputed by hand from the module docs, so the format cannot
        // drift silently (other implementations check the same bytes).
        let c = charge(1);
        let h0: [u8; 32] = Sha256::digest(b"fedsec.v1 round history").into();
        let mut bytes = h0.to_vec();
        bytes.extend_from_slice(&1u64.to_le_bytes());
        for f in [0.01f64, 1.1, 1.0, 1.0 + 1e-9, 0.0, 100.0] {
            bytes.extend_from_slice(&f.to_bits().to_le_bytes());
        }
        bytes.extend_from_slice(&1_700_000_000_001i64.to_le_bytes());
        let h1: [u8; 32] = Sha256::digest(&bytes).into();
        assert_eq!(HistoryChain::of(&[c]).unwrap().digest(), h1);
    }

    #[test]
    fn long_histories_are_referenced_short_ones_kept_inline() {
        for (n, inline) in [(3, true), (256, true), (257, false), (600, false)] {
            let r = PrivacyReceipt::compute(history(n), 1e-5).unwrap();
            let s = ReceiptSummary::of(&r).unwrap();
            assert_eq!(s.rounds.is_some(), inline, "{n} rounds");
            assert_eq!(s.history_rounds(), n);
            let json = serde_json::to_string(&s).unwrap();
            if inline {
                // Old readers see the receipt they always saw.
                let old: PrivacyReceipt = serde_json::from_str(&json).unwrap();
                assert_eq!(old, r);
            } else {
                // A summary is O(1) in rounds, and old readers refuse it
                // rather than verify an empty history.
                assert!(json.len() < 1_500, "{} bytes", json.len());
                assert!(serde_json::from_str::<PrivacyReceipt>(&json).is_err());
            }
            let back: ReceiptSummary = serde_json::from_str(&json).unwrap();
            assert_eq!(back, s);
            let fetched = (!inline).then(|| history(n));
            let full = back.expand(fetched).unwrap();
            assert_eq!(full, r);
            full.verify().unwrap();
        }
    }

    #[test]
    fn a_history_not_matching_its_reference_is_refused() {
        let r = PrivacyReceipt::compute(history(300), 1e-5).unwrap();
        let s = ReceiptSummary::of(&r).unwrap();
        // More noise in one round would lower the recomputed ε: refused by digest.
        let mut tampered = history(300);
        tampered[120].noise_multiplier = 5.0;
        assert!(matches!(
            s.clone().expand(Some(tampered)),
            Err(HistoryError::Mismatch { rounds: 300, .. })
        ));
        assert!(matches!(
            s.clone().expand(Some(history(299))),
            Err(HistoryError::Length {
                expected: 300,
                found: 299
            })
        ));
        assert_eq!(s.clone().expand(None), Err(HistoryError::NoHistory));
        let mut bad = s.clone();
        bad.history = Some(HistoryRef {
            rounds: 300,
            sha256: "zz".into(),
        });
        assert!(matches!(
            bad.expand(Some(history(300))),
            Err(HistoryError::BadDigest(_))
        ));
        // An inline history is checked against the reference too.
        let short = PrivacyReceipt::compute(history(4), 1e-5).unwrap();
        let mut s = ReceiptSummary::of(&short).unwrap();
        if let Some(rounds) = s.rounds.as_mut() {
            rounds[0].sampling_rate = 0.001;
        }
        assert!(matches!(s.expand(None), Err(HistoryError::Mismatch { .. })));
    }

    #[test]
    fn receipts_written_before_references_read_as_summaries() {
        let r = PrivacyReceipt::compute(history(5), 1e-5).unwrap();
        let old_json = serde_json::to_string(&r).unwrap();
        let s: ReceiptSummary = serde_json::from_str(&old_json).unwrap();
        assert_eq!((s.history.as_ref(), s.history_rounds()), (None, 5));
        assert_eq!(s.expand(None).unwrap(), r);
    }
}
