//! Imported outcomes: what a tenant really knows about some sessions, as JSON
//! lines (`labels.outcomes_files` in the client's config):
//!
//! ```text
//! {"session": "sid:1796119200000:abc", "outcome": "captcha_failed"}
//! {"ip": "203.0.113.9", "ts": "2026-12-01T10:00:00Z", "outcome": "waf_block"}
//! {"ip": "2001:db8::7", "ts": 1796119200000, "outcome": "login_failure", "window_s": 600}
//! ```
//!
//! Keyed by **session** (the [`SessionKey`](crate::session::SessionKey) string
//! `fedsec-client sessions` prints) or by **client IP + time**: the outcome
//! applies to every session of that address (IPv4-mapped IPv6 normalised)
//! overlapping `[ts − window, ts + window]` (`window_s`, default
//! [`OutcomeWeights::window_s`]). `ts` is ISO 8601 / RFC 3339 or Unix seconds
//! or milliseconds. Outcome kinds and the vote each casts are in
//! [`OutcomeKind`]. Every line is validated on its own: a malformed line is
//! counted under its reason ([`ImportStats::malformed`]) and skipped, never a
//! panic or an abort; at most [`MAX_OUTCOME_RECORDS`] records are kept.

use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::{Fired, SessionFacts, Vote};
use crate::logs::time::{parse_iso8601, parse_unix_number};

/// Longest accepted line, bytes.
pub const MAX_OUTCOME_LINE: usize = 4096;
/// Most records kept over all imported files.
pub const MAX_OUTCOME_RECORDS: usize = 1_000_000;
/// Longest accepted `window_s`, seconds (one day).
pub const MAX_WINDOW_S: f64 = 86_400.0;

/// What happened to a session, as the tenant's other systems saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeKind {
    /// Solved a CAPTCHA (votes not abuse).
    CaptchaPassed,
    /// Failed or abandoned a CAPTCHA (votes abuse).
    CaptchaFailed,
    /// Passed a JavaScript / proof-of-work challenge (votes not abuse).
    ChallengePassed,
    /// Failed a challenge (votes abuse).
    ChallengeFailed,
    /// Blocked by the WAF (votes abuse).
    WafBlock,
    /// One failed login reported by the identity system (each adds its weight to an abuse vote).
    LoginFailure,
    /// A payment charged back as fraud (votes abuse).
    Chargeback,
}

impl OutcomeKind {
    /// Every kind.
    pub const ALL: [OutcomeKind; 7] = [
        Self::CaptchaPassed,
        Self::CaptchaFailed,
        Self::ChallengePassed,
        Self::ChallengeFailed,
        Self::WafBlock,
        Self::LoginFailure,
        Self::Chargeback,
    ];

    /// The JSON name (also the rule name in coverage statistics, prefixed `outcome:`).
    pub fn name(self) -> &'static str {
        match self {
            Self::CaptchaPassed => "captcha_passed",
            Self::CaptchaFailed => "captcha_failed",
            Self::ChallengePassed => "challenge_passed",
            Self::ChallengeFailed => "challenge_failed",
            Self::WafBlock => "waf_block",
            Self::LoginFailure => "login_failure",
            Self::Chargeback => "chargeback",
        }
    }

    fn rule(self) -> &'static str {
        match self {
            Self::CaptchaPassed => "outcome:captcha_passed",
            Self::CaptchaFailed => "outcome:captcha_failed",
            Self::ChallengePassed => "outcome:challenge_passed",
            Self::ChallengeFailed => "outcome:challenge_failed",
            Self::WafBlock => "outcome:waf_block",
            Self::LoginFailure => "outcome:login_failure",
            Self::Chargeback => "outcome:chargeback",
        }
    }

    /// The vote this outcome casts.
    pub fn vote(self) -> Vote {
        match self {
            Self::CaptchaPassed | Self::ChallengePassed => Vote::NotAbuse,
            _ => Vote::Abuse,
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == s)
    }
}

/// Weights of the imported outcomes (`[labels.outcomes]`) and the IP match window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutcomeWeights {
    /// `captcha_passed`.
    pub captcha_passed: f64,
    /// `captcha_failed`.
    pub captcha_failed: f64,
    /// `challenge_passed`.
    pub challenge_passed: f64,
    /// `challenge_failed`.
    pub challenge_failed: f64,
    /// `waf_block`.
    pub waf_block: f64,
    /// `login_failure`, per failure (summed, capped at 4× this).
    pub login_failure: f64,
    /// `chargeback`.
    pub chargeback: f64,
    /// Default half-width of an IP-keyed outcome's time window, seconds.
    pub window_s: f64,
}

