//! User-agent classes: known bot, HTTP library, empty, browser, stale browser.
//!
//! Bot and HTTP-library patterns come from the vendored, MIT-licensed
//! `crawler-user-agents` list (`data/crawler-user-agents/`, see its
//! `SOURCE.md`): entries tagged `http-library` define [`UaClass::HttpLibrary`],
//! every other entry [`UaClass::KnownBot`]. A browser is a `Mozilla/5.0` agent
//! with a Chrome, Edge, Firefox or Safari version token; it is *stale* when its
//! major version is more than a year behind the release expected at the time of
//! the request, computed from fixed release cadences (see [`expected_major`]).

use std::sync::OnceLock;

use regex::{Regex, RegexBuilder};
use serde::Deserialize;

/// The vendored crawler list (JSON array of `{pattern, instances, tags, ..}`).
pub const CRAWLER_USER_AGENTS_JSON: &str =
    include_str!("../data/crawler-user-agents/crawler-user-agents.json");

/// User-agent class of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UaClass {
    /// Matches a bot pattern of the crawler list (search engines, SEO tools,
    /// monitors, scanners, headless browsers, ...).
    KnownBot,
    /// Matches an HTTP-library pattern (curl, python-requests, Go-http-client, ...).
    HttpLibrary,
    /// No user agent at all.
    Empty,
    /// A current browser.
    Browser,
    /// A browser more than a year out of date, or Internet Explorer.
    StaleBrowser,
    /// Anything else (mobile-app agents, unknown tools).
    Other,
}

/// One entry of the vendored crawler list.
#[derive(Debug, Clone, Deserialize)]
pub struct CrawlerEntry {
    /// Regular expression (RE2 syntax).
    pub pattern: String,
    /// Example user agents matching it.
    #[serde(default)]
    pub instances: Vec<String>,
    /// Category tags (`search-engine`, `http-library`, `monitoring`, ...).
    #[serde(default)]
    pub tags: Vec<String>,
}

/// The vendored crawler list, parsed once.
pub fn crawler_entries() -> &'static [CrawlerEntry] {
    static ENTRIES: OnceLock<Vec<CrawlerEntry>> = OnceLock::new();
    ENTRIES.get_or_init(|| serde_json::from_str(CRAWLER_USER_AGENTS_JSON).unwrap_or_default())
}

/// Compiled classifier. Use [`UaClassifier::global`] to share one instance.
#[derive(Debug)]
pub struct UaClassifier {
    http_library: Option<Regex>,
    known_bot: Option<Regex>,
    /// Known-bot patterns that are no good bot by naming themselves
    /// ([`NOT_GOOD_BOT_TAGS`]).
    not_good_bot: Option<Regex>,
    /// Patterns that failed to compile (none with the vendored list; tested).
    pub skipped_patterns: Vec<String>,
}

fn build(patterns: &[&str], skipped: &mut Vec<String>) -> Option<Regex> {
    let ok: Vec<&str> = patterns
        .iter()
        .copied()
        .filter(|p| {
            let valid = Regex::new(p).is_ok();
            if !valid {
                skipped.push((*p).to_string());
            }
            valid
        })
        .collect();
    if ok.is_empty() {
        return None;
    }
    let joined = ok
        .iter()
        .map(|p| format!("(?:{p})"))
        .collect::<Vec<_>>()
        .join("|");
    RegexBuilder::new(&joined)
        .size_limit(256 << 20)
        .dfa_size_limit(64 << 20)
        .build()
        .ok()
}

/// Tags of the vendored list whose bots are not good by announcing
/// themselves: vulnerability scanners and browser automation (headless
/// Chrome, PhantomJS, ...), which abusive bots and people behind remote
/// browser isolation use alike.
pub const NOT_GOOD_BOT_TAGS: [&str; 2] = ["scanner", "browser-automation"];

impl UaClassifier {
    /// Compiles the vendored list.
    pub fn new() -> Self {
        let entries = crawler_entries();
        let mut skipped = Vec::new();
        let http: Vec<&str> = entries
            .iter()
            .filter(|e| e.tags.iter().any(|t| t == "http-library"))
            .map(|e| e.pattern.as_str())
            .collect();
        let bots: Vec<&str> = entries
            .iter()
            .filter(|e| !e.tags.iter().any(|t| t == "http-library"))
            .map(|e| e.pattern.as_str())
            .collect();
        let not_good: Vec<&str> = entries
            .iter()
            .filter(|e| {
                e.tags
                    .iter()
                    .any(|t| NOT_GOOD_BOT_TAGS.contains(&t.as_str()))
            })
            .map(|e| e.pattern.as_str())
            .collect();
        Self {
            http_library: build(&http, &mut skipped),
            known_bot: build(&bots, &mut skipped),
            not_good_bot: build(&not_good, &mut skipped),
            skipped_patterns: skipped,
        }
    }

