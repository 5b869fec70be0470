//! The seeded synthetic tenant generator: real log text plus labels.
//!
//! Model (all draws from ChaCha8 seeded by `(seed, tenant index)`, so a tenant
//! is the same whether generated alone or with others):
//!
//! - **Tenant kind** cycles through e-commerce, bank, SaaS login and API
//!   (tenant `i` has kind `i mod 4`); each kind has its own site (paths,
//!   assets, login/cart/payment endpoints) and an archetype prior.
//! - **Size**: sessions ~ LogNormal(ln median, σ), clipped to [min, max].
//! - **Bot share** ~ Beta(2, 4) per tenant.
//! - **Bot mix** ~ Dirichlet(α · K · prior / Σ prior) over the K = 10 bot
//!   archetypes: α = 1 makes each tenant's mix a random draw around its kind's
//!   prior, α = 0.1 very non-IID (one or two archetypes dominate), α = 10 near
//!   the prior (near IID within a kind).
//! - **Humans**: ordinary browsers, plus the hard negatives "behind NAT
//!   without cache" and "headless (remote browser isolation)" in fixed
//!   per-kind shares.
//! - **Time**: `days` days from `start_unix_ms`; each tenant has its own UTC
//!   offset; people follow a daily cycle in local time, most bots do not.
//! - **Format**: CLF (nginx combined, nginx main with X-Forwarded-For, or
//!   Apache combined) or JSON lines (with or without outcome, ASN and user).
//!
//! Sessions that would share an (IP, user agent) key within 30 minutes of
//! each other (and so be merged by the sessionizer) are **NAT collisions**
//! when both are of the same traffic class: the second one's requests are
//! merged into the first (which keeps its archetype), as the sessionizer
//! will merge them — phones behind a carrier-grade NAT with the most common
//! browser build collide this way. Colliding sessions of different classes
//! (or whose merged stream would pause past the timeout) are re-drawn, which
//! keeps the label join exact; [`labels::join_labels`] reports any mismatch.
//!
//! Harder cases on purpose (issue 23): advanced scrapers and click fraud
//! have their own navigation (not the human routine), and a share of them
//! add to the cart as people do; simple scrapers include spoofed crawlers
//! (crawler agents from hosting and residential networks); a fifth of
//! people run browsers more than a year out of date; each tenant has a
//! low-and-slow stuffing campaign over the whole window from dozens of
//! /24s; and part of the bot agents (crawlers, monitors, tools) are not in
//! the vendored list the `ua_known_bot` feature classifies with.

mod archetype;
pub mod labels;

mod agents;
mod behavior;
mod files;
pub mod netplan;
mod placement;
mod render;
mod site;

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Write};

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::multi::Dirichlet;
use rand_distr::{Beta, Distribution};
use serde::{Deserialize, Serialize};

pub use archetype::{Archetype, BOT_PRIORS, HUMAN_MIX, TenantKind};
pub use files::{ASN_DB_FILE, tenant_file_names, write_dir};
pub use labels::{
    JoinReport, LabelRecord, LabelledSessions, join_labels, join_labels_with, read_labels,
};
pub use render::{ClfFlavour, LineStyle};

use crate::logs::{LogFormat, ReaderConfig, clf, json};
use crate::session::{SessionConfig, SessionIdentity, SessionKey};
use agents::{lognormal, pick, pick_weighted};
use behavior::{CampaignPool, SimSession, TenantCtx, simulate};
use placement::{MAX_REQUESTS, Occupant, Placement, place};
use site::Site;

/// UTC offsets (minutes) tenants are drawn from.
pub const UTC_OFFSETS: [i16; 10] = [-480, -300, -180, 0, 60, 120, 330, 480, 540, 600];

/// Which log formats tenants write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SynthFormat {
    /// Combined Log Format (a random CLF flavour per tenant).
    Clf,
    /// JSON lines.
    Json,
    /// Each tenant picks CLF or JSON at random.
    Mixed,
}

impl std::str::FromStr for SynthFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "clf" => Ok(Self::Clf),
            "json" => Ok(Self::Json),
            "mixed" => Ok(Self::Mixed),
            o => Err(format!(
                "unknown format {o:?} (expected clf, json or mixed)"
            )),
        }
    }
}

