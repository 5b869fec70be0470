//! Checking one bearer token: the `authorization` metadata, the JOSE
//! header (algorithm allow-list, `kid`), the signature and registered
//! claims (`jsonwebtoken`), then the binding to the certificate identity,
//! the scope and MFA. Pure: the keys come in as a [`KeySet`].

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};

use super::config::{ScopeNames, TokensConfig};
use super::error::TokenError;
use super::keys::VerifyKey;
use super::scope::CallKind;

/// Largest JOSE header inspected before verification.
const MAX_HEADER_BYTES: usize = 2048;

/// The checks a token must pass, from the configuration.
#[derive(Debug, Clone)]
pub(crate) struct Policy {
    pub(crate) algorithms: Vec<Algorithm>,
    issuer: String,
    audience: String,
    leeway: u64,
    subject_claim: String,
    scope_claim: String,
    scopes: ScopeNames,
    require_mfa_write: bool,
    mfa_amr: Vec<String>,
    max_token_bytes: usize,
}

impl Policy {
    /// The policy of a validated configuration.
    pub(crate) fn new(c: &TokensConfig) -> Result<Self, crate::config::ConfigError> {
        Ok(Self {
            algorithms: c.parsed_algorithms()?,
            issuer: c.issuer.clone(),
            audience: c.audience.clone(),
            leeway: c.clock_skew_s,
            subject_claim: c.subject_claim.clone(),
            scope_claim: c.scope_claim.clone(),
            scopes: c.scopes.clone(),
            require_mfa_write: c.require_mfa_for_admin_write,
            mfa_amr: c.mfa_amr.clone(),
            max_token_bytes: c.max_token_bytes,
        })
    }
}

/// The token of an `authorization: Bearer <token>` header.
pub(crate) fn bearer<'h>(
    value: Option<&'h http::HeaderValue>,
    policy: &Policy,
) -> Result<&'h str, TokenError> {
    let value = value.ok_or(TokenError::Missing)?;
    if value.len() > policy.max_token_bytes {
        return Err(TokenError::Malformed(format!(
            "{} bytes, more than the {} accepted",
            value.len(),
            policy.max_token_bytes
        )));
    }
    let text = value
        .to_str()
        .map_err(|_| TokenError::Malformed("not visible ASCII".into()))?;
    let (scheme, token) = text
        .split_once(' ')
        .ok_or_else(|| TokenError::Malformed("expected \"Bearer <token>\"".into()))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(TokenError::Malformed("the scheme must be Bearer".into()));
    }
    let token = token.trim();
    if token.is_empty() || token.bytes().any(|b| b.is_ascii_whitespace()) {
        return Err(TokenError::Malformed("empty or spaced token".into()));
    }
    Ok(token)
}

/// The accepted algorithm and `kid` of a token's header (not yet verified:
/// only used to pick the key).
pub(crate) fn peek(
    token: &str,
    policy: &Policy,
) -> Result<(Algorithm, Option<String>), TokenError> {
    let malformed = || TokenError::Invalid("not a well-formed JWS compact token".into());
    let mut parts = token.split('.');
    let (Some(head), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed());
    };
    if head.len() > MAX_HEADER_BYTES {
        return Err(TokenError::Invalid("JOSE header too large".into()));
    }
    let bytes = URL_SAFE_NO_PAD.decode(head).map_err(|_| malformed())?;
    let header: Map<String, Value> = serde_json::from_slice(&bytes).map_err(|_| malformed())?;
    let name = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or_else(|| TokenError::Invalid("no alg in the JOSE header".into()))?;
    let not_allowed = || {
        // Name only algorithms we know; anything else is not echoed back.
        let shown = if name == "none" || name.parse::<Algorithm>().is_ok() {
            name
        } else {
            "an unknown algorithm"
        };
        TokenError::Invalid(format!("algorithm {shown} is not allowed"))
    };
    let alg: Algorithm = name.parse().map_err(|_| not_allowed())?;
    if !policy.algorithms.contains(&alg) {
        return Err(not_allowed());
    }
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(k)) if k.len() <= 256 => Some(k.clone()),
        Some(_) => return Err(TokenError::Invalid("kid must be a short string".into())),
    };
    Ok((alg, kid))
}

/// Verifies the signature with `key` and the registered claims (`iss`,
/// `aud`, `exp`, `nbf` with the clock skew); returns the claims.
pub(crate) fn verify(
    token: &str,
    alg: Algorithm,
    key: &VerifyKey,
    policy: &Policy,
) -> Result<Map<String, Value>, TokenError> {
    let mut v = Validation::new(alg);
    v.leeway = policy.leeway;
    v.validate_nbf = true;
    v.set_issuer(&[&policy.issuer]);
    v.set_audience(&[&policy.audience]);
    v.set_required_spec_claims(&["exp", "iss", "aud"]);
    jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &v)
        .map(|data| data.claims)
        .map_err(|e| TokenError::from_jwt(&e))
}

