//! Update screening that keeps the DP argument.
//!
//! Each update is scored on statistics of **that update and public state
//! only** — its L2 norm before re-clipping (as a multiple of the round's
//! `C`), its cosine and sign agreement with the previous *published* global
//! update (the difference of the last two published versions: a DP release,
//! so public), its per-layer norms (layer layout from the model spec), and
//! robust z-scores of its norm and cosine against the **same tenant's own**
//! past scores ([`ScoreHistory`]). The decision to flag an update
//! ([`decide`]) is a function of those only: adding or removing another
//! tenant cannot change whether this tenant's update is flagged, and an
//! excluded update contributes the zero vector, so the sensitivity of the
//! sum stays `C` (`privacy/README.md`, "Update screening").
//!
//! Statistics across the tenants of one round (median, MAD of the cohort's
//! norms, …) are deliberately absent here: they may feed logs and an admin's
//! decision, never the automatic inclusion of an update.
//!
//! Without a reference (the first round, or the first round after a
//! restart or rollback: fewer than two published versions in a row), the
//! cosine and sign statistics are not computed and their rules do not fire;
//! the norm, layer and history rules still apply. Until a tenant has
//! [`ScreenThresholds::min_history`] past scores its history rules do not
//! fire either.
//!
//! Everything here is pure: no I/O, no clock, no randomness. The
//! coordinator's upload path and the simulator call the same
//! [`Screener::screen`].

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::ops::Range;

use fedsec_model::ModelSpec;

/// Scale floor of the norm history's robust z-score, as a fraction of `C`
/// (a tenant whose past norms were all exactly `C` has MAD 0).
pub const NORM_SCALE_FLOOR: f64 = 0.05;
/// Scale floor of the cosine history's robust z-score.
pub const COSINE_SCALE_FLOOR: f64 = 0.05;
/// Largest `history_len` a job may ask for.
pub const MAX_HISTORY_LEN: usize = 1024;
/// MAD to standard deviation under a normal distribution.
const MAD_TO_SD: f64 = 1.4826;

/// What a job does with an update its screen flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ScreenPolicy {
    /// Log (WARN event, metric, round record) and keep the update in the sum.
    Log,
    /// Log and leave the update out of the sum (the default; see the README
    /// for the measurements it rests on).
    #[default]
    Exclude,
    /// Exclude, and quarantine the client identity that sent it (audited).
    Quarantine,
}

impl ScreenPolicy {
    /// Every policy, in documentation order.
    pub const ALL: [Self; 3] = [Self::Log, Self::Exclude, Self::Quarantine];

    /// Its name in job files and the Admin API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Log => "log",
            Self::Exclude => "exclude",
            Self::Quarantine => "quarantine",
        }
    }

    /// Whether a flagged update is left out of the sum.
    pub fn excludes(self) -> bool {
        !matches!(self, Self::Log)
    }
}

impl fmt::Display for ScreenPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown screen policy name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown screen policy {0:?} (expected \"log\", \"exclude\" or \"quarantine\")")]
pub struct UnknownPolicy(pub String);

impl std::str::FromStr for ScreenPolicy {
    type Err = UnknownPolicy;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownPolicy(s.chars().take(64).collect()))
    }
}

/// Thresholds of the screen's rules. A rule fires when its statistic is
/// outside its threshold; an update is flagged when any rule fires.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScreenThresholds {
    /// Norm before re-clipping above `max_norm_ratio × C` fires. Honest
    /// clients clip to `C` themselves, so anything above `C` (plus rounding)
    /// was not produced by the protocol. At least 1. Default 1.01.
    pub max_norm_ratio: f64,
    /// Cosine with the previous published update below this fires. In
    /// [-1, 1]; -1 disables the rule. Default -1 (off; see the README).
    pub min_cosine: f64,
    /// Share of coordinates (non-zero in both) whose sign agrees with the
    /// previous published update below this fires. In [0, 1]; 0 disables
    /// the rule. Default 0 (off).
    pub min_sign_agreement: f64,
    /// Share of the squared norm in one layer above this fires. In (0, 1];
    /// 1 disables the rule. Default 1 (off).
    pub max_layer_share: f64,
    /// Past scores kept per tenant (1..=1024). Default 16.
    pub history_len: usize,
    /// Past scores a tenant needs before its history rules fire. Default 4.
    pub min_history: usize,
    /// Robust z-score of the norm above the tenant's own past norms
    /// (`(norm − median) / (1.4826·max(MAD, 0.05·C))`) above this fires;
    /// 0 disables the rule. Default 6.
    pub max_norm_z: f64,
    /// Robust z-score of the cosine *below* the tenant's own past cosines
    /// (`(median − cosine) / (1.4826·max(MAD, 0.05))`) above this fires; 0
    /// disables the rule. Default 0 (off).
    pub max_cosine_z: f64,
}

