//! Access-log ingestion: one [`LogRecord`] per request line, read as a stream.
//!
//! This module owns the record type shared by every format, the line
//! formats servers are configured with ([`format`]: nginx `log_format` and
//! Apache `LogFormat` syntax and the presets; [`clf`] for the default
//! combined/main pair), JSON lines with a field map ([`json`]), who the
//! client is behind proxies ([`client`]), timestamp parsing ([`time`]) and
//! the streaming [`LogReader`](reader::LogReader), which never holds more
//! than one line in memory and reports malformed lines (with their line
//! number, client and a reason) without stopping.

pub mod clf;
pub mod client;
pub mod format;
pub mod json;
pub mod json_map;
pub mod reader;
pub mod time;

use std::borrow::Cow;
use std::net::IpAddr;

pub use client::{Cidr, ClientIpPolicy, RealIpHeader};
pub use reader::MAX_CLIENT_COUNTERS;

/// A line that could not be read: the reason and, when the line was read
/// that far, the client key (for per-client malformed counts).
pub type LineError<'a> = (MalformedReason, Option<Cow<'a, str>>);
pub use format::{FormatError, LineFormat};
pub use json::JsonFields;
pub use reader::{LineEvent, LogReader, MalformedLine, ReaderConfig, ReaderStats};

/// Which syntax a log file uses.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Decide per line: a line starting with `{` is JSON, anything else CLF.
    #[default]
    Auto,
    /// Combined Log Format (nginx/Apache `combined`), optionally followed by
    /// nginx `main`'s quoted `X-Forwarded-For` field.
    Clf,
    /// JSON lines (see [`json`] for the fields).
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Self::Auto),
            "clf" | "combined" | "main" => Ok(Self::Clf),
            "json" | "jsonl" => Ok(Self::Json),
            other => Err(format!(
                "unknown log format {other:?} (expected clf, json or auto)"
            )),
        }
    }
}

impl std::fmt::Display for LogFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Clf => "clf",
            Self::Json => "json",
        })
    }
}

/// HTTP request method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// `GET`
    Get,
    /// `HEAD`
    Head,
    /// `POST`
    Post,
    /// `PUT`
    Put,
    /// `DELETE`
    Delete,
    /// `PATCH`
    Patch,
    /// `OPTIONS`
    Options,
    /// Anything else, including a request line that is not `METHOD TARGET VERSION`
    /// (scanners send raw bytes; servers log them with status 400).
    Other,
}

impl Method {
    /// Parses a method token (case-sensitive, as HTTP requires).
    pub fn parse(token: &str) -> Self {
        match token {
            "GET" => Self::Get,
            "HEAD" => Self::Head,
            "POST" => Self::Post,
            "PUT" => Self::Put,
            "DELETE" => Self::Delete,
            "PATCH" => Self::Patch,
            "OPTIONS" => Self::Options,
            _ => Self::Other,
        }
    }

    /// The canonical token (`"OTHER"` for [`Method::Other`]).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Head => "HEAD",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Delete => "DELETE",
            Self::Patch => "PATCH",
            Self::Options => "OPTIONS",
            Self::Other => "OTHER",
        }
    }
}

/// What an application reported about a sensitive action (JSON `outcome`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Outcome {
    /// Which action, if the outcome names it (`login_failure` → `Login`).
    pub action: Option<Action>,
    /// Whether the action succeeded.
    pub success: bool,
}

/// Sensitive actions whose success or failure the features count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// A login (credential check).
    Login,
    /// A payment (card authorisation).
    Payment,
}

