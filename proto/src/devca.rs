//! A development certificate authority built on rcgen.
//!
//! [`DevCa`] issues the certificates a fedsec deployment needs — a server
//! certificate, one client certificate per tenant client (identity in a
//! `spiffe://fedsec/...` URI SAN, see [`crate::tls`]) and an admin
//! certificate — and [`write_dev_pki`] writes a complete set into a directory
//! for `fedsec-coordinator certs init`. [`LoopbackPki`] is the in-memory
//! set for one coordinator on loopback (tests, benches, examples). Keys are
//! ECDSA P-256. Private keys are written with mode 0600.
//!
//! This is for development, tests and demos; production deployments use the
//! platform's own CA with the same identity convention.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::private_file::Existing;
use crate::tls::{ClientIdentity, ClientTls, PeerIdentity, ServerTls, TlsError, TlsFiles, TlsPem};

/// Why a certificate could not be issued or written.
#[derive(Debug, thiserror::Error)]
pub enum DevCaError {
    /// rcgen failed.
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// A name that cannot go into a certificate.
    #[error("invalid name {0:?}")]
    BadName(String),
    /// Writing a file failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The output directory already holds a CA.
    #[error("{0} already exists; refusing to overwrite certificates (use --force)")]
    Exists(PathBuf),
    /// Issued material could not be turned into a TLS configuration.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// A certificate and its private key, PEM encoded.
#[derive(Clone)]
pub struct IssuedCert {
    /// Certificate (PEM).
    pub cert_pem: String,
    /// Private key (PKCS#8 PEM).
    pub key_pem: String,
}

impl std::fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCert").finish_non_exhaustive()
    }
}

impl IssuedCert {
    /// This certificate with `ca_pem` as the trusted root, ready for
    /// [`ServerTls`](crate::tls::ServerTls) or [`ClientTls`](crate::tls::ClientTls).
    pub fn pem_with_ca(&self, ca_pem: &str) -> TlsPem {
        TlsPem {
            ca: ca_pem.as_bytes().to_vec(),
            cert: self.cert_pem.as_bytes().to_vec(),
            key: self.key_pem.as_bytes().to_vec(),
        }
    }
}

/// Validity period of an issued certificate.
#[derive(Debug, Clone, Copy)]
pub enum Validity {
    /// From one day ago for this many days.
    Days(i64),
    /// An explicit window (e.g. one in the past, to test expiry).
    Window {
        /// Start.
        not_before: OffsetDateTime,
        /// End.
        not_after: OffsetDateTime,
    },
}

impl Validity {
    fn apply(self, params: &mut CertificateParams) {
        match self {
            Self::Days(days) => {
                let now = OffsetDateTime::now_utc();
                params.not_before = now - Duration::days(1);
                params.not_after = now + Duration::days(days);
            }
            Self::Window {
                not_before,
                not_after,
            } => {
                params.not_before = not_before;
                params.not_after = not_after;
            }
        }
    }

    /// A window that ended a year ago.
    pub fn expired() -> Self {
        let now = OffsetDateTime::now_utc();
        Self::Window {
            not_before: now - Duration::days(730),
            not_after: now - Duration::days(365),
        }
    }
}

/// Default validity of issued certificates: one year.
pub const DEFAULT_VALIDITY: Validity = Validity::Days(365);

/// An in-memory certificate authority.
pub struct DevCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    key_pem: String,
}

impl std::fmt::Debug for DevCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevCa").finish_non_exhaustive()
    }
}

fn dn(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "fedsec dev");
    dn.push(DnType::CommonName, common_name);
    dn
}

impl DevCa {
    /// A new CA with a fresh key, valid for ten years.
    pub fn generate(common_name: &str) -> Result<Self, DevCaError> {
        let key = KeyPair::generate()?;
        let key_pem = key.serialize_pem();
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        Validity::Days(3650).apply(&mut params);
        let issuer = CertifiedIssuer::self_signed(params, key)?;
        Ok(Self { issuer, key_pem })
    }

    /// The CA certificate (PEM).
    pub fn ca_pem(&self) -> String {
        self.issuer.pem()
    }

    /// The CA private key (PEM).
    pub fn ca_key_pem(&self) -> &str {
        &self.key_pem
    }

