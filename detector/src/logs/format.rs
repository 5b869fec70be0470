//! Log line formats written as servers configure them: nginx `log_format`
//! (`$remote_addr - $remote_user [$time_local] ...`) and Apache `LogFormat`
//! (`%h %l %u %t \"%r\" ...`) syntax, compiled once into a [`LineFormat`]
//! that parses lines without regular expressions, plus the named presets
//! (`combined`, `main`, `common`, `vhost_combined`).
//!
//! A field ends where the literal text that follows it in the format
//! begins. A field between double quotes ends at the first unescaped `"`
//! (Apache escapes quotes as `\"`, nginx as `\x22`), so user agents and
//! request lines with spaces and escaped quotes parse. Variables the
//! detector does not use (`$request_time`, `%D`, `$upstream_addr`, ...) are
//! skipped. A format must name the client (`$remote_addr`, `%h`, `%a`), the
//! time (`$time_local`, `$time_iso8601`, `$msec`, `%t`, `%{sec}t`,
//! `%{msec}t`, `%{usec}t`), the request (`$request`, `%r`, or method and
//! URI) and the status; a format that does not is refused when compiled,
//! with the reason.

use std::borrow::Cow;

use super::client::{ClientIpPolicy, Forwarded, parse_client};
use super::time::{self, EpochUnit};
use super::{LineError, LogRecord, MalformedReason, Method, split_target, truncate};

/// What a field of a format holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// The connecting client (address or host name).
    Client,
    /// The authenticated user (`$remote_user`, `%u`).
    User,
    /// CLF time `dd/Mon/yyyy:HH:MM:SS ±hhmm` (without brackets).
    TimeClf,
    /// ISO 8601 time (`$time_iso8601`).
    TimeIso,
    /// Epoch time in the given unit.
    TimeEpoch(EpochUnit),
    /// The request line `METHOD TARGET VERSION`.
    Request,
    /// The method alone.
    Method,
    /// The request target (with or without query string).
    Uri,
    /// The final status.
    Status,
    /// Response body bytes (`-` = 0).
    Bytes,
    /// `Referer` header.
    Referer,
    /// `User-Agent` header.
    UserAgent,
    /// `X-Forwarded-For` header.
    XForwardedFor,
    /// `X-Real-IP` header.
    XRealIp,
    /// `CF-Connecting-IP` header.
    CfConnectingIp,
    /// Anything else (skipped).
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Lit(String),
    Field(Field),
}

/// A compiled format. See the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineFormat {
    source: String,
    pieces: Vec<Piece>,
}

/// Why a format string cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("log format {format:?}: {problem}")]
pub struct FormatError {
    /// The format as given.
    pub format: String,
    /// What is wrong.
    pub problem: String,
}

/// nginx's `combined`.
pub const NGINX_COMBINED: &str = r#"$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent""#;
/// The `main` format of nginx's default configuration (combined plus
/// `X-Forwarded-For`).
pub const NGINX_MAIN: &str = r#"$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" "$http_x_forwarded_for""#;
/// Apache's `common` (no referer or user agent).
pub const APACHE_COMMON: &str = r#"%h %l %u %t "%r" %>s %b"#;
/// Debian's and Apache's `vhost_combined` (`other_vhosts_access.log`).
pub const APACHE_VHOST_COMBINED: &str =
    r#"%v:%p %h %l %u %t "%r" %>s %O "%{Referer}i" "%{User-Agent}i""#;

/// The named presets, in the order `auto` tries them.
pub const PRESETS: [(&str, &str); 4] = [
    ("main", NGINX_MAIN),
    ("combined", NGINX_COMBINED),
    ("vhost_combined", APACHE_VHOST_COMBINED),
    ("common", APACHE_COMMON),
];

fn err(format: &str, problem: impl Into<String>) -> FormatError {
    FormatError {
        format: format.to_string(),
        problem: problem.into(),
    }
}

