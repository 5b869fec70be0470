//! Baselines of *this tenant's typical humans*: what an explanation compares
//! a session with.
//!
//! Feature centres (the fixed transforms' 0) are not a typical human of any
//! real tenant: on an API tenant nobody loads images, on a shop most
//! visitors never add to the cart, so "compared to the centre" reasons
//! ("rarely added to the cart") describe the tenant, not the session. A
//! [`Baseline`] is instead a set of up to `k` reference sessions of the
//! tenant's own traffic, chosen by a [`ReferenceSampler`]:
//!
//! - which sessions are eligible is the caller's choice and is recorded in
//!   [`BaselineSource`]: sessions labelled human when labels exist, else the
//!   sessions the model itself scores as human with confidence (bot
//!   probability below [`HUMAN_MAX_PROBABILITY`]), good bots excluded;
//! - among eligible sessions, the `k` with the smallest FNV-1a hash of their
//!   session key: a uniform, deterministic sample (the same log gives the
//!   same baseline, whatever the batch order), so the reference is a typical
//!   human, not the most extreme one.
//!
//! Attributions are averaged over the references (as in expected gradients
//! or SHAP's background set): with `k` references `b₁…b_k`, the
//! attributions sum to `f(x) − mean_j f(b_j)`. Each reference takes the
//! session's own missing-field flags so the log format is never a reason.
//! With fewer than [`MIN_REFERENCES`] eligible sessions the baseline falls
//! back to the feature centres ([`baseline_for`]) and says so
//! ([`Baseline::notice`]).
//!
//! One path for every caller: which sessions are eligible
//! ([`is_typical_human`], offered through [`ReferenceSampler::consider`]),
//! and how rows are explained and phrased against the result
//! ([`Baseline::reasons_for`]) are the same for `fedsec-client score` (which
//! streams a log) and the embedding API (`ParticipantHandle::explain_sessions`,
//! sessions in memory: [`typical_humans`]).

use std::collections::BinaryHeap;

use fedsec_model::ModelSpec;
use serde::Serialize;

use super::{Explanation, Reason, ReasonContext, baseline_for, explain, finish, reasons};
use crate::evidence::Evidence;
use crate::features::{FEATURES, NUM_FEATURES, RawFeatures, Unit, idx};
use crate::model::ModelError;

/// Default number of reference sessions.
pub const DEFAULT_REFERENCES: usize = 32;
/// Fewest eligible sessions for a tenant baseline (else feature centres).
pub const MIN_REFERENCES: usize = 8;
/// Highest bot probability of a session the model counts as a typical human.
pub const HUMAN_MAX_PROBABILITY: f32 = 0.1;

/// Logit of [`HUMAN_MAX_PROBABILITY`]: sessions scored below it count as
/// the model's typical humans.
pub fn human_logit() -> f32 {
    let p = HUMAN_MAX_PROBABILITY;
    (p / (1.0 - p)).ln()
}

/// A good bot: never a typical human, listed apart from abuse by `score`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GoodBot {
    /// Its user agent names a crawler and its address is in that crawler's ranges.
    VerifiedCrawler,
    /// It names itself a bot (not a crawler it fails to be) and scores below
    /// 0.5; with [`GoodBot::of_session`] also not a scanner or browser automation.
    DeclaredBot,
}

impl GoodBot {
    /// The kind of good bot a session is, if any (`logit`: its bot logit).
    pub fn of(raw: &RawFeatures, logit: f32) -> Option<Self> {
        let r = &raw.0;
        if r[idx::CRAWLER_VERIFIED] == 1.0 {
            Some(Self::VerifiedCrawler)
        } else if r[idx::UA_KNOWN_BOT] == 1.0 && r[idx::CRAWLER_SPOOFED] != 1.0 && logit < 0.0 {
            Some(Self::DeclaredBot)
        } else {
            None
        }
    }

    /// [`of`](Self::of) with the user agent itself: a declared bot must
    /// also announce a good bot ([`crate::ua::UaClassifier::announces_good_bot`]),
    /// so a scanner or a headless browser that names itself and scores below
    /// 0.5 is no good bot (the features only say "a known bot pattern").
    pub fn of_session(raw: &RawFeatures, user_agent: &str, logit: f32) -> Option<Self> {
        match Self::of(raw, logit) {
            Some(Self::DeclaredBot)
                if !crate::ua::UaClassifier::global().announces_good_bot(user_agent) =>
            {
                None
            }
            other => other,
        }
    }

