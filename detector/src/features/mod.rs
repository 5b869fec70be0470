//! The per-session feature vector: [`NUM_FEATURES`] values in the stable order
//! of [`FEATURE_NAMES`], each a raw behavioural measurement turned into a
//! model input by a fixed transform.
//!
//! Every transform is `z = (clip(g(x), lo, hi) − center) / scale` with
//! `g = ln(1 + x)` or the identity and constants written in [`FEATURES`].
//! They are chosen from the literature and practice (a typical human visit
//! maps near 0), never fitted on a tenant's data: statistics fitted locally
//! would leak information outside the differential-privacy guarantee. A raw
//! value that is undefined for a session (gaps of a one-page visit, ...) maps
//! to exactly 0, the center.
//!
//! Sources: Tan & Kumar 2002 ("Discovery of web robot sessions based on their
//! navigational patterns"), Doran & Gokhale 2011 ("Web robot detection
//! techniques: overview and limitations"), Stevanovic, An & Vlajic 2012
//! ("Feature evaluation for web crawler detection with data mining
//! techniques"), the OWASP Automated Threats to Web Applications handbook
//! (OAT-001 carding, OAT-005 scalping, OAT-007 credential cracking, OAT-008
//! credential stuffing) and common rate-limit practice.

use crate::logs::{Action, Method, time::local_hour};
use crate::network::CrawlerCheck;
use crate::session::{Request, Session};
use crate::ua::{UaClass, UaClassifier};

/// Number of features.
pub const NUM_FEATURES: usize = 51;

mod defs;

pub use defs::*;

/// Raw feature values of a session, in [`FEATURE_NAMES`] order and in the
/// units of [`FeatureDef::unit`]. Undefined values are `NaN` and transform to 0.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RawFeatures(pub [f64; NUM_FEATURES]);

impl RawFeatures {
    /// Applies every feature's fixed transform.
    pub fn transform(&self) -> [f32; NUM_FEATURES] {
        let mut out = [0f32; NUM_FEATURES];
        for (o, (x, def)) in out.iter_mut().zip(self.0.iter().zip(FEATURES.iter())) {
            *o = def.transform.apply(*x);
        }
        out
    }

    /// Whether feature `i` is defined for this session.
    pub fn is_defined(&self, i: usize) -> bool {
        !self.0[i].is_nan()
    }
}

/// Raw and transformed features of one session.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SessionFeatures {
    /// Raw measurements.
    pub raw: RawFeatures,
    /// Model inputs.
    pub values: [f32; NUM_FEATURES],
}

/// Features of a session (raw and transformed), with the process-wide
/// user-agent classifier.
pub fn extract(session: &Session) -> SessionFeatures {
    extract_with(session, UaClassifier::global())
}

/// Model inputs of a session.
pub fn feature_vector(session: &Session) -> [f32; NUM_FEATURES] {
    extract(session).values
}

fn share(count: usize, of: usize) -> f64 {
    if of == 0 {
        0.0
    } else {
        count as f64 / of as f64
    }
}

fn mean_std(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
    (mean, var.sqrt())
}

fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

fn attempt_failed(r: &Request) -> bool {
    match r.outcome {
        Some(o) => !o.success,
        None => r.status >= 400,
    }
}

