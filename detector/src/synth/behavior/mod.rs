//! How each archetype behaves: one simulated session of requests.
//!
//! Every generator draws the identity (IP, user agent, cookie), a start time
//! from the archetype's temporal pattern, and a request sequence with its
//! timing, assets, referers, statuses and outcomes. Difficulty comes from
//! overlapping behaviour, not label noise: advanced scrapers and click-fraud
//! bots use current browser agents, residential addresses, human-like pauses
//! and (sometimes) render pages with assets; humans behind NAT lose their
//! referers and cookies, some browse like machines (call-centre power users)
//! and use aging corporate browsers; remote-browser-isolation users arrive as
//! headless Chrome from data centres.

use rand::{Rng, RngExt};

mod account_abuse;
mod good_bots;
mod humans;
mod scanners;
mod scrapers;

use account_abuse::{brute_forcer, card_tester, credential_stuffer};
use good_bots::{crawler, monitor};
use humans::{Human, human};
use scanners::vuln_scanner;
use scrapers::{advanced_scraper, click_fraud, scalper, simple_scraper};

use super::Archetype;
use super::agents::{
    Device, MODERN_LIBRARIES, Network, UNLISTED_CRAWLERS, UNLISTED_MONITORS, UNLISTED_TOOLS,
    app_ua, bot_agents, browser_ua, hex_id, human_behind, ip, lognormal, pick, pick_weighted,
};
use super::site::{PageKind, Site};
use crate::logs::Method;

/// One simulated request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SimRequest {
    pub(crate) ts_ms: i64,
    pub(crate) method: Method,
    /// Path with query string, as requested.
    pub(crate) path: String,
    pub(crate) status: u16,
    pub(crate) bytes: u64,
    /// Full referer URL, empty for none.
    pub(crate) referer: String,
    pub(crate) outcome: Option<&'static str>,
    pub(crate) user: Option<String>,
}

/// One simulated session.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct SimSession {
    pub(crate) archetype: Archetype,
    pub(crate) ip: String,
    pub(crate) ua: String,
    pub(crate) session_id: Option<String>,
    pub(crate) asn: Option<u32>,
    /// A forged address a bot puts in front of X-Forwarded-For.
    pub(crate) spoofed_xff: Option<String>,
    pub(crate) requests: Vec<SimRequest>,
}

impl SimSession {
    pub(crate) fn start_ms(&self) -> i64 {
        self.requests.first().map_or(0, |r| r.ts_ms)
    }
    pub(crate) fn end_ms(&self) -> i64 {
        self.requests.last().map_or(0, |r| r.ts_ms)
    }
}

/// Tenant facts the behaviours need.
pub(crate) struct TenantCtx<'a> {
    pub(crate) site: &'a Site,
    /// JSON logs (session ids, users and outcomes can be logged).
    pub(crate) json: bool,
    /// Start of the simulated window, Unix ms (UTC midnight).
    pub(crate) start_ms: i64,
    pub(crate) days: u32,
    pub(crate) utc_offset_min: i16,
    /// Shared addresses of offices and carrier-grade NATs.
    pub(crate) nat_pool: &'a [String],
    /// Public addresses of the mobile carriers' carrier-grade NATs that
    /// ordinary phone users share.
    pub(crate) cgnat_pool: &'a [String],
    /// The few most common phone browser builds of the moment.
    pub(crate) popular_mobile_uas: &'a [String],
    /// Product-drop times (scalpers).
    pub(crate) drops: &'a [i64],
    /// Credential-stuffing campaign windows.
    pub(crate) campaigns: &'a [(i64, i64)],
    /// Each campaign's proxy pool (same order as `campaigns`).
    pub(crate) campaign_pools: &'a [CampaignPool],
    /// Accounts that brute forcers of this tenant keep coming back to.
    pub(crate) targeted_accounts: &'a [String],
}

/// What one credential-stuffing campaign rents: residential /24s and
/// browser user agents, shared by all its low-and-slow sessions (the
/// cross-session features see the campaign; no single session does). A
/// tenant's first campaign is the slow one: it runs through the whole
/// window from dozens of /24s with a fresh agent per session, so within any
/// hour a prefix or agent sees at most a failure or two.
#[derive(Debug, Clone)]
pub(crate) struct CampaignPool {
    /// Draw a fresh current browser agent per session instead of the pool's.
    pub(crate) fresh_agents: bool,
    /// /24 prefixes `a.b.c`.
    pub(crate) prefixes: Vec<[u8; 3]>,
    /// User agents.
    pub(crate) user_agents: Vec<String>,
}

