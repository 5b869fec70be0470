//! Who the client is: the client field of a log line (an IP address or, with
//! Apache's `HostnameLookups`, a host name), normalised, and the real client
//! behind trusted proxies.
//!
//! - **Normalisation.** `::ffff:a.b.c.d` (IPv4-mapped IPv6) becomes `a.b.c.d`;
//!   `[2001:db8::1]`, `[2001:db8::1]:443` and `192.0.2.1:8080` lose their
//!   brackets and port; IPv6 is written in its canonical RFC 5952 form, so one
//!   client is one key however the server spelled it.
//! - **Host names** (`crawl-66-249-66-1.googlebot.com`) are kept as written
//!   and never resolved while reading: the session is keyed on the name, and
//!   the network features that need an address (prefix, ASN, crawler ranges)
//!   are marked missing for it.
//! - **Trusted proxies.** A forwarding header (`X-Forwarded-For`,
//!   `X-Real-IP`, `CF-Connecting-IP`) is believed only when the peer that
//!   connected to the server is a trusted proxy. `X-Forwarded-For` is walked
//!   from the right, skipping trusted proxies; the first untrusted address is
//!   the client (nginx's `real_ip_recursive on`). A client that connects
//!   directly cannot move its key by sending a forged header.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{MalformedReason, truncate};

/// An IP network in CIDR notation (`10.0.0.0/8`, `2001:db8::/32`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    /// Network address (host bits zero).
    pub addr: IpAddr,
    /// Prefix length.
    pub len: u8,
}

impl Cidr {
    /// Whether `ip` is inside the network (IPv4-mapped IPv6 counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical_ip(ip)) {
            (IpAddr::V4(n), IpAddr::V4(a)) => mask_v4(u32::from(a), self.len) == u32::from(n),
            (IpAddr::V6(n), IpAddr::V6(a)) => mask_v6(u128::from(a), self.len) == u128::from(n),
            _ => false,
        }
    }
}

fn mask_v4(x: u32, len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        x & (u32::MAX << (32 - u32::from(len.min(32))))
    }
}

fn mask_v6(x: u128, len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        x & (u128::MAX << (128 - u32::from(len.min(128))))
    }
}

impl std::str::FromStr for Cidr {
    type Err = String;

    /// `a.b.c.d/n`, `x::y/n`, or a bare address (a /32 or /128).
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, len) = match s.split_once('/') {
            Some((a, l)) => (
                a,
                Some(
                    l.parse::<u8>()
                        .map_err(|_| format!("{s:?}: prefix length {l:?} is not a number"))?,
                ),
            ),
            None => (s, None),
        };
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("{s:?}: {a:?} is not an IP address"))?;
        let addr = canonical_ip(addr);
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = len.unwrap_or(max);
        if len > max {
            return Err(format!("{s:?}: prefix length above {max}"));
        }
        let addr = match addr {
            IpAddr::V4(v) => IpAddr::V4(Ipv4Addr::from(mask_v4(u32::from(v), len))),
            IpAddr::V6(v) => IpAddr::V6(Ipv6Addr::from(mask_v6(u128::from(v), len))),
        };
        Ok(Self { addr, len })
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl serde::Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// IPv4-mapped IPv6 (`::ffff:a.b.c.d`) as IPv4; everything else unchanged.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// Which header names the real client behind a trusted proxy.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum RealIpHeader {
    /// `X-Forwarded-For`, walked from the right past trusted proxies.
    #[default]
    XForwardedFor,
    /// `X-Real-IP` (one address, set by the proxy in front).
    XRealIp,
    /// `CF-Connecting-IP` (one address, set by Cloudflare).
    CfConnectingIp,
}

impl std::str::FromStr for RealIpHeader {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().replace('-', "_").as_str() {
            "x_forwarded_for" => Ok(Self::XForwardedFor),
            "x_real_ip" => Ok(Self::XRealIp),
            "cf_connecting_ip" => Ok(Self::CfConnectingIp),
            _ => Err(format!(
                "unknown header {s:?} (expected x_forwarded_for, x_real_ip or cf_connecting_ip)"
            )),
        }
    }
}

