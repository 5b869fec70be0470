//! Naming a refused TLS handshake. When the coordinator refuses a client
//! certificate, TLS 1.3 lets the client finish its side of the handshake;
//! the refusal arrives as an alert that the HTTP/2 layer swallows, so the
//! failed call only says "connection closed". After such an ambiguous
//! failure the participant opens one bare TLS connection with the same
//! configuration and reads the coordinator's first bytes: an alert (or an
//! immediate close) names the problem precisely.

use std::time::Duration;

use fedsec_proto::tls::ClientTls;
use rustls::pki_types::ServerName;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::error::ConnectionError;

/// How long the probe waits for the coordinator's verdict after its handshake.
const VERDICT_WAIT: Duration = Duration::from_millis(1500);

fn host_port(endpoint: &str) -> Option<(String, u16)> {
    let uri: http::Uri = endpoint.parse().ok()?;
    let authority = uri.authority()?;
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    Some((host, authority.port_u16().unwrap_or(443)))
}

/// Connects once with `tls` and reports a certificate problem, if there is
/// one. `None` means the handshake was accepted (or the coordinator could not
/// be reached at all, which the failed call already says).
pub async fn diagnose(
    tls: &ClientTls,
    endpoint: &str,
    timeout: Duration,
) -> Option<ConnectionError> {
    let (host, port) = host_port(endpoint)?;
    let name = ServerName::try_from(host.clone()).ok()?;
    let connect = async {
        let tcp = TcpStream::connect((host.as_str(), port)).await.ok()?;
        let connector = tokio_rustls::TlsConnector::from(tls.rustls_config());
        let mut stream = match connector.connect(name, tcp).await {
            Ok(s) => s,
            Err(e) => return Some(ConnectionError::from_error(&e, endpoint)),
        };
        let mut buf = [0u8; 64];
        match tokio::time::timeout(VERDICT_WAIT, stream.read(&mut buf)).await {
            Ok(Err(e)) => Some(ConnectionError::from_error(&e, endpoint)),
            Ok(Ok(0)) => Some(ConnectionError::ClientCertificateRefused {
                endpoint: endpoint.to_owned(),
                detail: "the coordinator closed the connection right after the TLS handshake"
                    .into(),
            }),
            // Data (the HTTP/2 preface) or silence: the certificate was accepted.
            Ok(Ok(_)) | Err(_) => None,
        }
    };
    tokio::time::timeout(timeout, connect).await.ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_split_into_host_and_port() {
        assert_eq!(
            host_port("https://localhost:7443"),
            Some(("localhost".into(), 7443))
        );
        assert_eq!(host_port("https://[::1]:9"), Some(("::1".into(), 9)));
        assert_eq!(
            host_port("https://example.org"),
            Some(("example.org".into(), 443))
        );
        assert_eq!(host_port("not a uri"), None);
    }
}
