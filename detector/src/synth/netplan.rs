//! The synthetic Internet's address plan: which autonomous system owns each
//! address the generator draws, and where the verified crawlers come from.
//!
//! Every IPv4 /16 of the generator's residential, mobile and hosting
//! address space belongs to one AS of that kind (a hash of the /16 picks
//! it); residential IPv6 (2a02:1000–7fff) and mobile IPv6 (2a02:8000–ffff)
//! go by /24. Google's crawler block 66.249.0.0/16 is AS 15169 and Bing's
//! blocks AS 8075. [`asn_tsv`] writes the plan as an iptoasn TSV (what a
//! tenant would download), and [`enrichment`] loads it with the crawler
//! ranges of `data/crawler-ranges` — so ASNs reach CLF tenants' features
//! the way they reach a real tenant's, through its database.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, OnceLock};

use rand::{Rng, RngExt};

use super::agents::{
    DATACENTER_ASNS, DATACENTER_FIRST_OCTETS, MOBILE_ASNS, MOBILE_FIRST_OCTETS, RESIDENTIAL_ASNS,
    RESIDENTIAL_FIRST_OCTETS,
};
use crate::network::crawlers::Crawler;
use crate::network::{AsnDb, CrawlerRanges, Enrichment};

/// `googlebot.json` of the crawler-ranges fixture.
pub const GOOGLEBOT_JSON: &str = include_str!("../../data/crawler-ranges/googlebot.json");
/// `bingbot.json` of the crawler-ranges fixture.
pub const BINGBOT_JSON: &str = include_str!("../../data/crawler-ranges/bingbot.json");

const GOOGLE: u32 = 15169;
const MICROSOFT: u32 = 8075;
const GOOGLE_16: [(u8, u8); 1] = [(66, 249)];
const MICROSOFT_16: [(u8, u8); 5] = [(157, 55), (207, 46), (40, 77), (13, 66), (52, 167)];

fn spread(x: u32, n: usize) -> usize {
    (x.wrapping_mul(2_654_435_761) >> 7) as usize % n
}

fn asn_of_16(a: u8, b: u8) -> Option<u32> {
    if GOOGLE_16.contains(&(a, b)) {
        return Some(GOOGLE);
    }
    if MICROSOFT_16.contains(&(a, b)) {
        return Some(MICROSOFT);
    }
    let list = if RESIDENTIAL_FIRST_OCTETS.contains(&a) {
        RESIDENTIAL_ASNS
    } else if MOBILE_FIRST_OCTETS.contains(&a) {
        MOBILE_ASNS
    } else if DATACENTER_FIRST_OCTETS.contains(&a) {
        DATACENTER_ASNS
    } else {
        return None;
    };
    Some(list[spread(u32::from(a) << 8 | u32::from(b), list.len())])
}

fn asn_of_v6_block(hi: u8) -> Option<u32> {
    // 2a02:HHxx::/24 with HH = hi.
    if hi < 0x10 {
        return None;
    }
    let list = if hi >= 0x80 {
        MOBILE_ASNS
    } else {
        RESIDENTIAL_ASNS
    };
    Some(list[spread(0x1_0000 | u32::from(hi), list.len())])
}

/// The AS of an address of the synthetic Internet.
pub fn asn_of(addr: IpAddr) -> Option<u32> {
    match crate::logs::client::canonical_ip(addr) {
        IpAddr::V4(v) => {
            let [a, b, _, _] = v.octets();
            asn_of_16(a, b)
        }
        IpAddr::V6(v) => {
            let s = v.segments();
            if s[0] != 0x2a02 {
                return None;
            }
            asn_of_v6_block((s[1] >> 8) as u8)
        }
    }
}

/// The plan as sorted ranges (IPv4 mapped into IPv6 space, as [`AsnDb`] keeps them).
fn ranges() -> Vec<(u128, u128, u32)> {
    let mut out = Vec::new();
    let mut firsts: Vec<u8> = RESIDENTIAL_FIRST_OCTETS
        .iter()
        .chain(MOBILE_FIRST_OCTETS)
        .chain(DATACENTER_FIRST_OCTETS)
        .copied()
        .chain(GOOGLE_16.iter().chain(&MICROSOFT_16).map(|p| p.0))
        .collect();
    firsts.sort_unstable();
    firsts.dedup();
    for a in firsts {
        for b in 0..=255u8 {
            let known = RESIDENTIAL_FIRST_OCTETS.contains(&a)
                || MOBILE_FIRST_OCTETS.contains(&a)
                || DATACENTER_FIRST_OCTETS.contains(&a)
                || GOOGLE_16.contains(&(a, b))
                || MICROSOFT_16.contains(&(a, b));
            if let Some(asn) = asn_of_16(a, b).filter(|_| known) {
                let lo = u128::from(Ipv4Addr::new(a, b, 0, 0).to_ipv6_mapped());
                let hi = u128::from(Ipv4Addr::new(a, b, 255, 255).to_ipv6_mapped());
                out.push((lo, hi, asn));
            }
        }
    }
    for hi in 0x10..=0xffu8 {
        if let Some(asn) = asn_of_v6_block(hi) {
            let lo = u128::from(Ipv6Addr::new(0x2a02, u16::from(hi) << 8, 0, 0, 0, 0, 0, 0));
            let top = u128::from(Ipv6Addr::new(
                0x2a02,
                (u16::from(hi) << 8) | 0xff,
                0xffff,
                0xffff,
                0xffff,
                0xffff,
                0xffff,
                0xffff,
            ));
            out.push((lo, top, asn));
        }
    }
    out.sort_unstable();
    out
}

