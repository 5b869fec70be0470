//! Autonomous-system lookups from a database the tenant supplies: a
//! MaxMind DB (`GeoLite2-ASN.mmdb`, read with the `maxminddb` crate) or an
//! iptoasn.com TSV (`ip2asn-v4.tsv`, `ip2asn-v6.tsv`, `ip2asn-combined.tsv`:
//! `range_start <TAB> range_end <TAB> AS_number <TAB> country <TAB> description`).
//!
//! Nothing is guessed: an address outside every range, an AS number 0
//! ("not routed" in iptoasn) and a host-name client all give `None`, and
//! the features mark the AS as missing.

use std::io::BufRead;
use std::net::IpAddr;
use std::path::Path;

use super::NetworkError;
use crate::logs::client::canonical_ip;

/// An AS database.
pub enum AsnDb {
    /// A MaxMind DB with `autonomous_system_number` records.
    Mmdb(maxminddb::Reader<Vec<u8>>),
    /// Sorted, non-overlapping ranges (IPv4 as IPv4-mapped IPv6).
    Ranges(Vec<(u128, u128, u32)>),
}

impl std::fmt::Debug for AsnDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Mmdb(r) => write!(f, "AsnDb::Mmdb({})", r.metadata().database_type),
            Self::Ranges(v) => write!(f, "AsnDb::Ranges({} ranges)", v.len()),
        }
    }
}

#[derive(serde::Deserialize)]
struct MmdbAsn {
    autonomous_system_number: Option<u32>,
}

fn key(ip: IpAddr) -> u128 {
    match canonical_ip(ip) {
        IpAddr::V4(v) => u128::from(v.to_ipv6_mapped()),
        IpAddr::V6(v) => u128::from(v),
    }
}

impl AsnDb {
    /// Opens a file: `.mmdb` as a MaxMind DB, anything else as an iptoasn TSV
    /// (optionally gzip-free; compressed files must be unpacked first).
    pub fn open(path: &Path) -> Result<Self, NetworkError> {
        let io = |e: std::io::Error| NetworkError::Io {
            path: path.to_owned(),
            source: e,
        };
        if path.extension().is_some_and(|e| e == "mmdb") {
            let bytes = std::fs::read(path).map_err(io)?;
            return Self::from_mmdb(bytes).map_err(|problem| NetworkError::Invalid {
                path: path.to_owned(),
                problem,
            });
        }
        let f = std::fs::File::open(path).map_err(io)?;
        Self::from_tsv(std::io::BufReader::new(f)).map_err(|problem| NetworkError::Invalid {
            path: path.to_owned(),
            problem,
        })
    }

    /// A MaxMind DB from its bytes.
    pub fn from_mmdb(bytes: Vec<u8>) -> Result<Self, String> {
        maxminddb::Reader::from_source(bytes)
            .map(Self::Mmdb)
            .map_err(|e| format!("not a MaxMind DB: {e}"))
    }

    /// An iptoasn TSV. Lines that are blank or start with `#` are skipped;
    /// any other unreadable line is an error naming its number.
    pub fn from_tsv(r: impl BufRead) -> Result<Self, String> {
        let mut ranges = Vec::new();
        for (i, line) in r.lines().enumerate() {
            let line = line.map_err(|e| format!("line {}: {e}", i + 1))?;
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let mut cols = line.split('\t');
            let (Some(a), Some(b), Some(asn)) = (cols.next(), cols.next(), cols.next()) else {
                return Err(format!(
                    "line {}: expected start, end and AS number separated by tabs",
                    i + 1
                ));
            };
            let parse = |s: &str| -> Result<u128, String> {
                s.trim()
                    .parse::<IpAddr>()
                    .map(key)
                    .map_err(|_| format!("line {}: {s:?} is not an IP address", i + 1))
            };
            let (a, b) = (parse(a)?, parse(b)?);
            let asn: u32 = asn
                .trim()
                .parse()
                .map_err(|_| format!("line {}: {asn:?} is not an AS number", i + 1))?;
            if a > b {
                return Err(format!("line {}: range start after its end", i + 1));
            }
            if asn != 0 {
                ranges.push((a, b, asn));
            }
        }
        ranges.sort_unstable();
        for w in ranges.windows(2) {
            if w[1].0 <= w[0].1 {
                return Err("overlapping ranges".to_string());
            }
        }
        Ok(Self::Ranges(ranges))
    }

    /// The AS of an address, if the database has one.
    pub fn lookup(&self, ip: IpAddr) -> Option<u32> {
        match self {
            Self::Ranges(v) => {
                let k = key(ip);
                let i = v.partition_point(|r| r.0 <= k);
                let r = v.get(i.checked_sub(1)?)?;
                (k <= r.1).then_some(r.2)
            }
            Self::Mmdb(reader) => reader
                .lookup(canonical_ip(ip))
                .ok()?
                .decode::<MmdbAsn>()
                .ok()
                .flatten()?
                .autonomous_system_number
                .filter(|&n| n != 0),
        }
    }
}

