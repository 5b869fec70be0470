//! The `[auth.tokens]` table: OAuth2 / OIDC bearer tokens on top of mTLS.
//!
//! Absent (the default), the coordinator behaves as without tokens: the
//! client certificate alone authenticates a caller. Present, every call to
//! the `Coordinator` and `Admin` services must also carry a JWT access token
//! whose signature verifies against the configured JWKS, whose issuer,
//! audience and validity window check out, whose subject is the caller's
//! certificate identity, and whose scopes grant the call. Validation errors
//! name the key (`auth.tokens.algorithms[1]: ...`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;

type CResult<T = ()> = Result<T, ConfigError>;

/// The `[auth]` table.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Bearer tokens; absent: off (mTLS alone).
    #[serde(default)]
    pub tokens: Option<TokensConfig>,
}

/// The `[auth.tokens]` table. Defaults are documented per key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokensConfig {
    /// The issuer (`iss`) tokens must carry, exactly, e.g.
    /// `https://idp.example.com/realms/fedsec`. Required.
    pub issuer: String,
    /// The audience tokens must be issued for (one of the token's `aud`
    /// values), e.g. `fedsec-coordinator`. Required.
    pub audience: String,
    /// A JWKS file (`{"keys": [...]}`), re-read when it changes (checked
    /// every `jwks_refresh_s` and on an unknown `kid`). One of `jwks_file`
    /// and `jwks_url` is required.
    #[serde(default)]
    pub jwks_file: Option<PathBuf>,
    /// An `https://` URL serving the JWKS (the IdP's `jwks_uri`). Fetched at
    /// start, then every `jwks_refresh_s`, and again when a token names an
    /// unknown `kid` (at most once per `jwks_min_refetch_s`).
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// PEM file of the CA(s) the JWKS server's certificate must chain to.
    /// Default none: Mozilla's root certificates (`webpki-roots`).
    #[serde(default)]
    pub jwks_ca: Option<PathBuf>,
    /// Seconds between JWKS refreshes. Default 300.
    #[serde(default = "default_refresh_s")]
    pub jwks_refresh_s: u64,
    /// Least seconds between two refetches caused by unknown `kid`s (key
    /// rotation), so forged `kid`s cannot make the coordinator hammer the
    /// IdP. Default 30.
    #[serde(default = "default_min_refetch_s")]
    pub jwks_min_refetch_s: u64,
    /// How long the last good JWKS stays in use while refreshes fail, in
    /// seconds; past it calls are refused with `UNAVAILABLE`. Default 86400.
    #[serde(default = "default_max_stale_s")]
    pub jwks_max_stale_s: u64,
    /// Timeout of one JWKS fetch (connect, TLS, response), in ms. Default 5000.
    #[serde(default = "default_fetch_timeout_ms")]
    pub jwks_timeout_ms: u64,
    /// Accepted signature algorithms (JOSE names). Default
    /// `["RS256", "PS256", "ES256", "ES384", "EdDSA"]`. `none` and the
    /// shared-secret `HS*` algorithms are refused: a public JWKS cannot
    /// verify them, and accepting them is the classic key-confusion attack.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds. Default 60.
    #[serde(default = "default_clock_skew_s")]
    pub clock_skew_s: u64,
    /// The claim that must equal the caller's certificate identity
    /// (`spiffe://fedsec/tenant/<t>/client/<c>` or `spiffe://fedsec/admin/<name>`).
    /// Default `sub`.
    #[serde(default = "default_subject_claim")]
    pub subject_claim: String,
    /// The claim holding the granted scopes: a space-separated string (OAuth2
    /// `scope`) or an array of strings (e.g. Auth0's `permissions`). Default `scope`.
    #[serde(default = "default_scope_claim")]
    pub scope_claim: String,
    /// The scope names of the IdP that grant each kind of call.
    #[serde(default)]
    pub scopes: ScopeNames,
    /// Admin calls that change state (create, pause, resume jobs; quarantine,
    /// release, revoke clients; roll back models) need a token from a
    /// multi-factor login (`amr` claim). Default `true`.
    #[serde(default = "yes")]
    pub require_mfa_for_admin_write: bool,
    /// `amr` values that count as multi-factor. Default `["mfa", "otp"]`.
    #[serde(default = "default_mfa_amr")]
    pub mfa_amr: Vec<String>,
    /// Largest accepted `authorization` metadata value, in bytes; larger
    /// ones are refused before any parsing. Default 8192.
    #[serde(default = "default_max_token_bytes")]
    pub max_token_bytes: usize,
}

/// Scope names mapped to the three kinds of calls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeNames {
    /// Scope granting the `Coordinator` service (clients). Default `fedsec.client`.
    #[serde(default = "default_client_scope")]
    pub client: String,
    /// Scope granting the Admin read calls (get/list jobs, clients, ledger,
    /// models, audit events; export models). Default `fedsec.admin.read`.
    #[serde(default = "default_admin_read_scope")]
    pub admin_read: String,
    /// Scope granting the Admin calls that change state. Default `fedsec.admin.write`.
    #[serde(default = "default_admin_write_scope")]
    pub admin_write: String,
}

