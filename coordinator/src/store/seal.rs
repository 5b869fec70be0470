//! Encryption at rest: the key file and AEAD sealing of stored records.
//!
//! [`AtRestKey`] is a 256-bit ChaCha20-Poly1305 key read from a file of 64
//! hex digits (optionally followed by a newline) that only its owner may
//! read (mode 0600 or stricter, like ssh keys). A sealed record is
//! `"FSE1" ‖ nonce (12 random bytes) ‖ ciphertext ‖ tag (16 bytes)`; its
//! associated data ([`Aad`]) names the column, the job and the record's
//! number (model version, ledger sequence), so a sealed value moved to
//! another row or column fails authentication like a tampered one.

use std::path::{Path, PathBuf};

use fedsec_proto::private_file::{self, Existing};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};

/// Key length in bytes.
pub const KEY_LEN: usize = 32;
/// Nonce length in bytes (random per record).
pub const NONCE_LEN: usize = 12;
/// Authentication tag length in bytes.
pub const TAG_LEN: usize = 16;
/// Prefix of every sealed record (format version 1).
pub const MAGIC: &[u8; 4] = b"FSE1";
/// Bytes a sealed record adds to its plaintext.
pub const OVERHEAD: usize = MAGIC.len() + NONCE_LEN + TAG_LEN;

/// Why a key file cannot be used or written.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// The file could not be read or written.
    #[error("encryption key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Group or others may access the file.
    #[error(
        "encryption key file {path} is accessible by group or others (mode {mode:04o}); \
         run `chmod 600 {path}`"
    )]
    Permissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The content is not 64 hex digits.
    #[error("encryption key file {path}: {problem}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// The file exists and `force` was not given.
    #[error("{0} exists; refusing to overwrite a key (data sealed with it would be lost)")]
    Exists(PathBuf),
}

/// A sealed record that does not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// Too short or without the `FSE1` prefix: not a sealed record.
    #[error("not a sealed record (stored in clear, or corrupt)")]
    NotSealed,
    /// Authentication failed.
    #[error(
        "authentication failed: the record was tampered with, moved from another record, \
         or sealed with another key"
    )]
    Authentication,
}

/// What a sealed record is bound to: column, job and record number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Aad<'a> {
    /// `table.column`, e.g. `model_versions.weights`.
    pub field: &'static str,
    /// Job id (or the secret's name for `meta.secret`).
    pub job_id: &'a str,
    /// Model version, ledger sequence, or 0.
    pub number: u64,
}

impl Aad<'_> {
    fn bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(64 + self.job_id.len());
        v.extend_from_slice(b"fedsec-at-rest-v1\0");
        v.extend_from_slice(self.field.as_bytes());
        v.push(0);
        v.extend_from_slice(&(self.job_id.len() as u64).to_be_bytes());
        v.extend_from_slice(self.job_id.as_bytes());
        v.extend_from_slice(&self.number.to_be_bytes());
        v
    }
}

/// The key sealing records at rest.
#[derive(Clone)]
pub struct AtRestKey {
    cipher: ChaCha20Poly1305,
}

impl std::fmt::Debug for AtRestKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AtRestKey(..)")
    }
}

impl AtRestKey {
    /// A key from its 32 bytes.
    pub fn from_bytes(key: &[u8; KEY_LEN]) -> Self {
        Self {
            cipher: ChaCha20Poly1305::new(&(*key).into()),
        }
    }

    /// Reads a key file: 64 hex digits, optionally followed by one newline;
    /// on Unix the file must not be accessible by group or others.
    pub fn load(path: &Path) -> Result<Self, KeyFileError> {
        let io = |source| KeyFileError::Io {
            path: path.to_owned(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(io)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o7777;
            if mode & 0o077 != 0 {
                return Err(KeyFileError::Permissions {
                    path: path.to_owned(),
                    mode,
                });
            }
        }
        let format = |problem: String| KeyFileError::Format {
            path: path.to_owned(),
            problem,
        };
        if !meta.is_file() || meta.len() > 1024 {
            return Err(format(
                "not a regular file of 64 hex digits (generate one with \
                 `fedsec-coordinator keys generate --out FILE`)"
                    .into(),
            ));
        }
        let text = std::fs::read(path).map_err(io)?;
        let body = text
            .strip_suffix(b"\r\n")
            .or_else(|| text.strip_suffix(b"\n"))
            .unwrap_or(&text);
        if body.len() != 2 * KEY_LEN {
            return Err(format(format!(
                "expected {} hex digits (a {}-bit key) and an optional newline, found {} bytes",
                2 * KEY_LEN,
                8 * KEY_LEN,
                text.len()
            )));
        }
        let mut key = [0u8; KEY_LEN];
        hex::decode_to_slice(body, &mut key)
            .map_err(|e| format(format!("not hexadecimal: {e}")))?;
        if key.iter().all(|&b| b == key[0]) {
            return Err(format(
                "the key is a repeated byte; use a random key (`keys generate`)".into(),
            ));
        }
        Ok(Self::from_bytes(&key))
    }

    /// Writes a fresh random key file (64 hex digits and a newline) with
    /// mode 0600; refuses an existing file unless `force`.
    pub fn generate_file(path: &Path, force: bool) -> Result<(), KeyFileError> {
        let mut key = [0u8; KEY_LEN];
        rand::fill(&mut key[..]);
        let existing = if force {
            Existing::Truncate
        } else {
            Existing::Refuse
        };
        let text = format!("{}\n", hex::encode(key));
        private_file::write(path, text.as_bytes(), existing).map_err(|source| {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                KeyFileError::Exists(path.to_owned())
            } else {
                KeyFileError::Io {
                    path: path.to_owned(),
                    source,
                }
            }
        })
    }

