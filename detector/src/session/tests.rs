//! Unit tests of the parent module.
use super::*;
use std::borrow::Cow;

fn rec(ts_s: i64, ip: &str, ua: &str, sid: Option<&str>) -> LogRecord<'static> {
    LogRecord {
        ts_ms: ts_s * 1000,
        utc_offset_min: 0,
        ip: Cow::Owned(ip.into()),
        addr: ip.parse().ok(),
        method: Method::Get,
        path: Cow::Borrowed("/"),
        query: Cow::Borrowed(""),
        status: 200,
        bytes: 10,
        referer: Cow::Borrowed(""),
        user_agent: Cow::Owned(ua.into()),
        session_id: sid.map(|s| Cow::Owned(s.into())),
        user: None,
        outcome: None,
        outcome_present: false,
        asn: None,
    }
}

fn all(s: &mut Sessionizer) -> Vec<Session> {
    s.finish();
    s.drain_closed().collect()
}

#[test]
fn keys_and_idle_timeout() {
    let mut s = Sessionizer::default();
    s.push(&rec(0, "1.1.1.1", "a", None));
    s.push(&rec(10, "1.1.1.1", "b", None)); // other UA: other session
    s.push(&rec(1800, "1.1.1.1", "a", None)); // exactly 30 min: same session
    s.push(&rec(20, "2.2.2.2", "a", Some("x")));
    s.push(&rec(30, "3.3.3.3", "c", Some("x"))); // same sid, other IP: same session
    assert_eq!(s.open_sessions(), 3);
    s.push(&rec(3601, "1.1.1.1", "a", None)); // 1801 s after: new session
    let sessions = all(&mut s);
    let mut summary: Vec<(String, usize)> = sessions
        .iter()
        .map(|x| (x.key.to_string(), x.requests.len()))
        .collect();
    summary.sort();
    let a = format!("{:016x}", paths::fnv1a(b"a"));
    let b = format!("{:016x}", paths::fnv1a(b"b"));
    assert_eq!(
        summary,
        vec![
            (format!("ipua:0:1.1.1.1:{a}"), 2),
            (format!("ipua:10000:1.1.1.1:{b}"), 1),
            (format!("ipua:3601000:1.1.1.1:{a}"), 1),
            ("sid:20000:x".to_string(), 2),
        ]
    );
}

#[test]
fn idle_sessions_are_flushed_as_time_passes() {
    let mut s = Sessionizer::default();
    for i in 0..1000 {
        s.push(&rec(
            i,
            &format!("10.0.{}.{}", i / 256, i % 256),
            "ua",
            None,
        ));
    }
    assert_eq!(s.open_sessions(), 1000);
    assert_eq!(s.closed_len(), 0);
    // A request 31 minutes after the first ones flushes the early sessions.
    s.push(&rec(1000 + 1801, "9.9.9.9", "ua", None));
    assert_eq!(s.closed_len(), 1000);
    assert_eq!(s.open_sessions(), 1);
    assert!(
        s.drain_closed()
            .all(|x| x.close_reason == CloseReason::Idle)
    );
    s.flush_idle(1_000_000_000);
    assert_eq!(s.open_sessions(), 0);
}

#[test]
fn memory_bounds() {
    let mut s = Sessionizer::new(SessionConfig {
        max_open_sessions: 10,
        max_requests_per_session: 3,
        ..SessionConfig::default()
    });
    for i in 0..7 {
        s.push(&rec(i, "1.1.1.1", "ua", None));
    }
    for i in 0..20 {
        s.push(&rec(10, &format!("10.0.0.{i}"), "ua", None));
        assert!(s.open_sessions() <= 10);
    }
    let sessions = all(&mut s);
    let capped: Vec<_> = sessions
        .iter()
        .filter(|x| x.close_reason == CloseReason::RequestCap)
        .collect();
    assert_eq!(capped.len(), 2);
    assert!(capped.iter().all(|x| x.requests.len() == 3));
    let evicted = sessions
        .iter()
        .filter(|x| x.close_reason == CloseReason::Evicted)
        .count();
    assert_eq!(evicted, 11);
    let total: usize = sessions.iter().map(|x| x.requests.len()).sum();
    assert_eq!(total, 27);
}

#[test]
fn late_requests_of_an_idle_session_start_a_new_one() {
    let mut s = Sessionizer::default();
    s.push(&rec(0, "1.1.1.1", "a", None));
    s.push(&rec(5000, "2.2.2.2", "a", None));
    // Out-of-order line for the first identity, far in the past relative to
    // the clock: the first session was already flushed.
    s.push(&rec(100, "1.1.1.1", "a", None));
    let sessions = all(&mut s);
    assert_eq!(sessions.len(), 3);
}
