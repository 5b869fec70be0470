//! Mutual TLS for fedsec's gRPC services, TLS 1.3 only, on rustls with the
//! `ring` provider.
//!
//! tonic's own TLS settings would also negotiate TLS 1.2 (tonic compiles
//! rustls with `tls12`), so fedsec terminates TLS itself:
//! [`ServerTls::incoming`] turns a TCP listener into a stream of
//! authenticated TLS streams for `Server::serve_with_incoming`, and
//! [`ClientTls::channel`] builds a tonic `Channel` whose connector performs the
//! TLS 1.3 handshake with the client certificate. Handlers still read the
//! peer's certificates with `Request::peer_certs()`.
//!
//! ## Identity
//!
//! Who a peer is comes from its certificate, never from a message: the
//! end-entity certificate carries exactly one URI subject alternative name
//! of the form
//!
//! - `spiffe://fedsec/tenant/<tenant_id>/client/<client_id>` for a client, or
//! - `spiffe://fedsec/admin/<name>` for an administrator,
//!
//! where ids match `[A-Za-z0-9][A-Za-z0-9._-]{0,63}`. The common name is set
//! to the same id for humans but is not used for authorisation.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;

/// Trust domain of fedsec identities in certificate URIs.
pub const TRUST_DOMAIN: &str = "fedsec";

/// Time a peer gets to complete the TLS handshake.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Installs rustls' `ring` provider as the process-wide default, once.
///
/// fedsec's own configs name their provider explicitly; this exists for other
/// rustls users in the same process, which would otherwise fail if two
/// providers were compiled in. Calling it again is harmless.
pub fn install_default_crypto_provider() {
    // An error only means a default was already installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Why TLS material could not be loaded or a connection set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// PEM data held no certificate.
    #[error("no certificate found in {0}")]
    NoCertificate(String),
    /// PEM data held no private key.
    #[error("no private key found in {0}: {1}")]
    NoPrivateKey(String, String),
    /// A certificate could not be parsed.
    #[error("invalid certificate in {0}: {1}")]
    BadCertificate(String, String),
    /// rustls refused the configuration (e.g. key does not match certificate).
    #[error("TLS configuration rejected: {0}")]
    Config(#[from] rustls::Error),
    /// The client-certificate verifier could not be built.
    #[error("cannot build the client certificate verifier: {0}")]
    Verifier(String),
    /// An endpoint URL that is not `https://host:port`.
    #[error("invalid endpoint {0:?}: {1}")]
    BadEndpoint(String, String),
}

/// Paths of the PEM files of one TLS identity and the CA it trusts.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// CA certificate(s) that peers' certificates must chain to.
    pub ca: PathBuf,
    /// This party's certificate chain.
    pub cert: PathBuf,
    /// This party's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// PEM bytes of one TLS identity and its trusted CA.
#[derive(Clone)]
pub struct TlsPem {
    /// CA certificate(s).
    pub ca: Vec<u8>,
    /// Certificate chain.
    pub cert: Vec<u8>,
    /// Private key.
    pub key: Vec<u8>,
}

impl std::fmt::Debug for TlsPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsPem").finish_non_exhaustive()
    }
}

impl TlsFiles {
    /// Reads the three files.
    pub fn read(&self) -> Result<TlsPem, TlsError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| TlsError::Read {
                path: path.to_owned(),
                source,
            })
        };
        Ok(TlsPem {
            ca: read(&self.ca)?,
            cert: read(&self.cert)?,
            key: read(&self.key)?,
        })
    }
}

fn certs(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::BadCertificate(what.into(), e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(what.into()));
    }
    Ok(certs)
}

fn private_key(pem: &[u8], what: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem)
        .map_err(|e| TlsError::NoPrivateKey(what.into(), e.to_string()))
}

fn roots(pem: &[u8]) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    for cert in certs(pem, "CA file")? {
        store
            .add(cert)
            .map_err(|e| TlsError::BadCertificate("CA file".into(), e.to_string()))?;
    }
    Ok(store)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Server side: TLS 1.3 only, client certificate required and verified
