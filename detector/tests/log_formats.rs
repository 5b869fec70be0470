//! Logs as servers write them: real samples (see `tests/data/real-logs/SOURCE.md`)
//! and every configured format, preset and edge of the client field, read
//! through the public reader and sessionizer.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;

use fedsec_detector::features::{self, idx};
use fedsec_detector::logs::{
    ClientIpPolicy, LineEvent, LogFormat, LogReader, Method, ReaderConfig, RealIpHeader,
};
use fedsec_detector::session::{Session, SessionConfig, Sessionizer, sessionize};

fn sample(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/real-logs")
        .join(name);
    std::fs::read_to_string(p).unwrap()
}

/// Reads `text`; returns the sessions and the reader's counters.
fn read(text: &str, cfg: ReaderConfig) -> (Vec<Session>, fedsec_detector::logs::ReaderStats) {
    let mut reader = LogReader::new(text.as_bytes(), cfg);
    let mut sz = Sessionizer::new(SessionConfig::default());
    let mut out = Vec::new();
    let stats = sessionize(&mut reader, &mut sz, |s| out.push(s), |_| {}).unwrap();
    (out, stats)
}

fn records(text: &str, cfg: ReaderConfig) -> Vec<fedsec_detector::logs::LogRecord<'static>> {
    let mut reader = LogReader::new(text.as_bytes(), cfg);
    let mut out = Vec::new();
    while let Some(ev) = reader.next_event().unwrap() {
        match ev {
            LineEvent::Record(r) => out.push(r.into_owned()),
            LineEvent::Malformed(m) => panic!("{m}"),
        }
    }
    out
}

fn lines(text: &str) -> u64 {
    text.lines().filter(|l| !l.trim().is_empty()).count() as u64
}

#[test]
fn real_samples_parse_without_a_malformed_line() {
    for (file, format) in [
        ("nasa-jul95.log", "auto"),
        ("nasa-jul95.log", "common"),
        ("elastic-apache-logs.log", "auto"),
        ("elastic-apache-logs.log", "combined"),
        ("fail2ban-apache-badbots.log", "auto"),
        ("fail2ban-php-url-fopen.log", "auto"),
        ("fail2ban-nginx-botsearch.log", "auto"),
        ("fail2ban-nginx-botsearch.log", "main"),
        ("fail2ban-nginx-bad-request.log", "auto"),
        (
            "fail2ban-traefik-auth.log",
            r#"$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" $request_count "$frontend" "$backend" $duration"#,
        ),
    ] {
        let text = sample(file);
        let (sessions, stats) = read(&text, ReaderConfig::from_log_format(format).unwrap());
        assert_eq!(
            stats.malformed, 0,
            "{file} as {format}: {:?}",
            stats.malformed_by_kind
        );
        assert_eq!(stats.records, lines(&text), "{file} as {format}");
        assert!(!sessions.is_empty());
    }
}

#[test]
fn host_name_clients_are_keyed_as_written() {
    // The issue's tenant: 76 % of a HostnameLookups log was "bad ip".
    let text = sample("nasa-jul95.log");
    let recs = records(&text, ReaderConfig::default());
    let hosts = recs.iter().filter(|r| r.addr.is_none()).count();
    assert_eq!((recs.len(), hosts), (18, 12));
    assert_eq!(recs[1].ip, "unicomp6.unicomp.net");
    let (sessions, _) = read(&text, ReaderConfig::default());
    let unicomp = sessions
        .iter()
        .find(|s| s.ip == "unicomp6.unicomp.net")
        .unwrap();
    assert_eq!(unicomp.requests.len(), 4);
    assert_eq!(unicomp.addr, None);
    // No address: the prefix and crawler features are missing, not zero.
    let f = features::extract(unicomp);
    assert!(f.raw.0[idx::PREFIX_CLIENTS_1H].is_nan());
    assert_eq!(f.raw.0[idx::CRAWLER_RANGES_MISSING], 1.0);
    assert_eq!(f.raw.0[idx::CLIENT_REQUESTS_1H], 4.0);
}

