//! The webhook: its URL (a secret: Slack's incoming-webhook URLs carry
//! their credential in the path) and one POST over hyper's HTTP/1.1 client
//! connection on tokio-rustls — the stack of the JWKS fetch
//! (`crate::auth::fetch`), no connection pool.
//!
//! The URL is never logged, never shown by `Debug`, never part of an
//! error: errors say "the webhook", and every message coming from a lower
//! layer passes [`WebhookUrl::redact`] first.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};

/// Largest webhook URL file accepted.
const MAX_URL_BYTES: u64 = 4096;

/// Most of a webhook's answer body read (then the connection is dropped).
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// The webhook's URL. `Debug` prints `WebhookUrl(<redacted>)`; there is no
/// `Display`.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct WebhookUrl {
    https: bool,
    host: String,
    port: u16,
    path: String,
    text: String,
}

impl std::fmt::Debug for WebhookUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookUrl(<redacted>)")
    }
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

impl WebhookUrl {
    /// Parses an absolute `https://` URL, or `http://` to a loopback host
    /// (any host with `allow_plain_http`). Errors never contain the URL.
    pub(crate) fn parse(text: &str, allow_plain_http: bool) -> Result<Self, String> {
        let text = text.trim();
        let uri: http::Uri = text
            .parse()
            .map_err(|_| "the file does not hold a valid absolute URL".to_owned())?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err("the URL must start with https:// (or http://)".into()),
        };
        let authority = uri
            .authority()
            .ok_or_else(|| "the URL has no host".to_owned())?;
        if authority.as_str().contains('@') {
            return Err("user info in the URL is not supported".into());
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        if host.is_empty() {
            return Err("the URL has no host".into());
        }
        if !https && !allow_plain_http && !is_loopback(&host) {
            return Err(
                "a plain http:// webhook is allowed only on a loopback address: alerts and the \
                 URL's credential would cross the network in clear (use https://, or set \
                 alerts.allow_plain_http = true)"
                    .into(),
            );
        }
        if https {
            ServerName::try_from(host.clone())
                .map_err(|_| "the URL's host is not a valid TLS server name".to_owned())?;
        }
        Ok(Self {
            https,
            port: authority.port_u16().unwrap_or(if https { 443 } else { 80 }),
            path: uri
                .path_and_query()
                .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned()),
            host,
            text: text.to_owned(),
        })
    }

    /// Reads the URL from `path`: at most 4 KiB, surrounding whitespace
    /// ignored, and on Unix not readable by group or others (like every
    /// secret file of the coordinator).
    pub(crate) fn load(path: &Path, allow_plain_http: bool) -> Result<Self, String> {
        let meta =
            std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(format!(
                    "{} has mode {mode:o}; it must not be readable by group or others (chmod 600): \
                     the webhook URL is a credential",
                    path.display()
                ));
            }
        }
        if meta.len() > MAX_URL_BYTES {
            return Err(format!(
                "{} is larger than {MAX_URL_BYTES} bytes",
                path.display()
            ));
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::parse(&text, allow_plain_http).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Whether the webhook is reached over TLS.
    pub(crate) fn is_https(&self) -> bool {
        self.https
    }

    /// `message` with the URL, its path and its host replaced by
    /// placeholders (for errors of lower layers that may quote them).
    pub(crate) fn redact(&self, message: &str) -> String {
        let mut m = message.replace(&self.text, "<webhook>");
        if self.path.len() > 1 {
            m = m.replace(&self.path, "<webhook path>");
        }
        m.replace(&self.host, "<webhook host>")
    }
}

/// What one POST came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    /// A 2xx status.
    Delivered,
    /// Worth another try (no answer in time, connection or TLS error, 408,
    /// 429, 5xx); `after` is the server's `Retry-After`, if any.
    Retry {
        why: String,
        after: Option<Duration>,
    },
    /// The webhook refused the alert for good (another 4xx, e.g. a
    /// revoked Slack hook answers 403 or 404).
    Refused { why: String },
}

/// POSTs alert bodies to the webhook.
#[derive(Clone)]
pub(crate) struct Poster {
    url: WebhookUrl,
    tls: Option<Arc<rustls::ClientConfig>>,
    timeout: Duration,
}

