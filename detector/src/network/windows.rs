//! Sliding windows across sessions: what the same client address, network
//! prefix (/24 for IPv4, /64 for IPv6), user agent, account and autonomous
//! system did in the hour before a session ended.
//!
//! Counts are kept in time slots (5 minutes by default), so a window sum is
//! exact to within one slot at each edge; distinct values (clients of a
//! prefix, accounts of a client, ...) are kept with the first and last time
//! each was seen, up to [`WindowConfig::max_distinct`] per key (the count
//! saturates there). Keys are 64-bit hashes of the strings.
//!
//! **Memory bound.** Each of the five tables holds at most
//! [`WindowConfig::max_keys`] keys; past that the keys idle longest are
//! evicted (their later counts restart from zero, an undercount). A key
//! holds at most `retention / slot` slots of 16 bytes and at most
//! `max_distinct` distinct values of 24 bytes per set;
//! [`WindowConfig::memory_bound_bytes`] is the resulting worst case
//! (≈ 221 MB with the defaults), and a busy tenant's typical use is a few
//! hundred bytes per key.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::paths::fnv1a;

/// Window settings.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WindowConfig {
    /// Window length, ms (default 1 hour).
    pub window_ms: i64,
    /// Slot length, ms (default 5 minutes).
    pub slot_ms: i64,
    /// How long after a session's end it may still be queried, ms (the
    /// sessionizer's idle timeout; default 30 minutes).
    pub lag_ms: i64,
    /// Most keys per table (default 50 000).
    pub max_keys: usize,
    /// Most distinct values kept per key and set (default 16).
    pub max_distinct: usize,
}

impl Default for WindowConfig {
    fn default() -> Self {
        Self {
            window_ms: 3_600_000,
            slot_ms: 300_000,
            lag_ms: 30 * 60_000,
            max_keys: 50_000,
            max_distinct: 16,
        }
    }
}

/// Fixed overhead of one hash-map entry and its vectors, bytes (an
/// estimate used by [`WindowConfig::memory_bound_bytes`]).
const ENTRY_OVERHEAD: usize = 8 + 8 + 3 * 24 + 16;

impl WindowConfig {
    fn slot(&self) -> i64 {
        self.slot_ms.max(1)
    }

    /// Slots a key keeps: the window plus the lag plus one.
    pub fn max_slots(&self) -> usize {
        ((self.window_ms.max(0) + self.lag_ms.max(0)) / self.slot() + 2) as usize
    }

    /// Worst-case bytes of all five tables (see the [module docs](self)):
    /// per key its slots, its distinct sets (two for client keys, one for
    /// the others) and the map entry.
    pub fn memory_bound_bytes(&self) -> usize {
        let slots = self.max_slots() * 16;
        let set = self.max_distinct * 24;
        let client = slots + 2 * set + ENTRY_OVERHEAD;
        let other = slots + set + ENTRY_OVERHEAD;
        self.max_keys * (client + 4 * other)
    }
}

#[derive(Debug, Default, Clone)]
struct Distinct {
    /// (value hash, first seen, last seen).
    items: Vec<(u64, i64, i64)>,
}

impl Distinct {
    fn note(&mut self, v: u64, ts: i64, cap: usize, oldest_kept: i64) {
        if let Some(x) = self.items.iter_mut().find(|x| x.0 == v) {
            x.1 = x.1.min(ts);
            x.2 = x.2.max(ts);
            return;
        }
        if self.items.len() >= cap {
            self.items.retain(|x| x.2 >= oldest_kept);
        }
        if self.items.len() < cap {
            self.items.push((v, ts, ts));
        }
    }

    fn count(&self, from: i64, to: i64) -> usize {
        self.items
            .iter()
            .filter(|x| x.1 <= to && x.2 > from)
            .count()
    }
}

#[derive(Debug, Default, Clone)]
struct Entry {
    last_ms: i64,
    /// (slot index, events, failures), ascending slots.
    slots: Vec<(i64, u32, u32)>,
    a: Distinct,
    b: Distinct,
}

impl Entry {
    fn add(&mut self, slot: i64, events: u32, failures: u32, keep_from: i64) {
        match self.slots.binary_search_by_key(&slot, |s| s.0) {
            Ok(i) => {
                let s = &mut self.slots[i];
                s.1 = s.1.saturating_add(events);
                s.2 = s.2.saturating_add(failures);
            }
            Err(i) => self.slots.insert(i, (slot, events, failures)),
        }
        let cut = self.slots.partition_point(|s| s.0 < keep_from);
        if cut > 0 {
            self.slots.drain(..cut);
        }
    }