/// Writes a MaxMind DB (format 2.0, IPv6 tree, 24-bit records) mapping
/// networks to `autonomous_system_number` records: enough of the format
/// for tests and for the synthetic generator's ASN database.
pub fn write_mmdb(networks: &[(IpAddr, u8, u32)]) -> Vec<u8> {
    // Trie over 128-bit keys; IPv4 networks live at ::a.b.c.d/96+len.
    let mut nodes: Vec<[u32; 2]> = vec![[u32::MAX; 2]];
    let mut data = Vec::new();
    let mut leaves: Vec<(usize, usize, usize)> = Vec::new(); // (node, side, data offset)
    for &(addr, len, asn) in networks {
        let (bits, len) = match canonical_ip(addr) {
            IpAddr::V4(v) => (u128::from(u32::from(v)), 96 + u32::from(len.min(32))),
            IpAddr::V6(v) => (u128::from(v), u32::from(len.min(128))),
        };
        let offset = data.len();
        // {"autonomous_system_number": uint32}
        data.push(0xE1);
        let k = b"autonomous_system_number";
        data.push(0x40 | k.len() as u8);
        data.extend_from_slice(k);
        data.push(0xC4);
        data.extend_from_slice(&asn.to_be_bytes());
        let mut node = 0usize;
        for depth in 0..len {
            let bit = ((bits >> (127 - depth)) & 1) as usize;
            if depth + 1 == len {
                leaves.push((node, bit, offset));
                break;
            }
            if nodes[node][bit] == u32::MAX {
                nodes.push([u32::MAX; 2]);
                nodes[node][bit] = (nodes.len() - 1) as u32;
            }
            node = nodes[node][bit] as usize;
        }
    }
    let n = nodes.len() as u32;
    for (node, side, offset) in leaves {
        nodes[node][side] = n + 16 + offset as u32;
    }
    let mut out = Vec::new();
    for rec in &nodes {
        for &v in rec {
            let v = if v == u32::MAX { n } else { v };
            out.extend_from_slice(&v.to_be_bytes()[1..]);
        }
    }
    out.extend_from_slice(&[0u8; 16]);
    out.extend_from_slice(&data);
    out.extend_from_slice(b"\xAB\xCD\xEFMaxMind.com");
    let mut meta = vec![0xE0 | 9u8];
    let mut kv = |k: &str, v: &[u8]| {
        meta.push(0x40 | k.len() as u8);
        meta.extend_from_slice(k.as_bytes());
        meta.extend_from_slice(v);
    };
    let u32v = |x: u32| [&[0xC4u8][..], &x.to_be_bytes()].concat();
    let u16v = |x: u16| [&[0xA2u8][..], &x.to_be_bytes()].concat();
    kv("node_count", &u32v(n));
    kv("record_size", &u16v(24));
    kv("ip_version", &u16v(6));
    let db_type = b"fedsec-ASN";
    kv(
        "database_type",
        &[&[0x40 | db_type.len() as u8][..], db_type].concat(),
    );
    kv("description", &[0xE0]);
    kv("languages", &[0x00, 0x04]);
    kv("binary_format_major_version", &u16v(2));
    kv("binary_format_minor_version", &u16v(0));
    kv(
        "build_epoch",
        &[0x08, 0x02, 0, 0, 0, 0, 0x65, 0xE5, 0x00, 0x00],
    );
    out.extend_from_slice(&meta);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TSV: &str = "# iptoasn.com ip2asn-combined.tsv excerpt format\n\
        1.0.0.0\t1.0.0.255\t13335\tUS\tCLOUDFLARENET\n\
        1.0.1.0\t1.0.3.255\t0\tNone\tNot routed\n\
        66.249.64.0\t66.249.95.255\t15169\tUS\tGOOGLE\n\
        2001:4860::\t2001:4860:ffff:ffff:ffff:ffff:ffff:ffff\t15169\tUS\tGOOGLE\n";

    #[test]
    fn iptoasn_tsv() {
        let db = AsnDb::from_tsv(TSV.as_bytes()).unwrap();
        let l = |s: &str| db.lookup(s.parse().unwrap());
        assert_eq!(l("1.0.0.7"), Some(13335));
        assert_eq!(l("::ffff:1.0.0.7"), Some(13335));
        assert_eq!(l("1.0.2.1"), None, "AS 0 is not routed, not an AS");
        assert_eq!(l("66.249.66.1"), Some(15169));
        assert_eq!(l("66.249.96.1"), None);
        assert_eq!(l("2001:4860:4801:10::1"), Some(15169));
        assert_eq!(l("2001:4861::1"), None);
        assert_eq!(l("0.0.0.1"), None);
        for bad in [
            "1.0.0.0\t1.0.0.255\n",
            "1.0.0.0\tx\t5\n",
            "1.0.0.9\t1.0.0.1\t5\n",
            "1.0.0.0\t1.0.0.9\t5\n1.0.0.5\t1.0.0.20\t6\n",
        ] {
            assert!(AsnDb::from_tsv(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn maxmind_db_written_and_read_back() {
        let bytes = write_mmdb(&[
            ("66.249.64.0".parse().unwrap(), 19, 15169),
            ("2a02:1000::".parse().unwrap(), 20, 3320),
            ("192.0.2.0".parse().unwrap(), 24, 64500),
        ]);
        let db = AsnDb::from_mmdb(bytes).unwrap();
        let l = |s: &str| db.lookup(s.parse().unwrap());
        assert_eq!(l("66.249.66.1"), Some(15169));
        assert_eq!(l("66.249.96.1"), None);
        assert_eq!(l("2a02:1000:abcd::1"), Some(3320));
        assert_eq!(l("192.0.2.200"), Some(64500));
        assert_eq!(l("::ffff:192.0.2.1"), Some(64500));
        assert_eq!(l("8.8.8.8"), None);
        assert!(AsnDb::from_mmdb(b"not a database".to_vec()).is_err());
    }
}