impl Default for ScreenThresholds {
    fn default() -> Self {
        Self {
            max_norm_ratio: 1.01,
            min_cosine: -1.0,
            min_sign_agreement: 0.0,
            max_layer_share: 1.0,
            history_len: 16,
            min_history: 4,
            max_norm_z: 6.0,
            max_cosine_z: 0.0,
        }
    }
}

/// A threshold out of its range: the field's name and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidThreshold {
    /// The field (as named in job files).
    pub field: &'static str,
    /// What is wrong.
    pub reason: String,
}

impl ScreenThresholds {
    /// Checks every threshold's range; the error names the field.
    pub fn validate(&self) -> Result<(), InvalidThreshold> {
        let bad = |field, reason: String| Err(InvalidThreshold { field, reason });
        let t = self;
        if !(t.max_norm_ratio.is_finite() && t.max_norm_ratio >= 1.0) {
            return bad(
                "max_norm_ratio",
                format!("{} must be finite and at least 1", t.max_norm_ratio),
            );
        }
        if !(-1.0..=1.0).contains(&t.min_cosine) {
            return bad("min_cosine", format!("{} must be in [-1, 1]", t.min_cosine));
        }
        if !(0.0..=1.0).contains(&t.min_sign_agreement) {
            return bad(
                "min_sign_agreement",
                format!("{} must be in [0, 1]", t.min_sign_agreement),
            );
        }
        if !(t.max_layer_share > 0.0 && t.max_layer_share <= 1.0) {
            return bad(
                "max_layer_share",
                format!("{} must be in (0, 1]", t.max_layer_share),
            );
        }
        if !(1..=MAX_HISTORY_LEN).contains(&t.history_len) {
            return bad(
                "history_len",
                format!("{} must be in 1..={MAX_HISTORY_LEN}", t.history_len),
            );
        }
        if !(1..=t.history_len).contains(&t.min_history) {
            return bad(
                "min_history",
                format!(
                    "{} must be in 1..=history_len ({})",
                    t.min_history, t.history_len
                ),
            );
        }
        for (field, v) in [
            ("max_norm_z", t.max_norm_z),
            ("max_cosine_z", t.max_cosine_z),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return bad(field, format!("{v} must be finite and ≥ 0 (0 = off)"));
            }
        }
        Ok(())
    }
}

/// A job's screen: what it flags and what it does then.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ScreenConfig {
    /// What happens to a flagged update.
    pub policy: ScreenPolicy,
    /// When an update is flagged.
    pub thresholds: ScreenThresholds,
}

/// One dense layer's slice of the flat parameter vector (weight and bias).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    /// `layers.{l}`.
    pub name: String,
    /// Its positions in the flat vector.
    pub range: Range<usize>,
}

/// The model's layers, from its spec's canonical layout (a dense layer's
/// weight and bias together).
pub fn layers(spec: &ModelSpec) -> Vec<Layer> {
    let mut out: Vec<Layer> = Vec::new();
    for slot in spec.layout() {
        let name = slot
            .name
            .rsplit_once('.')
            .map_or(slot.name.as_str(), |(l, _)| l)
            .to_owned();
        let range = slot.offset..slot.offset + slot.len;
        match out.last_mut() {
            Some(last) if last.name == name && last.range.end == range.start => {
                last.range.end = range.end;
            }
            _ => out.push(Layer { name, range }),
        }
    }
    out
}