/// against the platform CA, ALPN `h2`.
#[derive(Clone)]
pub struct ServerTls {
    config: Arc<ServerConfig>,
    handshake_timeout: Duration,
    certificates: Arc<[CertificateDer<'static>]>,
    ca_certificates: Arc<[CertificateDer<'static>]>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("handshake_timeout", &self.handshake_timeout)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Builds the server configuration from PEM bytes.
    pub fn from_pem(pem: &TlsPem) -> Result<Self, TlsError> {
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots(&pem.ca)?), provider())
                .build()
                .map_err(|e| TlsError::Verifier(e.to_string()))?;
        let chain = certs(&pem.cert, "server certificate")?;
        let mut config = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), private_key(&pem.key, "server key")?)?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Self {
            config: Arc::new(config),
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            certificates: chain.into(),
            ca_certificates: certs(&pem.ca, "CA file")?.into(),
        })
    }

    /// Builds the server configuration from PEM files.
    pub fn from_files(files: &TlsFiles) -> Result<Self, TlsError> {
        Self::from_pem(&files.read()?)
    }

    /// Sets the time a peer gets to complete its handshake.
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// The underlying rustls configuration.
    pub fn rustls_config(&self) -> Arc<ServerConfig> {
        self.config.clone()
    }

    /// The server's certificate chain (DER, end-entity first), e.g. to
    /// watch its expiry.
    pub fn certificates(&self) -> &[CertificateDer<'static>] {
        &self.certificates
    }

    /// The CA certificates client certificates are verified against (DER).
    pub fn ca_certificates(&self) -> &[CertificateDer<'static>] {
        &self.ca_certificates
    }

    /// Accepts connections on `listener` and yields those whose TLS handshake
    /// succeeded, for `tonic::transport::Server::serve_with_incoming`.
    ///
    /// Handshakes run concurrently, each bounded by the handshake timeout, so
    /// a slow or silent peer cannot hold up others. Failed handshakes (no
    /// client certificate, unknown CA, expired certificate, TLS 1.2) are logged
    /// and dropped. Accepting stops when the returned stream is dropped.
    pub fn incoming(
        &self,
        listener: TcpListener,
    ) -> ReceiverStream<Result<TlsStream<TcpStream>, io::Error>> {
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let acceptor = tokio_rustls::TlsAcceptor::from(self.config.clone());
        let timeout = self.handshake_timeout;
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = tx.closed() => return,
                    accepted = listener.accept() => accepted,
                };
                let (tcp, peer) = match accepted {
                    Ok(conn) => conn,
                    Err(e) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let _ = tx.send(Ok(stream)).await;
                        }
                        Ok(Err(e)) => log_handshake_failure(peer, &e.to_string()),
                        Err(_) => log_handshake_failure(peer, "handshake timed out"),
                    }
                });
            }
        });
        ReceiverStream::new(rx)
    }
}

fn log_handshake_failure(peer: SocketAddr, reason: &str) {
    tracing::info!(%peer, reason, "TLS handshake refused");
}

/// Client side: TLS 1.3 only, the platform CA as the only root, a client
/// certificate presented, ALPN `h2`.
#[derive(Clone)]
pub struct ClientTls {
    config: Arc<ClientConfig>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls").finish_non_exhaustive()
    }
}

