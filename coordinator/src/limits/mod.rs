//! The `[limits]` and `[rate_limits]` tables of the coordinator's
//! configuration: every bound one identity or one connection is held to,
//! with its default, its valid range and its validation (errors name the
//! key, e.g. `limits.max_downloads_per_identity: must be in 1..=1000000`).
//! Re-exported from [`crate::config`].
//!
//! What each bound protects and how it is answered is in the crate README
//! ("Hostile clients: every bound"); the same numbers are in the `.proto`
//! comments where a client can see them.

mod rate;

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

pub use rate::RateLimitsConfig;

type CResult<T = ()> = Result<T, ConfigError>;

/// Resource limits: decoding, timeouts, connections, HTTP/2, per-identity
/// shares, the audit log and initial-weight files. Every value is a default
/// an operator may change; `fedsec-coordinator serve --check` validates them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Uploads decoded at the same time, across all jobs. Each holds one
    /// decode buffer of the model's size (4 bytes per parameter); further
    /// uploads wait (HTTP/2 flow control holds their bytes back). Default 8.
    #[serde(default = "default_max_concurrent_uploads")]
    pub max_concurrent_uploads: usize,
    /// Longest silence between two messages of one upload before it is cut
    /// off, in ms (a stalled peer frees its decode slot). Independently, an
    /// upload never outlives its round: it is cut off when the round closes
    /// or its deadline passes. Default 30000.
    #[serde(default = "default_upload_message_timeout_ms")]
    pub upload_message_timeout_ms: u64,
    /// Longest a `GetModel` download may take, in ms. At the deadline the
    /// stream ends with `DEADLINE_EXCEEDED`; a download whose peer stopped
    /// reading is reclaimed by closing its connection 5 s later. Default 300000.
    #[serde(default = "default_download_timeout_ms")]
    pub download_timeout_ms: u64,
    /// Time a peer gets to complete its TLS handshake, in ms. Default 10000.
    #[serde(default = "default_handshake_timeout_ms")]
    pub handshake_timeout_ms: u64,
    /// Connections open or handshaking, in total; more are closed at
    /// accept. Default 16384 (raise the process's `ulimit -n` to match).
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Connections open or handshaking from one source IP address. Default 1024.
    #[serde(default = "default_max_connections_per_address")]
    pub max_connections_per_address: usize,
    /// TLS handshakes in progress, in total. Default 1024.
    #[serde(default = "default_max_pending_handshakes")]
    pub max_pending_handshakes: usize,
    /// TLS handshakes in progress from one source IP address. Default 128.
    #[serde(default = "default_max_pending_handshakes_per_address")]
    pub max_pending_handshakes_per_address: usize,
    /// Open connections of one certificate identity. Default 8.
    #[serde(default = "default_max_connections_per_identity")]
    pub max_connections_per_identity: usize,
    /// Concurrent HTTP/2 streams per connection. Default 64.
    #[serde(default = "default_max_streams")]
    pub max_concurrent_streams_per_connection: u32,
    /// HTTP/2 flow-control window per stream, in bytes: how much an upload
    /// may send before the coordinator reads it. Every upload waiting for a
    /// decode buffer holds about this much memory, so it bounds the
    /// per-client part of the coordinator's memory; larger windows buy some
    /// throughput (see the README). Default 65535 (the HTTP/2 default).
    #[serde(default = "default_window")]
    pub http2_stream_window_bytes: u32,
    /// HTTP/2 flow-control window per connection, in bytes (clients use one
    /// connection each). Default 65535.
    #[serde(default = "default_window")]
    pub http2_connection_window_bytes: u32,
    /// Largest HTTP/2 header list (all request headers and metadata of one
    /// call), in bytes. Default 16384.
    #[serde(default = "default_max_header_list_bytes")]
    pub http2_max_header_list_bytes: u32,
    /// Streams a peer may open and reset before the coordinator accepts
    /// them (rapid-reset protection, CVE-2023-44487); past it the connection
    /// gets GOAWAY. Default 20.
    #[serde(default = "default_max_pending_reset_streams")]
    pub http2_max_pending_reset_streams: usize,
    /// Streams the coordinator may reset because of a peer's protocol errors
    /// before it closes the connection. Default 256.
    #[serde(default = "default_max_local_error_reset_streams")]
    pub http2_max_local_error_reset_streams: usize,
    /// Interval of HTTP/2 keepalive pings to idle peers, in ms. Default 30000.
    #[serde(default = "default_keepalive_interval_ms")]
    pub http2_keepalive_interval_ms: u64,
    /// A peer that does not answer a keepalive ping within this many ms is
    /// disconnected. Default 20000.
    #[serde(default = "default_keepalive_timeout_ms")]
    pub http2_keepalive_timeout_ms: u64,
    /// Concurrent `Register`/`GetTask` calls per identity. Default 8.
    #[serde(default = "default_max_unary_calls_per_identity")]
    pub max_unary_calls_per_identity: u32,
    /// Concurrent `GetModel` downloads per identity. Default 4.
    #[serde(default = "default_max_downloads_per_identity")]
    pub max_downloads_per_identity: u32,
    /// Concurrent `SubmitUpdate` uploads per identity. Default 4.
    #[serde(default = "default_max_uploads_per_identity")]
    pub max_uploads_per_identity: u32,
    /// Concurrent Admin calls per admin identity. Default 16.
    #[serde(default = "default_max_admin_calls_per_identity")]
    pub max_admin_calls_per_identity: u32,
    /// Concurrent health and reflection calls (e.g. health `Watch`
    /// streams) per identity. Default 4.
    #[serde(default = "default_max_other_calls_per_identity")]
    pub max_other_calls_per_identity: u32,
    /// Bytes one identity may have in flight: the decode buffers of its
    /// uploads (4 bytes per parameter) plus the models its downloads are
    /// sending. One transfer larger than this is admitted when the identity
    /// has nothing else in flight. Default 67108864 (64 MiB).
    #[serde(default = "default_max_bytes_in_flight_per_identity")]
    pub max_bytes_in_flight_per_identity: u64,
    /// Audit events kept: older ones beyond this count are deleted (checked
    /// at start and every minute). Default 1000000.
    #[serde(default = "default_audit_max_rows")]
    pub audit_max_rows: u64,
    /// Audit events older than this many days are deleted. Default 90.
    #[serde(default = "default_audit_max_age_days")]
    pub audit_max_age_days: u64,
    /// Rows of the per-round record of who took part (contributions) kept:
    /// the oldest beyond this count are deleted (at start and every
    /// minute). Default 1000000.
    #[serde(default = "default_audit_max_rows")]
    pub contribution_max_rows: u64,
    /// Contributions older than this many days are deleted. Default 90.
    #[serde(default = "default_audit_max_age_days")]
    pub contribution_max_age_days: u64,
    /// Largest `init_weights_path` file read, in bytes (the file must also
    /// be at most 4 bytes per parameter plus 1 MiB). Default 1073741824 (1 GiB).
    #[serde(default = "default_max_init_weights_bytes")]
    pub max_init_weights_bytes: u64,
    /// Tenants that may ever register (revoked ones included: the store
    /// keeps them). A public, enforced ceiling: `Register` of a new tenant
    /// past it is refused (`RESOURCE_EXHAUSTED`, `tenant_capacity`), a store
    /// holding more refuses to start, and the receipts' bound on the `f64`
    /// sum's rounding is sized from it (plus a job's canaries), never from
    /// how many tenants registered, so receipts reveal no count of tenants.
    /// At the default the bound adds 2.2e-4 relative to the clip norm
    /// (2n²·2⁻⁵³; 2.2e-6 at 10⁵, 2.2e-2 at the maximum). Default 1000000.
    #[serde(default = "default_max_tenants")]
    pub max_tenants: u64,
}

