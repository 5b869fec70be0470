//! The in-process DP-FedAvg simulator (no network): the coordinator's round
//! core (`fedsec_round`) over synthetic tenants, with the same privacy math.
//!
//! One round, as in `ARCHITECTURE.md` "One round" — every step but selection
//! and training is the round core's, as in the coordinator's driver:
//!
//! 1. **Plan**: [`fedsec_round::plan`] — the round's charge (sensitivity `C`
//!    plus the noise source's grid inflation plus the `f64` sum's rounding
//!    bound for N summands, where the coordinator uses `limits.max_tenants`) and ε after it, by the same accountants the
//!    coordinator's receipts use. The job's z comes from
//!    [`fedsec_round::resolve`] (calibrated by PLD for a target ε).
//! 2. **Select**: each tenant independently with probability
//!    `q = m / N` (seeded ChaCha8 per round). Every round is released
//!    whatever the realised cohort (empty included), as the coordinator
//!    does: no release decision looks at a count.
//! 3. **Train**: every selected tenant runs the detector's
//!    [`train_local`](fedsec_detector::train::train_local) from the global
//!    weights on its training rows (on `threads` threads; each run is seeded
//!    by (seed, round, tenant), so results do not depend on the thread count),
//!    then clips its delta to `C` ([`clip_in_place`]). Malicious tenants
//!    ([`Adversary`]) send what they like instead. A tenant whose training
//!    diverges (a global model wrecked by unclipped poisoning) reports
//!    nothing, like a real participant whose task fails.
//! 4. **Screen** (when [`FedConfig::screen`] is set): the round core's
//!    [`Screener`], as the coordinator's upload path runs it — statistics
//!    of the update and the previous published update only, the tenant's
//!    own history — and, under policy `exclude`, a flagged update is left
//!    out as if its tenant had not reported.
//! 5. **Accumulate**: the server re-clips every update to `C`
//!    ([`RoundSum`], the coordinator's accumulator) into an f64 sum.
//!    `server_clipping = false` (accumulate raw updates) exists only here, for
//!    the poisoning ablation; the coordinator cannot be configured that way.
//! 6. **Release**: [`fedsec_round::release`] adds `N(0, (z·S)²)` from the
//!    [`SimulationGaussian`] source (seeded; simulation only, not production
//!    safe), divides by the fixed expected cohort `m` (never the realised
//!    count) and applies the server optimiser.
//! 7. **Charge**: the planned charge joins the run's ledger
//!    ([`FedRun::ledger`]), entry for entry what a coordinator commits for
//!    the same job.

use fedsec_detector::dataset::Dataset;
use fedsec_detector::train::{TrainConfig, TrainError, train_local};
use fedsec_model::ModelSpec;
use fedsec_privacy::{
    Accountant, GaussianNoise, Measured, Mechanism, PldAccountant, RoundCharge, SimulationGaussian,
    clip_in_place, l2_norm,
};
use fedsec_round::screen::{self, Layer, Reference};
use fedsec_round::{
    JobParams, NoiseLevel, Plan, PlanInput, Release, RoundNoise, RoundSum, ScreenConfig, Screener,
    ServerOpt, release, resolve,
};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::attack::{Adversary, Attack, poisoned};
use crate::data::{HoldoutSet, Population};
use crate::error::{Error, Result};
use crate::eval;

/// Name of the noise source the simulator uses, for figures and tables.
pub const SIM_NOISE: &str = "SimulationGaussian (seeded, simulation only)";

/// How much noise the server adds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum Noise {
    /// None: no privacy guarantee (ε = ∞). For reference curves only.
    Off,
    /// A fixed noise multiplier z.
    Multiplier(f64),
    /// z calibrated (PLD) so that all planned rounds cost this ε at δ.
    TargetEpsilon(f64),
}

/// Settings of one simulated DP-FedAvg job.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FedConfig {
    /// Model architecture.
    pub model: ModelSpec,
    /// Seed of the initial weights.
    pub init_seed: u64,
    /// Rounds to run.
    pub rounds: u64,
    /// Expected cohort m (q = m / N).
    pub expected_cohort: f64,
    /// Server noise.
    pub noise: Noise,
    /// δ of the guarantee.
    pub delta: f64,
    /// Clip norm C.
    pub clip_norm: f64,
    /// Local training of each selected tenant.
    pub train: TrainConfig,
    /// Server learning rate (1 = FedAvg).
    pub server_learning_rate: f64,
    /// FedAvgM momentum (0 = none).
    pub server_momentum: f64,
    /// Server-side re-clipping (always on in the coordinator).
    pub server_clipping: bool,
    /// Seed of selection, local training and noise.
    pub seed: u64,
    /// Threads for local training.
    pub threads: usize,
    /// Evaluate held-out AUC every this many rounds (and after the last); 0 = last only.
    pub eval_every: u64,
    /// Update screening (the coordinator's `[jobs.screen]`), through the
    /// round core's [`Screener`]; `None`: no screen (the detector off).
    #[serde(skip)]
    pub screen: Option<ScreenConfig>,
}

