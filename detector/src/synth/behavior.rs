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

use super::Archetype;
use super::agents::{
    Device, MODERN_LIBRARIES, Network, app_ua, asn, bot_agents, browser_ua, hex_id, ip, lognormal,
    pick, pick_weighted,
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
    /// Product-drop times (scalpers).
    pub(crate) drops: &'a [i64],
    /// Credential-stuffing campaign windows.
    pub(crate) campaigns: &'a [(i64, i64)],
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

fn finish(
    archetype: Archetype,
    ip: String,
    net: Network,
    ua: String,
    sid: Option<String>,
    b: Build<'_>,
    rng: &mut R2,
) -> SimSession {
    SimSession {
        archetype,
        ip,
        ua,
        session_id: sid,
        asn: Some(asn(rng, net)),
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

#[derive(Clone, Copy, PartialEq, Eq)]
enum Human {
    Normal,
    /// Behind an office or carrier NAT: shared address, no cookies, no
    /// cache, referers stripped by the proxy, often an aging corporate
    /// browser; half are power users (call centres, back offices).
    Nat,
    /// Remote browser isolation: a real person whose browser runs headless
    /// in a data centre.
    Headless,
}

fn human(ctx: &TenantCtx<'_>, rng: &mut R2, variant: Human) -> SimSession {
    let site = ctx.site;
    if variant == Human::Nat {
        return nat_humans(ctx, rng);
    }
    let start = start_time(ctx, rng, When::Diurnal);
    let mobile_share = match (variant, site.kind) {
        (Human::Normal, super::TenantKind::Ecommerce) => 0.55,
        (Human::Normal, super::TenantKind::Bank) => 0.35,
        (Human::Normal, _) => 0.25,
        _ => 0.05,
    };
    let device = if rng.random_bool(mobile_share) {
        Device::Mobile
    } else {
        Device::Desktop
    };
    let (addr, net) = match variant {
        Human::Headless => (ip(rng, Network::Datacenter), Network::Datacenter),
        _ => {
            let net = if device == Device::Mobile && rng.random_bool(0.6) {
                Network::Mobile
            } else {
                Network::Residential
            };
            (ip(rng, net), net)
        }
    };
    let behind = if variant == Human::Normal && rng.random_bool(0.04) {
        rng.random_range(14..40)
    } else {
        rng.random_range(0..4)
    };
    let headless_ua = variant == Human::Headless && rng.random_bool(0.5);
    let app_user = site.is_api() && variant == Human::Normal && rng.random_bool(0.7);
    let ua = if app_user {
        app_ua(rng, "ShopApp")
    } else {
        browser_ua(rng, start as i64, device, behind, headless_ua)
    };
    let sid = session_id(ctx, rng, 0.97);
    let mut b = Build::new(site, start);
    if site.is_api() {
        api_human(ctx, rng, &mut b, app_user, true, 0.0);
    } else {
        let style = HumanStyle {
            no_cache: variant == Human::Headless,
            strip_referer: rng.random_bool(0.05),
            power: false,
            returning: variant == Human::Normal && rng.random_bool(0.4),
            logins: true,
            purchases: true,
            item_bias: 0.0,
            tabs: rng.random_bool(0.25),
        };
        web_human(ctx, rng, &mut b, style);
    }
    let archetype = if variant == Human::Normal {
        Archetype::HumanBrowser
    } else {
        Archetype::HumanHeadless
    };
    finish(archetype, addr, net, ua, sid, b, rng)
}

/// Several people behind one office or carrier NAT with the same managed
/// browser image (or the same app build): without cookies the sessionizer
/// can only key them by (IP, user agent), so their visits arrive as one
/// session — many requests, several logins (some failing), high rates. No
/// cache (every page reloads its assets); half the proxies strip referers;
/// half the offices are call centres with power users.
fn nat_humans(ctx: &TenantCtx<'_>, rng: &mut R2) -> SimSession {
    let site = ctx.site;
    let power = rng.random_bool(0.5);
    let start = start_time(ctx, rng, if power { When::Office } else { When::Diurnal });
    let addr = pick(rng, ctx.nat_pool).clone();
    let ua = if site.is_api() {
        if rng.random_bool(0.6) {
            format!("okhttp/4.{}.0", rng.random_range(9..13))
        } else {
            "ShopApp/5.12 (iOS 17.4; iPhone14,2) CFNetwork/1494.0.7 Darwin/23.4.0".to_string()
        }
    } else {
        let behind = if rng.random_bool(0.45) {
            rng.random_range(14..40)
        } else {
            rng.random_range(0..4)
        };
        browser_ua(rng, start as i64, Device::Desktop, behind, false)
    };
    let style = HumanStyle {
        no_cache: true,
        strip_referer: rng.random_bool(0.5),
        power,
        returning: false,
        logins: true,
        purchases: true,
        item_bias: 0.0,
        tabs: false,
    };
    let people = rng.random_range(2..8);
    let mut reqs = Vec::new();
    let mut t = start;
    for _ in 0..people {
        let mut b = Build::new(site, t);
        if site.is_api() {
            api_human(ctx, rng, &mut b, true, true, 0.0);
        } else {
            web_human(ctx, rng, &mut b, style);
        }
        reqs.extend(b.reqs);
        // The next person starts within 10 minutes: the merged stream never
        // pauses longer than one person's longest pause (< 30 minutes).
        t += rng.random_range(0.0..600_000.0);
    }
    reqs.sort_by_key(|r| r.ts_ms);
    let mut b = Build::new(site, start);
    b.reqs = reqs;
    finish(
        Archetype::HumanNat,
        addr,
        Network::Residential,
        ua,
        None,
        b,
        rng,
    )
}

fn login_prob(site: &Site) -> f64 {
    match site.kind {
        super::TenantKind::Ecommerce => 0.12,
        super::TenantKind::Bank => 0.7,
        super::TenantKind::Saas => 0.5,
        super::TenantKind::Api => 0.4,
    }
}

/// A person logging in: mostly succeeds, often after a typo; 8 % give up
/// after failing. Returns whether they are logged in.
fn human_login(rng: &mut R2, b: &mut Build<'_>, referer: &str) -> bool {
    let user = hex_id(rng);
    let gives_up = rng.random_bool(0.08);
    let tries = if gives_up { rng.random_range(1..4) } else { 3 };
    for attempt in 0..tries {
        b.wait(lognormal(rng, 9_000.0, 0.5));
        let p_fail = if gives_up {
            1.0
        } else if attempt == 0 {
            0.2
        } else {
            0.3
        };
        let ok = !rng.random_bool(p_fail) || (!gives_up && attempt == tries - 1);
        if b.login(&user, ok, referer) {
            return true;
        }
    }
    false
}

/// How a person's browser behaves.
#[derive(Clone, Copy)]
struct HumanStyle {
    /// Every page reloads its assets; no revalidation (304).
    no_cache: bool,
    /// A proxy removes the Referer header.
    strip_referer: bool,
    /// Fast, long, office-hours visits.
    power: bool,
    /// Has assets cached from an earlier visit.
    returning: bool,
    /// May log in (scrapers that imitate people use accounts of their own).
    logins: bool,
    /// May add to cart and pay (people do; imitating scrapers do not).
    purchases: bool,
    /// Extra probability of going to an item page next (scrapers' target).
    item_bias: f64,
    /// Opens several items from a list in new tabs at once, then reads them.
    tabs: bool,
}

fn web_human(ctx: &TenantCtx<'_>, rng: &mut R2, b: &mut Build<'_>, style: HumanStyle) {
    let site = ctx.site;
    let HumanStyle {
        no_cache,
        strip_referer,
        power,
        returning,
        logins,
        purchases,
        item_bias,
        tabs,
    } = style;
    let n_pages = if power {
        lognormal(rng, 22.0, 0.6).round().clamp(3.0, 150.0) as usize
    } else if rng.random_bool(0.3) {
        1
    } else {
        (1.0 + lognormal(rng, 4.0, 0.9).round()).min(150.0) as usize
    };
    let entry = pick_weighted(rng, &[0.38, 0.32, 0.15, 0.08, 0.07]);
    let mut referer = match entry {
        0 => search_referer(rng),
        1 => String::new(),
        2 => social_referer(rng),
        3 => ad_referer(rng),
        _ => "https://www.example-blog.com/review".to_string(),
    };
    let mut kind = match entry {
        1 if rng.random_bool(0.7) => PageKind::Home,
        3 => PageKind::Item,
        _ => [PageKind::Home, PageKind::Listing, PageKind::Item]
            [pick_weighted(rng, &[0.3, 0.3, 0.4])],
    };
    let will_login = logins && rng.random_bool(if power { 0.8 } else { login_prob(site) });
    let login_at = if site.kind == super::TenantKind::Ecommerce {
        rng.random_range(0..n_pages)
    } else {
        rng.random_range(0..2.min(n_pages))
    };
    let (think_median, think_sigma) = if power {
        (4_000.0, 0.8)
    } else {
        (13_000.0, 1.1)
    };
    let mut logged_in = false;
    let mut carted = false;
    for i in 0..n_pages {
        if will_login && i == login_at && !logged_in {
            let lp = site.page(rng, PageKind::LoginPage);
            let url = b.page(rng, &lp, &referer, 0.0);
            if i == 0 || no_cache {
                let shell = site.shell_assets(rng);
                b.assets(rng, &shell, &url, 0.0, 0.0);
            }
            logged_in = human_login(rng, b, &url);
            referer = url;
            b.wait(lognormal(rng, 3_000.0, 0.5));
            if logged_in {
                kind = PageKind::Account;
            } else if rng.random_bool(0.7) {
                break;
            }
        }
        let path = site.page(rng, kind);
        let url = b.page(rng, &path, &referer, 0.01);
        // Hashed shell assets are cached as immutable by returning visitors;
        // without a cache every page reloads them.
        if i == 0 || no_cache {
            let shell = site.shell_assets(rng);
            let (p304, p_skip) = if !no_cache && returning {
                (0.6, 0.85)
            } else {
                (0.0, 0.0)
            };
            b.assets(rng, &shell, &url, p304, p_skip);
        }
        let page_assets = site.page_assets(rng, &path);
        let (p304, p_skip) = match (no_cache, returning) {
            (true, _) => (0.0, 0.0),
            (false, true) => (0.3, 0.4),
            (false, false) => (0.1, 0.1),
        };
        b.assets(rng, &page_assets, &url, p304, p_skip);
        if tabs
            && matches!(kind, PageKind::Listing | PageKind::Search | PageKind::Home)
            && rng.random_bool(0.6)
        {
            // Middle-click several items, then read them one by one.
            for _ in 0..rng.random_range(3..8) {
                b.wait(rng.random_range(250.0..1_500.0));
                let item = site.page(rng, PageKind::Item);
                let item_url = b.page(rng, &item, &url, 0.01);
                let list = site.page_assets(rng, &item);
                b.assets(rng, &list, &item_url, p304, p_skip);
            }
            b.wait(lognormal(rng, 30_000.0, 0.8));
        }
        if purchases && kind == PageKind::Item && rng.random_bool(0.12) {
            b.wait(lognormal(rng, 6_000.0, 0.6));
            carted |= b.cart_add(&url);
        }
        referer = if strip_referer { String::new() } else { url };
        let mut think = lognormal(rng, think_median, think_sigma);
        if !power && rng.random_bool(0.04) {
            think += rng.random_range(120_000.0..1_200_000.0);
        }
        b.wait(think.max(800.0));
        kind = if rng.random_bool(item_bias) {
            PageKind::Item
        } else {
            site.next_kind(rng, kind, logged_in)
        };
    }
    let pays = purchases
        && match site.kind {
            super::TenantKind::Ecommerce => carted && rng.random_bool(0.4),
            super::TenantKind::Bank => logged_in && rng.random_bool(0.3),
            _ => logged_in && rng.random_bool(0.04),
        };
    if pays {
        let cart = site.page(rng, PageKind::Cart);
        let u1 = b.page(rng, &cart, &referer, 0.0);
        b.wait(lognormal(rng, 8_000.0, 0.6));
        let co = site.page(rng, PageKind::Checkout);
        let u2 = b.page(rng, &co, &u1, 0.0);
        b.wait(lognormal(rng, 35_000.0, 0.5));
        let ok = !rng.random_bool(0.07);
        b.payment(ok, &u2);
        if !ok && rng.random_bool(0.6) {
            b.wait(lognormal(rng, 25_000.0, 0.5));
            b.payment(!rng.random_bool(0.3), &u2);
        }
    }
}

/// A person using the tenant's app (or its single-page web app) against the
/// API: screens of 1–3 calls, reading pauses, sometimes a login and a
/// purchase. `purchases == false` and `item_bias` serve scrapers that
/// imitate the app.
fn api_human(
    ctx: &TenantCtx<'_>,
    rng: &mut R2,
    b: &mut Build<'_>,
    app_user: bool,
    purchases: bool,
    item_bias: f64,
) {
    let site = ctx.site;
    let spa_referer = site.url(&format!(
        "/app/{}",
        pick(rng, &["home", "search", "product", "cart"])
    ));
    let referer = if app_user { String::new() } else { spa_referer };
    let home = site.page(rng, PageKind::Home);
    b.req(Method::Get, home, 200, 2_400, &referer);
    b.wait(rng.random_range(50.0..300.0));
    if rng.random_bool(login_prob(site)) {
        b.wait(lognormal(rng, 6_000.0, 0.5));
        let _ = human_login(rng, b, &referer);
    }
    let screens = (1.0 + lognormal(rng, 6.0, 0.9).round()).min(120.0) as usize;
    let mut kind = PageKind::Listing;
    let mut carted = false;
    for _ in 0..screens {
        for _ in 0..rng.random_range(1..4) {
            let path = site.page(rng, kind);
            let status = if rng.random_bool(0.01) { 404 } else { 200 };
            let bytes = site.page_bytes(rng);
            b.req(Method::Get, path, status, bytes, &referer);
            b.wait(rng.random_range(30.0..400.0));
        }
        if purchases && kind == PageKind::Item && rng.random_bool(0.12) {
            carted |= b.cart_add(&referer);
        }
        b.wait(lognormal(rng, 9_000.0, 1.0).max(600.0));
        kind = if rng.random_bool(item_bias) {
            PageKind::Item
        } else {
            site.next_kind(rng, kind, false)
        };
    }
    if carted && rng.random_bool(0.4) {
        b.wait(lognormal(rng, 20_000.0, 0.5));
        b.payment(!rng.random_bool(0.07), &referer);
    }
}

fn crawler(ctx: &TenantCtx<'_>, rng: &mut R2) -> SimSession {
    let site = ctx.site;
    let agents = bot_agents();
    let ua = pick(rng, &agents.crawlers).clone();
    let preview = [
        "facebookexternalhit",
        "LinkedInBot",
        "Twitterbot",
        "Slackbot",
        "WhatsApp",
        "TelegramBot",
        "Discordbot",
    ]
    .iter()
    .any(|p| ua.contains(p));
    let addr = if ua.contains("Googlebot") {
        format!(
            "66.249.{}.{}",
            rng.random_range(64..80),
            rng.random_range(1..255)
        )
    } else {
        ip(rng, Network::Datacenter)
    };
    let mut b = Build::new(site, start_time(ctx, rng, When::Uniform));
    let n = if preview {
        rng.random_range(1..3)
    } else {
        lognormal(rng, 40.0, 1.1).round().clamp(2.0, 1500.0) as usize
    };
    if !preview && rng.random_bool(0.85) {
        b.req(Method::Get, "/robots.txt", 200, 310, "");
        b.wait(rng.random_range(200.0..3_000.0));
    }
    let interval = rng.random_range(500.0..8_000.0);
    let renders = rng.random_bool(0.1);
    let kinds = [
        PageKind::Home,
        PageKind::Listing,
        PageKind::Item,
        PageKind::Search,
        PageKind::Info,
    ];
    for _ in 0..n {
        let kind = kinds[pick_weighted(rng, &[0.05, 0.3, 0.5, 0.05, 0.1])];
        let path = site.page(rng, kind);
        let method = if rng.random_bool(0.05) {
            Method::Head
        } else {
            Method::Get
        };
        let (status, bytes) = match pick_weighted(rng, &[0.75, 0.18, 0.04, 0.03]) {
            0 => (200, site.page_bytes(rng)),
            1 => (304, 0),
            2 => (404, 4_200),
            _ => (301, 180),
        };
        let bytes = if method == Method::Head { 0 } else { bytes };
        b.req(method, path.clone(), status, bytes, "");
        if renders {
            let list = site.page_assets(rng, &path);
            let url = site.url(&path);
            b.assets(rng, &list, &url, 0.0, 0.3);
        }
        b.wait(interval * rng.random_range(0.75..1.25));
    }
    finish(
        Archetype::BenignCrawler,
        addr,
        Network::Datacenter,
        ua,
        None,
        b,
        rng,
    )
}

fn monitor(ctx: &TenantCtx<'_>, rng: &mut R2) -> SimSession {
    let site = ctx.site;
    let ua = if rng.random_bool(0.8) {
        pick(rng, &bot_agents().monitors).clone()
    } else {
        pick(rng, MODERN_LIBRARIES).to_string()
    };
    let path = if rng.random_bool(0.6) {
        site.health().to_string()
    } else {
        site.page(rng, PageKind::Home)
    };
    let head = rng.random_bool(0.4);
    let interval = *pick(rng, &[30_000.0, 60_000.0, 120_000.0, 300_000.0]);
    let duration = rng.random_range(3_600_000.0..8.0 * 3_600_000.0);
    let n = ((duration / interval) as usize).clamp(2, 1000);
    let mut b = Build::new(site, start_time(ctx, rng, When::Uniform));
    for _ in 0..n {
        let (m, bytes) = if head {
            (Method::Head, 0)
        } else {
            (Method::Get, rng.random_range(200..2_000))
        };
        b.req(m, path.clone(), 200, bytes, "");
        b.wait(interval * rng.random_range(0.99..1.01));
    }
    let addr = ip(rng, Network::Datacenter);
    finish(
        Archetype::UptimeMonitor,
        addr,
        Network::Datacenter,
        ua,
        None,
        b,
        rng,
    )
}

fn scraper_ua(rng: &mut R2, start: f64) -> String {
    match pick_weighted(rng, &[0.45, 0.12, 0.13, 0.3]) {
        0 => pick(rng, MODERN_LIBRARIES).to_string(),
        1 => pick(rng, &bot_agents().libraries).clone(),
        2 => String::new(),
        _ => {
            let behind = rng.random_range(20..70);
            browser_ua(rng, start as i64, Device::Desktop, behind, false)
        }
    }
}

fn simple_scraper(ctx: &TenantCtx<'_>, rng: &mut R2) -> SimSession {
    let site = ctx.site;
    let start = start_time(ctx, rng, When::Uniform);
    let ua = scraper_ua(rng, start);
    let net = if rng.random_bool(0.7) {
        Network::Datacenter
    } else {
        Network::Residential
    };
    let addr = ip(rng, net);
    let n = lognormal(rng, 120.0, 1.0).round().clamp(15.0, 3000.0) as usize;
    let sequential = rng.random_bool(0.6);
    let mut id = site.item_id(rng);
    let cat = site.page(rng, PageKind::Listing);
    let cat = cat.split('?').next().unwrap_or("/").to_string();
    let gap = rng.random_range(200.0..2_500.0);
    let referer = if rng.random_bool(0.1) {
        site.url("/")
    } else {
        String::new()
    };
    let mut b = Build::new(site, start);
    for k in 0..n {
        let path = if sequential {
            id += 1;
            if site.is_api() {
                format!("/api/v2/products/{id}")
            } else {
                format!("/p/{id}")
            }
        } else if site.is_api() {
            format!("/api/v2/products?page={}", k + 1)
        } else {
            format!("{cat}?page={}", k + 1)
        };
        let (status, bytes) = match pick_weighted(rng, &[0.8, 0.15, 0.05]) {
            0 => (200, site.page_bytes(rng)),
            1 => (404, 4_200),
            _ => (429, 150),
        };
        b.req(Method::Get, path, status, bytes, &referer);
        b.wait(gap * rng.random_range(0.7..1.3));
    }
    finish(Archetype::SimpleScraper, addr, net, ua, None, b, rng)
}

/// Scrapers that imitate people: current browser agents, residential proxy
/// addresses (one short session per address), human-like navigation and
/// pauses. A third drive a headless browser that renders pages (assets,
/// sometimes a HeadlessChrome agent); the rest fetch pages over HTTP and
/// only some of their images.
fn advanced_scraper(ctx: &TenantCtx<'_>, rng: &mut R2) -> SimSession {
    let site = ctx.site;
    let headless = rng.random_bool(0.8);
    let when = if rng.random_bool(if headless { 0.9 } else { 0.6 }) {
        When::Diurnal
    } else {
        When::Uniform
    };
    let start = start_time(ctx, rng, when);
    let device = if rng.random_bool(0.4) {
        Device::Mobile
    } else {
        Device::Desktop
    };
    let headless_ua = headless && rng.random_bool(0.06);
    let behind = rng.random_range(0..4);
    let ua = if headless_ua && rng.random_bool(0.3) {
        pick(rng, &bot_agents().headless).clone()
    } else {
        browser_ua(rng, start as i64, device, behind, headless_ua)
    };
    let net = if rng.random_bool(0.75) {
        Network::Residential
    } else {
        Network::Mobile
    };
    let addr = ip(rng, net);
    let sid = session_id(ctx, rng, if headless { 0.9 } else { 0.4 });
    if headless && site.is_api() {
        // Replays the tenant's own app traffic with a spoofed app agent.
        let ua = if rng.random_bool(0.5) {
            app_ua(rng, "ShopApp")
        } else {
            format!("okhttp/4.{}.0", rng.random_range(9..13))
        };
        let mut b = Build::new(site, start);
        api_human(ctx, rng, &mut b, true, false, 0.1);
        return finish(Archetype::AdvancedScraper, addr, net, ua, sid, b, rng);
    }
    if headless {
        // Replays recorded human browsing in a real browser engine.
        let mut b = Build::new(site, start);
        let style = HumanStyle {
            no_cache: false,
            strip_referer: false,
            power: false,
            returning: rng.random_bool(0.4),
            logins: true,
            purchases: false,
            item_bias: 0.1,
            tabs: rng.random_bool(0.25),
        };
        web_human(ctx, rng, &mut b, style);
        return finish(Archetype::AdvancedScraper, addr, net, ua, sid, b, rng);
    }
    let n = lognormal(rng, 7.0, 0.8).round().clamp(1.0, 60.0) as usize;
    let median_gap = rng.random_range(6_000.0..18_000.0);
    let sigma = rng.random_range(0.7..1.1);
    let mut referer = match pick_weighted(rng, &[0.4, 0.35, 0.1, 0.15]) {
        0 => search_referer(rng),
        1 => String::new(),
        2 => social_referer(rng),
        _ => site.url("/"),
    };
    let mut kind =
        [PageKind::Item, PageKind::Listing, PageKind::Home][pick_weighted(rng, &[0.5, 0.35, 0.15])];
    let mut b = Build::new(site, start);
    for i in 0..n {
        let path = site.page(rng, kind);
        let url = b.page(rng, &path, &referer, 0.01);
        if headless {
            let mut list = if i == 0 {
                site.shell_assets(rng)
            } else {
                Vec::new()
            };
            list.extend(site.page_assets(rng, &path));
            b.assets(rng, &list, &url, 0.0, 0.1);
        } else if rng.random_bool(0.4) {
            let list = site.page_assets(rng, &path);
            b.assets(rng, &list, &url, 0.0, 0.5);
        }
        referer = match pick_weighted(rng, &[0.85, 0.1, 0.05]) {
            0 => url,
            1 => {
                let forged = site.page(rng, PageKind::Listing);
                site.url(&forged)
            }
            _ => String::new(),
        };
        let mut think = lognormal(rng, median_gap, sigma);
        if rng.random_bool(0.03) {
            think += rng.random_range(120_000.0..900_000.0);
        }
        b.wait(think.max(700.0));
        kind = if rng.random_bool(0.5) {
            PageKind::Item
        } else {
            site.next_kind(rng, kind, false)
        };
    }
    finish(Archetype::AdvancedScraper, addr, net, ua, sid, b, rng)
}

fn credential_stuffer(ctx: &TenantCtx<'_>, rng: &mut R2) -> SimSession {
    let site = ctx.site;
    if rng.random_bool(0.3) {
        // Burst from one host.
        let start = start_time(ctx, rng, When::Campaign);
        let ua = if rng.random_bool(0.5) {
            pick(rng, MODERN_LIBRARIES).to_string()
        } else {
            {
                let behind = rng.random_range(0..30);
                browser_ua(rng, start as i64, Device::Desktop, behind, false)
            }
        };
        let addr = ip(rng, Network::Datacenter);
        let attempts = lognormal(rng, 120.0, 0.9).round().clamp(20.0, 1500.0) as usize;
        let fetch_form = rng.random_bool(0.4);
        let gap = rng.random_range(300.0..3_000.0);
        let mut b = Build::new(site, start);
        let form = site.page(rng, PageKind::LoginPage);
        for _ in 0..attempts {
            if fetch_form {
                b.req(Method::Get, form.clone(), 200, 9_000, "");
                b.wait(rng.random_range(50.0..400.0));
            }
            let user = hex_id(rng);
            let referer = if fetch_form {
                site.url(&form)
            } else {
                String::new()
            };
            b.login(&user, rng.random_bool(0.01), &referer);
            b.wait(gap * rng.random_range(0.6..1.4));
        }
        let mut s = finish(
            Archetype::CredentialStuffer,
            addr,
            Network::Datacenter,
            ua,
            None,
            b,
            rng,
        );
        if rng.random_bool(0.3) {
            s.spoofed_xff = Some(ip(rng, Network::Residential));
        }
        s
    } else {
        // Low and slow through residential proxies, a few attempts per address.
        let when = if rng.random_bool(0.5) {
            When::Campaign
        } else {
            When::Uniform
        };
        let start = start_time(ctx, rng, when);
        let device = if rng.random_bool(0.3) {
            Device::Mobile
        } else {
            Device::Desktop
        };
        let ua = {
            let behind = rng.random_range(0..4);
            browser_ua(rng, start as i64, device, behind, false)
        };
        let net = if rng.random_bool(0.7) {
            Network::Residential
        } else {
            Network::Mobile
        };
        let addr = ip(rng, net);
        let sid = session_id(ctx, rng, 0.3);
        let mut b = Build::new(site, start);
        let mut referer = if rng.random_bool(0.3) {
            search_referer(rng)
        } else {
            String::new()
        };
        if rng.random_bool(0.5) {
            // Warm-up browsing that mimics a visitor before the login.
            for i in 0..rng.random_range(1..4) {
                let kind = if i == 0 {
                    PageKind::Home
                } else {
                    PageKind::Listing
                };
                let path = site.page(rng, kind);
                let url = b.page(rng, &path, &referer, 0.0);
                let mut list = if i == 0 {
                    site.shell_assets(rng)
                } else {
                    Vec::new()
                };
                list.extend(site.page_assets(rng, &path));
                b.assets(rng, &list, &url, 0.0, 0.1);
                referer = url;
                b.wait(lognormal(rng, 10_000.0, 0.9).max(800.0));
            }
        }
        let form = site.page(rng, PageKind::LoginPage);
        let url = b.page(rng, &form, &referer, 0.0);
        if rng.random_bool(0.6) {
            let shell = site.shell_assets(rng);
            b.assets(rng, &shell, &url, 0.0, 0.0);
        }
        let attempts = [1, 2, 3][pick_weighted(rng, &[0.6, 0.3, 0.1])];
        for _ in 0..attempts {
            b.wait(lognormal(rng, 9_000.0, 0.6));
            let user = hex_id(rng);
            b.login(&user, rng.random_bool(0.015), &url);
        }
        finish(Archetype::CredentialStuffer, addr, net, ua, sid, b, rng)
    }
}

fn brute_forcer(ctx: &TenantCtx<'_>, rng: &mut R2) -> SimSession {
    let site = ctx.site;
    let start = start_time(ctx, rng, When::Uniform);
    let ua = match pick_weighted(rng, &[0.4, 0.4, 0.2]) {
        0 => pick(rng, MODERN_LIBRARIES).to_string(),
        1 => {
            let behind = rng.random_range(0..4);
            browser_ua(rng, start as i64, Device::Desktop, behind, false)
        }
        _ => {
            let behind = rng.random_range(20..60);
            browser_ua(rng, start as i64, Device::Desktop, behind, false)
        }
    };
    let net = if rng.random_bool(0.6) {
        Network::Datacenter
    } else {
        Network::Residential
    };
    let addr = ip(rng, net);
    let target = hex_id(rng);
    let attempts = lognormal(rng, 80.0, 0.8).round().clamp(10.0, 1000.0) as usize;
    let gap = rng.random_range(500.0..4_000.0);
    let mut b = Build::new(site, start);
    let form = site.page(rng, PageKind::LoginPage);
    let url = b.page(rng, &form, "", 0.0);
    let cracked = rng.random_bool(0.03);
    for k in 0..attempts {
        b.wait(gap * rng.random_range(0.7..1.3));
        b.login(&target, cracked && k + 1 == attempts, &url);
    }
    finish(Archetype::BruteForcer, addr, net, ua, None, b, rng)
}

fn card_tester(ctx: &TenantCtx<'_>, rng: &mut R2) -> SimSession {
    let site = ctx.site;
    let start = start_time(ctx, rng, When::Uniform);
    let burst = rng.random_bool(0.5);
    let ua = if burst && rng.random_bool(0.4) {
        pick(rng, MODERN_LIBRARIES).to_string()
    } else {
        {
            let behind = rng.random_range(0..6);
            browser_ua(rng, start as i64, Device::Desktop, behind, false)
        }
    };
    let net = if burst && rng.random_bool(0.6) {
        Network::Datacenter
    } else {
        Network::Residential
    };
    let addr = ip(rng, net);
    let sid = session_id(ctx, rng, 0.95);
    let mut b = Build::new(site, start);
    // Prelude: get something payable.
    let referer;
    match site.kind {
        super::TenantKind::Ecommerce | super::TenantKind::Api => {
            let item = site.page(rng, PageKind::Item);
            referer = b.page(rng, &item, "", 0.0);
            if !burst && rng.random_bool(0.5) {
                let list = site.page_assets(rng, &item);
                b.assets(rng, &list, &referer, 0.0, 0.0);
            }
            b.wait(lognormal(rng, 3_000.0, 0.6));
            b.cart_add(&referer);
        }
        _ => {
            let form = site.page(rng, PageKind::LoginPage);
            referer = b.page(rng, &form, "", 0.0);
            b.wait(lognormal(rng, 5_000.0, 0.5));
            let user = hex_id(rng);
            b.login(&user, true, &referer);
        }
    }
    b.wait(lognormal(rng, 4_000.0, 0.6));
    let co = site.page(rng, PageKind::Checkout);
    let url = b.page(rng, &co, &referer, 0.0);
    let (attempts, gap, decline) = if burst {
        (
            lognormal(rng, 25.0, 0.8).round().clamp(5.0, 300.0) as usize,
            rng.random_range(2_000.0..12_000.0),
            rng.random_range(0.85..0.97),
        )
    } else {
        (
            rng.random_range(2..6),
            rng.random_range(10_000.0..60_000.0),
            rng.random_range(0.7..0.95),
        )
    };
    for _ in 0..attempts {
        b.wait(gap * rng.random_range(0.6..1.4));
        b.payment(!rng.random_bool(decline), &url);
    }
    finish(Archetype::CardTester, addr, net, ua, sid, b, rng)
}

fn scalper(ctx: &TenantCtx<'_>, rng: &mut R2) -> SimSession {
    let site = ctx.site;
    let start = start_time(ctx, rng, When::Drop);
    let ua = if rng.random_bool(0.6) {
        {
            let behind = rng.random_range(0..5);
            browser_ua(rng, start as i64, Device::Desktop, behind, false)
        }
    } else {
        pick(rng, MODERN_LIBRARIES).to_string()
    };
    let net = if rng.random_bool(0.5) {
        Network::Datacenter
    } else {
        Network::Residential
    };
    let addr = ip(rng, net);
    let sid = session_id(ctx, rng, 0.6);
    let hot = *pick(rng, &site.hot_items);
    let item = match site.kind {
        super::TenantKind::Api => format!("/api/v2/products/{hot}"),
        super::TenantKind::Ecommerce => format!("/p/{hot}"),
        _ => site.page(rng, PageKind::Info),
    };
    let slow = rng.random_bool(0.3);
    let polls = if slow {
        rng.random_range(10..60)
    } else {
        lognormal(rng, 50.0, 0.8).round().clamp(8.0, 600.0) as usize
    };
    let gap = if slow {
        rng.random_range(20_000.0..60_000.0)
    } else {
        rng.random_range(300.0..3_000.0)
    };
    let referer = if rng.random_bool(0.4) {
        site.url(&item)
    } else {
        String::new()
    };
    let mut b = Build::new(site, start);
    for _ in 0..polls {
        let bytes = site.page_bytes(rng);
        b.req(Method::Get, item.clone(), 200, bytes, &referer);
        b.wait(gap * rng.random_range(0.8..1.2));
    }
    for _ in 0..rng.random_range(2..20) {
        if !b.cart_add(&referer) {
            b.req(Method::Post, item.clone(), 409, 200, &referer);
        }
        b.wait(rng.random_range(200.0..1_500.0));
    }
    if rng.random_bool(0.5) {
        let co = site.page(rng, PageKind::Checkout);
        let url = b.page(rng, &co, &referer, 0.0);
        b.wait(rng.random_range(500.0..3_000.0));
        b.payment(rng.random_bool(0.8), &url);
    }
    finish(Archetype::Scalper, addr, net, ua, sid, b, rng)
}

fn click_fraud(ctx: &TenantCtx<'_>, rng: &mut R2) -> SimSession {
    let site = ctx.site;
    let when = if rng.random_bool(0.7) {
        When::Diurnal
    } else {
        When::Uniform
    };
    let start = start_time(ctx, rng, when);
    let device = if rng.random_bool(0.7) {
        Device::Mobile
    } else {
        Device::Desktop
    };
    let ua = {
        let behind = rng.random_range(0..4);
        let headless = rng.random_bool(0.1);
        browser_ua(rng, start as i64, device, behind, headless)
    };
    let net = if device == Device::Mobile {
        Network::Mobile
    } else {
        Network::Residential
    };
    let addr = ip(rng, net);
    let sid = session_id(ctx, rng, 0.3);
    let renders = rng.random_bool(0.8);
    let n = if rng.random_bool(0.7) {
        1
    } else {
        rng.random_range(2..4)
    };
    let mut referer = ad_referer(rng);
    let mut b = Build::new(site, start);
    for i in 0..n {
        let kind = if i == 0 {
            [PageKind::Item, PageKind::Home][pick_weighted(rng, &[0.6, 0.4])]
        } else {
            PageKind::Listing
        };
        let path = site.page(rng, kind);
        let url = b.page(rng, &path, &referer, 0.0);
        if renders {
            let mut list = site.shell_assets(rng);
            list.extend(site.page_assets(rng, &path));
            b.assets(rng, &list, &url, 0.0, 0.05);
        }
        referer = url;
        b.wait(lognormal(rng, 5_000.0, 0.8));
    }
    finish(Archetype::ClickFraud, addr, net, ua, sid, b, rng)
}

/// Paths vulnerability scanners probe.
const PROBES: &[&str] = &[
    "/wp-login.php",
    "/wp-admin/",
    "/xmlrpc.php",
    "/.env",
    "/.git/config",
    "/.git/HEAD",
    "/phpmyadmin/",
    "/pma/",
    "/admin",
    "/admin.php",
    "/administrator/",
    "/config.php",
    "/config.json",
    "/server-status",
    "/.aws/credentials",
    "/vendor/phpunit/phpunit/src/Util/PHP/eval-stdin.php",
    "/cgi-bin/luci",
    "/cgi-bin/test.cgi",
    "/actuator/health",
    "/actuator/env",
    "/api/v1/debug",
    "/debug/pprof/",
    "/solr/admin/info/system",
    "/console",
    "/manager/html",
    "/backup.zip",
    "/backup.sql",
    "/db.sql",
    "/.DS_Store",
    "/.htaccess",
    "/web.config",
    "/info.php",
    "/phpinfo.php",
    "/shell.php",
    "/owa/auth/logon.aspx",
    "/remote/login",
    "/boaform/admin/formLogin",
    "/HNAP1/",
    "/.well-known/security.txt",
    "/sitemap.xml",
    "/jenkins/login",
    "/graphql",
    "/api/swagger.json",
    "/swagger-ui.html",
    "/telescope/requests",
    "/storage/logs/laravel.log",
    "/.svn/entries",
    "/etc/passwd",
    "/index.php?s=/Index/\\think\\app/invokefunction",
];

fn vuln_scanner(ctx: &TenantCtx<'_>, rng: &mut R2) -> SimSession {
    let site = ctx.site;
    let start = start_time(ctx, rng, When::Uniform);
    let ua = match pick_weighted(rng, &[0.5, 0.3, 0.1, 0.1]) {
        0 => pick(rng, &bot_agents().scanners).clone(),
        1 => {
            let behind = rng.random_range(20..80);
            browser_ua(rng, start as i64, Device::Desktop, behind, false)
        }
        2 => String::new(),
        _ => pick(rng, MODERN_LIBRARIES).to_string(),
    };
    let addr = ip(rng, Network::Datacenter);
    let n = lognormal(rng, 150.0, 0.9).round().clamp(20.0, 3000.0) as usize;
    let mut b = Build::new(site, start);
    if rng.random_bool(0.4) {
        b.req(Method::Get, "/robots.txt", 200, 310, "");
    }
    for _ in 0..n {
        let probe = pick(rng, PROBES);
        let path = if rng.random_bool(0.3) {
            format!(
                "/{}{probe}",
                pick(
                    rng,
                    &["old", "new", "test", "dev", "backup", "wordpress", "blog"]
                )
            )
        } else {
            (*probe).to_string()
        };
        let method = [Method::Get, Method::Post, Method::Head, Method::Options]
            [pick_weighted(rng, &[0.8, 0.1, 0.05, 0.05])];
        let (status, bytes) = match pick_weighted(rng, &[0.8, 0.1, 0.05, 0.05]) {
            0 => (404, 4_200),
            1 => (403, 550),
            2 => (400, 300),
            _ => (200, site.page_bytes(rng)),
        };
        b.req(
            method,
            path,
            status,
            if method == Method::Head { 0 } else { bytes },
            "",
        );
        b.wait(rng.random_range(50.0..1_000.0));
    }
    finish(
        Archetype::VulnScanner,
        addr,
        Network::Datacenter,
        ua,
        None,
        b,
        rng,
    )
}
