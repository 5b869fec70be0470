//! The Combined Log Format family with the default client policy: the
//! formats `auto` tries when no `log_format` is configured.
//!
//! ```text
//! main:           $remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" "$http_x_forwarded_for"
//! combined:       $remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent"
//! vhost_combined: %v:%p %h %l %u %t "%r" %>s %O "%{Referer}i" "%{User-Agent}i"
//! common:         %h %l %u %t "%r" %>s %b
//! ```
//!
//! Apache's `combined` (`%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-agent}i"`)
//! is nginx's `combined` (`%b` writes `-` for an empty body). Quotes inside
//! quoted fields must be escaped (`\"` as Apache writes, or `\x22` as nginx
//! writes). The `X-Forwarded-For` field names the client only when the peer
//! is a trusted proxy ([`ClientIpPolicy`]). Nothing may follow the last field.

use std::borrow::Cow;
use std::sync::OnceLock;

use super::client::ClientIpPolicy;
use super::format::{LineFormat, PRESETS};
use super::{LineError, LogRecord, MalformedReason};

/// The presets compiled once, in [`PRESETS`] order.
pub fn presets() -> &'static [LineFormat] {
    static P: OnceLock<Vec<LineFormat>> = OnceLock::new();
    P.get_or_init(|| {
        PRESETS
            .iter()
            .filter_map(|(_, f)| LineFormat::compile(f).ok())
            .collect()
    })
}