impl Default for OutcomeWeights {
    fn default() -> Self {
        Self {
            captcha_passed: 2.0,
            captcha_failed: 2.0,
            challenge_passed: 2.0,
            challenge_failed: 2.0,
            waf_block: 2.0,
            login_failure: 0.5,
            chargeback: 3.0,
            window_s: 300.0,
        }
    }
}

impl OutcomeWeights {
    /// Weight of one kind.
    pub fn weight(&self, kind: OutcomeKind) -> f64 {
        match kind {
            OutcomeKind::CaptchaPassed => self.captcha_passed,
            OutcomeKind::CaptchaFailed => self.captcha_failed,
            OutcomeKind::ChallengePassed => self.challenge_passed,
            OutcomeKind::ChallengeFailed => self.challenge_failed,
            OutcomeKind::WafBlock => self.waf_block,
            OutcomeKind::LoginFailure => self.login_failure,
            OutcomeKind::Chargeback => self.chargeback,
        }
    }

    /// Checks every value; the error names the key under `labels.outcomes`.
    pub fn validate(&self) -> Result<(), super::rules::RuleError> {
        for k in OutcomeKind::ALL {
            let w = self.weight(k);
            if !(w.is_finite() && (0.0..=100.0).contains(&w)) {
                return Err(super::rules::RuleError {
                    key: format!("outcomes.{}", k.name()),
                    message: format!("must be finite and in [0, 100] (got {w})"),
                });
            }
        }
        if !(self.window_s.is_finite() && (0.0..=MAX_WINDOW_S).contains(&self.window_s)) {
            return Err(super::rules::RuleError {
                key: "outcomes.window_s".into(),
                message: format!("must be in [0, {MAX_WINDOW_S}] (got {})", self.window_s),
            });
        }
        Ok(())
    }
}

/// Counters of an import.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImportStats {
    /// Non-blank lines read.
    pub lines: u64,
    /// Records kept.
    pub accepted: u64,
    /// Of them keyed by session.
    pub by_session: u64,
    /// Of them keyed by IP and time.
    pub by_ip: u64,
    /// Lines skipped, per reason: `too_long`, `not_utf8`, `not_json`,
    /// `not_object`, `unknown_field`, `no_key` (neither `session` nor `ip`),
    /// `both_keys`, `bad_session`, `bad_ip`, `bad_time`, `bad_window`,
    /// `unknown_outcome`, `over_limit`.
    pub malformed: BTreeMap<&'static str, u64>,
}

