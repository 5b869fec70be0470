//! Canary audits: synthetic clients whose updates are known directions, and
//! the statistics that turn what the published models reveal about them
//! into an empirical ε (Andrew et al. 2024) and lower bounds on ε
//! (Steinke, Nasr & Jagielski 2023; Jagielski, Ullman & Oprea 2020), using
//! the estimators of [`fedsec_privacy::audit`].
//!
//! A job with `audit.canaries = k` has `2k` canaries, each a fixed random
//! unit direction `u_i` of the full model dimension drawn from the job's
//! audit seed:
//!
//! - canaries `0..k` are **inserted**: in every released round each is in
//!   the cohort iff the coordinator's keyed Poisson sampler selects the
//!   client id `#canary-<i>` at the job's rate `q` (the same sampler and
//!   rate as real clients; `#` cannot occur in a certificate's client id),
//!   and a selected canary's update `C·u_i` is re-clipped and added to the
//!   round's sum before noise, exactly like a client's. Canaries count in
//!   nothing that divides: the denominator stays the fixed expected cohort
//!   `q × population` of real tenants, and participant counts and the
//!   adaptive-clipping count see only real clients (no release decision
//!   looks at a count at all);
//! - canaries `k..2k` are **unseen**: drawn from the same distribution and
//!   never inserted (the null sample).
//!
//! Directions are regenerated from the seed whenever they are needed
//! (ChaCha12 keyed by SHA-256 of the seed and the index, standard normal
//! coordinates, normalised), so the memory is one `d`-vector, never `k·d`.
//!
//! Statistics, computed from the published model versions when the job ends:
//! **final model** — the cosine of `w_final − w_0` with each direction;
//! **all iterates** — the largest cosine, over the job's rounds, of the
//! round's published model delta (new version minus the version it was
//! trained on; with server momentum this includes the momentum) with each
//! direction.
//!
//! Pooling: [`pooled_estimate`] computes the same estimates and bounds over
//! the canaries of several independent audited jobs at once (e.g. the same
//! job on several seeds). That is valid for the one-run bound when every
//! job has the same guarantee: each canary's inclusion changes only its own
//! job's output, so the jobs together are a mechanism that is (ε, δ)-DP
//! with respect to each canary, and Steinke et al.'s theorem applies to all
//! their canaries as one run (guesses may depend on every job's output).
//! The jobs must share the model dimension and the number of observed
//! rounds (so the cosines have the same null distribution).

use fedsec_privacy::EmpiricalAudit;
use fedsec_privacy::audit::{
    AuditError, clopper_pearson_epsilon, cosine, one_run_epsilon, one_shot_epsilon_from_cosines,
    two_gaussians_epsilon,
};
use fedsec_privacy::{ClipError, clip_and_accumulate};
use rand::SeedableRng;
use rand_chacha::ChaCha12Rng;
use rand_distr::{Distribution, StandardNormal};
use sha2::{Digest, Sha256};

use crate::selection::Sampler;

/// Prefix of the client ids under which canaries are sampled.
pub(crate) const CANARY_ID_PREFIX: &str = "#canary-";

/// The round attempt canaries are drawn for, as the sampler selects clients.
#[derive(Clone, Copy)]
pub(crate) struct CanaryDraw<'a> {
    /// The job's sampler.
    pub sampler: &'a dyn Sampler,
    /// Job id.
    pub job_id: &'a str,
    /// Round number.
    pub round: u64,
    /// Attempt number.
    pub attempt: u32,
    /// Sampling rate q.
    pub q: f64,
    /// The round's clip norm C.
    pub clip_norm: f64,
}

/// Confidence of the audit's lower bounds.
pub const AUDIT_CONFIDENCE: f64 = 0.95;

/// Number of guess counts tried by the one-run bound (Bonferroni-corrected).
const ONE_RUN_GUESS_LEVELS: [u64; 4] = [8, 4, 2, 1];

/// The canaries of one job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CanarySet {
    /// Seed of the directions.
    pub seed: u64,
    /// Inserted canaries (indices `0..inserted`).
    pub inserted: u32,
    /// Unseen canaries (indices `inserted..inserted + unseen`).
    pub unseen: u32,
}

impl CanarySet {
    /// `k` inserted and `k` unseen canaries with directions from `seed`.
    pub(crate) fn new(seed: u64, k: u32) -> Self {
        Self {
            seed,
            inserted: k,
            unseen: k,
        }
    }