    /// Plain words.
    pub fn label(self) -> &'static str {
        match self {
            Self::VerifiedCrawler => "verified crawler",
            Self::DeclaredBot => "declared bot",
        }
    }
}

/// Whether a scored session belongs in the typical-human pool: with labels
/// (`labelled_human` is `Some`), exactly the sessions labelled human; else
/// the sessions the model scores below [`HUMAN_MAX_PROBABILITY`] (bot logit
/// `logit`) that are not good bots.
pub fn is_typical_human(raw: &RawFeatures, logit: f32, labelled_human: Option<bool>) -> bool {
    match labelled_human {
        Some(human) => human,
        // From features alone: any known-bot user agent (scanners and
        // headless browsers included) stays out of the typical-human pool.
        None => GoodBot::of(raw, logit).is_none() && logit < human_logit(),
    }
}

/// The typical-human baseline of sessions held in memory: each item is a
/// session's key, model inputs, raw values and bot logit; `labelled_human`
/// as in [`is_typical_human`] (`None` for every item: the model's own
/// humans). Up to `k` references, the feature centres below
/// [`MIN_REFERENCES`].
pub fn typical_humans<'a>(
    sessions: impl IntoIterator<
        Item = (
            &'a str,
            &'a [f32; NUM_FEATURES],
            &'a RawFeatures,
            f32,
            Option<bool>,
        ),
    >,
    k: usize,
) -> Baseline {
    let mut sampler = ReferenceSampler::new(k);
    let mut labelled = false;
    for (key, values, raw, logit, human) in sessions {
        labelled |= human.is_some();
        sampler.consider(key, values, raw, logit, human);
    }
    sampler.finish(if labelled {
        BaselineSource::LabelledHumans
    } else {
        BaselineSource::ScoredHumans
    })
}

/// Where the reference sessions come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BaselineSource {
    /// Sessions of this log labelled human.
    LabelledHumans,
    /// Sessions of this log the model scores as human (p < 0.1), good bots excluded.
    ScoredHumans,
    /// Too few eligible sessions: the fixed feature centres.
    FeatureCentres,
}

impl BaselineSource {
    /// Plain words.
    pub fn describe(self) -> &'static str {
        match self {
            Self::LabelledHumans => "sessions of this log labelled human",
            Self::ScoredHumans => "sessions of this log the model scores as human (p < 0.1)",
            Self::FeatureCentres => "the fixed feature centres (too few human sessions here)",
        }
    }
}

#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    hash: u64,
    key: Box<str>,
    slot: usize,
}

/// Keeps the `k` eligible sessions with the smallest key hash.
pub struct ReferenceSampler {
    k: usize,
    heap: BinaryHeap<Entry>,
    rows: Vec<([f32; NUM_FEATURES], RawFeatures)>,
    free: Vec<usize>,
    eligible: u64,
}

impl ReferenceSampler {
    /// A sampler of at most `k` references.
    pub fn new(k: usize) -> Self {
        Self {
            k,
            heap: BinaryHeap::new(),
            rows: Vec::new(),
            free: Vec::new(),
            eligible: 0,
        }
    }

    /// Offers one eligible session (its key string, model inputs and raw values).
    pub fn offer(&mut self, key: &str, values: &[f32; NUM_FEATURES], raw: &RawFeatures) {
        self.eligible += 1;
        if self.k == 0 {
            return;
        }
        let hash = crate::paths::fnv1a(key.as_bytes());
        let entry = |slot| Entry {
            hash,
            key: key.into(),
            slot,
        };
        if self.heap.len() < self.k {
            let slot = match self.free.pop() {
                Some(s) => {
                    self.rows[s] = (*values, *raw);
                    s
                }
                None => {
                    self.rows.push((*values, *raw));
                    self.rows.len() - 1
                }
            };
            self.heap.push(entry(slot));
            return;
        }
        let replace = match self.heap.peek() {
            Some(top) => (hash, key) < (top.hash, &*top.key),
            None => false,
        };
        if replace && let Some(old) = self.heap.pop() {
            self.rows[old.slot] = (*values, *raw);
            self.heap.push(entry(old.slot));
        }
    }

