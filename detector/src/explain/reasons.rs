//! Reasons in plain words, from attributions.
//!
//! A reason is a feature that pushed the bot logit up (positive
//! attribution), phrased with the session's raw value and, when the
//! baseline is the tenant's own humans, the typical human value beside it.
//!
//! **Presence and absence.** A reason is an *absence* when it says the
//! session did *not* do something typical humans do ("rarely added to the
//! cart", "loaded almost no images", "did not fetch robots.txt", "sent no
//! referer"): it is weak evidence on its own (an API client or a
//! credential stuffer never adds to a cart, and neither do most visitors of
//! an API tenant). Every other reason is a *presence* (a burst, failed
//! logins, a bot user agent, a walk through pages). Rules:
//!
//! - a reason list holds at least one presence reason, or is empty (the
//!   caller says no behaviour stands out);
//! - presence reasons come first, absences after them, each by attribution;
//! - an absence always carries its context: how many requests and pages it
//!   is measured over, and the typical human value when known.
//!
//! **Evidence-aware wording.** With [`Evidence`] of the session, "hit the
//! same URL 110 times" and "kept requesting the same URLs" become
//! "paginated through /c/shoes?page=<int> (110 requests, pages 1 → 110)"
//! when the repeated path is a walk through a page parameter, and name the
//! repeated shape otherwise.

use serde::Serialize;

use super::{Baseline, Explanation, baseline_for};
use crate::evidence::Evidence;
use crate::features::{FEATURES, NUM_FEATURES, RawFeatures, Unit, format_value, idx};

/// Whether a reason is something the session did, or did not do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReasonKind {
    /// The session did something (a burst, failures, a bot user agent, ...).
    Presence,
    /// The session did not do something typical humans do.
    Absence,
}

/// One plain-words reason.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reason {
    /// Feature index.
    pub feature: usize,
    /// Feature name.
    pub name: &'static str,
    /// Contribution to the bot logit.
    pub attribution: f32,
    /// Presence or absence.
    pub kind: ReasonKind,
    /// The sentence, e.g. "failed 100% of its login attempts (typical human here: 0%)".
    pub text: String,
    /// The typical human value of the feature in this tenant, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub typical: Option<String>,
}

/// What reasons are phrased against.
#[derive(Debug, Clone, Copy)]
pub struct ReasonContext<'a> {
    /// Typical model inputs (the baseline's mean): the direction of a reason.
    pub typical: &'a [f32],
    /// Typical raw values, shown beside the session's; `None` for feature centres.
    pub typical_raw: Option<&'a [f64; NUM_FEATURES]>,
    /// The session's evidence, for path-aware wording.
    pub evidence: Option<&'a Evidence>,
}

impl<'a> ReasonContext<'a> {
    /// Reasons against a baseline, with the session's evidence if kept.
    pub fn new(baseline: &'a Baseline, evidence: Option<&'a Evidence>) -> Self {
        Self {
            typical: baseline.typical(),
            typical_raw: baseline.typical_raw(),
            evidence,
        }
    }
}

/// Whether feature `i` on the given side of typical (`above`) describes
/// something the session did *not* do (see the module docs).
pub fn is_absence(i: usize, above: bool) -> bool {
    if above {
        matches!(
            i,
            idx::EMPTY_REFERER_SHARE
                | idx::SESSION_ID_MISSING
                | idx::USER_MISSING
                | idx::OUTCOME_MISSING
                | idx::ASN_MISSING
                | idx::CRAWLER_RANGES_MISSING
        )
    } else {
        // Below typical, only regularity, speed, repetition, uniform depth
        // and tiny responses are things a session *does*.
        !matches!(
            i,
            idx::GAP_CV
                | idx::MEDIAN_GAP
                | idx::DISTINCT_PATH_RATIO
                | idx::DEPTH_STD
                | idx::MEAN_BYTES
        )
    }
}

/// The `top` reasons of a session against the feature-centre baseline
/// ([`baseline_for`]), without evidence; the same rules as [`reasons`].
pub fn top_reasons(expl: &Explanation, x: &[f32], raw: &RawFeatures, top: usize) -> Vec<Reason> {
    let typical = baseline_for(x);
    let ctx = ReasonContext {
        typical: &typical,
        typical_raw: None,
        evidence: None,
    };
    reasons(expl, x, raw, &ctx, top)
}

