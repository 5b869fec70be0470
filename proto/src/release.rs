//! Signed releases: the coordinator's Ed25519 release key, the canonical
//! byte string it signs for every served model version, and the checks a
//! client (or `fedsec-client model verify`, offline) runs on it.
//!
//! What is signed is a [`ReleaseStatement`]: job, version, round, the model
//! spec, the parameter count, the SHA-256 of the weight bytes, the SHA-256
//! of the privacy receipt's canonical JSON (exactly as served, so a receipt
//! restated after a rollback is signed anew) and the hash of the
//! coordinator's audit chain head when the version was released. The head's
//! sequence number is deliberately not part of it: tenants would read, from
//! the gap between two versions' numbers, how many audit rows (refused
//! uploads among them) a round wrote. The hash binds the row id (every row's
//! hash covers its id), so the coordinator's admin can still find the row
//! (`admin audit verify`); to a tenant it is an opaque 32-byte value.
//! [`ReleaseStatement::canonical_bytes`] is the byte string, domain
//! separated by [`RELEASE_DOMAIN`] and length-prefixed field by field, so no
//! two statements share an encoding and a signature over anything else
//! (another protocol, another key's message) never verifies as a release.
//!
//! Keys are PKCS#8 PEM (private, mode 0600) and SPKI PEM (public), the
//! formats `openssl pkey` reads. Signatures are checked with
//! `verify_strict` (no malleable or small-order encodings). The crate doing
//! the curve work is `ed25519-dalek`.

use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::private_file::Existing;

/// Domain separator of the signed byte string.
/// `.2`: the second format (the audit anchor is its hash only); a signature
/// over the first format never verifies as the second.
pub const RELEASE_DOMAIN: &[u8] = b"fedsec.v1 release.2\0";

/// Length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;

/// Why a key could not be used or a release did not verify.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    /// A key file could not be read or written.
    #[error("{path}: {message}")]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The signature is missing, malformed or does not verify with the key.
    #[error("release signature: {0}")]
    Signature(String),
    /// A field of the release is malformed.
    #[error("release: {0}")]
    Malformed(String),
}

impl ReleaseError {
    fn key_file(path: &Path, message: impl Into<String>) -> Self {
        Self::KeyFile {
            path: path.to_owned(),
            message: message.into(),
        }
    }
}

/// The audit chain position a release is anchored at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AuditAnchor {
    /// Sequence number (row id) of the chain head; 0 for an empty chain.
    pub seq: u64,
    /// Hash of the chain head (the genesis hash for an empty chain).
    pub hash: [u8; 32],
}

/// Everything a release signature covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseStatement {
    /// Job id.
    pub job_id: String,
    /// Model version.
    pub version: u64,
    /// Round after which the version was published.
    pub round: u64,
    /// The model spec as JSON (`serde_json` of `fedsec_model::ModelSpec`).
    pub spec_json: String,
    /// Number of f32 parameters.
    pub num_params: u64,
    /// SHA-256 of the little-endian weight bytes.
    pub weights_sha256: [u8; 32],
    /// SHA-256 of the privacy receipt's canonical JSON as served.
    pub receipt_sha256: [u8; 32],
    /// Hash of the audit chain head the release is anchored at
    /// ([`AuditAnchor::hash`]; the sequence number stays with the coordinator).
    pub audit_head: [u8; 32],
}

impl ReleaseStatement {
    /// The statement of a model whose spec is `spec` and receipt JSON `receipt_json`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        job_id: &str,
        version: u64,
        round: u64,
        spec: &fedsec_model::ModelSpec,
        weights_sha256: [u8; 32],
        receipt_json: &str,
        audit_head: [u8; 32],
    ) -> Self {
        Self {
            job_id: job_id.to_owned(),
            version,
            round,
            // A spec is plain data: serialising it cannot fail.
            spec_json: serde_json::to_string(spec).unwrap_or_default(),
            num_params: spec.num_params() as u64,
            weights_sha256,
            receipt_sha256: receipt_digest(receipt_json),
            audit_head,
        }
    }

    /// The signed byte string: [`RELEASE_DOMAIN`], then each field in the
    /// order of the struct, strings as u64 length + UTF-8 bytes, integers as
    /// u64, all little-endian, digests as their 32 bytes.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(RELEASE_DOMAIN.len() + 200 + self.spec_json.len());
        out.extend_from_slice(RELEASE_DOMAIN);
        let string = |out: &mut Vec<u8>, s: &str| {
            out.extend_from_slice(&(s.len() as u64).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        };
        string(&mut out, &self.job_id);
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.round.to_le_bytes());
        string(&mut out, &self.spec_json);
        out.extend_from_slice(&self.num_params.to_le_bytes());
        out.extend_from_slice(&self.weights_sha256);
        out.extend_from_slice(&self.receipt_sha256);
        out.extend_from_slice(&self.audit_head);
        out
    }
}