fn nginx_field(var: &str) -> Field {
    match var {
        "remote_addr" | "realip_remote_addr" => Field::Client,
        "remote_user" => Field::User,
        "time_local" => Field::TimeClf,
        "time_iso8601" => Field::TimeIso,
        "msec" => Field::TimeEpoch(EpochUnit::Seconds),
        "request" => Field::Request,
        "request_method" => Field::Method,
        "request_uri" | "uri" | "document_uri" => Field::Uri,
        "status" => Field::Status,
        "body_bytes_sent" | "bytes_sent" => Field::Bytes,
        "http_referer" => Field::Referer,
        "http_user_agent" => Field::UserAgent,
        "http_x_forwarded_for" | "proxy_add_x_forwarded_for" => Field::XForwardedFor,
        "http_x_real_ip" => Field::XRealIp,
        "http_cf_connecting_ip" => Field::CfConnectingIp,
        _ => Field::Other,
    }
}

fn apache_header(name: &str) -> Field {
    match name.to_ascii_lowercase().as_str() {
        "referer" => Field::Referer,
        "user-agent" => Field::UserAgent,
        "x-forwarded-for" => Field::XForwardedFor,
        "x-real-ip" => Field::XRealIp,
        "cf-connecting-ip" => Field::CfConnectingIp,
        _ => Field::Other,
    }
}

fn push_lit(pieces: &mut Vec<Piece>, s: &str) {
    if s.is_empty() {
        return;
    }
    if let Some(Piece::Lit(l)) = pieces.last_mut() {
        l.push_str(s);
    } else {
        pieces.push(Piece::Lit(s.to_string()));
    }
}