    fn sums(&self, from_slot: i64, to_slot: i64) -> (u64, u64) {
        self.slots
            .iter()
            .filter(|s| s.0 >= from_slot && s.0 <= to_slot)
            .fold((0, 0), |(e, f), s| (e + u64::from(s.1), f + u64::from(s.2)))
    }
}

#[derive(Debug, Default)]
struct Table {
    map: HashMap<u64, Entry>,
}

impl Table {
    fn entry(&mut self, key: u64, ts: i64) -> &mut Entry {
        let e = self.map.entry(key).or_default();
        e.last_ms = e.last_ms.max(ts);
        e
    }

    /// Drops keys idle past `stale_before`; if still over `max`, the keys
    /// idle longest until 10 % below it.
    fn bound(&mut self, max: usize, stale_before: i64) {
        if self.map.len() <= max {
            return;
        }
        self.map.retain(|_, e| e.last_ms >= stale_before);
        if self.map.len() > max {
            let target = max - max / 10;
            let mut ages: Vec<(i64, u64)> = self.map.iter().map(|(k, e)| (e.last_ms, *k)).collect();
            let excess = ages.len() - target;
            ages.select_nth_unstable(excess.saturating_sub(1));
            for (_, k) in &ages[..excess] {
                self.map.remove(k);
            }
        }
    }
}

/// One request as the windows see it.
#[derive(Debug, Clone, Copy)]
pub struct WindowEvent<'a> {
    /// Unix ms.
    pub ts_ms: i64,
    /// Client key.
    pub client: &'a str,
    /// Client address (`None` for a host name).
    pub addr: Option<IpAddr>,
    /// User agent.
    pub user_agent: &'a str,
    /// Account, if logged.
    pub user: Option<&'a str>,
    /// Autonomous system, if known.
    pub asn: Option<u32>,
    /// A login attempt.
    pub login: bool,
    /// A failed login attempt.
    pub login_failed: bool,
}

/// What a session's identities did in the window before it ended (raw
/// counts; `None` where the session has no such identity).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct WindowCounts {
    /// Requests from the client.
    pub client_requests: f64,
    /// Distinct user agents of the client.
    pub client_user_agents: f64,
    /// Distinct accounts seen with the client.
    pub client_accounts: f64,
    /// Malformed lines from the client.
    pub client_malformed: f64,
    /// Distinct clients in the session's /24 or /64 (`None` for a host name).
    pub prefix_clients: Option<f64>,
    /// Failed logins from the prefix.
    pub prefix_login_failures: Option<f64>,
    /// Distinct clients with the session's user agent.
    pub ua_clients: f64,
    /// Failed logins with the user agent.
    pub ua_login_failures: f64,
    /// Most distinct clients any of the session's accounts was used from
    /// (`None` without accounts).
    pub account_clients: Option<f64>,
    /// Failed logins from the session's AS (`None` without an AS).
    pub asn_login_failures: Option<f64>,
}

/// The /24 (IPv4) or /64 (IPv6) of an address, as a hash key.
pub fn prefix_key(addr: IpAddr) -> u64 {
    match addr {
        IpAddr::V4(v) => 0x4000_0000_0000_0000 | u64::from(u32::from(v) >> 8),
        IpAddr::V6(v) => fnv1a(&(u128::from(v) >> 64).to_be_bytes()) | 1,
    }
}

/// The five tables. See the [module docs](self).
#[derive(Debug, Default)]
pub struct Windows {
    config: WindowConfig,
    clients: Table,
    prefixes: Table,
    uas: Table,
    accounts: Table,
    asns: Table,
    now_ms: i64,
    pushes: u64,
}

impl Windows {
    /// Empty windows.
    pub fn new(config: WindowConfig) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    /// Settings in force.
    pub fn config(&self) -> &WindowConfig {
        &self.config
    }

    /// Keys held, all tables.
    pub fn keys(&self) -> usize {
        self.clients.map.len()
            + self.prefixes.map.len()
            + self.uas.map.len()
            + self.accounts.map.len()
            + self.asns.map.len()
    }

    fn retention_from(&self) -> i64 {
        self.now_ms
            .saturating_sub(self.config.window_ms + self.config.lag_ms + self.config.slot())
    }

    fn slot_of(&self, ts: i64) -> i64 {
        ts.div_euclid(self.config.slot())
    }