/// Features of a session with a given classifier.
pub fn extract_with(session: &Session, ua: &UaClassifier) -> SessionFeatures {
    let mut f = [f64::NAN; NUM_FEATURES];
    let mut reqs: Vec<&Request> = session.requests.iter().collect();
    reqs.sort_by_key(|r| r.ts_ms);
    let n = reqs.len();
    if n == 0 {
        let raw = RawFeatures(f);
        return SessionFeatures {
            values: raw.transform(),
            raw,
        };
    }
    let first = reqs[0].ts_ms;
    let last = reqs[n - 1].ts_ms;
    let duration_s = (last - first) as f64 / 1000.0;
    let pages: Vec<&Request> = reqs.iter().copied().filter(|r| !r.path.asset).collect();
    let n_pages = pages.len();
    let n_assets = n - n_pages;

    f[idx::REQUESTS] = n as f64;
    f[idx::PAGES] = n_pages as f64;
    f[idx::DURATION] = duration_s;
    f[idx::RATE_PER_MIN] = n as f64 / duration_s.max(60.0) * 60.0;

    // Most requests in any window [t, t + 10 s).
    let mut best = 0usize;
    let mut lo = 0usize;
    for hi in 0..n {
        while reqs[hi].ts_ms - reqs[lo].ts_ms >= 10_000 {
            lo += 1;
        }
        best = best.max(hi - lo + 1);
    }
    f[idx::MAX_REQ_10S] = best as f64;

    let mut gaps: Vec<f64> = pages
        .windows(2)
        .map(|w| (w[1].ts_ms - w[0].ts_ms) as f64 / 1000.0)
        .collect();
    if gaps.len() >= 2 {
        let (mean, std) = mean_std(&gaps);
        f[idx::GAP_CV] = if mean > 0.0 { std / mean } else { 0.0 };
    }
    if !gaps.is_empty() {
        f[idx::MEDIAN_GAP] = median(&mut gaps);
    }

    let night = reqs
        .iter()
        .filter(|r| local_hour(r.ts_ms, r.utc_offset_min) < 6)
        .count();
    f[idx::NIGHT_SHARE] = share(night, n);
    f[idx::ASSET_SHARE] = share(n_assets, n);

    // Asset co-load: pages followed, before the next page, by an asset within 5 s.
    if n_pages > 0 {
        let mut coloaded = 0usize;
        let mut current: Option<(i64, bool)> = None;
        for r in &reqs {
            if r.path.asset {
                if let Some((t, hit)) = current.as_mut()
                    && !*hit
                    && r.ts_ms - *t <= 5_000
                {
                    *hit = true;
                    coloaded += 1;
                }
            } else {
                current = Some((r.ts_ms, false));
            }
        }
        f[idx::ASSET_COLOAD] = share(coloaded, n_pages);
    }

    // Path repetition: sort hashes once.
    let mut hashes: Vec<u64> = reqs.iter().map(|r| r.path.hash).collect();
    hashes.sort_unstable();
    let mut distinct = 0usize;
    let mut max_run = 0usize;
    let mut run = 0usize;
    for (i, h) in hashes.iter().enumerate() {
        if i == 0 || hashes[i - 1] != *h {
            distinct += 1;
            run = 1;
        } else {
            run += 1;
        }
        max_run = max_run.max(run);
    }
    f[idx::DISTINCT_PATH_RATIO] = share(distinct, n);
    f[idx::MAX_HITS_ONE_PATH] = max_run as f64;

    if n_pages >= 2 {
        let depths: Vec<f64> = pages.iter().map(|r| f64::from(r.path.depth)).collect();
        f[idx::DEPTH_STD] = mean_std(&depths).1;
        let same = pages
            .windows(2)
            .filter(|w| w[0].path.dir_hash == w[1].path.dir_hash)
            .count();
        f[idx::SAME_DIR_SHARE] = share(same, n_pages - 1);
    }

    // Referers: empty, and on-site = the referer's path was requested at an
    // earlier position of this session.
    let mut first_pos: Vec<(u64, usize)> = reqs
        .iter()
        .enumerate()
        .map(|(i, r)| (r.path.hash, i))
        .collect();
    first_pos.sort_unstable();
    first_pos.dedup_by_key(|p| p.0);
    let mut empty_ref = 0usize;
    let mut onsite = 0usize;
    for (i, r) in reqs.iter().enumerate() {
        match r.referer_path {
            None => empty_ref += 1,
            Some(h) => {
                if let Ok(k) = first_pos.binary_search_by_key(&h, |p| p.0)
                    && first_pos[k].1 < i
                {
                    onsite += 1;
                }
            }
        }
    }
    f[idx::EMPTY_REFERER_SHARE] = share(empty_ref, n);
    f[idx::ONSITE_REFERER_SHARE] = share(onsite, n);

    f[idx::ROBOTS_TXT] = if reqs.iter().any(|r| r.path.robots) {
        1.0
    } else {
        0.0
    };
    let count = |p: &dyn Fn(&Request) -> bool| reqs.iter().filter(|r| p(r)).count();
    f[idx::HEAD_SHARE] = share(count(&|r| r.method == Method::Head), n);
    f[idx::POST_SHARE] = share(count(&|r| r.method == Method::Post), n);
    f[idx::STATUS_4XX_SHARE] = share(count(&|r| (400..500).contains(&r.status)), n);
    f[idx::STATUS_404_SHARE] = share(count(&|r| r.status == 404), n);
    f[idx::STATUS_403_SHARE] = share(count(&|r| r.status == 403), n);
    f[idx::STATUS_304_SHARE] = share(count(&|r| r.status == 304), n);
    f[idx::MEAN_BYTES] = reqs.iter().map(|r| r.bytes as f64).sum::<f64>() / n as f64;

    let is_action =
        |r: &Request, action: Action, by_path: bool| match r.outcome.and_then(|o| o.action) {
            Some(a) => a == action,
            None => by_path,
        };
    let logins: Vec<&&Request> = reqs
        .iter()
        .filter(|r| is_action(r, Action::Login, r.path.login))
        .collect();
    let payments: Vec<&&Request> = reqs
        .iter()
        .filter(|r| is_action(r, Action::Payment, r.path.payment))
        .collect();
    f[idx::LOGIN_ATTEMPTS] = logins.len() as f64;
    f[idx::LOGIN_FAILURE_RATIO] = share(
        logins.iter().filter(|r| attempt_failed(r)).count(),
        logins.len(),
    );
    f[idx::PAYMENT_ATTEMPTS] = payments.len() as f64;
    f[idx::PAYMENT_FAILURE_RATIO] = share(
        payments.iter().filter(|r| attempt_failed(r)).count(),
        payments.len(),
    );
    f[idx::ADD_TO_CART_RATE] = share(count(&|r| r.path.add_to_cart), n_pages.max(1));

    let class = ua.classify(&session.user_agent, first);
    let flag = |b: bool| if b { 1.0 } else { 0.0 };
    f[idx::UA_KNOWN_BOT] = flag(class == UaClass::KnownBot);
    f[idx::UA_HTTP_LIBRARY] = flag(class == UaClass::HttpLibrary);
    f[idx::UA_EMPTY] = flag(class == UaClass::Empty);
    f[idx::UA_BROWSER] = flag(class == UaClass::Browser);
    f[idx::UA_STALE_BROWSER] = flag(class == UaClass::StaleBrowser);
    f[idx::SESSION_ID_MISSING] = flag(!session.saw_session_id);
    f[idx::USER_MISSING] = flag(!session.saw_user);
    f[idx::OUTCOME_MISSING] = flag(!session.saw_outcome);
    f[idx::ASN_MISSING] = flag(!session.saw_asn);

    // Across sessions (raw counts; missing where the session lacks the key).
    let c = &session.context.counts;
    let opt = |v: Option<f64>| v.unwrap_or(f64::NAN);
    f[idx::CLIENT_REQUESTS_1H] = c.client_requests;
    f[idx::CLIENT_USER_AGENTS_1H] = c.client_user_agents;
    f[idx::CLIENT_ACCOUNTS_1H] = c.client_accounts;
    f[idx::PREFIX_CLIENTS_1H] = opt(c.prefix_clients);
    f[idx::PREFIX_LOGIN_FAILURES_1H] = opt(c.prefix_login_failures);
    f[idx::UA_CLIENTS_1H] = c.ua_clients;
    f[idx::UA_LOGIN_FAILURES_1H] = c.ua_login_failures;
    f[idx::ACCOUNT_CLIENTS_1H] = opt(c.account_clients);
    f[idx::ASN_LOGIN_FAILURES_1H] = opt(c.asn_login_failures);
    f[idx::CLIENT_MALFORMED_1H] = c.client_malformed;
    let (verified, spoofed, missing) = match session.context.crawler {
        CrawlerCheck::Unknown => (f64::NAN, f64::NAN, 1.0),
        CrawlerCheck::NotClaimed => (0.0, 0.0, 0.0),
        CrawlerCheck::Verified => (1.0, 0.0, 0.0),
        CrawlerCheck::Spoofed => (0.0, 1.0, 0.0),
    };
    f[idx::CRAWLER_VERIFIED] = verified;
    f[idx::CRAWLER_SPOOFED] = spoofed;
    f[idx::CRAWLER_RANGES_MISSING] = missing;

    let raw = RawFeatures(f);
    SessionFeatures {
        values: raw.transform(),
        raw,
    }
}