/// What happened in one committed round.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RoundRecord {
    /// Round number (1-based).
    pub round: u64,
    /// Tenants whose update was accumulated.
    pub participants: usize,
    /// Of them, malicious.
    pub malicious: usize,
    /// Selected tenants whose local training diverged (non-finite loss on
    /// a wrecked global model): like a real participant whose training
    /// fails, they report nothing. Only poisoning without server clipping
    /// gets there.
    pub diverged: usize,
    /// Updates the server scaled down.
    pub server_clipped: usize,
    /// Updates the screen flagged (whatever the policy).
    pub flagged: usize,
    /// Of them, from malicious tenants.
    pub flagged_malicious: usize,
    /// Updates the screen left out of the sum (policy `exclude`/`quarantine`).
    pub excluded: usize,
    /// Mean L2 norm of the received updates.
    pub mean_update_norm: f64,
    /// ε spent after this round (PLD, at the job's δ); ∞ without noise.
    pub epsilon: f64,
    /// Pooled held-out ROC-AUC of the new global model, when evaluated.
    pub auc: Option<f64>,
}

/// One committed round's ledger entry: what a coordinator running the same
/// job writes to its ledger (commit time 0 here).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LedgerEntry {
    /// The round's charge.
    pub charge: RoundCharge,
    /// ε (PLD) after the round; ∞ without noise.
    pub epsilon_pld: f64,
    /// ε (RDP) after the round; ∞ without noise.
    pub epsilon_rdp: f64,
}

/// One screened update's scores (for choosing and checking thresholds).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ScreenSample {
    /// Round.
    pub round: u64,
    /// Tenant index.
    pub tenant: usize,
    /// Whether the tenant is malicious.
    pub malicious: bool,
    /// Norm before re-clipping / C.
    pub norm_ratio: f64,
    /// Cosine with the previous published update (NaN: none).
    pub cosine: f64,
    /// Sign agreement with it (NaN: none).
    pub sign_agreement: f64,
    /// Robust z of the norm against the tenant's own history (NaN: none).
    pub norm_z: f64,
    /// Whether any rule fired.
    pub flagged: bool,
}

/// Result of a simulated job.
#[derive(Debug, Clone, PartialEq)]
pub struct FedRun {
    /// Sampling rate q.
    pub sampling_rate: f64,
    /// Noise multiplier z (0 without noise).
    pub noise_multiplier: f64,
    /// One record per committed round.
    pub records: Vec<RoundRecord>,
    /// One ledger entry per committed round.
    pub ledger: Vec<LedgerEntry>,
    /// Final global weights.
    pub weights: Vec<f32>,
    /// Every screened update's scores (empty without a screen).
    pub screen_samples: Vec<ScreenSample>,
}

impl FedRun {
    /// AUC after the last round.
    pub fn final_auc(&self) -> Option<f64> {
        self.records.last().and_then(|r| r.auc)
    }

    /// ε after the last round.
    pub fn final_epsilon(&self) -> f64 {
        self.records.last().map_or(0.0, |r| r.epsilon)
    }
}

/// Noise multiplier for `rounds` rounds at rate `q` to cost `epsilon` at
/// `delta`, by the coordinator's calibration (PLD).
pub fn calibrate_z(q: f64, rounds: u64, delta: f64, epsilon: f64) -> Result<f64> {
    Ok(fedsec_round::calibrate(q, rounds, delta, epsilon)?)
}

/// ε after `rounds` rounds of the Poisson-subsampled Gaussian (PLD).
pub fn epsilon_after(q: f64, z: f64, rounds: u64, delta: f64) -> Result<f64> {
    if rounds == 0 {
        return Ok(0.0);
    }
    let m = Mechanism {
        sampling_rate: q,
        noise_multiplier: z,
    };
    PldAccountant
        .epsilon(&[(m, rounds)], delta)
        .map_err(Error::Accounting)
}

