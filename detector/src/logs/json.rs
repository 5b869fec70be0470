//! JSON-lines access logs: one JSON object per line.
//!
//! | field | type | required |
//! |---|---|---|
//! | `ts` | ISO 8601 / RFC 3339 string, Unix seconds as a string (`"1709543702.123"`, nginx `$msec`), or a number (seconds; ≥ 10^11 means milliseconds) | yes |
//! | `ip` | client address (normalised as in [`client`](super::client)) or host name | yes |
//! | `method` | string | yes |
//! | `path` | string (query string and fragment are dropped) | yes |
//! | `status` | integer 100–599 | yes |
//! | `bytes` | non-negative integer | yes (`null` = 0) |
//! | `referer` | string (`null`, `""` or `"-"` = absent) | yes |
//! | `ua` | string (`null`, `""` or `"-"` = absent) | yes |
//! | `session_id` | string | no |
//! | `user` | string (normally a hash of the account name) | no |
//! | `outcome` | string, e.g. `login_failure`, `payment_success` (see [`Outcome::parse`](super::Outcome::parse)) | no |
//! | `asn` | integer or `"AS123"` string | no |
//! | `xff`, `x_real_ip`, `cf_connecting_ip` | forwarding headers, believed only from a trusted proxy | no |
//!
//! Unknown fields are ignored; duplicate fields are an error. Logs with
//! other field names (nginx `escape=json` templates, Caddy, Traefik) are
//! read through a [`JsonFields`] map instead (see [`super::json_map`]).

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use super::client::{ClientIpPolicy, Forwarded, parse_client};
use super::{LogRecord, MalformedReason, Method, Outcome, split_target, strip_query, time};

pub use super::json_map::JsonFields;

/// `ts` as written: a string or a number.
enum Ts<'a> {
    Text(Cow<'a, str>),
    Number(f64),
}

impl<'de: 'a, 'a> Deserialize<'de> for Ts<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Ts<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 string or a Unix time number")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Ts::Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Ts::Text(Cow::Owned(v.to_owned())))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Ts::Number(v as f64))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Ts::Number(v as f64))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Ts::Number(v))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

/// `asn` as written: a number or an `"AS123"` / `"123"` string.
struct Asn(Option<u32>);

impl<'de> Deserialize<'de> for Asn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Asn;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an AS number (integer or \"AS123\")")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                u32::try_from(v)
                    .map(|v| Asn(Some(v)))
                    .map_err(|_| E::custom("AS number above 2^32-1"))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                u32::try_from(v)
                    .map(|v| Asn(Some(v)))
                    .map_err(|_| E::custom("AS number out of range"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                let digits = v
                    .strip_prefix("AS")
                    .or_else(|| v.strip_prefix("as"))
                    .unwrap_or(v);
                digits
                    .parse::<u32>()
                    .map(|v| Asn(Some(v)))
                    .map_err(|_| E::custom(format!("{v:?} is not an AS number")))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(Asn(None))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize)]
struct Line<'a> {
    #[serde(borrow)]
    ts: Ts<'a>,
    #[serde(borrow)]
    ip: Cow<'a, str>,
    #[serde(borrow)]
    method: Cow<'a, str>,
    #[serde(borrow)]
    path: Cow<'a, str>,
    status: i64,
    #[serde(deserialize_with = "required_nullable_u64")]
    bytes: Option<u64>,
    #[serde(borrow, deserialize_with = "required_nullable_str")]
    referer: Option<Cow<'a, str>>,
    #[serde(borrow, deserialize_with = "required_nullable_str")]
    ua: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    session_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    user: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    outcome: Option<Cow<'a, str>>,
    #[serde(default)]
    asn: Option<Asn>,
    #[serde(borrow, default)]
    xff: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    x_real_ip: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    cf_connecting_ip: Option<Cow<'a, str>>,
}

/// A string that borrows from the input when it has no escapes.
#[derive(Deserialize)]
struct BorrowedStr<'a>(#[serde(borrow)] Cow<'a, str>);

/// Required field whose value may be `null` (serde treats a plain `Option`
/// field as optional).
fn required_nullable_str<'de: 'a, 'a, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Cow<'a, str>>, D::Error> {
    Ok(Option::<BorrowedStr<'a>>::deserialize(d)?.map(|b| b.0))
}

fn required_nullable_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Option::<u64>::deserialize(d)
}