    /// Offers a scored session if [`is_typical_human`] says it belongs in
    /// the pool; returns whether it did.
    pub fn consider(
        &mut self,
        key: &str,
        values: &[f32; NUM_FEATURES],
        raw: &RawFeatures,
        logit: f32,
        labelled_human: Option<bool>,
    ) -> bool {
        let eligible = is_typical_human(raw, logit, labelled_human);
        if eligible {
            self.offer(key, values, raw);
        }
        eligible
    }

    /// Eligible sessions offered so far.
    pub fn eligible(&self) -> u64 {
        self.eligible
    }

    /// The baseline: the sampled sessions if there are at least
    /// [`MIN_REFERENCES`], else the feature centres.
    pub fn finish(self, source: BaselineSource) -> Baseline {
        if self.heap.len() < MIN_REFERENCES || source == BaselineSource::FeatureCentres {
            return Baseline::feature_centres(self.eligible);
        }
        let mut entries = self.heap.into_vec();
        entries.sort();
        let rows: Vec<_> = entries.iter().map(|e| self.rows[e.slot]).collect();
        Baseline::from_rows(source, rows, self.eligible)
    }
}

/// Reference sessions to explain against, with their typical values.
#[derive(Debug, Clone, PartialEq)]
pub struct Baseline {
    /// Where the references come from.
    pub source: BaselineSource,
    /// Eligible sessions the references were sampled from.
    pub eligible: u64,
    refs: Vec<[f32; NUM_FEATURES]>,
    typical: [f32; NUM_FEATURES],
    typical_raw: Option<[f64; NUM_FEATURES]>,
}

impl Baseline {
    /// The fixed feature centres ([`baseline_for`]); `eligible` is recorded
    /// to say why it was used.
    pub fn feature_centres(eligible: u64) -> Self {
        let mut centre = [0f32; NUM_FEATURES];
        centre.copy_from_slice(&baseline_for(&[0f32; NUM_FEATURES]));
        Self {
            source: BaselineSource::FeatureCentres,
            eligible,
            refs: vec![centre],
            typical: centre,
            typical_raw: None,
        }
    }

    fn from_rows(
        source: BaselineSource,
        rows: Vec<([f32; NUM_FEATURES], RawFeatures)>,
        eligible: u64,
    ) -> Self {
        let n = rows.len() as f32;
        let mut typical = [0f32; NUM_FEATURES];
        let mut typical_raw = [f64::NAN; NUM_FEATURES];
        for i in 0..NUM_FEATURES {
            typical[i] = rows.iter().map(|(v, _)| v[i]).sum::<f32>() / n;
            let mut vals: Vec<f64> = rows
                .iter()
                .map(|(_, r)| r.0[i])
                .filter(|v| !v.is_nan())
                .collect();
            if vals.is_empty() {
                continue;
            }
            typical_raw[i] = if FEATURES[i].unit == Unit::Flag {
                vals.iter().sum::<f64>() / vals.len() as f64
            } else {
                vals.sort_by(f64::total_cmp);
                let m = vals.len();
                if m % 2 == 1 {
                    vals[m / 2]
                } else {
                    (vals[m / 2 - 1] + vals[m / 2]) / 2.0
                }
            };
        }
        Self {
            source,
            eligible,
            refs: rows.into_iter().map(|(v, _)| v).collect(),
            typical,
            typical_raw: Some(typical_raw),
        }
    }

    /// Number of reference sessions (1 for the feature centres).
    pub fn len(&self) -> usize {
        self.refs.len()
    }

    /// Never empty (kept for clippy's `len_without_is_empty`).
    pub fn is_empty(&self) -> bool {
        self.refs.is_empty()
    }

    /// Mean model inputs of the references: "typical" for the direction of a reason.
    pub fn typical(&self) -> &[f32; NUM_FEATURES] {
        &self.typical
    }

    /// Typical raw values of the references (median; for flags the share
    /// of references with the flag); `None` for the feature centres.
    pub fn typical_raw(&self) -> Option<&[f64; NUM_FEATURES]> {
        self.typical_raw.as_ref()
    }

    /// One line for a report: `32 sessions of this log the model scores as
    /// human (p < 0.1), sampled from 1,402`.
    pub fn describe(&self) -> String {
        match self.source {
            BaselineSource::FeatureCentres => format!(
                "{} ({} eligible, fewer than {MIN_REFERENCES})",
                self.source.describe(),
                self.eligible
            ),
            _ => format!(
                "{} {} sampled from {}",
                self.refs.len(),
                self.source.describe(),
                self.eligible
            ),
        }
    }

