//! Combined Log Format lines, as written by nginx and Apache.
//!
//! Accepted layouts (one per line, fields separated by single spaces):
//!
//! ```text
//! combined: $remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent"
//! main:     ... the same ... "$http_x_forwarded_for"
//! ```
//!
//! Apache's `%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-agent}i"` is the same
//! layout (`%b` writes `-` for an empty body). Quotes inside quoted fields must
//! be escaped (`\"` as Apache writes, or `\x22` as nginx writes). When the
//! `X-Forwarded-For` field is present and not `-`, the client IP is its
//! right-most valid address (the one the nearest proxy appended); otherwise
//! `$remote_addr`. Nothing may follow the last field.

use std::borrow::Cow;

use super::{LogRecord, MalformedReason, Method, strip_query, time, truncate, valid_ip};

struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn token(&mut self, field: &'static str) -> Result<&'a str, MalformedReason> {
        let rest = &self.s[self.pos..];
        if rest.is_empty() {
            return Err(MalformedReason::MissingField(field));
        }
        let end = memchr::memchr(b' ', rest.as_bytes()).unwrap_or(rest.len());
        if end == 0 {
            return Err(MalformedReason::bad(field, "empty (double space?)"));
        }
        self.pos += end;
        Ok(&rest[..end])
    }

    fn space(&mut self, next: &'static str) -> Result<(), MalformedReason> {
        match self.s.as_bytes().get(self.pos) {
            Some(b' ') => {
                self.pos += 1;
                Ok(())
            }
            Some(_) => Err(MalformedReason::bad(next, "expected a space before it")),
            None => Err(MalformedReason::MissingField(next)),
        }
    }

    fn bracketed(&mut self, field: &'static str) -> Result<&'a str, MalformedReason> {
        let rest = &self.s[self.pos..];
        if !rest.starts_with('[') {
            return if rest.is_empty() {
                Err(MalformedReason::MissingField(field))
            } else {
                Err(MalformedReason::bad(field, "expected '['"))
            };
        }
        let end = memchr::memchr(b']', rest.as_bytes())
            .ok_or(MalformedReason::Unterminated("time bracket"))?;
        self.pos += end + 1;
        Ok(&rest[1..end])
    }

    fn quoted(&mut self, field: &'static str) -> Result<&'a str, MalformedReason> {
        let rest = &self.s[self.pos..];
        let bytes = rest.as_bytes();
        match bytes.first() {
            Some(b'"') => {}
            Some(_) => return Err(MalformedReason::bad(field, "expected '\"'")),
            None => return Err(MalformedReason::MissingField(field)),
        }
        let mut i = 1;
        loop {
            match memchr::memchr2(b'"', b'\\', &bytes[i..]) {
                None => return Err(MalformedReason::Unterminated(field)),
                Some(j) if bytes[i + j] == b'\\' => i += j + 2,
                Some(j) => {
                    let end = i + j;
                    self.pos += end + 1;
                    return Ok(&rest[1..end]);
                }
            }
            if i > bytes.len() {
                return Err(MalformedReason::Unterminated(field));
            }
        }
    }

    fn at_end(&self) -> bool {
        self.s[self.pos..].trim_end().is_empty()
    }
}

fn dash_empty(s: &str) -> &str {
    if s == "-" { "" } else { s }
}

/// Parses one CLF line (without its newline).
pub fn parse_line(line: &str) -> Result<LogRecord<'_>, MalformedReason> {
    let mut c = Cursor { s: line, pos: 0 };
    let remote_addr = valid_ip(c.token("remote_addr")?)?;
    c.space("ident")?;
    let _ident = c.token("ident")?;
    c.space("remote_user")?;
    let remote_user = c.token("remote_user")?;
    c.space("time")?;
    let (ts_ms, utc_offset_min) = time::parse_clf_time(c.bracketed("time")?)?;
    c.space("request")?;
    let request = c.quoted("request")?;
    c.space("status")?;
    let status_tok = c.token("status")?;
    let status: u16 = match status_tok.parse() {
        Ok(s) if (100..=599).contains(&s) && status_tok.len() == 3 => s,
        _ => {
            return Err(MalformedReason::bad(
                "status",
                format!(
                    "{:?} is not a 3-digit HTTP status",
                    truncate(status_tok, 16)
                ),
            ));
        }
    };
    c.space("bytes")?;
    let bytes_tok = c.token("bytes")?;
    let bytes: u64 = if bytes_tok == "-" {
        0
    } else {
        bytes_tok.parse().map_err(|_| {
            MalformedReason::bad(
                "bytes",
                format!("{:?} is not a byte count", truncate(bytes_tok, 24)),
            )
        })?
    };
    c.space("referer")?;
    let referer = dash_empty(c.quoted("referer")?);
    c.space("user_agent")?;
    let user_agent = dash_empty(c.quoted("user_agent")?);
    let mut ip = remote_addr;
    if !c.at_end() {
        c.space("x_forwarded_for")?;
        let xff = c.quoted("x_forwarded_for")?;
        if let Some(client) = xff.rsplit(',').map(str::trim).find(|a| valid_ip(a).is_ok()) {
            ip = client;
        }
        if !c.at_end() {
            return Err(MalformedReason::TrailingData);
        }
    }
    let (method, path) = parse_request(request);
    Ok(LogRecord {
        ts_ms,
        utc_offset_min,
        ip: Cow::Borrowed(ip),
        method,
        path: Cow::Borrowed(path),
        status,
        bytes,
        referer: Cow::Borrowed(referer),
        user_agent: Cow::Borrowed(user_agent),
        session_id: None,
        user: match remote_user {
            "-" => None,
            u => Some(Cow::Borrowed(u)),
        },
        outcome: None,
        outcome_present: false,
        asn: None,
    })
}

/// Splits `"METHOD TARGET [VERSION]"`. Anything else (the `-` nginx writes for
/// an empty request, raw TLS bytes sent by scanners) is `(Other, "-")`.
fn parse_request(request: &str) -> (Method, &str) {
    let mut parts = request.split(' ');
    let (Some(m), Some(target)) = (parts.next(), parts.next()) else {
        return (Method::Other, "-");
    };
    let version_ok = match parts.next() {
        None => true,
        Some(v) => v.starts_with("HTTP/") && parts.next().is_none(),
    };
    if !version_ok
        || m.is_empty()
        || !m.bytes().all(|b| b.is_ascii_uppercase())
        || target.is_empty()
    {
        return (Method::Other, "-");
    }
    (Method::parse(m), strip_query(target))
}

#[cfg(test)]
mod tests {
    use super::*;

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
            ("", "missing_field:remote_addr"),
            (
                "not-an-ip - - [10/Oct/2000:13:55:36 -0700] \"GET / HTTP/1.0\" 200 1 \"-\" \"-\"",
                "bad_field:ip",
            ),
            (
                "1.2.3.4 - - [10/Oct/2000:13:55:36 -0700 \"GET / HTTP/1.0\" 200 1 \"-\" \"-\"",
                "unterminated:time bracket",
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
                "bad_field:x_forwarded_for",
            ),
            (
                "1.2.3.4  - - [10/Oct/2000:13:55:36 -0700] \"GET / HTTP/1.0\" 200 1 \"-\" \"-\"",
                "bad_field:ident",
            ),
            ("{\"ts\":1}", "bad_field:ip"),
        ];
        for (line, kind) in cases {
            let err = parse_line(line).expect_err(line);
            assert_eq!(&err.kind(), kind, "{line}: {err}");
        }
    }
}
