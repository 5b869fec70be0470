//! The weak-labelling rules (`[labels.rules]` in the client's config).
//!
//! Each rule reads a session's facts and votes abuse, not abuse or abstains,
//! with its own weight (0 switches it off). Defaults follow common practice
//! (OWASP OAT handbook; the rates the issue measured on the synthetic
//! tenants: seven plain rules catch ~48 % of bots at ~1.6 % human FPR):
//!
//! | rule | abuse when | not abuse when | weight |
//! |---|---|---|---|
//! | `user_agent` | empty UA, an HTTP library, or a UA containing one of `abuse_substrings` | a UA containing one of `allow_substrings` | 2 |
//! | `crawler` | claims a crawler from outside its published ranges (needs `data.crawler_ranges`) | a verified crawler | 3 |
//! | `honeypot` | requested one of `paths` (exact, query stripped) | — | 3 |
//! | `robots_txt` | fetched `/robots.txt` without any bot user agent | — | 1 |
//! | `failed_logins` | ≥ `min` failed login attempts | — | 2 |
//! | `declined_payments` | ≥ `min` declined payment attempts | — | 2 |
//! | `status_4xx_flood` | ≥ `min_requests` requests, 4xx share ≥ `min_share` | — | 1.5 |
//! | `head_share` | ≥ `min_requests` requests, HEAD share ≥ `min_share` | — | 1 |
//! | `timing` | ≥ `min_pages` pages, page-gap CV ≤ `max_cv` (machine-regular) | ≥ `min_pages` pages, CV ≥ `human_min_cv` | 1 / 0.5 |
//! | `browser` | — | current browser UA that loads page assets (co-load ≥ `min_asset_coload`), no failed login or payment | 1 |
//!
//! A rule whose inputs are missing (no pages, no crawler ranges) abstains.

use serde::{Deserialize, Serialize};

use super::{Fired, SessionFacts, Vote};
use crate::features::idx;
use crate::paths::fnv1a;
use crate::ua::UaClassifier;

/// A rule configuration that cannot work; the message names the key.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("labels.{key}: {message}")]
pub struct RuleError {
    /// Dotted key under `labels` (`rules.timing.max_cv`, `outcomes.waf_block`).
    pub key: String,
    /// What is wrong.
    pub message: String,
}

fn err(key: &str, message: String) -> RuleError {
    RuleError {
        key: format!("rules.{key}"),
        message,
    }
}

/// Every rule, with the vote margin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuleConfig {
    /// Σ abuse − Σ not-abuse weights must reach ± this for a label; closer abstains.
    pub margin: f64,
    /// User-agent lists.
    pub user_agent: UserAgentRule,
    /// Verified / spoofed crawlers.
    pub crawler: WeightOnly,
    /// Honeypot paths.
    pub honeypot: HoneypotRule,
    /// `/robots.txt` fetched by a non-bot user agent.
    pub robots_txt: WeightOnly,
    /// Failed logins.
    pub failed_logins: CountRule,
    /// Declined payments.
    pub declined_payments: CountRule,
    /// 4xx floods.
    pub status_4xx_flood: ShareRule,
    /// HEAD requests.
    pub head_share: ShareRule,
    /// Timing regularity.
    pub timing: TimingRule,
    /// Browser-like sessions (a not-abuse vote).
    pub browser: BrowserRule,
}

impl Default for RuleConfig {
    fn default() -> Self {
        Self {
            margin: 1.0,
            user_agent: UserAgentRule::default(),
            crawler: WeightOnly { weight: 3.0 },
            honeypot: HoneypotRule::default(),
            robots_txt: WeightOnly { weight: 1.0 },
            failed_logins: CountRule {
                weight: 2.0,
                min: 5,
            },
            declined_payments: CountRule {
                weight: 2.0,
                min: 3,
            },
            status_4xx_flood: ShareRule {
                weight: 1.5,
                min_share: 0.5,
                min_requests: 10,
            },
            head_share: ShareRule {
                weight: 1.0,
                min_share: 0.1,
                min_requests: 5,
            },
            timing: TimingRule::default(),
            browser: BrowserRule::default(),
        }
    }
}