/// Longest pause inside a session (below the 30-minute session timeout).
const MAX_PAUSE_MS: f64 = 24.0 * 60_000.0;

/// Relative activity of people by local hour.
const HUMAN_HOURS: [f64; 24] = [
    0.3, 0.2, 0.15, 0.12, 0.12, 0.2, 0.45, 0.8, 1.1, 1.3, 1.4, 1.45, 1.5, 1.45, 1.4, 1.35, 1.3,
    1.35, 1.5, 1.7, 1.8, 1.6, 1.1, 0.6,
];
const OFFICE_HOURS: [f64; 24] = [
    0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.1, 0.6, 1.4, 1.6, 1.6, 1.5, 1.0, 1.4, 1.6, 1.6, 1.4, 1.0, 0.3,
    0.1, 0.05, 0.0, 0.0, 0.0,
];

enum When {
    Diurnal,
    Office,
    Uniform,
    Drop,
    Campaign,
}

fn start_time<R: Rng + ?Sized>(ctx: &TenantCtx<'_>, rng: &mut R, when: When) -> f64 {
    let span = f64::from(ctx.days) * 86_400_000.0;
    let local_day = |rng: &mut R, hours: &[f64; 24]| {
        let day = f64::from(rng.random_range(0..ctx.days.max(1)));
        let hour = pick_weighted(rng, hours) as f64;
        let local_ms = day * 86_400_000.0 + hour * 3_600_000.0 + rng.random::<f64>() * 3_600_000.0;
        ctx.start_ms as f64 + local_ms - f64::from(ctx.utc_offset_min) * 60_000.0
    };
    match when {
        When::Diurnal => local_day(rng, &HUMAN_HOURS),
        When::Office => local_day(rng, &OFFICE_HOURS),
        When::Uniform => ctx.start_ms as f64 + rng.random::<f64>() * span,
        When::Drop if !ctx.drops.is_empty() => {
            *pick(rng, ctx.drops) as f64 + rng.random_range(-10.0..25.0) * 60_000.0
        }
        When::Campaign if !ctx.campaigns.is_empty() => {
            let (a, b) = *pick(rng, ctx.campaigns);
            a as f64 + rng.random::<f64>() * (b - a) as f64
        }
        _ => ctx.start_ms as f64 + rng.random::<f64>() * span,
    }
}

/// Request sequence under construction.
struct Build<'a> {
    site: &'a Site,
    t: f64,
    reqs: Vec<SimRequest>,
    user: Option<String>,
}

impl<'a> Build<'a> {
    fn new(site: &'a Site, t: f64) -> Self {
        Self {
            site,
            t,
            reqs: Vec::new(),
            user: None,
        }
    }

    fn req(
        &mut self,
        method: Method,
        path: impl Into<String>,
        status: u16,
        bytes: u64,
        referer: &str,
    ) {
        self.reqs.push(SimRequest {
            ts_ms: self.t.round() as i64,
            method,
            path: path.into(),
            status,
            bytes,
            referer: referer.to_string(),
            outcome: None,
            user: self.user.clone(),
        });
    }

    fn outcome(&mut self, outcome: &'static str) {
        if let Some(r) = self.reqs.last_mut() {
            r.outcome = Some(outcome);
        }
    }

    fn wait(&mut self, ms: f64) {
        self.t += ms.clamp(0.0, MAX_PAUSE_MS);
    }

    /// GET a page; returns its absolute URL (the referer of what follows).
    fn page<R: Rng + ?Sized>(
        &mut self,
        rng: &mut R,
        path: &str,
        referer: &str,
        p404: f64,
    ) -> String {
        let (status, bytes) = if rng.random_bool(p404) {
            (404, 4_200)
        } else {
            (200, self.site.page_bytes(rng))
        };
        self.req(Method::Get, path, status, bytes, referer);
        self.site.url(path)
    }

    /// Loads assets after a page: each one revalidated (304) with `p304`,
    /// skipped (fresh in cache) with `p_skip`.
    fn assets<R: Rng + ?Sized>(
        &mut self,
        rng: &mut R,
        list: &[(String, u64)],
        page_url: &str,
        p304: f64,
        p_skip: f64,
    ) {
        let t0 = self.t;
        self.t += rng.random_range(40.0..400.0);
        for (path, bytes) in list {
            if rng.random_bool(p_skip) {
                continue;
            }
            let (status, b) = if rng.random_bool(p304) {
                (304, 0)
            } else {
                (200, *bytes)
            };
            let referer = if path.ends_with(".woff2") {
                self.site
                    .url(&format!("/static/css/main.{}.css", self.site.asset_version))
            } else {
                page_url.to_string()
            };
            self.req(Method::Get, path.clone(), status, b, &referer);
            self.t += rng.random_range(5.0..120.0);
        }
        // Rendering continues in the background; the clock moves on little.
        self.t = self.t.max(t0 + 50.0);
    }

