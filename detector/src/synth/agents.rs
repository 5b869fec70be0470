//! Who sends the synthetic traffic: user agents, IP addresses and AS numbers.
//!
//! Browser user agents are built from the real formats browsers send (Chrome's
//! reduced UA, Firefox, Safari/iOS, Edge) with a version drawn relative to the
//! release expected on the session's date ([`crate::ua::expected_major`]);
//! bot and library user agents are real `instances` from the vendored
//! crawler-user-agents list, by tag.

use std::sync::OnceLock;

use rand::{Rng, RngExt};

use crate::ua::{BrowserFamily, crawler_entries, expected_major};

/// Picks a uniformly random element (the slice must not be empty).
pub(crate) fn pick<'a, T, R: Rng + ?Sized>(rng: &mut R, xs: &'a [T]) -> &'a T {
    &xs[rng.random_range(0..xs.len())]
}

/// Picks an index with probability proportional to `weights`.
pub(crate) fn pick_weighted<R: Rng + ?Sized>(rng: &mut R, weights: &[f64]) -> usize {
    let total: f64 = weights.iter().sum();
    let mut u = rng.random::<f64>() * total;
    for (i, w) in weights.iter().enumerate() {
        if u < *w {
            return i;
        }
        u -= w;
    }
    weights.len() - 1
}

/// A log-normal draw with the given median and log-scale σ.
pub(crate) fn lognormal<R: Rng + ?Sized>(rng: &mut R, median: f64, sigma: f64) -> f64 {
    let z: f64 = rng.sample(rand_distr::StandardNormal);
    median * (sigma * z).exp()
}

/// Instances of the vendored list whose entry has one of `tags`.
fn instances_with(tags: &[&str]) -> Vec<String> {
    crawler_entries()
        .iter()
        .filter(|e| e.tags.iter().any(|t| tags.contains(&t.as_str())))
        .flat_map(|e| e.instances.iter().cloned())
        .filter(|s| !s.is_empty() && s.len() < 400 && !s.contains('"') && !s.contains('\\'))
        .collect()
}

/// Real bot user agents, grouped for the archetypes.
pub(crate) struct BotAgents {
    pub(crate) crawlers: Vec<String>,
    pub(crate) monitors: Vec<String>,
    pub(crate) scanners: Vec<String>,
    pub(crate) libraries: Vec<String>,
    pub(crate) headless: Vec<String>,
}

/// The bot user agents (built once).
pub(crate) fn bot_agents() -> &'static BotAgents {
    static A: OnceLock<BotAgents> = OnceLock::new();
    A.get_or_init(|| {
        let nonempty = |v: Vec<String>, fallback: &str| {
            if v.is_empty() {
                vec![fallback.to_string()]
            } else {
                v
            }
        };
        BotAgents {
            crawlers: nonempty(
                instances_with(&[
                    "search-engine",
                    "seo",
                    "ai-crawler",
                    "archiver",
                    "feed-reader",
                    "social-preview",
                    "academic",
                ]),
                "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
            ),
            monitors: nonempty(instances_with(&["monitoring"]), "UptimeRobot/2.0"),
            scanners: nonempty(instances_with(&["scanner"]), "Nikto"),
            libraries: nonempty(instances_with(&["http-library"]), "python-requests/2.31.0"),
            headless: nonempty(
                instances_with(&["browser-automation"]),
                "HeadlessChrome/120.0.0.0",
            ),
        }
    })
}

/// Current-style HTTP library user agents (versions of 2023–2024).
pub(crate) const MODERN_LIBRARIES: &[&str] = &[
    "python-requests/2.31.0",
    "python-requests/2.32.3",
    "curl/8.4.0",
    "curl/7.88.1",
    "Go-http-client/1.1",
    "Go-http-client/2.0",
    "okhttp/4.12.0",
    "axios/1.6.7",
    "node-fetch/1.0 (+https://github.com/bitinn/node-fetch)",
    "Scrapy/2.11.0 (+https://scrapy.org)",
    "python-httpx/0.27.0",
    "Apache-HttpClient/4.5.14 (Java/17.0.9)",
    "Python/3.11 aiohttp/3.9.3",
];