    /// The canaries of a job, if it is audited.
    pub(crate) fn of_job(spec: &crate::config::JobSpec) -> Option<Self> {
        spec.audit
            .as_ref()
            .filter(|a| a.canaries > 0)
            .map(|a| Self::new(a.seed, a.canaries))
    }

    /// Inserted plus unseen.
    pub(crate) fn total(&self) -> u32 {
        self.inserted + self.unseen
    }

    /// The client id under which inserted canary `index` is sampled.
    pub(crate) fn client_id(index: u32) -> String {
        format!("{CANARY_ID_PREFIX}{index}")
    }

    /// Writes canary `index`'s unit direction into `out` (its length is the
    /// model dimension).
    pub(crate) fn direction(&self, index: u32, out: &mut [f32]) {
        let mut h = Sha256::new();
        h.update(b"fedsec canary direction v1");
        h.update(self.seed.to_le_bytes());
        h.update(index.to_le_bytes());
        let seed: [u8; 32] = h.finalize().into();
        let mut rng = ChaCha12Rng::from_seed(seed);
        let mut sq = 0.0f64;
        for v in out.iter_mut() {
            let g: f64 = StandardNormal.sample(&mut rng);
            sq += g * g;
            *v = g as f32;
        }
        let inv = if sq > 0.0 { 1.0 / sq.sqrt() } else { 0.0 };
        for v in out.iter_mut() {
            *v = (f64::from(*v) * inv) as f32;
        }
    }

    /// Adds the update `C·u_i` of every inserted canary the sampler selects
    /// for this round attempt to `sum`, re-clipped to `clip_norm` like a
    /// client's. `buf` is scratch space of the model dimension. Returns the
    /// number of canaries added.
    pub(crate) fn insert(
        &self,
        draw: &CanaryDraw<'_>,
        sum: &mut [f64],
        buf: &mut Vec<f32>,
    ) -> Result<u32, ClipError> {
        let CanaryDraw {
            sampler,
            job_id,
            round,
            attempt,
            q,
            clip_norm,
        } = *draw;
        buf.resize(sum.len(), 0.0);
        let mut added = 0;
        for i in 0..self.inserted {
            if !sampler.selected(job_id, round, attempt, &Self::client_id(i), q) {
                continue;
            }
            self.direction(i, buf);
            let c = clip_norm as f32;
            for v in buf.iter_mut() {
                *v *= c;
            }
            clip_and_accumulate(buf, clip_norm, sum)?;
            added += 1;
        }
        Ok(added)
    }
}

/// The audit statistics of every canary of one job (inserted first, then
/// unseen).
#[derive(Debug, Clone, PartialEq)]
pub struct CanaryStatistics {
    /// Model dimension.
    pub dim: usize,
    /// Inserted canaries (the first `inserted` entries of each statistic).
    pub inserted: u32,
    /// Cosine of the final model delta with each direction.
    pub final_cosines: Vec<f64>,
    /// Largest cosine of any round's published delta with each direction
    /// (`-∞` before the first round).
    pub max_cosines: Vec<f64>,
    /// Rounds observed.
    pub rounds: u64,
}

impl CanaryStatistics {
    /// No rounds observed yet.
    pub(crate) fn new(set: &CanarySet, dim: usize) -> Self {
        let n = set.total() as usize;
        Self {
            dim,
            inserted: set.inserted,
            final_cosines: vec![0.0; n],
            max_cosines: vec![f64::NEG_INFINITY; n],
            rounds: 0,
        }
    }

    /// Folds one round's published model delta into the all-iterates maxima.
    pub(crate) fn observe_round(&mut self, set: &CanarySet, delta: &[f32], buf: &mut Vec<f32>) {
        buf.resize(delta.len(), 0.0);
        for (i, m) in (0..set.total()).zip(self.max_cosines.iter_mut()) {
            set.direction(i, buf);
            *m = m.max(cosine(delta, buf));
        }
        self.rounds += 1;
    }

    /// Records the final model delta `w_final − w_0`.
    pub(crate) fn observe_final(&mut self, set: &CanarySet, delta: &[f32], buf: &mut Vec<f32>) {
        buf.resize(delta.len(), 0.0);
        for (i, c) in (0..set.total()).zip(self.final_cosines.iter_mut()) {
            set.direction(i, buf);
            *c = cosine(delta, buf);
        }
    }
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, var.sqrt().max(1e-12))
}

