//! The feature table: every feature's name, definition, fixed transform,
//! unit, phrases and source, in vector order.
//!
//! One table, kept in one file on purpose: [`FEATURES`] (with the
//! [`FEATURE_NAMES`] and [`idx`] positions that must stay in step with it)
//! is most of its length, and a reader checking a feature's transform
//! against its definition wants both on one screen. The compute side lives
//! in the sibling modules by feature family.

use super::NUM_FEATURES;

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

pub(crate) const fn log(lo: f64, hi: f64, center: f64, scale: f64) -> Transform {
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

pub(crate) const FLAG: Transform = lin(0.0, 1.0, 0.0, 1.0);
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
    pub const CLIENT_REQUESTS_1H: usize = 38;
    pub const CLIENT_USER_AGENTS_1H: usize = 39;
    pub const CLIENT_ACCOUNTS_1H: usize = 40;
    pub const PREFIX_CLIENTS_1H: usize = 41;
    pub const PREFIX_LOGIN_FAILURES_1H: usize = 42;
    pub const UA_CLIENTS_1H: usize = 43;
    pub const UA_LOGIN_FAILURES_1H: usize = 44;
    pub const ACCOUNT_CLIENTS_1H: usize = 45;
    pub const ASN_LOGIN_FAILURES_1H: usize = 46;
    pub const CLIENT_MALFORMED_1H: usize = 47;
    pub const CRAWLER_VERIFIED: usize = 48;
    pub const CRAWLER_SPOOFED: usize = 49;
    pub const CRAWLER_RANGES_MISSING: usize = 50;
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
    "client_requests_1h",
    "client_user_agents_1h",
    "client_accounts_1h",
    "prefix_clients_1h",
    "prefix_login_failures_1h",
    "ua_clients_1h",
    "ua_login_failures_1h",
    "account_clients_1h",
    "asn_login_failures_1h",
    "client_malformed_1h",
    "crawler_verified",
    "crawler_spoofed",
    "crawler_ranges_missing",
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
        definition: "no AS number is known for the session (none logged, none in the tenant's AS database)",
        transform: FLAG,
        unit: Unit::Flag,
        high: "had no network (ASN) information",
        low: "had network (ASN) information",
        source: "missing-value indicator",
    },
    FeatureDef {
        name: "client_requests_1h",
        definition: "requests from the session's client address in the hour before the session ended (all its sessions)",
        transform: log(0.0, 12.0, 3.0, 1.5),
        unit: Unit::Count,
        high: "its address sent {} requests within the hour",
        low: "its address sent only {} requests within the hour",
        source: "per-IP rate limiting practice (e.g. nginx limit_req); Stevanovic et al. 2012",
    },
    FeatureDef {
        name: "client_user_agents_1h",
        definition: "distinct user agents from the client address in the hour (saturates at 16)",
        transform: log(0.0, 4.0, 0.69, 0.5),
        unit: Unit::Count,
        high: "its address used {} different user agents within the hour",
        low: "its address used {} user agent within the hour",
        source: "practice (user-agent rotation from one address)",
    },
    FeatureDef {
        name: "client_accounts_1h",
        definition: "distinct accounts used from the client address in the hour (saturates at 16)",
        transform: log(0.0, 4.0, 0.0, 0.7),
        unit: Unit::Count,
        high: "its address tried {} different accounts within the hour",
        low: "its address used {} accounts within the hour",
        source: "OWASP OAT-008 credential stuffing (many accounts per source)",
    },
    FeatureDef {
        name: "prefix_clients_1h",
        definition: "distinct client addresses in the session's /24 (IPv4) or /64 (IPv6) in the hour (saturates at 16; missing for host names)",
        transform: log(0.0, 4.0, 0.69, 0.6),
        unit: Unit::Count,
        high: "{} addresses of its network block were active within the hour",
        low: "{} address of its network block was active within the hour",
        source: "practice (proxy pools rotate addresses within a block)",
    },
    FeatureDef {
        name: "prefix_login_failures_1h",
        definition: "failed logins from the session's /24 or /64 in the hour (missing for host names)",
        transform: log(0.0, 10.0, 0.0, 0.8),
        unit: Unit::Count,
        high: "its network block failed {} logins within the hour",
        low: "its network block failed {} logins within the hour",
        source: "OWASP OAT-008 credential stuffing (distributed, low and slow)",
    },
    FeatureDef {
        name: "ua_clients_1h",
        definition: "distinct client addresses sending the session's exact user agent in the hour (saturates at 16)",
        transform: log(0.0, 4.0, 1.0, 0.8),
        unit: Unit::Count,
        high: "{} addresses sent its exact user agent within the hour",
        low: "{} address sent its exact user agent within the hour",
        source: "practice (one bot build across many addresses)",
    },
    FeatureDef {
        name: "ua_login_failures_1h",
        definition: "failed logins with the session's exact user agent in the hour",
        transform: log(0.0, 10.0, 0.0, 1.0),
        unit: Unit::Count,
        high: "its user agent failed {} logins within the hour",
        low: "its user agent failed {} logins within the hour",
        source: "OWASP OAT-008 credential stuffing",
    },
    FeatureDef {
        name: "account_clients_1h",
        definition: "most distinct client addresses any of the session's accounts was used from in the hour (missing without accounts)",
        transform: log(0.0, 4.0, 0.69, 0.6),
        unit: Unit::Count,
        high: "one of its accounts was used from {} addresses within the hour",
        low: "its accounts were used from {} address within the hour",
        source: "OWASP OAT-007 credential cracking (one account, many sources)",
    },
    FeatureDef {
        name: "asn_login_failures_1h",
        definition: "failed logins from the session's autonomous system in the hour (missing without an AS)",
        transform: log(0.0, 12.0, 0.0, 1.2),
        unit: Unit::Count,
        high: "its network (AS) failed {} logins within the hour",
        low: "its network (AS) failed {} logins within the hour",
        source: "practice (attacks from hosting and proxy networks)",
    },
    FeatureDef {
        name: "client_malformed_1h",
        definition: "malformed log lines from the client address in the hour (garbage requests servers could not log normally)",
        transform: log(0.0, 8.0, 0.0, 0.7),
        unit: Unit::Count,
        high: "its address produced {} malformed log lines within the hour",
        low: "its address produced {} malformed log lines within the hour",
        source: "vulnerability-scanner practice (raw TLS, overlong and broken requests)",
    },
    FeatureDef {
        name: "crawler_verified",
        definition: "the user agent names a crawler whose published IP ranges the tenant supplied, and the address is in them (missing without range files or for host names)",
        transform: FLAG,
        unit: Unit::Flag,
        high: "is a verified search-engine crawler",
        low: "is not a verified crawler",
        source: "Google and Bing crawler verification guidance (published IP ranges)",
    },
    FeatureDef {
        name: "crawler_spoofed",
        definition: "the user agent names a crawler whose ranges were supplied, but the address is outside them (missing without range files or for host names)",
        transform: FLAG,
        unit: Unit::Flag,
        high: "claimed to be a search-engine crawler from an address that crawler does not use",
        low: "did not fake a crawler identity",
        source: "Google and Bing crawler verification guidance; fail2ban apache-fakegooglebot",
    },
    FeatureDef {
        name: "crawler_ranges_missing",
        definition: "no crawler IP-range file was supplied (or the client is a host name)",
        transform: FLAG,
        unit: Unit::Flag,
        high: "could not be checked against crawler IP ranges",
        low: "was checked against crawler IP ranges",
        source: "missing-value indicator",
    },
];