    /// Seals `plaintext` bound to `aad` with a fresh random nonce.
    pub fn seal(&self, aad: &Aad<'_>, plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::fill(&mut nonce[..]);
        let ad = aad.bytes();
        let mut out = Vec::with_capacity(plaintext.len() + OVERHEAD);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&nonce);
        // Encryption with a valid key cannot fail for inputs below 256 GiB.
        let ct = self
            .cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: &ad,
                },
            )
            .unwrap_or_default();
        out.extend_from_slice(&ct);
        out
    }

    /// Opens a record sealed by [`Self::seal`] with the same `aad`.
    pub fn open(&self, aad: &Aad<'_>, sealed: &[u8]) -> Result<Vec<u8>, SealError> {
        if sealed.len() < OVERHEAD || !sealed.starts_with(MAGIC) {
            return Err(SealError::NotSealed);
        }
        let (nonce, ct) = sealed[MAGIC.len()..].split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| SealError::NotSealed)?;
        let ad = aad.bytes();
        self.cipher
            .decrypt(&Nonce::from(nonce), Payload { msg: ct, aad: &ad })
            .map_err(|_| SealError::Authentication)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aad<'a>(field: &'static str, job: &'a str, n: u64) -> Aad<'a> {
        Aad {
            field,
            job_id: job,
            number: n,
        }
    }

    #[test]
    fn round_trip_and_fresh_nonces() {
        let k = AtRestKey::from_bytes(&[7; 32]);
        let a = aad("model_versions.weights", "j", 3);
        let msg = b"weights weights weights";
        let s1 = k.seal(&a, msg);
        let s2 = k.seal(&a, msg);
        assert_eq!(s1.len(), msg.len() + OVERHEAD);
        assert_ne!(s1, s2, "a random nonce per record");
        assert!(!s1.windows(msg.len()).any(|w| w == msg));
        assert_eq!(k.open(&a, &s1).unwrap(), msg);
        assert_eq!(k.open(&a, &s2).unwrap(), msg);
        assert_eq!(k.open(&a, &k.seal(&a, b"")).unwrap(), b"");
    }

    #[test]
    fn wrong_key_tampering_and_swaps_fail() {
        let k = AtRestKey::from_bytes(&[7; 32]);
        let a = aad("model_versions.weights", "j", 3);
        let s = k.seal(&a, b"payload");
        let other = AtRestKey::from_bytes(&[8; 32]);
        assert_eq!(other.open(&a, &s), Err(SealError::Authentication));
        for i in MAGIC.len()..s.len() {
            let mut t = s.clone();
            t[i] ^= 1;
            assert_eq!(k.open(&a, &t), Err(SealError::Authentication), "byte {i}");
        }
        // Bound to column, job and number.
        for wrong in [
            aad("model_versions.momentum", "j", 3),
            aad("model_versions.weights", "k", 3),
            aad("model_versions.weights", "j", 4),
        ] {
            assert_eq!(k.open(&wrong, &s), Err(SealError::Authentication));
        }
        assert_eq!(k.open(&a, b"payload"), Err(SealError::NotSealed));
        assert_eq!(k.open(&a, &s[..OVERHEAD - 1]), Err(SealError::NotSealed));
    }

    #[test]
    fn key_files_are_generated_private_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("at-rest.key");
        AtRestKey::generate_file(&path, false).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.len(), 65);
        assert!(text.trim_end().chars().all(|c| c.is_ascii_hexdigit()));
        let k = AtRestKey::load(&path).unwrap();
        let a = aad("ledger.charge_json", "j", 1);
        assert_eq!(k.open(&a, &k.seal(&a, b"x")).unwrap(), b"x");
        assert!(matches!(
            AtRestKey::generate_file(&path, false),
            Err(KeyFileError::Exists(_))
        ));
        AtRestKey::generate_file(&path, true).unwrap();
        assert_ne!(std::fs::read_to_string(&path).unwrap(), text);

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
            let e = AtRestKey::load(&path).unwrap_err();
            assert!(
                matches!(e, KeyFileError::Permissions { mode: 0o640, .. }),
                "{e}"
            );
            assert!(e.to_string().contains("chmod 600"), "{e}");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let write = |content: &str| {
            std::fs::write(&path, content).unwrap();
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
            }
        };
        let reject = |content: &str, needle: &str| {
            std::fs::remove_file(&path).ok();
            write(content);
            let e = AtRestKey::load(&path).unwrap_err();
            assert!(e.to_string().contains(needle), "{content:?}: {e}");
        };
        reject(&"ab".repeat(31), "expected 64 hex digits");
        reject(&"ab".repeat(33), "expected 64 hex digits");
        reject(&format!("{}zz", "ab".repeat(31)), "not hexadecimal");
        reject(&"00".repeat(32), "repeated byte");
        std::fs::remove_file(&path).ok();
        write(&format!("{}\r\n", "0123456789abcdef".repeat(4)));
        AtRestKey::load(&path).unwrap();
        assert!(matches!(
            AtRestKey::load(&dir.path().join("missing")),
            Err(KeyFileError::Io { .. })
        ));
    }
}