/// Lower bounds from one statistic: `(one-run, Clopper–Pearson)`.
/// `is_in[i]` says whether canary `i` was inserted.
fn bounds(
    scores: &[f64],
    is_in: &[bool],
    delta: f64,
    confidence: f64,
) -> Result<(f64, f64), AuditError> {
    let m = scores.len();
    let inserted = is_in.iter().filter(|&&b| b).count();
    // Rank all canaries by their statistic, largest first (ties by index).
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    let is_in = |i: usize| is_in[i];

    // One run: guess "inserted" for the top r/2 and "unseen" for the bottom
    // r/2, for r = m/8, m/4, m/2, m fixed in advance; the significance is
    // split evenly among them (union bound), so the maximum is valid.
    let p = (1.0 - confidence) / 2.0 / ONE_RUN_GUESS_LEVELS.len() as f64;
    let mut one_run = 0.0f64;
    for level in ONE_RUN_GUESS_LEVELS {
        let half = (m as u64 / level / 2) as usize;
        if half == 0 {
            continue;
        }
        let top = order[..half].iter().filter(|&&i| is_in(i)).count();
        let bottom = order[m - half..].iter().filter(|&&i| !is_in(i)).count();
        let e = one_run_epsilon(m as u64, 2 * half as u64, (top + bottom) as u64, delta, p)?;
        one_run = one_run.max(e);
    }

    // Clopper–Pearson at the threshold that guesses exactly `inserted` canaries in.
    let false_negatives = order[inserted..].iter().filter(|&&i| is_in(i)).count();
    let false_positives = order[..inserted].iter().filter(|&&i| !is_in(i)).count();
    let cp = clopper_pearson_epsilon(
        false_positives as u64,
        (m - inserted) as u64,
        false_negatives as u64,
        inserted as u64,
        delta,
        1.0 - confidence,
    )?;
    Ok((one_run, cp.epsilon))
}

/// The audit result from the statistics, at `delta` and `confidence`:
///
/// - `epsilon_one_shot_final`: Andrew et al.'s ε̂ with the analytic null
///   `N(0, 1/d)` against a Gaussian fitted to the inserted canaries' final
///   cosines;
/// - `epsilon_one_shot_all_iterates`: the same with Gaussians fitted to both
///   the unseen (null) and the inserted canaries' maxima (the null of a
///   maximum over rounds is not `N(0, 1/d)`);
/// - one-run bounds per statistic, each at significance `(1 − confidence)/2`
///   (itself split over four guess counts), and their maximum as
///   `epsilon_lower_bound` (valid at `confidence`);
/// - Clopper–Pearson bounds per statistic at `confidence` (heuristic within
///   one run).
///
/// A job that released nothing has every ε at 0.
pub(crate) fn estimate(
    set: &CanarySet,
    stats: &CanaryStatistics,
    delta: f64,
    confidence: f64,
) -> Result<EmpiricalAudit, AuditError> {
    let mut out = pooled_estimate(std::slice::from_ref(stats), delta, confidence)?;
    out.canaries = set.inserted;
    out.unseen_canaries = set.unseen;
    Ok(out)
}