impl ImportStats {
    /// Lines skipped in all.
    pub fn malformed_total(&self) -> u64 {
        self.malformed.values().sum()
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct IpEvent {
    ts_ms: i64,
    window_ms: i64,
    kind: OutcomeKind,
}

/// Imported outcomes, indexed by session key and by client address.
#[derive(Debug, Clone, Default)]
pub struct OutcomeIndex {
    weights: OutcomeWeights,
    by_session: HashMap<String, Vec<OutcomeKind>>,
    by_ip: HashMap<IpAddr, Vec<IpEvent>>,
    stats: ImportStats,
}

enum Parsed {
    Session(String, OutcomeKind),
    Ip(IpAddr, IpEvent),
}

impl OutcomeIndex {
    /// An empty index with these weights (validated).
    pub fn new(weights: OutcomeWeights) -> Result<Self, super::rules::RuleError> {
        weights.validate()?;
        Ok(Self {
            weights,
            ..Self::default()
        })
    }

    /// Counters over every import so far.
    pub fn stats(&self) -> &ImportStats {
        &self.stats
    }

    /// Records kept.
    pub fn len(&self) -> usize {
        self.stats.accepted as usize
    }

    /// No records.
    pub fn is_empty(&self) -> bool {
        self.stats.accepted == 0
    }

    /// Reads JSON lines; malformed lines are counted and skipped. Only an I/O
    /// error of the reader is an error (what was read before it is kept).
    pub fn import(&mut self, mut r: impl BufRead) -> std::io::Result<()> {
        let mut buf = Vec::new();
        loop {
            buf.clear();
            // Bounded read: never hold more than one over-long line's prefix.
            let n = read_line_bounded(&mut r, &mut buf, MAX_OUTCOME_LINE + 1)?;
            if n == 0 {
                return Ok(());
            }
            let too_long = buf.len() > MAX_OUTCOME_LINE;
            let line = trim_newline(&buf);
            if line.iter().all(u8::is_ascii_whitespace) && !too_long {
                continue;
            }
            self.stats.lines += 1;
            let parsed = if too_long {
                Err("too_long")
            } else {
                match std::str::from_utf8(line) {
                    Ok(s) => self.parse_line(s),
                    Err(_) => Err("not_utf8"),
                }
            };
            match parsed {
                Err(reason) => *self.stats.malformed.entry(reason).or_default() += 1,
                Ok(_) if self.stats.accepted as usize >= MAX_OUTCOME_RECORDS => {
                    *self.stats.malformed.entry("over_limit").or_default() += 1;
                }
                Ok(Parsed::Session(key, kind)) => {
                    self.by_session.entry(key).or_default().push(kind);
                    self.stats.accepted += 1;
                    self.stats.by_session += 1;
                }
                Ok(Parsed::Ip(ip, ev)) => {
                    self.by_ip.entry(ip).or_default().push(ev);
                    self.stats.accepted += 1;
                    self.stats.by_ip += 1;
                }
            }
        }
    }

    fn parse_line(&self, line: &str) -> Result<Parsed, &'static str> {
        let v: serde_json::Value = serde_json::from_str(line).map_err(|_| "not_json")?;
        let obj = v.as_object().ok_or("not_object")?;
        if obj
            .keys()
            .any(|k| !matches!(k.as_str(), "session" | "ip" | "ts" | "outcome" | "window_s"))
        {
            return Err("unknown_field");
        }
        let kind = obj
            .get("outcome")
            .and_then(|o| o.as_str())
            .and_then(OutcomeKind::parse)
            .ok_or("unknown_outcome")?;
        match (obj.get("session"), obj.get("ip")) {
            (Some(_), Some(_)) => Err("both_keys"),
            (None, None) => Err("no_key"),
            (Some(s), None) => {
                let s = s.as_str().ok_or("bad_session")?;
                if s.is_empty() || s.len() > 1024 {
                    return Err("bad_session");
                }
                Ok(Parsed::Session(s.to_string(), kind))
            }
            (None, Some(ip)) => {
                let ip: IpAddr = ip
                    .as_str()
                    .and_then(|s| s.trim_matches(['[', ']']).parse().ok())
                    .ok_or("bad_ip")?;
                let ts_ms = match obj.get("ts") {
                    Some(serde_json::Value::String(s)) => parse_iso8601(s).ok().map(|t| t.0),
                    Some(serde_json::Value::Number(n)) => n
                        .as_f64()
                        .and_then(|f| parse_unix_number(f).ok())
                        .map(|t| t.0),
                    _ => None,
                }
                .ok_or("bad_time")?;
                let window_s = match obj.get("window_s") {
                    None => self.weights.window_s,
                    Some(w) => w
                        .as_f64()
                        .filter(|w| w.is_finite() && (0.0..=MAX_WINDOW_S).contains(w))
                        .ok_or("bad_window")?,
                };
                Ok(Parsed::Ip(
                    ip.to_canonical(),
                    IpEvent {
                        ts_ms,
                        window_ms: (window_s * 1000.0).round() as i64,
                        kind,
                    },
                ))
            }
        }
    }

    /// The votes the imported outcomes cast on one session: one per kind
    /// present (login failures summed, capped at four).
    pub fn votes(&self, facts: &SessionFacts) -> Vec<Fired> {
        let mut counts: BTreeMap<OutcomeKind, u32> = BTreeMap::new();
        if let Some(kinds) = self.by_session.get(&facts.key) {
            for &k in kinds {
                *counts.entry(k).or_default() += 1;
            }
        }
        if let Some(events) = facts.addr.and_then(|a| self.by_ip.get(&a)) {
            for e in events {
                if e.ts_ms.saturating_add(e.window_ms) >= facts.start_ms
                    && e.ts_ms.saturating_sub(e.window_ms) <= facts.end_ms
                {
                    *counts.entry(e.kind).or_default() += 1;
                }
            }
        }
        counts
            .into_iter()
            .filter_map(|(kind, n)| {
                let w = self.weights.weight(kind);
                let weight = if kind == OutcomeKind::LoginFailure {
                    w * f64::from(n.min(4))
                } else {
                    w
                };
                (weight > 0.0).then_some(Fired {
                    rule: kind.rule(),
                    vote: kind.vote(),
                    weight,
                })
            })
            .collect()
    }
}

fn trim_newline(b: &[u8]) -> &[u8] {
    let b = b.strip_suffix(b"\n").unwrap_or(b);
    b.strip_suffix(b"\r").unwrap_or(b)
}

/// Reads up to and including the next `\n`, keeping at most `cap` bytes of
/// it (the rest of an over-long line is consumed and dropped). Returns the
/// bytes consumed.
fn read_line_bounded(
    r: &mut impl BufRead,
    out: &mut Vec<u8>,
    cap: usize,
) -> std::io::Result<usize> {
    let mut consumed = 0;
    loop {
        let available = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(consumed);
        }
        let (chunk, done) = match memchr::memchr(b'\n', available) {
            Some(i) => (&available[..=i], true),
            None => (available, false),
        };
        let room = cap.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        let n = chunk.len();
        r.consume(n);
        consumed += n;
        if done {
            return Ok(consumed);
        }
    }
}

#[cfg(test)]
mod tests;