/// Parses a line with the first preset that reads it, trying `first` before
/// the others (a reader passes the preset that read its previous line).
/// Returns the record and the index of the preset that read it; on failure,
/// the reason from the preset that read furthest into the line (`main`'s
/// reason for a line no preset reads) and the client key if one was read.
pub fn parse_with_presets<'a>(
    line: &'a str,
    policy: &ClientIpPolicy,
    first: usize,
) -> Result<(LogRecord<'a>, usize), LineError<'a>> {
    let p = presets();
    let order = std::iter::once(first.min(p.len().saturating_sub(1)))
        .chain((0..p.len()).filter(move |&i| i != first));
    let mut best: Option<(u8, MalformedReason, Option<Cow<'a, str>>)> = None;
    for i in order {
        match p[i].parse(line, policy) {
            Ok(r) => return Ok((r, i)),
            Err((reason, client)) => {
                // The combined family (main, combined) explains a line
                // best; a vhost or common reading only when the line starts
                // like one.
                let rank = match (i, &reason) {
                    (0, MalformedReason::MissingField("x_forwarded_for")) => 3,
                    (1, MalformedReason::TrailingData) => 3,
                    (0 | 1, _) => 2,
                    _ if client.is_some() => 1,
                    _ => 0,
                };
                if best.as_ref().is_none_or(|b| rank > b.0) {
                    best = Some((rank, reason, client));
                }
            }
        }
    }
    match best {
        Some((_, reason, client)) => Err((reason, client)),
        None => Err((MalformedReason::MissingField("remote_addr"), None)),
    }
}

/// Parses one line of the combined family with the default client policy.
pub fn parse_line(line: &str) -> Result<LogRecord<'_>, MalformedReason> {
    static POLICY: OnceLock<ClientIpPolicy> = OnceLock::new();
    parse_with_presets(line, POLICY.get_or_init(ClientIpPolicy::default), 0)
        .map(|(r, _)| r)
        .map_err(|(e, _)| e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::Method;

    const APACHE: &str = r#"127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326 "http://www.example.com/start.html" "Mozilla/4.08 [en] (Win98; I ;Nav)""#;

    #[test]
    fn apache_documentation_example() {
        let r = parse_line(APACHE).unwrap();
        assert_eq!(r.ip, "127.0.0.1");
        assert_eq!(r.user.as_deref(), Some("frank"));
        assert_eq!(r.ts_ms, 971_211_336_000);
        assert_eq!(r.utc_offset_min, -420);
        assert_eq!(r.method, Method::Get);
        assert_eq!(r.path, "/apache_pb.gif");
        assert_eq!(r.status, 200);
        assert_eq!(r.bytes, 2326);
        assert_eq!(r.referer, "http://www.example.com/start.html");
        assert_eq!(r.user_agent, "Mozilla/4.08 [en] (Win98; I ;Nav)");
        assert_eq!(r.session_id, None);
    }

    #[test]
    fn nginx_main_uses_rightmost_forwarded_address() {
        let line = r#"10.0.0.2 - - [04/Mar/2024:09:15:02 +0100] "POST /login?next=/a HTTP/1.1" 401 512 "-" "python-requests/2.31.0" "203.0.113.9, 198.51.100.7""#;
        let r = parse_line(line).unwrap();
        assert_eq!(r.ip, "198.51.100.7");
        assert_eq!(r.method, Method::Post);
        assert_eq!(r.path, "/login");
        assert_eq!(r.referer, "");
        assert_eq!(r.user, None);
        let no_xff = line.replace(r#""203.0.113.9, 198.51.100.7""#, r#""-""#);
        assert_eq!(parse_line(&no_xff).unwrap().ip, "10.0.0.2");
        let junk_xff = line.replace("203.0.113.9, 198.51.100.7", "unknown, not-an-ip");
        assert_eq!(parse_line(&junk_xff).unwrap().ip, "10.0.0.2");
    }

    #[test]
    fn dashes_escapes_and_odd_requests() {
        let line = r#"2001:db8::1 - - [04/Mar/2024:09:15:02 +0000] "-" 400 - "-" "-""#;
        let r = parse_line(line).unwrap();
        assert_eq!(
            (r.method, r.path.as_ref(), r.bytes),
            (Method::Other, "-", 0)
        );
        assert_eq!((r.referer.as_ref(), r.user_agent.as_ref()), ("", ""));
        let tls = r#"192.0.2.1 - - [04/Mar/2024:09:15:02 +0000] "\x16\x03\x01\x00\xF4\x01" 400 157 "-" "-""#;
        assert_eq!(parse_line(tls).unwrap().method, Method::Other);
        let escaped = r#"192.0.2.1 - - [04/Mar/2024:09:15:02 +0000] "GET / HTTP/1.1" 200 5 "-" "evil \"quoted\" agent""#;
        assert_eq!(
            parse_line(escaped).unwrap().user_agent,
            r#"evil \"quoted\" agent"#
        );
        let http09 = r#"192.0.2.1 - - [04/Mar/2024:09:15:02 +0000] "GET /x" 200 5 "-" "a""#;
        assert_eq!(parse_line(http09).unwrap().path, "/x");
    }

    #[test]
    fn hostile_lines_are_rejected_with_reasons() {
        let cases: &[(&str, &str)] = &[
            ("", "missing_field:ip"),
            (
                "bad!host - - [10/Oct/2000:13:55:36 -0700] \"GET / HTTP/1.0\" 200 1 \"-\" \"-\"",
                "bad_field:ip",
            ),
            (
                "1.2.3.4 - - [10/Oct/2000:13:55:36 -0700 \"GET / HTTP/1.0\" 200 1 \"-\" \"-\"",
                "unterminated:time",
            ),
            (
                "1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] \"GET / HTTP/1.0 200 1 \"-\" \"-\"",
                "bad_field:status",
            ),
            (
                "1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] \"GET / HTTP/1.0\" 200 1 \"-\" \"Mozilla",
                "unterminated:user_agent",
            ),
            (
                "1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] \"GET / HTTP/1.0\" 200 1 \"-\" \"a\\",
                "unterminated:user_agent",
            ),
            (
                "1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] \"GET / HTTP/1.0\" 200 1 \"-\"",
                "missing_field:user_agent",
            ),
            (
                "1.2.3.4 - - [31/Feb/2000:13:55:36 -0700] \"GET / HTTP/1.0\" 200 1 \"-\" \"-\"",
                "bad_field:time",
            ),
            (
                "1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] \"GET / HTTP/1.0\" 999 1 \"-\" \"-\"",
                "bad_field:status",
            ),
            (
                "1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] \"GET / HTTP/1.0\" 20 1 \"-\" \"-\"",
                "bad_field:status",
            ),
            (
                "1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] \"GET / HTTP/1.0\" 200 -5 \"-\" \"-\"",
                "bad_field:bytes",
            ),
            (
                "1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] \"GET / HTTP/1.0\" 200 99999999999999999999999 \"-\" \"-\"",
                "bad_field:bytes",
            ),
            (
                "1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] \"GET / HTTP/1.0\" 200 1 \"-\" \"-\" \"-\" extra",
                "trailing_data",
            ),
            (
                "1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] \"GET / HTTP/1.0\" 200 1 \"-\" \"-\" junk",
                "trailing_data",
            ),
            (
                "1.2.3.4  - - [10/Oct/2000:13:55:36 -0700] \"GET / HTTP/1.0\" 200 1 \"-\" \"-\"",
                "bad_field:ip",
            ),
            ("{\"ts\":1}", "bad_field:ip"),
        ];
        let wrong: Vec<String> = cases
            .iter()
            .filter_map(|(line, kind)| match parse_line(line) {
                Ok(_) => Some(format!("{line}: accepted")),
                Err(e) if e.kind() != *kind => {
                    Some(format!("{line}: {} ({e}), want {kind}", e.kind()))
                }
                Err(_) => None,
            })
            .collect();
        assert!(wrong.is_empty(), "{wrong:#?}");
    }
}