/// The estimates and bounds of [`estimate`] over the canaries of several
/// independent audited jobs together (see the module docs for when that is
/// valid): statistics are concatenated, each canary keeping its own
/// inserted/unseen flag, and ranked together. For one job it is exactly the
/// job's own audit. `canaries` and `unseen_canaries` are the totals. Every
/// job must have the same model dimension and observed rounds (an error
/// otherwise); jobs that released nothing make every ε 0.
pub fn pooled_estimate(
    runs: &[CanaryStatistics],
    delta: f64,
    confidence: f64,
) -> Result<EmpiricalAudit, AuditError> {
    let total = |f: fn(&CanaryStatistics) -> u32| runs.iter().map(f).sum::<u32>();
    let inserted = total(|s| s.inserted);
    let unseen = total(|s| (s.final_cosines.len() as u32).saturating_sub(s.inserted));
    let mut out = EmpiricalAudit {
        canaries: inserted,
        epsilon_one_shot_final: 0.0,
        epsilon_one_shot_all_iterates: 0.0,
        epsilon_lower_bound: 0.0,
        confidence,
        delta,
        unseen_canaries: unseen,
        epsilon_one_run_final: 0.0,
        epsilon_one_run_all_iterates: 0.0,
        epsilon_clopper_pearson_final: 0.0,
        epsilon_clopper_pearson_all_iterates: 0.0,
    };
    let Some(first) = runs.first() else {
        return Ok(out);
    };
    for s in runs {
        let n = s.final_cosines.len();
        if s.dim != first.dim || s.rounds != first.rounds {
            return Err(AuditError::InvalidCounts(format!(
                "pooled jobs differ: d = {} over {} rounds against d = {} over {} rounds",
                s.dim, s.rounds, first.dim, first.rounds
            )));
        }
        if s.max_cosines.len() != n || s.inserted as usize > n {
            return Err(AuditError::InvalidCounts(format!(
                "{} inserted canaries, {n} final and {} all-iterates statistics",
                s.inserted,
                s.max_cosines.len()
            )));
        }
    }
    if first.rounds == 0 || inserted < 2 || unseen < 2 {
        return Ok(out);
    }
    let mut is_in = Vec::new();
    let (mut final_all, mut max_all) = (Vec::new(), Vec::new());
    let (mut inserted_final, mut inserted_max, mut unseen_max) =
        (Vec::new(), Vec::new(), Vec::new());
    for s in runs {
        let k = s.inserted as usize;
        is_in.extend((0..s.final_cosines.len()).map(|i| i < k));
        final_all.extend_from_slice(&s.final_cosines);
        max_all.extend_from_slice(&s.max_cosines);
        inserted_final.extend_from_slice(&s.final_cosines[..k]);
        inserted_max.extend_from_slice(&s.max_cosines[..k]);
        unseen_max.extend_from_slice(&s.max_cosines[k..]);
    }
    out.epsilon_one_shot_final = one_shot_epsilon_from_cosines(first.dim, &inserted_final, delta)?;
    let (m0, s0) = mean_std(&unseen_max);
    let (m1, s1) = mean_std(&inserted_max);
    out.epsilon_one_shot_all_iterates = two_gaussians_epsilon(m0, s0, m1, s1, delta)?;
    let (or_f, cp_f) = bounds(&final_all, &is_in, delta, confidence)?;
    let (or_a, cp_a) = bounds(&max_all, &is_in, delta, confidence)?;
    out.epsilon_one_run_final = or_f;
    out.epsilon_one_run_all_iterates = or_a;
    out.epsilon_clopper_pearson_final = cp_f;
    out.epsilon_clopper_pearson_all_iterates = cp_a;
    out.epsilon_lower_bound = or_f.max(or_a);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selection::KeyedPoissonSampler;

    #[test]
    fn directions_are_unit_reproducible_and_distinct() {
        let set = CanarySet::new(7, 3);
        let (mut a, mut b, mut c) = (vec![0.0f32; 5000], vec![0.0; 5000], vec![0.0; 5000]);
        set.direction(1, &mut a);
        set.direction(1, &mut b);
        CanarySet::new(8, 3).direction(1, &mut c);
        assert_eq!(a, b);
        let norm = a.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "{norm}");
        // Independent directions: |cos| ~ 1/√d = 0.014.
        assert!(cosine(&a, &c).abs() < 0.07);
        set.direction(2, &mut c);
        assert!(cosine(&a, &c).abs() < 0.07);
    }

    fn draw(sampler: &dyn Sampler) -> CanaryDraw<'_> {
        CanaryDraw {
            sampler,
            job_id: "j",
            round: 1,
            attempt: 1,
            q: 0.25,
            clip_norm: 2.0,
        }
    }

    #[test]
    fn insertion_follows_the_sampler_at_rate_q() {
        let sampler = KeyedPoissonSampler::new(&[3u8; 32]);
        let set = CanarySet::new(1, 400);
        let mut sum = vec![0.0f64; 64];
        let mut buf = Vec::new();
        let n = set.insert(&draw(&sampler), &mut sum, &mut buf).unwrap();
        // Bin(400, 0.25): mean 100, sd 8.7.
        assert!((60..=140).contains(&n), "{n}");
        let expected: u32 = (0..400)
            .filter(|&i| sampler.selected("j", 1, 1, &CanarySet::client_id(i), 0.25))
            .count() as u32;
        assert_eq!(n, expected);
        // Each contributes norm ≤ C = 2.
        let mut one = vec![0.0f64; 64];
        let first = (0..400)
            .find(|&i| sampler.selected("j", 1, 1, &CanarySet::client_id(i), 0.25))
            .unwrap();
        let only = CanarySet {
            seed: 1,
            inserted: first + 1,
            unseen: 0,
        };
        only.insert(&draw(&sampler), &mut one, &mut buf).unwrap();
        let norm = one.iter().map(|x| x * x).sum::<f64>().sqrt();
        assert!(norm <= 2.0 && norm > 2.0 - 1e-4, "{norm}");
    }

    fn stats_for(
        set: &CanarySet,
        dim: usize,
        signal: f64,
        noise: f64,
        seed: u64,
    ) -> CanaryStatistics {
        // Final delta = signal·Σ inserted directions + isotropic noise.
        use rand_distr::Normal;
        let mut rng = ChaCha12Rng::seed_from_u64(seed);
        let normal = Normal::new(0.0, noise).unwrap();
        let mut delta: Vec<f32> = (0..dim).map(|_| normal.sample(&mut rng) as f32).collect();
        let mut buf = vec![0.0f32; dim];
        for i in 0..set.inserted {
            set.direction(i, &mut buf);
            for (d, u) in delta.iter_mut().zip(&buf) {
                *d += (signal * f64::from(*u)) as f32;
            }
        }
        let mut s = CanaryStatistics::new(set, dim);
        s.observe_round(set, &delta, &mut buf);
        s.observe_final(set, &delta, &mut buf);
        s
    }

    #[test]
    fn strong_signal_gives_large_estimates_and_noise_gives_small_ones() {
        let set = CanarySet::new(5, 50);
        let dim = 4000;
        // Signal 1 per canary, no noise: every inserted cosine ≈ 1/√50 = 0.14
        // against a null sd of 1/√4000 = 0.016.
        let strong = estimate(&set, &stats_for(&set, dim, 1.0, 1e-9, 1), 1e-6, 0.95).unwrap();
        assert!(strong.epsilon_one_shot_final > 10.0, "{strong:?}");
        assert!(strong.epsilon_one_run_final > 2.0, "{strong:?}");
        assert_eq!(
            strong.epsilon_lower_bound,
            strong
                .epsilon_one_run_final
                .max(strong.epsilon_one_run_all_iterates)
        );
        // Pure noise: nothing to find.
        let none = estimate(&set, &stats_for(&set, dim, 0.0, 1.0, 2), 1e-6, 0.95).unwrap();
        assert!(none.epsilon_lower_bound < 0.5, "{none:?}");
        assert!(none.epsilon_one_shot_final < 1.5, "{none:?}");
        assert_eq!((none.canaries, none.unseen_canaries), (50, 50));
    }

    #[test]
    fn pooling_one_job_reproduces_its_audit_and_more_jobs_tighten_the_bound() {
        let dim = 2000;
        let sets: Vec<CanarySet> = (0..3).map(|i| CanarySet::new(20 + i, 60)).collect();
        let stats: Vec<CanaryStatistics> = sets
            .iter()
            .zip(0u64..)
            .map(|(set, i)| stats_for(set, dim, 0.1, 0.05, 40 + i))
            .collect();
        let single: Vec<EmpiricalAudit> = sets
            .iter()
            .zip(&stats)
            .map(|(set, st)| estimate(set, st, 1e-6, 0.95).unwrap())
            .collect();
        // One job pooled is exactly that job's audit.
        let one = pooled_estimate(&stats[..1], 1e-6, 0.95).unwrap();
        assert_eq!(one, single[0]);
        // Three jobs: the counts add up and, at the same signal, three
        // times the canaries give a tighter (larger) lower bound than any
        // job alone.
        let all = pooled_estimate(&stats, 1e-6, 0.95).unwrap();
        assert_eq!((all.canaries, all.unseen_canaries), (180, 180));
        let best_single = single
            .iter()
            .map(|a| a.epsilon_lower_bound)
            .fold(0.0, f64::max);
        assert!(
            all.epsilon_lower_bound > best_single,
            "pooled {all:?}, single {single:?}"
        );
        // Jobs of different shapes are not pooled.
        let mut other = stats[1].clone();
        other.rounds += 1;
        assert!(pooled_estimate(&[stats[0].clone(), other], 1e-6, 0.95).is_err());
        let mut other = stats[1].clone();
        other.dim += 1;
        assert!(pooled_estimate(&[stats[0].clone(), other], 1e-6, 0.95).is_err());
        assert_eq!(
            pooled_estimate(&[], 1e-6, 0.95)
                .unwrap()
                .epsilon_lower_bound,
            0.0
        );
    }

    #[test]
    fn nothing_released_means_nothing_measured() {
        let set = CanarySet::new(5, 10);
        let a = estimate(&set, &CanaryStatistics::new(&set, 100), 1e-5, 0.95).unwrap();
        assert_eq!(a.epsilon_lower_bound, 0.0);
        assert_eq!(a.epsilon_one_shot_final, 0.0);
    }
}
