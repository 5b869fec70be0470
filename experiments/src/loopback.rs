//! A real coordinator on loopback for the demo and the audit experiment: a
//! development PKI on disk and the coordinator configuration that uses it.
//! Callers adjust the configuration (poll interval, dangerous flags) and
//! start it with [`fedsec_coordinator::Coordinator::start`].

use std::path::Path;

use fedsec_coordinator::CoordinatorConfig;
use fedsec_proto::devca::{DevPkiManifest, DevPkiOptions, write_dev_pki};

use crate::error::{Error, Result};

/// Writes a development PKI for `clients` participants under `work/pki` and
/// returns it with a coordinator configuration on `127.0.0.1:<any port>`,
/// its SQLite store in `work/coordinator`, the PKI's server certificate, its
/// admin identity, and no metrics endpoint.
pub fn dev_coordinator(work: &Path, clients: usize) -> Result<(DevPkiManifest, CoordinatorConfig)> {
    let pki = write_dev_pki(
        &work.join("pki"),
        &DevPkiOptions {
            clients,
            force: true,
            ..DevPkiOptions::default()
        },
    )
    .map_err(|e| Error::Config(format!("dev PKI: {e}")))?;
    let mut config = CoordinatorConfig {
        listen: "127.0.0.1:0"
            .parse()
            .map_err(|e| Error::Config(format!("{e}")))?,
        data_dir: work.join("coordinator"),
        tls: Some(pki.server.clone()),
        admins: vec![pki.admin_name.clone()],
        ..CoordinatorConfig::default()
    };
    config.metrics.enabled = false;
    // The PKI's release signing key; clients verify with its public half.
    config.signing.key_file = pki.release_signing_key.clone();
    // Every client of the one-process demo connects from 127.0.0.1 at once.
    config.limits.max_pending_handshakes_per_address = config.limits.max_pending_handshakes;
    Ok((pki, config))
}
