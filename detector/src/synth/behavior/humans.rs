//! People: ordinary browsers and app users, and the hard negatives (NAT
//! without cache, remote browser isolation).

use super::*;

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Human {
    Normal,
    /// Behind an office or carrier NAT: shared address, no cookies, no
    /// cache, referers stripped by the proxy, often an aging corporate
    /// browser; half are power users (call centres, back offices).
    Nat,
    /// Remote browser isolation: a real person whose browser runs headless
    /// in a data centre.
    Headless,
}

pub(super) fn human(ctx: &TenantCtx<'_>, rng: &mut R2, variant: Human) -> SimSession {
    let site = ctx.site;
    if variant == Human::Nat {
        return nat_humans(ctx, rng);
    }
    let start = start_time(ctx, rng, When::Diurnal);
    let mobile_share = match (variant, site.kind) {
        (Human::Normal, crate::synth::TenantKind::Ecommerce) => 0.55,
        (Human::Normal, crate::synth::TenantKind::Bank) => 0.35,
        (Human::Normal, _) => 0.25,
        _ => 0.05,
    };
    let device = if rng.random_bool(mobile_share) {
        Device::Mobile
    } else {
        Device::Desktop
    };
    // Phones on a carrier-grade NAT share a few public addresses with many
    // other subscribers; with the most common phone browser build, two of
    // them can share (IP, user agent) at the same time (a NAT collision:
    // the generator merges them into one session, see `write_tenant`).
    let on_cgnat = variant == Human::Normal
        && device == Device::Mobile
        && !ctx.cgnat_pool.is_empty()
        && rng.random_bool(0.35);
    // Corporate VPN egress and privacy relays put people on hosting
    // networks too.
    let via_vpn = variant == Human::Normal && !on_cgnat && rng.random_bool(0.12);
    let addr = match variant {
        Human::Headless => ip(rng, Network::Datacenter),
        _ if on_cgnat => pick(rng, ctx.cgnat_pool).clone(),
        _ if via_vpn => ip(rng, Network::Datacenter),
        _ => {
            let net = if device == Device::Mobile && rng.random_bool(0.6) {
                Network::Mobile
            } else {
                Network::Residential
            };
            ip(rng, net)
        }
    };
    let behind = if variant == Human::Normal {
        human_behind(rng)
    } else {
        rng.random_range(0..4)
    };
    let headless_ua = variant == Human::Headless && rng.random_bool(0.5);
    let app_user = site.is_api() && variant == Human::Normal && rng.random_bool(0.7);
    let ua = if app_user {
        app_ua(rng, "ShopApp")
    } else if on_cgnat && !ctx.popular_mobile_uas.is_empty() && rng.random_bool(0.6) {
        pick(rng, ctx.popular_mobile_uas).clone()
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
            pays: true,
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
    finish(archetype, addr, ua, sid, b)
}

/// Several people behind one office or carrier NAT with the same managed
/// browser image (or the same app build): without cookies the sessionizer
/// can only key them by (IP, user agent), so their visits arrive as one
/// session — many requests, several logins (some failing), high rates. No
/// cache (every page reloads its assets); half the proxies strip referers;
/// half the offices are call centres with power users.
pub(super) fn nat_humans(ctx: &TenantCtx<'_>, rng: &mut R2) -> SimSession {
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
        pays: true,
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
    finish(Archetype::HumanNat, addr, ua, None, b)
}

pub(super) fn login_prob(site: &Site) -> f64 {
    match site.kind {
        crate::synth::TenantKind::Ecommerce => 0.12,
        crate::synth::TenantKind::Bank => 0.7,
        crate::synth::TenantKind::Saas => 0.5,
        crate::synth::TenantKind::Api => 0.4,
    }
}

/// A person logging in: mostly succeeds, often after a typo; 4 % give up
/// after failing (their sessions look like a low-and-slow stuffer's, and
/// they are the people a 1 %-FPR threshold meets first). Returns whether they are logged in.
pub(super) fn human_login(rng: &mut R2, b: &mut Build<'_>, referer: &str) -> bool {
    let user = hex_id(rng);
    let gives_up = rng.random_bool(0.04);
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
pub(super) struct HumanStyle {
    /// Every page reloads its assets; no revalidation (304).
    pub(super) no_cache: bool,
    /// A proxy removes the Referer header.
    pub(super) strip_referer: bool,
    /// Fast, long, office-hours visits.
    pub(super) power: bool,
    /// Has assets cached from an earlier visit.
    pub(super) returning: bool,
    /// May log in (scrapers that imitate people use accounts of their own).
    pub(super) logins: bool,
    /// May add to cart (at people's rate).
    pub(super) purchases: bool,
    /// May go on to pay after adding to the cart (people; not scrapers).
    pub(super) pays: bool,
    /// Extra probability of going to an item page next (scrapers' target).
    pub(super) item_bias: f64,
    /// Opens several items from a list in new tabs at once, then reads them.
    pub(super) tabs: bool,
}

pub(super) fn web_human(ctx: &TenantCtx<'_>, rng: &mut R2, b: &mut Build<'_>, style: HumanStyle) {
    let site = ctx.site;
    let HumanStyle {
        no_cache,
        strip_referer,
        power,
        returning,
        logins,
        purchases,
        pays: may_pay,
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
    let login_at = if site.kind == crate::synth::TenantKind::Ecommerce {
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
        && may_pay
        && match site.kind {
            crate::synth::TenantKind::Ecommerce => carted && rng.random_bool(0.4),
            crate::synth::TenantKind::Bank => logged_in && rng.random_bool(0.3),
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
pub(super) fn api_human(
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