    /// The process-wide classifier (compiled on first use, ~0.1 s).
    pub fn global() -> &'static UaClassifier {
        static C: OnceLock<UaClassifier> = OnceLock::new();
        C.get_or_init(UaClassifier::new)
    }

    /// Classifies a user agent seen at `ts_ms` (Unix ms; used for staleness).
    pub fn classify(&self, ua: &str, ts_ms: i64) -> UaClass {
        let ua = ua.trim();
        if ua.is_empty() || ua == "-" {
            return UaClass::Empty;
        }
        if self.http_library.as_ref().is_some_and(|r| r.is_match(ua)) {
            return UaClass::HttpLibrary;
        }
        if self.known_bot.as_ref().is_some_and(|r| r.is_match(ua)) {
            return UaClass::KnownBot;
        }
        match browser_version(ua) {
            Some((family, major)) => {
                if expected_major(family, ts_ms) - i64::from(major) > stale_after(family) {
                    UaClass::StaleBrowser
                } else {
                    UaClass::Browser
                }
            }
            None if ua.contains("MSIE ") || ua.contains("Trident/") => UaClass::StaleBrowser,
            None => UaClass::Other,
        }
    }
}

impl UaClassifier {
    /// Whether a user agent announces a bot that is good by doing so: a
    /// [`UaClass::KnownBot`] (search engines, SEO tools, monitors, feed
    /// readers, previews, ...) that matches no scanner or browser-automation
    /// pattern ([`NOT_GOOD_BOT_TAGS`]).
    pub fn announces_good_bot(&self, ua: &str) -> bool {
        self.classify(ua, 0) == UaClass::KnownBot
            && !self
                .not_good_bot
                .as_ref()
                .is_some_and(|r| r.is_match(ua.trim()))
    }
}

impl Default for UaClassifier {
    fn default() -> Self {
        Self::new()
    }
}

/// Browser families with a known release cadence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrowserFamily {
    /// Chrome, Chromium, Edge, Opera (Chromium major versions).
    Chromium,
    /// Firefox.
    Firefox,
    /// Safari (`Version/NN`).
    Safari,
}

const DAY_MS: i64 = 86_400_000;
/// Chrome 100 stable: 2022-03-29. Chrome ships every 4 weeks with holiday
/// gaps: 100 → 122 (2024-02-20) → 140 (2025-09-02) averages 31.3 days.
const CHROME_100_MS: i64 = 1_648_512_000_000;
/// Average days between Chrome majors, in ms (31.3 days).
const CHROME_CADENCE_MS: i64 = 2_704_320_000;
/// Firefox 100: 2022-05-03; 100 → 123 (2024-02-20) → 140 (2025-06-24)
/// averages 28.7 days.
const FIREFOX_100_MS: i64 = 1_651_536_000_000;
/// Average days between Firefox majors, in ms (28.7 days).
const FIREFOX_CADENCE_MS: i64 = 2_479_680_000;
/// Safari 15: 2021-09-20; yearly.
const SAFARI_15_MS: i64 = 1_632_096_000_000;

/// Major version a browser family is expected to ship at `ts_ms`.
pub fn expected_major(family: BrowserFamily, ts_ms: i64) -> i64 {
    match family {
        BrowserFamily::Chromium => 100 + (ts_ms - CHROME_100_MS).div_euclid(CHROME_CADENCE_MS),
        BrowserFamily::Firefox => 100 + (ts_ms - FIREFOX_100_MS).div_euclid(FIREFOX_CADENCE_MS),
        BrowserFamily::Safari => 15 + (ts_ms - SAFARI_15_MS).div_euclid(365 * DAY_MS + DAY_MS / 4),
    }
}

/// How many major versions behind counts as stale (about one year).
pub fn stale_after(family: BrowserFamily) -> i64 {
    match family {
        BrowserFamily::Chromium | BrowserFamily::Firefox => 13,
        BrowserFamily::Safari => 2,
    }
}

fn major_after(ua: &str, token: &str) -> Option<u32> {
    let i = ua.find(token)? + token.len();
    let digits: &str = &ua[i..];
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    if end == 0 || end > 4 {
        return None;
    }
    digits[..end].parse().ok()
}