fn compile_nginx(src: &str) -> Result<Vec<Piece>, FormatError> {
    let mut pieces = Vec::new();
    let mut rest = src;
    while let Some(i) = rest.find('$') {
        push_lit(&mut pieces, &rest[..i]);
        let after = &rest[i + 1..];
        let (name, tail) = if let Some(braced) = after.strip_prefix('{') {
            let end = braced
                .find('}')
                .ok_or_else(|| err(src, "unterminated ${...}"))?;
            (&braced[..end], &braced[end + 1..])
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        if name.is_empty() {
            return Err(err(src, "a '$' without a variable name"));
        }
        pieces.push(Piece::Field(nginx_field(name)));
        rest = tail;
    }
    push_lit(&mut pieces, rest);
    Ok(pieces)
}

fn compile_apache(src: &str) -> Result<Vec<Piece>, FormatError> {
    // Apache config files escape quotes in the format string.
    let text = src.replace("\\\"", "\"");
    let mut pieces = Vec::new();
    let mut rest = text.as_str();
    while let Some(i) = rest.find('%') {
        push_lit(&mut pieces, &rest[..i]);
        let mut after = &rest[i + 1..];
        if let Some(t) = after.strip_prefix('%') {
            push_lit(&mut pieces, "%");
            rest = t;
            continue;
        }
        // Modifiers: status conditions (`!200,304`) and `<` / `>`.
        after = after.trim_start_matches(|c: char| {
            c == '<' || c == '>' || c == '!' || c == ',' || c.is_ascii_digit()
        });
        let (arg, after) = match after.strip_prefix('{') {
            Some(b) => {
                let end = b.find('}').ok_or_else(|| err(src, "unterminated %{...}"))?;
                (Some(&b[..end]), &b[end + 1..])
            }
            None => (None, after),
        };
        let mut chars = after.chars();
        let letter = chars
            .next()
            .ok_or_else(|| err(src, "a '%' at the end of the format"))?;
        let field = match (letter, arg) {
            ('h' | 'a', None) => Field::Client,
            ('a', Some("c")) => Field::Client,
            ('u', _) => Field::User,
            ('t', None) => {
                // %t writes its own brackets.
                push_lit(&mut pieces, "[");
                pieces.push(Piece::Field(Field::TimeClf));
                push_lit(&mut pieces, "]");
                rest = chars.as_str();
                continue;
            }
            ('t', Some("sec")) => Field::TimeEpoch(EpochUnit::Seconds),
            ('t', Some("msec")) => Field::TimeEpoch(EpochUnit::Millis),
            ('t', Some("usec")) => Field::TimeEpoch(EpochUnit::Micros),
            ('t', Some(other)) if other.starts_with("begin:") || other.starts_with("end:") => {
                return Err(err(
                    src,
                    format!(
                        "%{{{other}}}t is not supported (use %t, %{{sec}}t, %{{msec}}t or %{{usec}}t)"
                    ),
                ));
            }
            ('t', Some("msec_frac" | "usec_frac")) => Field::Other,
            ('t', Some(other)) => {
                return Err(err(
                    src,
                    format!(
                        "strftime time %{{{other}}}t is not supported (use %t, %{{sec}}t, %{{msec}}t or %{{usec}}t)"
                    ),
                ));
            }
            ('r', _) => Field::Request,
            ('m', _) => Field::Method,
            ('U', _) => Field::Uri,
            // `%U%q`: the query string belongs to the path (and is dropped).
            ('q', _) if matches!(pieces.last(), Some(Piece::Field(Field::Uri))) => {
                rest = chars.as_str();
                continue;
            }
            ('s', _) => Field::Status,
            ('b' | 'B' | 'O', _) => Field::Bytes,
            ('i', Some(h)) => apache_header(h),
            ('i', None) => return Err(err(src, "%i needs a header name: %{Name}i")),
            _ => Field::Other,
        };
        pieces.push(Piece::Field(field));
        rest = chars.as_str();
    }
    push_lit(&mut pieces, rest);
    Ok(pieces)
}

impl LineFormat {
    /// Compiles a preset name or a format string in nginx (`$var`) or Apache
    /// (`%x`) syntax.
    pub fn compile(format: &str) -> Result<Self, FormatError> {
        if let Some((_, preset)) = PRESETS.iter().find(|(n, _)| *n == format) {
            let mut f = Self::compile(preset)?;
            f.source = format.to_string();
            return Ok(f);
        }
        let nginx = format.match_indices('$').any(|(i, _)| {
            format[i + 1..].starts_with(|c: char| c.is_ascii_alphabetic() || c == '{')
        });
        let pieces = if nginx {
            compile_nginx(format)?
        } else if format.contains('%') {
            compile_apache(format)?
        } else {
            return Err(err(
                format,
                "not a preset (combined, main, common, vhost_combined) and no $variable or %directive in it",
            ));
        };
        let has = |f: &dyn Fn(Field) -> bool| {
            pieces.iter().any(|p| matches!(p, Piece::Field(x) if f(*x)))
        };
        if !has(&|f| f == Field::Client) {
            return Err(err(format, "no client field ($remote_addr, %h or %a)"));
        }
        if !has(&|f| matches!(f, Field::TimeClf | Field::TimeIso | Field::TimeEpoch(_))) {
            return Err(err(
                format,
                "no time field ($time_local, $time_iso8601, $msec, %t, %{sec}t, %{msec}t or %{usec}t)",
            ));
        }
        let request = has(&|f| f == Field::Request)
            || (has(&|f| f == Field::Method) && has(&|f| f == Field::Uri));
        if !request {
            return Err(err(
                format,
                "no request field ($request or %r, or $request_method with $request_uri)",
            ));
        }
        if !has(&|f| f == Field::Status) {
            return Err(err(format, "no status field ($status or %>s)"));
        }
        for w in pieces.windows(2) {
            if let [Piece::Field(a), Piece::Field(b)] = w
                && (*a != Field::Other || *b != Field::Other)
            {
                return Err(err(
                    format,
                    "two fields with nothing between them cannot be told apart",
                ));
            }
        }
        Ok(Self {
            source: format.to_string(),
            pieces,
        })
    }

    /// The format as given (a preset's name, or the format string).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Parses one line. On failure, also returns the client key if it was
    /// read before the error (for per-client malformed counts).
    pub fn parse<'a>(
        &self,
        line: &'a str,
        policy: &ClientIpPolicy,
    ) -> Result<LogRecord<'a>, LineError<'a>> {
        let mut v = Values::default();
        let mut pos = 0usize;
        let bytes = line.as_bytes();
        let mut client: Option<super::client::Client<'a>> = None;
        let fail = |r: MalformedReason, c: &Option<super::client::Client<'a>>| {
            (r, c.as_ref().map(|c| c.key.clone()))
        };
        for (i, piece) in self.pieces.iter().enumerate() {
            match piece {
                Piece::Lit(l) => {
                    if !line[pos..].starts_with(l.as_str()) {
                        let next = self.next_field_name(i);
                        let reason = if pos >= line.len() || l.starts_with(&line[pos..]) {
                            MalformedReason::MissingField(next)
                        } else {
                            MalformedReason::bad(
                                next,
                                format!(
                                    "expected {:?} at byte {pos}, found {:?}",
                                    truncate(l, 8),
                                    truncate(&line[pos..], 12)
                                ),
                            )
                        };
                        return Err(fail(reason, &client));
                    }
                    pos += l.len();
                }
                Piece::Field(f) => {
                    let name = field_name(*f);
                    if pos >= line.len() && *f != Field::Other {
                        return Err(fail(MalformedReason::MissingField(name), &client));
                    }
                    let quoted =
                        i > 0 && matches!(&self.pieces[i - 1], Piece::Lit(l) if l.ends_with('"'));
                    let end = match self.pieces.get(i + 1) {
                        None => line.len(),
                        Some(Piece::Lit(next)) if quoted && next.starts_with('"') => {
                            match closing_quote(bytes, pos) {
                                Some(e) => e,
                                None => {
                                    return Err(fail(MalformedReason::Unterminated(name), &client));
                                }
                            }
                        }
                        Some(Piece::Lit(next)) => match line[pos..].find(next.as_str()) {
                            Some(k) => pos + k,
                            None => {
                                let reason = if quoted || next.starts_with(']') {
                                    MalformedReason::Unterminated(name)
                                } else if *f == Field::Client {
                                    MalformedReason::bad(
                                        name,
                                        format!(
                                            "{:?} is not followed by {next:?}",
                                            truncate(&line[pos..], 24)
                                        ),
                                    )
                                } else {
                                    MalformedReason::MissingField(self.next_field_name(i + 1))
                                };
                                return Err(fail(reason, &client));
                            }
                        },
                        Some(Piece::Field(_)) => line.len(),
                    };
                    let text = &line[pos..end];
                    if text.is_empty() && !quoted && *f != Field::Other {
                        let reason = if pos >= line.len() {
                            MalformedReason::MissingField(name)
                        } else {
                            MalformedReason::bad(name, "empty")
                        };
                        return Err(fail(reason, &client));
                    }
                    if *f == Field::Client {
                        match parse_client(text) {
                            Ok(c) => client = Some(c),
                            Err(e) => return Err(fail(e, &client)),
                        }
                    } else if let Err(e) = v.set(*f, text) {
                        return Err(fail(e, &client));
                    }
                    pos = end;
                }
            }
        }
        if !line[pos..].trim_end().is_empty() {
            return Err(fail(MalformedReason::TrailingData, &client));
        }
        let Some(peer) = client else {
            return Err((MalformedReason::MissingField("remote_addr"), None));
        };
        let fwd = Forwarded {
            xff: v.xff,
            x_real_ip: v.x_real_ip,
            cf_connecting_ip: v.cf_connecting_ip,
        };
        let c = policy.resolve(peer.clone(), fwd);
        let finish = || -> Result<LogRecord<'a>, MalformedReason> {
            let (ts_ms, utc_offset_min) = v.time.ok_or(MalformedReason::MissingField("time"))?;
            let status = v.status.ok_or(MalformedReason::MissingField("status"))?;
            let (method, path, query) = match (v.request, v.method, v.uri) {
                (Some(r), _, _) => parse_request(r),
                (None, Some(m), Some(u)) => request_parts(m, u),
                _ => return Err(MalformedReason::MissingField("request")),
            };
            Ok(LogRecord {
                ts_ms,
                utc_offset_min,
                ip: c.key.clone(),
                addr: c.addr,
                method,
                path: Cow::Borrowed(path),
                query: Cow::Borrowed(query),
                status,
                bytes: v.bytes,
                referer: Cow::Borrowed(v.referer),
                user_agent: Cow::Borrowed(v.user_agent),
                session_id: None,
                user: v.user.map(Cow::Borrowed),
                outcome: None,
                outcome_present: false,
                asn: None,
            })
        };
        finish().map_err(|e| (e, Some(c.key.clone())))
    }

    fn next_field_name(&self, from: usize) -> &'static str {
        self.pieces[from..]
            .iter()
            .find_map(|p| match p {
                Piece::Field(f) => Some(field_name(*f)),
                Piece::Lit(_) => None,
            })
            .unwrap_or("end of line")
    }
}