/// SHA-256 of a receipt's canonical JSON.
pub fn receipt_digest(receipt_json: &str) -> [u8; 32] {
    Sha256::digest(receipt_json.as_bytes()).into()
}

/// The coordinator's release signing key.
pub struct ReleaseKey {
    key: SigningKey,
}

impl std::fmt::Debug for ReleaseKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReleaseKey")
            .field("key_id", &self.public().key_id())
            .finish_non_exhaustive()
    }
}

impl ReleaseKey {
    /// A fresh key from the operating system's CSPRNG.
    pub fn generate() -> Self {
        let mut seed = [0u8; 32];
        rand::fill(&mut seed[..]);
        let key = SigningKey::from_bytes(&seed);
        seed.iter_mut().for_each(|b| *b = 0);
        Self { key }
    }

    /// A key from a 32-byte seed (tests that need a fixed key).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self {
            key: SigningKey::from_bytes(&seed),
        }
    }

    /// The key as PKCS#8 PEM.
    pub fn to_pem(&self) -> Result<String, ReleaseError> {
        self.key
            .to_pkcs8_pem(LineEnding::LF)
            .map(|s| s.to_string())
            .map_err(|e| ReleaseError::Malformed(format!("cannot encode the key: {e}")))
    }

    /// Parses a PKCS#8 PEM Ed25519 private key.
    pub fn from_pem(pem: &str) -> Result<Self, ReleaseError> {
        SigningKey::from_pkcs8_pem(pem)
            .map(|key| Self { key })
            .map_err(|e| ReleaseError::Malformed(format!("not a PKCS#8 PEM Ed25519 key: {e}")))
    }

    /// Reads a key file; on Unix it must not be readable by group or others.
    pub fn load(path: &Path) -> Result<Self, ReleaseError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ReleaseError::key_file(
                path,
                if e.kind() == std::io::ErrorKind::NotFound {
                    "release signing key not found: create one with `fedsec-coordinator keys \
                     generate --signing --out <file>` and name it in [signing] key_file"
                        .to_owned()
                } else {
                    format!("cannot read the release signing key: {e}")
                },
            )
        })?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path)
                .map_err(|e| ReleaseError::key_file(path, e.to_string()))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                return Err(ReleaseError::key_file(
                    path,
                    format!(
                        "the release signing key is readable by others (mode {:o}); chmod 600 it",
                        mode & 0o777
                    ),
                ));
            }
        }
        Self::from_pem(&text).map_err(|e| ReleaseError::key_file(path, e.to_string()))
    }

    /// Writes the key (mode 0600) to `path` and its public key (SPKI PEM,
    /// mode 0644) to [`public_key_path`]`(path)`. Refuses to overwrite an
    /// existing key unless `force`.
    pub fn write(&self, path: &Path, force: bool) -> Result<PathBuf, ReleaseError> {
        if path.exists() && !force {
            return Err(ReleaseError::key_file(
                path,
                "exists (pass --force to replace it: clients that trust the old public key will \
                 refuse every release signed with the new one)",
            ));
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| ReleaseError::key_file(dir, e.to_string()))?;
        }
        write_file(path, &self.to_pem()?, true)?;
        let public = public_key_path(path);
        write_file(&public, &self.public().to_pem()?, false)?;
        Ok(public)
    }

    /// The public half.
    pub fn public(&self) -> ReleasePublicKey {
        ReleasePublicKey {
            key: self.key.verifying_key(),
        }
    }

    /// Signs `statement`.
    pub fn sign(&self, statement: &ReleaseStatement) -> [u8; SIGNATURE_LEN] {
        self.key.sign(&statement.canonical_bytes()).to_bytes()
    }
}

/// Where the public key of the private key file `path` is written:
/// `<stem>.pub.pem` next to it (`release-signing.pem` →
/// `release-signing.pub.pem`).
pub fn public_key_path(path: &Path) -> PathBuf {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "release-signing".into());
    path.with_file_name(format!("{stem}.pub.pem"))
}

/// A release public key: what clients verify served models against.
#[derive(Clone, PartialEq, Eq)]
pub struct ReleasePublicKey {
    key: VerifyingKey,
}

impl std::fmt::Debug for ReleasePublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ReleasePublicKey({})", self.key_id())
    }
}

impl ReleasePublicKey {
    /// Parses an SPKI PEM Ed25519 public key.
    pub fn from_pem(pem: &str) -> Result<Self, ReleaseError> {
        VerifyingKey::from_public_key_pem(pem)
            .map(|key| Self { key })
            .map_err(|e| {
                ReleaseError::Malformed(format!("not an SPKI PEM Ed25519 public key: {e}"))
            })
    }

