//! A verified-usable key set, parsed from a JWKS document (RFC 7517).
//!
//! Only public signature keys are kept: RSA, EC (P-256, P-384) and OKP
//! (Ed25519) keys whose `use` is absent or `sig` and whose `alg`, when
//! present, is an accepted algorithm. Symmetric (`oct`) keys are dropped —
//! a JWKS is public, so an HMAC key in it would let anyone forge tokens.
//! A malformed entry is skipped (counted), not fatal, so one bad key at the
//! IdP does not lock everybody out; a document that is not a JWKS at all is
//! an error.

use std::collections::HashMap;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use serde_json::Value;

/// Most keys kept from one JWKS.
const MAX_KEYS: usize = 64;

/// One verification key.
#[derive(Clone)]
pub(crate) struct VerifyKey {
    pub(crate) key: DecodingKey,
    family: AlgorithmFamily,
    /// The JWK's `alg`, when it declares one.
    alg: Option<Algorithm>,
    /// The curve of an EC or OKP key.
    curve: Option<EllipticCurve>,
}

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyKey")
            .field("family", &self.family)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl VerifyKey {
    /// Whether this key may verify a signature made with `alg`.
    pub(crate) fn fits(&self, alg: Algorithm) -> bool {
        if alg.family() != self.family || self.alg.is_some_and(|a| a != alg) {
            return false;
        }
        match alg {
            Algorithm::ES256 => self.curve == Some(EllipticCurve::P256),
            Algorithm::ES384 => self.curve == Some(EllipticCurve::P384),
            Algorithm::EdDSA => self.curve == Some(EllipticCurve::Ed25519),
            _ => true,
        }
    }
}

/// What a lookup found.
#[derive(Debug)]
pub(crate) enum Lookup<'a> {
    /// The key to verify with.
    Found(&'a VerifyKey),
    /// The `kid` is not in the set (maybe rotated in since the last fetch).
    UnknownKid,
    /// The key named by `kid` cannot verify this algorithm.
    WrongAlgorithm,
    /// No `kid`, and not exactly one key fits the algorithm.
    Ambiguous(usize),
}

/// The usable keys of one JWKS.
#[derive(Debug, Default, Clone)]
pub(crate) struct KeySet {
    by_kid: HashMap<String, VerifyKey>,
    unnamed: Vec<VerifyKey>,
    /// Entries dropped (unusable, symmetric, duplicate `kid`, over the cap).
    pub(crate) skipped: usize,
}

impl KeySet {
    /// Parses a JWKS document, keeping the keys usable with `allowed`.
    pub(crate) fn parse(json: &[u8], allowed: &[Algorithm]) -> Result<Self, String> {
        let doc: Value = serde_json::from_slice(json).map_err(|e| format!("not JSON: {e}"))?;
        let keys = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or("not a JWKS: no \"keys\" array")?;
        let mut set = Self::default();
        for entry in keys {
            match usable(entry, allowed) {
                Some((kid, key)) if set.len() < MAX_KEYS => match kid {
                    Some(kid) if set.by_kid.contains_key(&kid) => set.skipped += 1,
                    Some(kid) => {
                        set.by_kid.insert(kid, key);
                    }
                    None => set.unnamed.push(key),
                },
                _ => set.skipped += 1,
            }
        }
        Ok(set)
    }

    /// Usable keys.
    pub(crate) fn len(&self) -> usize {
        self.by_kid.len() + self.unnamed.len()
    }

    /// Whether the set has `kid`.
    pub(crate) fn has(&self, kid: &str) -> bool {
        self.by_kid.contains_key(kid)
    }

    /// The key for a token's `kid` and `alg`.
    pub(crate) fn find(&self, kid: Option<&str>, alg: Algorithm) -> Lookup<'_> {
        match kid {
            Some(kid) => match self.by_kid.get(kid) {
                Some(k) if k.fits(alg) => Lookup::Found(k),
                Some(_) => Lookup::WrongAlgorithm,
                None => Lookup::UnknownKid,
            },
            None => {
                let mut fitting = self
                    .by_kid
                    .values()
                    .chain(&self.unnamed)
                    .filter(|k| k.fits(alg));
                match (fitting.next(), fitting.next()) {
                    (Some(k), None) => Lookup::Found(k),
                    (None, _) => Lookup::Ambiguous(0),
                    (Some(_), Some(_)) => Lookup::Ambiguous(2 + fitting.count()),
                }
            }
        }
    }
}

/// The `kid` and key of a usable JWKS entry.
fn usable(entry: &Value, allowed: &[Algorithm]) -> Option<(Option<String>, VerifyKey)> {
    if entry.get("use").is_some_and(|u| u != "sig") {
        return None;
    }
    let alg = match entry.get("alg") {
        None => None,
        Some(a) => {
            let alg: Algorithm = a.as_str()?.parse().ok()?;
            if !allowed.contains(&alg) {
                return None;
            }
            Some(alg)
        }
    };
    let kid = match entry.get("kid") {
        None => None,
        Some(k) => Some(k.as_str()?.to_owned()),
    };
    let jwk: Jwk = serde_json::from_value(entry.clone()).ok()?;
    let (family, curve) = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => (AlgorithmFamily::Rsa, None),
        AlgorithmParameters::EllipticCurve(p) => (AlgorithmFamily::Ec, Some(p.curve.clone())),
        AlgorithmParameters::OctetKeyPair(p) => (AlgorithmFamily::Ed, Some(p.curve.clone())),
        // Symmetric keys never belong in a public key set; unknown types are unusable.
        _ => return None,
    };
    if !allowed.iter().any(|a| a.family() == family) {
        return None;
    }
    let key = DecodingKey::from_jwk(&jwk).ok()?;
    Some((
        kid,
        VerifyKey {
            key,
            family,
            alg,
            curve,
        },
    ))
}
