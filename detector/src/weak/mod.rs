//! Weak ("silver") labels for a tenant with logs and no ground truth.
//!
//! Hand-written [`rules`] look at one session at a time (its user agent, the
//! paths it hit, its failures and timing) and each votes
//! [`Vote::Abuse`], [`Vote::NotAbuse`] or [`Vote::Abstain`] with a weight;
//! [`outcomes`] imports what a tenant really knows about some sessions
//! (CAPTCHA/challenge results, WAF blocks, login failures, chargebacks) from
//! JSON lines keyed by session or by client IP and time, and adds weighted
//! votes the same way. [`Labeller::label`] sums the votes: a margin of at
//! least [`RuleConfig::margin`] either way gives a silver label with a
//! confidence in (0, 1]; anything closer **abstains** (no label).
//!
//! [`silver`] turns labels into training rows: ground truth, where a tenant
//! has it, always takes precedence; silver labels weigh their confidence;
//! abstained sessions are left out or, in the positive-unlabelled reading,
//! kept as down-weighted negatives ([`SilverPolicy`]). [`anomaly`] is the
//! day-one local anomaly score (fitted on the tenant's own rows, never sent).
//! [`self_train`] pseudo-labels abstained sessions with the global model's
//! confident predictions each round (rules still seed, ground truth still
//! wins); [`combine`] adds the rules' own score to the model's at scoring
//! time.
//!
//! Everything here is pure: no I/O beyond reading a caller's `BufRead`, and
//! nothing about labels leaves the tenant (the update the client sends is a
//! clipped model delta, exactly as with ground-truth labels).

pub mod anomaly;
pub mod combine;
pub mod outcomes;
pub mod rules;
pub mod self_train;
pub mod silver;

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Serialize;

use crate::features::{RawFeatures, SessionFeatures};
use crate::session::Session;

pub use outcomes::{OutcomeIndex, OutcomeKind, OutcomeWeights};
pub use rules::RuleConfig;
pub use self_train::SelfTraining;
pub use silver::{SilverPolicy, SilverRow};

/// Most distinct path hashes kept per session for the honeypot rule.
pub const MAX_FACT_PATHS: usize = 256;

/// A rule's or an outcome's opinion about one session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Vote {
    /// The session looks abusive.
    Abuse,
    /// The session looks like a human or a good bot.
    NotAbuse,
    /// No opinion.
    Abstain,
}

/// What the labeller needs to know about one session (no request bodies,
/// paths only as hashes).
#[derive(Debug, Clone, PartialEq)]
pub struct SessionFacts {
    /// The session's key string ([`crate::session::SessionKey`]).
    pub key: String,
    /// Client key of the first request (address or host name).
    pub ip: String,
    /// Client address, canonical (IPv4-mapped IPv6 as IPv4); `None` for a host name.
    pub addr: Option<IpAddr>,
    /// User agent of the first request.
    pub user_agent: String,
    /// First request, Unix ms.
    pub start_ms: i64,
    /// Last request, Unix ms.
    pub end_ms: i64,
    /// Distinct FNV-1a hashes of the paths requested (at most [`MAX_FACT_PATHS`]).
    pub path_hashes: Vec<u64>,
    /// Raw features.
    pub raw: RawFeatures,
}

impl SessionFacts {
    /// Facts of a closed session and its features.
    pub fn of(session: &Session, features: &SessionFeatures) -> Self {
        let mut path_hashes: Vec<u64> = Vec::new();
        for r in &session.requests {
            if path_hashes.len() >= MAX_FACT_PATHS {
                break;
            }
            if !path_hashes.contains(&r.path.hash) {
                path_hashes.push(r.path.hash);
            }
        }
        Self {
            key: session.key.to_string(),
            ip: session.ip.clone(),
            addr: session.addr.map(|a| a.to_canonical()),
            user_agent: session.user_agent.clone(),
            start_ms: session.key.start_ms,
            end_ms: session.end_ms(),
            path_hashes,
            raw: features.raw,
        }
    }
}

