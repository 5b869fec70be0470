//! Vulnerability scanners.

use super::*;

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

pub(super) fn vuln_scanner(ctx: &TenantCtx<'_>, rng: &mut R2) -> SimSession {
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
    finish(Archetype::VulnScanner, addr, ua, None, b)
}
