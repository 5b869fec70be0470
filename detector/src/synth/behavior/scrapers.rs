//! Scrapers (simple and human-imitating), scalpers and click fraud.

use super::humans::{HumanStyle, api_human, web_human};
use super::*;

pub(super) fn scraper_ua(rng: &mut R2, start: f64) -> String {
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

pub(super) fn simple_scraper(ctx: &TenantCtx<'_>, rng: &mut R2) -> SimSession {
    let site = ctx.site;
    let start = start_time(ctx, rng, When::Uniform);
    // Some pretend to be Googlebot (sites let it through) from their own hosts.
    let fake_googlebot = rng.random_bool(0.08);
    let ua = if fake_googlebot {
        super::good_bots::GOOGLEBOT_UA.to_string()
    } else {
        scraper_ua(rng, start)
    };
    let net = if fake_googlebot || rng.random_bool(0.7) {
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
    finish(Archetype::SimpleScraper, addr, ua, None, b)
}

/// Scrapers that imitate people: current browser agents, residential proxy
/// addresses (one short session per address), human-like navigation and
/// pauses. A third drive a headless browser that renders pages (assets,
/// sometimes a HeadlessChrome agent); the rest fetch pages over HTTP and
/// only some of their images.
pub(super) fn advanced_scraper(ctx: &TenantCtx<'_>, rng: &mut R2) -> SimSession {
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
        return finish(Archetype::AdvancedScraper, addr, ua, sid, b);
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
        return finish(Archetype::AdvancedScraper, addr, ua, sid, b);
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
    finish(Archetype::AdvancedScraper, addr, ua, sid, b)
}

pub(super) fn scalper(ctx: &TenantCtx<'_>, rng: &mut R2) -> SimSession {
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
        crate::synth::TenantKind::Api => format!("/api/v2/products/{hot}"),
        crate::synth::TenantKind::Ecommerce => format!("/p/{hot}"),
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
    finish(Archetype::Scalper, addr, ua, sid, b)
}

pub(super) fn click_fraud(ctx: &TenantCtx<'_>, rng: &mut R2) -> SimSession {
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
    finish(Archetype::ClickFraud, addr, ua, sid, b)
}