/// Index of the `"` closing a quoted field that starts at `from`.
fn closing_quote(b: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i < b.len() {
        match memchr::memchr2(b'"', b'\\', &b[i..]) {
            None => return None,
            Some(j) if b[i + j] == b'\\' => i += j + 2,
            Some(j) => return Some(i + j),
        }
    }
    None
}

/// Stable name of a field in malformed-line reasons.
pub fn field_name(f: Field) -> &'static str {
    match f {
        Field::Client => "ip",
        Field::User => "remote_user",
        Field::TimeClf | Field::TimeIso | Field::TimeEpoch(_) => "time",
        Field::Request => "request",
        Field::Method => "method",
        Field::Uri => "uri",
        Field::Status => "status",
        Field::Bytes => "bytes",
        Field::Referer => "referer",
        Field::UserAgent => "user_agent",
        Field::XForwardedFor => "x_forwarded_for",
        Field::XRealIp => "x_real_ip",
        Field::CfConnectingIp => "cf_connecting_ip",
        Field::Other => "field",
    }
}

#[derive(Default)]
struct Values<'a> {
    time: Option<(i64, i16)>,
    request: Option<&'a str>,
    method: Option<&'a str>,
    uri: Option<&'a str>,
    status: Option<u16>,
    bytes: u64,
    referer: &'a str,
    user_agent: &'a str,
    user: Option<&'a str>,
    xff: Option<&'a str>,
    x_real_ip: Option<&'a str>,
    cf_connecting_ip: Option<&'a str>,
}

