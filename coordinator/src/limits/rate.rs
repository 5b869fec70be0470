//! The `[rate_limits]` table: per-identity token buckets per call class,
//! and the audit-row budget (used by [`crate::ratelimit`]).

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

type CResult<T = ()> = Result<T, ConfigError>;

fn yes() -> bool {
    true
}

/// Per-identity rate limits: one token bucket per authenticated identity
/// (tenant + client from the client certificate, or admin name) and per
/// call class. A call over its bucket is refused with `RESOURCE_EXHAUSTED`
/// and a retry-after hint; nothing accepted is lost. The defaults are far
/// above what a client following the coordinator's `retry_after_ms` sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitsConfig {
    /// Enforce the limits. Default `true`.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Sustained `Register` calls per identity per minute. Default 60.
    #[serde(default = "default_register_per_minute")]
    pub register_per_minute: f64,
    /// `Register` calls an idle identity may make at once. Default 20.
    #[serde(default = "default_register_burst")]
    pub register_burst: u32,
    /// Sustained `GetTask` polls per identity per `poll_interval_ms` (the
    /// interval the coordinator tells clients to poll at). Default 4.
    #[serde(default = "default_get_task_per_poll_interval")]
    pub get_task_per_poll_interval: f64,
    /// `GetTask` polls an idle identity may make at once. Default 60.
    #[serde(default = "default_burst")]
    pub get_task_burst: u32,
    /// Sustained `GetModel` downloads per identity per minute. Default 600.
    #[serde(default = "default_per_minute")]
    pub get_model_per_minute: f64,
    /// `GetModel` downloads an idle identity may start at once. Default 60.
    #[serde(default = "default_burst")]
    pub get_model_burst: u32,
    /// Sustained `SubmitUpdate` attempts per identity per minute. Default 600.
    #[serde(default = "default_per_minute")]
    pub submit_update_per_minute: f64,
    /// `SubmitUpdate` attempts an idle identity may start at once. Default 60.
    #[serde(default = "default_burst")]
    pub submit_update_burst: u32,
    /// Sustained Admin-service calls per admin identity per minute (admins
    /// have their own bucket). Default 6000.
    #[serde(default = "default_admin_per_minute")]
    pub admin_per_minute: f64,
    /// Admin-service calls an idle admin may make at once. Default 600.
    #[serde(default = "default_admin_burst")]
    pub admin_burst: u32,
    /// Sustained `grpc.health.v1` and server-reflection calls per identity
    /// per minute. Default 120.
    #[serde(default = "default_health_per_minute")]
    pub health_per_minute: f64,
    /// Health and reflection calls an idle identity may make at once. Default 20.
    #[serde(default = "default_health_burst")]
    pub health_burst: u32,
    /// Sustained calls per minute a revoked (or, outside the Coordinator
    /// service, quarantined) identity gets refused before its connection is
    /// closed instead. Default 6.
    #[serde(default = "default_refused_per_minute")]
    pub refused_per_minute: f64,
    /// Refused calls an idle revoked or quarantined identity gets answered
    /// at once. Default 10.
    #[serde(default = "default_refused_burst")]
    pub refused_burst: u32,
    /// Audit events one identity may cause per hour (its rejections,
    /// refused Admin calls, rate-limit notices); past it they are counted,
    /// not stored, and its calls that may store one (`Register`,
    /// `SubmitUpdate`, `Admin`) get `RESOURCE_EXHAUSTED` with `retry-after-ms`
    /// until a row is free again. 0 = unlimited. Default 60.
    #[serde(default = "default_audit_rows_per_hour")]
    pub audit_rows_per_hour: u32,
    /// At most one `rate_limited` audit event per identity and call class
    /// in this window, in ms (every refusal is still counted in the
    /// metrics). Default 60000.
    #[serde(default = "default_audit_window_ms")]
    pub audit_window_ms: u64,
}

fn default_register_per_minute() -> f64 {
    60.0
}
fn default_register_burst() -> u32 {
    20
}
fn default_get_task_per_poll_interval() -> f64 {
    4.0
}
fn default_per_minute() -> f64 {
    600.0
}
fn default_burst() -> u32 {
    60
}
fn default_admin_per_minute() -> f64 {
    6000.0
}
fn default_admin_burst() -> u32 {
    600
}
fn default_audit_window_ms() -> u64 {
    60_000
}
fn default_health_per_minute() -> f64 {
    120.0
}
fn default_health_burst() -> u32 {
    20
}
fn default_refused_per_minute() -> f64 {
    6.0
}
fn default_refused_burst() -> u32 {
    10
}
fn default_audit_rows_per_hour() -> u32 {
    60
}

impl Default for RateLimitsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            register_per_minute: default_register_per_minute(),
            register_burst: default_register_burst(),
            get_task_per_poll_interval: default_get_task_per_poll_interval(),
            get_task_burst: default_burst(),
            get_model_per_minute: default_per_minute(),
            get_model_burst: default_burst(),
            submit_update_per_minute: default_per_minute(),
            submit_update_burst: default_burst(),
            admin_per_minute: default_admin_per_minute(),
            admin_burst: default_admin_burst(),
            health_per_minute: default_health_per_minute(),
            health_burst: default_health_burst(),
            refused_per_minute: default_refused_per_minute(),
            refused_burst: default_refused_burst(),
            audit_rows_per_hour: default_audit_rows_per_hour(),
            audit_window_ms: default_audit_window_ms(),
        }
    }
}

impl RateLimitsConfig {
    pub(crate) fn validate(&self) -> CResult {
        for (key, rate) in [
            ("register_per_minute", self.register_per_minute),
            (
                "get_task_per_poll_interval",
                self.get_task_per_poll_interval,
            ),
            ("get_model_per_minute", self.get_model_per_minute),
            ("submit_update_per_minute", self.submit_update_per_minute),
            ("admin_per_minute", self.admin_per_minute),
            ("health_per_minute", self.health_per_minute),
            ("refused_per_minute", self.refused_per_minute),
        ] {
            if !(rate.is_finite() && (0.001..=1e7).contains(&rate)) {
                return Err(ConfigError::invalid(
                    format!("rate_limits.{key}"),
                    format!("must be in 0.001..=10000000 (got {rate})"),
                ));
            }
        }
        for (key, burst) in [
            ("register_burst", self.register_burst),
            ("get_task_burst", self.get_task_burst),
            ("get_model_burst", self.get_model_burst),
            ("submit_update_burst", self.submit_update_burst),
            ("admin_burst", self.admin_burst),
            ("health_burst", self.health_burst),
            ("refused_burst", self.refused_burst),
        ] {
            if burst == 0 {
                return Err(ConfigError::invalid(
                    format!("rate_limits.{key}"),
                    "must be at least 1",
                ));
            }
        }
        if !(1_000..=86_400_000).contains(&self.audit_window_ms) {
            return Err(ConfigError::invalid(
                "rate_limits.audit_window_ms",
                format!("must be in 1000..=86400000 (got {})", self.audit_window_ms),
            ));
        }
        Ok(())
    }
}