impl std::fmt::Debug for Poster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Poster")
            .field("url", &self.url)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Poster {
    /// A poster for `url`; `ca_pem` are the CAs trusted for an https
    /// webhook (Mozilla's roots without it).
    pub(crate) fn new(
        url: WebhookUrl,
        ca_pem: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<Self, String> {
        let tls = if url.https {
            Some(crate::auth::fetch::client_config(ca_pem)?)
        } else {
            None
        };
        Ok(Self { url, tls, timeout })
    }

    /// One POST of `body` (`application/json`) within the timeout
    /// (connect, TLS, request and the answer's status and body).
    pub(crate) async fn post(&self, body: Bytes) -> Answer {
        match tokio::time::timeout(self.timeout, self.post_inner(body)).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(why)) => Answer::Retry {
                why: self.url.redact(&why),
                after: None,
            },
            Err(_) => Answer::Retry {
                why: format!(
                    "the webhook did not answer within {} ms",
                    self.timeout.as_millis()
                ),
                after: None,
            },
        }
    }

    async fn post_inner(&self, body: Bytes) -> Result<Answer, String> {
        let url = &self.url;
        let tcp = tokio::net::TcpStream::connect((url.host.as_str(), url.port))
            .await
            .map_err(|e| format!("cannot connect to the webhook: {e}"))?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            Some(tls) => {
                let name = ServerName::try_from(url.host.clone())
                    .map_err(|_| "invalid webhook host name".to_owned())?;
                let stream = tokio_rustls::TlsConnector::from(tls.clone())
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("TLS with the webhook: {e}"))?;
                exchange(url, stream, body).await
            }
            None => exchange(url, tcp, body).await,
        }
    }
}