    fn issue(
        &self,
        common_name: &str,
        sans: Vec<SanType>,
        eku: ExtendedKeyUsagePurpose,
        validity: Validity,
    ) -> Result<IssuedCert, DevCaError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(common_name);
        params.subject_alt_names = sans;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![eku];
        params.use_authority_key_identifier_extension = true;
        validity.apply(&mut params);
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// A server certificate for the given DNS names and IP addresses.
    pub fn issue_server(
        &self,
        names: &[String],
        validity: Validity,
    ) -> Result<IssuedCert, DevCaError> {
        let mut sans = Vec::new();
        for name in names {
            if let Ok(ip) = name.parse::<IpAddr>() {
                sans.push(SanType::IpAddress(ip));
            } else {
                let dns = name
                    .clone()
                    .try_into()
                    .map_err(|_| DevCaError::BadName(name.clone()))?;
                sans.push(SanType::DnsName(dns));
            }
        }
        let cn = names.first().map_or("fedsec coordinator", String::as_str);
        self.issue(cn, sans, ExtendedKeyUsagePurpose::ServerAuth, validity)
    }

    /// A certificate for a peer identity (client or admin).
    pub fn issue_peer(
        &self,
        identity: &PeerIdentity,
        validity: Validity,
    ) -> Result<IssuedCert, DevCaError> {
        let uri = identity.to_uri();
        let san = SanType::URI(
            uri.clone()
                .try_into()
                .map_err(|_| DevCaError::BadName(uri))?,
        );
        let cn = match identity {
            PeerIdentity::Client(c) => c.client_id.clone(),
            PeerIdentity::Admin { name } => name.clone(),
        };
        self.issue(
            &cn,
            vec![san],
            ExtendedKeyUsagePurpose::ClientAuth,
            validity,
        )
    }

    /// A client certificate with the default validity.
    pub fn issue_client(&self, id: &ClientIdentity) -> Result<IssuedCert, DevCaError> {
        self.issue_peer(&PeerIdentity::Client(id.clone()), DEFAULT_VALIDITY)
    }

    /// An admin certificate with the default validity.
    pub fn issue_admin(&self, name: &str) -> Result<IssuedCert, DevCaError> {
        self.issue_peer(&PeerIdentity::Admin { name: name.into() }, DEFAULT_VALIDITY)
    }
}

/// An in-memory development PKI for one coordinator on loopback: a fresh
/// CA, the server's TLS configuration (names `localhost` and `127.0.0.1`)
/// and client or admin TLS issued on demand. Nothing touches the disk. For
/// tests, benches and examples; [`write_dev_pki`] is the on-disk set.
pub struct LoopbackPki {
    ca: DevCa,
    ca_pem: String,
    server: ServerTls,
}

impl std::fmt::Debug for LoopbackPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoopbackPki").finish_non_exhaustive()
    }
}

impl LoopbackPki {
    /// A new CA named `common_name` and a server certificate for loopback.
    pub fn generate(common_name: &str) -> Result<Self, DevCaError> {
        let ca = DevCa::generate(common_name)?;
        let ca_pem = ca.ca_pem();
        let cert = ca.issue_server(&["localhost".into(), "127.0.0.1".into()], DEFAULT_VALIDITY)?;
        let server = ServerTls::from_pem(&cert.pem_with_ca(&ca_pem))?;
        Ok(Self { ca, ca_pem, server })
    }

    /// The CA, to issue further certificates.
    pub fn ca(&self) -> &DevCa {
        &self.ca
    }

    /// The CA certificate, PEM encoded.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// The server's TLS configuration.
    pub fn server_tls(&self) -> &ServerTls {
        &self.server
    }

    /// TLS for a new client certificate of `tenant`/`client_id`.
    pub fn client_tls(&self, tenant: &str, client_id: &str) -> Result<ClientTls, DevCaError> {
        let id = ClientIdentity::new(tenant, client_id)
            .map_err(|_| DevCaError::BadName(format!("{tenant}/{client_id}")))?;
        Ok(ClientTls::from_pem(
            &self.ca.issue_client(&id)?.pem_with_ca(&self.ca_pem),
        )?)
    }

    /// TLS for a new admin certificate named `name`.
    pub fn admin_tls(&self, name: &str) -> Result<ClientTls, DevCaError> {
        Ok(ClientTls::from_pem(
            &self.ca.issue_admin(name)?.pem_with_ca(&self.ca_pem),
        )?)
    }
}