    /// The first line of a report: `Reasons compare with: ` and
    /// [`describe`](Self::describe) (which says when the feature centres
    /// stand in for too few humans).
    pub fn notice(&self) -> String {
        format!("Reasons compare with: {}", self.describe())
    }

    /// Explains each row against this baseline ([`explain`](Self::explain))
    /// and phrases at most `top` reasons for each against it, with the
    /// row's evidence when kept (rules in [`reasons`]). Each row is its
    /// model inputs, raw values and evidence.
    pub fn reasons_for(
        &self,
        spec: &ModelSpec,
        weights: &[f32],
        rows: &[(&[f32; NUM_FEATURES], &RawFeatures, Option<&Evidence>)],
        top: usize,
    ) -> Result<Vec<(Explanation, Vec<Reason>)>, ModelError> {
        let features: Vec<f32> = rows
            .iter()
            .flat_map(|(v, _, _)| v.iter().copied())
            .collect();
        let explained = self.explain(spec, weights, &features)?;
        Ok(explained
            .into_iter()
            .zip(rows)
            .map(|(e, (values, raw, evidence))| {
                let listed = reasons(
                    &e,
                    &values[..],
                    raw,
                    &ReasonContext::new(self, *evidence),
                    top,
                );
                (e, listed)
            })
            .collect())
    }

