//! Verified crawlers: the IP ranges search engines publish for their
//! crawlers, in the JSON format of Google's `googlebot.json` and Bing's
//! `bingbot.json`:
//!
//! ```json
//! {"creationTime": "2024-03-01T15:46:25.000000",
//!  "prefixes": [{"ipv4Prefix": "66.249.64.0/27"}, {"ipv6Prefix": "2001:4860:4801:10::/64"}]}
//! ```
//!
//! Each file is tied to the user-agent token its crawler announces
//! (`Googlebot`, `bingbot`; by default the file's stem). A session whose
//! user agent carries the token is *verified* when its address is in the
//! ranges and *spoofed* when it is not. Without any file both are missing;
//! for a host-name client they are missing too (nothing is resolved).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::NetworkError;
use crate::logs::Cidr;

/// One crawler-ranges file in the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrawlerRangesFile {
    /// The JSON file.
    pub file: PathBuf,
    /// The token the crawler's user agent carries (case-insensitive);
    /// default: the file name without extension (`googlebot.json` →
    /// `googlebot`).
    #[serde(default)]
    pub user_agent: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RangesJson {
    #[serde(default)]
    creation_time: Option<String>,
    prefixes: Vec<PrefixJson>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PrefixJson {
    #[serde(default)]
    ipv4_prefix: Option<String>,
    #[serde(default)]
    ipv6_prefix: Option<String>,
}

/// One crawler's published ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Crawler {
    /// Lower-case user-agent token.
    pub token: String,
    /// `creationTime` of the file, as written.
    pub created: Option<String>,
    /// The networks.
    pub ranges: Vec<Cidr>,
}

/// The loaded crawler ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CrawlerRanges {
    /// One entry per file.
    pub crawlers: Vec<Crawler>,
}

/// A session's crawler verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrawlerCheck {
    /// No ranges loaded, or the client is a host name: unknown.
    Unknown,
    /// The user agent claims no loaded crawler.
    NotClaimed,
    /// Claims a crawler and is in its ranges.
    Verified,
    /// Claims a crawler and is outside its ranges.
    Spoofed,
}

impl Crawler {
    /// Parses one file's JSON.
    pub fn from_json(token: &str, text: &str) -> Result<Self, String> {
        let j: RangesJson = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let mut ranges = Vec::with_capacity(j.prefixes.len());
        for (i, p) in j.prefixes.iter().enumerate() {
            let s = match (&p.ipv4_prefix, &p.ipv6_prefix) {
                (Some(s), None) | (None, Some(s)) => s,
                _ => {
                    return Err(format!(
                        "prefixes[{i}]: needs exactly one of ipv4Prefix or ipv6Prefix"
                    ));
                }
            };
            let c: Cidr = s.parse().map_err(|e| format!("prefixes[{i}]: {e}"))?;
            if c.addr.is_ipv4() != p.ipv4_prefix.is_some() {
                return Err(format!("prefixes[{i}]: {s} is in the wrong family"));
            }
            // A hostile or broken file must not verify the whole Internet.
            if c.len < if c.addr.is_ipv4() { 8 } else { 16 } {
                return Err(format!("prefixes[{i}]: {s} is too broad for a crawler"));
            }
            ranges.push(c);
        }
        if ranges.is_empty() {
            return Err("no prefixes".into());
        }
        let token = token.trim().to_ascii_lowercase();
        if token.is_empty() {
            return Err("empty user-agent token".into());
        }
        Ok(Self {
            token,
            created: j.creation_time,
            ranges,
        })
    }

    fn claimed_by(&self, ua_lower: &str) -> bool {
        ua_lower.contains(&self.token)
    }

    fn contains(&self, ip: IpAddr) -> bool {
        self.ranges.iter().any(|c| c.contains(ip))
    }
}

impl CrawlerRanges {
    /// Loads every file; an unreadable or invalid file is an error naming it.
    pub fn load(files: &[CrawlerRangesFile]) -> Result<Self, NetworkError> {
        let mut crawlers = Vec::new();
        for f in files {
            let text = std::fs::read_to_string(&f.file).map_err(|source| NetworkError::Io {
                path: f.file.clone(),
                source,
            })?;
            let token = f
                .user_agent
                .clone()
                .or_else(|| stem(&f.file))
                .unwrap_or_default();
            let c = Crawler::from_json(&token, &text).map_err(|problem| NetworkError::Invalid {
                path: f.file.clone(),
                problem,
            })?;
            crawlers.push(c);
        }
        Ok(Self { crawlers })
    }