/// A rule with only a weight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightOnly {
    /// Vote weight (0 = off).
    pub weight: f64,
}

/// `user_agent`: lists of user-agent substrings (case-insensitive).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UserAgentRule {
    /// Vote weight (0 = off).
    pub weight: f64,
    /// An empty user agent votes abuse.
    pub empty: bool,
    /// An HTTP-library user agent (curl, python-requests, ...) votes abuse.
    pub http_library: bool,
    /// HTTP libraries that are native apps' own network stacks (substrings,
    /// case-insensitive): no `http_library` vote, since an API tenant's app
    /// users send them (Android apps say `okhttp/4.x` by default).
    pub app_stacks: Vec<String>,
    /// Substrings that vote abuse (scanners, scraping frameworks).
    pub abuse_substrings: Vec<String>,
    /// Substrings that vote not abuse (the tenant's own monitors, partners).
    pub allow_substrings: Vec<String>,
}

impl Default for UserAgentRule {
    fn default() -> Self {
        Self {
            weight: 2.0,
            empty: true,
            http_library: true,
            app_stacks: ["okhttp", "cfnetwork", "dalvik", "alamofire"]
                .map(String::from)
                .to_vec(),
            abuse_substrings: [
                "sqlmap",
                "nikto",
                "nmap",
                "masscan",
                "zgrab",
                "nuclei",
                "wpscan",
                "dirbuster",
                "gobuster",
                "scrapy",
                "headlesschrome",
                "phantomjs",
            ]
            .map(String::from)
            .to_vec(),
            allow_substrings: Vec::new(),
        }
    }
}

/// `honeypot`: paths no legitimate visitor requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HoneypotRule {
    /// Vote weight (0 = off).
    pub weight: f64,
    /// Exact paths (query stripped), e.g. `/.env`, `/wp-admin/`, a hidden trap link.
    pub paths: Vec<String>,
}

impl Default for HoneypotRule {
    fn default() -> Self {
        Self {
            weight: 3.0,
            paths: [
                "/.env",
                "/.git/config",
                "/wp-config.php.bak",
                "/phpmyadmin/",
            ]
            .map(String::from)
            .to_vec(),
        }
    }
}

/// A rule on a count of failures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CountRule {
    /// Vote weight (0 = off).
    pub weight: f64,
    /// Fewest failures that vote abuse (≥ 1).
    pub min: u32,
}

/// A rule on a share of requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShareRule {
    /// Vote weight (0 = off).
    pub weight: f64,
    /// Share at or above which the rule votes abuse, in (0, 1].
    pub min_share: f64,
    /// Fewest requests before the rule votes.
    pub min_requests: u32,
}

/// `timing`: regularity of the gaps between page requests.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TimingRule {
    /// Weight of the abuse vote (0 = off).
    pub weight: f64,
    /// Weight of the not-abuse vote (0 = off).
    pub human_weight: f64,
    /// Fewest pages before the rule votes (≥ 3: a CV needs two gaps).
    pub min_pages: u32,
    /// Coefficient of variation at or below which the gaps are machine-regular.
    pub max_cv: f64,
    /// Coefficient of variation at or above which the gaps look human.
    pub human_min_cv: f64,
}

impl Default for TimingRule {
    fn default() -> Self {
        Self {
            weight: 1.0,
            human_weight: 0.5,
            min_pages: 5,
            max_cv: 0.15,
            human_min_cv: 1.0,
        }
    }
}

/// `browser`: a current browser that behaves like one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrowserRule {
    /// Vote weight (0 = off).
    pub weight: f64,
    /// Share of pages followed by their assets at or above which the session loads like a browser.
    pub min_asset_coload: f64,
}

impl Default for BrowserRule {
    fn default() -> Self {
        Self {
            weight: 1.0,
            min_asset_coload: 0.5,
        }
    }
}

fn check_weight(key: &str, w: f64) -> Result<(), RuleError> {
    if w.is_finite() && (0.0..=100.0).contains(&w) {
        Ok(())
    } else {
        Err(err(
            key,
            format!("must be finite and in [0, 100] (got {w})"),
        ))
    }
}