/// Generator settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SynthConfig {
    /// Number of tenants.
    pub tenants: usize,
    /// Seed of everything.
    pub seed: u64,
    /// Dirichlet concentration of the bot mix (see the module docs).
    pub alpha: f64,
    /// Log format.
    pub format: SynthFormat,
    /// Simulated days.
    pub days: u32,
    /// Start of the window, Unix ms (default 2024-03-04T00:00:00Z).
    pub start_unix_ms: i64,
    /// Median sessions per tenant.
    pub median_sessions: f64,
    /// Log-scale spread of tenant sizes.
    pub sessions_sigma: f64,
    /// Smallest tenant.
    pub min_sessions: usize,
    /// Largest tenant.
    pub max_sessions: usize,
}

impl Default for SynthConfig {
    fn default() -> Self {
        Self {
            tenants: 20,
            seed: 1,
            alpha: 1.0,
            format: SynthFormat::Clf,
            days: 2,
            start_unix_ms: 1_709_510_400_000,
            median_sessions: 1_500.0,
            sessions_sigma: 0.6,
            min_sessions: 200,
            max_sessions: 12_000,
        }
    }
}

/// Why a configuration is unusable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid synth config: {0}")]
pub struct SynthConfigError(pub String);

impl SynthConfig {
    /// Checks the ranges.
    pub fn validate(&self) -> Result<(), SynthConfigError> {
        let bad = |m: &str| Err(SynthConfigError(m.to_string()));
        if !(self.alpha.is_finite() && self.alpha > 0.0 && self.alpha <= 1000.0) {
            return bad("alpha must be finite and in (0, 1000]");
        }
        if !(1..=365).contains(&self.days) {
            return bad("days must be 1..=365");
        }
        let sizes_ok = self.median_sessions.is_finite()
            && self.median_sessions >= 1.0
            && self.sessions_sigma.is_finite()
            && self.sessions_sigma >= 0.0;
        if !sizes_ok {
            return bad("median_sessions must be ≥ 1 and sessions_sigma ≥ 0");
        }
        if self.min_sessions == 0
            || self.min_sessions > self.max_sessions
            || self.max_sessions > 1_000_000
        {
            return bad("need 1 ≤ min_sessions ≤ max_sessions ≤ 1 000 000");
        }
        if self.tenants > 100_000 {
            return bad("at most 100 000 tenants");
        }
        if !(0..=4_102_444_800_000).contains(&self.start_unix_ms) {
            return bad("start_unix_ms must be between 1970 and 2100");
        }
        Ok(())
    }
}

/// One tenant's drawn parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TenantProfile {
    /// Tenant index.
    pub index: usize,
    /// `tenant-007`.
    pub name: String,
    /// Kind.
    pub kind: TenantKind,
    /// Site host name.
    pub host: String,
    /// Sessions to generate.
    pub sessions: usize,
    /// Share of bot sessions.
    pub bot_share: f64,
    /// Bot archetype mix, in [`Archetype::BOTS`] order.
    pub bot_mix: Vec<f64>,
    /// Human archetype mix, in [`Archetype::HUMANS`] order.
    pub human_mix: Vec<f64>,
    /// Local time offset of the tenant's logs, minutes.
    pub utc_offset_min: i16,
    /// Log layout.
    pub style: LineStyle,
}

/// What was written for one tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TenantSummary {
    /// Drawn parameters.
    pub profile: TenantProfile,
    /// Sessions written per archetype name.
    pub sessions_by_archetype: BTreeMap<String, usize>,
    /// Log lines written.
    pub lines: usize,
    /// Sessions that could not be placed without merging with another
    /// session of the same (IP, user agent) and were left out.
    pub dropped_sessions: usize,
    /// NAT collisions: drawn sessions that shared (IP, user agent) with an
    /// overlapping session of the same class and were merged into it (the
    /// sessionizer cannot tell them apart either).
    #[serde(default)]
    pub nat_merged_sessions: usize,
}