fn default_max_concurrent_uploads() -> usize {
    8
}
fn default_upload_message_timeout_ms() -> u64 {
    30_000
}
fn default_download_timeout_ms() -> u64 {
    300_000
}
fn default_handshake_timeout_ms() -> u64 {
    10_000
}
fn default_max_connections() -> usize {
    16_384
}
fn default_max_connections_per_address() -> usize {
    1024
}
fn default_max_pending_handshakes() -> usize {
    1024
}
fn default_max_pending_handshakes_per_address() -> usize {
    128
}
fn default_max_connections_per_identity() -> usize {
    8
}
fn default_max_streams() -> u32 {
    64
}
fn default_window() -> u32 {
    65_535
}
fn default_max_header_list_bytes() -> u32 {
    16_384
}
fn default_max_pending_reset_streams() -> usize {
    20
}
fn default_max_local_error_reset_streams() -> usize {
    256
}
fn default_keepalive_interval_ms() -> u64 {
    30_000
}
fn default_keepalive_timeout_ms() -> u64 {
    20_000
}
fn default_max_unary_calls_per_identity() -> u32 {
    8
}
fn default_max_downloads_per_identity() -> u32 {
    4
}
fn default_max_uploads_per_identity() -> u32 {
    4
}
fn default_max_admin_calls_per_identity() -> u32 {
    16
}
fn default_max_other_calls_per_identity() -> u32 {
    4
}
fn default_max_bytes_in_flight_per_identity() -> u64 {
    64 << 20
}
fn default_audit_max_rows() -> u64 {
    1_000_000
}
fn default_audit_max_age_days() -> u64 {
    90
}
fn default_max_init_weights_bytes() -> u64 {
    1 << 30
}
fn default_max_tenants() -> u64 {
    1_000_000
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_concurrent_uploads: default_max_concurrent_uploads(),
            upload_message_timeout_ms: default_upload_message_timeout_ms(),
            download_timeout_ms: default_download_timeout_ms(),
            handshake_timeout_ms: default_handshake_timeout_ms(),
            max_connections: default_max_connections(),
            max_connections_per_address: default_max_connections_per_address(),
            max_pending_handshakes: default_max_pending_handshakes(),
            max_pending_handshakes_per_address: default_max_pending_handshakes_per_address(),
            max_connections_per_identity: default_max_connections_per_identity(),
            max_concurrent_streams_per_connection: default_max_streams(),
            http2_stream_window_bytes: default_window(),
            http2_connection_window_bytes: default_window(),
            http2_max_header_list_bytes: default_max_header_list_bytes(),
            http2_max_pending_reset_streams: default_max_pending_reset_streams(),
            http2_max_local_error_reset_streams: default_max_local_error_reset_streams(),
            http2_keepalive_interval_ms: default_keepalive_interval_ms(),
            http2_keepalive_timeout_ms: default_keepalive_timeout_ms(),
            max_unary_calls_per_identity: default_max_unary_calls_per_identity(),
            max_downloads_per_identity: default_max_downloads_per_identity(),
            max_uploads_per_identity: default_max_uploads_per_identity(),
            max_admin_calls_per_identity: default_max_admin_calls_per_identity(),
            max_other_calls_per_identity: default_max_other_calls_per_identity(),
            max_bytes_in_flight_per_identity: default_max_bytes_in_flight_per_identity(),
            audit_max_rows: default_audit_max_rows(),
            audit_max_age_days: default_audit_max_age_days(),
            contribution_max_rows: default_audit_max_rows(),
            contribution_max_age_days: default_audit_max_age_days(),
            max_init_weights_bytes: default_max_init_weights_bytes(),
            max_tenants: default_max_tenants(),
        }
    }
}