fn absent_if_dash(s: Option<Cow<'_, str>>) -> Cow<'_, str> {
    match s {
        Some(s) if s.as_ref() != "-" => s,
        _ => Cow::Borrowed(""),
    }
}

fn narrow<'a>(c: Cow<'a, str>, f: impl FnOnce(&str) -> &str) -> Cow<'a, str> {
    match c {
        Cow::Borrowed(b) => Cow::Borrowed(f(b)),
        Cow::Owned(o) => Cow::Owned(f(&o).to_owned()),
    }
}

/// A `ts` string: ISO 8601, or Unix seconds written as text.
pub(crate) fn parse_ts_text(s: &str) -> Result<(i64, i16), MalformedReason> {
    let bad_ts = |e: MalformedReason| match e {
        MalformedReason::BadField { detail, .. } => MalformedReason::bad("ts", detail),
        other => other,
    };
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let unit = if !s.contains('.') && s.len() >= 12 {
            time::EpochUnit::Millis
        } else {
            time::EpochUnit::Seconds
        };
        return time::parse_epoch_text(s, unit).map_err(bad_ts);
    }
    time::parse_iso8601(s).map_err(bad_ts)
}

/// Parses one JSON line (without its newline) with the default client policy.
pub fn parse_line(line: &str) -> Result<LogRecord<'_>, MalformedReason> {
    static POLICY: std::sync::OnceLock<ClientIpPolicy> = std::sync::OnceLock::new();
    parse_line_with(line, POLICY.get_or_init(ClientIpPolicy::default)).map_err(|(e, _)| e)
}

/// Parses one JSON line with the default field names. On failure, also the
/// client key if it was read.
pub fn parse_line_with<'a>(
    line: &'a str,
    policy: &ClientIpPolicy,
) -> Result<LogRecord<'a>, super::LineError<'a>> {
    let l: Line<'a> =
        serde_json::from_str(line).map_err(|e| (MalformedReason::Json(e.to_string()), None))?;
    let peer = match &l.ip {
        Cow::Borrowed(b) => parse_client(b).map_err(|e| (e, None))?,
        Cow::Owned(o) => {
            let c = parse_client(o).map_err(|e| (e, None))?;
            super::client::Client {
                key: Cow::Owned(c.key.into_owned()),
                addr: c.addr,
            }
        }
    };
    let client = {
        let fwd = Forwarded {
            xff: l.xff.as_deref().filter(|s| *s != "-"),
            x_real_ip: l.x_real_ip.as_deref().filter(|s| *s != "-"),
            cf_connecting_ip: l.cf_connecting_ip.as_deref().filter(|s| *s != "-"),
        };
        let forwarded =
            fwd.xff.is_some() || fwd.x_real_ip.is_some() || fwd.cf_connecting_ip.is_some();
        if forwarded && peer.addr.is_some_and(|a| policy.is_trusted(a)) {
            let c = policy.resolve(peer.clone(), fwd);
            super::client::Client {
                key: Cow::Owned(c.key.into_owned()),
                addr: c.addr,
            }
        } else {
            peer
        }
    };
    let key = client.key.clone();
    finish(l, client).map_err(|e| (e, Some(key)))
}

