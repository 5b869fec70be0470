//! Scoring closed sessions in batches and keeping what the report needs:
//! the top N abusive sessions by logit (with their evidence), the busiest
//! good bots, the related-session index and the typical-human sample.
//!
//! Order ([`Order`]): bot logit, highest first (the logit does not saturate
//! where the f32 probability does, so sessions at p = 1.000 keep their
//! order), or the logit plus the rules' vote sum, or the rules first
//! ([`super::local`]); equal ranks by more requests first, then by session
//! key ascending (earlier start first), so the list does not depend on
//! arrival order or batching.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashSet};

use fedsec_detector::evidence::Evidence;
use fedsec_detector::evidence::related::RelatedIndex;
use fedsec_detector::explain::{GoodBot, ReferenceSampler};
use fedsec_detector::features::{self, NUM_FEATURES, RawFeatures};
use fedsec_detector::model::Scorer;
use fedsec_detector::session::Session;
use fedsec_detector::weak::combine::logit_with_rules;
use fedsec_detector::weak::{Labeller, SessionFacts};

use super::local::{RankParts, RulesFirst};

/// Shapes listed per flagged session.
pub(super) const TOP_PATHS: usize = 5;

/// A good bot kept for the report (the busiest first).
#[derive(PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct GoodEntry {
    pub(super) requests: usize,
    pub(super) seq: Reverse<u64>,
    pub(super) key: String,
    pub(super) ip: String,
    pub(super) user_agent: String,
    pub(super) kind_verified: bool,
    pub(super) logit_bits: u32,
}

/// How sessions are ranked.
pub(super) enum Order {
    /// The model's logit.
    Model,
    /// The model's logit plus γ times the weak labeller's vote sum.
    ModelPlusRules(Box<Labeller>, f32),
    /// The rules' vote sum first, ties by the local tie-break.
    RulesFirst(Box<RulesFirst>),
}

/// What the abuse list is ordered by, compared field by field: the logit
/// (alone, `tie` and `anomaly` 0), or for [`Order::RulesFirst`] the rules'
/// vote sum, the tie-break, the raw anomaly score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct RankKey {
    /// The logit, or the rules' vote sum.
    pub(super) primary: f64,
    /// Rules first: the tie-break in [0, 1].
    pub(super) tie: f32,
    /// Rules first: the raw local anomaly score.
    pub(super) anomaly: f32,
}

impl RankKey {
    /// The key of a logit.
    pub(super) fn logit(logit: f32) -> Self {
        Self {
            primary: f64::from(logit),
            tie: 0.0,
            anomaly: 0.0,
        }
    }

    fn cmp(&self, other: &Self) -> Ordering {
        self.primary
            .total_cmp(&other.primary)
            .then(self.tie.total_cmp(&other.tie))
            .then(self.anomaly.total_cmp(&other.anomaly))
    }
}

/// A session kept for the final report.
pub(super) struct Candidate {
    /// What the list is ordered by (the logit unless [`Order::RulesFirst`]).
    pub(super) order: RankKey,
    pub(super) logit: f32,
    /// The rules-first rank's parts.
    pub(super) parts: Option<RankParts>,
    pub(super) key: String,
    pub(super) ip: String,
    pub(super) user_agent: String,
    pub(super) asn: Option<u32>,
    pub(super) requests: usize,
    pub(super) raw: RawFeatures,
    pub(super) values: [f32; NUM_FEATURES],
    pub(super) evidence: Evidence,
}

/// The documented order (see the module docs): `Greater` ranks higher.
pub(super) fn rank_cmp(a: (RankKey, usize, &str), b: (RankKey, usize, &str)) -> Ordering {
    a.0.cmp(&b.0).then(a.1.cmp(&b.1)).then_with(|| b.2.cmp(a.2))
}

impl Candidate {
    fn rank(&self) -> (RankKey, usize, &str) {
        (self.order, self.requests, &self.key)
    }
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Candidate {}
impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> Ordering {
        rank_cmp(self.rank(), other.rank())
    }
}

/// Scores closed sessions in batches and keeps the top N.
pub(super) struct Ranker<'a> {
    scorer: &'a Scorer,
    top: usize,
    pending: Vec<(Session, features::SessionFeatures)>,
    heap: BinaryHeap<Reverse<Candidate>>,
    good: BinaryHeap<Reverse<GoodEntry>>,
    seq: u64,
    pub(super) scored: u64,
    pub(super) flagged: u64,
    pub(super) verified_crawlers: u64,
    pub(super) declared_bots: u64,
    pub(super) error: Option<String>,
    pub(super) related: RelatedIndex,
    pub(super) sampler: ReferenceSampler,
    /// Keys of sessions labelled human: the baseline pool when given.
    humans: Option<HashSet<String>>,
    /// How the abuse list is ordered.
    pub(super) order: Order,
}

impl<'a> Ranker<'a> {
    const BATCH: usize = 2048;

    /// A ranker keeping `top` of each list; `humans` (labelled human keys)
    /// replaces the model's own human sessions as the baseline pool.
    pub(super) fn new(
        scorer: &'a Scorer,
        top: usize,
        references: usize,
        humans: Option<HashSet<String>>,
    ) -> Self {
        Self {
            scorer,
            top,
            pending: Vec::new(),
            heap: BinaryHeap::new(),
            good: BinaryHeap::new(),
            seq: 0,
            scored: 0,
            flagged: 0,
            verified_crawlers: 0,
            declared_bots: 0,
            error: None,
            related: RelatedIndex::default(),
            sampler: ReferenceSampler::new(references),
            humans,
            order: Order::Model,
        }
    }