fn mix(seed: u64, a: u64, b: u64) -> u64 {
    // SplitMix64 finaliser over a simple combination: distinct, well-spread seeds.
    let mut z = seed
        .wrapping_add(a.wrapping_mul(0x9e37_79b9_7f4a_7c15))
        .wrapping_add(b.wrapping_mul(0xbf58_476d_1ce4_e5b9));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Poisson selection of one attempt: tenant indices, in order.
pub fn select(n: usize, q: f64, seed: u64, round: u64, attempt: u32) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(mix(seed, round, u64::from(attempt) + 1));
    (0..n)
        .filter(|_| rng.random_bool(q.clamp(0.0, 1.0)))
        .collect()
}

/// Runs `jobs` on up to `threads` threads and returns the results in order.
pub fn parallel_map<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let threads = threads.clamp(1, 64).min(items.len().max(1));
    if threads == 1 {
        return items.iter().map(f).collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let out: std::sync::Mutex<Vec<Option<R>>> =
        std::sync::Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    let r = f(item);
                    if let Ok(mut o) = out.lock() {
                        o[i] = Some(r);
                    }
                }
            });
        }
    });
    out.into_inner()
        .map(|v| v.into_iter().flatten().collect())
        .unwrap_or_default()
}

/// One tenant's update for a round (before server-side processing).
fn client_update(
    cfg: &FedConfig,
    data: &Dataset,
    weights: &[f32],
    seed: u64,
    attack: Option<Attack>,
) -> Result<Vec<f32>> {
    let mut delta = match attack {
        None => train_local(&cfg.model, weights, data, &cfg.train, seed)?.delta,
        Some(Attack::ScaledSignFlip { factor }) => {
            let d = train_local(&cfg.model, weights, data, &cfg.train, seed)?.delta;
            d.iter().map(|v| (-factor * f64::from(*v)) as f32).collect()
        }
        Some(Attack::Backdoor { boost }) => {
            let d = train_local(&cfg.model, weights, &poisoned(data), &cfg.train, seed)?.delta;
            d.iter().map(|v| (boost * f64::from(*v)) as f32).collect()
        }
        Some(Attack::AdaptiveBackdoor { norm }) => {
            // Knows the screen: the backdoor update scaled to exactly `norm`
            // (just under the norm rule's threshold).
            let d = train_local(&cfg.model, weights, &poisoned(data), &cfg.train, seed)?.delta;
            let n = l2_norm(&d).map_err(Error::Clip)?;
            let scale = if n > 0.0 { norm / n } else { 0.0 };
            d.iter().map(|v| (scale * f64::from(*v)) as f32).collect()
        }
    };
    if attack.is_none() {
        // Honest clients clip their own update (the server re-clips anyway).
        clip_in_place(&mut delta, cfg.clip_norm).map_err(Error::Clip)?;
    }
    Ok(delta)
}

/// Checks the settings against the population.
fn validate(pop: &Population, cfg: &FedConfig) -> Result<f64> {
    let n = pop.len();
    if n == 0 {
        return Err(Error::Config("no tenants".into()));
    }
    if !(cfg.expected_cohort > 0.0 && cfg.expected_cohort <= n as f64) {
        return Err(Error::Config(format!(
            "expected cohort {} must be in (0, {n}]",
            cfg.expected_cohort
        )));
    }
    if !(cfg.clip_norm > 0.0 && cfg.clip_norm.is_finite()) {
        return Err(Error::Config(format!("clip norm {}", cfg.clip_norm)));
    }
    if cfg.rounds == 0 {
        return Err(Error::Config("rounds must be at least 1".into()));
    }
    cfg.train
        .validate()
        .map_err(|e| Error::Config(e.to_string()))?;
    Ok(cfg.expected_cohort / n as f64)
}

/// A selected tenant's training rows for one round, built from (tenant
/// index, round, the global weights it trains from); `Ok(None)`: its rows
/// in the population. Runs inside the tenant (e.g. self-training's
/// pseudo-labels from the global model), on the training threads.
pub type TrainingRows<'a> = dyn Fn(usize, u64, &[f32]) -> Result<Option<Dataset>> + Sync + 'a;

/// Runs a simulated DP-FedAvg job over `pop`, evaluating on `holdout`;
/// `on_round` sees every committed round.
pub fn run(
    pop: &Population,
    holdout: &HoldoutSet,
    cfg: &FedConfig,
    adversary: Option<&Adversary>,
    on_round: &mut dyn FnMut(&RoundRecord),
) -> Result<FedRun> {
    run_with(pop, holdout, cfg, adversary, None, on_round)
}