impl Default for ScopeNames {
    fn default() -> Self {
        Self {
            client: default_client_scope(),
            admin_read: default_admin_read_scope(),
            admin_write: default_admin_write_scope(),
        }
    }
}

fn yes() -> bool {
    true
}
fn default_refresh_s() -> u64 {
    300
}
fn default_min_refetch_s() -> u64 {
    30
}
fn default_max_stale_s() -> u64 {
    86_400
}
fn default_fetch_timeout_ms() -> u64 {
    5_000
}
fn default_algorithms() -> Vec<String> {
    ["RS256", "PS256", "ES256", "ES384", "EdDSA"]
        .map(String::from)
        .to_vec()
}
fn default_clock_skew_s() -> u64 {
    60
}
fn default_subject_claim() -> String {
    "sub".into()
}
fn default_scope_claim() -> String {
    "scope".into()
}
fn default_mfa_amr() -> Vec<String> {
    vec!["mfa".into(), "otp".into()]
}
fn default_max_token_bytes() -> usize {
    8192
}
fn default_client_scope() -> String {
    "fedsec.client".into()
}
fn default_admin_read_scope() -> String {
    "fedsec.admin.read".into()
}
fn default_admin_write_scope() -> String {
    "fedsec.admin.write".into()
}

impl TokensConfig {
    /// A configuration with the given issuer, audience and JWKS file, every
    /// other key at its default.
    pub fn with_jwks_file(
        issuer: impl Into<String>,
        audience: impl Into<String>,
        jwks_file: impl Into<PathBuf>,
    ) -> Self {
        Self {
            issuer: issuer.into(),
            audience: audience.into(),
            jwks_file: Some(jwks_file.into()),
            jwks_url: None,
            jwks_ca: None,
            jwks_refresh_s: default_refresh_s(),
            jwks_min_refetch_s: default_min_refetch_s(),
            jwks_max_stale_s: default_max_stale_s(),
            jwks_timeout_ms: default_fetch_timeout_ms(),
            algorithms: default_algorithms(),
            clock_skew_s: default_clock_skew_s(),
            subject_claim: default_subject_claim(),
            scope_claim: default_scope_claim(),
            scopes: ScopeNames::default(),
            require_mfa_for_admin_write: true,
            mfa_amr: default_mfa_amr(),
            max_token_bytes: default_max_token_bytes(),
        }
    }

    /// The accepted algorithms, parsed (validated by [`Self::validate`]).
    pub(crate) fn parsed_algorithms(&self) -> CResult<Vec<jsonwebtoken::Algorithm>> {
        use jsonwebtoken::{Algorithm, AlgorithmFamily};
        let mut out = Vec::with_capacity(self.algorithms.len());
        for (i, name) in self.algorithms.iter().enumerate() {
            let key = format!("auth.tokens.algorithms[{i}]");
            let alg: Algorithm = name.parse().map_err(|_| {
                ConfigError::invalid(
                    &key,
                    format!(
                        "{name:?} is not an accepted JOSE signature algorithm \
                         (RS256/384/512, PS256/384/512, ES256, ES384, EdDSA; never \"none\")"
                    ),
                )
            })?;
            if alg.family() == AlgorithmFamily::Hmac {
                return Err(ConfigError::invalid(
                    key,
                    format!(
                        "{name} is a shared-secret algorithm: a public JWKS cannot verify it, and \
                         accepting it lets anyone who has the public key forge tokens"
                    ),
                ));
            }
            if !out.contains(&alg) {
                out.push(alg);
            }
        }
        Ok(out)
    }

