//! `[alerts]`: the webhook sink's configuration. Absent: no alerts.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::payload::AlertFormat;
use crate::config::ConfigError;

/// The `[alerts]` table. Every key but `url_file` has a default; unknown
/// keys are errors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// File holding the webhook URL (one line; mode 0600 or stricter: a
    /// Slack webhook URL is a credential). The URL is never logged, shown
    /// or put in an error. Required.
    pub url_file: PathBuf,
    /// Payload format: `"json"` (generic, schema `fedsec.alert.v1`) or
    /// `"slack"` (a Slack incoming-webhook message). Default `"json"`.
    #[serde(default)]
    pub format: AlertFormat,
    /// Allow a plain `http://` URL to a host that is not loopback (alerts
    /// and the URL would cross the network in clear). Default `false`:
    /// `https://`, or `http://` to `localhost` / a loopback address only.
    #[serde(default)]
    pub allow_plain_http: bool,
    /// CA certificate(s) (PEM) trusted for an `https://` webhook. Default
    /// none: Mozilla's roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Alerts waiting for delivery, at most; when full, new alerts are
    /// dropped and counted (`fedsec_alerts_total{outcome="dropped"}`),
    /// never waited for. Default 256.
    #[serde(default = "default_queue_capacity")]
    pub queue_capacity: usize,
    /// One delivery attempt (connect, TLS, POST, answer), in ms. Default 5000.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Attempts per alert (the first included) before it is given up and
    /// counted as failed. Default 5.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// Delay before the second attempt, in ms; it doubles per attempt up
    /// to `backoff_max_ms`, each delay drawn uniformly from its upper
    /// half (jitter). A `Retry-After` in seconds is honoured up to
    /// `backoff_max_ms`. Default 1000.
    #[serde(default = "default_backoff_initial_ms")]
    pub backoff_initial_ms: u64,
    /// Longest delay between attempts, in ms. Default 60000.
    #[serde(default = "default_backoff_max_ms")]
    pub backoff_max_ms: u64,
    /// At shutdown, the time queued alerts get to be delivered, in ms;
    /// what is left then is counted as `outcome="shutdown"`. Default 5000.
    #[serde(default = "default_flush_timeout_ms")]
    pub flush_timeout_ms: u64,
    /// De-duplication window, in s: an alert of the same kind, job,
    /// client, tenant and subject as one sent within the window is
    /// suppressed; 0 sends every alert. Default 600.
    #[serde(default = "default_dedup_window_s")]
    pub dedup_window_s: u64,
    /// Alerts of one kind sent per de-duplication window, at most (the
    /// rest are suppressed and counted). Default 20.
    #[serde(default = "default_max_per_kind_per_window")]
    pub max_per_kind_per_window: u32,
    /// Alert when a job's ε spent crosses this fraction of its budget
    /// (once per job). Default 0.8.
    #[serde(default = "default_budget_nearly_spent_fraction")]
    pub budget_nearly_spent_fraction: f64,
    /// Alert when a certificate (the server's, its CA, a registering
    /// client's) expires within this many days. Default 14.
    #[serde(default = "default_cert_expiry_days")]
    pub cert_expiry_days: u64,
    /// How often the server's certificate and CA are checked, in s (also
    /// at start). Default 21600 (6 h).
    #[serde(default = "default_cert_check_interval_s")]
    pub cert_check_interval_s: u64,
    /// Alert when this many uploads are rejected within
    /// `rejected_burst_window_s`. Default 20.
    #[serde(default = "default_rejected_burst_count")]
    pub rejected_burst_count: u32,
    /// The window of `rejected_burst_count`, in s. Default 60.
    #[serde(default = "default_rejected_burst_window_s")]
    pub rejected_burst_window_s: u64,
}

fn default_queue_capacity() -> usize {
    256
}
fn default_timeout_ms() -> u64 {
    5000
}
fn default_max_attempts() -> u32 {
    5
}
fn default_backoff_initial_ms() -> u64 {
    1000
}
fn default_backoff_max_ms() -> u64 {
    60_000
}
fn default_flush_timeout_ms() -> u64 {
    5000
}
fn default_dedup_window_s() -> u64 {
    600
}
fn default_max_per_kind_per_window() -> u32 {
    20
}
fn default_budget_nearly_spent_fraction() -> f64 {
    0.8
}
fn default_cert_expiry_days() -> u64 {
    14
}
fn default_cert_check_interval_s() -> u64 {
    21_600
}
fn default_rejected_burst_count() -> u32 {
    20
}
fn default_rejected_burst_window_s() -> u64 {
    60
}

