//! The tenant-side privacy guard: pure decisions on a task, from the
//! tenant's [`PrivacyPolicy`] and its own [`LedgerFile`].
//!
//! # What is counted, and why it is an upper bound
//!
//! The coordinator's mechanism is the Poisson-subsampled Gaussian: each round
//! includes this client with probability `q`, adds `N(0, (z·C)²)` to the sum
//! of clipped updates. Two bounds on what the *tenant* has spent are valid,
//! under different assumptions; the guard computes both with the privacy
//! crate's accountant and uses the smaller.
//!
//! - **Participation basis** (always valid). Condition on which rounds this
//!   client was selected in. A round it was not selected in does not depend
//!   on its data at all; a round it contributed to is, given the selection, a
//!   plain Gaussian mechanism with noise multiplier `z` — *without*
//!   amplification (`q = 1`), because amplification by subsampling is exactly
//!   the uncertainty about whether the client took part, and conditioning
//!   removes it. A mixture over selections of mechanisms that are each
//!   (ε, δ)-DP is (ε, δ)-DP, so composing the rounds the client contributed
//!   to, each at `q = 1`, bounds the tenant's loss whatever the coordinator
//!   does with the selection, and needs nothing but the client's own ledger.
//!   Every recorded entry counts, including uploads that were refused or
//!   whose round was later abandoned.
//!
//!   Counting only the joined rounds *with* amplification (`q` each) would
//!   **not** be valid: amplification already charges for the chance of being
//!   included in every round, so dropping the rounds the client happened not
//!   to be selected in under-counts by roughly a factor `q`.
//!
//! - **Amplified basis** (the standard DP-FedAvg guarantee; only for the job
//!   the participant is bound to, and only with `amplification = true`).
//!   Count *every* committed round of that job at its `q`, whether or not the
//!   client was selected — the client could have been sampled in each — plus
//!   the planned round. This is the coordinator's own accounting, recomputed
//!   by the tenant at its own δ from the round history in the base model's
//!   privacy receipt, after checking that history against the tasks the
//!   client itself received (a coordinator whose receipt disagrees with its
//!   tasks loses the amplified basis). It assumes the cohort stays secret
//!   from whoever observes the models. Rounds from before the client
//!   registered are counted too (conservative). Other jobs are always on the
//!   participation basis: their history may be stale, and a stale history
//!   would under-count.
//!
//! Jobs compose: the tenant's data is the same in every job, so the guard's ε
//! is over the whole ledger, not per job.

use fedsec_privacy::{Accountant, AccountingError, Mechanism};

use crate::ledger::{HistoryRound, LedgerEntry, LedgerFile};
use crate::policy::{AccountantKind, PrivacyPolicy};

/// The round a task asks the client to contribute to.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedRound {
    /// Job.
    pub job_id: String,
    /// Round.
    pub round: u64,
    /// Attempt.
    pub attempt: u32,
    /// q.
    pub sampling_rate: f64,
    /// z (effective; 0 when the job adds no noise).
    pub noise_multiplier: f64,
    /// C.
    pub clip_norm: f64,
    /// The job's δ.
    pub delta: f64,
    /// Whether the coordinator adds noise.
    pub noise_enabled: bool,
}

/// Which bound the guard's ε comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// Rounds the client contributed to, unamplified.
    Participation,
    /// Every round of the bound job, amplified by q.
    Amplified,
}

impl Basis {
    /// `"participation"` or `"amplified"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Participation => "participation",
            Self::Amplified => "amplified",
        }
    }
}

/// The guard's numbers for one planned round.
#[derive(Debug, Clone, PartialEq)]
pub struct Assessment {
    /// ε after the round at the tenant's δ: the smaller valid bound.
    pub epsilon: f64,
    /// Which bound that is.
    pub basis: Basis,
    /// ε on the participation basis.
    pub participation_epsilon: f64,
    /// ε on the amplified basis, when available.
    pub amplified_epsilon: Option<f64>,
    /// Why the amplified basis was not used, if it was asked for.
    pub amplified_unavailable: Option<String>,
    /// Accountant used.
    pub accountant: AccountantKind,
    /// The tenant's δ.
    pub delta: f64,
}