#[test]
fn odd_requests_of_scanners_are_kept() {
    let recs = records(
        &sample("fail2ban-nginx-bad-request.log"),
        ReaderConfig::default(),
    );
    let methods: Vec<Method> = recs.iter().map(|r| r.method).collect();
    assert_eq!(methods[0], Method::Other, "empty request");
    assert_eq!(methods[2], Method::Other, "raw RDP bytes");
    assert_eq!(methods[3], Method::Get);
    assert_eq!(recs[1].user.as_deref(), Some("root"));
    // Traefik's extra fields are trailing data for the presets: the reason says so.
    let (_, stats) = read(
        &sample("fail2ban-traefik-auth.log"),
        ReaderConfig::default(),
    );
    assert_eq!(stats.malformed, 6);
    assert_eq!(stats.malformed_by_kind.get("trailing_data"), Some(&6));
    assert_eq!(stats.malformed_by_client.get("10.0.0.2"), Some(&6));
}

const VHOST: &str = r#"shop.example:443 203.0.113.50 - - [04/Mar/2024:09:15:02 +0100] "GET /c/shoes HTTP/2.0" 200 5120 "https://www.google.com/" "Mozilla/5.0 (X11; Linux x86_64; rv:123.0) Gecko/20100101 Firefox/123.0""#;

#[test]
fn every_preset_and_configured_syntax() {
    // Debian's vhost_combined, by name and by its LogFormat string.
    for f in [
        "vhost_combined",
        r#"%v:%p %h %l %u %t \"%r\" %>s %O \"%{Referer}i\" \"%{User-Agent}i\""#,
    ] {
        let r = &records(VHOST, ReaderConfig::from_log_format(f).unwrap())[0];
        assert_eq!(
            (r.ip.as_ref(), r.status, r.bytes, r.path.as_ref()),
            ("203.0.113.50", 200, 5120, "/c/shoes")
        );
        assert_eq!(r.referer, "https://www.google.com/");
    }
    // auto finds it too.
    assert_eq!(
        records(VHOST, ReaderConfig::default())[0].ip,
        "203.0.113.50"
    );
    // A custom nginx format with $request_time and $upstream_response_time
    // (the issue: any custom log_format was rejected).
    let nginx = r#"$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" rt=$request_time uct="$upstream_connect_time""#;
    let line = r#"192.0.2.10 - - [04/Mar/2024:09:15:02 +0000] "POST /login HTTP/1.1" 401 512 "-" "python-requests/2.31.0" rt=0.004 uct="0.001""#;
    let r = &records(line, ReaderConfig::from_log_format(nginx).unwrap())[0];
    assert_eq!(
        (r.method, r.status, r.user_agent.as_ref()),
        (Method::Post, 401, "python-requests/2.31.0")
    );
    // ISO 8601 and epoch time variables.
    let iso = records(
        r#"2001:db8::7 [2024-03-04T09:15:02+01:00] "GET / HTTP/1.1" 200 1"#,
        ReaderConfig::from_log_format(
            r#"$remote_addr [$time_iso8601] "$request" $status $body_bytes_sent"#,
        )
        .unwrap(),
    );
    assert_eq!(
        (iso[0].ts_ms, iso[0].utc_offset_min),
        (1_709_540_102_000, 60)
    );
    let msec = records(
        r#"1709540102.250 192.0.2.1 "GET / HTTP/1.1" 200"#,
        ReaderConfig::from_log_format(r#"$msec $remote_addr "$request" $status"#).unwrap(),
    );
    assert_eq!(msec[0].ts_ms, 1_709_540_102_250);
    let apache_ms = records(
        "1709540102250 192.0.2.1 GET /a?b 404",
        ReaderConfig::from_log_format("%{msec}t %a %m %U%q %>s").unwrap(),
    );
    assert_eq!(
        (
            apache_ms[0].ts_ms,
            apache_ms[0].status,
            apache_ms[0].path.as_ref()
        ),
        (1_709_540_102_250, 404, "/a")
    );
    // Formats that cannot work are refused when configured, with the reason.
    for (bad, why) in [
        ("$remote_addr $status", "no time field"),
        ("%h %t %>s", "no request field"),
        ("[$time_local] \"$request\" $status", "no client field"),
        ("%h %{%d/%b/%Y}t \"%r\" %>s", "strftime"),
        (
            "$remote_addr$remote_user [$time_local] \"$request\" $status",
            "two fields",
        ),
        ("combined_with_typo", "not a preset"),
    ] {
        let e = ReaderConfig::from_log_format(bad).unwrap_err().to_string();
        assert!(e.contains(why), "{bad}: {e}");
    }
}

#[test]
fn mapped_bracketed_and_ported_clients_are_one_key() {
    let text = [
        r#"::ffff:198.51.100.7 - - [04/Mar/2024:09:15:02 +0000] "GET /a HTTP/1.1" 200 1 "-" "ua""#,
        r#"198.51.100.7 - - [04/Mar/2024:09:15:03 +0000] "GET /b HTTP/1.1" 200 1 "-" "ua""#,
        r#"[2001:DB8::1] - - [04/Mar/2024:09:15:04 +0000] "GET /c HTTP/1.1" 200 1 "-" "ua""#,
        r#"2001:db8:0:0::1 - - [04/Mar/2024:09:15:05 +0000] "GET /d HTTP/1.1" 200 1 "-" "ua""#,
    ]
    .join("\n");
    let (sessions, stats) = read(&text, ReaderConfig::default());
    assert_eq!(stats.malformed, 0);
    let mut keys: Vec<(String, usize)> = sessions
        .iter()
        .map(|s| (s.ip.clone(), s.requests.len()))
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        vec![("198.51.100.7".into(), 2), ("2001:db8::1".into(), 2)]
    );
}