/// What to put into a development PKI directory.
#[derive(Debug, Clone)]
pub struct DevPkiOptions {
    /// Number of client certificates.
    pub clients: usize,
    /// Tenant ids; clients are assigned to them round-robin. Empty: one tenant
    /// per client, named `tenant-0001`, `tenant-0002`, ...
    pub tenants: Vec<String>,
    /// Name of the admin identity.
    pub admin_name: String,
    /// DNS names / IPs of the server certificate.
    pub server_names: Vec<String>,
    /// Overwrite an existing directory.
    pub force: bool,
}

impl Default for DevPkiOptions {
    fn default() -> Self {
        Self {
            clients: 3,
            tenants: Vec::new(),
            admin_name: "admin".into(),
            server_names: vec!["localhost".into(), "127.0.0.1".into()],
            force: false,
        }
    }
}

/// Paths of one client's identity in a development PKI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientEntry {
    /// Tenant id.
    pub tenant_id: String,
    /// Client id.
    pub client_id: String,
    /// Certificate file.
    pub cert: PathBuf,
    /// Key file.
    pub key: PathBuf,
}

/// Index of a development PKI directory, written as `manifest.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevPkiManifest {
    /// CA certificate.
    pub ca: PathBuf,
    /// CA private key (keep it to issue more certificates later).
    pub ca_key: PathBuf,
    /// Server certificate and key.
    pub server: TlsFiles,
    /// Admin name.
    pub admin_name: String,
    /// Admin certificate and key.
    pub admin: TlsFiles,
    /// Client identities.
    pub clients: Vec<ClientEntry>,
    /// The coordinator's Ed25519 release signing key (`[signing]
    /// key_file`); absent in manifests written before issue 21.
    #[serde(default)]
    pub release_signing_key: Option<PathBuf>,
    /// Its public key, shipped to clients with the CA (`release_public_key`).
    #[serde(default)]
    pub release_public_key: Option<PathBuf>,
}

impl DevPkiManifest {
    /// Reads `manifest.json` from a PKI directory.
    pub fn load(dir: &Path) -> std::io::Result<Self> {
        let text = std::fs::read_to_string(dir.join("manifest.json"))?;
        serde_json::from_str(&text).map_err(std::io::Error::other)
    }

    /// TLS files of a client (CA, cert, key).
    pub fn client_files(&self, entry: &ClientEntry) -> TlsFiles {
        TlsFiles {
            ca: self.ca.clone(),
            cert: entry.cert.clone(),
            key: entry.key.clone(),
        }
    }
}

fn write_file(path: &Path, contents: &str, private: bool) -> Result<(), DevCaError> {
    let err = |source| DevCaError::Write {
        path: path.to_owned(),
        source,
    };
    if private {
        return crate::private_file::write(path, contents.as_bytes(), Existing::Truncate)
            .map_err(err);
    }
    let mut f = std::fs::File::create(path).map_err(err)?;
    f.write_all(contents.as_bytes()).map_err(err)?;
    f.sync_all().map_err(err)
}

