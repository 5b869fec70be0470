//! The synthetic tenants' web sites: page paths, navigation, static assets
//! and the sensitive endpoints (login, cart, payment) for each tenant kind.

use rand::{Rng, RngExt};

use super::TenantKind;
use super::agents::{lognormal, pick, pick_weighted};

/// What a page is, independent of the site's URL scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PageKind {
    Home,
    Listing,
    Item,
    Search,
    Info,
    Account,
    Cart,
    Checkout,
    LoginPage,
}

const CATEGORIES: &[&str] = &[
    "shoes", "jackets", "shirts", "bags", "watches", "kitchen", "garden", "toys", "books", "audio",
    "laptops", "phones",
];
const TOPICS: &[&str] = &[
    "returns", "shipping", "contact", "privacy", "faq", "security", "fees", "terms",
];
const WORDS: &[&str] = &[
    "red", "sale", "wireless", "leather", "kids", "gift", "pro", "mini", "classic", "eco",
];
const BANK_PRODUCTS: &[&str] = &[
    "accounts",
    "cards",
    "loans",
    "mortgages",
    "savings",
    "insurance",
];
const CITIES: &[&str] = &[
    "berlin", "london", "paris", "madrid", "rome", "vienna", "oslo", "dublin",
];
const FEATURES: &[&str] = &[
    "automation",
    "reports",
    "integrations",
    "security",
    "teams",
    "api",
];
const DOC_SECTIONS: &[&str] = &["getting-started", "api", "guides", "admin", "billing"];

/// One tenant's site.
#[derive(Debug, Clone)]
pub(crate) struct Site {
    pub(crate) kind: TenantKind,
    pub(crate) host: String,
    pub(crate) catalog: u32,
    pub(crate) hot_items: Vec<u32>,
    pub(crate) asset_version: String,
    /// Status a failed login gets in the access log (401, 403, or 200 when the
    /// form is re-rendered).
    pub(crate) login_fail_status: u16,
    /// Status a declined payment gets (402, 422, or 200).
    pub(crate) pay_fail_status: u16,
    /// Static assets are served by a CDN on another host: they never reach
    /// this access log (so nobody's sessions show asset loads).
    pub(crate) assets_on_cdn: bool,
    page_median: f64,
}

impl Site {
    pub(crate) fn new<R: Rng + ?Sized>(rng: &mut R, kind: TenantKind, index: usize) -> Self {
        let host = match kind {
            TenantKind::Ecommerce => format!("shop-{index:03}.example"),
            TenantKind::Bank => format!("bank-{index:03}.example"),
            TenantKind::Saas => format!("app-{index:03}.example"),
            TenantKind::Api => format!("api-{index:03}.example"),
        };
        let catalog = rng.random_range(800..20_000);
        let hot_items = (0..3)
            .map(|_| 10_000 + rng.random_range(0..catalog))
            .collect();
        let median: f64 = match kind {
            TenantKind::Api => 3_000.0,
            _ => rng.random_range(25_000.0..70_000.0),
        };
        Self {
            kind,
            host,
            catalog,
            hot_items,
            asset_version: format!("{:08x}", rng.random::<u32>()),
            login_fail_status: [401, 403, 200][pick_weighted(rng, &[0.6, 0.2, 0.2])],
            pay_fail_status: [402, 422, 200][pick_weighted(rng, &[0.6, 0.25, 0.15])],
            assets_on_cdn: kind != TenantKind::Api && rng.random_bool(0.3),
            page_median: median,
        }
    }

