//! Good bots: search-engine and preview crawlers, uptime monitors.

use super::*;

/// Googlebot's user agent (desktop).
pub(super) const GOOGLEBOT_UA: &str =
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
/// Bingbot's user agent.
pub(super) const BINGBOT_UA: &str =
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)";

pub(super) fn crawler(ctx: &TenantCtx<'_>, rng: &mut R2) -> SimSession {
    let site = ctx.site;
    let agents = bot_agents();
    // The big search engines are most of crawler traffic.
    // A share announce themselves with agents no public list has yet.
    let ua = match pick_weighted(rng, &[0.3, 0.15, 0.4, 0.15]) {
        0 => GOOGLEBOT_UA.to_string(),
        1 => BINGBOT_UA.to_string(),
        2 => pick(rng, &agents.crawlers).clone(),
        _ => pick(rng, UNLISTED_CRAWLERS).to_string(),
    };
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
    // Crawlers with published ranges crawl from them.
    let addr = match super::super::netplan::crawler_addr(rng, &ua) {
        Some(a) => a,
        None => ip(rng, Network::Datacenter),
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
    finish(Archetype::BenignCrawler, addr, ua, None, b)
}

pub(super) fn monitor(ctx: &TenantCtx<'_>, rng: &mut R2) -> SimSession {
    let site = ctx.site;
    // Load-balancer and orchestrator probes are not in the crawler list.
    let ua = match pick_weighted(rng, &[0.55, 0.3, 0.15]) {
        0 => pick(rng, &bot_agents().monitors).clone(),
        1 => pick(rng, UNLISTED_MONITORS).to_string(),
        _ => pick(rng, MODERN_LIBRARIES).to_string(),
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
    finish(Archetype::UptimeMonitor, addr, ua, None, b)
}
