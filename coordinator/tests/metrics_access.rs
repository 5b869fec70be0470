//! `/metrics` for remote scraping: a bearer token read from a private file,
//! served over TLS 1.3 with the server's certificate; requests without the
//! token are refused and counted; the token never reaches the logs.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;

use fedsec_proto::devca::Validity;
use fedsec_proto::tls::TlsFiles;
use support::Harness;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "metrics-scraper-token-0123456789abcdef";

async fn get(addr: std::net::SocketAddr, ca_pem: &str, authorization: Option<&str>) -> String {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut s = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    let auth = authorization
        .map(|a| format!("Authorization: {a}\r\n"))
        .unwrap_or_default();
    s.write_all(
        format!("GET /metrics HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut body = Vec::new();
    let _ = s.read_to_end(&mut body).await;
    String::from_utf8_lossy(&body).into_owned()
}

#[tokio::test]
async fn remote_scrapers_need_the_bearer_token_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let pki = support::pki();
    // The server certificate and key as files, for the [tls] section.
    let server = pki
        .ca()
        .issue_server(&["localhost".into()], Validity::Days(2))
        .unwrap();
    let (cert, key, ca) = (
        dir.path().join("server.pem"),
        dir.path().join("server.key"),
        dir.path().join("ca.pem"),
    );
    std::fs::write(&cert, &server.cert_pem).unwrap();
    std::fs::write(&key, &server.key_pem).unwrap();
    std::fs::write(&ca, pki.ca_pem()).unwrap();
    let token_file = dir.path().join("metrics.token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let h = Harness::start_with(|c| {
        c.tls = Some(TlsFiles {
            ca: ca.clone(),
            cert: cert.clone(),
            key: key.clone(),
        });
        c.metrics.bearer_token_file = Some(token_file.clone());
        c.metrics.tls = true;
    })
    .await;
    let addr = h.running().metrics_addr().unwrap();

    let ok = get(addr, pki.ca_pem(), Some(&format!("Bearer {TOKEN}"))).await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert!(ok.contains("fedsec_registered_clients"), "{ok}");
    for bad in [
        None,
        Some("Bearer wrong-token-wrong-token-wrong-token"),
        Some(TOKEN),
    ] {
        let r = get(addr, pki.ca_pem(), bad).await;
        assert!(r.starts_with("HTTP/1.1 401"), "{bad:?}: {r}");
        assert!(!r.contains("fedsec_"), "no metric leaks: {r}");
    }
    let after = get(addr, pki.ca_pem(), Some(&format!("Bearer {TOKEN}"))).await;
    assert!(
        after.contains("fedsec_metrics_unauthorized_total 3"),
        "{after}"
    );
    // Plain HTTP gets nothing.
    let mut plain = tokio::net::TcpStream::connect(addr).await.unwrap();
    plain
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut body = Vec::new();
    let _ = plain.read_to_end(&mut body).await;
    assert!(!String::from_utf8_lossy(&body).contains("fedsec_"));
}

#[tokio::test]
async fn a_readable_token_file_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("metrics.token");
    std::fs::write(&token_file, TOKEN).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let data = tempfile::tempdir().unwrap();
        let mut config = support::test_config(data.path());
        config.metrics.bearer_token_file = Some(token_file);
        let e = fedsec_coordinator::Coordinator::start_with_tls(
            config,
            support::pki().server_tls().clone(),
        )
        .await
        .unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("metrics.bearer_token_file"), "{msg}");
        assert!(msg.contains("chmod 600"), "{msg}");
        assert!(!msg.contains(TOKEN), "the token is never shown: {msg}");
    }
}
