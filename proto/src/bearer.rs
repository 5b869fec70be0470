//! OAuth2 bearer tokens a client attaches to every call
//! (`authorization: Bearer <JWT>`), for coordinators that require tokens on
//! top of mTLS (`[auth.tokens]`).
//!
//! [`TokenFile`] reads the token from a file and re-reads it whenever the
//! file changes (size or modification time), so an external agent (an IdP
//! helper, `fedsec-coordinator tokens issue`, a cron job) can refresh
//! short-lived tokens without restarting the client. [`BearerInterceptor`]
//! puts the current token on each call; without a token source it adds
//! nothing (coordinators without tokens).
//!
//! The file must hold one token (surrounding whitespace ignored), visible
//! ASCII, at most [`MAX_TOKEN_BYTES`]; on Unix it must not be readable by
//! group or others (a token is a credential). The token is never logged.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// Largest token accepted from a file (the coordinator's default limit).
pub const MAX_TOKEN_BYTES: usize = 8192;

/// Why a token file cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bearer token file {path}: {problem}")]
pub struct TokenFileError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong.
    pub problem: String,
}

#[derive(Debug)]
struct Cached {
    stamp: (Option<SystemTime>, u64),
    value: MetadataValue<Ascii>,
}

/// A token file, re-read when it changes.
#[derive(Debug)]
pub struct TokenFile {
    path: PathBuf,
    cached: Mutex<Option<Cached>>,
}

impl TokenFile {
    /// A token file at `path` (read on first use).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            cached: Mutex::new(None),
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, problem: impl Into<String>) -> TokenFileError {
        TokenFileError {
            path: self.path.clone(),
            problem: problem.into(),
        }
    }

    /// The `authorization` metadata value (`Bearer <token>`) of the file's
    /// current content.
    pub fn current(&self) -> Result<MetadataValue<Ascii>, TokenFileError> {
        let meta = std::fs::metadata(&self.path).map_err(|e| self.err(e.to_string()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(self.err(format!(
                    "readable by group or others (mode {mode:o}); chmod 600 it"
                )));
            }
        }
        let stamp = (meta.modified().ok(), meta.len());
        let mut cached = self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = cached.as_ref()
            && c.stamp == stamp
        {
            return Ok(c.value.clone());
        }
        if meta.len() > (MAX_TOKEN_BYTES + 64) as u64 {
            return Err(self.err(format!("larger than {MAX_TOKEN_BYTES} bytes")));
        }
        let text = std::fs::read_to_string(&self.path).map_err(|e| self.err(e.to_string()))?;
        let token = text.trim();
        if token.is_empty() {
            return Err(self.err("empty"));
        }
        if token.len() > MAX_TOKEN_BYTES || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(self.err(format!(
                "not one token of visible ASCII of at most {MAX_TOKEN_BYTES} bytes"
            )));
        }
        let value: MetadataValue<Ascii> = format!("Bearer {token}")
            .parse()
            .map_err(|_| self.err("not valid metadata"))?;
        *cached = Some(Cached {
            stamp,
            value: value.clone(),
        });
        Ok(value)
    }
}

/// Adds `authorization: Bearer <token>` to every call, when it has a token
/// source; a token that cannot be read fails the call locally with
/// `UNAUTHENTICATED` naming the file (nothing is sent).
#[derive(Debug, Clone, Default)]
pub struct BearerInterceptor {
    source: Option<Arc<TokenFile>>,
}

impl BearerInterceptor {
    /// No token (a coordinator without `[auth.tokens]`).
    pub fn none() -> Self {
        Self::default()
    }

    /// The token of `file`, re-read when it changes.
    pub fn from_file(file: impl Into<PathBuf>) -> Self {
        Self {
            source: Some(Arc::new(TokenFile::new(file))),
        }
    }

    /// `from_file` if `file` is set, else [`Self::none`].
    pub fn optional(file: Option<&Path>) -> Self {
        file.map_or_else(Self::none, Self::from_file)
    }

    /// Whether calls carry a token.
    pub fn is_active(&self) -> bool {
        self.source.is_some()
    }
}

impl Interceptor for BearerInterceptor {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(source) = &self.source {
            let value = source
                .current()
                .map_err(|e| Status::unauthenticated(e.to_string()))?;
            request.metadata_mut().insert("authorization", value);
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_file_is_re_read_when_it_changes_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        let write = |text: &str| {
            std::fs::write(&path, text).unwrap();
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            }
        };
        let mut i = BearerInterceptor::from_file(&path);
        assert_eq!(
            i.call(Request::new(())).unwrap_err().code(),
            tonic::Code::Unauthenticated
        );
        write("aaa.bbb.ccc\n");
        let r = i.call(Request::new(())).unwrap();
        assert_eq!(
            r.metadata().get("authorization").unwrap(),
            "Bearer aaa.bbb.ccc"
        );
        write("dddd.eeee.ffff\n");
        let r = i.call(Request::new(())).unwrap();
        assert_eq!(
            r.metadata().get("authorization").unwrap(),
            "Bearer dddd.eeee.ffff"
        );
        write("two tokens\n");
        assert!(i.call(Request::new(())).is_err());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            write("x.y.z");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let e = i.call(Request::new(())).unwrap_err();
            assert!(e.message().contains("chmod 600"), "{e:?}");
        }
        let r = BearerInterceptor::none().call(Request::new(())).unwrap();
        assert!(r.metadata().get("authorization").is_none());
    }
}