fn check_share(key: &str, s: f64) -> Result<(), RuleError> {
    if s.is_finite() && s > 0.0 && s <= 1.0 {
        Ok(())
    } else {
        Err(err(key, format!("must be in (0, 1] (got {s})")))
    }
}

fn contains_ci(hay: &str, needle: &str) -> bool {
    let (h, n) = (hay.as_bytes(), needle.as_bytes());
    !n.is_empty() && h.len() >= n.len() && h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n))
}

/// A raw feature, or `None` when undefined.
fn raw(facts: &SessionFacts, i: usize) -> Option<f64> {
    let v = facts.raw.0[i];
    (!v.is_nan()).then_some(v)
}

fn flag(facts: &SessionFacts, i: usize) -> bool {
    raw(facts, i).is_some_and(|v| v >= 0.5)
}

impl RuleConfig {
    /// Checks every value; the error names the key.
    pub fn validate(&self) -> Result<(), RuleError> {
        if !(self.margin.is_finite() && self.margin > 0.0) {
            return Err(err("margin", format!("must be > 0 (got {})", self.margin)));
        }
        check_weight("user_agent.weight", self.user_agent.weight)?;
        for (key, list) in [
            (
                "user_agent.abuse_substrings",
                &self.user_agent.abuse_substrings,
            ),
            (
                "user_agent.allow_substrings",
                &self.user_agent.allow_substrings,
            ),
            ("user_agent.app_stacks", &self.user_agent.app_stacks),
        ] {
            if list.iter().any(|s| s.trim().is_empty()) {
                return Err(err(key, "entries must not be empty".into()));
            }
        }
        check_weight("crawler.weight", self.crawler.weight)?;
        check_weight("honeypot.weight", self.honeypot.weight)?;
        if let Some(p) = self.honeypot.paths.iter().find(|p| !p.starts_with('/')) {
            return Err(err("honeypot.paths", format!("{p:?} must start with '/'")));
        }
        check_weight("robots_txt.weight", self.robots_txt.weight)?;
        for (key, r) in [
            ("failed_logins", &self.failed_logins),
            ("declined_payments", &self.declined_payments),
        ] {
            check_weight(&format!("{key}.weight"), r.weight)?;
            if r.min == 0 {
                return Err(err(&format!("{key}.min"), "must be ≥ 1 (got 0)".into()));
            }
        }
        for (key, r) in [
            ("status_4xx_flood", &self.status_4xx_flood),
            ("head_share", &self.head_share),
        ] {
            check_weight(&format!("{key}.weight"), r.weight)?;
            check_share(&format!("{key}.min_share"), r.min_share)?;
        }
        let t = &self.timing;
        check_weight("timing.weight", t.weight)?;
        check_weight("timing.human_weight", t.human_weight)?;
        if t.min_pages < 3 {
            return Err(err(
                "timing.min_pages",
                format!("must be ≥ 3 (got {})", t.min_pages),
            ));
        }
        if !(t.max_cv.is_finite() && t.max_cv >= 0.0 && t.human_min_cv.is_finite())
            || t.human_min_cv <= t.max_cv
        {
            return Err(err(
                "timing.human_min_cv",
                format!(
                    "must be finite and above timing.max_cv = {} (got {})",
                    t.max_cv, t.human_min_cv
                ),
            ));
        }
        check_weight("browser.weight", self.browser.weight)?;
        check_share("browser.min_asset_coload", self.browser.min_asset_coload)?;
        Ok(())
    }