    pub(super) fn push(&mut self, s: Session) {
        let f = features::extract(&s);
        self.pending.push((s, f));
        if self.pending.len() >= Self::BATCH {
            self.flush();
        }
    }

    pub(super) fn flush(&mut self) {
        if self.pending.is_empty() || self.error.is_some() {
            self.pending.clear();
            return;
        }
        let rows: Vec<f32> = self.pending.iter().flat_map(|(_, f)| f.values).collect();
        let logits = match self.scorer.logits(&rows) {
            Ok(l) => l,
            Err(e) => {
                self.error = Some(e.to_string());
                return;
            }
        };
        let pending = std::mem::take(&mut self.pending);
        for ((s, f), logit) in pending.into_iter().zip(logits) {
            let (logit, parts) = match &self.order {
                Order::Model => (logit, None),
                Order::ModelPlusRules(labeller, gamma) => {
                    let votes = labeller.label(&SessionFacts::of(&s, &f)).score;
                    (logit_with_rules(logit, votes, *gamma), None)
                }
                Order::RulesFirst(r) => (logit, Some(r.rank(&s, &f, logit))),
            };
            let order = parts.map_or(RankKey::logit(logit), |p| p.key);
            self.scored += 1;
            let seq = self.seq;
            self.seq += 1;
            let key = s.key.to_string();
            let flagged = logit >= 0.0;
            self.related.add(&key, &s.ip, &s.user_agent, s.asn, flagged);
            // A bot that names itself is no good bot when the tenant's own
            // rules, ranking first, call it abuse.
            let good = GoodBot::of_session(&f.raw, &s.user_agent, logit).filter(|&g| {
                g == GoodBot::VerifiedCrawler || parts.is_none_or(|p| p.rules_score <= 0.0)
            });
            let labelled = self.humans.as_ref().map(|h| h.contains(&key));
            self.sampler
                .consider(&key, &f.values, &f.raw, logit, labelled);
            if let Some(kind) = good {
                match kind {
                    GoodBot::VerifiedCrawler => self.verified_crawlers += 1,
                    GoodBot::DeclaredBot => self.declared_bots += 1,
                }
                if self.top > 0 {
                    self.good.push(Reverse(GoodEntry {
                        requests: s.requests.len(),
                        seq: Reverse(seq),
                        key,
                        ip: s.ip,
                        user_agent: s.user_agent,
                        kind_verified: kind == GoodBot::VerifiedCrawler,
                        logit_bits: logit.to_bits(),
                    }));
                    if self.good.len() > self.top {
                        self.good.pop();
                    }
                }
                continue;
            }
            if flagged {
                self.flagged += 1;
            }
            if self.top == 0 {
                continue;
            }
            let better = match self.heap.peek() {
                _ if self.heap.len() < self.top => true,
                Some(Reverse(worst)) => {
                    rank_cmp((order, s.requests.len(), &key), worst.rank()) == Ordering::Greater
                }
                None => false,
            };
            if better {
                let evidence = Evidence::of(&s, TOP_PATHS);
                self.heap.push(Reverse(Candidate {
                    order,
                    logit,
                    parts,
                    key,
                    requests: s.requests.len(),
                    asn: s.asn,
                    ip: s.ip,
                    user_agent: s.user_agent,
                    raw: f.raw,
                    values: f.values,
                    evidence,
                }));
                if self.heap.len() > self.top {
                    self.heap.pop();
                }
            }
        }
    }

    /// The kept abusive sessions, best first, and the good bots, busiest first.
    pub(super) fn into_lists(
        self,
    ) -> (
        Vec<Candidate>,
        Vec<GoodEntry>,
        RelatedIndex,
        ReferenceSampler,
    ) {
        let mut best: Vec<Candidate> = self.heap.into_iter().map(|Reverse(c)| c).collect();
        best.sort_by(|a, b| b.cmp(a));
        let mut good: Vec<GoodEntry> = self.good.into_iter().map(|Reverse(g)| g).collect();
        good.sort_by(|a, b| b.cmp(a));
        (best, good, self.related, self.sampler)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ties_are_broken_by_requests_then_key() {
        let k = |l: f32, n: usize, key: &'static str| (RankKey::logit(l), n, key);
        assert_eq!(rank_cmp(k(9.0, 1, "b"), k(8.0, 99, "a")), Ordering::Greater);
        assert_eq!(rank_cmp(k(9.0, 5, "b"), k(9.0, 4, "a")), Ordering::Greater);
        assert_eq!(rank_cmp(k(9.0, 5, "a"), k(9.0, 5, "b")), Ordering::Greater);
        assert_eq!(rank_cmp(k(9.0, 5, "a"), k(9.0, 5, "a")), Ordering::Equal);
        // Rules first: the vote sum decides, then the tie-break, then the raw
        // anomaly score; no precision lost at large vote sums.
        let r = |primary: f64, tie: f32, anomaly: f32| {
            (
                RankKey {
                    primary,
                    tie,
                    anomaly,
                },
                1,
                "k",
            )
        };
        assert_eq!(
            rank_cmp(r(0.5, 0.0, 0.0), r(0.25, 1.0, 9.0)),
            Ordering::Greater
        );
        assert_eq!(
            rank_cmp(r(16.0, 0.51, 0.0), r(16.0, 0.5, 9.0)),
            Ordering::Greater
        );
        assert_eq!(
            rank_cmp(r(1e6, 1.0, 2.5), r(1e6, 1.0, 2.0)),
            Ordering::Greater
        );
        let h = fedsec_detector::explain::baseline::human_logit();
        assert!((h - (0.1f32 / 0.9).ln()).abs() < 1e-6);
    }
}