impl LimitsConfig {
    pub(crate) fn validate(&self) -> CResult {
        let ranges: [(&str, u64, u64, u64); 23] = [
            (
                "max_concurrent_uploads",
                self.max_concurrent_uploads as u64,
                1,
                4096,
            ),
            (
                "upload_message_timeout_ms",
                self.upload_message_timeout_ms,
                100,
                86_400_000,
            ),
            (
                "download_timeout_ms",
                self.download_timeout_ms,
                1000,
                86_400_000,
            ),
            (
                "handshake_timeout_ms",
                self.handshake_timeout_ms,
                100,
                600_000,
            ),
            (
                "max_connections",
                self.max_connections as u64,
                1,
                10_000_000,
            ),
            (
                "max_connections_per_address",
                self.max_connections_per_address as u64,
                1,
                10_000_000,
            ),
            (
                "max_pending_handshakes",
                self.max_pending_handshakes as u64,
                1,
                10_000_000,
            ),
            (
                "max_pending_handshakes_per_address",
                self.max_pending_handshakes_per_address as u64,
                1,
                10_000_000,
            ),
            (
                "max_connections_per_identity",
                self.max_connections_per_identity as u64,
                1,
                1_000_000,
            ),
            (
                "max_concurrent_streams_per_connection",
                u64::from(self.max_concurrent_streams_per_connection),
                1,
                1_000_000,
            ),
            (
                "http2_max_header_list_bytes",
                u64::from(self.http2_max_header_list_bytes),
                1024,
                16 << 20,
            ),
            (
                "http2_max_pending_reset_streams",
                self.http2_max_pending_reset_streams as u64,
                1,
                1_000_000,
            ),
            (
                "http2_max_local_error_reset_streams",
                self.http2_max_local_error_reset_streams as u64,
                1,
                1_000_000,
            ),
            (
                "http2_keepalive_interval_ms",
                self.http2_keepalive_interval_ms,
                1000,
                86_400_000,
            ),
            (
                "http2_keepalive_timeout_ms",
                self.http2_keepalive_timeout_ms,
                1000,
                86_400_000,
            ),
            (
                "max_unary_calls_per_identity",
                u64::from(self.max_unary_calls_per_identity),
                1,
                1_000_000,
            ),
            (
                "max_downloads_per_identity",
                u64::from(self.max_downloads_per_identity),
                1,
                1_000_000,
            ),
            (
                "max_uploads_per_identity",
                u64::from(self.max_uploads_per_identity),
                1,
                1_000_000,
            ),
            (
                "max_admin_calls_per_identity",
                u64::from(self.max_admin_calls_per_identity),
                1,
                1_000_000,
            ),
            (
                "max_other_calls_per_identity",
                u64::from(self.max_other_calls_per_identity),
                1,
                1_000_000,
            ),
            ("audit_max_age_days", self.audit_max_age_days, 1, 36_500),
            (
                "contribution_max_age_days",
                self.contribution_max_age_days,
                1,
                36_500,
            ),
            // Above 10⁷ the sum-rounding bound would pass 2.2 % of C.
            ("max_tenants", self.max_tenants, 1, 10_000_000),
        ];
        for (key, v, min, max) in ranges {
            if !(min..=max).contains(&v) {
                return Err(ConfigError::invalid(
                    format!("limits.{key}"),
                    format!("must be in {min}..={max} (got {v})"),
                ));
            }
        }
        for (key, v, min) in [
            (
                "max_bytes_in_flight_per_identity",
                self.max_bytes_in_flight_per_identity,
                1 << 20,
            ),
            ("audit_max_rows", self.audit_max_rows, 1000),
            ("contribution_max_rows", self.contribution_max_rows, 1000),
            ("max_init_weights_bytes", self.max_init_weights_bytes, 1024),
        ] {
            if v < min {
                return Err(ConfigError::invalid(
                    format!("limits.{key}"),
                    format!("must be at least {min} (got {v})"),
                ));
            }
        }
        // RFC 9113: windows are at most 2^31 - 1; a connection window cannot
        // be set below the initial 65535; tiny stream windows only stall uploads.
        for (key, v, min) in [
            (
                "http2_stream_window_bytes",
                self.http2_stream_window_bytes,
                16_384,
            ),
            (
                "http2_connection_window_bytes",
                self.http2_connection_window_bytes,
                65_535,
            ),
        ] {
            if !(min..=(1 << 31) - 1).contains(&v) {
                return Err(ConfigError::invalid(
                    format!("limits.{key}"),
                    format!("must be in {min}..=2147483647 (got {v})"),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_of(e: ConfigError) -> String {
        e.key().unwrap_or_default().to_owned()
    }

    #[test]
    fn every_limit_is_validated_and_the_error_names_its_key() {
        assert!(LimitsConfig::default().validate().is_ok());
        assert!(RateLimitsConfig::default().validate().is_ok());
        type Break = fn(&mut LimitsConfig);
        let bad: [(&str, Break); 10] = [
            ("limits.max_downloads_per_identity", |l| {
                l.max_downloads_per_identity = 0
            }),
            ("limits.max_pending_handshakes_per_address", |l| {
                l.max_pending_handshakes_per_address = 0
            }),
            ("limits.download_timeout_ms", |l| l.download_timeout_ms = 10),
            ("limits.http2_max_header_list_bytes", |l| {
                l.http2_max_header_list_bytes = 10
            }),
            ("limits.max_bytes_in_flight_per_identity", |l| {
                l.max_bytes_in_flight_per_identity = 1000
            }),
            ("limits.audit_max_rows", |l| l.audit_max_rows = 10),
            ("limits.http2_stream_window_bytes", |l| {
                l.http2_stream_window_bytes = 100
            }),
            ("limits.max_concurrent_uploads", |l| {
                l.max_concurrent_uploads = 0
            }),
            ("limits.max_tenants", |l| l.max_tenants = 0),
            ("limits.max_tenants", |l| l.max_tenants = 10_000_001),
        ];
        for (key, break_it) in bad {
            let mut l = LimitsConfig::default();
            break_it(&mut l);
            assert_eq!(key_of(l.validate().unwrap_err()), key);
        }
        let r = RateLimitsConfig {
            refused_burst: 0,
            ..Default::default()
        };
        assert_eq!(
            key_of(r.validate().unwrap_err()),
            "rate_limits.refused_burst"
        );
        let r = RateLimitsConfig {
            health_per_minute: 0.0,
            ..Default::default()
        };
        assert_eq!(
            key_of(r.validate().unwrap_err()),
            "rate_limits.health_per_minute"
        );
    }
}