    /// Counts one request.
    pub fn push(&mut self, ev: &WindowEvent<'_>) {
        self.now_ms = self.now_ms.max(ev.ts_ms);
        let slot = self.slot_of(ev.ts_ms);
        let keep_slot = self.slot_of(self.retention_from());
        let oldest = self.retention_from();
        let cap = self.config.max_distinct;
        let client = fnv1a(ev.client.as_bytes());
        let ua = fnv1a(ev.user_agent.as_bytes());
        let user = ev.user.map(|u| fnv1a(u.as_bytes()));
        let fail = u32::from(ev.login_failed);

        let c = self.clients.entry(client, ev.ts_ms);
        c.add(slot, 1, 0, keep_slot);
        c.a.note(ua, ev.ts_ms, cap, oldest);
        if let Some(u) = user {
            c.b.note(u, ev.ts_ms, cap, oldest);
        }
        if let Some(addr) = ev.addr {
            let p = self.prefixes.entry(prefix_key(addr), ev.ts_ms);
            p.add(slot, 1, fail, keep_slot);
            p.a.note(client, ev.ts_ms, cap, oldest);
        }
        let u = self.uas.entry(ua, ev.ts_ms);
        u.add(slot, 1, fail, keep_slot);
        u.a.note(client, ev.ts_ms, cap, oldest);
        if let Some(h) = user {
            let a = self.accounts.entry(h, ev.ts_ms);
            a.add(slot, 1, fail, keep_slot);
            a.a.note(client, ev.ts_ms, cap, oldest);
        }
        if let Some(asn) = ev.asn {
            let a = self.asns.entry(u64::from(asn), ev.ts_ms);
            a.add(slot, 1, fail, keep_slot);
            a.a.note(client, ev.ts_ms, cap, oldest);
        }
        self.pushes += 1;
        self.bound();
    }

    /// Counts a malformed line of `client` (the stream clock's time).
    pub fn note_malformed(&mut self, client: &str) {
        let ts = self.now_ms.max(0);
        let slot = self.slot_of(ts);
        let keep_slot = self.slot_of(self.retention_from());
        let c = self.clients.entry(fnv1a(client.as_bytes()), ts);
        // Malformed lines count as "failures" of the client table.
        c.add(slot, 0, 1, keep_slot);
        self.bound();
    }

    fn bound(&mut self) {
        let max = self.config.max_keys.max(1);
        let stale = self.retention_from();
        for t in [
            &mut self.clients,
            &mut self.prefixes,
            &mut self.uas,
            &mut self.accounts,
            &mut self.asns,
        ] {
            t.bound(max, stale);
        }
    }