    /// Reads a public key file.
    pub fn load(path: &Path) -> Result<Self, ReleaseError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ReleaseError::key_file(path, format!("cannot read the release public key: {e}"))
        })?;
        Self::from_pem(&text).map_err(|e| ReleaseError::key_file(path, e.to_string()))
    }

    /// The key as SPKI PEM.
    pub fn to_pem(&self) -> Result<String, ReleaseError> {
        self.key
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| ReleaseError::Malformed(format!("cannot encode the public key: {e}")))
    }

    /// Short id of the key: the first 8 bytes of SHA-256 of its 32 key
    /// bytes, in hex (what the model header and the logs name).
    pub fn key_id(&self) -> String {
        hex::encode(&Sha256::digest(self.key.as_bytes())[..8])
    }

    /// Checks `signature` over `statement`.
    pub fn verify(
        &self,
        statement: &ReleaseStatement,
        signature: &[u8],
    ) -> Result<(), ReleaseError> {
        if signature.is_empty() {
            return Err(ReleaseError::Signature(
                "the release is not signed (a coordinator without release signing, or a \
                 stripped signature)"
                    .into(),
            ));
        }
        let sig = Signature::from_slice(signature).map_err(|_| {
            ReleaseError::Signature(format!(
                "{} bytes, an Ed25519 signature has {SIGNATURE_LEN}",
                signature.len()
            ))
        })?;
        self.key
            .verify_strict(&statement.canonical_bytes(), &sig)
            .map_err(|_| {
                ReleaseError::Signature(format!(
                    "does not verify with release key {} (the model, its receipt or its header \
                     was changed, or it was signed by another key)",
                    self.key_id()
                ))
            })
    }
}

fn write_file(path: &Path, contents: &str, private: bool) -> Result<(), ReleaseError> {
    use std::io::Write;
    let err = |e: std::io::Error| ReleaseError::key_file(path, e.to_string());
    if private {
        return crate::private_file::write(path, contents.as_bytes(), Existing::Truncate)
            .map_err(err);
    }
    let mut f = std::fs::File::create(path).map_err(err)?;
    f.write_all(contents.as_bytes()).map_err(err)?;
    f.sync_all().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use fedsec_model::ModelSpec;

    fn statement() -> ReleaseStatement {
        ReleaseStatement::new(
            "job-1",
            3,
            3,
            &ModelSpec::logistic(4),
            [7; 32],
            r#"{"epsilon_pld":1.0}"#,
            [9; 32],
        )
    }

    #[test]
    fn a_signature_verifies_and_any_changed_field_is_refused() {
        let key = ReleaseKey::from_seed([1; 32]);
        let s = statement();
        let sig = key.sign(&s);
        key.public().verify(&s, &sig).unwrap();
        type Mutation = fn(&mut ReleaseStatement);
        let mutations: [Mutation; 8] = [
            |s| s.job_id.push('x'),
            |s| s.version += 1,
            |s| s.round += 1,
            |s| s.spec_json.push(' '),
            |s| s.num_params += 1,
            |s| s.weights_sha256[31] ^= 1,
            |s| s.receipt_sha256[0] ^= 1,
            |s| s.audit_head[5] ^= 1,
        ];
        for m in mutations {
            let mut t = s.clone();
            m(&mut t);
            assert!(key.public().verify(&t, &sig).is_err());
        }
        let mut bad = sig;
        bad[10] ^= 1;
        assert!(key.public().verify(&s, &bad).is_err());
        assert!(key.public().verify(&s, &sig[..63]).is_err());
        assert!(key.public().verify(&s, &[]).is_err());
        let other = ReleaseKey::from_seed([2; 32]);
        assert!(other.public().verify(&s, &sig).is_err());
    }

    #[test]
    fn fields_are_length_prefixed_so_boundaries_cannot_move() {
        let mut a = statement();
        let mut b = statement();
        a.job_id = "ab".into();
        a.spec_json = "c".into();
        b.job_id = "a".into();
        b.spec_json = "bc".into();
        assert_ne!(a.canonical_bytes(), b.canonical_bytes());
        assert!(a.canonical_bytes().starts_with(RELEASE_DOMAIN));
    }

    #[test]
    fn keys_round_trip_through_pem_files_with_private_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/release-signing.pem");
        let key = ReleaseKey::generate();
        let public = key.write(&path, false).unwrap();
        assert_eq!(public, dir.path().join("keys/release-signing.pub.pem"));
        assert!(key.write(&path, false).is_err(), "no silent overwrite");
        let loaded = ReleaseKey::load(&path).unwrap();
        assert_eq!(loaded.public(), key.public());
        assert_eq!(ReleasePublicKey::load(&public).unwrap(), key.public());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let e = ReleaseKey::load(&path).unwrap_err().to_string();
            assert!(e.contains("readable by others"), "{e}");
        }
        let e = ReleaseKey::load(&dir.path().join("missing.pem"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("keys generate --signing"), "{e}");
        assert!(ReleasePublicKey::from_pem("not a key").is_err());
    }
}
