//! How an operator reaches the demo's coordinator while it runs: its admin
//! endpoint and the development PKI's admin identity, written as
//! `<work>/admin.env` (the `FEDSEC_*` variables `fedsec-coordinator admin`
//! reads) so that the README's incident runbook can be walked on the demo
//! from a second terminal.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use fedsec_proto::devca::DevPkiManifest;
use fedsec_proto::private_file::{self, Existing};
use fedsec_proto::tls::TlsFiles;

use crate::error::{Error, Result};

/// File name of the environment file in the demo's working directory.
pub const ENV_FILE: &str = "admin.env";

/// The demo coordinator's admin access.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminAccess {
    /// Admin endpoint (the coordinator serves the Admin service on the same
    /// port as the participants' service), e.g. `https://localhost:40123`.
    pub endpoint: String,
    /// The CA, the admin certificate and its key.
    pub tls: TlsFiles,
    /// The demo's job id.
    pub job_id: String,
    /// (client id, tenant id) of every participant identity, in PKI order.
    pub identities: Vec<(String, String)>,
    /// Where [`AdminAccess::write_env`] wrote the environment file.
    pub env_file: PathBuf,
}

/// Quotes a value for a POSIX shell (`'…'`, with `'` written as `'\''`).
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

impl AdminAccess {
    /// The access of a coordinator at `endpoint` using the PKI `pki`; the
    /// environment file goes to `work/admin.env`.
    pub fn new(endpoint: String, pki: &DevPkiManifest, job_id: &str, work: &Path) -> Self {
        Self {
            endpoint,
            tls: pki.admin.clone(),
            job_id: job_id.to_owned(),
            identities: pki
                .clients
                .iter()
                .map(|c| (c.client_id.clone(), c.tenant_id.clone()))
                .collect(),
            env_file: work.join(ENV_FILE),
        }
    }

    /// The environment file's text: `export FEDSEC_ENDPOINT=…` and the
    /// CA, certificate and key paths (`FEDSEC_CA`, `FEDSEC_CERT`,
    /// `FEDSEC_KEY`), which `fedsec-coordinator admin` takes in place of
    /// `--endpoint`, `--ca`, `--cert` and `--key`.
    pub fn env_text(&self) -> String {
        let mut s = String::from(
            "# fedsec demo: its coordinator's admin access (README \"Incident runbook\").\n\
             # source this file, then: fedsec-coordinator admin jobs list\n",
        );
        for (k, v) in [
            ("FEDSEC_ENDPOINT", self.endpoint.clone()),
            ("FEDSEC_CA", self.tls.ca.display().to_string()),
            ("FEDSEC_CERT", self.tls.cert.display().to_string()),
            ("FEDSEC_KEY", self.tls.key.display().to_string()),
        ] {
            let _ = writeln!(s, "export {k}={}", sh_quote(&v));
        }
        let _ = writeln!(s, "export FEDSEC_DEMO_JOB={}", sh_quote(&self.job_id));
        s
    }

    /// Writes [`AdminAccess::env_text`] to [`AdminAccess::env_file`]
    /// (owner-only: it names a private key).
    pub fn write_env(&self) -> Result<()> {
        write_private(&self.env_file, &self.env_text())
    }

    /// Lines for the terminal: where the admin endpoint is and how to use it.
    pub fn lines(&self) -> Vec<String> {
        let example = self
            .identities
            .first()
            .map_or(("client-0001", "tenant-0001"), |(c, t)| {
                (c.as_str(), t.as_str())
            });
        vec![
            format!(
                "admin endpoint: {} (admin identity {}, CA {})",
                self.endpoint,
                self.tls.cert.display(),
                self.tls.ca.display()
            ),
            format!(
                "incident runbook: source {} && fedsec-coordinator admin jobs get {}   (job {}; e.g. client {} of tenant {})",
                self.env_file.display(),
                self.job_id,
                self.job_id,
                example.0,
                example.1
            ),
        ]
    }
}

fn write_private(path: &Path, text: &str) -> Result<()> {
    private_file::write(path, text.as_bytes(), Existing::Truncate).map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_text_exports_what_the_admin_cli_reads_and_quotes_paths() {
        let a = AdminAccess {
            endpoint: "https://localhost:4443".into(),
            tls: TlsFiles {
                ca: "/w/pki/ca.pem".into(),
                cert: "/w/it's/admin.pem".into(),
                key: "/w/pki/admin.key".into(),
            },
            job_id: "demo".into(),
            identities: vec![("client-0001".into(), "tenant-0001".into())],
            env_file: "/w/admin.env".into(),
        };
        let t = a.env_text();
        assert!(t.contains("export FEDSEC_ENDPOINT='https://localhost:4443'\n"));
        assert!(t.contains("export FEDSEC_CA='/w/pki/ca.pem'\n"));
        assert!(t.contains(r"export FEDSEC_CERT='/w/it'\''s/admin.pem'"));
        assert!(t.contains("export FEDSEC_KEY='/w/pki/admin.key'\n"));
        assert!(a.lines()[1].contains("source /w/admin.env"));
    }

    #[cfg(unix)]
    #[test]
    fn env_file_is_owner_only_even_over_a_loose_existing_file() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(ENV_FILE);
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&path, "export A=1\n").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "export A=1\n");
    }
}