/// The previous published global update: `current − previous` of the last
/// two published versions (public: both are DP releases).
#[derive(Debug, Clone, PartialEq)]
pub struct Reference {
    direction: Vec<f32>,
    norm: f64,
}

impl Reference {
    /// `current − previous`; `None` when the lengths differ, a value is not
    /// finite, or the two versions are equal (no direction).
    pub fn between(previous: &[f32], current: &[f32]) -> Option<Self> {
        if previous.len() != current.len() {
            return None;
        }
        let direction: Vec<f32> = current.iter().zip(previous).map(|(c, p)| c - p).collect();
        let norm = direction
            .iter()
            .map(|&x| f64::from(x) * f64::from(x))
            .sum::<f64>()
            .sqrt();
        (norm.is_finite() && norm > 0.0).then_some(Self { direction, norm })
    }

    /// Its dimension.
    pub fn len(&self) -> usize {
        self.direction.len()
    }

    /// Whether it has dimension 0 (never: [`Reference::between`] refuses it).
    pub fn is_empty(&self) -> bool {
        self.direction.is_empty()
    }
}

/// Statistics of one update against public state and its sender's history.
#[derive(Debug, Clone, PartialEq)]
pub struct UpdateStats {
    /// L2 norm as received (before re-clipping).
    pub norm: f64,
    /// `norm / C`.
    pub norm_ratio: f64,
    /// Cosine with the previous published update (none without a reference
    /// or for a zero update).
    pub cosine: Option<f64>,
    /// Share of coordinates, non-zero in both, whose sign agrees with the
    /// reference (none without a reference or such coordinates).
    pub sign_agreement: Option<f64>,
    /// L2 norm of each layer, in layout order.
    pub layer_norms: Vec<f64>,
    /// Largest share of the squared norm in one layer (0 for a zero update).
    pub max_layer_share: f64,
    /// Robust z-score of the norm against the tenant's own past norms
    /// (none until it has `min_history` of them).
    pub norm_z: Option<f64>,
    /// Robust z-score of the cosine below the tenant's own past cosines.
    pub cosine_z: Option<f64>,
}

/// Measures one update: one pass per layer's slice (the layers partition the
/// vector), plus one pass over the update and the reference when there is
/// one. `None` when its length differs from the layers' or the reference's,
/// or a value is not finite: the accumulator refuses such an update with its
/// own error. Allocates one value per layer.
///
/// It runs on every upload at memory speed: the layers' sums of squares use
/// the privacy crate's vectorised kernel
/// ([`fedsec_privacy::clip::sum_of_squares`]), the reference pass eight
/// independent lanes (`dot_and_signs`).
pub fn measure(
    update: &[f32],
    clip_norm: f64,
    reference: Option<&Reference>,
    layers: &[Layer],
) -> Option<UpdateStats> {
    let covered = layers.last().map_or(0, |l| l.range.end);
    if covered != update.len() || reference.is_some_and(|r| r.len() != update.len()) {
        return None;
    }
    let mut layer_norms = Vec::with_capacity(layers.len());
    let mut total = 0.0f64;
    for layer in layers {
        // Not finite exactly when a value of the slice is NaN or ±∞.
        let sq = fedsec_privacy::clip::sum_of_squares(update.get(layer.range.clone())?);
        if !sq.is_finite() {
            return None;
        }
        total += sq;
        layer_norms.push(sq);
    }
    let max_sq = layer_norms.iter().copied().fold(0.0, f64::max);
    let max_layer_share = if total > 0.0 { max_sq / total } else { 0.0 };
    for v in &mut layer_norms {
        *v = v.sqrt();
    }
    let norm = total.sqrt();
    let (cosine, sign_agreement) = match reference {
        None => (None, None),
        Some(r) => {
            let (dot, agree, both) = dot_and_signs(update, &r.direction);
            let cos = (norm > 0.0).then(|| (dot / (norm * r.norm)).clamp(-1.0, 1.0));
            let signs = (both > 0).then(|| agree as f64 / both as f64);
            (cos, signs)
        }
    };
    Some(UpdateStats {
        norm,
        norm_ratio: norm / clip_norm,
        cosine,
        sign_agreement,
        layer_norms,
        max_layer_share,
        norm_z: None,
        cosine_z: None,
    })
}

