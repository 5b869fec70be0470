//! Related sessions: which sessions of the same log share a session's
//! client address, exact user agent or autonomous system, with counts, how
//! many of them the model flags, and a few of their keys.
//!
//! Bounded memory: at most [`MAX_RELATED_KEYS`] distinct addresses, user
//! agents and ASes each are indexed (the sessions of further ones are
//! counted in [`RelatedIndex::unindexed`] and their groups reported as not
//! indexed); user agents are indexed by their first [`MAX_UA_KEY_LEN`]
//! bytes; each group keeps [`RELATED_EXAMPLES`] + 1 example keys, flagged
//! sessions preferred.

use std::collections::HashMap;
use std::hash::Hash;

use serde::Serialize;

/// Most distinct keys per index (addresses, user agents, ASes).
pub const MAX_RELATED_KEYS: usize = 200_000;
/// User agents are grouped by this many leading bytes.
pub const MAX_UA_KEY_LEN: usize = 512;
/// Example session keys reported per group.
pub const RELATED_EXAMPLES: usize = 4;

#[derive(Debug, Clone, Default)]
struct Group {
    sessions: u64,
    flagged: u64,
    /// (flagged, session key).
    examples: Vec<(bool, Box<str>)>,
}

impl Group {
    fn add(&mut self, key: &str, flagged: bool) {
        self.sessions += 1;
        self.flagged += u64::from(flagged);
        if self.examples.len() <= RELATED_EXAMPLES {
            self.examples.push((flagged, key.into()));
        } else if flagged && let Some(slot) = self.examples.iter_mut().find(|(f, _)| !*f) {
            *slot = (true, key.into());
        }
    }
}

#[derive(Debug)]
struct Index<K> {
    groups: HashMap<K, Group>,
}

impl<K: Hash + Eq> Index<K> {
    fn new() -> Self {
        Self {
            groups: HashMap::new(),
        }
    }

    /// Adds a session; false when the key is new and the index is full.
    fn add(&mut self, k: K, session: &str, flagged: bool) -> bool {
        if let Some(g) = self.groups.get_mut(&k) {
            g.add(session, flagged);
            return true;
        }
        if self.groups.len() >= MAX_RELATED_KEYS {
            return false;
        }
        self.groups.entry(k).or_default().add(session, flagged);
        true
    }

    fn related(&self, k: &K, session: &str, flagged: bool) -> RelatedGroup {
        match self.groups.get(k) {
            None => RelatedGroup {
                indexed: false,
                ..RelatedGroup::default()
            },
            Some(g) => {
                let mut examples: Vec<&(bool, Box<str>)> =
                    g.examples.iter().filter(|(_, s)| &**s != session).collect();
                examples.sort_by_key(|(f, _)| !*f);
                RelatedGroup {
                    indexed: true,
                    other_sessions: g.sessions.saturating_sub(1),
                    other_flagged: g.flagged.saturating_sub(u64::from(flagged)),
                    examples: examples
                        .into_iter()
                        .take(RELATED_EXAMPLES)
                        .map(|(_, s)| s.to_string())
                        .collect(),
                }
            }
        }
    }
}

/// Sessions sharing one address, user agent or AS with a given session.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct RelatedGroup {
    /// The group is indexed (false past [`MAX_RELATED_KEYS`], or without an AS).
    pub indexed: bool,
    /// Other sessions in the group.
    pub other_sessions: u64,
    /// Of them, sessions the model flags (logit ≥ 0).
    pub other_flagged: u64,
    /// Some of their keys (flagged first), at most [`RELATED_EXAMPLES`].
    pub examples: Vec<String>,
}

impl RelatedGroup {
    /// `3 other sessions (2 flagged): k1, k2, k3` or `none`.
    pub fn describe(&self) -> String {
        if !self.indexed {
            return "not indexed".into();
        }
        if self.other_sessions == 0 {
            return "no other session".into();
        }
        let more = self.other_sessions as usize > self.examples.len();
        format!(
            "{} other session{} ({} flagged): {}{}",
            self.other_sessions,
            if self.other_sessions == 1 { "" } else { "s" },
            self.other_flagged,
            self.examples.join(", "),
            if more { ", …" } else { "" }
        )
    }
}