impl Outcome {
    /// Parses an outcome string: `success`, `failure` (also `ok`, `fail`,
    /// `failed`, `error`, `denied`), optionally prefixed by `login_` / `auth_` /
    /// `signin_` or `payment_` / `pay_` / `card_`. Returns `None` for anything
    /// else (the field then counts as present but uninformative).
    pub fn parse(s: &str) -> Option<Self> {
        let lower = s.trim().to_ascii_lowercase();
        let (action, rest) = if let Some(r) = strip_any(&lower, &["login_", "auth_", "signin_"]) {
            (Some(Action::Login), r)
        } else if let Some(r) = strip_any(&lower, &["payment_", "pay_", "card_"]) {
            (Some(Action::Payment), r)
        } else {
            (None, lower.as_str())
        };
        let success = match rest {
            "success" | "succeeded" | "ok" => true,
            "failure" | "fail" | "failed" | "error" | "denied" | "declined" => false,
            _ => return None,
        };
        Some(Self { action, success })
    }
}

fn strip_any<'a>(s: &'a str, prefixes: &[&str]) -> Option<&'a str> {
    prefixes.iter().find_map(|p| s.strip_prefix(p))
}

/// One request, borrowed from the line it was parsed from where possible.
///
/// Strings that needed unescaping (JSON `\"`) are owned; call
/// [`into_owned`](Self::into_owned) to keep a record beyond its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord<'a> {
    /// Request time, Unix milliseconds (UTC).
    pub ts_ms: i64,
    /// UTC offset of the timestamp as written, in minutes (local time = UTC + offset).
    pub utc_offset_min: i16,
    /// Client key: the client's address in canonical form (IPv4-mapped IPv6
    /// as IPv4, brackets and ports removed), or the host name as logged.
    /// Behind a trusted proxy, the client the forwarding header names (see
    /// [`client`]).
    pub ip: Cow<'a, str>,
    /// The client's address; `None` when the log names the client by host name.
    pub addr: Option<IpAddr>,
    /// Request method.
    pub method: Method,
    /// Request path without query string or fragment (`-` if the request line
    /// had no target).
    pub path: Cow<'a, str>,
    /// Query string of the target, without the `?` and without the fragment;
    /// empty when there was none. Raw values, possibly personal: read it
    /// only through [`crate::shape`], which keeps its shape, never its values.
    pub query: Cow<'a, str>,
    /// HTTP status code (100–599).
    pub status: u16,
    /// Response body bytes.
    pub bytes: u64,
    /// `Referer` header; empty when absent (`-`).
    pub referer: Cow<'a, str>,
    /// `User-Agent` header; empty when absent (`-`).
    pub user_agent: Cow<'a, str>,
    /// Application session id (JSON `session_id`; never present in CLF).
    pub session_id: Option<Cow<'a, str>>,
    /// User identifier, normally a hash (JSON `user`; CLF `$remote_user` when not `-`).
    pub user: Option<Cow<'a, str>>,
    /// Outcome reported by the application (JSON `outcome`).
    pub outcome: Option<Outcome>,
    /// Whether an `outcome` field was present at all (even if unrecognised).
    pub outcome_present: bool,
    /// Autonomous system number of the client (JSON `asn`).
    pub asn: Option<u32>,
}

impl LogRecord<'_> {
    /// Copies every borrowed string so the record outlives its line.
    pub fn into_owned(self) -> LogRecord<'static> {
        LogRecord {
            ts_ms: self.ts_ms,
            utc_offset_min: self.utc_offset_min,
            ip: Cow::Owned(self.ip.into_owned()),
            addr: self.addr,
            method: self.method,
            path: Cow::Owned(self.path.into_owned()),
            query: Cow::Owned(self.query.into_owned()),
            status: self.status,
            bytes: self.bytes,
            referer: Cow::Owned(self.referer.into_owned()),
            user_agent: Cow::Owned(self.user_agent.into_owned()),
            session_id: self.session_id.map(|s| Cow::Owned(s.into_owned())),
            user: self.user.map(|s| Cow::Owned(s.into_owned())),
            outcome: self.outcome,
            outcome_present: self.outcome_present,
            asn: self.asn,
        }
    }
}