    /// Checks every value; the error names the first offending key.
    pub fn validate(&self) -> CResult {
        let k = |s: &str| format!("auth.tokens.{s}");
        if self.issuer.trim().is_empty() {
            return Err(ConfigError::invalid(k("issuer"), "must not be empty"));
        }
        if self.audience.trim().is_empty() {
            return Err(ConfigError::invalid(k("audience"), "must not be empty"));
        }
        match (&self.jwks_file, &self.jwks_url) {
            (None, None) => {
                return Err(ConfigError::invalid(
                    k("jwks_file"),
                    "one of jwks_file and jwks_url is required",
                ));
            }
            (Some(_), Some(_)) => {
                return Err(ConfigError::invalid(
                    k("jwks_url"),
                    "give jwks_file or jwks_url, not both",
                ));
            }
            (Some(f), None) if f.as_os_str().is_empty() => {
                return Err(ConfigError::invalid(k("jwks_file"), "must not be empty"));
            }
            (None, Some(url)) => {
                crate::auth::fetch::HttpsUrl::parse(url)
                    .map_err(|e| ConfigError::invalid(k("jwks_url"), e))?;
            }
            _ => {}
        }
        if self.jwks_ca.is_some() && self.jwks_url.is_none() {
            return Err(ConfigError::invalid(
                k("jwks_ca"),
                "only used with jwks_url (remove it, or fetch the JWKS over HTTPS)",
            ));
        }
        let ranges: [(&str, u64, u64, u64); 6] = [
            ("jwks_refresh_s", self.jwks_refresh_s, 1, 86_400),
            ("jwks_min_refetch_s", self.jwks_min_refetch_s, 0, 86_400),
            ("jwks_max_stale_s", self.jwks_max_stale_s, 1, 30 * 86_400),
            ("jwks_timeout_ms", self.jwks_timeout_ms, 100, 120_000),
            ("clock_skew_s", self.clock_skew_s, 0, 600),
            ("max_token_bytes", self.max_token_bytes as u64, 256, 65_536),
        ];
        for (name, v, lo, hi) in ranges {
            if !(lo..=hi).contains(&v) {
                return Err(ConfigError::invalid(
                    k(name),
                    format!("must be in {lo}..={hi} (got {v})"),
                ));
            }
        }
        if self.algorithms.is_empty() {
            return Err(ConfigError::invalid(
                k("algorithms"),
                "must name at least one algorithm",
            ));
        }
        self.parsed_algorithms()?;
        for (name, v) in [
            ("subject_claim", &self.subject_claim),
            ("scope_claim", &self.scope_claim),
            ("scopes.client", &self.scopes.client),
            ("scopes.admin_read", &self.scopes.admin_read),
            ("scopes.admin_write", &self.scopes.admin_write),
        ] {
            if v.is_empty() || v.chars().any(char::is_whitespace) {
                return Err(ConfigError::invalid(
                    k(name),
                    format!("must be a non-empty name without spaces (got {v:?})"),
                ));
            }
        }
        if self.require_mfa_for_admin_write && self.mfa_amr.is_empty() {
            return Err(ConfigError::invalid(
                k("mfa_amr"),
                "must list at least one amr value while require_mfa_for_admin_write is true",
            ));
        }
        Ok(())
    }

    /// Resolves relative paths against the config file's directory.
    pub(crate) fn resolve_paths(&mut self, base: &std::path::Path) {
        for p in [&mut self.jwks_file, &mut self.jwks_ca]
            .into_iter()
            .flatten()
        {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> TokensConfig {
        TokensConfig::with_jwks_file("https://idp", "fedsec", "jwks.json")
    }

    #[test]
    fn defaults_validate_and_bad_values_name_their_key() {
        base().validate().unwrap();
        type Tweak = Box<dyn Fn(&mut TokensConfig)>;
        let cases: Vec<(Tweak, &str)> = vec![
            (Box::new(|c| c.issuer.clear()), "auth.tokens.issuer"),
            (
                Box::new(|c| c.audience = " ".into()),
                "auth.tokens.audience",
            ),
            (Box::new(|c| c.jwks_file = None), "auth.tokens.jwks_file"),
            (
                Box::new(|c| c.jwks_url = Some("https://idp/certs".into())),
                "auth.tokens.jwks_url",
            ),
            (
                Box::new(|c| {
                    c.jwks_file = None;
                    c.jwks_url = Some("http://idp/certs".into());
                }),
                "auth.tokens.jwks_url",
            ),
            (
                Box::new(|c| c.jwks_ca = Some("ca.pem".into())),
                "auth.tokens.jwks_ca",
            ),
            (
                Box::new(|c| c.algorithms = vec!["RS256".into(), "HS256".into()]),
                "auth.tokens.algorithms[1]",
            ),
            (
                Box::new(|c| c.algorithms = vec!["none".into()]),
                "auth.tokens.algorithms[0]",
            ),
            (Box::new(|c| c.algorithms.clear()), "auth.tokens.algorithms"),
            (
                Box::new(|c| c.clock_skew_s = 601),
                "auth.tokens.clock_skew_s",
            ),
            (
                Box::new(|c| c.max_token_bytes = 10),
                "auth.tokens.max_token_bytes",
            ),
            (
                Box::new(|c| c.scopes.admin_write = "a b".into()),
                "auth.tokens.scopes.admin_write",
            ),
            (Box::new(|c| c.mfa_amr.clear()), "auth.tokens.mfa_amr"),
        ];
        for (tweak, key) in cases {
            let mut c = base();
            tweak(&mut c);
            let e = c.validate().unwrap_err();
            assert_eq!(e.key(), Some(key), "{e}");
        }
        let mut c = base();
        c.mfa_amr.clear();
        c.require_mfa_for_admin_write = false;
        c.validate().unwrap();
    }

    #[test]
    fn unknown_keys_are_errors() {
        let e = toml::from_str::<AuthConfig>(
            "[tokens]\nissuer = \"i\"\naudience = \"a\"\njwks_file = \"j\"\nscope = \"x\"\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("scope"), "{e}");
        let c: AuthConfig = toml::from_str(
            "[tokens]\nissuer = \"https://idp\"\naudience = \"fedsec\"\njwks_file = \"jwks.json\"\n",
        )
        .unwrap();
        assert_eq!(c.tokens.unwrap(), base());
    }
}