/// At most `top` reasons (see the module docs): empty when no presence
/// reason pushes the score up.
pub fn reasons(
    expl: &Explanation,
    x: &[f32],
    raw: &RawFeatures,
    ctx: &ReasonContext<'_>,
    top: usize,
) -> Vec<Reason> {
    if expl.attributions.len() != NUM_FEATURES
        || x.len() != NUM_FEATURES
        || ctx.typical.len() != NUM_FEATURES
        || top == 0
    {
        return Vec::new();
    }
    let mut order: Vec<usize> = (0..NUM_FEATURES)
        .filter(|&i| expl.attributions[i] > 0.0)
        .collect();
    order.sort_by(|&a, &b| {
        expl.attributions[b]
            .total_cmp(&expl.attributions[a])
            .then(a.cmp(&b))
    });
    let mut presence: Vec<Reason> = Vec::new();
    let mut absence: Vec<Reason> = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for i in order {
        let r = phrase(i, expl.attributions[i], x, raw, ctx);
        if seen.contains(&r.text) {
            continue;
        }
        seen.push(r.text.clone());
        match r.kind {
            ReasonKind::Presence => presence.push(r),
            ReasonKind::Absence => absence.push(r),
        }
    }
    if presence.is_empty() {
        return Vec::new();
    }
    // The strongest `top` by attribution, but never without a presence
    // reason: if the first `top` are all absences, the best presence takes
    // the last place.
    let mut all: Vec<&Reason> = presence.iter().chain(&absence).collect();
    all.sort_by(|a, b| b.attribution.total_cmp(&a.attribution));
    let mut chosen: Vec<&Reason> = all.into_iter().take(top).collect();
    if !chosen.iter().any(|r| r.kind == ReasonKind::Presence) {
        chosen.pop();
        chosen.push(&presence[0]);
    }
    let mut out: Vec<Reason> = chosen.into_iter().cloned().collect();
    out.sort_by(|a, b| {
        (a.kind == ReasonKind::Absence)
            .cmp(&(b.kind == ReasonKind::Absence))
            .then(b.attribution.total_cmp(&a.attribution))
    });
    out
}

/// "hit POST /api/login 40 times" when one listed shape holds every hit of
/// the most-hit path; else the path's total with its shapes, e.g. "hit
/// /account/login 574 times (GET ×287, POST ×287)" (the feature counts the
/// path whatever the method or query; "…" when listed shapes do not cover
/// every hit).
fn hits_sentence(ev: &Evidence, hits: f64) -> Option<String> {
    let shapes = ev.most_hit_shapes();
    let first = shapes.first()?;
    let n = format_value(Unit::Count, hits);
    if shapes.len() == 1 && first.requests as f64 >= hits {
        return Some(format!("hit {} {} {n} times", first.method, first.shape));
    }
    let same = shapes.iter().all(|p| p.shape == first.shape);
    let mut parts: Vec<String> = shapes
        .iter()
        .map(|p| {
            if same {
                format!("{} ×{}", p.method, p.requests)
            } else {
                format!("{} {} ×{}", p.method, p.shape, p.requests)
            }
        })
        .collect();
    if (shapes.iter().map(|p| p.requests).sum::<u64>() as f64) < hits {
        parts.push("…".into());
    }
    let target = if same {
        first.shape.as_str()
    } else {
        "one path"
    };
    Some(format!("hit {target} {n} times ({})", parts.join(", ")))
}

