//! JSON access logs with the tenant's own field names: a [`JsonFields`] map
//! from the detector's fields to the keys the server writes, with dotted
//! paths into nested objects (`request.remote_ip`, `request.headers.User-Agent`;
//! an array value such as Caddy's header lists gives its first element).
//!
//! Required: `ts`, `ip`, `status`, and either `request` (`"GET /x HTTP/1.1"`)
//! or `method` with `path`. Everything else is optional and absent when the
//! key is missing, `null`, `""` or `"-"`. Numbers may be written as strings
//! (nginx templates quote every variable).

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::client::{Client, ClientIpPolicy, Forwarded, parse_client};
use super::format::{parse_bytes, parse_request, parse_status};
use super::{LogRecord, MalformedReason, Method, Outcome, split_target, time, truncate};

/// Where each field is in a JSON line (dotted paths). The defaults are the
/// detector's own names ([`super::json`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JsonFields {
    /// Time: ISO 8601, Unix seconds (number or text) or milliseconds.
    pub ts: String,
    /// Client address or host name.
    pub ip: String,
    /// Method (with `path`), unless `request` is mapped.
    pub method: String,
    /// Request target (with `method`).
    pub path: String,
    /// The whole request line, used when `method`/`path` are absent.
    pub request: String,
    /// Status.
    pub status: String,
    /// Response body bytes.
    pub bytes: String,
    /// Referer header.
    pub referer: String,
    /// User-Agent header.
    pub ua: String,
    /// Application session id.
    pub session_id: String,
    /// User (account) identifier.
    pub user: String,
    /// Application outcome.
    pub outcome: String,
    /// AS number.
    pub asn: String,
    /// X-Forwarded-For header.
    pub xff: String,
    /// X-Real-IP header.
    pub x_real_ip: String,
    /// CF-Connecting-IP header.
    pub cf_connecting_ip: String,
}

impl Default for JsonFields {
    fn default() -> Self {
        let s = |x: &str| x.to_string();
        Self {
            ts: s("ts"),
            ip: s("ip"),
            method: s("method"),
            path: s("path"),
            request: s("request"),
            status: s("status"),
            bytes: s("bytes"),
            referer: s("referer"),
            ua: s("ua"),
            session_id: s("session_id"),
            user: s("user"),
            outcome: s("outcome"),
            asn: s("asn"),
            xff: s("xff"),
            x_real_ip: s("x_real_ip"),
            cf_connecting_ip: s("cf_connecting_ip"),
        }
    }
}

impl JsonFields {
    /// The default names (the fast, strict reader applies).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// Checks that every path is usable.
    pub fn validate(&self) -> Result<(), String> {
        for (name, path) in self.entries() {
            if path.split('.').any(str::is_empty) {
                return Err(format!("{name}: {path:?} is not a dotted key path"));
            }
        }
        Ok(())
    }

    fn entries(&self) -> [(&'static str, &str); 16] {
        [
            ("ts", &self.ts),
            ("ip", &self.ip),
            ("method", &self.method),
            ("path", &self.path),
            ("request", &self.request),
            ("status", &self.status),
            ("bytes", &self.bytes),
            ("referer", &self.referer),
            ("ua", &self.ua),
            ("session_id", &self.session_id),
            ("user", &self.user),
            ("outcome", &self.outcome),
            ("asn", &self.asn),
            ("xff", &self.xff),
            ("x_real_ip", &self.x_real_ip),
            ("cf_connecting_ip", &self.cf_connecting_ip),
        ]
    }
}

/// The value at a dotted path; arrays give their first element.
fn at<'v>(root: &'v Value, path: &str) -> Option<&'v Value> {
    let mut v = root;
    // A key that itself contains dots ("http.status_code") wins over nesting.
    if let Some(x) = root.get(path) {
        v = x;
    } else {
        for part in path.split('.') {
            v = v.get(part)?;
        }
    }
    match v {
        Value::Array(a) => a.first(),
        Value::Null => None,
        other => Some(other),
    }
}

fn text<'v>(root: &'v Value, path: &str) -> Option<Cow<'v, str>> {
    match at(root, path)? {
        Value::String(s) if s.is_empty() || s == "-" => None,
        Value::String(s) => Some(Cow::Borrowed(s.as_str())),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        Value::Bool(b) => Some(Cow::Owned(b.to_string())),
        _ => None,
    }
}