/// Where the client address comes from. See the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIpPolicy {
    /// Proxies whose forwarding headers are believed.
    pub trusted_proxies: Vec<Cidr>,
    /// The header that names the client.
    pub header: RealIpHeader,
}

/// The proxies trusted by default: loopback, RFC 1918 private, link-local
/// and unique-local IPv6 addresses — a load balancer in the tenant's own
/// network. Public CDNs must be added by the tenant.
pub const DEFAULT_TRUSTED_PROXIES: [&str; 7] = [
    "127.0.0.0/8",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "169.254.0.0/16",
    "::1/128",
    "fc00::/7",
];

impl Default for ClientIpPolicy {
    fn default() -> Self {
        Self {
            trusted_proxies: DEFAULT_TRUSTED_PROXIES
                .iter()
                .filter_map(|c| c.parse().ok())
                .collect(),
            header: RealIpHeader::XForwardedFor,
        }
    }
}

/// The forwarding headers of one line, as logged (`None` when the format
/// has no such field or it was `-`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Forwarded<'a> {
    /// `X-Forwarded-For`.
    pub xff: Option<&'a str>,
    /// `X-Real-IP`.
    pub x_real_ip: Option<&'a str>,
    /// `CF-Connecting-IP`.
    pub cf_connecting_ip: Option<&'a str>,
}

/// A normalised client: its key text and, unless it is a host name, its address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client<'a> {
    /// Key text: canonical address, or the host name as written.
    pub key: Cow<'a, str>,
    /// The address (`None` for a host name).
    pub addr: Option<IpAddr>,
}

/// Strips brackets and a port: `[v6]`, `[v6]:port`, `v4:port`.
fn strip_brackets_and_port(s: &str) -> &str {
    if let Some(rest) = s.strip_prefix('[') {
        if let Some(end) = rest.find(']') {
            let tail = &rest[end + 1..];
            if tail.is_empty() || tail.strip_prefix(':').is_some_and(is_port) {
                return &rest[..end];
            }
        }
        return s;
    }
    // a.b.c.d:port (one colon; IPv6 has several).
    if let Some((a, p)) = s.split_once(':')
        && !p.contains(':')
        && is_port(p)
        && a.bytes().all(|b| b.is_ascii_digit() || b == b'.')
    {
        return a;
    }
    s
}

fn is_port(p: &str) -> bool {
    p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok()
}

/// Parses an address token (brackets, port and IPv4 mapping handled).
pub fn parse_addr(token: &str) -> Option<IpAddr> {
    let t = strip_brackets_and_port(token.trim());
    if t.len() > 45 {
        return None;
    }
    t.parse::<IpAddr>().ok().map(canonical_ip)
}

fn is_hostname(s: &str) -> bool {
    s.len() <= 253
        && s.bytes().any(|b| b.is_ascii_alphabetic())
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        // An IPv6 literal is not a host name even if it has letters.
        && !s.contains(':')
}

/// Reads the client field: an IP address (normalised) or a host name (kept
/// as written).
pub fn parse_client(token: &str) -> Result<Client<'_>, MalformedReason> {
    let t = strip_brackets_and_port(token);
    if let Some(addr) = (t.len() <= 45).then(|| t.parse::<IpAddr>().ok()).flatten() {
        let addr = canonical_ip(addr);
        return Ok(Client {
            key: key_of(t, addr),
            addr: Some(addr),
        });
    }
    if is_hostname(token) {
        return Ok(Client {
            key: Cow::Borrowed(token),
            addr: None,
        });
    }
    Err(MalformedReason::bad(
        "ip",
        format!(
            "{:?} is neither an IP address nor a host name",
            truncate(token, 64)
        ),
    ))
}