/// Why a task was not trained on.
#[derive(Debug, Clone, PartialEq)]
pub enum SkipReason {
    /// The tenant's ε cap would be exceeded.
    EpsilonCap {
        /// ε after the round.
        epsilon_after: f64,
        /// The cap.
        cap: f64,
        /// The tenant's δ.
        delta: f64,
        /// Accountant.
        accountant: AccountantKind,
        /// Basis of `epsilon_after`.
        basis: Basis,
    },
    /// z below the tenant's floor.
    NoiseMultiplierBelowFloor {
        /// The task's z.
        noise_multiplier: f64,
        /// The floor.
        floor: f64,
    },
    /// C above the tenant's ceiling.
    ClipNormAboveCeiling {
        /// The task's C.
        clip_norm: f64,
        /// The ceiling.
        ceiling: f64,
    },
    /// The job publishes without noise.
    NoiseDisabled,
    /// The task's values are unusable (e.g. q outside (0, 1]).
    InvalidTask(String),
    /// The privacy accountant failed; nothing is claimed, nothing is sent.
    Accounting(String),
    /// Too few local examples.
    NotEnoughData {
        /// Training examples available.
        have: usize,
        /// The minimum.
        need: usize,
    },
    /// The model could not be downloaded or was refused.
    ModelRejected(String),
    /// Local training failed.
    TrainingFailed(String),
    /// The round's deadline passed before the update was ready.
    DeadlinePassed,
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::EpsilonCap {
                epsilon_after,
                cap,
                delta,
                accountant,
                basis,
            } => write!(
                f,
                "ε after this round would be {epsilon_after:.4} > the tenant's cap {cap} at δ = {delta} \
                 ({} accountant, {} basis)",
                accountant.name(),
                basis.as_str()
            ),
            Self::NoiseMultiplierBelowFloor {
                noise_multiplier,
                floor,
            } => write!(
                f,
                "noise multiplier z = {noise_multiplier} is below the tenant's floor {floor}"
            ),
            Self::ClipNormAboveCeiling { clip_norm, ceiling } => write!(
                f,
                "clip norm C = {clip_norm} is above the tenant's ceiling {ceiling}"
            ),
            Self::NoiseDisabled => write!(
                f,
                "the job publishes without noise and the tenant refuses such tasks"
            ),
            Self::InvalidTask(m) => write!(f, "invalid task: {m}"),
            Self::Accounting(m) => write!(f, "privacy accounting failed: {m}"),
            Self::NotEnoughData { have, need } => write!(
                f,
                "{have} local training example(s), at least {need} needed"
            ),
            Self::ModelRejected(m) => write!(f, "model rejected: {m}"),
            Self::TrainingFailed(m) => write!(f, "local training failed: {m}"),
            Self::DeadlinePassed => {
                write!(f, "the round's deadline passed before the update was ready")
            }
        }
    }
}

/// Checks the task's mechanism against the policy's floors and ceilings.
pub fn check_task(policy: &PrivacyPolicy, task: &PlannedRound) -> Result<(), SkipReason> {
    if task.round == 0 || task.attempt == 0 {
        return Err(SkipReason::InvalidTask(format!(
            "round {} attempt {}: both are 1-based",
            task.round, task.attempt
        )));
    }
    if !fedsec_proto::tls::is_valid_id(&task.job_id) {
        return Err(SkipReason::InvalidTask(format!(
            "job id {:?} is not a valid id",
            task.job_id
        )));
    }
    let q = task.sampling_rate;
    if !(q > 0.0 && q <= 1.0) {
        return Err(SkipReason::InvalidTask(format!(
            "sampling rate {q} is not in (0, 1]"
        )));
    }
    if !(task.clip_norm > 0.0 && task.clip_norm.is_finite()) {
        return Err(SkipReason::InvalidTask(format!(
            "clip norm {} is not a finite number > 0",
            task.clip_norm
        )));
    }
    if !(task.delta > 0.0 && task.delta < 1.0) {
        return Err(SkipReason::InvalidTask(format!(
            "δ = {} is not in (0, 1)",
            task.delta
        )));
    }
    let z = task.noise_multiplier;
    if !(z >= 0.0 && z.is_finite()) || (task.noise_enabled && z == 0.0) {
        return Err(SkipReason::InvalidTask(format!(
            "noise multiplier {z} is not a finite number > 0"
        )));
    }
    if !task.noise_enabled {
        if policy.refuse_noise_disabled {
            return Err(SkipReason::NoiseDisabled);
        }
    } else if z < policy.min_noise_multiplier {
        return Err(SkipReason::NoiseMultiplierBelowFloor {
            noise_multiplier: z,
            floor: policy.min_noise_multiplier,
        });
    }
    if let Some(ceiling) = policy.max_clip_norm
        && task.clip_norm > ceiling
    {
        return Err(SkipReason::ClipNormAboveCeiling {
            clip_norm: task.clip_norm,
            ceiling,
        });
    }
    Ok(())
}