impl ClientTls {
    /// Builds the client configuration from PEM bytes.
    pub fn from_pem(pem: &TlsPem) -> Result<Self, TlsError> {
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(roots(&pem.ca)?)
            .with_client_auth_cert(
                certs(&pem.cert, "client certificate")?,
                private_key(&pem.key, "client key")?,
            )?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Self {
            config: Arc::new(config),
        })
    }

    /// Builds the client configuration from PEM files.
    pub fn from_files(files: &TlsFiles) -> Result<Self, TlsError> {
        Self::from_pem(&files.read()?)
    }

    /// Wraps a rustls configuration built elsewhere. It should offer ALPN
    /// `h2`; fedsec servers refuse anything but TLS 1.3 with a client
    /// certificate from their CA.
    pub fn from_rustls_config(config: Arc<ClientConfig>) -> Self {
        Self { config }
    }

    /// The underlying rustls configuration.
    pub fn rustls_config(&self) -> Arc<ClientConfig> {
        self.config.clone()
    }

    /// A lazily connecting tonic channel to `endpoint` (`https://host:port`).
    ///
    /// The server certificate must chain to the CA and name `host`. The
    /// connection is made on first use and re-made after failures; transport
    /// errors surface as `Unavailable`/`Unknown` statuses on the calls.
    pub fn channel(&self, endpoint: &str) -> Result<tonic::transport::Channel, TlsError> {
        let target = Target::parse(endpoint)?;
        // The connector below does TLS itself; tonic must not try again, so
        // the channel's own URI uses the plain scheme.
        let uri = format!("http://{}:{}", target.uri_host, target.port);
        let ep = tonic::transport::Endpoint::from_shared(uri)
            .map_err(|e| TlsError::BadEndpoint(endpoint.into(), e.to_string()))?
            .connect_timeout(Duration::from_secs(10))
            .initial_stream_window_size(8 << 20)
            .initial_connection_window_size(16 << 20)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(20))
            .keep_alive_while_idle(true);
        let connector = tokio_rustls::TlsConnector::from(self.config.clone());
        let target = Arc::new(target);
        let connect = tower::service_fn(move |_: http::Uri| {
            let connector = connector.clone();
            let target = target.clone();
            async move {
                let tcp = TcpStream::connect((target.connect_host.as_str(), target.port)).await?;
                tcp.set_nodelay(true)?;
                let tls = connector.connect(target.server_name.clone(), tcp).await?;
                Ok::<_, io::Error>(hyper_util::rt::TokioIo::new(tls))
            }
        });
        Ok(ep.connect_with_connector_lazy(connect))
    }
}

#[derive(Debug)]
struct Target {
    /// Host as written in a URI (IPv6 in brackets).
    uri_host: String,
    /// Host for `TcpStream::connect`.
    connect_host: String,
    port: u16,
    server_name: ServerName<'static>,
}

impl Target {
    fn parse(endpoint: &str) -> Result<Self, TlsError> {
        let bad = |why: &str| TlsError::BadEndpoint(endpoint.into(), why.into());
        let uri: http::Uri = endpoint.parse().map_err(|_| bad("not a URL"))?;
        if uri.scheme_str() != Some("https") {
            return Err(bad("the scheme must be https"));
        }
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        let uri_host = authority.host().to_owned();
        let connect_host = uri_host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = authority.port_u16().unwrap_or(443);
        let server_name =
            ServerName::try_from(connect_host.clone()).map_err(|_| bad("invalid host name"))?;
        Ok(Self {
            uri_host,
            connect_host,
            port,
            server_name,
        })
    }
}

/// A client of one tenant, as named in its certificate.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct ClientIdentity {
    /// Tenant the client belongs to.
    pub tenant_id: String,
    /// The client.
    pub client_id: String,
}

/// Who is on the other end of a connection.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PeerIdentity {
    /// A federated client.
    Client(ClientIdentity),
    /// An administrator.
    Admin {
        /// Administrator name.
        name: String,
    },
}

/// Why no identity could be established.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The connection carried no client certificate.
    #[error("no client certificate on this connection")]
    NoCertificate,
    /// The certificate could not be parsed.
    #[error("client certificate cannot be parsed: {0}")]
    Unparsable(String),
    /// No fedsec identity URI in the certificate.
    #[error("client certificate has no spiffe://{TRUST_DOMAIN}/ URI identity")]
    Missing,
    /// More than one fedsec identity URI.
    #[error("client certificate has more than one fedsec identity")]
    Ambiguous,
    /// An identity URI that does not follow the documented form.
    #[error("malformed identity {0:?}")]
    Malformed(String),
}

/// Whether `id` is a valid tenant, client or admin id.
pub fn is_valid_id(id: &str) -> bool {
    let b = id.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
}

impl ClientIdentity {
    /// A client identity, if both ids are valid.
    pub fn new(tenant_id: &str, client_id: &str) -> Result<Self, IdentityError> {
        if !is_valid_id(tenant_id) || !is_valid_id(client_id) {
            return Err(IdentityError::Malformed(format!("{tenant_id}/{client_id}")));
        }
        Ok(Self {
            tenant_id: tenant_id.into(),
            client_id: client_id.into(),
        })
    }
}