fn finish<'a>(
    l: Line<'a>,
    client: super::client::Client<'a>,
) -> Result<LogRecord<'a>, MalformedReason> {
    let (ts_ms, utc_offset_min) = match &l.ts {
        Ts::Text(s) => parse_ts_text(s)?,
        Ts::Number(v) => time::parse_unix_number(*v)?,
    };
    let status = u16::try_from(l.status)
        .ok()
        .filter(|s| (100..=599).contains(s))
        .ok_or_else(|| {
            MalformedReason::bad("status", format!("{} is not an HTTP status", l.status))
        })?;
    if l.path.is_empty() {
        return Err(MalformedReason::bad("path", "empty"));
    }
    let method = if l.method.is_empty() || !l.method.bytes().all(|b| b.is_ascii_uppercase()) {
        Method::Other
    } else {
        Method::parse(&l.method)
    };
    let outcome_present = l.outcome.is_some();
    let query = narrow(l.path.clone(), |p| split_target(p).1);
    Ok(LogRecord {
        ts_ms,
        utc_offset_min,
        ip: client.key,
        addr: client.addr,
        method,
        path: narrow(l.path, strip_query),
        query,
        status,
        bytes: l.bytes.unwrap_or(0),
        referer: absent_if_dash(l.referer),
        user_agent: absent_if_dash(l.ua),
        session_id: l.session_id.filter(|s| !s.is_empty()),
        user: l.user.filter(|s| !s.is_empty()),
        outcome: l.outcome.as_deref().and_then(Outcome::parse),
        outcome_present,
        asn: l.asn.and_then(|a| a.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::Action;

    #[test]
    fn full_line() {
        let line = r#"{"ts":"2024-03-04T09:15:02.125+01:00","ip":"198.51.100.7","method":"POST","path":"/login?next=%2F","status":401,"bytes":512,"referer":"https://shop.example/login","ua":"Mozilla/5.0 \"x\"","session_id":"s-42","user":"9f86d081","outcome":"login_failure","asn":"AS64500","extra":[1,2]}"#;
        let r = parse_line(line).unwrap();
        assert_eq!(r.ts_ms, 1_709_540_102_125);
        assert_eq!(r.utc_offset_min, 60);
        assert_eq!(r.ip, "198.51.100.7");
        assert_eq!(r.method, Method::Post);
        assert_eq!(r.path, "/login");
        assert!(matches!(r.path, Cow::Borrowed(_)));
        assert_eq!(r.user_agent, "Mozilla/5.0 \"x\"");
        assert_eq!(r.session_id.as_deref(), Some("s-42"));
        assert_eq!(r.user.as_deref(), Some("9f86d081"));
        assert_eq!(
            r.outcome,
            Some(Outcome {
                action: Some(Action::Login),
                success: false
            })
        );
        assert!(r.outcome_present);
        assert_eq!(r.asn, Some(64500));
    }

    #[test]
    fn minimal_line_with_numbers_and_nulls() {
        let line = r#"{"ts":1709540102.5,"ip":"2001:db8::7","method":"GET","path":"/","status":200,"bytes":null,"referer":null,"ua":"-"}"#;
        let r = parse_line(line).unwrap();
        assert_eq!(r.ts_ms, 1_709_540_102_500);
        assert_eq!(
            (r.bytes, r.referer.as_ref(), r.user_agent.as_ref()),
            (0, "", "")
        );
        assert_eq!(
            (r.session_id, r.user, r.outcome, r.asn),
            (None, None, None, None)
        );
        assert!(!r.outcome_present);
        let ms = line.replace("1709540102.5", "1709540102500");
        assert_eq!(parse_line(&ms).unwrap().ts_ms, 1_709_540_102_500);
    }

    #[test]
    fn hostile_lines_are_rejected_with_reasons() {
        let ok = r#"{"ts":"2024-03-04T09:15:02Z","ip":"192.0.2.1","method":"GET","path":"/","status":200,"bytes":1,"referer":"-","ua":"a"}"#;
        assert!(parse_line(ok).is_ok());
        let cases: Vec<(String, &str)> = vec![
            (
                ok.replace("2024-03-04T09:15:02Z", "04/Mar/2024"),
                "bad_field:ts",
            ),
            (ok.replace("\"2024-03-04T09:15:02Z\"", "-5"), "bad_field:ts"),
            (ok.replace("192.0.2.1", "999.1.1.1"), "bad_field:ip"),
            (ok.replace("200", "1200"), "bad_field:status"),
            (ok.replace("200", "-1"), "bad_field:status"),
            (
                ok.replace("\"path\":\"/\"", "\"path\":\"\""),
                "bad_field:path",
            ),
            (ok.replace(",\"ua\":\"a\"", ""), "json"),
            (ok.replace("\"bytes\":1,", ""), "json"),
            (ok.replace("\"status\":200,", ""), "json"),
            (ok.replace("\"bytes\":1", "\"bytes\":-1"), "json"),
            (ok.replace("\"bytes\":1", "\"bytes\":1,\"bytes\":2"), "json"),
            (
                ok.replace("\"bytes\":1", "\"bytes\":1,\"asn\":\"ASX\""),
                "json",
            ),
            (ok[..40].to_string(), "json"),
            ("[1,2,3]".to_string(), "json"),
            ("".to_string(), "json"),
            (format!("{ok} trailing"), "json"),
        ];
        for (line, kind) in cases {
            let err = parse_line(&line).expect_err(&line);
            assert_eq!(err.kind(), kind, "{line}: {err}");
        }
    }
}