/// A composition being built; `None` once a noise-free round made it unbounded.
#[derive(Debug, Default)]
struct Composition {
    parts: Vec<(Mechanism, u64)>,
    unbounded: bool,
}

impl Composition {
    fn add(&mut self, q: f64, z: f64) {
        if !(z > 0.0 && z.is_finite()) {
            self.unbounded = true;
            return;
        }
        let m = Mechanism {
            sampling_rate: q,
            noise_multiplier: z,
        };
        let key = (q.to_bits(), z.to_bits());
        match self
            .parts
            .iter_mut()
            .find(|(o, _)| (o.sampling_rate.to_bits(), o.noise_multiplier.to_bits()) == key)
        {
            Some((_, n)) => *n += 1,
            None => self.parts.push((m, 1)),
        }
    }

    fn epsilon(&self, accountant: &dyn Accountant, delta: f64) -> Result<f64, AccountingError> {
        if self.unbounded {
            return Ok(f64::INFINITY);
        }
        if self.parts.is_empty() {
            return Ok(0.0);
        }
        cached_epsilon(accountant, &self.parts, delta)
    }
}

/// Key of a memoised accountant call: accountant version, δ and the
/// composition, bit for bit and in order.
type CacheKey = (String, u64, Vec<(u64, u64, u64)>);

/// Memoised accountant results shared by every participant of the process.
///
/// Participants of one job compose the same history each round (an embedding
/// host or a simulation may run many in one process); the PLD accountant
/// takes ~0.1 s per call, so the first caller computes and the others — also
/// those asking concurrently — get the same value. Bounded; results are
/// pure functions of the key.
fn cached_epsilon(
    accountant: &dyn Accountant,
    parts: &[(Mechanism, u64)],
    delta: f64,
) -> Result<f64, AccountingError> {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, OnceLock};
    type Cell = Arc<OnceLock<Result<f64, AccountingError>>>;
    static CACHE: OnceLock<Mutex<HashMap<CacheKey, Cell>>> = OnceLock::new();
    const MAX_ENTRIES: usize = 512;
    let key: CacheKey = (
        accountant.version(),
        delta.to_bits(),
        parts
            .iter()
            .map(|(m, n)| (m.sampling_rate.to_bits(), m.noise_multiplier.to_bits(), *n))
            .collect(),
    );
    let cell = {
        let mut map = CACHE
            .get_or_init(|| Mutex::new(HashMap::new()))
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_ENTRIES && !map.contains_key(&key) {
            map.clear();
        }
        map.entry(key).or_default().clone()
    };
    // Concurrent callers with the same key wait here for the first one.
    cell.get_or_init(|| accountant.epsilon(parts, delta))
        .clone()
}

/// Participation basis over `entries` (plus `planned`, if it is not already
/// recorded): every contribution as an unamplified Gaussian.
fn participation<'a>(
    entries: impl Iterator<Item = &'a LedgerEntry>,
    planned: Option<&PlannedRound>,
    already_recorded: bool,
) -> Composition {
    let mut c = Composition::default();
    for e in entries {
        c.add(1.0, e.noise_multiplier);
    }
    if let Some(p) = planned
        && !already_recorded
    {
        c.add(1.0, p.noise_multiplier);
    }
    c
}

