//! Minting tokens from a local key: the embedded default for deployments
//! without an IdP, and what tests use (`fedsec-coordinator tokens keygen`
//! and `tokens issue`).
//!
//! The key is an ECDSA P-256 key (ES256) in a PKCS#8 PEM file of mode 0600;
//! its public half goes into a JWKS file the coordinator's
//! `auth.tokens.jwks_file` names. Its `kid` is the key's RFC 7638 SHA-256
//! thumbprint, so rotating means adding a new key to the JWKS, issuing with
//! it, and removing the old key once its tokens have expired.

use std::path::Path;
use std::time::Duration;

use fedsec_proto::private_file::{self, Existing};
use jsonwebtoken::jwk::{Jwk, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Longest lifetime `tokens issue` grants: tokens are meant to be short-lived.
pub const MAX_TTL: Duration = Duration::from_secs(24 * 3600);

/// Why a key or token could not be made.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The key file exists (pass `force` to overwrite).
    #[error("{0} exists; refusing to overwrite it")]
    Exists(std::path::PathBuf),
    /// The key or JWKS is unusable.
    #[error("{0}")]
    Invalid(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> MintError + '_ {
    move |source| MintError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A local ES256 signing key with its public JWK.
pub struct SigningKey {
    key: EncodingKey,
    jwk: Jwk,
    kid: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A new random key and its PKCS#8 PEM.
    pub fn generate() -> Result<(Self, String), MintError> {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| MintError::Invalid(format!("key generation: {e}")))?;
        let pem = pair.serialize_pem();
        Ok((Self::from_pem(&pem)?, pem))
    }

    /// A key from its PKCS#8 PEM (P-256).
    pub fn from_pem(pem: &str) -> Result<Self, MintError> {
        let bad = |e: jsonwebtoken::errors::Error| {
            MintError::Invalid(format!("not an ECDSA P-256 PKCS#8 PEM key: {e}"))
        };
        let key = EncodingKey::from_ec_pem(pem.as_bytes()).map_err(bad)?;
        let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES256).map_err(bad)?;
        let kid = jwk
            .thumbprint(ThumbprintHash::SHA256)
            .map_err(|e| MintError::Invalid(format!("key thumbprint: {e}")))?;
        jwk.common.key_id = Some(kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        Ok(Self { key, jwk, kid })
    }

    /// Reads a key file written by [`Self::generate_file`].
    pub fn load(path: &Path) -> Result<Self, MintError> {
        let pem = std::fs::read_to_string(path).map_err(io(path))?;
        Self::from_pem(&pem)
    }

    /// Writes a new key to `path` (mode 0600; an existing file only with `force`).
    pub fn generate_file(path: &Path, force: bool) -> Result<Self, MintError> {
        let (key, pem) = Self::generate()?;
        let existing = if force {
            Existing::Truncate
        } else {
            Existing::Refuse
        };
        private_file::write(path, pem.as_bytes(), existing).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                MintError::Exists(path.to_owned())
            } else {
                io(path)(e)
            }
        })?;
        Ok(key)
    }

    /// The key id (RFC 7638 thumbprint).
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public JWK (`kty`, `crv`, `x`, `y`, `kid`, `use`, `alg`).
    pub fn public_jwk(&self) -> Value {
        serde_json::to_value(&self.jwk).unwrap_or(Value::Null)
    }

    /// Signs `claims` (any JSON object) as an ES256 JWT with this key's `kid`.
    pub fn sign<C: Serialize>(&self, claims: &C) -> Result<String, MintError> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        header.typ = Some("at+jwt".into());
        jsonwebtoken::encode(&header, claims, &self.key)
            .map_err(|e| MintError::Invalid(format!("signing: {e}")))
    }

    /// Issues an access token.
    pub fn issue(&self, claims: &AccessClaims) -> Result<String, MintError> {
        self.sign(claims)
    }
}

/// The claims of an access token fedsec issues (RFC 9068 style).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// Subject: the certificate identity (`spiffe://fedsec/...`).
    pub sub: String,
    /// Granted scopes, space-separated.
    pub scope: String,
    /// Issued at (Unix seconds).
    pub iat: u64,
    /// Not before (Unix seconds).
    pub nbf: u64,
    /// Expiry (Unix seconds).
    pub exp: u64,
    /// Token id.
    pub jti: String,
    /// Authentication methods (`["mfa"]` for an admin write token).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub amr: Vec<String>,
}