/// Lanes of `dot_and_signs`: independent partial sums, so the loop is not
/// bound by the latency of one chain of `f64` additions and vectorises.
const LANES: usize = 8;

/// Values per call of `dot_and_signs_block`: each lane counts at most
/// `BLOCK / LANES + 1 < 2³²` values in `u32`.
const BLOCK: usize = 1 << 30;

/// `(Σ x·y in f64, #{x·y > 0}, #{x ≠ 0 and y ≠ 0})` over equal-length
/// slices of finite values: the dot product and the sign agreement counts of
/// an update against the reference direction.
fn dot_and_signs(x: &[f32], y: &[f32]) -> (f64, u64, u64) {
    let mut out = (0.0f64, 0u64, 0u64);
    for (xs, ys) in x.chunks(BLOCK).zip(y.chunks(BLOCK)) {
        let (d, a, b) = dot_and_signs_block(xs, ys);
        out = (out.0 + d, out.1 + a, out.2 + b);
    }
    out
}

/// One block of at most [`BLOCK`] values, compiled for AVX2 + FMA too and
/// dispatched at run time (`pulp`, no `unsafe`), like the privacy crate's
/// kernels.
fn dot_and_signs_block(x: &[f32], y: &[f32]) -> (f64, u64, u64) {
    #[cfg(target_arch = "x86_64")]
    if let Some(simd) = pulp::x86::V3::try_new() {
        return simd.vectorize(
            #[inline(always)]
            || dot_and_signs_portable(x, y),
        );
    }
    dot_and_signs_portable(x, y)
}

/// The block in [`LANES`] lanes; the tail is zero-padded to one more row of
/// lanes (a zero adds nothing to the dot product and counts in neither
/// count). Shaped for LLVM's auto-vectoriser: the tail runs through the same
/// loop, since a separate scalar tail loop halved the AVX2 loop's speed.
#[inline(always)]
fn dot_and_signs_portable(x: &[f32], y: &[f32]) -> (f64, u64, u64) {
    let (xb, xt) = x.as_chunks::<LANES>();
    let (yb, yt) = y.as_chunks::<LANES>();
    let (mut xp, mut yp) = ([0.0f32; LANES], [0.0f32; LANES]);
    let t = xt.len().min(yt.len());
    xp[..t].copy_from_slice(&xt[..t]);
    yp[..t].copy_from_slice(&yt[..t]);
    let (d0, a0, b0) = lanes(xb, yb);
    let (d1, a1, b1) = lanes(&[xp], &[yp]);
    let d: [f64; LANES] = std::array::from_fn(|k| d0[k] + d1[k]);
    let dot = ((d[0] + d[4]) + (d[1] + d[5])) + ((d[2] + d[6]) + (d[3] + d[7]));
    let count = |a: [u32; LANES], b: [u32; LANES]| -> u64 {
        a.iter().chain(&b).map(|&v| u64::from(v)).sum()
    };
    (dot, count(a0, a1), count(b0, b1))
}

/// Per-lane dot products, sign agreements and joint non-zeros.
#[inline(always)]
fn lanes(xb: &[[f32; LANES]], yb: &[[f32; LANES]]) -> ([f64; LANES], [u32; LANES], [u32; LANES]) {
    let mut dot = [0.0f64; LANES];
    let mut agree = [0u32; LANES];
    let mut both = [0u32; LANES];
    for (xv, yv) in xb.iter().zip(yb) {
        for k in 0..LANES {
            let (x, y) = (xv[k], yv[k]);
            dot[k] += f64::from(x) * f64::from(y);
            let nonzero = (x != 0.0) & (y != 0.0);
            both[k] += u32::from(nonzero);
            agree[k] += u32::from(nonzero & ((x > 0.0) == (y > 0.0)));
        }
    }
    (dot, agree, both)
}

