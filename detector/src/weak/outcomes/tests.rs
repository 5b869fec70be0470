use super::*;
use crate::features::{NUM_FEATURES, RawFeatures};

fn facts(key: &str, ip: &str, start_ms: i64, end_ms: i64) -> SessionFacts {
    SessionFacts {
        key: key.into(),
        ip: ip.into(),
        addr: ip.parse::<IpAddr>().ok().map(|a| a.to_canonical()),
        user_agent: String::new(),
        start_ms,
        end_ms,
        path_hashes: Vec::new(),
        raw: RawFeatures([f64::NAN; NUM_FEATURES]),
    }
}

fn import(text: &[u8]) -> OutcomeIndex {
    let mut ix = OutcomeIndex::new(OutcomeWeights::default()).unwrap();
    ix.import(text).unwrap();
    ix
}

fn votes(ix: &OutcomeIndex, f: &SessionFacts) -> Vec<(&'static str, Vote, f64)> {
    ix.votes(f)
        .into_iter()
        .map(|v| (v.rule, v.vote, v.weight))
        .collect()
}

// 2026-12-01T10:00:00Z
const T0: i64 = 1_796_119_200_000;

#[test]
fn keyed_by_session() {
    let ix = import(
        b"{\"session\": \"sid:1:abc\", \"outcome\": \"captcha_failed\"}\n\
          {\"session\": \"sid:1:abc\", \"outcome\": \"chargeback\"}\n\
          {\"session\": \"sid:2:def\", \"outcome\": \"captcha_passed\"}\n",
    );
    assert_eq!(ix.stats().by_session, 3);
    assert_eq!(
        votes(&ix, &facts("sid:1:abc", "192.0.2.1", 0, 1)),
        vec![
            ("outcome:captcha_failed", Vote::Abuse, 2.0),
            ("outcome:chargeback", Vote::Abuse, 3.0)
        ]
    );
    assert_eq!(
        votes(&ix, &facts("sid:2:def", "192.0.2.1", 0, 1)),
        vec![("outcome:captcha_passed", Vote::NotAbuse, 2.0)]
    );
    assert!(votes(&ix, &facts("sid:3:x", "192.0.2.1", 0, 1)).is_empty());
}

#[test]
fn keyed_by_ip_and_window() {
    let text = format!(
        "{{\"ip\": \"203.0.113.9\", \"ts\": \"2026-12-01T10:00:00Z\", \"outcome\": \"waf_block\"}}\n\
         {{\"ip\": \"::ffff:203.0.113.9\", \"ts\": {T0}, \"outcome\": \"login_failure\"}}\n\
         {{\"ip\": \"[2001:db8::7]\", \"ts\": 1796119200, \"outcome\": \"login_failure\", \"window_s\": 0}}\n"
    );
    let ix = import(text.as_bytes());
    assert_eq!(ix.stats().by_ip, 3, "{:?}", ix.stats());
    // A session ending 4 minutes before the block is inside the default 5-minute window.
    let near = facts("k", "203.0.113.9", T0 - 600_000, T0 - 240_000);
    assert_eq!(
        votes(&ix, &near),
        vec![
            ("outcome:waf_block", Vote::Abuse, 2.0),
            ("outcome:login_failure", Vote::Abuse, 0.5)
        ]
    );
    // Ten minutes before: outside.
    assert!(votes(&ix, &facts("k", "203.0.113.9", T0 - 900_000, T0 - 600_000)).is_empty());
    // Another address: nothing.
    assert!(votes(&ix, &facts("k", "203.0.113.10", T0, T0)).is_empty());
    // window_s = 0: only a session spanning the instant.
    assert_eq!(
        votes(&ix, &facts("k", "2001:db8::7", T0 - 1, T0 + 1)).len(),
        1
    );
    assert!(votes(&ix, &facts("k", "2001:db8::7", T0 + 1, T0 + 2)).is_empty());
}