impl AccessClaims {
    /// Claims valid from now for `ttl` (at most [`MAX_TTL`]).
    pub fn new(
        issuer: &str,
        audience: &str,
        subject: &str,
        scopes: &[String],
        ttl: Duration,
    ) -> Result<Self, MintError> {
        if ttl.is_zero() || ttl > MAX_TTL {
            return Err(MintError::Invalid(format!(
                "the lifetime must be between 1 s and {} s (got {} s)",
                MAX_TTL.as_secs(),
                ttl.as_secs()
            )));
        }
        let now = jsonwebtoken::get_current_timestamp();
        let mut jti = [0u8; 16];
        rand::fill(&mut jti[..]);
        Ok(Self {
            iss: issuer.to_owned(),
            aud: audience.to_owned(),
            sub: subject.to_owned(),
            scope: scopes.join(" "),
            iat: now,
            nbf: now,
            exp: now + ttl.as_secs(),
            jti: hex::encode(jti),
            amr: Vec::new(),
        })
    }
}

/// Adds `key`'s public JWK to the JWKS file at `path` (created if missing;
/// an entry with the same `kid` is replaced), written atomically.
pub fn add_to_jwks(path: &Path, key: &SigningKey) -> Result<usize, MintError> {
    let mut keys: Vec<Value> = match std::fs::read(path) {
        Ok(bytes) => {
            let doc: Value = serde_json::from_slice(&bytes)
                .map_err(|e| MintError::Invalid(format!("{}: not JSON: {e}", path.display())))?;
            doc.get("keys")
                .and_then(Value::as_array)
                .cloned()
                .ok_or_else(|| {
                    MintError::Invalid(format!("{}: not a JWKS (no \"keys\")", path.display()))
                })?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(io(path)(e)),
    };
    keys.retain(|k| k.get("kid").and_then(Value::as_str) != Some(key.kid()));
    keys.push(key.public_jwk());
    write_jwks(path, &keys)?;
    Ok(keys.len())
}

/// Removes the key `kid` from the JWKS file; returns the keys left.
pub fn remove_from_jwks(path: &Path, kid: &str) -> Result<usize, MintError> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    let doc: Value = serde_json::from_slice(&bytes)
        .map_err(|e| MintError::Invalid(format!("{}: not JSON: {e}", path.display())))?;
    let mut keys = doc
        .get("keys")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let before = keys.len();
    keys.retain(|k| k.get("kid").and_then(Value::as_str) != Some(kid));
    if keys.len() == before {
        return Err(MintError::Invalid(format!(
            "{}: no key with kid {kid:?}",
            path.display()
        )));
    }
    write_jwks(path, &keys)?;
    Ok(keys.len())
}

fn write_jwks(path: &Path, keys: &[Value]) -> Result<(), MintError> {
    let text = serde_json::to_string_pretty(&serde_json::json!({ "keys": keys }))
        .map_err(|e| MintError::Invalid(format!("JWKS: {e}")))?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, format!("{text}\n")).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// Parses a lifetime: `900`, `900s`, `15m`, `1h`.
pub fn parse_ttl(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (digits, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => t.split_at(i),
        None => (t, "s"),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?}: expected a number with s, m or h (e.g. 15m)"))?;
    let secs = match unit {
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        _ => return Err(format!("{text:?}: the unit must be s, m or h")),
    };
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minted_token_verifies_against_the_written_jwks() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::generate_file(&dir.path().join("k.pem"), false).unwrap();
        assert!(matches!(
            SigningKey::generate_file(&dir.path().join("k.pem"), false),
            Err(MintError::Exists(_))
        ));
        let again = SigningKey::load(&dir.path().join("k.pem")).unwrap();
        assert_eq!(again.kid(), key.kid());
        let jwks = dir.path().join("jwks.json");
        assert_eq!(add_to_jwks(&jwks, &key).unwrap(), 1);
        assert_eq!(add_to_jwks(&jwks, &key).unwrap(), 1, "same kid replaced");
        let claims = AccessClaims::new(
            "iss",
            "aud",
            "spiffe://fedsec/admin/a",
            &["fedsec.admin.read".into()],
            Duration::from_secs(60),
        )
        .unwrap();
        let token = key.issue(&claims).unwrap();
        let set =
            super::super::keys::KeySet::parse(&std::fs::read(&jwks).unwrap(), &[Algorithm::ES256])
                .unwrap();
        let super::super::keys::Lookup::Found(k) = set.find(Some(key.kid()), Algorithm::ES256)
        else {
            panic!("kid not found")
        };
        let mut v = jsonwebtoken::Validation::new(Algorithm::ES256);
        v.set_audience(&["aud"]);
        let got = jsonwebtoken::decode::<AccessClaims>(&token, &k.key, &v).unwrap();
        assert_eq!(got.claims, claims);
        assert!(AccessClaims::new("i", "a", "s", &[], Duration::from_secs(90_000)).is_err());
        assert_eq!(remove_from_jwks(&jwks, key.kid()).unwrap(), 0);
    }

    #[test]
    fn lifetimes() {
        assert_eq!(parse_ttl("15m").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_ttl("900").unwrap(), Duration::from_secs(900));
        assert_eq!(parse_ttl("2h").unwrap(), Duration::from_secs(7200));
        assert!(parse_ttl("5d").is_err());
        assert!(parse_ttl("m").is_err());
    }
}
