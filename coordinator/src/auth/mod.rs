//! OAuth2 / OIDC bearer tokens on top of mutual TLS (`[auth.tokens]`).
//!
//! mTLS stays mandatory: a call first needs a certificate from the platform
//! CA. With `[auth.tokens]` configured, every call to the `Coordinator` and
//! `Admin` services must also carry `authorization: Bearer <JWT>`, checked
//! in the gate ([`crate::gate`]) before the service sees the call:
//!
//! 1. the metadata is bounded (`max_token_bytes`) and well-formed;
//! 2. the JOSE header's `alg` is on the allow-list (never `none` or `HS*`)
//!    and its `kid` names a key of the JWKS ([`source`]: file or HTTPS,
//!    refreshed, refetched on an unknown `kid`, rate-limited);
//! 3. `jsonwebtoken` verifies the signature, `iss`, `aud`, `exp` and `nbf`
//!    (with the clock skew);
//! 4. the subject claim equals the certificate's SPIFFE identity, the scope
//!    claim holds the call's scope ([`scope`]) and admin writes carry MFA.
//!
//! Header fields that point elsewhere (`jku`, `x5u`, an embedded `jwk`) are
//! ignored: keys come only from the configured JWKS. Refusals map to
//! statuses in one place ([`crate::error`]); the gate counts and audits them.

pub mod config;
mod error;
pub(crate) mod fetch;
mod keys;
pub mod mint;
pub(crate) mod scope;
mod source;
mod verify;

use fedsec_proto::tls::PeerIdentity;

pub use config::{AuthConfig, ScopeNames, TokensConfig};
pub use error::TokenError;

use crate::config::ConfigError;
use keys::Lookup;
use scope::CallKind;
use source::JwksSource;
use verify::Policy;

/// The token check of a running coordinator.
#[derive(Debug)]
pub(crate) struct TokenAuth {
    policy: Policy,
    source: JwksSource,
}

impl TokenAuth {
    /// Validates the configuration and loads the JWKS.
    pub(crate) async fn load(c: &TokensConfig) -> Result<Self, ConfigError> {
        c.validate()?;
        let policy = Policy::new(c)?;
        let source = JwksSource::load(c, policy.algorithms.clone()).await?;
        Ok(Self { policy, source })
    }

    /// Whether the caller with certificate `identity` may make the call at
    /// `path` with this `authorization` metadata.
    pub(crate) async fn check(
        &self,
        identity: &PeerIdentity,
        path: &str,
        authorization: Option<&http::HeaderValue>,
    ) -> Result<(), TokenError> {
        let kind = scope::classify(path);
        if kind == CallKind::Open {
            return Ok(());
        }
        let p = &self.policy;
        let token = verify::bearer(authorization, p)?;
        let (alg, kid) = verify::peek(token, p)?;
        let mut keys = self.source.keys().await?;
        if let (Lookup::UnknownKid, Some(kid)) = (keys.find(kid.as_deref(), alg), kid.as_deref()) {
            keys = self.source.refetch_for(kid).await;
        }
        let key = match keys.find(kid.as_deref(), alg) {
            Lookup::Found(k) => k,
            Lookup::UnknownKid => {
                return Err(TokenError::Invalid(
                    "signed by a key (kid) the JWKS does not have".into(),
                ));
            }
            Lookup::WrongAlgorithm => {
                return Err(TokenError::Invalid(
                    "the key named by kid cannot verify this algorithm".into(),
                ));
            }
            Lookup::Ambiguous(n) => {
                return Err(TokenError::Invalid(format!(
                    "no kid in the header, and {n} keys of the JWKS fit its algorithm"
                )));
            }
        };
        let claims = verify::verify(token, alg, key, p)?;
        verify::authorize(&claims, &identity.to_uri(), kind, scope::method_of(path), p)
    }
}