fn owned(c: Option<Cow<'_, str>>) -> Cow<'static, str> {
    Cow::Owned(c.map(Cow::into_owned).unwrap_or_default())
}

/// Parses one line with a field map. On failure, also the client key if
/// it was read.
pub fn parse_line_mapped(
    line: &str,
    fields: &JsonFields,
    policy: &ClientIpPolicy,
) -> Result<LogRecord<'static>, super::LineError<'static>> {
    let root: Value =
        serde_json::from_str(line).map_err(|e| (MalformedReason::Json(e.to_string()), None))?;
    if !root.is_object() {
        return Err((MalformedReason::Json("not a JSON object".into()), None));
    }
    let ip = text(&root, &fields.ip).ok_or((MalformedReason::MissingField("ip"), None))?;
    let peer = parse_client(&ip).map_err(|e| (e, None))?;
    let xff = text(&root, &fields.xff);
    let x_real_ip = text(&root, &fields.x_real_ip);
    let cf = text(&root, &fields.cf_connecting_ip);
    let fwd = Forwarded {
        xff: xff.as_deref(),
        x_real_ip: x_real_ip.as_deref(),
        cf_connecting_ip: cf.as_deref(),
    };
    let c = policy.resolve(peer, fwd);
    let client = Client {
        key: Cow::<'static, str>::Owned(c.key.into_owned()),
        addr: c.addr,
    };
    let key = client.key.clone();
    mapped_record(&root, fields, client).map_err(|e| (e, Some(key)))
}

fn mapped_record(
    root: &Value,
    fields: &JsonFields,
    client: Client<'static>,
) -> Result<LogRecord<'static>, MalformedReason> {
    let (ts_ms, utc_offset_min) = match at(root, &fields.ts) {
        Some(Value::Number(n)) => time::parse_unix_number(
            n.as_f64()
                .ok_or_else(|| MalformedReason::bad("ts", "not a number"))?,
        )?,
        Some(Value::String(s)) => super::json::parse_ts_text(s)?,
        _ => return Err(MalformedReason::MissingField("ts")),
    };
    let status_text = text(root, &fields.status).ok_or(MalformedReason::MissingField("status"))?;
    let status = parse_status(&status_text)?;
    let (method, path, query) = match (text(root, &fields.method), text(root, &fields.path)) {
        (Some(m), Some(p)) => {
            let method = if m.bytes().all(|b| b.is_ascii_uppercase()) {
                Method::parse(&m)
            } else {
                Method::Other
            };
            let (path, query) = split_target(&p);
            (method, path.to_string(), query.to_string())
        }
        _ => {
            let r = text(root, &fields.request).ok_or(MalformedReason::MissingField("request"))?;
            let (m, p, q) = parse_request(&r);
            (m, p.to_string(), q.to_string())
        }
    };
    let bytes = match text(root, &fields.bytes) {
        Some(b) => parse_bytes(&b)?,
        None => 0,
    };
    let asn = match text(root, &fields.asn) {
        Some(a) => {
            let digits = a
                .strip_prefix("AS")
                .or_else(|| a.strip_prefix("as"))
                .unwrap_or(&a);
            Some(digits.parse::<u32>().map_err(|_| {
                MalformedReason::bad("asn", format!("{:?} is not an AS number", truncate(&a, 16)))
            })?)
        }
        None => None,
    };
    let outcome_text = text(root, &fields.outcome);
    Ok(LogRecord {
        ts_ms,
        utc_offset_min,
        ip: client.key,
        addr: client.addr,
        method,
        path: Cow::Owned(path),
        query: Cow::Owned(query),
        status,
        bytes,
        referer: owned(text(root, &fields.referer)),
        user_agent: owned(text(root, &fields.ua)),
        session_id: text(root, &fields.session_id).map(|s| Cow::Owned(s.into_owned())),
        user: text(root, &fields.user).map(|s| Cow::Owned(s.into_owned())),
        outcome: outcome_text.as_deref().and_then(Outcome::parse),
        outcome_present: outcome_text.is_some(),
        asn,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nginx_iso_map() -> JsonFields {
        JsonFields {
            ts: "time".into(),
            ip: "remote_addr".into(),
            method: "request_method".into(),
            path: "request_uri".into(),
            status: "status".into(),
            bytes: "body_bytes_sent".into(),
            referer: "http_referer".into(),
            ua: "http_user_agent".into(),
            xff: "http_x_forwarded_for".into(),
            ..JsonFields::default()
        }
    }

    #[test]
    fn an_nginx_escape_json_template_with_iso_time_and_quoted_numbers() {
        let line = r#"{"time":"2024-03-04T09:15:02+01:00","remote_addr":"::ffff:10.0.0.2","request_method":"POST","request_uri":"/login?next=%2F","status":"401","body_bytes_sent":"512","http_referer":"","http_user_agent":"curl/8.4.0","http_x_forwarded_for":"203.0.113.9","request_time":"0.004"}"#;
        let r = parse_line_mapped(line, &nginx_iso_map(), &ClientIpPolicy::default()).unwrap();
        assert_eq!(r.ts_ms, 1_709_540_102_000);
        assert_eq!(r.utc_offset_min, 60);
        assert_eq!(r.ip, "203.0.113.9");
        assert_eq!(
            (r.method, r.path.as_ref(), r.status, r.bytes),
            (Method::Post, "/login", 401, 512)
        );
        assert_eq!(
            (r.referer.as_ref(), r.user_agent.as_ref()),
            ("", "curl/8.4.0")
        );
    }

    #[test]
    fn nested_paths_arrays_and_epoch_seconds_caddy_style() {
        let map = JsonFields {
            ts: "ts".into(),
            ip: "request.remote_ip".into(),
            method: "request.method".into(),
            path: "request.uri".into(),
            status: "status".into(),
            bytes: "size".into(),
            ua: "request.headers.User-Agent".into(),
            referer: "request.headers.Referer".into(),
            ..JsonFields::default()
        };
        let line = r#"{"level":"info","ts":1709543702.125,"request":{"remote_ip":"2001:DB8::7","method":"GET","uri":"/p/1?x=2","headers":{"User-Agent":["Mozilla/5.0 (X11)"]}},"status":200,"size":5120}"#;
        let r = parse_line_mapped(line, &map, &ClientIpPolicy::default()).unwrap();
        assert_eq!(r.ts_ms, 1_709_543_702_125);
        assert_eq!(r.ip, "2001:db8::7");
        assert_eq!(r.path, "/p/1");
        assert_eq!(r.user_agent, "Mozilla/5.0 (X11)");
        assert_eq!(r.referer, "");
    }

    #[test]
    fn a_request_line_and_the_errors() {
        let map = JsonFields {
            ts: "t".into(),
            ip: "h".into(),
            status: "s".into(),
            request: "r".into(),
            ..JsonFields::default()
        };
        let p = ClientIpPolicy::default();
        let ok = r#"{"t":"2024-03-04T09:15:02Z","h":"crawl-66-249-66-1.googlebot.com","s":200,"r":"GET /a?b HTTP/1.1"}"#;
        let r = parse_line_mapped(ok, &map, &p).unwrap();
        assert_eq!(
            (r.ip.as_ref(), r.addr, r.path.as_ref()),
            ("crawl-66-249-66-1.googlebot.com", None, "/a")
        );
        let kind = |l: &str| parse_line_mapped(l, &map, &p).unwrap_err().0.kind();
        assert_eq!(
            kind(&ok.replace(r#""s":200"#, r#""s":"2000""#)),
            "bad_field:status"
        );
        assert_eq!(
            kind(&ok.replace(r#","r":"GET /a?b HTTP/1.1""#, "")),
            "missing_field:request"
        );
        assert_eq!(
            kind(&ok.replace(r#""t":"2024-03-04T09:15:02Z""#, r#""t":"yesterday""#)),
            "bad_field:ts"
        );
        assert_eq!(
            kind(&ok.replace("crawl-66-249-66-1.googlebot.com", "999.9.9.9")),
            "bad_field:ip"
        );
        assert_eq!(kind("[1,2]"), "json");
        assert_eq!(kind("{"), "json");
        // The client is known for a line that fails after it.
        let e = parse_line_mapped(&ok.replace(r#""s":200"#, r#""s":"x""#), &map, &p).unwrap_err();
        assert_eq!(e.1.as_deref(), Some("crawl-66-249-66-1.googlebot.com"));
        assert!(
            JsonFields {
                ts: "a..b".into(),
                ..JsonFields::default()
            }
            .validate()
            .is_err()
        );
    }
}