/// Bot agents that are *not* in the vendored crawler list (the list the
/// `ua_known_bot` feature classifies with), so the generator does not draw
/// only from the classifier's own list. Crawlers: in-house and new crawlers
/// that announce themselves but that no public list has yet (one hides its
/// token in a browser string and classifies as a browser).
pub(crate) const UNLISTED_CRAWLERS: &[&str] = &[
    "Mozilla/5.0 (compatible; PriceScope/2.4; +https://pricescope.example/about)",
    "Mozilla/5.0 (compatible; AcmeSearch/1.1; +https://search.acme.example/help)",
    "Mozilla/5.0 (compatible; LinkAudit/5.0; +https://linkaudit.example)",
    "Mozilla/5.0 (compatible; ContentIndexer/0.9)",
    "Mozilla/5.0 (compatible; NewsHarvest/3.1; +https://newsharvest.example/info)",
    "Mozilla/5.0 (compatible; CatalogBot/2.0; +https://catalogbot.example)",
    "Mozilla/5.0 (compatible; Marketlens-Crawler/4.1; +https://marketlens.example/crawler)",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko; compatible; KnowledgeFetcher/1.0) Chrome/120.0.0.0 Safari/537.36",
];

/// Health checkers that are not in the vendored list: real load-balancer
/// and orchestrator probes (Kubernetes, AWS ELB, Google Cloud, Prometheus'
/// blackbox exporter, Consul) and in-house monitors.
pub(crate) const UNLISTED_MONITORS: &[&str] = &[
    "kube-probe/1.29",
    "kube-probe/1.30",
    "ELB-HealthChecker/2.0",
    "GoogleHC/1.0",
    "Blackbox-Exporter/0.24.0",
    "Consul Health Check",
    "StatusPing/2.0 (+https://statusping.example)",
    "SiteWatch/4.2 (https://sitewatch.example)",
];

/// Scripting runtimes' default agents and custom tools that are not in the
/// vendored list (they classify as "other", like mobile-app agents).
pub(crate) const UNLISTED_TOOLS: &[&str] = &[
    "Java/17.0.9",
    "Java/1.8.0_392",
    "Ruby",
    "PHP/8.2 (Linux)",
    "Dart/3.2 (dart:io)",
    "node",
    "undici",
    "retailintel-agent/5.1",
    "catalog-sync/2.3 (+ops@reseller.example)",
    "Mozilla/5.0",
];

/// Share of people's browsers more than a year out of date (14 or more
/// Chromium majors, 3 or more Safari majors behind): unmanaged machines,
/// old phones and tablets that no longer receive updates, frozen corporate
/// images.
pub(crate) const HUMAN_STALE_SHARE: f64 = 0.22;

/// Major versions behind current of a person's browser: most auto-update
/// (0–3 behind), some lag a few months, [`HUMAN_STALE_SHARE`] are more than
/// a year behind (a long tail up to five years).
pub(crate) fn human_behind<R: Rng + ?Sized>(rng: &mut R) -> i64 {
    if rng.random_bool(HUMAN_STALE_SHARE) {
        if rng.random_bool(0.7) {
            rng.random_range(14..30)
        } else {
            rng.random_range(30..65)
        }
    } else if rng.random_bool(0.15) {
        rng.random_range(4..12)
    } else {
        rng.random_range(0..4)
    }
}

/// Desktop or phone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Device {
    Desktop,
    Mobile,
}