/// Generates a CA, a server certificate, `opts.clients` client certificates and
/// an admin certificate, and writes them with `manifest.json` into `out`.
///
/// Layout: `ca.pem`, `ca.key`, `server.pem`, `server.key`, `admin.pem`,
/// `admin.key`, `clients/<client_id>.pem`, `clients/<client_id>.key`, and the
/// release signing key `release-signing.pem` (mode 0600) with its public key
/// `release-signing.pub.pem`. Paths in the manifest are absolute when `out` is.
pub fn write_dev_pki(out: &Path, opts: &DevPkiOptions) -> Result<DevPkiManifest, DevCaError> {
    let mk = |p: &Path| {
        std::fs::create_dir_all(p).map_err(|source| DevCaError::Write {
            path: p.to_owned(),
            source,
        })
    };
    if out.join("ca.pem").exists() && !opts.force {
        return Err(DevCaError::Exists(out.join("ca.pem")));
    }
    mk(out)?;
    mk(&out.join("clients"))?;
    let ca = DevCa::generate("fedsec dev CA")?;
    let ca_path = out.join("ca.pem");
    write_file(&ca_path, &ca.ca_pem(), false)?;
    write_file(&out.join("ca.key"), ca.ca_key_pem(), true)?;

    let write_pair = |stem: PathBuf, cert: &IssuedCert| -> Result<TlsFiles, DevCaError> {
        let files = TlsFiles {
            ca: ca_path.clone(),
            cert: stem.with_extension("pem"),
            key: stem.with_extension("key"),
        };
        write_file(&files.cert, &cert.cert_pem, false)?;
        write_file(&files.key, &cert.key_pem, true)?;
        Ok(files)
    };

    let server = write_pair(
        out.join("server"),
        &ca.issue_server(&opts.server_names, DEFAULT_VALIDITY)?,
    )?;
    let admin = write_pair(out.join("admin"), &ca.issue_admin(&opts.admin_name)?)?;
    let width = opts.clients.max(1).to_string().len().max(4);
    let mut clients = Vec::with_capacity(opts.clients);
    for i in 0..opts.clients {
        let tenant_id = if opts.tenants.is_empty() {
            format!("tenant-{:0width$}", i + 1)
        } else {
            opts.tenants[i % opts.tenants.len()].clone()
        };
        let client_id = format!("client-{:0width$}", i + 1);
        let id = ClientIdentity::new(&tenant_id, &client_id)
            .map_err(|_| DevCaError::BadName(tenant_id.clone()))?;
        let files = write_pair(out.join("clients").join(&client_id), &ca.issue_client(&id)?)?;
        clients.push(ClientEntry {
            tenant_id,
            client_id,
            cert: files.cert,
            key: files.key,
        });
    }
    // The release signing key travels with the CA bundle: the coordinator
    // signs with the private half, clients verify with the public one.
    let release_key = out.join("release-signing.pem");
    let release_public = crate::release::ReleaseKey::generate()
        .write(&release_key, true)
        .map_err(|e| DevCaError::Write {
            path: release_key.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
    let manifest = DevPkiManifest {
        ca: ca_path,
        ca_key: out.join("ca.key"),
        server,
        admin_name: opts.admin_name.clone(),
        admin,
        clients,
        release_signing_key: Some(release_key),
        release_public_key: Some(release_public),
    };
    let json = serde_json::to_string_pretty(&manifest).map_err(|e| DevCaError::Write {
        path: out.join("manifest.json"),
        source: std::io::Error::other(e),
    })?;
    write_file(&out.join("manifest.json"), &json, false)?;
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_client_cert_carries_its_identity() {
        let ca = DevCa::generate("test CA").unwrap();
        let id = ClientIdentity::new("bank", "c1").unwrap();
        let cert = ca.issue_client(&id).unwrap();
        let der =
            rustls::pki_types::CertificateDer::from_pem_slice(cert.cert_pem.as_bytes()).unwrap();
        assert_eq!(
            PeerIdentity::from_cert_der(der.as_ref()),
            Ok(PeerIdentity::Client(id))
        );
        let server = ca
            .issue_server(&["localhost".into()], DEFAULT_VALIDITY)
            .unwrap();
        let der =
            rustls::pki_types::CertificateDer::from_pem_slice(server.cert_pem.as_bytes()).unwrap();
        assert_eq!(
            PeerIdentity::from_cert_der(der.as_ref()),
            Err(crate::tls::IdentityError::Missing)
        );
    }

    use rustls::pki_types::pem::PemObject;

    #[test]
    fn pki_directory_has_private_keys_0600_and_refuses_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let opts = DevPkiOptions {
            clients: 3,
            tenants: vec!["shop".into(), "bank".into()],
            ..DevPkiOptions::default()
        };
        let m = write_dev_pki(dir.path(), &opts).unwrap();
        assert_eq!(m.clients.len(), 3);
        assert_eq!(m.clients[0].tenant_id, "shop");
        assert_eq!(m.clients[1].tenant_id, "bank");
        assert_eq!(m.clients[2].tenant_id, "shop");
        assert_eq!(DevPkiManifest::load(dir.path()).unwrap(), m);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for key in [&m.ca_key, &m.server.key, &m.admin.key, &m.clients[2].key] {
                let mode = std::fs::metadata(key).unwrap().permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{}", key.display());
            }
            let mode = std::fs::metadata(&m.ca).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o644);
        }
        assert!(matches!(
            write_dev_pki(dir.path(), &opts),
            Err(DevCaError::Exists(_))
        ));
        let forced = DevPkiOptions {
            force: true,
            ..opts
        };
        assert!(write_dev_pki(dir.path(), &forced).is_ok());
    }
}