/// Whether verified `claims` let the holder of certificate `identity`
/// (its SPIFFE URI) make a call of `kind`.
pub(crate) fn authorize(
    claims: &Map<String, Value>,
    identity: &str,
    kind: CallKind,
    method: &str,
    policy: &Policy,
) -> Result<(), TokenError> {
    if claims.get(&policy.subject_claim).and_then(Value::as_str) != Some(identity) {
        return Err(TokenError::SubjectMismatch {
            claim: policy.subject_claim.clone(),
            identity: identity.to_owned(),
        });
    }
    let needed = match kind {
        CallKind::Open => return Ok(()),
        CallKind::Client => &policy.scopes.client,
        CallKind::AdminRead => &policy.scopes.admin_read,
        CallKind::AdminWrite => &policy.scopes.admin_write,
    };
    let granted = strings(claims.get(&policy.scope_claim), true).ok_or_else(|| {
        TokenError::Invalid(format!(
            "the {:?} claim must be a space-separated string or an array of strings",
            policy.scope_claim
        ))
    })?;
    if !granted.iter().any(|s| s == needed) {
        return Err(TokenError::InsufficientScope {
            needed: needed.clone(),
            method: method.to_owned(),
        });
    }
    if kind == CallKind::AdminWrite && policy.require_mfa_write {
        let amr = strings(claims.get("amr"), false).unwrap_or_default();
        if !amr.iter().any(|a| policy.mfa_amr.contains(a)) {
            return Err(TokenError::MfaRequired {
                method: method.to_owned(),
                accepted: policy.mfa_amr.clone(),
            });
        }
    }
    Ok(())
}

/// A claim as a list of strings: an array of strings, or one string (split
/// on whitespace when `split`); absent is empty; anything else is `None`.
fn strings(claim: Option<&Value>, split: bool) -> Option<Vec<String>> {
    match claim {
        None => Some(Vec::new()),
        Some(Value::String(s)) if split => Some(s.split_whitespace().map(String::from).collect()),
        Some(Value::String(s)) => Some(vec![s.clone()]),
        Some(Value::Array(a)) => a.iter().map(|v| v.as_str().map(String::from)).collect(),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy::new(&TokensConfig::with_jwks_file("iss", "aud", "j")).unwrap()
    }

    #[test]
    fn bearer_header_is_bounded_and_strict() {
        let p = policy();
        let hv = |s: &str| http::HeaderValue::from_str(s).unwrap();
        assert_eq!(bearer(None, &p), Err(TokenError::Missing));
        assert_eq!(bearer(Some(&hv("Bearer a.b.c")), &p), Ok("a.b.c"));
        assert_eq!(bearer(Some(&hv("bearer a.b.c")), &p), Ok("a.b.c"));
        for bad in ["Basic a.b.c", "Bearer", "Bearer ", "Bearer a b", "a.b.c"] {
            assert!(
                matches!(bearer(Some(&hv(bad)), &p), Err(TokenError::Malformed(_))),
                "{bad}"
            );
        }
        let huge = hv(&format!("Bearer {}", "a".repeat(9000)));
        let e = bearer(Some(&huge), &p).unwrap_err();
        assert!(e.to_string().contains("8192"), "{e}");
        assert!(!e.to_string().contains("aaaa"), "{e}");
    }

    #[test]
    fn none_and_hmac_headers_are_refused_before_any_key_is_looked_up() {
        let p = policy();
        let tok = |h: &str| format!("{}.e30.", URL_SAFE_NO_PAD.encode(h));
        let e = peek(&tok(r#"{"alg":"none"}"#), &p).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid bearer token: algorithm none is not allowed"
        );
        let e = peek(&tok(r#"{"alg":"HS256","kid":"k"}"#), &p).unwrap_err();
        assert!(e.to_string().contains("HS256 is not allowed"), "{e}");
        let e = peek(&tok(r#"{"alg":"<script>"}"#), &p).unwrap_err();
        assert!(!e.to_string().contains("script"), "{e}");
        assert_eq!(
            peek(&tok(r#"{"alg":"ES256","kid":"k1"}"#), &p).unwrap(),
            (Algorithm::ES256, Some("k1".into()))
        );
        for bad in ["a.b", "a.b.c.d", "!!.e30.x", ""] {
            assert!(peek(bad, &p).is_err(), "{bad}");
        }
    }

    #[test]
    fn scope_subject_and_mfa() {
        let p = policy();
        let id = "spiffe://fedsec/admin/ops";
        let claims = |v: Value| v.as_object().unwrap().clone();
        let c =
            claims(serde_json::json!({"sub": id, "scope": "fedsec.admin.read fedsec.admin.write"}));
        authorize(&c, id, CallKind::AdminRead, "m", &p).unwrap();
        assert!(matches!(
            authorize(&c, id, CallKind::AdminWrite, "m", &p),
            Err(TokenError::MfaRequired { .. })
        ));
        assert!(matches!(
            authorize(&c, id, CallKind::Client, "m", &p),
            Err(TokenError::InsufficientScope { .. })
        ));
        assert!(matches!(
            authorize(
                &c,
                "spiffe://fedsec/admin/other",
                CallKind::AdminRead,
                "m",
                &p
            ),
            Err(TokenError::SubjectMismatch { .. })
        ));
        let mfa = claims(
            serde_json::json!({"sub": id, "scope": ["fedsec.admin.write"], "amr": ["pwd", "otp"]}),
        );
        authorize(&mfa, id, CallKind::AdminWrite, "m", &p).unwrap();
        let bad = claims(serde_json::json!({"sub": id, "scope": 7}));
        assert!(matches!(
            authorize(&bad, id, CallKind::AdminRead, "m", &p),
            Err(TokenError::Invalid(_))
        ));
    }
}
