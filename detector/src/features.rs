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
use crate::session::{Request, Session};
use crate::ua::{UaClass, UaClassifier};

/// Number of features.
pub const NUM_FEATURES: usize = 38;

/// How a raw value becomes a model input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Transform {
    /// Apply `ln(1 + x)` first.
    pub log1p: bool,
    /// Lower clip bound (after `log1p`).
    pub lo: f64,
    /// Upper clip bound (after `log1p`).
    pub hi: f64,
    /// Subtracted after clipping.
    pub center: f64,
    /// Divides after centering.
    pub scale: f64,
}

impl Transform {
    /// Applies the transform.
    pub fn apply(&self, x: f64) -> f32 {
        if x.is_nan() {
            return 0.0;
        }
        let g = if self.log1p { x.max(0.0).ln_1p() } else { x };
        ((g.clamp(self.lo, self.hi) - self.center) / self.scale) as f32
    }

    /// The raw value that maps to `z` (inverse of [`apply`](Self::apply)
    /// inside the clip range).
    pub fn invert(&self, z: f32) -> f64 {
        let g = f64::from(z) * self.scale + self.center;
        if self.log1p { g.exp_m1() } else { g }
    }
}

/// How a raw value reads in a sentence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// A count.
    Count,
    /// Seconds (printed as s / min / h).
    Seconds,
    /// Requests per minute.
    PerMinute,
    /// A share in [0, 1] (printed as a percentage).
    Share,
    /// A plain number (ratio, coefficient).
    Number,
    /// A 0/1 indicator.
    Flag,
}

/// Definition of one feature.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FeatureDef {
    /// Stable name (a CSV column, a key in explanations).
    pub name: &'static str,
    /// What is measured.
    pub definition: &'static str,
    /// Raw → model input.
    pub transform: Transform,
    /// Unit of the raw value.
    pub unit: Unit,
    /// Phrase for a value above typical, with `{}` for the value.
    pub high: &'static str,
    /// Phrase for a value below typical, with `{}` for the value.
    pub low: &'static str,
    /// Where the feature comes from.
    pub source: &'static str,
}

const fn log(lo: f64, hi: f64, center: f64, scale: f64) -> Transform {
    Transform {
        log1p: true,
        lo,
        hi,
        center,
        scale,
    }
}

const fn lin(lo: f64, hi: f64, center: f64, scale: f64) -> Transform {
    Transform {
        log1p: false,
        lo,
        hi,
        center,
        scale,
    }
}

const FLAG: Transform = lin(0.0, 1.0, 0.0, 1.0);
const SHARE_SRC_TK: &str = "Tan & Kumar 2002";

/// Feature indices, by name.
#[allow(missing_docs)]
pub mod idx {
    pub const REQUESTS: usize = 0;
    pub const PAGES: usize = 1;
    pub const DURATION: usize = 2;
    pub const RATE_PER_MIN: usize = 3;
    pub const MAX_REQ_10S: usize = 4;
    pub const GAP_CV: usize = 5;
    pub const MEDIAN_GAP: usize = 6;
    pub const NIGHT_SHARE: usize = 7;
    pub const ASSET_SHARE: usize = 8;
    pub const ASSET_COLOAD: usize = 9;
    pub const DISTINCT_PATH_RATIO: usize = 10;
    pub const DEPTH_STD: usize = 11;
    pub const SAME_DIR_SHARE: usize = 12;
    pub const EMPTY_REFERER_SHARE: usize = 13;
    pub const ONSITE_REFERER_SHARE: usize = 14;
    pub const ROBOTS_TXT: usize = 15;
    pub const MAX_HITS_ONE_PATH: usize = 16;
    pub const HEAD_SHARE: usize = 17;
    pub const POST_SHARE: usize = 18;
    pub const STATUS_4XX_SHARE: usize = 19;
    pub const STATUS_404_SHARE: usize = 20;
    pub const STATUS_403_SHARE: usize = 21;
    pub const STATUS_304_SHARE: usize = 22;
    pub const MEAN_BYTES: usize = 23;
    pub const LOGIN_ATTEMPTS: usize = 24;
    pub const LOGIN_FAILURE_RATIO: usize = 25;
    pub const PAYMENT_ATTEMPTS: usize = 26;
    pub const PAYMENT_FAILURE_RATIO: usize = 27;
    pub const ADD_TO_CART_RATE: usize = 28;
    pub const UA_KNOWN_BOT: usize = 29;
    pub const UA_HTTP_LIBRARY: usize = 30;
    pub const UA_EMPTY: usize = 31;
    pub const UA_BROWSER: usize = 32;
    pub const UA_STALE_BROWSER: usize = 33;
    pub const SESSION_ID_MISSING: usize = 34;
    pub const USER_MISSING: usize = 35;
    pub const OUTCOME_MISSING: usize = 36;
    pub const ASN_MISSING: usize = 37;
}