/// Why a line was rejected. Each variant names the problem precisely enough
/// for an operator to find it in the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MalformedReason {
    /// The line exceeds the configured maximum length; its bytes were skipped.
    #[error("line longer than {limit} bytes ({len} bytes)")]
    TooLong {
        /// Configured limit.
        limit: usize,
        /// Actual length of the line.
        len: usize,
    },
    /// The line is not valid UTF-8.
    #[error("invalid UTF-8 at byte {0}")]
    InvalidUtf8(usize),
    /// A quoted or bracketed field is not closed before the end of the line.
    #[error("unterminated {0}")]
    Unterminated(&'static str),
    /// A required field is missing.
    #[error("missing field {0}")]
    MissingField(&'static str),
    /// A field is present but unreadable.
    #[error("bad {field}: {detail}")]
    BadField {
        /// Field name.
        field: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// Extra content after the last field of the format.
    #[error("unexpected trailing data after the last field")]
    TrailingData,
    /// The line is not a JSON object with the expected fields.
    #[error("invalid JSON: {0}")]
    Json(String),
}

impl MalformedReason {
    /// A short stable name of the reason, for counting (`too_long`, `bad_field:status`, ...).
    pub fn kind(&self) -> String {
        match self {
            Self::TooLong { .. } => "too_long".into(),
            Self::InvalidUtf8(_) => "invalid_utf8".into(),
            Self::Unterminated(what) => format!("unterminated:{what}"),
            Self::MissingField(f) => format!("missing_field:{f}"),
            Self::BadField { field, .. } => format!("bad_field:{field}"),
            Self::TrailingData => "trailing_data".into(),
            Self::Json(_) => "json".into(),
        }
    }

    pub(crate) fn bad(field: &'static str, detail: impl Into<String>) -> Self {
        Self::BadField {
            field,
            detail: detail.into(),
        }
    }
}

/// Cuts a string for inclusion in an error message.
pub(crate) fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Strips the query string and fragment from a request target.
pub(crate) fn strip_query(target: &str) -> &str {
    split_target(target).0
}

/// Splits a request target into its path and its query string (without the
/// `?`); the fragment is dropped. `"/a?x=1#f"` → `("/a", "x=1")`.
pub(crate) fn split_target(target: &str) -> (&str, &str) {
    match memchr::memchr2(b'?', b'#', target.as_bytes()) {
        Some(i) if target.as_bytes()[i] == b'?' => {
            let rest = &target[i + 1..];
            let q = match memchr::memchr(b'#', rest.as_bytes()) {
                Some(j) => &rest[..j],
                None => rest,
            };
            (&target[..i], q)
        }
        Some(i) => (&target[..i], ""),
        None => (target, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_strings() {
        assert_eq!(
            Outcome::parse("login_failure"),
            Some(Outcome {
                action: Some(Action::Login),
                success: false
            })
        );
        assert_eq!(
            Outcome::parse("PAYMENT_SUCCESS"),
            Some(Outcome {
                action: Some(Action::Payment),
                success: true
            })
        );
        assert_eq!(
            Outcome::parse("failed"),
            Some(Outcome {
                action: None,
                success: false
            })
        );
        assert_eq!(Outcome::parse("maybe"), None);
    }

    #[test]
    fn query_is_stripped() {
        assert_eq!(strip_query("/a/b?x=1#f"), "/a/b");
        assert_eq!(strip_query("/a#f"), "/a");
        assert_eq!(strip_query("/"), "/");
        assert_eq!(split_target("/a/b?x=1&y=#f"), ("/a/b", "x=1&y="));
        assert_eq!(split_target("/a#f?x=1"), ("/a", ""));
        assert_eq!(split_target("/a?"), ("/a", ""));
        assert_eq!(split_target("/"), ("/", ""));
    }

    #[test]
    fn format_names() {
        assert_eq!("json".parse::<LogFormat>(), Ok(LogFormat::Json));
        assert_eq!("combined".parse::<LogFormat>(), Ok(LogFormat::Clf));
        assert!("xml".parse::<LogFormat>().is_err());
    }
}
