//! Writing simulated requests as real log lines (CLF flavours and JSON lines).

use serde::Serialize;

use super::behavior::{SimRequest, SimSession};
use crate::logs::time::{format_clf_time, format_rfc3339};

/// Which access-log layout a CLF tenant writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClfFlavour {
    /// nginx `combined` (empty body: `0`).
    NginxCombined,
    /// nginx `main` behind a load balancer: `$remote_addr` is the balancer,
    /// the client is the last `X-Forwarded-For` entry.
    NginxMain,
    /// Apache `combined` (empty body: `-`).
    ApacheCombined,
}

/// How one tenant writes its log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "format")]
pub enum LineStyle {
    /// A CLF flavour.
    Clf {
        /// Which one.
        flavour: ClfFlavour,
    },
    /// JSON lines.
    Json {
        /// `outcome` is logged on logins and payments.
        outcome: bool,
        /// `asn` is logged.
        asn: bool,
        /// `user` is logged.
        user: bool,
    },
}

impl LineStyle {
    /// JSON lines.
    pub fn is_json(&self) -> bool {
        matches!(self, LineStyle::Json { .. })
    }
}

fn dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

#[derive(Serialize)]
struct JsonLine<'a> {
    ts: String,
    ip: &'a str,
    method: &'a str,
    path: &'a str,
    status: u16,
    bytes: u64,
    referer: Option<&'a str>,
    ua: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    session_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    asn: Option<u32>,
}

/// Appends one line (with `\n`) for request `r` of session `s`.
pub(crate) fn render(
    out: &mut Vec<u8>,
    style: LineStyle,
    utc_offset_min: i16,
    s: &SimSession,
    r: &SimRequest,
    lb_ip: &str,
) {
    use std::io::Write;
    match style {
        LineStyle::Clf { flavour } => {
            let time = format_clf_time(r.ts_ms, utc_offset_min);
            let bytes = match (flavour, r.bytes) {
                (ClfFlavour::ApacheCombined, 0) => "-".to_string(),
                (_, b) => b.to_string(),
            };
            let remote = if flavour == ClfFlavour::NginxMain {
                lb_ip
            } else {
                s.ip.as_str()
            };
            // Writing into a Vec cannot fail.
            let _ = write!(
                out,
                "{remote} - - [{time}] \"{} {} HTTP/1.1\" {} {bytes} \"{}\" \"{}\"",
                r.method.as_str(),
                r.path,
                r.status,
                dash(&r.referer),
                dash(&s.ua)
            );
            if flavour == ClfFlavour::NginxMain {
                let _ = match &s.spoofed_xff {
                    Some(spoof) => write!(out, " \"{spoof}, {}\"", s.ip),
                    None => write!(out, " \"{}\"", s.ip),
                };
            }
            out.push(b'\n');
        }
        LineStyle::Json { outcome, asn, user } => {
            let line = JsonLine {
                ts: format_rfc3339(r.ts_ms, utc_offset_min),
                ip: &s.ip,
                method: r.method.as_str(),
                path: &r.path,
                status: r.status,
                bytes: r.bytes,
                referer: (!r.referer.is_empty()).then_some(r.referer.as_str()),
                ua: (!s.ua.is_empty()).then_some(s.ua.as_str()),
                session_id: s.session_id.as_deref(),
                user: if user { r.user.as_deref() } else { None },
                outcome: if outcome { r.outcome } else { None },
                asn: if asn { s.asn } else { None },
            };
            let _ = serde_json::to_writer(&mut *out, &line);
            out.push(b'\n');
        }
    }
}
