//! Fetching a JWKS over HTTPS: one HTTP/1.1 `GET` over rustls (hyper's
//! client connection, no connection pool), bounded in time and size.
//!
//! The response is hostile input like any other: the status must be 200,
//! the body at most [`MAX_JWKS_BYTES`], the whole exchange within the
//! configured timeout. Redirects are not followed (an IdP's `jwks_uri` is
//! the final URL).

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;

/// Largest JWKS document accepted (a JWKS of ~100 RSA-4096 keys fits).
pub(crate) const MAX_JWKS_BYTES: usize = 256 * 1024;

/// An `https://` URL, split for the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HttpsUrl {
    host: String,
    port: u16,
    path: String,
    text: String,
}

impl HttpsUrl {
    /// Parses an absolute `https://host[:port]/path` URL (no user info).
    pub(crate) fn parse(url: &str) -> Result<Self, String> {
        let uri: http::Uri = url
            .parse()
            .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
        if uri.scheme_str() != Some("https") {
            return Err(format!(
                "{url:?} must be an https:// URL (keys fetched in clear could be replaced on the way)"
            ));
        }
        let authority = uri
            .authority()
            .ok_or_else(|| format!("{url:?} has no host"))?;
        if authority.as_str().contains('@') {
            return Err(format!("{url:?}: user info in the URL is not supported"));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("{url:?} has no host"));
        }
        Ok(Self {
            host: host.to_owned(),
            port: authority.port_u16().unwrap_or(443),
            path: uri
                .path_and_query()
                .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned()),
            text: url.to_owned(),
        })
    }
}

impl std::fmt::Display for HttpsUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

/// The TLS client configuration for JWKS fetches: the CAs of `ca_pem`, or
/// Mozilla's roots without it; rustls' default protocol versions (the IdP
/// is a third party that may not speak TLS 1.3 yet).
pub(crate) fn client_config(ca_pem: Option<&[u8]>) -> Result<Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match ca_pem {
        Some(pem) => {
            let certs = CertificateDer::pem_slice_iter(pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("not PEM certificates: {e}"))?;
            if certs.is_empty() {
                return Err("no certificate in the file".into());
            }
            for c in certs {
                roots.add(c).map_err(|e| format!("unusable CA: {e}"))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// `GET url` within `timeout`; the body if the status is 200 and it is at
/// most [`MAX_JWKS_BYTES`].
pub(crate) async fn get(
    url: &HttpsUrl,
    tls: Arc<rustls::ClientConfig>,
    timeout: Duration,
) -> Result<Vec<u8>, String> {
    tokio::time::timeout(timeout, get_inner(url, tls))
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "no complete answer within {} ms",
                timeout.as_millis()
            ))
        })
}

async fn get_inner(url: &HttpsUrl, tls: Arc<rustls::ClientConfig>) -> Result<Vec<u8>, String> {
    let name = ServerName::try_from(url.host.clone())
        .map_err(|e| format!("invalid host name {:?}: {e}", url.host))?;
    let tcp = tokio::net::TcpStream::connect((url.host.as_str(), url.port))
        .await
        .map_err(|e| format!("cannot connect to {}:{}: {e}", url.host, url.port))?;
    let stream = tokio_rustls::TlsConnector::from(tls)
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS with {}: {e}", url.host))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP with {}: {e}", url.host))?;
    let driver = tokio::spawn(conn);
    let host = if url.port == 443 {
        url.host.clone()
    } else {
        format!("{}:{}", url.host, url.port)
    };
    let request = http::Request::get(url.path.as_str())
        .header(http::header::HOST, host)
        .header(
            http::header::ACCEPT,
            "application/json, application/jwk-set+json",
        )
        .header(http::header::USER_AGENT, "fedsec-coordinator")
        .body(Empty::<bytes::Bytes>::new())
        .map_err(|e| format!("request: {e}"))?;
    let result = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("HTTP with {}: {e}", url.host))?;
        if response.status() != http::StatusCode::OK {
            return Err(format!("{url} answered {}", response.status()));
        }
        let body = Limited::new(response.into_body(), MAX_JWKS_BYTES)
            .collect()
            .await
            .map_err(|e| {
                format!("reading the JWKS from {url}: {e} (limit {MAX_JWKS_BYTES} bytes)")
            })?;
        Ok(body.to_bytes().to_vec())
    }
    .await;
    driver.abort();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_urls_with_a_host() {
        let u = HttpsUrl::parse("https://idp.example.com/realms/x/certs?a=1").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("idp.example.com", 443));
        assert_eq!(u.path, "/realms/x/certs?a=1");
        let u = HttpsUrl::parse("https://127.0.0.1:8443").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("127.0.0.1", 8443, "/")
        );
        for bad in [
            "http://idp/certs",
            "idp/certs",
            "https://user:pw@idp/certs",
            "ftp://x/",
        ] {
            assert!(HttpsUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
