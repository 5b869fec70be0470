//! Placing generated sessions that the sessionizer keys by (IP, user
//! agent): alone, merged with an overlapping session of the same class (a
//! NAT collision: the sessionizer cannot tell them apart either), or
//! refused (re-drawn by the caller) when a merge would make the label join
//! inexact.

use super::behavior::SimSession;

/// Gap that keeps two sessions of one (IP, user agent) apart: the 30-minute
/// timeout plus a minute of margin (CLF rounds to seconds).
const SEPARATION_MS: i64 = 31 * 60_000;

/// Longest pause inside a merged (NAT-collided) session: a minute under the
/// sessionizer's 30-minute timeout, so the merged stream stays one session.
const MERGED_MAX_GAP_MS: i64 = 29 * 60_000;

/// Requests kept per generated session (the sessionizer splits at 10,000).
pub(super) const MAX_REQUESTS: usize = 9_000;

/// One busy interval of an (IP, user agent) key and the session in it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Occupant {
    start: i64,
    end: i64,
    session: usize,
}

/// What happened to a session keyed by (IP, user agent).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Placement {
    /// No other session of its key nearby: stored as its own session.
    Alone,
    /// A NAT collision: it overlaps one session of the same traffic class
    /// and key, so the sessionizer will see one session; its requests were
    /// merged into that session (which keeps its archetype and label).
    Merged,
    /// It overlaps sessions it cannot be merged with (another class, several
    /// sessions, or a merged stream with a pause the sessionizer would
    /// split at): re-drawn.
    Refused,
}

/// Places `s` among the sessions of its (IP, user agent) key (`slots`).
pub(super) fn place(
    sessions: &mut Vec<SimSession>,
    slots: &mut Vec<Occupant>,
    s: SimSession,
) -> Placement {
    let (a, b) = (s.start_ms(), s.end_ms());
    let near =
        |o: &Occupant, a: i64, b: i64| a < o.end + SEPARATION_MS && o.start < b + SEPARATION_MS;
    let hits: Vec<usize> = (0..slots.len())
        .filter(|&k| near(&slots[k], a, b))
        .collect();
    match hits.as_slice() {
        [] => {
            slots.push(Occupant {
                start: a,
                end: b,
                session: sessions.len(),
            });
            sessions.push(s);
            Placement::Alone
        }
        [k] => {
            let occ = slots[*k];
            let host = &sessions[occ.session];
            if host.archetype.class() != s.archetype.class() {
                return Placement::Refused;
            }
            let mut merged = host.requests.clone();
            merged.extend(s.requests);
            merged.sort_by_key(|r| r.ts_ms);
            merged.truncate(MAX_REQUESTS);
            let one_session = merged
                .windows(2)
                .all(|w| w[1].ts_ms - w[0].ts_ms <= MERGED_MAX_GAP_MS);
            let (start, end) = (
                merged.first().map_or(a, |r| r.ts_ms),
                merged.last().map_or(b, |r| r.ts_ms),
            );
            let clear = slots
                .iter()
                .enumerate()
                .all(|(j, o)| j == *k || !near(o, start, end));
            if !one_session || !clear {
                return Placement::Refused;
            }
            sessions[occ.session].requests = merged;
            slots[*k].start = start;
            slots[*k].end = end;
            Placement::Merged
        }
        _ => Placement::Refused,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::Method;
    use crate::synth::Archetype;
    use crate::synth::behavior::SimRequest;

    fn session(archetype: Archetype, times_min: &[i64]) -> SimSession {
        SimSession {
            archetype,
            ip: "100.64.0.1".into(),
            ua: "ua".into(),
            session_id: None,
            asn: None,
            spoofed_xff: None,
            requests: times_min
                .iter()
                .map(|&m| SimRequest {
                    ts_ms: m * 60_000,
                    method: Method::Get,
                    path: "/".into(),
                    status: 200,
                    bytes: 1,
                    referer: String::new(),
                    outcome: None,
                    user: None,
                })
                .collect(),
        }
    }

    #[test]
    fn same_class_collisions_merge_and_other_classes_are_refused() {
        let mut sessions = Vec::new();
        let mut slots = Vec::new();
        let h = Archetype::HumanBrowser;
        assert_eq!(
            place(&mut sessions, &mut slots, session(h, &[0, 10, 20])),
            Placement::Alone
        );
        // Overlaps the first, same class: merged into it, one session.
        assert_eq!(
            place(
                &mut sessions,
                &mut slots,
                session(Archetype::HumanNat, &[5, 15, 40])
            ),
            Placement::Merged
        );
        assert_eq!(sessions.len(), 1);
        assert_eq!(sessions[0].archetype, h);
        let t: Vec<i64> = sessions[0]
            .requests
            .iter()
            .map(|r| r.ts_ms / 60_000)
            .collect();
        assert_eq!(t, vec![0, 5, 10, 15, 20, 40]);
        assert_eq!((slots[0].start, slots[0].end), (0, 40 * 60_000));
        // A bot on the same key and time: refused (re-drawn by the caller).
        assert_eq!(
            place(
                &mut sessions,
                &mut slots,
                session(Archetype::AdvancedScraper, &[30])
            ),
            Placement::Refused
        );
        // Same class but the merged stream would pause 30 minutes: refused.
        assert_eq!(
            place(&mut sessions, &mut slots, session(h, &[70])),
            Placement::Refused
        );
        // Far enough away: its own session.
        assert_eq!(
            place(&mut sessions, &mut slots, session(h, &[200, 210])),
            Placement::Alone
        );
        assert_eq!(sessions.len(), 2);
    }
}