/// The key text of an address: the token itself when it already is the
/// canonical spelling (no allocation on the common path).
fn key_of(token: &str, addr: IpAddr) -> Cow<'_, str> {
    match addr {
        IpAddr::V4(_) if !token.contains(':') => Cow::Borrowed(token),
        a => {
            let canonical = a.to_string();
            if canonical == token {
                Cow::Borrowed(token)
            } else {
                Cow::Owned(canonical)
            }
        }
    }
}

impl ClientIpPolicy {
    /// Whether `addr` is a trusted proxy.
    pub fn is_trusted(&self, addr: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|c| c.contains(addr))
    }

    /// The real client of a line whose peer (the client field) is `peer`.
    pub fn resolve<'a>(&self, peer: Client<'a>, fwd: Forwarded<'a>) -> Client<'a> {
        let Some(peer_addr) = peer.addr else {
            return peer;
        };
        if !self.is_trusted(peer_addr) {
            return peer;
        }
        let single = |v: Option<&'a str>| -> Option<Client<'a>> {
            let t = strip_brackets_and_port(v?.trim());
            let addr = parse_addr(t)?;
            Some(Client {
                key: key_of(t, addr),
                addr: Some(addr),
            })
        };
        let found = match self.header {
            RealIpHeader::XRealIp => single(fwd.x_real_ip),
            RealIpHeader::CfConnectingIp => single(fwd.cf_connecting_ip),
            RealIpHeader::XForwardedFor => fwd.xff.and_then(|x| self.walk_xff(x)),
        };
        found.unwrap_or(peer)
    }

    /// Right to left past trusted proxies; an unreadable entry stops the walk
    /// at the last trusted hop.
    fn walk_xff<'a>(&self, xff: &'a str) -> Option<Client<'a>> {
        let mut last: Option<Client<'a>> = None;
        for entry in xff.rsplit(',') {
            let t = strip_brackets_and_port(entry.trim());
            let Some(addr) = parse_addr(t) else {
                break;
            };
            let c = Client {
                key: key_of(t, addr),
                addr: Some(addr),
            };
            if !self.is_trusted(addr) {
                return Some(c);
            }
            last = Some(c);
        }
        last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(trusted: &[&str], header: RealIpHeader) -> ClientIpPolicy {
        ClientIpPolicy {
            trusted_proxies: trusted.iter().map(|c| c.parse().unwrap()).collect(),
            header,
        }
    }

    #[test]
    fn clients_are_normalised() {
        let k = |t: &str| parse_client(t).unwrap().key.into_owned();
        assert_eq!(k("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(k("::FFFF:192.0.2.7"), "192.0.2.7");
        assert_eq!(k("192.0.2.7"), "192.0.2.7");
        assert_eq!(k("[2001:db8::1]"), "2001:db8::1");
        assert_eq!(k("[2001:DB8:0:0::1]:443"), "2001:db8::1");
        assert_eq!(k("2001:0db8::0001"), "2001:db8::1");
        assert_eq!(k("192.0.2.7:51234"), "192.0.2.7");
        let h = parse_client("unicomp6.unicomp.net").unwrap();
        assert_eq!((h.key.as_ref(), h.addr), ("unicomp6.unicomp.net", None));
        assert!(matches!(
            parse_client("192.0.2.7").unwrap().key,
            Cow::Borrowed(_)
        ));
        for bad in [
            "999.1.1.1",
            "-",
            "",
            "a b",
            "[2001:db8::1",
            "1.2.3.4:99999",
            "x..y",
        ] {
            assert_eq!(
                parse_client(bad)
                    .map(|c| c.key.into_owned())
                    .unwrap_err()
                    .kind(),
                "bad_field:ip",
                "{bad}"
            );
        }
    }

    #[test]
    fn cidrs() {
        let c: Cidr = "10.1.2.3/8".parse().unwrap();
        assert_eq!(c.to_string(), "10.0.0.0/8");
        assert!(c.contains("10.200.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:10.0.0.1".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains("2001:db8:ffff::1".parse().unwrap()));
        assert!(!v6.contains("2001:db9::1".parse().unwrap()));
        assert!(
            "0.0.0.0/0"
                .parse::<Cidr>()
                .unwrap()
                .contains("1.2.3.4".parse().unwrap())
        );
        for bad in ["10.0.0.0/33", "::/129", "x/8", "10.0.0.0/x"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn cdn_then_load_balancer_then_nginx() {
        // client 203.0.113.9 → CDN edge 104.16.0.5 → LB 10.0.0.2 → nginx.
        let p = policy(
            &["10.0.0.0/8", "104.16.0.0/13"],
            RealIpHeader::XForwardedFor,
        );
        let peer = parse_client("10.0.0.2").unwrap();
        let fwd = Forwarded {
            xff: Some("203.0.113.9, 104.16.0.5"),
            ..Forwarded::default()
        };
        assert_eq!(p.resolve(peer.clone(), fwd).key, "203.0.113.9");
        // A forged left-most entry does not move the key.
        let forged = Forwarded {
            xff: Some("1.1.1.1, 203.0.113.9, 104.16.0.5"),
            ..Forwarded::default()
        };
        assert_eq!(p.resolve(peer.clone(), forged).key, "203.0.113.9");
        // Without the CDN trusted, the key is the CDN edge (what the issue saw).
        let lb_only = policy(&["10.0.0.0/8"], RealIpHeader::XForwardedFor);
        assert_eq!(lb_only.resolve(peer.clone(), fwd).key, "104.16.0.5");
        // A direct client's forged header is ignored.
        let direct = parse_client("198.51.100.4").unwrap();
        assert_eq!(p.resolve(direct, fwd).key, "198.51.100.4");
        // Every hop trusted: the left-most.
        let all = Forwarded {
            xff: Some("10.9.9.9, 10.0.0.7"),
            ..Forwarded::default()
        };
        assert_eq!(p.resolve(peer.clone(), all).key, "10.9.9.9");
        // Junk stops the walk at the last trusted hop.
        let junk = Forwarded {
            xff: Some("unknown, 10.0.0.7"),
            ..Forwarded::default()
        };
        assert_eq!(p.resolve(peer.clone(), junk).key, "10.0.0.7");
        // Mapped, bracketed and ported entries are normalised.
        let odd = Forwarded {
            xff: Some("[2001:DB8::5]:1234, ::ffff:104.16.0.9"),
            ..Forwarded::default()
        };
        assert_eq!(p.resolve(peer.clone(), odd).key, "2001:db8::5");
        // Hostname peers are never trusted.
        let host = parse_client("lb.internal").unwrap();
        assert_eq!(p.resolve(host, fwd).key, "lb.internal");
    }

    #[test]
    fn single_value_headers() {
        let peer = parse_client("173.245.48.10").unwrap();
        let fwd = Forwarded {
            xff: Some("9.9.9.9"),
            x_real_ip: Some("198.51.100.20"),
            cf_connecting_ip: Some("2001:db8::77"),
        };
        let cf = policy(&["173.245.48.0/20"], RealIpHeader::CfConnectingIp);
        assert_eq!(cf.resolve(peer.clone(), fwd).key, "2001:db8::77");
        let xr = policy(&["173.245.48.0/20"], RealIpHeader::XRealIp);
        assert_eq!(xr.resolve(peer.clone(), fwd).key, "198.51.100.20");
        let bad = Forwarded {
            x_real_ip: Some("nonsense"),
            ..fwd
        };
        assert_eq!(xr.resolve(peer.clone(), bad).key, "173.245.48.10");
        let untrusted = policy(&[], RealIpHeader::CfConnectingIp);
        assert_eq!(untrusted.resolve(peer, fwd).key, "173.245.48.10");
    }
}