/// [`run`], with each selected tenant's rows for the round from `rows`
/// when given (what the tenant trains on may depend on the global model it
/// downloaded; everything else, privacy included, is unchanged).
pub fn run_with(
    pop: &Population,
    holdout: &HoldoutSet,
    cfg: &FedConfig,
    adversary: Option<&Adversary>,
    rows: Option<&TrainingRows<'_>>,
    on_round: &mut dyn FnMut(&RoundRecord),
) -> Result<FedRun> {
    let q = validate(pop, cfg)?;
    let resolved = resolve(&JobParams {
        sampling_rate: q,
        expected_cohort: cfg.expected_cohort,
        rounds: cfg.rounds,
        delta: cfg.delta,
        noise: match cfg.noise {
            Noise::Off => None,
            Noise::Multiplier(z) => Some(NoiseLevel::Multiplier(z)),
            Noise::TargetEpsilon(eps) => Some(NoiseLevel::TargetEpsilon(eps)),
        },
        adaptive_count_stddev: None,
    })?;
    let noise_enabled = cfg.noise != Noise::Off;
    let mut noise = SimulationGaussian::seeded(mix(cfg.seed, 0x006e_6f69_7365, 0));
    let mut weights = cfg.model.init_weights(cfg.init_seed);
    let mut momentum: Option<Vec<f32>> = None;
    let dim = weights.len();
    let source_inflation = if noise_enabled {
        noise.sensitivity_inflation(dim)
    } else {
        0.0
    };
    let opt = ServerOpt {
        learning_rate: cfg.server_learning_rate,
        momentum: cfg.server_momentum,
    };
    let mut records = Vec::with_capacity(cfg.rounds as usize);
    let mut ledger: Vec<LedgerEntry> = Vec::with_capacity(cfg.rounds as usize);
    // The screen: the coordinator's round-core screener, one history per
    // tenant (as many as tenants: never evicted), the previous published
    // update as its public reference (none before two versions exist).
    let layers: Vec<Layer> = screen::layers(&cfg.model);
    let mut screener = cfg.screen.map(|c| Screener::new(c, pop.len()));
    let mut reference: Option<Reference> = None;
    let mut screen_samples = Vec::new();
    for round in 1..=cfg.rounds {
        let planned = match fedsec_round::plan(PlanInput {
            round,
            rounds: cfg.rounds,
            history: ledger.iter().map(|e| e.charge).collect(),
            resolved,
            clip_norm: cfg.clip_norm,
            source_inflation,
            max_summands: pop.len() as u64,
            delta: cfg.delta,
            noise_enabled,
            budget: None,
        })? {
            Plan::Release(planned) => *planned,
            // Neither happens within `rounds` without a budget; stop as the
            // coordinator would.
            Plan::Completed | Plan::BudgetExhausted { .. } => break,
        };
        // The round's noise, drawn before the updates as the coordinator does
        // (it does not depend on them; the same seeded values as adding it
        // at release).
        let round_noise = match planned.noise_request(dim, None) {
            Some(request) => Some((RoundNoise::draw(&mut noise, request)?, request.plan)),
            None => None,
        };
        let selected = select(pop.len(), q, cfg.seed, round, 1);
        let updates = parallel_map(&selected, cfg.threads, |&t| {
            let attack = adversary.filter(|a| a.is_malicious(t)).map(|a| a.attack);
            let seed = mix(cfg.seed, round, t as u64 + 1);
            let own = match rows {
                Some(f) => f(t, round, &weights)?,
                None => None,
            };
            let data = own.as_ref().unwrap_or(&pop.tenants[t].train);
            client_update(cfg, data, &weights, seed, attack)
        });
        let mut sum = RoundSum::new(dim);
        // The poisoning ablation only: raw updates, no server clipping.
        let mut raw = (!cfg.server_clipping).then(|| vec![0.0f64; dim]);
        let (mut clipped, mut norm_sum) = (0usize, 0.0f64);
        let (mut flagged, mut flagged_malicious, mut excluded) = (0usize, 0usize, 0usize);
        let mut reported = Vec::with_capacity(selected.len());
        for (&t, u) in selected.iter().zip(updates) {
            let u = match u {
                Ok(u) => u,
                // A diverged update, or a tenant with no training rows (weak
                // labels that all abstained): nothing is reported, like a
                // real participant that skips the round.
                Err(Error::Train(TrainError::Diverged(_) | TrainError::Empty)) => continue,
                Err(e) => return Err(e),
            };
            let malicious = adversary.is_some_and(|a| a.is_malicious(t));
            if let Some(s) = screener.as_mut() {
                // The coordinator's screen: statistics of this update and
                // public state, the tenant's own history; nothing else.
                if let Some(stats) = screen::measure(&u, cfg.clip_norm, reference.as_ref(), &layers)
                {
                    let verdict = s.screen(&t.to_string(), stats);
                    screen_samples.push(ScreenSample {
                        round,
                        tenant: t,
                        malicious,
                        norm_ratio: verdict.stats.norm_ratio,
                        cosine: verdict.stats.cosine.unwrap_or(f64::NAN),
                        sign_agreement: verdict.stats.sign_agreement.unwrap_or(f64::NAN),
                        norm_z: verdict.stats.norm_z.unwrap_or(f64::NAN),
                        flagged: verdict.flagged(),
                    });
                    if verdict.flagged() {
                        flagged += 1;
                        flagged_malicious += usize::from(malicious);
                    }
                    if verdict.exclude {
                        // Left out of the sum: as if it had not reported.
                        excluded += 1;
                        continue;
                    }
                }
            }
            reported.push(t);
            match raw.as_mut() {
                None => {
                    let m = Measured::new(&u).map_err(Error::Clip)?;
                    let added = sum
                        .add(&m, cfg.clip_norm, true)
                        .map_err(Error::Accumulate)?;
                    clipped += usize::from(added.clipped);
                    norm_sum += added.norm;
                }
                Some(raw) => {
                    norm_sum += l2_norm(&u).map_err(Error::Clip)?;
                    for (a, &x) in raw.iter_mut().zip(&u) {
                        *a += f64::from(x);
                    }
                }
            }
        }
        planned.check_summands(reported.len() as u64)?;
        let sum = raw.unwrap_or_else(|| sum.into_sum());
        let released = release(
            sum,
            Release {
                weights: &weights,
                momentum: momentum.as_deref(),
                noise: round_noise,
                adaptive: None,
                clip_norm: cfg.clip_norm,
                expected_cohort: resolved.expected_cohort,
                opt,
            },
        )?;
        reference = Reference::between(&weights, &released.weights);
        weights = released.weights;
        momentum = released.momentum;
        let charged = planned.charge(0);
        let entry = LedgerEntry {
            charge: charged.charge,
            epsilon_pld: charged.statement.epsilon_pld(),
            epsilon_rdp: charged.statement.epsilon_rdp(),
        };
        ledger.push(entry);
        let evaluate = round == cfg.rounds || (cfg.eval_every > 0 && round % cfg.eval_every == 0);
        let auc = if evaluate {
            let s = eval::score(&cfg.model, &weights, holdout.data.features())?;
            eval::auc(&s, &holdout.labels)
        } else {
            None
        };
        let rec = RoundRecord {
            round,
            participants: reported.len(),
            malicious: adversary.map_or(0, |a| {
                reported.iter().filter(|&&t| a.is_malicious(t)).count()
            }),
            diverged: selected.len() - reported.len() - excluded,
            server_clipped: clipped,
            flagged,
            flagged_malicious,
            excluded,
            mean_update_norm: norm_sum / reported.len().max(1) as f64,
            epsilon: entry.epsilon_pld,
            auc,
        };
        on_round(&rec);
        records.push(rec);
    }
    Ok(FedRun {
        sampling_rate: q,
        noise_multiplier: resolved.noise_multiplier,
        records,
        ledger,
        weights,
        screen_samples,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_is_seeded_and_has_rate_q() {
        let a = select(10_000, 0.2, 7, 3, 1);
        assert_eq!(a, select(10_000, 0.2, 7, 3, 1));
        assert_ne!(a, select(10_000, 0.2, 7, 3, 2));
        assert_ne!(a, select(10_000, 0.2, 7, 4, 1));
        // Binomial(10000, 0.2): sd 40; 5 sd.
        assert!((a.len() as i64 - 2000).abs() < 200, "{}", a.len());
    }

    #[test]
    fn epsilon_grows_with_rounds_and_calibration_hits_the_target() {
        let q = 0.2;
        let z = calibrate_z(q, 50, 1e-6, 3.0).unwrap();
        assert!(z > 1.5 && z < 4.0, "z = {z}");
        let e50 = epsilon_after(q, z, 50, 1e-6).unwrap();
        assert!(e50 <= 3.0 && e50 > 2.99, "{e50}");
        assert!(epsilon_after(q, z, 10, 1e-6).unwrap() < e50);
        assert_eq!(epsilon_after(q, z, 0, 1e-6).unwrap(), 0.0);
    }

    #[test]
    fn parallel_map_keeps_order() {
        let v: Vec<u64> = (0..100).collect();
        assert_eq!(
            parallel_map(&v, 3, |x| x * 2),
            parallel_map(&v, 1, |x| x * 2)
        );
    }
}