/// Browser family and major version of a `Mozilla/5.0` browser agent.
pub fn browser_version(ua: &str) -> Option<(BrowserFamily, u32)> {
    if !ua.starts_with("Mozilla/5.0 (") {
        return None;
    }
    if let Some(v) = major_after(ua, "Edg/").or_else(|| major_after(ua, "EdgA/")) {
        return Some((BrowserFamily::Chromium, v));
    }
    if let Some(v) = major_after(ua, "Firefox/").or_else(|| major_after(ua, "FxiOS/")) {
        return Some((BrowserFamily::Firefox, v));
    }
    if let Some(v) = major_after(ua, "Chrome/").or_else(|| major_after(ua, "CriOS/")) {
        return Some((BrowserFamily::Chromium, v));
    }
    if ua.contains("Safari/")
        && let Some(v) = major_after(ua, "Version/")
    {
        return Some((BrowserFamily::Safari, v));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2024-03-04T00:00:00Z
    const T: i64 = 1_709_510_400_000;

    #[test]
    fn vendored_list_compiles_and_matches_its_instances() {
        let c = UaClassifier::global();
        assert!(c.skipped_patterns.is_empty(), "{:?}", c.skipped_patterns);
        let entries = crawler_entries();
        assert!(entries.len() > 1000);
        let mut checked = 0;
        for e in entries {
            for inst in &e.instances {
                let class = c.classify(inst, T);
                assert!(
                    matches!(class, UaClass::KnownBot | UaClass::HttpLibrary),
                    "{inst:?} ({}) classified {class:?}",
                    e.pattern
                );
                checked += 1;
            }
        }
        assert!(checked > 2000);
    }

    #[test]
    fn crawlers_and_monitors_announce_good_bots_scanners_and_headless_do_not() {
        let c = UaClassifier::global();
        for good in [
            "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            "Mozilla/5.0+(compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)",
            "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
        ] {
            assert!(c.announces_good_bot(good), "{good}");
        }
        for not_good in [
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/122.0.0.0 Safari/537.36",
            "Mozilla/5.00 (Nikto/2.5.0) (Evasions:None) (Test:000001)",
            "sqlmap/1.8#stable (https://sqlmap.org)",
            "curl/8.5.0",
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:123.0) Gecko/20100101 Firefox/123.0",
        ] {
            assert!(!c.announces_good_bot(not_good), "{not_good}");
        }
    }

    #[test]
    fn classes() {
        let c = UaClassifier::global();
        let chrome = |v: u32| {
            format!(
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{v}.0.0.0 Safari/537.36"
            )
        };
        // Chrome 122 shipped 2024-02-20.
        assert_eq!(expected_major(BrowserFamily::Chromium, T), 122);
        assert_eq!(expected_major(BrowserFamily::Firefox, T), 123);
        assert_eq!(expected_major(BrowserFamily::Safari, T), 17);
        assert_eq!(c.classify(&chrome(122), T), UaClass::Browser);
        assert_eq!(c.classify(&chrome(109), T), UaClass::Browser);
        assert_eq!(c.classify(&chrome(108), T), UaClass::StaleBrowser);
        assert_eq!(c.classify(&chrome(49), T), UaClass::StaleBrowser);
        let ff = "Mozilla/5.0 (X11; Linux x86_64; rv:123.0) Gecko/20100101 Firefox/123.0";
        assert_eq!(c.classify(ff, T), UaClass::Browser);
        let safari = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_3 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.3 Mobile/15E148 Safari/604.1";
        assert_eq!(c.classify(safari, T), UaClass::Browser);
        let old_safari = safari.replace("Version/17.3", "Version/13.1");
        assert_eq!(c.classify(&old_safari, T), UaClass::StaleBrowser);
        assert_eq!(
            c.classify("Mozilla/4.0 (compatible; MSIE 8.0; Windows NT 6.1)", T),
            UaClass::StaleBrowser
        );
        assert_eq!(
            c.classify("python-requests/2.31.0", T),
            UaClass::HttpLibrary
        );
        assert_eq!(c.classify("curl/8.4.0", T), UaClass::HttpLibrary);
        assert_eq!(c.classify("Go-http-client/1.1", T), UaClass::HttpLibrary);
        assert_eq!(
            c.classify(
                "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
                T
            ),
            UaClass::KnownBot
        );
        let headless = chrome(122).replace("Chrome/", "HeadlessChrome/");
        assert_eq!(c.classify(&headless, T), UaClass::KnownBot);
        assert!(!c.announces_good_bot(&headless));
        assert_eq!(c.classify("", T), UaClass::Empty);
        assert_eq!(c.classify("-", T), UaClass::Empty);
        assert_eq!(
            c.classify("ShopApp/5.2.1 (iPhone; iOS 17.3)", T),
            UaClass::Other
        );
    }
}