/// Which statistic fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Statistic {
    /// Norm before re-clipping, as a multiple of `C`.
    NormRatio,
    /// Cosine with the previous published update.
    Cosine,
    /// Sign agreement with the previous published update.
    SignAgreement,
    /// Share of the squared norm in one layer.
    LayerShare,
    /// The norm's robust z-score against the tenant's own history.
    NormHistory,
    /// The cosine's robust z-score against the tenant's own history.
    CosineHistory,
}

impl Statistic {
    /// Its name in logs, metrics and records.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NormRatio => "norm_ratio",
            Self::Cosine => "cosine",
            Self::SignAgreement => "sign_agreement",
            Self::LayerShare => "layer_share",
            Self::NormHistory => "norm_z",
            Self::CosineHistory => "cosine_z",
        }
    }
}

/// One rule that fired: the statistic, its value and the threshold it crossed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Finding {
    /// Which statistic.
    pub statistic: Statistic,
    /// Its value.
    pub value: f64,
    /// The threshold it crossed.
    pub threshold: f64,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (value, threshold) = (self.value, self.threshold);
        match self.statistic {
            Statistic::NormRatio
            | Statistic::LayerShare
            | Statistic::NormHistory
            | Statistic::CosineHistory => {
                write!(f, "{} {value:.4} > {threshold}", self.statistic.as_str())
            }
            Statistic::Cosine | Statistic::SignAgreement => {
                write!(f, "{} {value:.4} < {threshold}", self.statistic.as_str())
            }
        }
    }
}

/// The rules that fired for one update ([`decide`]); flagged when any did.
pub fn decide(stats: &UpdateStats, t: &ScreenThresholds) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut fire = |statistic, value: f64, threshold: f64, over: bool| {
        let fired = if over {
            value > threshold
        } else {
            value < threshold
        };
        if fired {
            out.push(Finding {
                statistic,
                value,
                threshold,
            });
        }
    };
    fire(
        Statistic::NormRatio,
        stats.norm_ratio,
        t.max_norm_ratio,
        true,
    );
    if let Some(c) = stats.cosine {
        fire(Statistic::Cosine, c, t.min_cosine, false);
    }
    if let Some(s) = stats.sign_agreement {
        fire(Statistic::SignAgreement, s, t.min_sign_agreement, false);
    }
    if t.max_layer_share < 1.0 {
        fire(
            Statistic::LayerShare,
            stats.max_layer_share,
            t.max_layer_share,
            true,
        );
    }
    if let (Some(z), true) = (stats.norm_z, t.max_norm_z > 0.0) {
        fire(Statistic::NormHistory, z, t.max_norm_z, true);
    }
    if let (Some(z), true) = (stats.cosine_z, t.max_cosine_z > 0.0) {
        fire(Statistic::CosineHistory, z, t.max_cosine_z, true);
    }
    out
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// `(median, MAD)` of a non-empty sample.
fn median_mad(values: &VecDeque<f64>) -> (f64, f64) {
    let mut v: Vec<f64> = values.iter().copied().collect();
    let m = median(&mut v);
    for x in &mut v {
        *x = (*x - m).abs();
    }
    (m, median(&mut v))
}

/// One tenant's own past scores (bounded ring buffers), from its updates
/// that were not flagged.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ScoreHistory {
    norm_ratios: VecDeque<f64>,
    cosines: VecDeque<f64>,
    /// The sequence number of its last record (eviction order).
    last_seen: u64,
}

impl ScoreHistory {
    /// Past norm ratios kept.
    pub fn len(&self) -> usize {
        self.norm_ratios.len()
    }

    /// Whether nothing was recorded yet.
    pub fn is_empty(&self) -> bool {
        self.norm_ratios.is_empty()
    }