/// Formats a raw value in its unit for a sentence.
pub fn format_value(unit: Unit, x: f64) -> String {
    match unit {
        Unit::Count => format!("{}", x.round() as i64),
        Unit::Seconds if x < 90.0 => format!("{x:.1} s"),
        Unit::Seconds if x < 5400.0 => format!("{:.1} min", x / 60.0),
        Unit::Seconds => format!("{:.1} h", x / 3600.0),
        Unit::PerMinute => format!("{x:.1} per minute"),
        Unit::Share => format!("{:.0}%", x * 100.0),
        Unit::Number => format!("{x:.2}"),
        Unit::Flag => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::defs::{FLAG, log};
    use super::*;

    #[test]
    fn names_match_definitions() {
        for (name, def) in FEATURE_NAMES.iter().zip(FEATURES.iter()) {
            assert_eq!(*name, def.name);
            assert!(def.transform.scale > 0.0 && def.transform.lo < def.transform.hi);
            assert!(
                def.transform.center >= def.transform.lo
                    && def.transform.center <= def.transform.hi
            );
            assert!(
                def.unit == Unit::Flag || (def.high.contains("{}") && def.low.contains("{}")),
                "{name}"
            );
        }
        let mut sorted = FEATURE_NAMES.to_vec();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), NUM_FEATURES);
    }

    #[test]
    fn transforms() {
        let t = log(0.0, 12.0, 2.3, 1.2);
        assert!((t.apply(9.0) - ((10f64.ln() - 2.3) / 1.2) as f32).abs() < 1e-6);
        assert_eq!(t.apply(f64::NAN), 0.0);
        assert_eq!(t.apply(f64::INFINITY), ((12.0 - 2.3) / 1.2) as f32);
        assert_eq!(t.apply(-5.0), (-2.3 / 1.2) as f32);
        assert!((t.invert(t.apply(9.0)) - 9.0).abs() < 1e-4);
        assert_eq!(FLAG.apply(1.0), 1.0);
    }

    #[test]
    fn value_formats() {
        assert_eq!(format_value(Unit::Share, 0.973), "97%");
        assert_eq!(format_value(Unit::Seconds, 12.0), "12.0 s");
        assert_eq!(format_value(Unit::Seconds, 600.0), "10.0 min");
        assert_eq!(format_value(Unit::Count, 41.6), "42");
    }
}
