//! Where the verification keys come from, and how fresh they are kept.
//!
//! A JWKS file or an HTTPS URL, loaded at start (a start without usable
//! keys fails, naming the key), then refreshed:
//!
//! - every `jwks_refresh_s`, on the first call after the interval (no
//!   background task; other calls keep using the current set while one
//!   refresh runs);
//! - when a token names a `kid` the set does not have (the IdP rotated its
//!   keys), at most once per `jwks_min_refetch_s` whatever the number of
//!   such tokens, so forged `kid`s cannot turn into a flood of fetches.
//!
//! A failed refresh keeps the last good set (a warning in the log); after
//! `jwks_max_stale_s` without a successful refresh, calls are refused with
//! `UNAVAILABLE` rather than verified against keys that may have been
//! revoked. A key removed from the JWKS stops verifying at the next refresh.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jsonwebtoken::Algorithm;
use tokio::time::Instant;

use super::config::TokensConfig;
use super::error::TokenError;
use super::fetch::{HttpsUrl, MAX_JWKS_BYTES};
use super::keys::KeySet;
use crate::config::ConfigError;

/// Where the JWKS is read from.
#[derive(Debug)]
enum Origin {
    File(PathBuf),
    Url {
        url: HttpsUrl,
        tls: Arc<rustls::ClientConfig>,
        timeout: Duration,
    },
}

#[derive(Debug)]
struct State {
    keys: Arc<KeySet>,
    last_ok: Instant,
    last_attempt: Instant,
    last_unknown_fetch: Option<Instant>,
}

/// The JWKS in use and its refresh policy.
#[derive(Debug)]
pub(crate) struct JwksSource {
    origin: Origin,
    allowed: Vec<Algorithm>,
    refresh: Duration,
    min_refetch: Duration,
    max_stale: Duration,
    state: Mutex<State>,
    fetching: tokio::sync::Mutex<()>,
}

impl JwksSource {
    /// Loads the configured JWKS; an unusable one is a configuration error.
    pub(crate) async fn load(
        c: &TokensConfig,
        allowed: Vec<Algorithm>,
    ) -> Result<Self, ConfigError> {
        let (origin, key) = match (&c.jwks_file, &c.jwks_url) {
            (Some(f), _) => (Origin::File(f.clone()), "auth.tokens.jwks_file"),
            (None, Some(u)) => {
                let url = HttpsUrl::parse(u)
                    .map_err(|e| ConfigError::invalid("auth.tokens.jwks_url", e))?;
                let ca = match &c.jwks_ca {
                    Some(p) => Some(std::fs::read(p).map_err(|e| {
                        ConfigError::invalid(
                            "auth.tokens.jwks_ca",
                            format!("cannot read {}: {e}", p.display()),
                        )
                    })?),
                    None => None,
                };
                let tls = super::fetch::client_config(ca.as_deref())
                    .map_err(|e| ConfigError::invalid("auth.tokens.jwks_ca", e))?;
                let timeout = Duration::from_millis(c.jwks_timeout_ms);
                (Origin::Url { url, tls, timeout }, "auth.tokens.jwks_url")
            }
            (None, None) => {
                return Err(ConfigError::invalid(
                    "auth.tokens.jwks_file",
                    "one of jwks_file and jwks_url is required",
                ));
            }
        };
        let keys = read(&origin, &allowed)
            .await
            .map_err(|e| ConfigError::invalid(key, e))?;
        if keys.len() == 0 {
            return Err(ConfigError::invalid(
                key,
                format!(
                    "the JWKS has no usable signature key for the accepted algorithms \
                     ({} entries skipped)",
                    keys.skipped
                ),
            ));
        }
        tracing::info!(
            keys = keys.len(),
            skipped = keys.skipped,
            "bearer tokens required: JWKS loaded"
        );
        let now = Instant::now();
        Ok(Self {
            origin,
            allowed,
            refresh: Duration::from_secs(c.jwks_refresh_s),
            min_refetch: Duration::from_secs(c.jwks_min_refetch_s),
            max_stale: Duration::from_secs(c.jwks_max_stale_s),
            state: Mutex::new(State {
                keys: Arc::new(keys),
                last_ok: now,
                last_attempt: now,
                last_unknown_fetch: None,
            }),
            fetching: tokio::sync::Mutex::new(()),
        })
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave it inconsistent
        // (plain assignments), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current keys, refreshed first if the refresh interval has
    /// passed; `KeysUnavailable` once they are older than allowed.
    pub(crate) async fn keys(&self) -> Result<Arc<KeySet>, TokenError> {
        let due = self.state().last_attempt.elapsed() >= self.refresh;
        if due {
            // One refresh at a time; the others go on with the current set.
            if let Ok(_guard) = self.fetching.try_lock()
                && self.state().last_attempt.elapsed() >= self.refresh
            {
                self.fetch("scheduled refresh").await;
            }
        }
        let s = self.state();
        if s.last_ok.elapsed() > self.max_stale {
            return Err(TokenError::KeysUnavailable(format!(
                "its JWKS could not be refreshed for {} s",
                s.last_ok.elapsed().as_secs()
            )));
        }
        Ok(s.keys.clone())
    }

    /// The keys after refetching for an unknown `kid`, unless a refetch
    /// for an unknown `kid` happened less than `jwks_min_refetch_s` ago.
    pub(crate) async fn refetch_for(&self, kid: &str) -> Arc<KeySet> {
        let _guard = self.fetching.lock().await;
        {
            let mut s = self.state();
            if s.keys.has(kid) {
                return s.keys.clone();
            }
            if s.last_unknown_fetch
                .is_some_and(|t| t.elapsed() < self.min_refetch)
            {
                return s.keys.clone();
            }
            s.last_unknown_fetch = Some(Instant::now());
        }
        self.fetch("unknown kid").await;
        self.state().keys.clone()
    }

    /// Fetches and installs the JWKS; a failure keeps the current keys.
    async fn fetch(&self, why: &'static str) {
        let result = read(&self.origin, &self.allowed).await;
        let mut s = self.state();
        s.last_attempt = Instant::now();
        match result {
            Ok(keys) if keys.len() > 0 => {
                tracing::debug!(
                    why,
                    keys = keys.len(),
                    skipped = keys.skipped,
                    "JWKS refreshed"
                );
                s.keys = Arc::new(keys);
                s.last_ok = Instant::now();
            }
            Ok(keys) => tracing::warn!(
                why,
                skipped = keys.skipped,
                "JWKS refresh found no usable key; keeping the previous keys"
            ),
            Err(e) => tracing::warn!(
                why,
                error = %e,
                "JWKS refresh failed; keeping the previous keys"
            ),
        }
    }
}

/// Reads and parses the JWKS once.
async fn read(origin: &Origin, allowed: &[Algorithm]) -> Result<KeySet, String> {
    let bytes = match origin {
        Origin::File(path) => {
            let bytes = tokio::fs::read(path)
                .await
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            if bytes.len() > MAX_JWKS_BYTES {
                return Err(format!(
                    "{} has {} bytes; a JWKS may have at most {MAX_JWKS_BYTES}",
                    path.display(),
                    bytes.len()
                ));
            }
            bytes
        }
        Origin::Url { url, tls, timeout } => super::fetch::get(url, tls.clone(), *timeout)
            .await
            .map_err(|e| format!("cannot fetch the JWKS from {url}: {e}"))?,
    };
    KeySet::parse(&bytes, allowed)
}