impl AlertsConfig {
    /// The defaults, with the URL in `url_file`.
    pub fn with_url_file(url_file: impl Into<PathBuf>) -> Self {
        Self {
            url_file: url_file.into(),
            format: AlertFormat::default(),
            allow_plain_http: false,
            ca_file: None,
            queue_capacity: default_queue_capacity(),
            timeout_ms: default_timeout_ms(),
            max_attempts: default_max_attempts(),
            backoff_initial_ms: default_backoff_initial_ms(),
            backoff_max_ms: default_backoff_max_ms(),
            flush_timeout_ms: default_flush_timeout_ms(),
            dedup_window_s: default_dedup_window_s(),
            max_per_kind_per_window: default_max_per_kind_per_window(),
            budget_nearly_spent_fraction: default_budget_nearly_spent_fraction(),
            cert_expiry_days: default_cert_expiry_days(),
            cert_check_interval_s: default_cert_check_interval_s(),
            rejected_burst_count: default_rejected_burst_count(),
            rejected_burst_window_s: default_rejected_burst_window_s(),
        }
    }

    /// Resolves relative paths against `base` (the config file's directory).
    pub(crate) fn resolve_paths(&mut self, base: &Path) {
        if self.url_file.is_relative() {
            self.url_file = base.join(&self.url_file);
        }
        if let Some(ca) = &mut self.ca_file
            && ca.is_relative()
        {
            *ca = base.join(&*ca);
        }
    }