    /// Explains each row of `features` against every reference (with the
    /// row's own missing-field flags) and averages: the attributions of a
    /// row sum to `f(x) − mean_j f(b_j)` (exactly for logistic regression,
    /// within integrated gradients' tolerance for an MLP).
    pub fn explain(
        &self,
        spec: &ModelSpec,
        weights: &[f32],
        features: &[f32],
    ) -> Result<Vec<Explanation>, ModelError> {
        let d = spec.input_dim as usize;
        if d != NUM_FEATURES {
            return explain(
                spec,
                weights,
                features,
                &features
                    .chunks(d.max(1))
                    .flat_map(baseline_for)
                    .collect::<Vec<_>>(),
            );
        }
        let n = crate::model::check_rows(features, d)?;
        let k = self.refs.len();
        let mut xs = Vec::with_capacity(n * k * d);
        let mut bs = Vec::with_capacity(n * k * d);
        for x in features.chunks_exact(d) {
            let flags = baseline_for(x);
            for r in &self.refs {
                xs.extend_from_slice(x);
                bs.extend(r.iter().enumerate().map(|(i, &v)| {
                    if super::COPIED_FLAGS.contains(&i) {
                        flags[i]
                    } else {
                        v
                    }
                }));
            }
        }
        let pairs = explain(spec, weights, &xs, &bs)?;
        Ok(pairs
            .chunks(k)
            .map(|group| {
                let mut attributions = vec![0f32; d];
                for e in group {
                    for (a, v) in attributions.iter_mut().zip(&e.attributions) {
                        *a += v / k as f32;
                    }
                }
                let base = group
                    .iter()
                    .map(|e| f64::from(e.baseline_logit))
                    .sum::<f64>()
                    / k as f64;
                let steps = group.iter().map(|e| e.steps).max().unwrap_or(0);
                finish(group[0].logit, base as f32, attributions, steps)
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::idx;

    fn row(v: f32) -> ([f32; NUM_FEATURES], RawFeatures) {
        let mut raw = [f64::NAN; NUM_FEATURES];
        raw[idx::REQUESTS] = f64::from(v);
        raw[idx::ROBOTS_TXT] = 0.0;
        let raw = RawFeatures(raw);
        (raw.transform(), raw)
    }

    #[test]
    fn a_low_scoring_scanner_or_headless_browser_is_no_declared_good_bot() {
        let (_, mut raw) = row(3.0);
        raw.0[idx::UA_KNOWN_BOT] = 1.0;
        raw.0[idx::CRAWLER_VERIFIED] = 0.0;
        raw.0[idx::CRAWLER_SPOOFED] = 0.0;
        let monitor = "Mozilla/5.0+(compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)";
        let headless = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/122.0.0.0 Safari/537.36";
        assert_eq!(GoodBot::of(&raw, -2.0), Some(GoodBot::DeclaredBot));
        assert_eq!(
            GoodBot::of_session(&raw, monitor, -2.0),
            Some(GoodBot::DeclaredBot)
        );
        assert_eq!(GoodBot::of_session(&raw, headless, -2.0), None);
        assert_eq!(GoodBot::of_session(&raw, "sqlmap/1.8#stable", -2.0), None);
        // Above 0.5 nothing is a declared good bot.
        assert_eq!(GoodBot::of_session(&raw, monitor, 0.5), None);
        raw.0[idx::CRAWLER_VERIFIED] = 1.0;
        assert_eq!(
            GoodBot::of_session(&raw, headless, 3.0),
            Some(GoodBot::VerifiedCrawler)
        );
    }

    #[test]
    fn the_sample_is_the_smallest_key_hashes_whatever_the_order() {
        let keys: Vec<String> = (0..200).map(|i| format!("ipua:{i}:10.0.0.{i}:x")).collect();
        let mut want: Vec<&String> = keys.iter().collect();
        want.sort_by_key(|k| crate::paths::fnv1a(k.as_bytes()));
        let mut a = ReferenceSampler::new(16);
        let mut b = ReferenceSampler::new(16);
        for (i, k) in keys.iter().enumerate() {
            let (v, r) = row(i as f32);
            a.offer(k, &v, &r);
        }
        for (i, k) in keys.iter().enumerate().rev() {
            let (v, r) = row(i as f32);
            b.offer(k, &v, &r);
        }
        let (a, b) = (
            a.finish(BaselineSource::ScoredHumans),
            b.finish(BaselineSource::ScoredHumans),
        );
        // (Baselines hold NaN typical values where no reference has one.)
        assert_eq!(a.refs, b.refs);
        assert_eq!(a.typical, b.typical);
        assert_eq!((a.len(), a.eligible), (16, 200));
        let expected: Vec<[f32; NUM_FEATURES]> = want[..16]
            .iter()
            .map(|k| row(keys.iter().position(|x| x == *k).unwrap() as f32).0)
            .collect();
        assert_eq!(a.refs, expected);
    }

    #[test]
    fn typical_values_are_medians_and_flag_shares() {
        let mut s = ReferenceSampler::new(DEFAULT_REFERENCES);
        for i in 0..9 {
            let (v, mut r) = row(10.0 * (i + 1) as f32);
            r.0[idx::ROBOTS_TXT] = if i < 3 { 1.0 } else { 0.0 };
            s.offer(&format!("k{i}"), &v, &r);
        }
        let b = s.finish(BaselineSource::LabelledHumans);
        let t = b.typical_raw().unwrap();
        assert_eq!(t[idx::REQUESTS], 50.0);
        assert!((t[idx::ROBOTS_TXT] - 1.0 / 3.0).abs() < 1e-12);
        assert!(t[idx::PAGES].is_nan());
        assert!(
            b.describe()
                .starts_with("9 sessions of this log labelled human")
        );
    }

    #[test]
    fn too_few_references_fall_back_to_the_feature_centres() {
        let mut s = ReferenceSampler::new(DEFAULT_REFERENCES);
        for i in 0..(MIN_REFERENCES - 1) {
            let (v, r) = row(i as f32);
            s.offer(&format!("k{i}"), &v, &r);
        }
        let b = s.finish(BaselineSource::ScoredHumans);
        assert_eq!(b.source, BaselineSource::FeatureCentres);
        assert!(b.typical_raw().is_none());
        assert_eq!(&b.typical()[..], &baseline_for(&[0f32; NUM_FEATURES])[..]);
    }

    #[test]
    fn averaged_attributions_are_complete_against_the_mean_reference_logit() {
        let mut s = ReferenceSampler::new(DEFAULT_REFERENCES);
        for i in 0..12 {
            let (v, r) = row(5.0 + i as f32);
            s.offer(&format!("k{i}"), &v, &r);
        }
        let b = s.finish(BaselineSource::ScoredHumans);
        let x: Vec<f32> = row(900.0).0.to_vec();
        for spec in [
            ModelSpec::logistic(NUM_FEATURES as u32),
            ModelSpec::mlp(NUM_FEATURES as u32, [8]),
        ] {
            let w = spec.init_weights(3);
            let e = &b.explain(&spec, &w, &x).unwrap()[0];
            let sum: f64 = e.attributions.iter().map(|&a| f64::from(a)).sum();
            let diff = f64::from(e.logit) - f64::from(e.baseline_logit);
            assert!(
                (sum - diff).abs() <= 0.01 * diff.abs() + 1e-4,
                "{spec}: {sum} vs {diff}"
            );
            assert!(e.attributions[idx::REQUESTS] != 0.0);
        }
    }
}