    /// Fills the stats' history z-scores (once it has `min_history` scores).
    pub fn annotate(&self, stats: &mut UpdateStats, t: &ScreenThresholds) {
        if self.norm_ratios.len() >= t.min_history {
            let (m, mad) = median_mad(&self.norm_ratios);
            stats.norm_z = Some((stats.norm_ratio - m) / (MAD_TO_SD * mad.max(NORM_SCALE_FLOOR)));
        }
        if let Some(c) = stats.cosine
            && self.cosines.len() >= t.min_history
        {
            let (m, mad) = median_mad(&self.cosines);
            stats.cosine_z = Some((m - c) / (MAD_TO_SD * mad.max(COSINE_SCALE_FLOOR)));
        }
    }

    fn record(&mut self, stats: &UpdateStats, cap: usize, seq: u64) {
        push_bounded(&mut self.norm_ratios, stats.norm_ratio, cap);
        if let Some(c) = stats.cosine {
            push_bounded(&mut self.cosines, c, cap);
        }
        self.last_seen = seq;
    }
}

fn push_bounded(q: &mut VecDeque<f64>, v: f64, cap: usize) {
    while q.len() >= cap.max(1) {
        q.pop_front();
    }
    q.push_back(v);
}

/// The outcome of screening one update.
#[derive(Debug, Clone, PartialEq)]
pub struct Screened {
    /// Its statistics (history z-scores filled when available).
    pub stats: UpdateStats,
    /// The rules that fired (empty: not flagged).
    pub findings: Vec<Finding>,
    /// Whether the update must be left out of the sum (flagged, and the
    /// policy excludes).
    pub exclude: bool,
}

impl Screened {
    /// Whether any rule fired.
    pub fn flagged(&self) -> bool {
        !self.findings.is_empty()
    }

    /// The findings as one line, e.g. `norm_ratio 60.0000 > 1.01`.
    pub fn summary(&self) -> String {
        self.findings
            .iter()
            .map(Finding::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// One job's screen: its config and every tenant's own history (at most
/// `max_tenants` histories; past that the least recently seen is dropped,
/// so memory stays bounded by `max_tenants × history_len`).
#[derive(Debug, Clone)]
pub struct Screener {
    config: ScreenConfig,
    histories: HashMap<String, ScoreHistory>,
    max_tenants: usize,
    seq: u64,
}

impl Screener {
    /// An empty screen for a job (`config` validated by the caller).
    pub fn new(config: ScreenConfig, max_tenants: usize) -> Self {
        Self {
            config,
            histories: HashMap::new(),
            max_tenants: max_tenants.max(1),
            seq: 0,
        }
    }

    /// Its config.
    pub fn config(&self) -> &ScreenConfig {
        &self.config
    }

    /// The tenant's own history, if any.
    pub fn history(&self, tenant: &str) -> Option<&ScoreHistory> {
        self.histories.get(tenant)
    }

    /// Screens a measured update of `tenant` ([`measure`], computed without
    /// any lock): fills its history z-scores, decides from its statistics
    /// and the tenant's own history only, and records an unflagged update's
    /// scores in that history.
    pub fn screen(&mut self, tenant: &str, mut stats: UpdateStats) -> Screened {
        let t = &self.config.thresholds;
        if let Some(h) = self.histories.get(tenant) {
            h.annotate(&mut stats, t);
        }
        let findings = decide(&stats, t);
        if findings.is_empty() {
            self.seq += 1;
            if !self.histories.contains_key(tenant) && self.histories.len() >= self.max_tenants {
                let oldest = self
                    .histories
                    .iter()
                    .min_by_key(|(k, h)| (h.last_seen, (*k).clone()))
                    .map(|(k, _)| k.clone());
                if let Some(k) = oldest {
                    self.histories.remove(&k);
                }
            }
            let cap = t.history_len;
            self.histories
                .entry(tenant.to_owned())
                .or_default()
                .record(&stats, cap, self.seq);
        }
        let exclude = !findings.is_empty() && self.config.policy.excludes();
        Screened {
            stats,
            findings,
            exclude,
        }
    }
}

#[cfg(test)]
#[path = "screen_tests.rs"]
mod tests;