fn rng_for(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

/// Draws tenant `index`'s parameters.
pub fn tenant_profile(cfg: &SynthConfig, index: usize) -> TenantProfile {
    let mut rng = rng_for(cfg.seed, 2 * index as u64);
    let kind = TenantKind::ALL[index % 4];
    let k = kind as usize;
    let sessions = lognormal(&mut rng, cfg.median_sessions, cfg.sessions_sigma)
        .round()
        .clamp(cfg.min_sessions as f64, cfg.max_sessions as f64) as usize;
    let bot_share = Beta::new(2.0, 4.0).map_or(1.0 / 3.0, |b| b.sample(&mut rng));
    let prior = BOT_PRIORS[k];
    let total: f64 = prior.iter().sum();
    let conc: Vec<f64> = prior
        .iter()
        .map(|p| (cfg.alpha * 10.0 * p / total).max(1e-3))
        .collect();
    let mut mix: Vec<f64> =
        Dirichlet::new(&conc).map_or_else(|_| Vec::new(), |d| d.sample(&mut rng));
    let sum: f64 = mix.iter().sum();
    if mix.len() != prior.len()
        || !sum.is_finite()
        || sum <= 0.0
        || mix.iter().any(|m| !m.is_finite())
    {
        // Tiny concentrations can underflow every gamma draw: put all mass
        // on one archetype drawn from the prior, the α → 0 limit.
        let one = pick_weighted(&mut rng, &prior);
        mix = (0..prior.len())
            .map(|i| if i == one { 1.0 } else { 0.0 })
            .collect();
    } else {
        mix.iter_mut().for_each(|m| *m /= sum);
    }
    let json = match cfg.format {
        SynthFormat::Clf => false,
        SynthFormat::Json => true,
        SynthFormat::Mixed => rng.random_bool(0.5),
    };
    let style = if json {
        LineStyle::Json {
            outcome: rng.random_bool(0.85),
            asn: rng.random_bool(0.5),
            user: rng.random_bool(0.8),
        }
    } else {
        let flavour = [
            ClfFlavour::NginxCombined,
            ClfFlavour::NginxMain,
            ClfFlavour::ApacheCombined,
        ][pick_weighted(&mut rng, &[0.4, 0.35, 0.25])];
        LineStyle::Clf { flavour }
    };
    let utc_offset_min = *pick(&mut rng, &UTC_OFFSETS);
    let site = Site::new(&mut rng_for(cfg.seed, 2 * index as u64 + 1), kind, index);
    TenantProfile {
        index,
        name: format!("tenant-{index:03}"),
        kind,
        host: site.host.clone(),
        sessions,
        bot_share,
        bot_mix: mix,
        human_mix: HUMAN_MIX[k].to_vec(),
        utc_offset_min,
        style,
    }
}

/// Generates tenant `index`: writes its log to `log` and its labels to `labels`.
pub fn write_tenant(
    cfg: &SynthConfig,
    index: usize,
    log: &mut dyn Write,
    labels: &mut dyn Write,
) -> io::Result<TenantSummary> {
    cfg.validate()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let profile = tenant_profile(cfg, index);
    // Stream 2i+1 draws the site (as in tenant_profile), then the traffic.
    let mut rng = rng_for(cfg.seed, 2 * index as u64 + 1);
    let site = Site::new(&mut rng, profile.kind, index);
    let day_ms = 86_400_000i64;
    let offset_ms = i64::from(profile.utc_offset_min) * 60_000;
    let drops: Vec<i64> = (0..i64::from(cfg.days))
        .map(|d| {
            cfg.start_unix_ms + d * day_ms + 10 * 3_600_000 - offset_ms
                + rng.random_range(0..3_600_000)
        })
        .collect();
    // Campaign 0 is low and slow (the whole window, many /24s, a fresh
    // agent per session); the others are hours-long bursts from a few /24s.
    let span_ms = i64::from(cfg.days) * day_ms;
    let campaigns: Vec<(i64, i64)> = (0..rng.random_range(2..5))
        .map(|k| {
            if k == 0 {
                return (cfg.start_unix_ms, cfg.start_unix_ms + span_ms);
            }
            let a = cfg.start_unix_ms + rng.random_range(0..span_ms);
            (a, a + rng.random_range(3_600_000..5 * 3_600_000))
        })
        .collect();
    let campaign_pools: Vec<CampaignPool> = (0..campaigns.len())
        .map(|k| CampaignPool {
            fresh_agents: k == 0,
            prefixes: (0..if k == 0 {
                rng.random_range(20..60)
            } else {
                rng.random_range(2..6)
            })
                .map(|_| {
                    let a = *agents::pick(&mut rng, agents::RESIDENTIAL_FIRST_OCTETS);
                    [a, rng.random_range(0..=255u8), rng.random_range(0..=255u8)]
                })
                .collect(),
            user_agents: (0..rng.random_range(1..4))
                .map(|_| {
                    let behind = rng.random_range(0..3);
                    agents::browser_ua(
                        &mut rng,
                        cfg.start_unix_ms,
                        agents::Device::Desktop,
                        behind,
                        false,
                    )
                })
                .collect(),
        })
        .collect();
    let targeted_accounts: Vec<String> = (0..3).map(|_| agents::hex_id(&mut rng)).collect();
    let expected_nat = profile.sessions as f64 * (1.0 - profile.bot_share) * profile.human_mix[1];
    let nat_pool: Vec<String> = (0..((expected_nat / 12.0).round() as usize).max(3))
        .map(|_| agents::ip(&mut rng, agents::Network::Residential))
        .collect();
    // Carrier-grade NAT: about one public address per 25 of the phone
    // sessions that go through it, and the three most common phone builds.
    let expected_phones = profile.sessions as f64 * (1.0 - profile.bot_share) * 0.35 * 0.35;
    let cgnat_pool: Vec<String> = (0..((expected_phones / 25.0).round() as usize).max(2))
        .map(|_| agents::ip(&mut rng, agents::Network::Mobile))
        .collect();
    let popular_mobile_uas: Vec<String> = (0..3)
        .map(|_| {
            agents::browser_ua(
                &mut rng,
                cfg.start_unix_ms,
                agents::Device::Mobile,
                0,
                false,
            )
        })
        .collect();
    let lb_ip = format!(
        "10.0.{}.{}",
        rng.random_range(0..255),
        rng.random_range(2..250)
    );
    let ctx = TenantCtx {
        site: &site,
        json: profile.style.is_json(),
        start_ms: cfg.start_unix_ms,
        days: cfg.days,
        utc_offset_min: profile.utc_offset_min,
        nat_pool: &nat_pool,
        cgnat_pool: &cgnat_pool,
        popular_mobile_uas: &popular_mobile_uas,
        drops: &drops,
        campaigns: &campaigns,
        campaign_pools: &campaign_pools,
        targeted_accounts: &targeted_accounts,
    };

    let mut sessions: Vec<SimSession> = Vec::with_capacity(profile.sessions);
    // Busy intervals per (IP, user agent), with the session occupying each.
    let mut occupied: HashMap<(String, String), Vec<Occupant>> = HashMap::new();
    let mut dropped = 0usize;
    let mut nat_merged = 0usize;
    for _ in 0..profile.sessions {
        let archetype = if rng.random_bool(profile.bot_share.clamp(0.0, 1.0)) {
            Archetype::BOTS[pick_weighted(&mut rng, &profile.bot_mix)]
        } else {
            Archetype::HUMANS[pick_weighted(&mut rng, &profile.human_mix)]
        };
        let mut placed = false;
        for _attempt in 0..12 {
            let mut s = simulate(&ctx, &mut rng, archetype);
            s.requests.truncate(MAX_REQUESTS);
            if s.requests.is_empty() {
                continue;
            }
            let by_sid = ctx.json && s.session_id.is_some();
            if by_sid {
                sessions.push(s);
                placed = true;
                break;
            }
            let key = (s.ip.clone(), s.ua.clone());
            let slots = occupied.entry(key).or_default();
            match place(&mut sessions, slots, s) {
                Placement::Alone => {}
                Placement::Merged => nat_merged += 1,
                Placement::Refused => continue,
            }
            placed = true;
            break;
        }
        if !placed {
            dropped += 1;
        }
    }

    // Lines in time order; each session's first line gives its key.
    let mut order: Vec<(i64, u32, u32)> =
        Vec::with_capacity(sessions.iter().map(|s| s.requests.len()).sum());
    for (si, s) in sessions.iter().enumerate() {
        for (ri, r) in s.requests.iter().enumerate() {
            order.push((r.ts_ms, si as u32, ri as u32));
        }
    }
    order.sort_unstable();
    let mut keys: Vec<Option<String>> = vec![None; sessions.len()];
    let mut line = Vec::with_capacity(512);
    for &(_, si, ri) in &order {
        let s = &sessions[si as usize];
        line.clear();
        render::render(
            &mut line,
            profile.style,
            profile.utc_offset_min,
            s,
            &s.requests[ri as usize],
            &lb_ip,
        );
        log.write_all(&line)?;
        if keys[si as usize].is_none() {
            keys[si as usize] = Some(key_of_line(&line, profile.style)?);
        }
    }
    let mut by_archetype: BTreeMap<String, usize> = BTreeMap::new();
    for (s, key) in sessions.iter().zip(keys) {
        let rec = LabelRecord {
            session: key.unwrap_or_default(),
            archetype: s.archetype.name().to_string(),
            class: Some(s.archetype.class()),
            is_bot: s.archetype.is_bot(),
            requests: s.requests.len(),
        };
        serde_json::to_writer(&mut *labels, &rec)?;
        labels.write_all(b"\n")?;
        *by_archetype
            .entry(s.archetype.name().to_string())
            .or_insert(0) += 1;
    }
    Ok(TenantSummary {
        profile,
        sessions_by_archetype: by_archetype,
        lines: order.len(),
        dropped_sessions: dropped,
        nat_merged_sessions: nat_merged,
    })
}

/// The session key the sessionizer will give the session starting with `line`.
fn key_of_line(line: &[u8], style: LineStyle) -> io::Result<String> {
    let invalid = |m: String| io::Error::new(io::ErrorKind::InvalidData, m);
    let text = std::str::from_utf8(line).map_err(|e| invalid(e.to_string()))?;
    let text = text.trim_end_matches('\n');
    let rec = if style.is_json() {
        json::parse_line(text)
    } else {
        clf::parse_line(text)
    }
    .map_err(|e| invalid(format!("generated an unparsable line ({e}): {text}")))?;
    let identity = match rec.session_id {
        Some(id) => SessionIdentity::SessionId(id.into_owned()),
        None => SessionIdentity::IpUa {
            ip: rec.ip.into_owned(),
            user_agent: rec.user_agent.into_owned(),
        },
    };
    Ok(SessionKey {
        start_ms: rec.ts_ms,
        identity,
    }
    .to_string())
}

/// One generated tenant, in memory.
#[derive(Debug, Clone)]
pub struct GeneratedTenant {
    /// Parameters and counts.
    pub summary: TenantSummary,
    /// Log text.
    pub log: Vec<u8>,
    /// Labels file text (JSON lines).
    pub labels: Vec<u8>,
}

/// Generates tenant `index` in memory.
pub fn generate_tenant(cfg: &SynthConfig, index: usize) -> io::Result<GeneratedTenant> {
    let (mut log, mut labels) = (Vec::new(), Vec::new());
    let summary = write_tenant(cfg, index, &mut log, &mut labels)?;
    Ok(GeneratedTenant {
        summary,
        log,
        labels,
    })
}

impl GeneratedTenant {
    /// Sessionizes the log and joins the labels (default reader and
    /// sessionizer settings, the synthetic Internet's AS plan and crawler
    /// ranges as the tenant's network files: [`netplan::enrichment`]).
    pub fn labelled_sessions(&self) -> io::Result<LabelledSessions> {
        let labels = read_labels(self.labels.as_slice())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        join_labels_with(
            self.log.as_slice(),
            ReaderConfig::with_format(LogFormat::Auto),
            SessionConfig::default(),
            netplan::enrichment(),
            &labels,
        )
    }
}