/// A browser user agent for a session starting at `ts_ms`, `behind` major
/// versions older than expected (0 = current).
pub(crate) fn browser_ua<R: Rng + ?Sized>(
    rng: &mut R,
    ts_ms: i64,
    device: Device,
    behind: i64,
    headless: bool,
) -> String {
    let chrome = (expected_major(BrowserFamily::Chromium, ts_ms) - behind).max(30);
    let firefox = (expected_major(BrowserFamily::Firefox, ts_ms) - behind).max(30);
    // Safari moves yearly: a year behind (14+ Chrome majors) is 3+ Safari majors.
    let safari_behind = if behind >= 14 {
        3 + (behind - 14) / 12
    } else {
        behind / 12
    };
    let safari = (expected_major(BrowserFamily::Safari, ts_ms) - safari_behind).max(9);
    let chrome_name = if headless { "HeadlessChrome" } else { "Chrome" };
    match device {
        Device::Desktop => match pick_weighted(rng, &[0.62, 0.12, 0.08, 0.10, 0.08]) {
            0 => {
                let os = pick(
                    rng,
                    &[
                        "Windows NT 10.0; Win64; x64",
                        "Macintosh; Intel Mac OS X 10_15_7",
                        "X11; Linux x86_64",
                    ],
                );
                format!(
                    "Mozilla/5.0 ({os}) AppleWebKit/537.36 (KHTML, like Gecko) {chrome_name}/{chrome}.0.0.0 Safari/537.36"
                )
            }
            1 => {
                let os = pick(
                    rng,
                    &[
                        "Windows NT 10.0; Win64; x64",
                        "Macintosh; Intel Mac OS X 10.15",
                        "X11; Linux x86_64",
                        "X11; Ubuntu; Linux x86_64",
                    ],
                );
                format!("Mozilla/5.0 ({os}; rv:{firefox}.0) Gecko/20100101 Firefox/{firefox}.0")
            }
            2 => {
                let minor = rng.random_range(0..5);
                format!(
                    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/{safari}.{minor} Safari/605.1.15"
                )
            }
            3 => format!(
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) {chrome_name}/{chrome}.0.0.0 Safari/537.36 Edg/{chrome}.0.{}.{}",
                rng.random_range(1000..3000),
                rng.random_range(10..200)
            ),
            _ => format!(
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) {chrome_name}/{chrome}.0.0.0 Safari/537.36 OPR/{}.0.0.0",
                chrome - 14
            ),
        },
        Device::Mobile => match pick_weighted(rng, &[0.5, 0.42, 0.08]) {
            0 => {
                let model = pick(rng, &["K", "K", "K", "SM-S918B", "Pixel 8"]);
                format!(
                    "Mozilla/5.0 (Linux; Android 10; {model}) AppleWebKit/537.36 (KHTML, like Gecko) {chrome_name}/{chrome}.0.0.0 Mobile Safari/537.36"
                )
            }
            1 => {
                let ios_minor = rng.random_range(0..6);
                format!(
                    "Mozilla/5.0 (iPhone; CPU iPhone OS {safari}_{ios_minor} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/{safari}.{ios_minor} Mobile/15E148 Safari/604.1"
                )
            }
            _ => format!(
                "Mozilla/5.0 (Android 14; Mobile; rv:{firefox}.0) Gecko/{firefox}.0 Firefox/{firefox}.0"
            ),
        },
    }
}

/// A mobile-app user agent of an API tenant's own app.
pub(crate) fn app_ua<R: Rng + ?Sized>(rng: &mut R, app: &str) -> String {
    let (major, minor) = (rng.random_range(4..7), rng.random_range(0..20));
    if rng.random_bool(0.55) {
        let model = pick(
            rng,
            &["iPhone14,2", "iPhone15,3", "iPhone13,1", "iPhone16,1"],
        );
        format!(
            "{app}/{major}.{minor} (iOS 17.{}; {model}) CFNetwork/1494.0.7 Darwin/23.4.0",
            rng.random_range(0..5)
        )
    } else {
        format!("okhttp/4.{}.0", rng.random_range(9..13))
    }
}

/// Where an address comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Network {
    Residential,
    Mobile,
    Datacenter,
}

pub(crate) const RESIDENTIAL_FIRST_OCTETS: &[u8] = &[
    24, 47, 67, 68, 69, 71, 73, 76, 79, 81, 82, 84, 86, 87, 90, 92, 95, 98, 108, 109, 151, 174,
    176, 178, 184, 212, 213, 217,
];
pub(crate) const MOBILE_FIRST_OCTETS: &[u8] =
    &[37, 46, 80, 88, 89, 94, 102, 105, 115, 117, 166, 172, 223];
pub(crate) const DATACENTER_FIRST_OCTETS: &[u8] = &[
    3, 13, 18, 34, 35, 44, 52, 54, 104, 138, 139, 142, 143, 157, 159, 161, 164, 165, 167, 188, 195,
];

