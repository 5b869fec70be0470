//! Tenant kinds, behavioural archetypes and their traffic classes (human,
//! good bot, abusive bot), with the per-kind priors the generator draws from.

use serde::{Deserialize, Serialize};

use crate::dataset::TrafficClass;

/// Kinds of tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TenantKind {
    /// An online shop.
    Ecommerce,
    /// Online banking.
    Bank,
    /// A SaaS product's marketing site and login.
    Saas,
    /// A JSON API behind mobile apps.
    Api,
}

impl TenantKind {
    /// All kinds, in tenant-index order.
    pub const ALL: [TenantKind; 4] = [Self::Ecommerce, Self::Bank, Self::Saas, Self::Api];

    /// Stable name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ecommerce => "ecommerce",
            Self::Bank => "bank",
            Self::Saas => "saas",
            Self::Api => "api",
        }
    }
}

/// Behavioural archetypes of sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Archetype {
    /// A person with a browser (or the tenant's app).
    HumanBrowser,
    /// Hard negative: people behind an office/carrier NAT, without cookies or
    /// cache, referers stripped, often aging browsers, some power users.
    HumanNat,
    /// Hard negative: people using remote browser isolation (headless Chrome
    /// in a data centre) with human timing.
    HumanHeadless,
    /// Search-engine, SEO, AI and preview crawlers.
    BenignCrawler,
    /// Uptime monitors.
    UptimeMonitor,
    /// Scripts with library or fake agents walking the catalogue fast.
    SimpleScraper,
    /// Browser agents, rotating residential IPs, human-ish timing.
    AdvancedScraper,
    /// Many logins with leaked credentials (≥ 98 % failures), burst or low-and-slow.
    CredentialStuffer,
    /// Many passwords against one account.
    BruteForcer,
    /// Many small payments with stolen cards, mostly declined.
    CardTester,
    /// Hammering hot products and the cart at drop time.
    Scalper,
    /// Ad clicks that land and leave.
    ClickFraud,
    /// Probing for vulnerable paths.
    VulnScanner,
}

impl Archetype {
    /// Every archetype.
    pub const ALL: [Archetype; 13] = [
        Self::HumanBrowser,
        Self::HumanNat,
        Self::HumanHeadless,
        Self::BenignCrawler,
        Self::UptimeMonitor,
        Self::SimpleScraper,
        Self::AdvancedScraper,
        Self::CredentialStuffer,
        Self::BruteForcer,
        Self::CardTester,
        Self::Scalper,
        Self::ClickFraud,
        Self::VulnScanner,
    ];
    /// Human archetypes.
    pub const HUMANS: [Archetype; 3] = [Self::HumanBrowser, Self::HumanNat, Self::HumanHeadless];
    /// Bot archetypes (the Dirichlet's components, in order).
    pub const BOTS: [Archetype; 10] = [
        Self::BenignCrawler,
        Self::UptimeMonitor,
        Self::SimpleScraper,
        Self::AdvancedScraper,
        Self::CredentialStuffer,
        Self::BruteForcer,
        Self::CardTester,
        Self::Scalper,
        Self::ClickFraud,
        Self::VulnScanner,
    ];

    /// Automated traffic?
    pub fn is_bot(self) -> bool {
        !Self::HUMANS.contains(&self)
    }

    /// Good bots: crawlers that announce themselves and uptime monitors.
    pub const GOOD_BOTS: [Archetype; 2] = [Self::BenignCrawler, Self::UptimeMonitor];

    /// Human, good bot or abusive bot.
    pub fn class(self) -> TrafficClass {
        if !self.is_bot() {
            TrafficClass::Human
        } else if Self::GOOD_BOTS.contains(&self) {
            TrafficClass::GoodBot
        } else {
            TrafficClass::AbusiveBot
        }
    }

    /// Stable name (labels files, tables).
    pub fn name(self) -> &'static str {
        match self {
            Self::HumanBrowser => "human_browser",
            Self::HumanNat => "human_nat_no_cache",
            Self::HumanHeadless => "human_headless_rbi",
            Self::BenignCrawler => "benign_crawler",
            Self::UptimeMonitor => "uptime_monitor",
            Self::SimpleScraper => "simple_scraper",
            Self::AdvancedScraper => "advanced_scraper",
            Self::CredentialStuffer => "credential_stuffer",
            Self::BruteForcer => "brute_forcer",
            Self::CardTester => "card_tester",
            Self::Scalper => "scalper",
            Self::ClickFraud => "click_fraud",
            Self::VulnScanner => "vuln_scanner",
        }
    }

    /// Position in [`Archetype::ALL`] (the dataset row tag).
    pub fn id(self) -> u32 {
        Self::ALL.iter().position(|&a| a == self).unwrap_or(0) as u32
    }

    /// Inverse of [`id`](Self::id).
    pub fn from_id(id: u32) -> Option<Self> {
        Self::ALL.get(id as usize).copied()
    }
}

impl std::str::FromStr for Archetype {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .iter()
            .copied()
            .find(|a| a.name() == s)
            .ok_or_else(|| format!("unknown archetype {s:?}"))
    }
}

impl std::fmt::Display for Archetype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Bot archetype prior per tenant kind, in [`Archetype::BOTS`] order.
pub const BOT_PRIORS: [[f64; 10]; 4] = [
    // crawler monitor simple advanced stuffer brute card scalper click scanner
    [2.0, 1.0, 2.0, 12.0, 1.5, 0.5, 1.5, 2.0, 5.0, 1.0], // e-commerce
    [1.5, 1.0, 0.5, 6.0, 4.0, 1.0, 1.0, 0.1, 1.5, 1.5],  // bank
    [1.5, 1.5, 1.0, 6.0, 3.0, 1.0, 1.5, 0.1, 2.5, 1.0],  // SaaS
    [0.2, 1.5, 2.0, 8.0, 3.0, 1.0, 1.5, 2.0, 0.1, 1.5],  // API
];

/// Human archetype shares per tenant kind, in [`Archetype::HUMANS`] order.
pub const HUMAN_MIX: [[f64; 3]; 4] = [
    [0.88, 0.07, 0.05],
    [0.80, 0.14, 0.06],
    [0.84, 0.10, 0.06],
    [0.93, 0.05, 0.02],
];