/// Checks a job's receipt history against the tasks the client received:
/// rounds `1..planned.round` in order, and the same `q` and `z` as the
/// client's own entries of that job.
pub fn check_history(
    history: &[HistoryRound],
    ledger: &LedgerFile,
    planned: &PlannedRound,
) -> Result<(), String> {
    let expected = planned.round.saturating_sub(1);
    if history.len() as u64 != expected {
        return Err(format!(
            "the base model's receipt lists {} rounds, but the task is round {}",
            history.len(),
            planned.round
        ));
    }
    for (i, h) in history.iter().enumerate() {
        if h.round != i as u64 + 1 {
            return Err(format!(
                "the receipt's rounds are not consecutive at position {i}"
            ));
        }
    }
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-12 * a.abs().max(b.abs());
    for e in ledger.entries_of(&planned.job_id) {
        if e.round >= planned.round {
            continue;
        }
        let Some(h) = history.get((e.round - 1) as usize) else {
            continue;
        };
        if !close(h.sampling_rate, e.sampling_rate)
            || !close(h.noise_multiplier, e.noise_multiplier)
        {
            return Err(format!(
                "the receipt charges round {} at q = {}, z = {}, but this client's task for it said \
                 q = {}, z = {}",
                e.round, h.sampling_rate, h.noise_multiplier, e.sampling_rate, e.noise_multiplier
            ));
        }
    }
    Ok(())
}

/// Computes the guard's ε after `planned`.
///
/// `amplified_history` is the bound job's round history from the base
/// model's verified receipt (`None` when the participant serves any job, the
/// policy disables amplification, or no verified receipt came with the model).
pub fn assess(
    policy: &PrivacyPolicy,
    ledger: &LedgerFile,
    planned: &PlannedRound,
    amplified_history: Option<&[HistoryRound]>,
) -> Result<Assessment, AccountingError> {
    let accountant = policy.accountant.accountant();
    let recorded = ledger
        .find(&planned.job_id, planned.round, planned.attempt)
        .is_some();
    let part = participation(ledger.entries.iter(), Some(planned), recorded);
    let participation_epsilon = part.epsilon(accountant.as_ref(), policy.delta)?;

    let mut amplified_epsilon = None;
    let mut amplified_unavailable = None;
    if policy.amplification {
        match amplified_history {
            None => {
                amplified_unavailable =
                    Some("no verified round history for an amplified bound".to_owned());
            }
            Some(history) => match check_history(history, ledger, planned) {
                Err(why) => amplified_unavailable = Some(why),
                Ok(()) => {
                    let mut c = participation(
                        ledger.entries.iter().filter(|e| e.job_id != planned.job_id),
                        None,
                        false,
                    );
                    for h in history {
                        c.add(h.sampling_rate, h.noise_multiplier);
                    }
                    c.add(planned.sampling_rate, planned.noise_multiplier);
                    amplified_epsilon = Some(c.epsilon(accountant.as_ref(), policy.delta)?);
                }
            },
        }
    }
    let (epsilon, basis) = match amplified_epsilon {
        Some(a) if a < participation_epsilon => (a, Basis::Amplified),
        _ => (participation_epsilon, Basis::Participation),
    };
    Ok(Assessment {
        epsilon,
        basis,
        participation_epsilon,
        amplified_epsilon,
        amplified_unavailable,
        accountant: policy.accountant,
        delta: policy.delta,
    })
}

/// The whole decision: the policy's checks, then the cap.
pub fn decide(
    policy: &PrivacyPolicy,
    ledger: &LedgerFile,
    planned: &PlannedRound,
    amplified_history: Option<&[HistoryRound]>,
) -> Result<Assessment, SkipReason> {
    check_task(policy, planned)?;
    let a = assess(policy, ledger, planned, amplified_history)
        .map_err(|e| SkipReason::Accounting(e.to_string()))?;
    if a.epsilon > policy.max_epsilon {
        return Err(SkipReason::EpsilonCap {
            epsilon_after: a.epsilon,
            cap: policy.max_epsilon,
            delta: policy.delta,
            accountant: policy.accountant,
            basis: a.basis,
        });
    }
    Ok(a)
}

