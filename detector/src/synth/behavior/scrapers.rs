//! Scrapers (simple and human-imitating), scalpers and click fraud.

use super::humans::{HumanStyle, web_human};
use super::*;

pub(super) fn scraper_ua(rng: &mut R2, start: f64) -> String {
    match pick_weighted(rng, &[0.4, 0.1, 0.1, 0.1, 0.3]) {
        0 => pick(rng, MODERN_LIBRARIES).to_string(),
        1 => pick(rng, &bot_agents().libraries).clone(),
        2 => String::new(),
        3 => pick(rng, UNLISTED_TOOLS).to_string(),
        _ => {
            let behind = rng.random_range(20..70);
            browser_ua(rng, start as i64, Device::Desktop, behind, false)
        }
    }
}

pub(super) fn simple_scraper(ctx: &TenantCtx<'_>, rng: &mut R2) -> SimSession {
    let site = ctx.site;
    let start = start_time(ctx, rng, When::Uniform);
    // Spoofed crawlers: a fifth pretend to be a search engine or another
    // listed crawler (sites let them through) from hosting or residential
    // networks, not the crawler's own ranges.
    let spoofed_crawler = rng.random_bool(0.2);
    let ua = if spoofed_crawler {
        match pick_weighted(rng, &[0.4, 0.2, 0.4]) {
            0 => super::good_bots::GOOGLEBOT_UA.to_string(),
            1 => super::good_bots::BINGBOT_UA.to_string(),
            _ => pick(rng, &bot_agents().crawlers).clone(),
        }
    } else {
        scraper_ua(rng, start)
    };
    let net = if rng.random_bool(if spoofed_crawler { 0.6 } else { 0.7 }) {
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
    if spoofed_crawler && rng.random_bool(0.5) {
        b.req(Method::Get, "/robots.txt", 200, 310, "");
        b.wait(rng.random_range(200.0..3_000.0));
    }
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

/// Scrapers that imitate people, with their own navigation (not the human
/// routine): current browser agents (some rotate real, partly stale agent
/// lists), residential and mobile proxy addresses (one short session per
/// address), human-like pauses. They harvest the catalogue: listings walked
/// page by page (`?page=N`, often with a sort order), items opened from
/// them, searches. 60 % drive a browser engine that renders pages (assets
/// as on a first visit, a few with a HeadlessChrome agent), the rest fetch
/// pages over HTTP with some of their images. 70 % are careful (slow,
/// mostly following the site's links, 75 % rendering, 60 % carting), 30 %
/// harvest faster (8–300 pages ~1–3 s apart, half from hosting networks). Carting ones add items to the cart at
/// the rate people do (an evasion of "carts mean a person"); 15 % log in to
/// an account of their own first. On API tenants they replay the app's
/// calls with an app agent.
pub(super) fn advanced_scraper(ctx: &TenantCtx<'_>, rng: &mut R2) -> SimSession {
    let site = ctx.site;
    // Two levels of care: most operators tune their bots to pass for
    // visitors (slow, wandering, rendering); the rest harvest faster.
    let careful = rng.random_bool(0.7);
    let renders = rng.random_bool(if careful { 0.75 } else { 0.25 });
    let when = if rng.random_bool(0.75) {
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
    let headless_ua = renders && rng.random_bool(0.05);
    let behind = if rng.random_bool(0.8) {
        rng.random_range(0..4)
    } else {
        human_behind(rng)
    };
    let ua = if headless_ua && rng.random_bool(0.3) {
        pick(rng, &bot_agents().headless).clone()
    } else {
        browser_ua(rng, start as i64, device, behind, headless_ua)
    };
    // Fast harvesters save on proxies: half run from hosting networks.
    let net = if !careful && rng.random_bool(0.5) {
        Network::Datacenter
    } else if rng.random_bool(0.7) {
        Network::Residential
    } else {
        Network::Mobile
    };
    let addr = ip(rng, net);
    let sid = session_id(ctx, rng, if renders { 0.9 } else { 0.4 });
    let carts = rng.random_bool(if careful { 0.6 } else { 0.2 });
    let item_share = rng.random_range(0.4..0.75);
    let median_gap = if careful {
        rng.random_range(9_000.0..20_000.0)
    } else {
        rng.random_range(800.0..3_000.0)
    };
    let sigma = if careful {
        rng.random_range(0.9..1.2)
    } else {
        rng.random_range(0.6..1.0)
    };
    let n = if careful {
        (1.0 + lognormal(rng, 5.0, 0.9).round()).min(150.0) as usize
    } else {
        lognormal(rng, 40.0, 0.7).round().clamp(8.0, 300.0) as usize
    };
    // Careful bots keep a warm browser profile (cached assets revalidate).
    let (p304, p_skip) = if careful && rng.random_bool(0.4) {
        (0.3, 0.4)
    } else {
        (0.0, 0.1)
    };
    let mut b = Build::new(site, start);
    if site.is_api() {
        let ua = if rng.random_bool(0.5) {
            app_ua(rng, "ShopApp")
        } else {
            format!("okhttp/4.{}.0", rng.random_range(9..13))
        };
        let home = site.page(rng, PageKind::Home);
        b.req(Method::Get, home, 200, 2_400, "");
        b.wait(rng.random_range(50.0..300.0));
        let cat = pick(rng, &["shoes", "bags", "audio", "phones", "toys", "books"]);
        let mut list_page = rng.random_range(0..3);
        for _ in 0..n {
            let item = rng.random_bool(item_share);
            let path = if item {
                site.page(rng, PageKind::Item)
            } else if rng.random_bool(0.25) {
                site.page(rng, PageKind::Search)
            } else {
                list_page += 1;
                format!("/api/v2/categories/{cat}?page={list_page}")
            };
            let status = if rng.random_bool(0.01) { 404 } else { 200 };
            let bytes = site.page_bytes(rng);
            b.req(Method::Get, path, status, bytes, "");
            if carts && item && rng.random_bool(0.12) {
                b.wait(lognormal(rng, 4_000.0, 0.6));
                b.cart_add("");
            }
            b.wait(lognormal(rng, median_gap, sigma).max(300.0));
        }
        return finish(Archetype::AdvancedScraper, addr, ua, sid, b);
    }
    if careful {
        // Browses like a visitor with its own path mix (biased towards the
        // items it harvests) and the cart behaviour of people for `carts`;
        // never pays.
        let style = HumanStyle {
            no_cache: false,
            strip_referer: false,
            power: false,
            returning: rng.random_bool(0.4),
            logins: true,
            purchases: carts,
            pays: false,
            item_bias: rng.random_range(0.2..0.45),
            tabs: rng.random_bool(0.25),
        };
        web_human(ctx, rng, &mut b, style);
        return finish(Archetype::AdvancedScraper, addr, ua, sid, b);
    }
    let sort = *pick(
        rng,
        &["", "", "&sort=price", "&sort=newest", "&sort=rating"],
    );
    let listing = site.page(rng, PageKind::Listing);
    let listing = listing.split('?').next().unwrap_or("/").to_string();
    let mut list_page = rng.random_range(0..3);
    let mut referer = match pick_weighted(rng, &[0.35, 0.4, 0.1, 0.15]) {
        0 => search_referer(rng),
        1 => String::new(),
        2 => social_referer(rng),
        _ => site.url("/"),
    };
    if rng.random_bool(0.15) {
        let lp = site.page(rng, PageKind::LoginPage);
        let url = b.page(rng, &lp, &referer, 0.0);
        if renders {
            let shell = site.shell_assets(rng);
            b.assets(rng, &shell, &url, 0.0, 0.0);
        }
        b.wait(lognormal(rng, 4_000.0, 0.5));
        let user = hex_id(rng);
        b.login(&user, true, &url);
        referer = url;
        b.wait(lognormal(rng, 2_000.0, 0.5));
    }
    // Part of the steps follow the site's links as a visitor would (the
    // rest is the harvesting walk), which blurs the walk's regularity.
    let wander = if careful {
        rng.random_range(0.8..1.0)
    } else {
        rng.random_range(0.0..0.2)
    };
    let mut kind = PageKind::Home;
    for i in 0..n {
        let (item, path) = if rng.random_bool(wander) {
            kind = site.next_kind(rng, kind, false);
            (kind == PageKind::Item, site.page(rng, kind))
        } else if rng.random_bool(item_share) {
            kind = PageKind::Item;
            (true, site.page(rng, PageKind::Item))
        } else if rng.random_bool(0.2) {
            kind = PageKind::Search;
            (false, site.page(rng, PageKind::Search))
        } else {
            kind = PageKind::Listing;
            list_page += 1;
            (false, format!("{listing}?page={list_page}{sort}"))
        };
        let url = b.page(rng, &path, &referer, 0.02);
        if renders {
            let mut list = if i == 0 {
                site.shell_assets(rng)
            } else {
                Vec::new()
            };
            list.extend(site.page_assets(rng, &path));
            b.assets(rng, &list, &url, p304, p_skip);
        } else if rng.random_bool(0.3) {
            let list = site.page_assets(rng, &path);
            b.assets(rng, &list, &url, 0.0, 0.5);
        }
        if carts && item && rng.random_bool(0.12) {
            b.wait(lognormal(rng, 6_000.0, 0.6));
            b.cart_add(&url);
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

/// Click fraud, with its own pattern (not the human routine): a paid click
/// lands on the advertised page from an ad network's click URL, the page
/// renders (65 %), and the bot leaves after a short dwell; half click
/// around the clock, 30 % from hosting addresses. 45 % are repeat
/// clickers (the same ad clicked 4–16 times from one device, ~15 s apart,
/// 30 % rendering the page); of the rest,
/// 30 % "engage" to
/// pass for converting traffic: a few more pages along the site's links,
/// and half of those add to the cart at the rate people do.
pub(super) fn click_fraud(ctx: &TenantCtx<'_>, rng: &mut R2) -> SimSession {
    let site = ctx.site;
    let when = if rng.random_bool(0.5) {
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
        let behind = if rng.random_bool(0.8) {
            rng.random_range(0..4)
        } else {
            human_behind(rng)
        };
        let headless = rng.random_bool(0.05);
        browser_ua(rng, start as i64, device, behind, headless)
    };
    // Click farms' phones and residential proxies, and 30 % from hosts.
    let net = if rng.random_bool(0.3) {
        Network::Datacenter
    } else if device == Device::Mobile {
        Network::Mobile
    } else {
        Network::Residential
    };
    let addr = ip(rng, net);
    let sid = session_id(ctx, rng, 0.3);
    let renders = rng.random_bool(0.65);
    let mut b = Build::new(site, start);
    if rng.random_bool(0.45) {
        // Repeat clicker: the same ad clicked again and again from one
        // device, each landing with a fresh click URL (an injected or
        // farmed click loop). Most loops only fire the click URL and fetch
        // the landing page; 30 % render it each time.
        let renders = rng.random_bool(0.3);
        let landing = site.page(rng, PageKind::Item);
        for _ in 0..rng.random_range(4..17) {
            let referer = ad_referer(rng);
            let url = b.page(rng, &landing, &referer, 0.0);
            if renders {
                let list = site.page_assets(rng, &landing);
                b.assets(rng, &list, &url, 0.0, 0.05);
            }
            b.wait(lognormal(rng, 15_000.0, 0.6).max(3_000.0));
        }
        return finish(Archetype::ClickFraud, addr, ua, sid, b);
    }
    let engaged = rng.random_bool(0.3);
    let carts = engaged && rng.random_bool(0.5);
    let n = if engaged {
        rng.random_range(2..7)
    } else if rng.random_bool(0.8) {
        1
    } else {
        2
    };
    let mut referer = ad_referer(rng);
    let mut kind =
        [PageKind::Item, PageKind::Home, PageKind::Listing][pick_weighted(rng, &[0.6, 0.25, 0.15])];
    for i in 0..n {
        let path = site.page(rng, kind);
        let url = b.page(rng, &path, &referer, 0.0);
        if renders {
            let mut list = if i == 0 {
                site.shell_assets(rng)
            } else {
                Vec::new()
            };
            list.extend(site.page_assets(rng, &path));
            b.assets(rng, &list, &url, 0.0, 0.05);
        }
        if carts && kind == PageKind::Item && rng.random_bool(0.12) {
            b.wait(lognormal(rng, 6_000.0, 0.6));
            b.cart_add(&url);
        }
        referer = url;
        // Paid to click, not to read: short dwells.
        b.wait(lognormal(rng, 4_000.0, 0.8).max(500.0));
        kind = site.next_kind(rng, kind, false);
    }
    finish(Archetype::ClickFraud, addr, ua, sid, b)
}