/// The plan as an iptoasn TSV (`start end AS country description`).
pub fn asn_tsv() -> String {
    let mut s = String::from("# fedsec synthetic address plan, iptoasn.com TSV layout\n");
    for (lo, hi, asn) in ranges() {
        let show = |x: u128| {
            let v6 = Ipv6Addr::from(x);
            match v6.to_ipv4_mapped() {
                Some(v4) => v4.to_string(),
                None => v6.to_string(),
            }
        };
        s.push_str(&format!(
            "{}\t{}\t{asn}\tZZ\tSYNTH-AS{asn}\n",
            show(lo),
            show(hi)
        ));
    }
    s
}

fn crawler_ranges() -> &'static CrawlerRanges {
    static R: OnceLock<CrawlerRanges> = OnceLock::new();
    R.get_or_init(|| CrawlerRanges {
        crawlers: [("googlebot", GOOGLEBOT_JSON), ("bingbot", BINGBOT_JSON)]
            .iter()
            .filter_map(|(t, j)| Crawler::from_json(t, j).ok())
            .collect(),
    })
}

/// The synthetic tenants' network files: the AS plan and the crawler ranges.
pub fn enrichment() -> Arc<Enrichment> {
    static E: OnceLock<Arc<Enrichment>> = OnceLock::new();
    E.get_or_init(|| {
        Arc::new(Enrichment {
            asn: Some(AsnDb::Ranges(ranges())),
            crawlers: crawler_ranges().clone(),
        })
    })
    .clone()
}

/// An address inside the published IPv4 ranges of the crawler `user_agent`
/// names, if it names one of the fixture's crawlers.
pub(crate) fn crawler_addr<R: Rng + ?Sized>(rng: &mut R, user_agent: &str) -> Option<String> {
    let ua = user_agent.to_ascii_lowercase();
    let c = crawler_ranges()
        .crawlers
        .iter()
        .find(|c| ua.contains(&c.token))?;
    let v4: Vec<_> = c.ranges.iter().filter(|r| r.addr.is_ipv4()).collect();
    if v4.is_empty() {
        return None;
    }
    let r = v4[rng.random_range(0..v4.len())];
    let IpAddr::V4(base) = r.addr else {
        return None;
    };
    let size = 1u32 << (32 - u32::from(r.len.min(32)));
    let host = rng.random_range(1..size.saturating_sub(1).max(2));
    Some(Ipv4Addr::from(u32::from(base) + host).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::CrawlerCheck;
    use rand::SeedableRng;

    #[test]
    fn the_plan_the_tsv_and_the_lookups_agree() {
        let db = AsnDb::from_tsv(asn_tsv().as_bytes()).unwrap();
        let e = enrichment();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        for net in [
            super::super::agents::Network::Residential,
            super::super::agents::Network::Mobile,
            super::super::agents::Network::Datacenter,
        ] {
            for _ in 0..300 {
                let a: IpAddr = super::super::agents::ip(&mut rng, net).parse().unwrap();
                let want = asn_of(a);
                assert!(want.is_some(), "{a}");
                assert_eq!(db.lookup(a), want, "{a}");
                assert_eq!(e.asn_of(None, Some(a)), want, "{a}");
            }
        }
        assert_eq!(asn_of("66.249.66.1".parse().unwrap()), Some(GOOGLE));
        assert_eq!(asn_of("192.0.2.1".parse().unwrap()), None);
        let gb = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
        for _ in 0..50 {
            let a = crawler_addr(&mut rng, gb).unwrap();
            assert_eq!(
                e.crawlers.check(gb, a.parse().ok()),
                CrawlerCheck::Verified,
                "{a}"
            );
        }
        assert_eq!(crawler_addr(&mut rng, "curl/8"), None);
    }
}
