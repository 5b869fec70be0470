//! The `/metrics` HTTP endpoint and who may read it.
//!
//! The metrics are for the platform team, inside the trust boundary: they
//! carry exact round-level counts (participants, rejections) that no tenant
//! may see. So the endpoint listens on loopback by default; a remote
//! scraper needs a bearer token (`metrics.bearer_token_file`; the config
//! refuses a non-loopback address without one) and should get TLS
//! (`metrics.tls`, the gRPC server's certificate, TLS 1.3, no client
//! certificate) so the token never crosses the network in clear.
//!
//! A request without the right `Authorization: Bearer <token>` header gets
//! 401 and is counted in `fedsec_metrics_unauthorized_total`; the comparison
//! runs over SHA-256 digests, so its time does not depend on where the
//! tokens differ. The token is never logged or printed (its `Debug` is
//! redacted).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;

use super::Metrics;
use crate::error::Error;

/// Shortest accepted token.
pub(crate) const MIN_TOKEN_CHARS: usize = 32;

/// Time a scraper gets to complete its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshakes in progress at once (further connections wait in the backlog).
const MAX_HANDSHAKES: usize = 16;

/// The bearer token scrapers must present; only its digest is kept.
#[derive(Clone)]
pub(crate) struct BearerToken {
    digest: [u8; 32],
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

impl BearerToken {
    /// A token from its text (at least [`MIN_TOKEN_CHARS`] visible ASCII
    /// characters, no whitespace).
    pub(crate) fn new(token: &str) -> Result<Self, String> {
        if token.len() < MIN_TOKEN_CHARS {
            return Err(format!(
                "the token has {} characters; at least {MIN_TOKEN_CHARS} are required",
                token.len()
            ));
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("the token must be visible ASCII without whitespace".into());
        }
        Ok(Self {
            digest: Sha256::digest(token.as_bytes()).into(),
        })
    }

    /// Reads a token file (surrounding whitespace and a final newline are
    /// ignored). On Unix the file must not be readable by group or others.
    pub(crate) fn load(path: &Path) -> Result<Self, String> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let meta = std::fs::metadata(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(format!(
                    "{} has mode {mode:o}; it must not be readable by group or others \
                     (chmod 600)",
                    path.display()
                ));
            }
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::new(text.trim()).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Whether `headers` carry this token as `Authorization: Bearer …`.
    fn admits(&self, headers: &HeaderMap) -> bool {
        let Some(presented) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        else {
            return false;
        };
        let d: [u8; 32] = Sha256::digest(presented.trim().as_bytes()).into();
        // Constant time over the digests.
        d.iter()
            .zip(&self.digest)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

/// Who may read `/metrics` and how it is served.
#[derive(Debug, Clone, Default)]
pub(crate) struct Access {
    /// Required bearer token, if any.
    pub token: Option<BearerToken>,
    /// TLS configuration, if served over TLS.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// A TLS 1.3 server configuration without client authentication for the
/// metrics endpoint, from the gRPC server's certificate chain and key.
pub(crate) fn tls_config(
    cert_pem: &[u8],
    key_pem: &[u8],
) -> Result<Arc<rustls::ServerConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("server certificate: {e}"))?;
    if certs.is_empty() {
        return Err("server certificate: no certificate in the file".into());
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| format!("server key: {e}"))?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .map_err(|e| e.to_string())?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| e.to_string())?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// TLS connections whose handshakes completed, for `axum::serve`.
/// Handshakes run concurrently (at most [`MAX_HANDSHAKES`], each bounded by
/// [`HANDSHAKE_TIMEOUT`]), so a silent peer cannot stall the endpoint.
struct TlsListener {
    local: SocketAddr,
    rx: tokio::sync::mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    acceptor: tokio::task::JoinHandle<()>,
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

impl TlsListener {
    fn new(listener: TcpListener, config: Arc<rustls::ServerConfig>) -> Result<Self, Error> {
        let local = listener
            .local_addr()
            .map_err(|e| Error::io("metrics address", e))?;
        let (tx, rx) = tokio::sync::mpsc::channel(MAX_HANDSHAKES);
        let tls = tokio_rustls::TlsAcceptor::from(config);
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
        let acceptor = tokio::spawn(async move {
            loop {
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    return;
                };
                let (tcp, peer) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!(error = %e, "metrics: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (tls, tx) = (tls.clone(), tx.clone());
                tokio::spawn(async move {
                    let _permit = permit;
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let _ = tx.send((stream, peer)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "metrics: TLS handshake refused");
                        }
                        Err(_) => tracing::debug!(%peer, "metrics: TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self {
            local,
            rx,
            acceptor,
        })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(conn) => conn,
            // The acceptor only ends when the listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

fn exposition(metrics: &Metrics, access: &Access, headers: &HeaderMap) -> Response {
    if let Some(token) = &access.token
        && !token.admits(headers)
    {
        metrics.metrics_unauthorized();
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "a bearer token is required\n",
        )
            .into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.encode(),
    )
        .into_response()
}

/// Serves `GET /metrics` on `listener` until `shutdown` resolves.
pub(crate) async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    access: Access,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    use axum::routing::get;
    let tls = access.tls.clone();
    let access = Arc::new(access);
    let app = axum::Router::new().route(
        "/metrics",
        get(move |headers: HeaderMap| {
            let (metrics, access) = (metrics.clone(), access.clone());
            async move { exposition(&metrics, &access, &headers) }
        }),
    );
    let served = match tls {
        None => {
            axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
        Some(config) => {
            axum::serve(TlsListener::new(listener, config)?, app)
                .with_graceful_shutdown(shutdown)
                .await
        }
    };
    served.map_err(|e| Error::io("metrics server", e))
}

/// Binds the metrics listener.
pub(crate) async fn bind(addr: SocketAddr) -> Result<TcpListener, Error> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| Error::io(format!("cannot bind the metrics address {addr}"), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_checked_in_full_and_never_shown() {
        assert!(BearerToken::new("short").is_err());
        assert!(BearerToken::new(&format!("{} x", "a".repeat(40))).is_err());
        let t = BearerToken::new(&"s3cret-".repeat(6)).unwrap();
        assert_eq!(format!("{t:?}"), "BearerToken(<redacted>)");
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, v.parse().unwrap());
            h
        };
        assert!(t.admits(&with(&format!("Bearer {}", "s3cret-".repeat(6)))));
        assert!(!t.admits(&with(&format!("Bearer {}", "s3cret-".repeat(5)))));
        assert!(!t.admits(&with(&format!("Basic {}", "s3cret-".repeat(6)))));
        assert!(!t.admits(&HeaderMap::new()));
    }

    #[cfg(unix)]
    #[test]
    fn token_files_must_be_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("metrics.token");
        std::fs::write(&p, format!("{}\n", "t".repeat(40))).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = BearerToken::load(&p).unwrap_err();
        assert!(e.contains("chmod 600"), "{e}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(BearerToken::load(&p).is_ok());
    }
}