    /// A login attempt; returns whether it succeeded.
    fn login(&mut self, user: &str, success: bool, referer: &str) -> bool {
        let saved = self.user.replace(user.to_string());
        let (status, bytes) = if success {
            (if self.site.is_api() { 200 } else { 302 }, 350)
        } else {
            (
                self.site.login_fail_status,
                if self.site.login_fail_status == 200 {
                    9_000
                } else {
                    420
                },
            )
        };
        self.req(Method::Post, self.site.login_post(), status, bytes, referer);
        self.outcome(if success {
            "login_success"
        } else {
            "login_failure"
        });
        if !success {
            self.user = saved;
        }
        success
    }

    fn payment(&mut self, success: bool, referer: &str) {
        let (status, bytes) = if success {
            (200, 1_800)
        } else {
            (self.site.pay_fail_status, 700)
        };
        self.req(
            Method::Post,
            self.site.payment_post(),
            status,
            bytes,
            referer,
        );
        self.outcome(if success {
            "payment_success"
        } else {
            "payment_failure"
        });
    }

    fn cart_add(&mut self, referer: &str) -> bool {
        match self.site.cart_add() {
            Some(p) => {
                self.req(Method::Post, p, 200, 600, referer);
                true
            }
            None => false,
        }
    }
}

/// The generators take the tenant's RNG as a trait object.
type R2 = dyn rand::Rng;

fn search_referer<R: Rng + ?Sized>(rng: &mut R) -> String {
    pick(
        rng,
        &[
            "https://www.google.com/",
            "https://www.bing.com/",
            "https://duckduckgo.com/",
            "https://www.google.de/",
        ],
    )
    .to_string()
}

fn social_referer<R: Rng + ?Sized>(rng: &mut R) -> String {
    pick(
        rng,
        &[
            "https://t.co/",
            "https://www.facebook.com/",
            "https://www.reddit.com/",
            "https://news.ycombinator.com/",
            "https://l.instagram.com/",
        ],
    )
    .to_string()
}

fn ad_referer<R: Rng + ?Sized>(rng: &mut R) -> String {
    format!(
        "{}{:x}",
        pick(
            rng,
            &[
                "https://www.googleadservices.com/pagead/aclk?sa=L&ai=",
                "https://googleads.g.doubleclick.net/aclk?adurl=",
                "https://ad.doubleclick.net/ddm/clk/"
            ]
        ),
        rng.random::<u32>()
    )
}

fn session_id<R: Rng + ?Sized>(ctx: &TenantCtx<'_>, rng: &mut R, p: f64) -> Option<String> {
    (ctx.json && rng.random_bool(p)).then(|| hex_id(rng))
}

/// The session of `b`'s requests; its AS comes from the address plan.
fn finish(
    archetype: Archetype,
    ip: String,
    ua: String,
    sid: Option<String>,
    b: Build<'_>,
) -> SimSession {
    let asn = ip.parse().ok().and_then(super::netplan::asn_of);
    SimSession {
        archetype,
        ip,
        ua,
        session_id: sid,
        asn,
        spoofed_xff: None,
        requests: b.reqs,
    }
}

/// Simulates one session of `archetype`.
pub(crate) fn simulate(ctx: &TenantCtx<'_>, rng: &mut R2, archetype: Archetype) -> SimSession {
    match archetype {
        Archetype::HumanBrowser => human(ctx, rng, Human::Normal),
        Archetype::HumanNat => human(ctx, rng, Human::Nat),
        Archetype::HumanHeadless => human(ctx, rng, Human::Headless),
        Archetype::BenignCrawler => crawler(ctx, rng),
        Archetype::UptimeMonitor => monitor(ctx, rng),
        Archetype::SimpleScraper => simple_scraper(ctx, rng),
        Archetype::AdvancedScraper => advanced_scraper(ctx, rng),
        Archetype::CredentialStuffer => credential_stuffer(ctx, rng),
        Archetype::BruteForcer => brute_forcer(ctx, rng),
        Archetype::CardTester => card_tester(ctx, rng),
        Archetype::Scalper => scalper(ctx, rng),
        Archetype::ClickFraud => click_fraud(ctx, rng),
        Archetype::VulnScanner => vuln_scanner(ctx, rng),
    }
}