/// `Retry-After` in seconds (the HTTP-date form is ignored).
fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    headers
        .get(http::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

async fn exchange<S>(url: &WebhookUrl, stream: S, body: Bytes) -> Result<Answer, String>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP with the webhook: {e}"))?;
    let driver = tokio::spawn(conn);
    let default_port = if url.https { 443 } else { 80 };
    let host = if url.port == default_port {
        url.host.clone()
    } else if url.host.contains(':') {
        format!("[{}]:{}", url.host, url.port)
    } else {
        format!("{}:{}", url.host, url.port)
    };
    let result = async {
        let request = http::Request::post(url.path.as_str())
            .header(http::header::HOST, host)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::USER_AGENT, "fedsec-coordinator")
            .body(Full::new(body))
            .map_err(|e| format!("request: {e}"))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("HTTP with the webhook: {e}"))?;
        let status = response.status();
        let after = retry_after(response.headers());
        // Read (a bounded part of) the answer, so a server that answers
        // before reading everything is not cut off mid-request.
        let _ = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await;
        Ok(if status.is_success() {
            Answer::Delivered
        } else if status.is_server_error()
            || status == http::StatusCode::TOO_MANY_REQUESTS
            || status == http::StatusCode::REQUEST_TIMEOUT
        {
            Answer::Retry {
                why: format!("the webhook answered {status}"),
                after,
            }
        } else {
            Answer::Refused {
                why: format!("the webhook answered {status}"),
            }
        })
    }
    .await;
    driver.abort();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "https://hooks.example.com/services/T000/B000/s3cr3tPath?x=1";

    #[test]
    fn urls_parse_without_quoting_themselves_in_errors() {
        let u = WebhookUrl::parse(SECRET, false).unwrap();
        assert!(u.is_https());
        assert_eq!((u.host.as_str(), u.port), ("hooks.example.com", 443));
        assert_eq!(u.path, "/services/T000/B000/s3cr3tPath?x=1");
        assert_eq!(format!("{u:?}"), "WebhookUrl(<redacted>)");
        let u = WebhookUrl::parse("http://127.0.0.1:9000/hook\n", false).unwrap();
        assert_eq!((u.port, u.https), (9000, false));
        assert!(WebhookUrl::parse("http://localhost/hook", false).is_ok());
        assert!(WebhookUrl::parse("http://[::1]:8/h", false).is_ok());
        for bad in [
            "http://hooks.example.com/s3cr3tPath",
            "ftp://hooks.example.com/s3cr3tPath",
            "hooks.example.com/s3cr3tPath",
            "https://user:s3cr3tPath@hooks.example.com/x",
            "s3cr3tPath with spaces",
        ] {
            let e = WebhookUrl::parse(bad, false).unwrap_err();
            assert!(!e.contains("s3cr3t") && !e.contains("example"), "{e}");
        }
        assert!(WebhookUrl::parse("http://hooks.example.com/x", true).is_ok());
    }

    #[test]
    fn redaction_hides_the_url_its_path_and_host() {
        let u = WebhookUrl::parse(SECRET, false).unwrap();
        let m = u.redact(&format!(
            "error for {SECRET}: GET /services/T000/B000/s3cr3tPath?x=1 on hooks.example.com"
        ));
        assert!(
            !m.contains("s3cr3t") && !m.contains("hooks.example.com"),
            "{m}"
        );
        assert!(
            m.contains("<webhook>") && m.contains("<webhook path>"),
            "{m}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn the_url_file_must_be_private_and_small() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("webhook.url");
        std::fs::write(&p, format!("{SECRET}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = WebhookUrl::load(&p, false).unwrap_err();
        assert!(e.contains("mode 644") && !e.contains("s3cr3t"), "{e}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(WebhookUrl::load(&p, false).unwrap().is_https());
        std::fs::write(&p, "x".repeat(5000)).unwrap();
        assert!(WebhookUrl::load(&p, false).unwrap_err().contains("larger"));
        std::fs::write(&p, "not a url s3cr3t").unwrap();
        let e = WebhookUrl::load(&p, false).unwrap_err();
        assert!(!e.contains("s3cr3t"), "{e}");
    }

    /// A one-request HTTPS server (TLS with a dev CA's certificate for
    /// `localhost`): returns its port and the request it receives.
    async fn https_server(
        ca: &fedsec_proto::devca::DevCa,
        status: &'static str,
    ) -> (u16, tokio::task::JoinHandle<String>) {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let cert = ca
            .issue_server(
                &["localhost".into()],
                fedsec_proto::devca::Validity::Days(30),
            )
            .unwrap();
        let chain = CertificateDer::pem_slice_iter(cert.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let task = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let Ok(mut tls) = acceptor.accept(tcp).await else {
                return String::from("<handshake failed>");
            };
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = tls.read(&mut buf).await.unwrap();
                got.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&got).into_owned();
                if let Some(head_end) = text.find("\r\n\r\n") {
                    let len: usize = text
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length: ")
                                .map(str::to_owned)
                        })
                        .map_or(0, |v| v.trim().parse().unwrap());
                    if got.len() >= head_end + 4 + len || n == 0 {
                        break;
                    }
                }
                if n == 0 {
                    break;
                }
            }
            let answer =
                format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            tls.write_all(answer.as_bytes()).await.unwrap();
            tls.shutdown().await.ok();
            String::from_utf8_lossy(&got).into_owned()
        });
        (port, task)
    }

    /// The HTTPS path: the webhook's CA from `ca_file`, a POST with the
    /// path, host and JSON body; 2xx delivered, 4xx refused for good; an
    /// unknown CA fails the handshake with an error that names neither the
    /// host nor the path.
    #[tokio::test]
    async fn posts_over_https_with_the_configured_ca() {
        let ca = fedsec_proto::devca::DevCa::generate("webhook CA").unwrap();
        let (port, request) = https_server(&ca, "200 OK").await;
        let url =
            WebhookUrl::parse(&format!("https://localhost:{port}/hook/s3cr3tPath"), false).unwrap();
        let poster =
            Poster::new(url, Some(ca.ca_pem().as_bytes()), Duration::from_secs(5)).unwrap();
        let answer = poster.post(Bytes::from_static(b"{\"kind\":\"x\"}")).await;
        assert_eq!(answer, Answer::Delivered);
        let request = request.await.unwrap();
        assert!(
            request.starts_with("POST /hook/s3cr3tPath HTTP/1.1\r\n"),
            "{request}"
        );
        let lower = request.to_ascii_lowercase();
        assert!(
            lower.contains(&format!("host: localhost:{port}")),
            "{request}"
        );
        assert!(
            lower.contains("content-type: application/json"),
            "{request}"
        );
        assert!(request.ends_with("{\"kind\":\"x\"}"), "{request}");

        let (port, _) = https_server(&ca, "404 Not Found").await;
        let url =
            WebhookUrl::parse(&format!("https://localhost:{port}/hook/s3cr3tPath"), false).unwrap();
        let poster =
            Poster::new(url, Some(ca.ca_pem().as_bytes()), Duration::from_secs(5)).unwrap();
        assert!(matches!(
            poster.post(Bytes::new()).await,
            Answer::Refused { .. }
        ));

        let other = fedsec_proto::devca::DevCa::generate("another CA").unwrap();
        let (port, _) = https_server(&ca, "200 OK").await;
        let url =
            WebhookUrl::parse(&format!("https://localhost:{port}/hook/s3cr3tPath"), false).unwrap();
        let poster =
            Poster::new(url, Some(other.ca_pem().as_bytes()), Duration::from_secs(5)).unwrap();
        match poster.post(Bytes::new()).await {
            Answer::Retry { why, .. } => {
                assert!(why.contains("TLS"), "{why}");
                assert!(
                    !why.contains("s3cr3t") && !why.contains("localhost"),
                    "{why}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn retry_after_seconds_are_read() {
        let mut h = http::HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(http::header::RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(
            http::header::RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), None);
    }
}