    /// Checks every value; the error names the key (`alerts.…`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, problem: String| {
            Err(ConfigError::invalid(format!("alerts.{key}"), problem))
        };
        if self.url_file.as_os_str().is_empty() {
            return bad("url_file", "must not be empty".into());
        }
        if self
            .ca_file
            .as_ref()
            .is_some_and(|c| c.as_os_str().is_empty())
        {
            return bad("ca_file", "must not be empty when set".into());
        }
        let ranges: [(&str, u64, u64, u64); 11] = [
            ("queue_capacity", self.queue_capacity as u64, 1, 1_000_000),
            ("timeout_ms", self.timeout_ms, 10, 600_000),
            ("max_attempts", u64::from(self.max_attempts), 1, 100),
            ("backoff_initial_ms", self.backoff_initial_ms, 1, 3_600_000),
            ("backoff_max_ms", self.backoff_max_ms, 1, 86_400_000),
            ("flush_timeout_ms", self.flush_timeout_ms, 0, 600_000),
            ("dedup_window_s", self.dedup_window_s, 0, 7 * 86_400),
            (
                "max_per_kind_per_window",
                u64::from(self.max_per_kind_per_window),
                1,
                10_000,
            ),
            ("cert_expiry_days", self.cert_expiry_days, 1, 3650),
            (
                "cert_check_interval_s",
                self.cert_check_interval_s,
                1,
                7 * 86_400,
            ),
            (
                "rejected_burst_window_s",
                self.rejected_burst_window_s,
                1,
                86_400,
            ),
        ];
        for (key, value, min, max) in ranges {
            if !(min..=max).contains(&value) {
                return bad(key, format!("must be in {min}..={max} (got {value})"));
            }
        }
        if !(2..=100_000).contains(&self.rejected_burst_count) {
            return bad(
                "rejected_burst_count",
                format!("must be in 2..=100000 (got {})", self.rejected_burst_count),
            );
        }
        if self.backoff_max_ms < self.backoff_initial_ms {
            return bad(
                "backoff_max_ms",
                format!(
                    "must be at least backoff_initial_ms ({} < {})",
                    self.backoff_max_ms, self.backoff_initial_ms
                ),
            );
        }
        let f = self.budget_nearly_spent_fraction;
        if !(f > 0.0 && f < 1.0) {
            return bad(
                "budget_nearly_spent_fraction",
                format!("must be in (0, 1) (got {f})"),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CoordinatorConfig;

    const MINIMAL: &str = "admins = [\"ops\"]\n";

    fn parse(alerts: &str) -> Result<CoordinatorConfig, ConfigError> {
        CoordinatorConfig::from_toml_str(&format!("{MINIMAL}\n[alerts]\n{alerts}\n"))
    }

    #[test]
    fn absent_means_off_and_the_url_file_is_required() {
        assert!(
            CoordinatorConfig::from_toml_str(MINIMAL)
                .unwrap()
                .alerts
                .is_none()
        );
        let e = parse("format = \"slack\"").unwrap_err();
        assert!(e.to_string().contains("url_file"), "{e}");
        let c = parse("url_file = \"hook.url\"").unwrap();
        assert_eq!(c.alerts.unwrap(), AlertsConfig::with_url_file("hook.url"));
    }

    #[test]
    fn unknown_keys_and_formats_are_refused() {
        let e = parse("url_file = \"h\"\nurl = \"https://x\"").unwrap_err();
        assert!(e.to_string().contains("unknown field `url`"), "{e}");
        let e = parse("url_file = \"h\"\nformat = \"teams\"").unwrap_err();
        assert!(e.to_string().contains("teams"), "{e}");
        let c = parse("url_file = \"h\"\nformat = \"slack\"").unwrap();
        assert_eq!(c.alerts.unwrap().format, AlertFormat::Slack);
    }

    #[test]
    fn out_of_range_values_name_their_key() {
        for (line, key) in [
            ("queue_capacity = 0", "alerts.queue_capacity"),
            ("max_attempts = 0", "alerts.max_attempts"),
            (
                "budget_nearly_spent_fraction = 1.0",
                "alerts.budget_nearly_spent_fraction",
            ),
            (
                "budget_nearly_spent_fraction = nan",
                "alerts.budget_nearly_spent_fraction",
            ),
            (
                "backoff_initial_ms = 5000\nbackoff_max_ms = 10",
                "alerts.backoff_max_ms",
            ),
            ("rejected_burst_count = 1", "alerts.rejected_burst_count"),
            ("cert_expiry_days = 0", "alerts.cert_expiry_days"),
            ("url_file = \"\"", "alerts.url_file"),
        ] {
            let text = if line.starts_with("url_file") {
                line.to_owned()
            } else {
                format!("url_file = \"h\"\n{line}")
            };
            let e = parse(&text).unwrap_err();
            assert_eq!(e.key(), Some(key), "{line}: {e}");
        }
    }

    /// Uncommenting the example's `[alerts]` block gives exactly the
    /// defaults, and every key of the table is in the block.
    #[test]
    fn the_example_alerts_section_states_the_defaults() {
        let example = include_str!("../../coordinator.example.toml");
        let start = example.find("# [alerts]").unwrap();
        let end = start + example[start..].find("\n\n").unwrap();
        let block: String = example[start..end]
            .lines()
            .filter(|l| !l.starts_with("# #"))
            .map(|l| format!("{}\n", l.strip_prefix("# ").unwrap_or(l)))
            .collect();
        let c = CoordinatorConfig::from_toml_str(&format!("{MINIMAL}\n{block}")).unwrap();
        let d = AlertsConfig::with_url_file("alerts-webhook.url");
        assert_eq!(c.alerts.unwrap(), d);
        let keys = toml::to_string(&d).unwrap();
        for key in keys.lines().filter_map(|l| l.split(" = ").next()) {
            assert!(
                example[start..end].contains(&format!("{key} = ")),
                "the example does not list alerts.{key}"
            );
        }
    }

    #[test]
    fn relative_paths_follow_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(
            &p,
            format!("{MINIMAL}[alerts]\nurl_file = \"hook.url\"\nca_file = \"ca.pem\"\n"),
        )
        .unwrap();
        let a = CoordinatorConfig::load(&p).unwrap().alerts.unwrap();
        assert_eq!(a.url_file, dir.path().join("hook.url"));
        assert_eq!(a.ca_file.unwrap(), dir.path().join("ca.pem"));
    }
}