    /// Absolute URL of a path on this site (for referers).
    pub(crate) fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.host)
    }

    pub(crate) fn item_id<R: Rng + ?Sized>(&self, rng: &mut R) -> u32 {
        10_000 + rng.random_range(0..self.catalog)
    }

    pub(crate) fn page_bytes<R: Rng + ?Sized>(&self, rng: &mut R) -> u64 {
        lognormal(rng, self.page_median, 0.5).min(5e6) as u64
    }

    pub(crate) fn is_api(&self) -> bool {
        self.kind == TenantKind::Api
    }

    /// Path of a page of the given kind.
    pub(crate) fn page<R: Rng + ?Sized>(&self, rng: &mut R, kind: PageKind) -> String {
        match self.kind {
            TenantKind::Ecommerce => match kind {
                PageKind::Home => "/".into(),
                PageKind::Listing => {
                    let c = pick(rng, CATEGORIES);
                    if rng.random_bool(0.3) {
                        format!("/c/{c}?page={}", rng.random_range(2..8))
                    } else {
                        format!("/c/{c}")
                    }
                }
                PageKind::Item => format!("/p/{}", self.item_id(rng)),
                PageKind::Search => {
                    format!("/search?q={}+{}", pick(rng, WORDS), pick(rng, CATEGORIES))
                }
                PageKind::Info => format!("/help/{}", pick(rng, TOPICS)),
                PageKind::Account => pick(
                    rng,
                    &["/account/orders", "/account/profile", "/account/wishlist"],
                )
                .to_string(),
                PageKind::Cart => "/cart".into(),
                PageKind::Checkout => "/checkout".into(),
                PageKind::LoginPage => "/account/login".into(),
            },
            TenantKind::Bank => match kind {
                PageKind::Home => "/".into(),
                PageKind::Listing => format!("/personal/{}", pick(rng, BANK_PRODUCTS)),
                PageKind::Item => format!(
                    "/personal/{}/{}",
                    pick(rng, BANK_PRODUCTS),
                    pick(rng, &["compare", "apply", "rates", "details"])
                ),
                PageKind::Search => format!("/branches/{}", pick(rng, CITIES)),
                PageKind::Info => format!("/help/{}", pick(rng, TOPICS)),
                PageKind::Account => {
                    let n = rng.random_range(1..4);
                    pick(
                        rng,
                        &[
                            "/app/overview".to_string(),
                            format!("/app/accounts/{n}"),
                            format!("/app/accounts/{n}/transactions"),
                            "/app/cards".to_string(),
                            "/app/statements".to_string(),
                        ],
                    )
                    .clone()
                }
                PageKind::Cart => "/app/payments/new".into(),
                PageKind::Checkout => "/app/payments/confirm".into(),
                PageKind::LoginPage => "/login".into(),
            },
            TenantKind::Saas => match kind {
                PageKind::Home => "/".into(),
                PageKind::Listing => format!("/features/{}", pick(rng, FEATURES)),
                PageKind::Item => format!("/docs/{}/{}", pick(rng, DOC_SECTIONS), pick(rng, WORDS)),
                PageKind::Search => {
                    format!("/blog/{}-{}", pick(rng, WORDS), rng.random_range(1..200))
                }
                PageKind::Info => {
                    pick(rng, &["/pricing", "/about", "/security", "/contact"]).to_string()
                }
                PageKind::Account => {
                    let p = rng.random_range(100..999);
                    pick(
                        rng,
                        &[
                            "/app/dashboard".to_string(),
                            format!("/app/projects/{p}"),
                            format!("/app/projects/{p}/settings"),
                            "/app/team".to_string(),
                        ],
                    )
                    .clone()
                }
                PageKind::Cart => "/app/billing".into(),
                PageKind::Checkout => "/app/billing/upgrade".into(),
                PageKind::LoginPage => "/login".into(),
            },
            TenantKind::Api => match kind {
                PageKind::Home => "/api/v2/config".into(),
                PageKind::Listing => format!(
                    "/api/v2/categories/{}?page={}",
                    pick(rng, CATEGORIES),
                    rng.random_range(1..6)
                ),
                PageKind::Item => format!("/api/v2/products/{}", self.item_id(rng)),
                PageKind::Search => format!("/api/v2/search?q={}", pick(rng, WORDS)),
                PageKind::Info => "/api/v2/stores".into(),
                PageKind::Account => pick(
                    rng,
                    &["/api/v2/me", "/api/v2/orders", "/api/v2/me/addresses"],
                )
                .to_string(),
                PageKind::Cart => "/api/v2/cart".into(),
                PageKind::Checkout => "/api/v2/checkout".into(),
                PageKind::LoginPage => "/api/v2/auth/config".into(),
            },
        }
    }

    /// Where a human goes next from a page of kind `prev`.
    pub(crate) fn next_kind<R: Rng + ?Sized>(
        &self,
        rng: &mut R,
        prev: PageKind,
        logged_in: bool,
    ) -> PageKind {
        use PageKind::*;
        let kinds = [Home, Listing, Item, Search, Info, Account];
        let w: [f64; 6] = match prev {
            Home => [0.0, 0.45, 0.2, 0.2, 0.1, 0.05],
            Listing => [0.05, 0.25, 0.55, 0.08, 0.02, 0.05],
            Item => [0.08, 0.25, 0.4, 0.15, 0.04, 0.08],
            Search => [0.05, 0.15, 0.6, 0.15, 0.02, 0.03],
            Info => [0.3, 0.2, 0.2, 0.1, 0.15, 0.05],
            _ => [0.2, 0.2, 0.2, 0.1, 0.05, 0.25],
        };
        let mut w = w;
        if logged_in && self.kind != TenantKind::Ecommerce {
            // Logged-in bank and SaaS users live in the app.
            w[5] += 1.5;
        }
        kinds[pick_weighted(rng, &w)]
    }

    /// Login form submission (POST).
    pub(crate) fn login_post(&self) -> &'static str {
        match self.kind {
            TenantKind::Ecommerce => "/account/login",
            TenantKind::Bank | TenantKind::Saas => "/login",
            TenantKind::Api => "/api/v2/auth/token",
        }
    }

    /// Add-to-cart action (POST); `None` where there is no cart.
    pub(crate) fn cart_add(&self) -> Option<&'static str> {
        match self.kind {
            TenantKind::Ecommerce => Some("/cart/add"),
            TenantKind::Api => Some("/api/v2/cart/items"),
            _ => None,
        }
    }

    /// Payment submission (POST).
    pub(crate) fn payment_post(&self) -> &'static str {
        match self.kind {
            TenantKind::Ecommerce => "/checkout/pay",
            TenantKind::Bank => "/app/payments",
            TenantKind::Saas => "/app/billing/pay",
            TenantKind::Api => "/api/v2/payments",
        }
    }

    /// Health endpoint monitors poll.
    pub(crate) fn health(&self) -> &'static str {
        match self.kind {
            TenantKind::Api => "/api/v2/health",
            _ => "/health",
        }
    }

    /// Static assets a first visit loads (path, bytes). Empty for API tenants.
    pub(crate) fn shell_assets<R: Rng + ?Sized>(&self, rng: &mut R) -> Vec<(String, u64)> {
        if self.is_api() || self.assets_on_cdn {
            return Vec::new();
        }
        let v = &self.asset_version;
        let mut a = vec![
            (format!("/static/css/main.{v}.css"), 48_000),
            (format!("/static/js/runtime.{v}.js"), 4_000),
            (format!("/static/js/vendor.{v}.js"), 210_000),
            (format!("/static/js/app.{v}.js"), 95_000),
            ("/static/fonts/inter-var.woff2".to_string(), 31_000),
            ("/static/img/logo.svg".to_string(), 6_000),
        ];
        if rng.random_bool(0.5) {
            a.push(("/favicon.ico".to_string(), 1_150));
        }
        if rng.random_bool(0.4) {
            a.push((
                format!("/static/js/chunk-{}.{v}.js", rng.random_range(10..99)),
                24_000,
            ));
        }
        a
    }

    /// Assets of one page (images of an item, a lazy chunk).
    pub(crate) fn page_assets<R: Rng + ?Sized>(
        &self,
        rng: &mut R,
        page: &str,
    ) -> Vec<(String, u64)> {
        if self.is_api() || self.assets_on_cdn {
            return Vec::new();
        }
        let mut a = Vec::new();
        if let Some(id) = page.strip_prefix("/p/") {
            for i in 0..rng.random_range(1..5) {
                a.push((
                    format!("/media/p/{id}/{i}.jpg"),
                    rng.random_range(20_000..160_000),
                ));
            }
        } else if page.starts_with("/c/") || page == "/" || page.starts_with("/search") {
            for _ in 0..rng.random_range(2..7) {
                let id = self.item_id(rng);
                a.push((
                    format!("/media/p/{id}/thumb.webp"),
                    rng.random_range(6_000..25_000),
                ));
            }
        } else if rng.random_bool(0.3) {
            a.push((format!("/static/img/{}.svg", pick(rng, WORDS)), 3_000));
        }
        a
    }
}