    /// The counts for a session that ended at `end_ms`, over
    /// `(end_ms − window, end_ms]`.
    pub fn query(
        &self,
        end_ms: i64,
        client: &str,
        addr: Option<IpAddr>,
        user_agent: &str,
        accounts: &[u64],
        asn: Option<u32>,
    ) -> WindowCounts {
        let from = end_ms - self.config.window_ms;
        let (fs, ts) = (self.slot_of(from), self.slot_of(end_ms));
        let mut out = WindowCounts::default();
        if let Some(c) = self.clients.map.get(&fnv1a(client.as_bytes())) {
            let (req, malformed) = c.sums(fs, ts);
            out.client_requests = req as f64;
            out.client_malformed = malformed as f64;
            out.client_user_agents = c.a.count(from, end_ms) as f64;
            out.client_accounts = c.b.count(from, end_ms) as f64;
        }
        if let Some(a) = addr {
            let (clients, fails) = self
                .prefixes
                .map
                .get(&prefix_key(a))
                .map_or((0, 0), |p| (p.a.count(from, end_ms), p.sums(fs, ts).1));
            out.prefix_clients = Some(clients as f64);
            out.prefix_login_failures = Some(fails as f64);
        }
        if let Some(u) = self.uas.map.get(&fnv1a(user_agent.as_bytes())) {
            out.ua_clients = u.a.count(from, end_ms) as f64;
            out.ua_login_failures = u.sums(fs, ts).1 as f64;
        }
        if !accounts.is_empty() {
            let most = accounts
                .iter()
                .filter_map(|h| self.accounts.map.get(h))
                .map(|e| e.a.count(from, end_ms))
                .max()
                .unwrap_or(0);
            out.account_clients = Some(most as f64);
        }
        if let Some(asn) = asn {
            out.asn_login_failures = Some(
                self.asns
                    .map
                    .get(&u64::from(asn))
                    .map_or(0, |e| e.sums(fs, ts).1) as f64,
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev<'a>(
        ts_s: i64,
        client: &'a str,
        ua: &'a str,
        user: Option<&'a str>,
        failed: bool,
    ) -> WindowEvent<'a> {
        WindowEvent {
            ts_ms: ts_s * 1000,
            client,
            addr: client.parse().ok(),
            user_agent: ua,
            user,
            asn: Some(64500),
            login: user.is_some(),
            login_failed: failed,
        }
    }

    #[test]
    fn low_and_slow_stuffing_adds_up_across_sessions() {
        let mut w = Windows::new(WindowConfig::default());
        // 40 addresses of one /24, one failed login each, 90 s apart, one UA.
        let clients: Vec<String> = (1..=40).map(|i| format!("198.51.100.{i}")).collect();
        for (i, c) in clients.iter().enumerate() {
            let user = format!("victim{i}");
            w.push(&ev(
                1000 + 90 * i as i64,
                c,
                "Mozilla/5.0 X",
                Some(&user),
                true,
            ));
        }
        // Somebody else, elsewhere.
        w.push(&ev(
            1000,
            "203.0.113.5",
            "Mozilla/5.0 Y",
            Some("alice"),
            false,
        ));
        let end = (1000 + 90 * 39) * 1000;
        let q = w.query(
            end,
            "198.51.100.40",
            "198.51.100.40".parse().ok(),
            "Mozilla/5.0 X",
            &[fnv1a(b"victim39")],
            Some(64500),
        );
        // The hour before the last attempt: 40 failures (all in the window).
        assert_eq!(q.prefix_login_failures, Some(40.0));
        assert_eq!(q.ua_login_failures, 40.0);
        assert_eq!(q.asn_login_failures, Some(40.0));
        // Distinct clients saturate at max_distinct.
        assert_eq!(q.prefix_clients, Some(16.0));
        assert_eq!(q.ua_clients, 16.0);
        assert_eq!((q.client_requests, q.client_accounts), (1.0, 1.0));
        assert_eq!(q.account_clients, Some(1.0));
        let other = w.query(
            1_000_000,
            "203.0.113.5",
            "203.0.113.5".parse().ok(),
            "Mozilla/5.0 Y",
            &[],
            None,
        );
        assert_eq!(other.prefix_login_failures, Some(0.0));
        assert_eq!(other.ua_login_failures, 0.0);
        assert_eq!(
            (other.account_clients, other.asn_login_failures),
            (None, None)
        );
        // Two hours later the window is empty.
        let later = w.query(
            end + 2 * 3_600_000,
            "198.51.100.40",
            "198.51.100.40".parse().ok(),
            "Mozilla/5.0 X",
            &[],
            Some(64500),
        );
        assert_eq!(later.prefix_login_failures, Some(0.0));
        assert_eq!(later.client_requests, 0.0);
    }

    #[test]
    fn events_after_the_session_end_do_not_count() {
        let mut w = Windows::new(WindowConfig::default());
        w.push(&ev(0, "192.0.2.1", "a", None, false));
        w.push(&ev(1200, "192.0.2.1", "a", None, false));
        let q = w.query(100_000, "192.0.2.1", None, "a", &[], None);
        assert_eq!(q.client_requests, 1.0);
        w.note_malformed("192.0.2.1");
        let q = w.query(1_300_000, "192.0.2.1", None, "a", &[], None);
        assert_eq!((q.client_requests, q.client_malformed), (2.0, 1.0));
        // IPv6 /64 and hostnames.
        let mut w = Windows::new(WindowConfig::default());
        w.push(&ev(0, "2001:db8:1:2::5", "a", None, true));
        w.push(&ev(1, "2001:db8:1:2::9", "a", None, true));
        w.push(&ev(2, "2001:db8:1:3::9", "a", None, true));
        let q = w.query(
            5_000,
            "2001:db8:1:2::9",
            "2001:db8:1:2::9".parse().ok(),
            "a",
            &[],
            None,
        );
        assert_eq!(
            (q.prefix_clients, q.prefix_login_failures),
            (Some(2.0), Some(2.0))
        );
        let h = w.query(5_000, "host.example", None, "a", &[], None);
        assert_eq!(h.prefix_clients, None);
    }

    #[test]
    fn memory_stays_within_the_stated_bound() {
        let cfg = WindowConfig {
            max_keys: 1000,
            ..WindowConfig::default()
        };
        assert_eq!(WindowConfig::default().max_slots(), 20);
        let bound = WindowConfig::default().memory_bound_bytes();
        assert!((200_000_000..250_000_000).contains(&bound), "{bound}");
        let mut w = Windows::new(cfg);
        for i in 0..20_000u32 {
            let c = std::net::Ipv4Addr::from(0x0a00_0000 + i * 256).to_string();
            let ua = format!("ua-{i}");
            let user = format!("u{i}");
            w.push(&ev(i64::from(i / 100), &c, &ua, Some(&user), true));
            assert!(w.clients.map.len() <= 1000 && w.uas.map.len() <= 1000);
            assert!(w.prefixes.map.len() <= 1000 && w.accounts.map.len() <= 1000);
        }
        assert!(w.keys() <= 5000);
    }
}