/// A session's related sessions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Related {
    /// Same client address (or host name).
    pub same_ip: RelatedGroup,
    /// Same exact user agent.
    pub same_user_agent: RelatedGroup,
    /// Same autonomous system (`None` when the session has none).
    pub same_asn: Option<(u32, RelatedGroup)>,
}

/// Index of every session of a log by address, user agent and AS.
#[derive(Debug)]
pub struct RelatedIndex {
    by_ip: Index<Box<str>>,
    by_ua: Index<Box<str>>,
    by_asn: Index<u32>,
    /// Sessions not indexed under some key because an index was full.
    pub unindexed: u64,
}

impl Default for RelatedIndex {
    fn default() -> Self {
        Self {
            by_ip: Index::new(),
            by_ua: Index::new(),
            by_asn: Index::new(),
            unindexed: 0,
        }
    }
}

fn ua_key(ua: &str) -> &str {
    crate::logs::truncate(ua, MAX_UA_KEY_LEN)
}

impl RelatedIndex {
    /// Indexes one session (its key string, address, user agent, AS and
    /// whether the model flags it).
    pub fn add(&mut self, session: &str, ip: &str, ua: &str, asn: Option<u32>, flagged: bool) {
        let mut ok = self.by_ip.add(ip.into(), session, flagged);
        ok &= self.by_ua.add(ua_key(ua).into(), session, flagged);
        if let Some(a) = asn {
            ok &= self.by_asn.add(a, session, flagged);
        }
        if !ok {
            self.unindexed += 1;
        }
    }

    /// The sessions related to one (itself excluded).
    pub fn related(
        &self,
        session: &str,
        ip: &str,
        ua: &str,
        asn: Option<u32>,
        flagged: bool,
    ) -> Related {
        Related {
            same_ip: self.by_ip.related(&ip.into(), session, flagged),
            same_user_agent: self.by_ua.related(&ua_key(ua).into(), session, flagged),
            same_asn: asn.map(|a| (a, self.by_asn.related(&a, session, flagged))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_by_ip_ua_and_asn_excluding_the_session_itself() {
        let mut idx = RelatedIndex::default();
        // NAT: one address, three browsers; a bot build on many addresses.
        idx.add("a", "10.0.0.1", "Firefox", Some(1), false);
        idx.add("b", "10.0.0.1", "Chrome", Some(1), false);
        idx.add("c", "10.0.0.1", "bot/1.0", Some(1), true);
        for i in 0..6 {
            idx.add(
                &format!("d{i}"),
                &format!("192.0.2.{i}"),
                "bot/1.0",
                Some(2),
                true,
            );
        }
        let r = idx.related("c", "10.0.0.1", "bot/1.0", Some(1), true);
        assert_eq!((r.same_ip.other_sessions, r.same_ip.other_flagged), (2, 0));
        assert_eq!(r.same_ip.examples, vec!["a", "b"]);
        assert_eq!(
            (
                r.same_user_agent.other_sessions,
                r.same_user_agent.other_flagged
            ),
            (6, 6)
        );
        assert_eq!(r.same_user_agent.examples.len(), RELATED_EXAMPLES);
        assert!(!r.same_user_agent.examples.contains(&"c".to_string()));
        let (asn, g) = r.same_asn.unwrap();
        assert_eq!((asn, g.other_sessions), (1, 2));
        assert_eq!(
            r.same_user_agent.describe(),
            "6 other sessions (6 flagged): d0, d1, d2, d3, …"
        );
        let lone = idx.related("z", "203.0.113.9", "curl", None, false);
        assert!(!lone.same_ip.indexed && lone.same_asn.is_none());
    }

    #[test]
    fn flagged_examples_are_preferred() {
        let mut idx = RelatedIndex::default();
        for i in 0..10 {
            idx.add(&format!("h{i}"), "10.0.0.1", &format!("ua{i}"), None, false);
        }
        idx.add("bot", "10.0.0.1", "x", None, true);
        let r = idx.related("h0", "10.0.0.1", "ua0", None, false);
        assert_eq!(r.same_ip.examples[0], "bot");
        assert_eq!(r.same_ip.other_flagged, 1);
    }
}