fn phrase(
    i: usize,
    attribution: f32,
    x: &[f32],
    raw: &RawFeatures,
    ctx: &ReasonContext<'_>,
) -> Reason {
    let def = &FEATURES[i];
    let above = x[i] > ctx.typical[i];
    let kind = if is_absence(i, above) {
        ReasonKind::Absence
    } else {
        ReasonKind::Presence
    };
    let template = if above { def.high } else { def.low };
    let mut text = if def.unit == Unit::Flag {
        template.to_string()
    } else {
        template.replace("{}", &format_value(def.unit, raw.0[i]))
    };
    // Evidence-aware wording replaces the feature's own sentence; the
    // typical value then says what it counts.
    let mut reworded = false;
    if let Some(ev) = ctx.evidence {
        let walk = ev.pagination_of_most_hit();
        match (i, above) {
            (idx::MAX_HITS_ONE_PATH, true) => {
                if let Some(s) = walk.and_then(|p| p.pagination_sentence()) {
                    text = s;
                    reworded = true;
                } else if let Some(s) = hits_sentence(ev, raw.0[i]) {
                    text = s;
                    reworded = true;
                }
            }
            (idx::DISTINCT_PATH_RATIO, false) => {
                if let Some(s) = walk.and_then(|p| p.pagination_sentence()) {
                    text = s;
                    reworded = true;
                }
            }
            _ => {}
        }
    }
    let typical = ctx.typical_raw.and_then(|t| {
        let v = t[i];
        if v.is_nan() {
            None
        } else if def.unit == Unit::Flag {
            Some(format!("{:.0}% of them", v * 100.0))
        } else {
            Some(format_value(def.unit, v))
        }
    });
    if kind == ReasonKind::Absence {
        let (n, p) = (raw.0[idx::REQUESTS], raw.0[idx::PAGES]);
        if !n.is_nan() {
            text.push_str(&format!(
                ", over {} requests and {} pages",
                format_value(Unit::Count, n),
                format_value(Unit::Count, if p.is_nan() { 0.0 } else { p })
            ));
        }
    }
    if let Some(t) = &typical {
        let what = match i {
            _ if !reworded => "",
            idx::MAX_HITS_ONE_PATH => " on their most-requested path",
            idx::DISTINCT_PATH_RATIO => " distinct paths",
            _ => "",
        };
        text.push_str(&format!(" (typical human here: {t}{what})"));
    }
    Reason {
        feature: i,
        name: def.name,
        attribution,
        kind,
        text,
        typical,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expl(attributions: Vec<f32>) -> Explanation {
        Explanation {
            logit: 0.0,
            baseline_logit: 0.0,
            attributions,
            steps: 0,
            completeness_error: 0.0,
        }
    }

    fn session_raw() -> RawFeatures {
        let mut raw = [f64::NAN; NUM_FEATURES];
        raw[idx::REQUESTS] = 96.0;
        raw[idx::PAGES] = 96.0;
        raw[idx::LOGIN_FAILURE_RATIO] = 1.0;
        raw[idx::ASSET_SHARE] = 0.0;
        raw[idx::ADD_TO_CART_RATE] = 0.0;
        raw[idx::UA_BROWSER] = 0.0;
        RawFeatures(raw)
    }

    #[test]
    fn presence_first_and_absences_carry_their_context() {
        let raw = session_raw();
        let x = raw.transform();
        let mut a = vec![0.0f32; NUM_FEATURES];
        a[idx::LOGIN_FAILURE_RATIO] = 2.0;
        a[idx::ASSET_SHARE] = 2.5;
        a[idx::UA_BROWSER] = 1.0;
        a[idx::REQUESTS] = -3.0;
        let r = top_reasons(&expl(a), &x, &raw, 3);
        let texts: Vec<&str> = r.iter().map(|r| r.text.as_str()).collect();
        assert_eq!(
            texts,
            vec![
                "failed 100% of its login attempts",
                "loaded almost no images, scripts or styles (0% of requests), over 96 requests and 96 pages",
                "did not use a current browser, over 96 requests and 96 pages",
            ]
        );
        assert_eq!(r[0].kind, ReasonKind::Presence);
        assert!(r[1..].iter().all(|r| r.kind == ReasonKind::Absence));
    }

    #[test]
    fn absence_only_attributions_give_no_reasons() {
        // A credential stuffer's old top reason on its own: no cart.
        let raw = session_raw();
        let x = raw.transform();
        let mut a = vec![0.0f32; NUM_FEATURES];
        a[idx::ADD_TO_CART_RATE] = 3.0;
        a[idx::ASSET_SHARE] = 1.0;
        a[idx::UA_BROWSER] = 0.5;
        assert!(top_reasons(&expl(a), &x, &raw, 3).is_empty());
    }

    #[test]
    fn a_presence_reason_takes_the_last_place_when_absences_dominate() {
        let raw = session_raw();
        let x = raw.transform();
        let mut a = vec![0.0f32; NUM_FEATURES];
        a[idx::ADD_TO_CART_RATE] = 3.0;
        a[idx::ASSET_SHARE] = 2.0;
        a[idx::UA_BROWSER] = 1.5;
        a[idx::LOGIN_FAILURE_RATIO] = 0.1;
        let r = top_reasons(&expl(a), &x, &raw, 3);
        let names: Vec<&str> = r.iter().map(|r| r.name).collect();
        assert_eq!(
            names,
            vec!["login_failure_ratio", "add_to_cart_rate", "asset_share"]
        );
    }

    #[test]
    fn typical_values_come_from_the_tenant_baseline() {
        let raw = session_raw();
        let x = raw.transform();
        let mut typical = baseline_for(&x);
        typical[idx::ASSET_SHARE] = FEATURES[idx::ASSET_SHARE].transform.apply(0.35);
        let mut typical_raw = [f64::NAN; NUM_FEATURES];
        typical_raw[idx::LOGIN_FAILURE_RATIO] = 0.0;
        typical_raw[idx::ASSET_SHARE] = 0.35;
        let ctx = ReasonContext {
            typical: &typical,
            typical_raw: Some(&typical_raw),
            evidence: None,
        };
        let mut a = vec![0.0f32; NUM_FEATURES];
        a[idx::LOGIN_FAILURE_RATIO] = 2.0;
        a[idx::ASSET_SHARE] = 1.0;
        let r = reasons(&expl(a), &x, &raw, &ctx, 3);
        assert_eq!(
            r[0].text,
            "failed 100% of its login attempts (typical human here: 0%)"
        );
        assert_eq!(
            r[1].text,
            "loaded almost no images, scripts or styles (0% of requests), over 96 requests and 96 pages (typical human here: 35%)"
        );
        assert_eq!(r[1].typical.as_deref(), Some("35%"));
    }
}
