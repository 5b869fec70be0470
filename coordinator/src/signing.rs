//! The release signing key (issue 21): loaded at start from
//! `[signing] key_file`, or the default `<data_dir>/release-signing.pem`,
//! which is created (with its public key next to it) on first start. An
//! explicitly configured key must exist: a missing one is a clear error,
//! never a silently new key that every client would refuse.

use fedsec_proto::release::{ReleaseKey, public_key_path};

use crate::config::{ConfigError, CoordinatorConfig};
use crate::error::Error;

/// Where the key came from, for the log and the audit row.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub(crate) key: ReleaseKey,
    pub(crate) detail: String,
}

/// Loads (or, for the default path only, creates) the release key.
pub(crate) fn load(config: &CoordinatorConfig) -> Result<Loaded, Error> {
    let (path, may_create) = config.signing.key_path(&config.data_dir);
    if may_create && !path.exists() {
        let key = ReleaseKey::generate();
        let public = key.write(&path, false)?;
        let id = key.public().key_id();
        tracing::warn!(
            key_id = %id,
            key = %path.display(),
            public_key = %public.display(),
            "created a release signing key (no [signing] key_file was set): give clients its \
             public key with the CA bundle"
        );
        return Ok(Loaded {
            detail: format!(
                "created key {id} at {} (public key {})",
                path.display(),
                public.display()
            ),
            key,
        });
    }
    let key = ReleaseKey::load(&path).map_err(|e| {
        if may_create {
            Error::Signing(e)
        } else {
            Error::Config(ConfigError::invalid("signing.key_file", e.to_string()))
        }
    })?;
    let id = key.public().key_id();
    tracing::info!(key_id = %id, key = %path.display(), "release signing key loaded");
    Ok(Loaded {
        detail: format!(
            "loaded key {id} from {} (public key {})",
            path.display(),
            public_key_path(&path).display()
        ),
        key,
    })
}