/// Feature names in vector order (stable: models depend on it).
pub const FEATURE_NAMES: [&str; NUM_FEATURES] = [
    "requests",
    "pages",
    "duration_s",
    "rate_per_min",
    "max_requests_10s",
    "page_gap_cv",
    "median_page_gap_s",
    "night_share",
    "asset_share",
    "asset_coload",
    "distinct_path_ratio",
    "depth_std",
    "same_dir_share",
    "empty_referer_share",
    "onsite_referer_share",
    "robots_txt",
    "max_hits_one_path",
    "head_share",
    "post_share",
    "status_4xx_share",
    "status_404_share",
    "status_403_share",
    "status_304_share",
    "mean_response_bytes",
    "login_attempts",
    "login_failure_ratio",
    "payment_attempts",
    "payment_failure_ratio",
    "add_to_cart_rate",
    "ua_known_bot",
    "ua_http_library",
    "ua_empty",
    "ua_browser",
    "ua_stale_browser",
    "session_id_missing",
    "user_missing",
    "outcome_missing",
    "asn_missing",
];

/// Every feature's definition, in vector order.
pub const FEATURES: [FeatureDef; NUM_FEATURES] = [
    FeatureDef {
        name: "requests",
        definition: "number of requests in the session",
        transform: log(0.0, 12.0, 2.3, 1.2),
        unit: Unit::Count,
        high: "made many requests ({})",
        low: "made very few requests ({})",
        source: "Tan & Kumar 2002 (total requests); Stevanovic et al. 2012 (click number)",
    },
    FeatureDef {
        name: "pages",
        definition: "requests that are not static assets",
        transform: log(0.0, 12.0, 1.6, 1.0),
        unit: Unit::Count,
        high: "viewed many pages ({})",
        low: "viewed very few pages ({})",
        source: "Tan & Kumar 2002 (total pages)",
    },
    FeatureDef {
        name: "duration_s",
        definition: "time from the first to the last request, seconds",
        transform: log(0.0, 12.0, 4.5, 2.0),
        unit: Unit::Seconds,
        high: "stayed unusually long ({})",
        low: "was over very quickly ({})",
        source: "Tan & Kumar 2002; Stevanovic et al. 2012 (session time)",
    },
    FeatureDef {
        name: "rate_per_min",
        definition: "requests per minute over max(duration, 60 s)",
        transform: log(0.0, 10.0, 1.5, 1.2),
        unit: Unit::PerMinute,
        high: "requested pages at a high rate ({})",
        low: "requested at a very slow rate ({})",
        source: "Doran & Gokhale 2011 (traffic patterns); rate-limit practice",
    },
    FeatureDef {
        name: "max_requests_10s",
        definition: "most requests within any 10-second window",
        transform: log(0.0, 10.0, 1.6, 1.0),
        unit: Unit::Count,
        high: "sent a burst of {} requests within 10 seconds",
        low: "never sent more than {} requests within 10 seconds",
        source: "burst rate-limit practice (e.g. nginx limit_req)",
    },
    FeatureDef {
        name: "page_gap_cv",
        definition: "coefficient of variation of the gaps between consecutive page requests (≥ 2 gaps)",
        transform: lin(0.0, 5.0, 1.0, 0.6),
        unit: Unit::Number,
        high: "had very irregular pauses between pages (variation {})",
        low: "paused with machine-like regularity between pages (variation {})",
        source: "Tan & Kumar 2002 (std. dev. of time between requests)",
    },
    FeatureDef {
        name: "median_page_gap_s",
        definition: "median gap between consecutive page requests, seconds (≥ 1 gap)",
        transform: log(0.0, 8.0, 2.8, 1.3),
        unit: Unit::Seconds,
        high: "waited long between pages (median {})",
        low: "moved between pages faster than people read (median {})",
        source: "Tan & Kumar 2002 (average time between requests)",
    },
    FeatureDef {
        name: "night_share",
        definition: "share of requests between 00:00 and 05:59 local time of the log",
        transform: lin(0.0, 1.0, 0.1, 0.3),
        unit: Unit::Share,
        high: "was active at night ({} of requests)",
        low: "avoided night hours ({} of requests)",
        source: "Tan & Kumar 2002 (night-time requests)",
    },
    FeatureDef {
        name: "asset_share",
        definition: "share of requests for static assets (css, js, images, fonts, ...)",
        transform: lin(0.0, 1.0, 0.5, 0.3),
        unit: Unit::Share,
        high: "requested mostly static assets ({} of requests)",
        low: "loaded almost no images, scripts or styles ({} of requests)",
        source: "Tan & Kumar 2002 (% image requests); Stevanovic et al. 2012 (HTML-to-image ratio)",
    },
    FeatureDef {
        name: "asset_coload",
        definition: "share of pages followed within 5 s by a static-asset request (≥ 1 page)",
        transform: lin(0.0, 1.0, 0.6, 0.4),
        unit: Unit::Share,
        high: "loaded assets with nearly every page ({} of pages)",
        low: "did not load page resources after pages ({} of pages)",
        source: "Doran & Gokhale 2011 (resource requests of rendering browsers); practice",
    },
    FeatureDef {
        name: "distinct_path_ratio",
        definition: "distinct paths divided by requests",
        transform: lin(0.0, 1.0, 0.7, 0.25),
        unit: Unit::Share,
        high: "almost never revisited a URL ({} distinct)",
        low: "kept requesting the same URLs ({} distinct)",
        source: "Tan & Kumar 2002 (% repeated requests); Stevanovic et al. 2012 (page popularity)",
    },
    FeatureDef {
        name: "depth_std",
        definition: "standard deviation of the path depth of page requests (≥ 2 pages)",
        transform: lin(0.0, 5.0, 0.7, 0.6),
        unit: Unit::Number,
        high: "jumped between very different URL depths (spread {})",
        low: "stayed at one URL depth (spread {})",
        source: "Stevanovic et al. 2012 (std. dev. of requested page depth); Tan & Kumar 2002",
    },
    FeatureDef {
        name: "same_dir_share",
        definition: "share of consecutive page pairs in the same directory (≥ 2 pages)",
        transform: lin(0.0, 1.0, 0.3, 0.3),
        unit: Unit::Share,
        high: "walked through one directory sequentially ({} of steps)",
        low: "rarely stayed in one directory ({} of steps)",
        source: "Stevanovic et al. 2012 (consecutive sequential requests)",
    },
    FeatureDef {
        name: "empty_referer_share",
        definition: "share of requests without a Referer",
        transform: lin(0.0, 1.0, 0.3, 0.35),
        unit: Unit::Share,
        high: "sent no referer on most requests ({})",
        low: "always sent a referer ({} without)",
        source: "Tan & Kumar 2002 (% unassigned referrer); Stevanovic et al. 2012",
    },
    FeatureDef {
        name: "onsite_referer_share",
        definition: "share of requests whose Referer path was requested earlier in the same session",
        transform: lin(0.0, 1.0, 0.6, 0.35),
        unit: Unit::Share,
        high: "followed links within the site ({} of requests)",
        low: "rarely arrived from a page it had loaded ({} of requests)",
        source: "Doran & Gokhale 2011 (referrer consistency); practice",
    },
    FeatureDef {
        name: "robots_txt",
        definition: "1 if /robots.txt was requested",
        transform: FLAG,
        unit: Unit::Flag,
        high: "fetched robots.txt",
        low: "did not fetch robots.txt",
        source: "Tan & Kumar 2002; Doran & Gokhale 2011; Stevanovic et al. 2012",
    },
    FeatureDef {
        name: "max_hits_one_path",
        definition: "most requests to a single path",
        transform: log(0.0, 10.0, 1.0, 1.0),
        unit: Unit::Count,
        high: "hit the same URL {} times",
        low: "hit no URL more than {} times",
        source: "practice (hammering one endpoint); Tan & Kumar 2002 (repeated requests)",
    },
    FeatureDef {
        name: "head_share",
        definition: "share of HEAD requests",
        transform: lin(0.0, 1.0, 0.0, 0.2),
        unit: Unit::Share,
        high: "used HEAD requests ({})",
        low: "used few HEAD requests ({})",
        source: SHARE_SRC_TK,
    },
    FeatureDef {
        name: "post_share",
        definition: "share of POST requests",
        transform: lin(0.0, 1.0, 0.05, 0.2),
        unit: Unit::Share,
        high: "sent mostly form submissions ({} POST)",
        low: "sent almost no form submissions ({} POST)",
        source: "practice (form abuse)",
    },
    FeatureDef {
        name: "status_4xx_share",
        definition: "share of responses with status 400–499",
        transform: lin(0.0, 1.0, 0.02, 0.2),
        unit: Unit::Share,
        high: "caused many client errors ({} 4xx)",
        low: "caused no client errors ({} 4xx)",
        source: "Tan & Kumar 2002; Stevanovic et al. 2012 (% 4xx)",
    },
    FeatureDef {
        name: "status_404_share",
        definition: "share of responses with status 404",
        transform: lin(0.0, 1.0, 0.01, 0.2),
        unit: Unit::Share,
        high: "requested many pages that do not exist ({} 404)",
        low: "requested no missing pages ({} 404)",
        source: "Stevanovic et al. 2012; vulnerability-scanner practice",
    },
    FeatureDef {
        name: "status_403_share",
        definition: "share of responses with status 403",
        transform: lin(0.0, 1.0, 0.0, 0.2),
        unit: Unit::Share,
        high: "was refused access often ({} 403)",
        low: "was never refused ({} 403)",
        source: "practice (WAF and access-control blocks)",
    },
    FeatureDef {
        name: "status_304_share",
        definition: "share of responses with status 304 (cache revalidation)",
        transform: lin(0.0, 1.0, 0.1, 0.2),
        unit: Unit::Share,
        high: "revalidated cached resources ({} 304)",
        low: "never revalidated a cached resource ({} 304)",
        source: "practice (browsers with a cache send conditional requests)",
    },
    FeatureDef {
        name: "mean_response_bytes",
        definition: "mean response body size, bytes",
        transform: log(0.0, 20.0, 8.5, 2.0),
        unit: Unit::Count,
        high: "downloaded large responses (mean {} bytes)",
        low: "received tiny responses (mean {} bytes)",
        source: "Stevanovic et al. 2012 (data volume)",
    },
    FeatureDef {
        name: "login_attempts",
        definition: "login attempts (POST to a login path, or a login outcome)",
        transform: log(0.0, 10.0, 0.0, 0.7),
        unit: Unit::Count,
        high: "tried to log in {} times",
        low: "tried to log in {} times",
        source: "OWASP OAT-007 credential cracking, OAT-008 credential stuffing",
    },
    FeatureDef {
        name: "login_failure_ratio",
        definition: "failed / all login attempts (0 without attempts); failure = outcome failure, else status ≥ 400",
        transform: lin(0.0, 1.0, 0.0, 0.5),
        unit: Unit::Share,
        high: "failed {} of its login attempts",
        low: "failed {} of its login attempts",
        source: "OWASP OAT-008 credential stuffing (≥ 98 % failures)",
    },
    FeatureDef {
        name: "payment_attempts",
        definition: "payment attempts (POST to a payment path, or a payment outcome)",
        transform: log(0.0, 10.0, 0.0, 0.7),
        unit: Unit::Count,
        high: "attempted {} payments",
        low: "attempted {} payments",
        source: "OWASP OAT-001 carding",
    },
    FeatureDef {
        name: "payment_failure_ratio",
        definition: "failed / all payment attempts (0 without attempts)",
        transform: lin(0.0, 1.0, 0.0, 0.5),
        unit: Unit::Share,
        high: "had {} of its payments declined",
        low: "had {} of its payments declined",
        source: "OWASP OAT-001 carding",
    },
    FeatureDef {
        name: "add_to_cart_rate",
        definition: "add-to-cart actions per page",
        transform: lin(0.0, 2.0, 0.05, 0.25),
        unit: Unit::Number,
        high: "added items to the cart on most pages ({} per page)",
        low: "rarely added to the cart ({} per page)",
        source: "OWASP OAT-005 scalping",
    },
    FeatureDef {
        name: "ua_known_bot",
        definition: "user agent matches a bot pattern of crawler-user-agents",
        transform: FLAG,
        unit: Unit::Flag,
        high: "announced itself as a bot or automation tool in its user agent",
        low: "did not announce itself as a bot",
        source: "Doran & Gokhale 2011 (syntactic log analysis); crawler-user-agents",
    },
    FeatureDef {
        name: "ua_http_library",
        definition: "user agent is an HTTP library (curl, python-requests, ...)",
        transform: FLAG,
        unit: Unit::Flag,
        high: "used a programming library rather than a browser",
        low: "did not use an HTTP library user agent",
        source: "crawler-user-agents (http-library tag)",
    },
    FeatureDef {
        name: "ua_empty",
        definition: "no user agent",
        transform: FLAG,
        unit: Unit::Flag,
        high: "sent no user agent at all",
        low: "sent a user agent",
        source: "Doran & Gokhale 2011",
    },
    FeatureDef {
        name: "ua_browser",
        definition: "user agent is a current browser",
        transform: FLAG,
        unit: Unit::Flag,
        high: "used a current browser",
        low: "did not use a current browser",
        source: "practice",
    },
    FeatureDef {
        name: "ua_stale_browser",
        definition: "user agent is a browser more than a year out of date (or Internet Explorer)",
        transform: FLAG,
        unit: Unit::Flag,
        high: "claimed an outdated browser version",
        low: "did not claim an outdated browser",
        source: "practice (scraper kits ship fixed, aging user agents)",
    },
    FeatureDef {
        name: "session_id_missing",
        definition: "no request carried an application session id",
        transform: FLAG,
        unit: Unit::Flag,
        high: "kept no session cookie",
        low: "kept a session cookie",
        source: "missing-value indicator",
    },
    FeatureDef {
        name: "user_missing",
        definition: "no request carried a user",
        transform: FLAG,
        unit: Unit::Flag,
        high: "never identified as a user",
        low: "identified as a user",
        source: "missing-value indicator",
    },
    FeatureDef {
        name: "outcome_missing",
        definition: "no request carried an outcome field",
        transform: FLAG,
        unit: Unit::Flag,
        high: "had no application outcomes logged",
        low: "had application outcomes logged",
        source: "missing-value indicator",
    },
    FeatureDef {
        name: "asn_missing",
        definition: "no request carried an AS number",
        transform: FLAG,
        unit: Unit::Flag,
        high: "had no network (ASN) information",
        low: "had network (ASN) information",
        source: "missing-value indicator",
    },
];

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