/// What one job of the ledger has cost.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSpent {
    /// Job.
    pub job_id: String,
    /// Entries recorded for it.
    pub contributions: usize,
    /// Participation-basis ε of this job alone.
    pub participation_epsilon: f64,
    /// Rounds in the last verified receipt, and the amplified ε of this job
    /// alone over them (as of that receipt).
    pub amplified: Option<(usize, f64)>,
}

/// The tenant's own view of its ledger, by one accountant.
#[derive(Debug, Clone, PartialEq)]
pub struct Spent {
    /// Accountant.
    pub accountant: AccountantKind,
    /// δ.
    pub delta: f64,
    /// Participation-basis ε over every contribution of every job: valid
    /// without any assumption about the coordinator.
    pub participation_epsilon: f64,
    /// Per job.
    pub jobs: Vec<JobSpent>,
}

/// Computes [`Spent`] for a ledger at `delta`.
pub fn spent(
    ledger: &LedgerFile,
    delta: f64,
    accountant: AccountantKind,
) -> Result<Spent, AccountingError> {
    let acct = accountant.accountant();
    let total = participation(ledger.entries.iter(), None, false).epsilon(acct.as_ref(), delta)?;
    let mut ids: Vec<&str> = ledger.entries.iter().map(|e| e.job_id.as_str()).collect();
    ids.extend(ledger.jobs.keys().map(String::as_str));
    ids.sort_unstable();
    ids.dedup();
    let mut jobs = Vec::new();
    for id in ids {
        let part =
            participation(ledger.entries_of(id), None, false).epsilon(acct.as_ref(), delta)?;
        let amplified = match ledger.jobs.get(id) {
            Some(h) => {
                let mut c = Composition::default();
                for r in &h.rounds {
                    c.add(r.sampling_rate, r.noise_multiplier);
                }
                Some((h.rounds.len(), c.epsilon(acct.as_ref(), delta)?))
            }
            None => None,
        };
        jobs.push(JobSpent {
            job_id: id.to_owned(),
            contributions: ledger.entries_of(id).count(),
            participation_epsilon: part,
            amplified,
        });
    }
    Ok(Spent {
        accountant,
        delta,
        participation_epsilon: total,
        jobs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{EntryStatus, LedgerEntry};
    use fedsec_privacy::{PldAccountant, RdpAccountant};

    fn planned(job: &str, round: u64, q: f64, z: f64) -> PlannedRound {
        PlannedRound {
            job_id: job.into(),
            round,
            attempt: 1,
            sampling_rate: q,
            noise_multiplier: z,
            clip_norm: 1.0,
            delta: 1e-5,
            noise_enabled: true,
        }
    }

    fn entry(p: &PlannedRound) -> LedgerEntry {
        LedgerEntry {
            job_id: p.job_id.clone(),
            round: p.round,
            attempt: p.attempt,
            base_version: p.round - 1,
            sampling_rate: p.sampling_rate,
            noise_multiplier: p.noise_multiplier,
            clip_norm: p.clip_norm,
            delta: p.delta,
            noise_enabled: p.noise_enabled,
            client_noise_stddev: 0.0,
            recorded_unix_ms: 0,
            nonce: "aa".into(),
            status: EntryStatus::Accepted,
            detail: String::new(),
            epsilon_after: None,
            basis: "participation".into(),
        }
    }

    fn history(n: u64, q: f64, z: f64) -> Vec<HistoryRound> {
        (1..=n)
            .map(|round| HistoryRound {
                round,
                sampling_rate: q,
                noise_multiplier: z,
                committed_unix_ms: 0,
            })
            .collect()
    }

    fn pld(parts: &[(Mechanism, u64)], delta: f64) -> f64 {
        PldAccountant.epsilon(parts, delta).unwrap()
    }

    fn m(q: f64, z: f64) -> Mechanism {
        Mechanism {
            sampling_rate: q,
            noise_multiplier: z,
        }
    }

    #[test]
    fn participation_counts_each_contribution_unamplified() {
        let policy = PrivacyPolicy {
            amplification: false,
            ..PrivacyPolicy::new(100.0, 1e-5)
        };
        let mut ledger = LedgerFile::default();
        for r in 1..=3 {
            ledger.entries.push(entry(&planned("j", r, 0.1, 2.0)));
        }
        let p = planned("j", 4, 0.1, 2.0);
        let a = assess(&policy, &ledger, &p, None).unwrap();
        assert_eq!(a.basis, Basis::Participation);
        // Four Gaussians at q = 1, whatever the task's q.
        assert_eq!(a.epsilon, pld(&[(m(1.0, 2.0), 4)], 1e-5));
        // An entry already recorded for this attempt is not counted twice.
        ledger.entries.push(entry(&p));
        let again = assess(&policy, &ledger, &p, None).unwrap();
        assert_eq!(again.epsilon, a.epsilon);
    }

    #[test]
    fn amplified_counts_every_round_of_the_job_and_beats_participation_for_small_q() {
        let policy = PrivacyPolicy::new(100.0, 1e-5);
        let mut ledger = LedgerFile::default();
        ledger.entries.push(entry(&planned("j", 2, 0.05, 1.0)));
        ledger.entries.push(entry(&planned("j", 7, 0.05, 1.0)));
        // Another job, always on the participation basis.
        ledger.entries.push(entry(&planned("other", 1, 0.05, 3.0)));
        let p = planned("j", 10, 0.05, 1.0);
        let h = history(9, 0.05, 1.0);
        let a = assess(&policy, &ledger, &p, Some(&h)).unwrap();
        let amplified = pld(&[(m(1.0, 3.0), 1), (m(0.05, 1.0), 10)], 1e-5);
        let participation = pld(&[(m(1.0, 1.0), 3), (m(1.0, 3.0), 1)], 1e-5);
        assert_eq!(a.amplified_epsilon, Some(amplified));
        assert_eq!(a.participation_epsilon, participation);
        assert!(amplified < participation);
        assert_eq!((a.basis, a.epsilon), (Basis::Amplified, amplified));
        // Without amplification, the participation basis.
        let no_amp = PrivacyPolicy {
            amplification: false,
            ..policy
        };
        let b = assess(&no_amp, &ledger, &p, Some(&h)).unwrap();
        assert_eq!((b.basis, b.epsilon), (Basis::Participation, participation));
    }

    #[test]
    fn counting_only_joined_rounds_at_q_would_under_count() {
        // The invalid shortcut the module docs reject, next to the amplified
        // bound over all rounds: the shortcut is far smaller.
        let q = 0.05;
        let all_rounds = pld(&[(m(q, 1.0), 100)], 1e-5);
        let joined_only = pld(&[(m(q, 1.0), 5)], 1e-5);
        assert!(
            joined_only < 0.5 * all_rounds,
            "{joined_only} vs {all_rounds}"
        );
    }

    #[test]
    fn a_history_that_disagrees_with_the_clients_tasks_loses_the_amplified_basis() {
        let policy = PrivacyPolicy::new(100.0, 1e-5);
        let mut ledger = LedgerFile::default();
        ledger.entries.push(entry(&planned("j", 2, 0.05, 1.0)));
        let p = planned("j", 4, 0.05, 1.0);
        let mut h = history(3, 0.05, 1.0);
        h[1].noise_multiplier = 5.0; // the receipt claims more noise than the task said
        let a = assess(&policy, &ledger, &p, Some(&h)).unwrap();
        assert_eq!(a.basis, Basis::Participation);
        assert!(a.amplified_unavailable.unwrap().contains("round 2"));
        let short = history(2, 0.05, 1.0);
        let a = assess(&policy, &ledger, &p, Some(&short)).unwrap();
        assert!(a.amplified_unavailable.unwrap().contains("lists 2 rounds"));
    }

    #[test]
    fn the_cap_skips_with_the_numbers() {
        let mut policy = PrivacyPolicy::new(5.0, 1e-5);
        policy.accountant = AccountantKind::Rdp;
        policy.amplification = false;
        let mut ledger = LedgerFile::default();
        let mut r = 1;
        loop {
            let p = planned("j", r, 1.0, 2.0);
            match decide(&policy, &ledger, &p, None) {
                Ok(a) => {
                    assert!(a.epsilon <= 5.0);
                    ledger.entries.push(entry(&p));
                    r += 1;
                }
                Err(SkipReason::EpsilonCap {
                    epsilon_after, cap, ..
                }) => {
                    assert!(epsilon_after > cap);
                    let expect = RdpAccountant.epsilon(&[(m(1.0, 2.0), r)], 1e-5).unwrap();
                    assert_eq!(epsilon_after, expect);
                    break;
                }
                Err(other) => panic!("{other}"),
            }
        }
        assert!(r > 1, "at least one round fits under the cap");
    }

    #[test]
    fn policy_floors_and_ceilings() {
        let mut policy = PrivacyPolicy::new(10.0, 1e-5);
        policy.min_noise_multiplier = 0.8;
        policy.max_clip_norm = Some(2.0);
        let ledger = LedgerFile::default();
        let low = planned("j", 1, 0.5, 0.7);
        assert_eq!(
            decide(&policy, &ledger, &low, None).unwrap_err(),
            SkipReason::NoiseMultiplierBelowFloor {
                noise_multiplier: 0.7,
                floor: 0.8
            }
        );
        let mut big_c = planned("j", 1, 0.5, 1.0);
        big_c.clip_norm = 3.0;
        assert!(matches!(
            decide(&policy, &ledger, &big_c, None),
            Err(SkipReason::ClipNormAboveCeiling { .. })
        ));
        let mut off = planned("j", 1, 0.5, 0.0);
        off.noise_enabled = false;
        assert_eq!(
            decide(&policy, &ledger, &off, None).unwrap_err(),
            SkipReason::NoiseDisabled
        );
        // Allowed by policy: the round makes ε unbounded, so a finite cap still refuses it…
        policy.refuse_noise_disabled = false;
        assert!(matches!(
            decide(&policy, &ledger, &off, None),
            Err(SkipReason::EpsilonCap { .. })
        ));
        // …and only an infinite cap lets it through.
        policy.max_epsilon = f64::INFINITY;
        let a = decide(&policy, &ledger, &off, None).unwrap();
        assert!(a.epsilon.is_infinite());
        let bad_q = planned("j", 1, 1.5, 1.0);
        assert!(matches!(
            decide(&policy, &ledger, &bad_q, None),
            Err(SkipReason::InvalidTask(_))
        ));
        for bad in [planned("j", 0, 0.5, 1.0), planned("../j", 1, 0.5, 1.0)] {
            assert!(matches!(
                decide(&policy, &ledger, &bad, None),
                Err(SkipReason::InvalidTask(_))
            ));
        }
    }

    #[test]
    fn memoised_results_equal_fresh_ones_under_concurrency() {
        let parts = vec![(m(0.37, 1.3), 17), (m(1.0, 2.9), 2)];
        let fresh = PldAccountant.epsilon(&parts, 3e-6).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let parts = parts.clone();
                std::thread::spawn(move || cached_epsilon(&PldAccountant, &parts, 3e-6).unwrap())
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().unwrap(), fresh);
        }
        // Another accountant or δ is another key.
        let rdp = cached_epsilon(&RdpAccountant, &parts, 3e-6).unwrap();
        assert_eq!(rdp, RdpAccountant.epsilon(&parts, 3e-6).unwrap());
        assert_ne!(rdp, fresh);
    }

    #[test]
    fn spent_reports_both_bases_per_job() {
        let mut ledger = LedgerFile::default();
        ledger.entries.push(entry(&planned("a", 1, 0.5, 2.0)));
        ledger.entries.push(entry(&planned("a", 3, 0.5, 2.0)));
        ledger.entries.push(entry(&planned("b", 1, 0.5, 4.0)));
        ledger.jobs.insert(
            "a".into(),
            crate::ledger::JobHistory {
                version: 3,
                rounds: history(3, 0.5, 2.0),
            },
        );
        let s = spent(&ledger, 1e-5, AccountantKind::Pld).unwrap();
        assert_eq!(
            s.participation_epsilon,
            pld(&[(m(1.0, 2.0), 2), (m(1.0, 4.0), 1)], 1e-5)
        );
        assert_eq!(s.jobs.len(), 2);
        assert_eq!(s.jobs[0].contributions, 2);
        assert_eq!(
            s.jobs[0].amplified,
            Some((3, pld(&[(m(0.5, 2.0), 3)], 1e-5)))
        );
        assert_eq!(s.jobs[1].amplified, None);
    }
}