impl PeerIdentity {
    /// The identity's URI for a certificate SAN.
    pub fn to_uri(&self) -> String {
        match self {
            Self::Client(c) => format!(
                "spiffe://{TRUST_DOMAIN}/tenant/{}/client/{}",
                c.tenant_id, c.client_id
            ),
            Self::Admin { name } => format!("spiffe://{TRUST_DOMAIN}/admin/{name}"),
        }
    }

    /// Parses an identity URI.
    pub fn parse_uri(uri: &str) -> Result<Self, IdentityError> {
        let malformed = || IdentityError::Malformed(uri.into());
        let rest = uri
            .strip_prefix("spiffe://")
            .and_then(|r| r.strip_prefix(TRUST_DOMAIN))
            .and_then(|r| r.strip_prefix('/'))
            .ok_or_else(malformed)?;
        let parts: Vec<&str> = rest.split('/').collect();
        match parts.as_slice() {
            ["tenant", tenant, "client", client] => ClientIdentity::new(tenant, client)
                .map(Self::Client)
                .map_err(|_| malformed()),
            ["admin", name] if is_valid_id(name) => Ok(Self::Admin {
                name: (*name).into(),
            }),
            _ => Err(malformed()),
        }
    }

    /// The identity in a DER certificate.
    pub fn from_cert_der(der: &[u8]) -> Result<Self, IdentityError> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| IdentityError::Unparsable(e.to_string()))?;
        let san = cert
            .subject_alternative_name()
            .map_err(|e| IdentityError::Unparsable(e.to_string()))?
            .ok_or(IdentityError::Missing)?;
        let prefix = format!("spiffe://{TRUST_DOMAIN}/");
        let mut found = None;
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::URI(uri) = name
                && uri.starts_with(&prefix)
            {
                if found.is_some() {
                    return Err(IdentityError::Ambiguous);
                }
                found = Some(Self::parse_uri(uri)?);
            }
        }
        found.ok_or(IdentityError::Missing)
    }

    /// The identity of the peer that sent `request`, from its end-entity certificate.
    pub fn of_request<T>(request: &tonic::Request<T>) -> Result<Self, IdentityError> {
        let certs = request.peer_certs().ok_or(IdentityError::NoCertificate)?;
        let leaf = certs.first().ok_or(IdentityError::NoCertificate)?;
        Self::from_cert_der(leaf.as_ref())
    }
}

impl std::fmt::Display for PeerIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Client(c) => write!(f, "client {}/{}", c.tenant_id, c.client_id),
            Self::Admin { name } => write!(f, "admin {name}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_uris_roundtrip() {
        let c = PeerIdentity::Client(ClientIdentity::new("acme", "client-0001").unwrap());
        assert_eq!(c.to_uri(), "spiffe://fedsec/tenant/acme/client/client-0001");
        assert_eq!(PeerIdentity::parse_uri(&c.to_uri()), Ok(c));
        let a = PeerIdentity::Admin { name: "ops".into() };
        assert_eq!(PeerIdentity::parse_uri(&a.to_uri()), Ok(a));
    }

    #[test]
    fn malformed_identities_are_refused() {
        for bad in [
            "spiffe://other/tenant/a/client/b",
            "spiffe://fedsec/tenant/a/client/",
            "spiffe://fedsec/tenant/a/client/b/extra",
            "spiffe://fedsec/tenant/../client/b",
            "spiffe://fedsec/admin/",
            "https://fedsec/admin/x",
        ] {
            assert!(PeerIdentity::parse_uri(bad).is_err(), "{bad}");
        }
        assert!(!is_valid_id(&"a".repeat(65)));
        assert!(!is_valid_id("-a"));
        assert!(is_valid_id("tenant_1.eu-west"));
    }

    #[test]
    fn endpoints_are_parsed() {
        let t = Target::parse("https://localhost:7443").unwrap();
        assert_eq!((t.connect_host.as_str(), t.port), ("localhost", 7443));
        let t = Target::parse("https://[::1]:9000").unwrap();
        assert_eq!(
            (t.uri_host.as_str(), t.connect_host.as_str()),
            ("[::1]", "::1")
        );
        assert!(Target::parse("http://localhost:1").is_err());
        assert!(Target::parse("not a url").is_err());
    }
}
