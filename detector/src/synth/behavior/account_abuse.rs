//! Attacks on accounts and payments: credential stuffing, brute force,
//! card testing.

use super::*;

pub(super) fn credential_stuffer(ctx: &TenantCtx<'_>, rng: &mut R2) -> SimSession {
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
        let mut s = finish(Archetype::CredentialStuffer, addr, ua, None, b);
        if rng.random_bool(0.3) {
            s.spoofed_xff = Some(ip(rng, Network::Residential));
        }
        s
    } else {
        // Low and slow through residential proxies, a few attempts per
        // address; most sessions belong to one of the tenant's campaigns and
        // share its proxy pool and user agents.
        let campaign = (!ctx.campaigns.is_empty() && rng.random_bool(0.7))
            .then(|| rng.random_range(0..ctx.campaigns.len()));
        let start = match campaign {
            Some(k) => {
                let (a, b) = ctx.campaigns[k];
                a as f64 + rng.random::<f64>() * (b - a) as f64
            }
            None => start_time(ctx, rng, When::Uniform),
        };
        let pool = campaign.and_then(|k| ctx.campaign_pools.get(k));
        let ua = match pool {
            Some(p) if !p.fresh_agents && !p.user_agents.is_empty() => {
                pick(rng, &p.user_agents).clone()
            }
            _ => {
                // Rotating a list of real browser agents: as current (or as
                // stale) as people's.
                let device = if rng.random_bool(0.3) {
                    Device::Mobile
                } else {
                    Device::Desktop
                };
                let behind = human_behind(rng);
                browser_ua(rng, start as i64, device, behind, false)
            }
        };
        let net = if rng.random_bool(0.7) {
            Network::Residential
        } else {
            Network::Mobile
        };
        let addr = match pool {
            Some(p) if !p.prefixes.is_empty() => {
                let [a, b, c] = *pick(rng, &p.prefixes);
                format!("{a}.{b}.{c}.{}", rng.random_range(1..=254u8))
            }
            _ => ip(rng, net),
        };
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
        finish(Archetype::CredentialStuffer, addr, ua, sid, b)
    }
}

pub(super) fn brute_forcer(ctx: &TenantCtx<'_>, rng: &mut R2) -> SimSession {
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
    // Most go after the accounts worth taking over, from many sessions.
    let target = if !ctx.targeted_accounts.is_empty() && rng.random_bool(0.6) {
        pick(rng, ctx.targeted_accounts).clone()
    } else {
        hex_id(rng)
    };
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
    finish(Archetype::BruteForcer, addr, ua, None, b)
}

pub(super) fn card_tester(ctx: &TenantCtx<'_>, rng: &mut R2) -> SimSession {
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
        crate::synth::TenantKind::Ecommerce | crate::synth::TenantKind::Api => {
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
    finish(Archetype::CardTester, addr, ua, sid, b)
}