    /// No ranges loaded.
    pub fn is_empty(&self) -> bool {
        self.crawlers.is_empty()
    }

    /// The verdict for a user agent and client address.
    pub fn check(&self, user_agent: &str, addr: Option<IpAddr>) -> CrawlerCheck {
        let Some(ip) = addr.filter(|_| !self.is_empty()) else {
            return CrawlerCheck::Unknown;
        };
        let ua = user_agent.to_ascii_lowercase();
        let mut claimed = false;
        for c in self.crawlers.iter().filter(|c| c.claimed_by(&ua)) {
            claimed = true;
            if c.contains(ip) {
                return CrawlerCheck::Verified;
            }
        }
        if claimed {
            CrawlerCheck::Spoofed
        } else {
            CrawlerCheck::NotClaimed
        }
    }
}

fn stem(p: &Path) -> Option<String> {
    p.file_stem().map(|s| s.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The dated fixture shipped with the crate.
    fn fixture() -> CrawlerRanges {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/crawler-ranges");
        CrawlerRanges::load(&[
            CrawlerRangesFile {
                file: dir.join("googlebot.json"),
                user_agent: None,
            },
            CrawlerRangesFile {
                file: dir.join("bingbot.json"),
                user_agent: None,
            },
        ])
        .unwrap()
    }

    #[test]
    fn googlebot_and_bingbot_from_their_published_format() {
        let r = fixture();
        assert_eq!(r.crawlers[0].token, "googlebot");
        assert!(r.crawlers[0].created.is_some());
        let gb = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
        let bb = "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)";
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert_eq!(r.check(gb, ip("66.249.66.1")), CrawlerCheck::Verified);
        assert_eq!(
            r.check(gb, ip("::ffff:66.249.66.1")),
            CrawlerCheck::Verified
        );
        assert_eq!(r.check(gb, ip("93.184.216.34")), CrawlerCheck::Spoofed);
        assert_eq!(
            r.check(gb, ip("2001:4860:4801:10::7")),
            CrawlerCheck::Verified
        );
        assert_eq!(r.check(bb, ip("157.55.39.5")), CrawlerCheck::Verified);
        assert_eq!(r.check(bb, ip("66.249.66.1")), CrawlerCheck::Spoofed);
        assert_eq!(
            r.check("curl/8.4.0", ip("66.249.66.1")),
            CrawlerCheck::NotClaimed
        );
        assert_eq!(r.check(gb, None), CrawlerCheck::Unknown);
        assert_eq!(
            CrawlerRanges::default().check(gb, ip("66.249.66.1")),
            CrawlerCheck::Unknown
        );
    }

    #[test]
    fn bad_files_are_refused_with_their_name() {
        for bad in [
            r#"{"prefixes":[]}"#,
            r#"{"prefixes":[{"ipv4Prefix":"66.249.64.0/33"}]}"#,
            r#"{"prefixes":[{"ipv4Prefix":"2001:db8::/32"}]}"#,
            r#"{"prefixes":[{"ipv4Prefix":"1.2.3.0/24","ipv6Prefix":"::/0"}]}"#,
            r#"{"prefixes":[{"ipv5Prefix":"1.2.3.0/24"}]}"#,
            r#"{"prefixes":[{"ipv4Prefix":"0.0.0.0/0"}]}"#,
            r#"{"prefixes":[{"ipv6Prefix":"::/0"}]}"#,
            "[]",
        ] {
            assert!(Crawler::from_json("x", bad).is_err(), "{bad}");
        }
        let e = CrawlerRanges::load(&[CrawlerRangesFile {
            file: "/nonexistent/googlebot.json".into(),
            user_agent: None,
        }])
        .unwrap_err();
        assert!(e.to_string().contains("/nonexistent/googlebot.json"), "{e}");
    }
}