#[test]
fn trusted_proxies_decide_whose_forwarding_header_counts() {
    // Client → CDN edge → load balancer → nginx main.
    let line = |peer: &str, xff: &str| {
        format!(
            r#"{peer} - - [04/Mar/2024:09:15:02 +0000] "GET / HTTP/1.1" 200 1 "-" "ua" "{xff}""#
        )
    };
    let text = line("10.0.0.2", "203.0.113.9, 104.16.0.5");
    let key = |cfg: ReaderConfig| records(&text, cfg)[0].ip.to_string();
    // Default trust (private ranges): the CDN edge is the client — the issue's complaint.
    assert_eq!(key(ReaderConfig::default()), "104.16.0.5");
    let mut cdn = ClientIpPolicy::default();
    cdn.trusted_proxies.push("104.16.0.0/13".parse().unwrap());
    let cfg = ReaderConfig {
        client_ip: Arc::new(cdn.clone()),
        ..ReaderConfig::default()
    };
    assert_eq!(key(cfg.clone()), "203.0.113.9");
    // A client connecting directly cannot choose its key with a forged header.
    let direct = line("198.51.100.4", "1.2.3.4");
    assert_eq!(records(&direct, cfg)[0].ip, "198.51.100.4");
    // Apache with CF-Connecting-IP behind Cloudflare.
    let apache = r#"%a %l %u %t "%r" %>s %b "%{Referer}i" "%{User-Agent}i" "%{CF-Connecting-IP}i""#;
    let cf_line = r#"173.245.48.10 - - [04/Mar/2024:09:15:02 +0000] "GET / HTTP/1.1" 200 1 "-" "ua" "2001:db8::77""#;
    let mut cfg = ReaderConfig::from_log_format(apache).unwrap();
    cfg.client_ip = Arc::new(ClientIpPolicy {
        trusted_proxies: vec!["173.245.48.0/20".parse().unwrap()],
        header: RealIpHeader::CfConnectingIp,
    });
    assert_eq!(records(cf_line, cfg)[0].ip, "2001:db8::77");
}