fn dash_none(s: &str) -> Option<&str> {
    if s == "-" || s.is_empty() {
        None
    } else {
        Some(s)
    }
}

impl<'a> Values<'a> {
    fn set(&mut self, f: Field, text: &'a str) -> Result<(), MalformedReason> {
        match f {
            Field::TimeClf => self.time = Some(time::parse_clf_time(text)?),
            Field::TimeIso => self.time = Some(time::parse_iso8601(text)?),
            Field::TimeEpoch(u) => self.time = Some(time::parse_epoch_text(text, u)?),
            Field::Request => self.request = Some(text),
            Field::Method => self.method = Some(text),
            Field::Uri => self.uri = Some(text),
            Field::Status => self.status = Some(parse_status(text)?),
            Field::Bytes => self.bytes = parse_bytes(text)?,
            Field::Referer => self.referer = dash_none(text).unwrap_or(""),
            Field::UserAgent => self.user_agent = dash_none(text).unwrap_or(""),
            Field::User => self.user = dash_none(text),
            Field::XForwardedFor => self.xff = dash_none(text),
            Field::XRealIp => self.x_real_ip = dash_none(text),
            Field::CfConnectingIp => self.cf_connecting_ip = dash_none(text),
            Field::Client | Field::Other => {}
        }
        Ok(())
    }
}

/// A 3-digit HTTP status 100–599.
pub(crate) fn parse_status(tok: &str) -> Result<u16, MalformedReason> {
    match tok.parse::<u16>() {
        Ok(s) if (100..=599).contains(&s) && tok.len() == 3 => Ok(s),
        _ => Err(MalformedReason::bad(
            "status",
            format!("{:?} is not a 3-digit HTTP status", truncate(tok, 16)),
        )),
    }
}

/// A byte count; `-` is 0.
pub(crate) fn parse_bytes(tok: &str) -> Result<u64, MalformedReason> {
    if tok == "-" {
        return Ok(0);
    }
    tok.parse().map_err(|_| {
        MalformedReason::bad(
            "bytes",
            format!("{:?} is not a byte count", truncate(tok, 24)),
        )
    })
}

/// Splits `"METHOD TARGET [VERSION]"`. Anything else (the `-` or empty
/// request nginx writes for a connection without one, raw TLS bytes from
/// scanners) is `(Other, "-")`.
/// Method, path and query string of a request line (`"-"` and `""` when
/// it is not `METHOD TARGET [VERSION]`).
pub(crate) fn parse_request(request: &str) -> (Method, &str, &str) {
    let mut parts = request.split(' ');
    let (Some(m), Some(target)) = (parts.next(), parts.next()) else {
        return (Method::Other, "-", "");
    };
    let version_ok = match parts.next() {
        None => true,
        Some(v) => v.starts_with("HTTP/") && parts.next().is_none(),
    };
    if !version_ok {
        return (Method::Other, "-", "");
    }
    request_parts(m, target)
}

fn request_parts<'a>(m: &str, target: &'a str) -> (Method, &'a str, &'a str) {
    if m.is_empty() || !m.bytes().all(|b| b.is_ascii_uppercase()) || target.is_empty() {
        return (Method::Other, "-", "");
    }
    let (path, query) = split_target(target);
    (Method::parse(m), path, query)
}
