//! The bodies POSTed to the webhook: a generic JSON document with a stable
//! schema, or a Slack-compatible message (`text` plus Block Kit `blocks`).
//!
//! Generic (`format = "json"`), schema `fedsec.alert.v1`:
//!
//! ```json
//! {"schema": "fedsec.alert.v1", "kind": "store_fault", "severity": "critical",
//!  "job": "bots", "client": "", "tenant": "", "message": "…",
//!  "time": "2026-12-06T03:12:45.120Z", "time_unix_ms": 1796526765120,
//!  "details": {"error": "…", "retry_in_ms": 100}}
//! ```
//!
//! Every key is always present (empty strings for a missing subject);
//! new keys may be added, none is removed or renamed within `v1`.
//!
//! Slack (`format = "slack"`): `text` (the notification line) and
//! `blocks`: a header, the message, the subject as fields, the details as
//! a code block and a context line. Text from the coordinator's inputs is
//! escaped (`&`, `<`, `>`), so nothing in an alert can become a link or a
//! mention such as `<!channel>`.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::event::Alert;
use crate::store::sqlite::audit::rfc3339;

/// The `schema` of the generic JSON payload.
pub const SCHEMA: &str = "fedsec.alert.v1";

/// The payload format, `[alerts] format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertFormat {
    /// Generic JSON with a stable schema (the default).
    #[default]
    Json,
    /// A Slack incoming-webhook message (`text` and `blocks`).
    Slack,
}

/// The generic JSON document of `alert`.
pub fn json(alert: &Alert) -> Value {
    json!({
        "schema": SCHEMA,
        "kind": alert.kind.as_str(),
        "severity": alert.severity.as_str(),
        "job": alert.job,
        "client": alert.client,
        "tenant": alert.tenant,
        "message": alert.message,
        "time": rfc3339(alert.unix_ms),
        "time_unix_ms": alert.unix_ms,
        "details": Value::Object(alert.details.clone()),
    })
}

/// Escapes text for Slack's `mrkdwn` and `text` fields.
pub fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Longest text of one Slack section (Slack refuses more than 3,000).
const SLACK_SECTION_CHARS: usize = 2900;

fn cut(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// The Slack message of `alert`.
pub fn slack(alert: &Alert) -> Value {
    let severity = alert.severity.as_str().to_uppercase();
    let title = alert.kind.title();
    let subject = [
        ("Job", &alert.job),
        ("Client", &alert.client),
        ("Tenant", &alert.tenant),
    ];
    let mut line = format!("[{severity}] fedsec: {title}");
    if !alert.job.is_empty() {
        line.push_str(&format!(" (job {})", alert.job));
    }
    line.push_str(&format!(" — {}", alert.message));
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text",
            "text": cut(&format!("{severity}: {title}"), 140)}}),
        json!({"type": "section", "text": {"type": "mrkdwn",
            "text": cut(&slack_escape(&alert.message), SLACK_SECTION_CHARS)}}),
    ];
    let fields: Vec<Value> = subject
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| json!({"type": "mrkdwn", "text": format!("*{k}*\n{}", slack_escape(v))}))
        .collect();
    if !fields.is_empty() {
        blocks.push(json!({"type": "section", "fields": fields}));
    }
    if !alert.details.is_empty() {
        let details = serde_json::to_string_pretty(&alert.details).unwrap_or_default();
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn",
            "text": format!("```{}```", cut(&slack_escape(&details), SLACK_SECTION_CHARS - 6))}}));
    }
    blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn",
        "text": format!("`{}` · {} · {}", alert.kind.as_str(), alert.severity.as_str(), rfc3339(alert.unix_ms))}]}));
    json!({"text": cut(&slack_escape(&line), SLACK_SECTION_CHARS), "blocks": blocks})
}

/// The body POSTed for `alert` in `format`.
pub fn render(format: AlertFormat, alert: &Alert) -> Vec<u8> {
    let value = match format {
        AlertFormat::Json => json(alert),
        AlertFormat::Slack => slack(alert),
    };
    serde_json::to_vec(&value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::event::{AlertKind, Severity};

    fn sample() -> Alert {
        let mut a = Alert::new(
            AlertKind::ClientQuarantined,
            Severity::Warning,
            "client c1 quarantined by ops: <!channel> & co",
        )
        .job("")
        .client("c1", "t1")
        .detail("actor", "ops");
        a.unix_ms = 1_796_526_765_120;
        a
    }

    #[test]
    fn the_generic_payload_has_every_key_of_the_schema() {
        let v: Value = serde_json::from_slice(&render(AlertFormat::Json, &sample())).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        for k in [
            "schema",
            "kind",
            "severity",
            "job",
            "client",
            "tenant",
            "message",
            "time",
            "time_unix_ms",
            "details",
        ] {
            assert!(keys.contains(&k), "{k} missing from {v}");
        }
        assert_eq!(v["schema"], SCHEMA);
        assert_eq!(v["kind"], "client_quarantined");
        assert_eq!(v["severity"], "warning");
        assert_eq!(v["job"], "");
        assert_eq!(v["time"], "2026-12-06T03:12:45.120Z");
        assert_eq!(v["details"]["actor"], "ops");
        assert_eq!(v["message"], sample().message, "JSON is not escaped");
    }

    #[test]
    fn the_slack_payload_escapes_what_could_mention_or_link() {
        let v: Value = serde_json::from_slice(&render(AlertFormat::Slack, &sample())).unwrap();
        let text = v["text"].as_str().unwrap();
        assert!(
            text.starts_with("[WARNING] fedsec: client quarantined"),
            "{text}"
        );
        assert!(text.contains("&lt;!channel&gt; &amp; co"), "{text}");
        assert!(!v.to_string().contains("<!channel>"), "{v}");
        let blocks = v["blocks"].as_array().unwrap();
        assert_eq!(blocks[0]["type"], "header");
        let all = v.to_string();
        assert!(
            all.contains("*Client*\\nc1") && all.contains("*Tenant*\\nt1"),
            "{all}"
        );
        assert!(!all.contains("*Job*"), "empty subject fields are left out");
        assert!(all.contains("`client_quarantined`"));
    }

    #[test]
    fn slack_sections_stay_under_slacks_limit() {
        let mut a = sample();
        a.message = "x".repeat(5000);
        for i in 0..20 {
            a = a.detail(&format!("k{i}"), "y".repeat(400));
        }
        let v = slack(&a);
        for b in v["blocks"].as_array().unwrap() {
            if let Some(t) = b["text"]["text"].as_str() {
                assert!(t.chars().count() <= 3000, "{}", t.len());
            }
        }
        assert!(v["text"].as_str().unwrap().chars().count() <= 3000);
    }
}