#[test]
fn login_failures_add_up_to_a_cap() {
    let mut text = String::new();
    for i in 0..10 {
        text.push_str(&format!(
            "{{\"ip\": \"198.51.100.4\", \"ts\": {}, \"outcome\": \"login_failure\"}}\n",
            T0 + i * 1000
        ));
    }
    let ix = import(text.as_bytes());
    assert_eq!(
        votes(&ix, &facts("k", "198.51.100.4", T0, T0 + 60_000)),
        vec![("outcome:login_failure", Vote::Abuse, 2.0)]
    );
}

#[test]
fn malformed_lines_are_counted_per_reason_and_never_stop_the_import() {
    let mut text = Vec::new();
    text.extend_from_slice(b"not json\n");
    text.extend_from_slice(b"[1, 2]\n");
    text.extend_from_slice(
        b"{\"session\": \"s\", \"outcome\": \"captcha_failed\", \"extra\": 1}\n",
    );
    text.extend_from_slice(b"{\"outcome\": \"waf_block\"}\n");
    text.extend_from_slice(
        b"{\"session\": \"s\", \"ip\": \"192.0.2.1\", \"outcome\": \"waf_block\"}\n",
    );
    text.extend_from_slice(b"{\"session\": 7, \"outcome\": \"waf_block\"}\n");
    text.extend_from_slice(b"{\"ip\": \"999.1.1.1\", \"ts\": 1, \"outcome\": \"waf_block\"}\n");
    text.extend_from_slice(b"{\"ip\": \"192.0.2.1\", \"outcome\": \"waf_block\"}\n");
    text.extend_from_slice(
        b"{\"ip\": \"192.0.2.1\", \"ts\": \"yesterday\", \"outcome\": \"waf_block\"}\n",
    );
    text.extend_from_slice(
        b"{\"ip\": \"192.0.2.1\", \"ts\": 1, \"window_s\": -5, \"outcome\": \"waf_block\"}\n",
    );
    text.extend_from_slice(b"{\"session\": \"s\", \"outcome\": \"banned\"}\n");
    text.extend_from_slice(b"{\"session\": \"s\", \"outcome\": \"\xff\"}\n");
    text.extend_from_slice(&vec![b'x'; MAX_OUTCOME_LINE + 10]);
    text.push(b'\n');
    text.extend_from_slice(b"\n   \n");
    text.extend_from_slice(b"{\"session\": \"ok\", \"outcome\": \"waf_block\"}\r\n");
    // A last line without a newline still counts.
    text.extend_from_slice(b"{\"session\": \"ok2\", \"outcome\": \"chargeback\"}");
    let ix = import(&text);
    let s = ix.stats();
    let expect: BTreeMap<&str, u64> = [
        ("not_json", 1),
        ("not_object", 1),
        ("unknown_field", 1),
        ("no_key", 1),
        ("both_keys", 1),
        ("bad_session", 1),
        ("bad_ip", 1),
        ("bad_time", 2),
        ("bad_window", 1),
        ("unknown_outcome", 1),
        ("not_utf8", 1),
        ("too_long", 1),
    ]
    .into_iter()
    .collect();
    assert_eq!(s.malformed, expect);
    assert_eq!((s.lines, s.accepted), (15, 2));
    assert_eq!(s.malformed_total() + s.accepted, s.lines);
    assert_eq!(votes(&ix, &facts("ok2", "x", 0, 0)).len(), 1);
}

#[test]
fn weights_validate_and_zero_switches_a_kind_off() {
    let w = OutcomeWeights {
        waf_block: -1.0,
        ..OutcomeWeights::default()
    };
    assert_eq!(
        w.validate().unwrap_err().to_string(),
        "labels.outcomes.waf_block: must be finite and in [0, 100] (got -1)"
    );
    let mut ix = OutcomeIndex::new(OutcomeWeights {
        waf_block: 0.0,
        ..OutcomeWeights::default()
    })
    .unwrap();
    ix.import(&b"{\"session\": \"s\", \"outcome\": \"waf_block\"}\n"[..])
        .unwrap();
    assert!(ix.votes(&facts("s", "x", 0, 0)).is_empty());
}