/// Residential ISPs, mobile carriers and hosting providers (AS numbers).
pub(crate) const RESIDENTIAL_ASNS: &[u32] = &[
    7922, 3320, 3215, 2856, 7018, 701, 20115, 6830, 5089, 1136, 3352, 12322,
];
pub(crate) const MOBILE_ASNS: &[u32] = &[21928, 22394, 6167, 12430, 3209, 25135, 45609];
pub(crate) const DATACENTER_ASNS: &[u32] = &[
    16509, 14061, 24940, 15169, 8075, 16276, 63949, 20473, 45102, 396982,
];

/// A public-looking IPv4 (or, for 12 % of residential/mobile, IPv6) address
/// (residential IPv6 in 2a02:1000–7fff, mobile in 2a02:8000–ffff; see
/// [`super::netplan`]).
pub(crate) fn ip<R: Rng + ?Sized>(rng: &mut R, net: Network) -> String {
    if net != Network::Datacenter && rng.random_bool(0.12) {
        let block = if net == Network::Mobile {
            0x8000..0xffffu32
        } else {
            0x1000..0x7fffu32
        };
        return format!(
            "2a02:{:x}:{:x}:{:x}::{:x}",
            rng.random_range(block),
            rng.random_range(0..0xffffu32),
            rng.random_range(0..0xffffu32),
            rng.random_range(1..0xffffu32)
        );
    }
    let first = match net {
        Network::Residential => *pick(rng, RESIDENTIAL_FIRST_OCTETS),
        Network::Mobile => *pick(rng, MOBILE_FIRST_OCTETS),
        Network::Datacenter => *pick(rng, DATACENTER_FIRST_OCTETS),
    };
    format!(
        "{first}.{}.{}.{}",
        rng.random_range(0..=255u8),
        rng.random_range(0..=255u8),
        rng.random_range(1..=254u8)
    )
}

/// 16 hex digits (session ids, user hashes).
pub(crate) fn hex_id<R: Rng + ?Sized>(rng: &mut R) -> String {
    format!("{:016x}", rng.random::<u64>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ua::{UaClass, UaClassifier};
    use rand::SeedableRng;

    #[test]
    fn generated_agents_fall_in_the_intended_classes() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let c = UaClassifier::global();
        let t = 1_709_510_400_000;
        for _ in 0..300 {
            for device in [Device::Desktop, Device::Mobile] {
                let behind = rng.random_range(0..4);
                let cur = browser_ua(&mut rng, t, device, behind, false);
                assert_eq!(c.classify(&cur, t), UaClass::Browser, "{cur}");
                let behind = rng.random_range(20..40);
                let old = browser_ua(&mut rng, t, device, behind, false);
                assert_eq!(c.classify(&old, t), UaClass::StaleBrowser, "{old}");
            }
            let headless = browser_ua(&mut rng, t, Device::Desktop, 0, true);
            if headless.contains("HeadlessChrome") {
                assert_eq!(c.classify(&headless, t), UaClass::KnownBot, "{headless}");
            }
        }
        let a = bot_agents();
        for ua in a
            .crawlers
            .iter()
            .chain(&a.monitors)
            .chain(&a.scanners)
            .chain(&a.headless)
        {
            assert!(
                matches!(c.classify(ua, t), UaClass::KnownBot | UaClass::HttpLibrary),
                "{ua}"
            );
        }
        // The unlisted agents really are outside the classifier's list.
        for ua in UNLISTED_CRAWLERS
            .iter()
            .chain(UNLISTED_MONITORS)
            .chain(UNLISTED_TOOLS)
        {
            assert!(
                !matches!(c.classify(ua, t), UaClass::KnownBot | UaClass::HttpLibrary),
                "{ua} is in the vendored list"
            );
        }
        for ua in MODERN_LIBRARIES {
            assert_eq!(c.classify(ua, t), UaClass::HttpLibrary, "{ua}");
        }
        assert!(
            ip(&mut rng, Network::Datacenter)
                .parse::<std::net::IpAddr>()
                .is_ok()
        );
        for _ in 0..100 {
            let a = ip(&mut rng, Network::Residential);
            assert!(a.parse::<std::net::IpAddr>().is_ok(), "{a}");
        }
    }
}