    /// Every non-abstaining vote of the rules on one session.
    pub fn evaluate(&self, facts: &SessionFacts) -> Vec<Fired> {
        let mut out = Vec::new();
        let mut cast = |rule: &'static str, vote: Vote, weight: f64| {
            if weight > 0.0 && vote != Vote::Abstain {
                out.push(Fired { rule, vote, weight });
            }
        };
        cast(
            "user_agent",
            self.user_agent_vote(facts),
            self.user_agent.weight,
        );
        let crawler = if flag(facts, idx::CRAWLER_SPOOFED) {
            Vote::Abuse
        } else if flag(facts, idx::CRAWLER_VERIFIED) {
            Vote::NotAbuse
        } else {
            Vote::Abstain
        };
        cast("crawler", crawler, self.crawler.weight);
        let honeypot = self
            .honeypot
            .paths
            .iter()
            .any(|p| facts.path_hashes.contains(&fnv1a(p.as_bytes())));
        cast("honeypot", abuse_if(honeypot), self.honeypot.weight);
        let any_bot_ua = flag(facts, idx::UA_KNOWN_BOT)
            || flag(facts, idx::UA_HTTP_LIBRARY)
            || flag(facts, idx::UA_EMPTY);
        cast(
            "robots_txt",
            abuse_if(flag(facts, idx::ROBOTS_TXT) && !any_bot_ua),
            self.robots_txt.weight,
        );
        let login_failures = failures(facts, idx::LOGIN_ATTEMPTS, idx::LOGIN_FAILURE_RATIO);
        let payment_failures = failures(facts, idx::PAYMENT_ATTEMPTS, idx::PAYMENT_FAILURE_RATIO);
        cast(
            "failed_logins",
            abuse_if(login_failures >= f64::from(self.failed_logins.min)),
            self.failed_logins.weight,
        );
        cast(
            "declined_payments",
            abuse_if(payment_failures >= f64::from(self.declined_payments.min)),
            self.declined_payments.weight,
        );
        // Crawlers and monitors that announce themselves send HEADs and poll
        // on a schedule: that is what they are for (the `crawler` rule checks
        // a crawler's claim), so these behaviours vote abuse only without one.
        let announced = UaClassifier::global().announces_good_bot(&facts.user_agent);
        let requests = raw(facts, idx::REQUESTS).unwrap_or(0.0);
        for (name, rule, share) in [
            (
                "status_4xx_flood",
                &self.status_4xx_flood,
                idx::STATUS_4XX_SHARE,
            ),
            ("head_share", &self.head_share, idx::HEAD_SHARE),
        ] {
            let fires = requests >= f64::from(rule.min_requests)
                && raw(facts, share).is_some_and(|s| s >= rule.min_share)
                && !(name == "head_share" && announced);
            cast(name, abuse_if(fires), rule.weight);
        }
        let pages = raw(facts, idx::PAGES).unwrap_or(0.0);
        if pages >= f64::from(self.timing.min_pages) {
            match raw(facts, idx::GAP_CV) {
                Some(cv) if cv <= self.timing.max_cv && !announced => {
                    cast("timing", Vote::Abuse, self.timing.weight);
                }
                Some(cv) if cv >= self.timing.human_min_cv => {
                    cast("timing", Vote::NotAbuse, self.timing.human_weight);
                }
                _ => {}
            }
        }
        let browser_like = flag(facts, idx::UA_BROWSER)
            && raw(facts, idx::ASSET_COLOAD).is_some_and(|c| c >= self.browser.min_asset_coload)
            && login_failures < 1.0
            && payment_failures < 1.0;
        cast(
            "browser",
            if browser_like {
                Vote::NotAbuse
            } else {
                Vote::Abstain
            },
            self.browser.weight,
        );
        out
    }

    fn user_agent_vote(&self, facts: &SessionFacts) -> Vote {
        let r = &self.user_agent;
        let ua = facts.user_agent.as_str();
        if r.allow_substrings.iter().any(|s| contains_ci(ua, s)) {
            return Vote::NotAbuse;
        }
        let empty = ua.trim().is_empty() || ua == "-";
        if (r.empty && empty)
            || (r.http_library
                && flag(facts, idx::UA_HTTP_LIBRARY)
                && !r.app_stacks.iter().any(|s| contains_ci(ua, s)))
            || r.abuse_substrings.iter().any(|s| contains_ci(ua, s))
        {
            Vote::Abuse
        } else {
            Vote::Abstain
        }
    }
}

fn abuse_if(c: bool) -> Vote {
    if c { Vote::Abuse } else { Vote::Abstain }
}

/// Failed attempts from an attempt count and a failure ratio (rounded).
fn failures(facts: &SessionFacts, attempts: usize, ratio: usize) -> f64 {
    match (raw(facts, attempts), raw(facts, ratio)) {
        (Some(a), Some(r)) => (a * r).round(),
        _ => 0.0,
    }
}

#[cfg(test)]
mod tests;