/// One rule's or outcome's vote, with its weight.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Fired {
    /// Rule (or outcome kind) name.
    pub rule: &'static str,
    /// Its vote (never [`Vote::Abstain`]).
    pub vote: Vote,
    /// Its weight (> 0).
    pub weight: f64,
}

/// The labeller's verdict on one session.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WeakLabel {
    /// Abuse, not abuse, or abstain.
    pub vote: Vote,
    /// Σ abuse weights − Σ not-abuse weights.
    pub score: f64,
    /// Confidence of a label in (0, 1]: `min(1, |score| / (2·margin))`; 0 when abstaining.
    pub confidence: f64,
    /// Every vote that was cast (rules first, then imported outcomes).
    pub fired: Vec<Fired>,
}

/// Rules plus imported outcomes.
#[derive(Debug, Clone, Default)]
pub struct Labeller {
    rules: RuleConfig,
    outcomes: OutcomeIndex,
}

impl Labeller {
    /// A labeller with validated rules and (possibly empty) imported outcomes.
    pub fn new(rules: RuleConfig, outcomes: OutcomeIndex) -> Result<Self, rules::RuleError> {
        rules.validate()?;
        Ok(Self { rules, outcomes })
    }

    /// The rules.
    pub fn rules(&self) -> &RuleConfig {
        &self.rules
    }

    /// The imported outcomes.
    pub fn outcomes(&self) -> &OutcomeIndex {
        &self.outcomes
    }

    /// Labels one session.
    pub fn label(&self, facts: &SessionFacts) -> WeakLabel {
        let mut fired = self.rules.evaluate(facts);
        fired.extend(self.outcomes.votes(facts));
        let score: f64 = fired
            .iter()
            .map(|f| match f.vote {
                Vote::Abuse => f.weight,
                Vote::NotAbuse => -f.weight,
                Vote::Abstain => 0.0,
            })
            .sum();
        let margin = self.rules.margin;
        let vote = if score >= margin {
            Vote::Abuse
        } else if score <= -margin {
            Vote::NotAbuse
        } else {
            Vote::Abstain
        };
        let confidence = if vote == Vote::Abstain {
            0.0
        } else {
            (score.abs() / (2.0 * margin)).min(1.0)
        };
        WeakLabel {
            vote,
            score,
            confidence,
            fired,
        }
    }
}

/// Per-rule and overall coverage of a labelling run.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Coverage {
    /// Sessions labelled.
    pub sessions: u64,
    /// Silver label "abuse".
    pub abuse: u64,
    /// Silver label "not abuse".
    pub not_abuse: u64,
    /// No label (no votes, or votes within the margin).
    pub abstained: u64,
    /// Of the abstentions, sessions where votes were cast but cancelled out.
    pub conflicts: u64,
    /// Per rule (or outcome kind): sessions where it voted abuse / not abuse.
    pub rules: BTreeMap<&'static str, RuleCoverage>,
}

/// One rule's coverage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RuleCoverage {
    /// Sessions where it voted abuse.
    pub abuse: u64,
    /// Sessions where it voted not abuse.
    pub not_abuse: u64,
}

impl Coverage {
    /// Counts one verdict.
    pub fn add(&mut self, label: &WeakLabel) {
        self.sessions += 1;
        match label.vote {
            Vote::Abuse => self.abuse += 1,
            Vote::NotAbuse => self.not_abuse += 1,
            Vote::Abstain => {
                self.abstained += 1;
                if !label.fired.is_empty() {
                    self.conflicts += 1;
                }
            }
        }
        for f in &label.fired {
            let c = self.rules.entry(f.rule).or_default();
            match f.vote {
                Vote::Abuse => c.abuse += 1,
                Vote::NotAbuse => c.not_abuse += 1,
                Vote::Abstain => {}
            }
        }
    }

    /// Share of sessions that got a label.
    pub fn labelled_share(&self) -> f64 {
        if self.sessions == 0 {
            0.0
        } else {
            (self.abuse + self.not_abuse) as f64 / self.sessions as f64
        }
    }
}
