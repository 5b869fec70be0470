//! Why a bearer token was refused. Its status comes from the one mapping
//! in [`crate::error`]: [`TokenError`] becomes a rejection with reason
//! `token_invalid` (`UNAUTHENTICATED`) or `token_denied`
//! (`PERMISSION_DENIED`), or `UNAVAILABLE` while the keys are too stale.
//!
//! Every message names the check that failed and never echoes the token or
//! any of its claims (a log line or a status must not leak a credential);
//! it may name the caller's own certificate identity and the configured
//! issuer, audience and scope names, which are public.

use crate::error::{Error, RejectReason};

/// A token refusal: `UNAUTHENTICATED` when the caller has not proved who it
/// is (no token, a malformed, expired, forged or foreign token, a token for
/// another identity), `PERMISSION_DENIED` when the token is valid but does
/// not grant the call (scope, MFA), `UNAVAILABLE` when the coordinator
/// cannot check tokens right now (its JWKS is too stale).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No `authorization` metadata.
    #[error("a bearer token is required (authorization: Bearer <JWT>)")]
    Missing,
    /// The header is not `Bearer <token>` in visible ASCII, or is too large.
    #[error("malformed authorization metadata: {0}")]
    Malformed(String),
    /// The token failed a check (signature, algorithm, key, time, issuer,
    /// audience, required claim).
    #[error("invalid bearer token: {0}")]
    Invalid(String),
    /// The token's subject is not the caller's certificate identity.
    #[error(
        "the bearer token was not issued to this caller: its {claim:?} claim must equal the client certificate identity {identity}"
    )]
    SubjectMismatch {
        /// The claim compared (`sub` by default).
        claim: String,
        /// The caller's certificate identity (SPIFFE URI).
        identity: String,
    },
    /// The token lacks the scope the call needs.
    #[error("the bearer token lacks the scope {needed:?} that {method} needs")]
    InsufficientScope {
        /// The scope name needed.
        needed: String,
        /// The call.
        method: String,
    },
    /// A write scope without multi-factor authentication.
    #[error(
        "{method} needs a token from a multi-factor login (its amr claim must contain one of {accepted:?})"
    )]
    MfaRequired {
        /// The call.
        method: String,
        /// The `amr` values accepted as MFA.
        accepted: Vec<String>,
    },
    /// The verification keys cannot be used right now.
    #[error("the coordinator cannot verify tokens right now: {0}; retry later")]
    KeysUnavailable(String),
}

impl TokenError {
    /// A short label for logs and the audit detail.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Malformed(_) => "malformed",
            Self::Invalid(_) => "invalid",
            Self::SubjectMismatch { .. } => "subject_mismatch",
            Self::InsufficientScope { .. } => "insufficient_scope",
            Self::MfaRequired { .. } => "mfa_required",
            Self::KeysUnavailable(_) => "keys_unavailable",
        }
    }

    /// An invalid token, from `jsonwebtoken`'s verdict (its messages name
    /// the check, never the token's contents).
    pub(crate) fn from_jwt(e: &jsonwebtoken::errors::Error) -> Self {
        use jsonwebtoken::errors::ErrorKind as K;
        let why = match e.kind() {
            K::ExpiredSignature => "expired".to_owned(),
            K::ImmatureSignature => "not yet valid (nbf is in the future)".to_owned(),
            K::InvalidAudience => "wrong audience".to_owned(),
            K::InvalidIssuer => "wrong issuer".to_owned(),
            K::InvalidSignature => "bad signature".to_owned(),
            K::InvalidAlgorithm => "algorithm does not match the key".to_owned(),
            K::MissingRequiredClaim(c) => format!("missing required claim {c:?}"),
            K::InvalidToken | K::Base64(_) | K::Json(_) | K::Utf8(_) => {
                "not a well-formed JWS compact token".to_owned()
            }
            _ => "rejected by the JWT verifier".to_owned(),
        };
        Self::Invalid(why)
    }
}

impl From<TokenError> for Error {
    fn from(e: TokenError) -> Self {
        let reason = match &e {
            TokenError::KeysUnavailable(_) => return Error::Unavailable(e.to_string()),
            TokenError::InsufficientScope { .. } | TokenError::MfaRequired { .. } => {
                RejectReason::TokenDenied
            }
            TokenError::Missing
            | TokenError::Malformed(_)
            | TokenError::Invalid(_)
            | TokenError::SubjectMismatch { .. } => RejectReason::TokenInvalid,
        };
        Error::rejected(reason, e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::{Code, Status};

    #[test]
    fn unauthenticated_for_who_permission_denied_for_what() {
        let cases = [
            (TokenError::Missing, Code::Unauthenticated),
            (TokenError::Malformed("x".into()), Code::Unauthenticated),
            (TokenError::Invalid("expired".into()), Code::Unauthenticated),
            (
                TokenError::SubjectMismatch {
                    claim: "sub".into(),
                    identity: "spiffe://fedsec/admin/a".into(),
                },
                Code::Unauthenticated,
            ),
            (
                TokenError::InsufficientScope {
                    needed: "fedsec.client".into(),
                    method: "Coordinator/GetTask".into(),
                },
                Code::PermissionDenied,
            ),
            (
                TokenError::MfaRequired {
                    method: "Admin/PauseJob".into(),
                    accepted: vec!["mfa".into()],
                },
                Code::PermissionDenied,
            ),
            (
                TokenError::KeysUnavailable("stale".into()),
                Code::Unavailable,
            ),
        ];
        for (e, code) in cases {
            let shown = e.to_string();
            let status = Status::from(Error::from(e));
            assert_eq!(status.code(), code, "{shown}");
            assert_eq!(status.message(), shown);
        }
    }
}
