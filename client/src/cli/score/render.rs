//! How `score` prints: text for a person, JSON lines for tools.
//!
//! Everything from the log that reaches the terminal is escaped
//! (`str::escape_debug`): a hostile user agent or session id cannot move
//! the cursor or retitle the window. Paths are shown only as shapes
//! ([`fedsec_detector::shape`]).

use std::fmt::Write as _;

use fedsec_detector::evidence::Evidence;
use fedsec_detector::evidence::related::Related;
use fedsec_detector::explain::{Baseline, BaselineSource, GoodBot, Reason};
use serde::Serialize;

use super::rank::Candidate;

/// The bot probability of a logit, in f64 (no saturation below |logit| ≈ 36).
pub(super) fn probability(logit: f32) -> f64 {
    1.0 / (1.0 + (-f64::from(logit)).exp())
}

/// `0.731`, or `1-4.5e-6` / `2.1e-5` near the ends, so no two different
/// logits print as the same `1.000`.
pub(super) fn p_text(logit: f32) -> String {
    let l = f64::from(logit);
    if l > 6.9 {
        format!("1-{:.1e}", 1.0 / (1.0 + l.exp()))
    } else if l < -6.9 {
        format!("{:.1e}", 1.0 / (1.0 + (-l).exp()))
    } else {
        format!("{:.3}", probability(logit))
    }
}

/// Escapes control characters and quotes of log-supplied text.
pub(super) fn safe(s: &str) -> String {
    s.escape_debug().to_string()
}

/// What the explanations compared with.
#[derive(Serialize)]
pub(super) struct BaselineReport {
    source: BaselineSource,
    references: usize,
    eligible: u64,
}

impl BaselineReport {
    pub(super) fn of(b: &Baseline) -> Self {
        Self {
            source: b.source,
            references: if b.source == BaselineSource::FeatureCentres {
                0
            } else {
                b.len()
            },
            eligible: b.eligible,
        }
    }
}

/// One abusive session, as a JSON line.
#[derive(Serialize)]
pub(super) struct Report<'a> {
    pub(super) list: &'static str,
    pub(super) rank: usize,
    pub(super) logit: f32,
    pub(super) probability: f64,
    pub(super) session: &'a str,
    pub(super) ip: &'a str,
    pub(super) user_agent: &'a str,
    pub(super) asn: Option<u32>,
    pub(super) requests: usize,
    /// `--rank rules-first`: the rules' vote sum (the list's first key).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) rules_score: Option<f64>,
    /// `--rank rules-first`: the tie-break in [0, 1] (the second key).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) tie_break: Option<f32>,
    /// `--rank rules-first`: the anomaly percentile among this log's sessions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) anomaly_percentile: Option<f32>,
    pub(super) reasons: &'a [Reason],
    pub(super) evidence: &'a Evidence,
    pub(super) related: &'a Related,
    pub(super) baseline: &'a BaselineReport,
}

/// One good bot, as a JSON line.
#[derive(Serialize)]
pub(super) struct GoodReport<'a> {
    pub(super) list: &'static str,
    pub(super) good_bot: GoodBot,
    pub(super) logit: f32,
    pub(super) probability: f64,
    pub(super) session: &'a str,
    pub(super) ip: &'a str,
    pub(super) user_agent: &'a str,
    pub(super) requests: usize,
}

fn duration(s: f64) -> String {
    if s < 90.0 {
        format!("{s:.0} s")
    } else if s < 5400.0 {
        format!("{:.1} min", s / 60.0)
    } else {
        format!("{:.1} h", s / 3600.0)
    }
}

/// The text block of one abusive session.
pub(super) fn abuse_text(
    rank: usize,
    c: &Candidate,
    reasons: &[Reason],
    related: &Related,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "#{:<3} logit {:>6.2}  p={}  {}  ({} requests, {}, \"{}\")",
        rank,
        c.logit,
        p_text(c.logit),
        safe(&c.key),
        c.requests,
        safe(&c.ip),
        safe(&c.user_agent)
    );
    if let Some(p) = &c.parts {
        let _ = writeln!(
            out,
            "      ranked by: rules' vote sum {:+.1}, then tie-break {:.3} (anomaly percentile {:.0} among this log's sessions)",
            p.rules_score,
            p.tie_break,
            100.0 * p.anomaly_percentile
        );
    }
    if reasons.is_empty() {
        let _ = writeln!(
            out,
            "      (nothing it did stands out against this tenant's typical humans; the score rests on what it did not do)"
        );
    }
    for (i, r) in reasons.iter().enumerate() {
        let _ = writeln!(out, "      {}. {}", i + 1, r.text);
    }
    let e = &c.evidence;
    let _ = writeln!(
        out,
        "      evidence: {} requests, {} → {} ({}); statuses {}",
        e.requests,
        e.start,
        e.end,
        duration(e.duration_s),
        e.statuses_line()
    );
    for p in &e.top_paths {
        let _ = writeln!(out, "        {}", p.describe());
    }
    if e.other_requests > 0 && e.shapes_kept {
        let _ = writeln!(
            out,
            "        … {} more requests to other paths",
            e.other_requests
        );
    }
    let _ = writeln!(
        out,
        "      related: same IP: {}",
        safe(&related.same_ip.describe())
    );
    let _ = writeln!(
        out,
        "               same user agent: {}",
        safe(&related.same_user_agent.describe())
    );
    if let Some((asn, g)) = &related.same_asn {
        let _ = writeln!(out, "               same AS{asn}: {}", safe(&g.describe()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probabilities_do_not_saturate_in_print() {
        assert_eq!(p_text(0.0), "0.500");
        assert_ne!(p_text(12.0), p_text(14.0));
        assert!(p_text(12.0).starts_with("1-6.1e-6"), "{}", p_text(12.0));
        assert!(p_text(-12.0).starts_with("6.1e-6"), "{}", p_text(-12.0));
        assert!(probability(20.0) < 1.0);
        assert_eq!(safe("a\u{1b}[2Jb\""), "a\\u{1b}[2Jb\\\"");
    }
}
