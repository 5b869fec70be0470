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
//! - **Participation basis** (always valid; the default). Condition on which
//!   rounds this client was selected in. A round it was not selected in does
//!   not depend on its data at all; a round it contributed to is, given the
//!   selection, a plain Gaussian mechanism with noise multiplier `z` —
//!   *without* amplification (`q = 1`), because amplification by subsampling
//!   is exactly the uncertainty about whether the client took part, and
//!   conditioning removes it. A mixture over selections of mechanisms that
//!   are each (ε, δ)-DP is (ε, δ)-DP, so composing the rounds the client
//!   contributed to, each at `q = 1`, bounds the tenant's loss whatever the
//!   coordinator does with the selection, and needs nothing but the client's
//!   own ledger. Every recorded entry is one composition step whatever its
//!   round and attempt numbers say (a coordinator that keeps `round = 1` and
//!   bumps the attempt gains nothing), including uploads that were refused
//!   or whose round was later abandoned, and including a task served again
//!   (after a restart, or with another base version): it is trained and
//!   uploaded only under a new entry, unless the update is byte-identical to
//!   the recorded one (a resend of the same contribution).
//!
//!   Counting only the joined rounds *with* amplification (`q` each) would
//!   **not** be valid: amplification already charges for the chance of being
//!   included in every round, so dropping the rounds the client happened not
//!   to be selected in under-counts by roughly a factor `q`.
//!
//! - **Amplified basis** (the standard DP-FedAvg guarantee; only for the job
//!   the participant is bound to, and only with
//!   `trust_coordinator_sampling = true`). Count *every* committed round of
//!   that job at its `q`, whether or not the client was selected — the
//!   client could have been sampled in each — plus the planned round, plus
//!   one more step for every upload of this client that no distinct
//!   committed round accounts for (two uploads numbered the same round, or
//!   uploads for rounds the receipt does not list): each upload is at least
//!   one step, whatever its numbering. This is the coordinator's own
//!   accounting, recomputed by the tenant at its own δ from the round history
//!   in the base model's privacy receipt, after checking that history
//!   against the tasks the client itself received (a coordinator whose
//!   receipt disagrees with its tasks loses the amplified basis). It
//!   *assumes* what a client cannot verify: that the coordinator selects the
//!   tenant with the stated q, independently each round, and keeps the
//!   cohort secret from whoever observes the models — a coordinator that
//!   claims a small q while selecting the tenant every round would otherwise
//!   keep the guard's ε near one round's worth. Hence opt-in. If the
//!   amplified accountant fails, the guard falls back to the participation
//!   basis. Rounds from before the client registered are counted too
//!   (conservative). Other jobs are always on the participation basis: their
//!   history may be stale, and a stale history would under-count.
//!
//! # The training a task may ask for
//!
//! The coordinator sees each update before noise (there is no secure
//! aggregation), so a task with `batch_size = 1, max_steps = 1` on a
//! logistic model would hand it one session's features and label. The
//! policy's floors refuse such tasks before any training: a minimum batch
//! size, a minimum number of distinct local examples per update, and a
//! ceiling on learning rate × steps (local steps are capped to fit it);
//! [`check_training`] applies them and a refusal is a skip event.
//!
//! Jobs compose: the tenant's data is the same in every job, so the guard's ε
//! is over the whole ledger, not per job.

use fedsec_privacy::{Accountant, AccountingError, Mechanism};

mod checks;
#[cfg(test)]
mod tests;

pub use checks::{SkipReason, check_task, check_training};

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

/// Participation basis over `entries` (plus `planned`): every contribution
/// as an unamplified Gaussian, one step per entry whatever its numbering.
fn participation<'a>(
    entries: impl Iterator<Item = &'a LedgerEntry>,
    planned: Option<&PlannedRound>,
) -> Composition {
    let mut c = Composition::default();
    for e in entries {
        c.add(1.0, e.noise_multiplier);
    }
    if let Some(p) = planned {
        c.add(1.0, p.noise_multiplier);
    }
    c
}

/// The amplified basis for the bound job: the other jobs' entries
/// unamplified, every round of `history` at its q, the planned round, and
/// one extra step at its q for each of this job's entries that no distinct
/// history round accounts for.
fn amplified(ledger: &LedgerFile, planned: &PlannedRound, history: &[HistoryRound]) -> Composition {
    let mut c = participation(
        ledger.entries.iter().filter(|e| e.job_id != planned.job_id),
        None,
    );
    for h in history {
        c.add(h.sampling_rate, h.noise_multiplier);
    }
    c.add(planned.sampling_rate, planned.noise_multiplier);
    let mut covered = vec![false; history.len()];
    for e in ledger.entries_of(&planned.job_id) {
        let slot = (e.round < planned.round)
            .then(|| usize::try_from(e.round - 1).ok())
            .flatten()
            .filter(|&i| i < covered.len() && !covered[i]);
        match slot {
            Some(i) => covered[i] = true,
            None => c.add(e.sampling_rate, e.noise_multiplier),
        }
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
/// policy does not trust the coordinator's sampling, or no verified receipt
/// came with the model). The planned round is always a new step: a task
/// already recorded is served again only under a new entry.
pub fn assess(
    policy: &PrivacyPolicy,
    ledger: &LedgerFile,
    planned: &PlannedRound,
    amplified_history: Option<&[HistoryRound]>,
) -> Result<Assessment, AccountingError> {
    let accountant = policy.accountant.accountant();
    let part = participation(ledger.entries.iter(), Some(planned));
    let participation_epsilon = part.epsilon(accountant.as_ref(), policy.delta)?;

    let mut amplified_epsilon = None;
    let mut amplified_unavailable = None;
    if policy.trust_coordinator_sampling {
        match amplified_history {
            None => {
                amplified_unavailable =
                    Some("no verified round history for an amplified bound".to_owned());
            }
            Some(history) => match check_history(history, ledger, planned) {
                Err(why) => amplified_unavailable = Some(why),
                // An accountant failure (e.g. a q or z outside its range)
                // loses the amplified bound, not the round: the
                // participation bound is always there.
                Ok(()) => match amplified(ledger, planned, history)
                    .epsilon(accountant.as_ref(), policy.delta)
                {
                    Ok(e) => amplified_epsilon = Some(e),
                    Err(e) => {
                        amplified_unavailable =
                            Some(format!("the amplified accountant failed: {e}"));
                    }
                },
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
    let total = participation(ledger.entries.iter(), None).epsilon(acct.as_ref(), delta)?;
    let mut ids: Vec<&str> = ledger.entries.iter().map(|e| e.job_id.as_str()).collect();
    ids.extend(ledger.jobs.keys().map(String::as_str));
    ids.sort_unstable();
    ids.dedup();
    let mut jobs = Vec::new();
    for id in ids {
        let part = participation(ledger.entries_of(id), None).epsilon(acct.as_ref(), delta)?;
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