#[test]
fn malformed_lines_count_per_client_and_reason_and_reach_the_features() {
    let good = |t: &str| {
        format!(r#"192.0.2.9 - - [04/Mar/2024:09:{t} +0000] "GET / HTTP/1.1" 200 1 "-" "ua""#)
    };
    let text = [
        good("00:00"),
        r#"192.0.2.9 - - [04/Mar/2024:09:00:05 +0000] "GET / HTTP/1.1" 2000 1 "-" "ua""#
            .to_string(),
        r#"192.0.2.9 - - [04/Mar/2024:09:00:06 +0000] "GET / HTTP/1.1" 200 1 "-" "ua"#.to_string(),
        r#"203.0.113.1 - - [04/Mar/2024:09:00:07 +0000] "GET / HTTP/1.1" 200 x "-" "ua""#
            .to_string(),
        "garbage".to_string(),
        good("01:00"),
    ]
    .join("\n");
    let (sessions, stats) = read(&text, ReaderConfig::default());
    assert_eq!(stats.malformed, 4);
    assert_eq!(stats.malformed_by_client.get("192.0.2.9"), Some(&2));
    assert_eq!(stats.malformed_by_client.get("203.0.113.1"), Some(&1));
    assert_eq!(stats.malformed_by_client.get("-"), Some(&1));
    assert_eq!(stats.malformed_by_kind.get("bad_field:status"), Some(&1));
    assert_eq!(
        stats.malformed_by_kind.get("unterminated:user_agent"),
        Some(&1)
    );
    assert_eq!(stats.malformed_by_kind.get("bad_field:bytes"), Some(&1));
    let s = sessions.iter().find(|s| s.ip == "192.0.2.9").unwrap();
    assert_eq!(features::extract(s).raw.0[idx::CLIENT_MALFORMED_1H], 2.0);
}

#[test]
fn json_with_a_field_map_in_the_reader() {
    let text = r#"{"time":"2024-03-04T09:15:02+00:00","remote_addr":"::ffff:10.0.0.2","request":"GET /x?y HTTP/1.1","status":"200","body_bytes_sent":"77","http_user_agent":"curl/8.4.0","http_x_forwarded_for":"198.51.100.3"}"#;
    let cfg = ReaderConfig {
        format: LogFormat::Json,
        json_fields: Arc::new(fedsec_detector::logs::JsonFields {
            ts: "time".into(),
            ip: "remote_addr".into(),
            status: "status".into(),
            bytes: "body_bytes_sent".into(),
            ua: "http_user_agent".into(),
            xff: "http_x_forwarded_for".into(),
            ..Default::default()
        }),
        ..ReaderConfig::default()
    };
    let r = &records(text, cfg)[0];
    assert_eq!(
        (r.ip.as_ref(), r.path.as_ref(), r.bytes),
        ("198.51.100.3", "/x", 77)
    );
}

mod hostile {
    use super::*;
    use proptest::prelude::*;

    const FORMAT_PIECES: &[&str] = &[
        "$remote_addr",
        "%h",
        "%a",
        " ",
        " - ",
        "[",
        "]",
        "\"",
        "$status",
        "%>s",
        "$request",
        "%r",
        "$time_local",
        "%t",
        "$time_iso8601",
        "$msec",
        "%{msec}t",
        "$http_user_agent",
        "%{User-Agent}i",
        "$http_x_forwarded_for",
        "%{X-Forwarded-For}i",
        "$body_bytes_sent",
        "%b",
        "$request_time",
        "%D",
        ":",
        "%v:%p",
        "${remote_user}",
        "%%",
        "\\\"",
        "%{",
        "$",
    ];
    const LINE_PIECES: &[&str] = &[
        "192.0.2.1",
        "::ffff:10.0.0.1",
        "[2001:db8::1]:443",
        "host.example",
        " ",
        " - ",
        "[",
        "]",
        "\"",
        "\\\"",
        "04/Mar/2024:09:15:02 +0000",
        "2024-03-04T09:15:02+01:00",
        "1709540102.250",
        "GET / HTTP/1.1",
        "200",
        "99999",
        "-",
        "x",
        "10.0.0.2, 203.0.113.9",
        "\u{e9}",
        "\\x22",
        ":443",
    ];

    fn joined(pieces: &'static [&'static str], max: usize) -> impl Strategy<Value = String> {
        prop::collection::vec(prop::sample::select(pieces), 0..max).prop_map(|v| v.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

        /// Whatever a tenant configures and whatever its log holds, the
        /// reader returns records or reasons, never panics, and counts every
        /// line exactly once.
        #[test]
        fn formats_and_lines_from_the_vocabulary_never_panic(
            format in joined(FORMAT_PIECES, 14),
            lines in prop::collection::vec(joined(LINE_PIECES, 16), 1..6),
        ) {
            for cfg in [ReaderConfig::from_log_format(&format).ok(), Some(ReaderConfig::default())]
                .into_iter()
                .flatten()
            {
                let text = lines.join("\n");
                let mut reader = LogReader::new(text.as_bytes(), cfg);
                let mut n = 0u64;
                while let Some(ev) = reader.next_event().unwrap() {
                    if let LineEvent::Record(r) = ev {
                        prop_assert!((100..=599).contains(&r.status));
                        prop_assert!(!r.ip.is_empty());
                    }
                    n += 1;
                }
                let s = reader.stats();
                prop_assert_eq!(s.records + s.malformed, n);
                prop_assert_eq!(s.records + s.malformed + s.blank, s.lines);
            }
        }

        #[test]
        fn arbitrary_text_never_panics(format in "\\PC{0,40}", line in "\\PC{0,80}") {
            if let Ok(cfg) = ReaderConfig::from_log_format(&format) {
                let mut reader = LogReader::new(line.as_bytes(), cfg);
                while reader.next_event().unwrap().is_some() {}
            }
        }
    }
}
