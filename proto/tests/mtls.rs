//! Mutual TLS over loopback with a real tonic server and real certificates:
//! who gets in, who is refused, and what identity a handler sees.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use fedsec_proto::devca::{DevCa, Validity};
use fedsec_proto::tls::{ClientIdentity, ClientTls, PeerIdentity, ServerTls};
use fedsec_proto::v1::coordinator_client::CoordinatorClient;
use fedsec_proto::v1::coordinator_server::{Coordinator, CoordinatorServer};
use fedsec_proto::v1::{
    GetModelRequest, GetModelResponse, GetTaskRequest, GetTaskResponse, RegisterRequest,
    RegisterResponse, SubmitUpdateRequest, SubmitUpdateResponse,
};
use tokio::net::TcpListener;
use tonic::{Request, Response, Status, Streaming};

/// Answers `Register` with the identity taken from the caller's certificate.
#[derive(Default)]
struct Echo {
    calls: Arc<AtomicUsize>,
}

#[tonic::async_trait]
impl Coordinator for Echo {
    async fn register(
        &self,
        request: Request<RegisterRequest>,
    ) -> Result<Response<RegisterResponse>, Status> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        match PeerIdentity::of_request(&request) {
            Ok(PeerIdentity::Client(c)) => Ok(Response::new(RegisterResponse {
                client_id: c.client_id,
                tenant_id: c.tenant_id,
                ..Default::default()
            })),
            Ok(other) => Err(Status::permission_denied(format!(
                "{other} is not a client"
            ))),
            Err(e) => Err(Status::unauthenticated(e.to_string())),
        }
    }
    async fn get_task(
        &self,
        _: Request<GetTaskRequest>,
    ) -> Result<Response<GetTaskResponse>, Status> {
        Err(Status::unimplemented("not in this test"))
    }
    type GetModelStream = tokio_stream::Empty<Result<GetModelResponse, Status>>;
    async fn get_model(
        &self,
        _: Request<GetModelRequest>,
    ) -> Result<Response<Self::GetModelStream>, Status> {
        Err(Status::unimplemented("not in this test"))
    }
    async fn get_round_history(
        &self,
        _: Request<fedsec_proto::v1::GetRoundHistoryRequest>,
    ) -> Result<Response<fedsec_proto::v1::GetRoundHistoryResponse>, Status> {
        Err(Status::unimplemented("echo"))
    }

    async fn submit_update(
        &self,
        _: Request<Streaming<SubmitUpdateRequest>>,
    ) -> Result<Response<SubmitUpdateResponse>, Status> {
        Err(Status::unimplemented("not in this test"))
    }
}

struct Harness {
    ca: DevCa,
    endpoint: String,
    calls: Arc<AtomicUsize>,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

async fn start() -> Harness {
    let ca = DevCa::generate("test CA").unwrap();
    let server_cert = ca
        .issue_server(&["localhost".into(), "127.0.0.1".into()], Validity::Days(1))
        .unwrap();
    let tls = ServerTls::from_pem(&server_cert.pem_with_ca(&ca.ca_pem())).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let echo = Echo::default();
    let calls = echo.calls.clone();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let incoming = tls.incoming(listener);
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(CoordinatorServer::new(echo))
            .serve_with_incoming_shutdown(incoming, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    Harness {
        ca,
        endpoint: format!("https://localhost:{port}"),
        calls,
        _shutdown: tx,
    }
}

/// The call failed at the TLS layer for the given reason (a rustls alert or
/// verification error somewhere in the error's source chain).
fn assert_refused(err: &Status, reason: &str) {
    let text = format!("{err} {err:?}");
    assert!(
        text.contains(reason),
        "expected a {reason} refusal, got {text}"
    );
}

async fn register(tls: &ClientTls, endpoint: &str) -> Result<RegisterResponse, Status> {
    let channel = tls.channel(endpoint).unwrap();
    let mut client = CoordinatorClient::new(channel);
    client
        .register(RegisterRequest::default())
        .await
        .map(Response::into_inner)
}

#[tokio::test]
async fn valid_client_certificate_is_accepted_and_identity_reaches_the_handler() {
    let h = start().await;
    let id = ClientIdentity::new("shop-eu", "client-7").unwrap();
    let cert = h.ca.issue_client(&id).unwrap();
    let tls = ClientTls::from_pem(&cert.pem_with_ca(&h.ca.ca_pem())).unwrap();
    let resp = register(&tls, &h.endpoint).await.unwrap();
    assert_eq!(resp.tenant_id, "shop-eu");
    assert_eq!(resp.client_id, "client-7");
    // Also by IP address, which the server certificate names too.
    let port = h.endpoint.rsplit(':').next().unwrap();
    let resp = register(&tls, &format!("https://127.0.0.1:{port}"))
        .await
        .unwrap();
    assert_eq!(resp.client_id, "client-7");
    assert_eq!(h.calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn admin_identity_is_distinguished_from_clients() {
    let h = start().await;
    let cert = h.ca.issue_admin("ops").unwrap();
    let tls = ClientTls::from_pem(&cert.pem_with_ca(&h.ca.ca_pem())).unwrap();
    let err = register(&tls, &h.endpoint).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied);
    assert!(err.message().contains("admin ops"), "{}", err.message());
}

#[tokio::test]
async fn client_without_certificate_is_refused() {
    let h = start().await;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(h.ca.ca_pem().as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tls = ClientTls::from_rustls_config(Arc::new(config));
    let err = register(&tls, &h.endpoint).await.unwrap_err();
    assert_refused(&err, "CertificateRequired");
    assert_eq!(
        h.calls.load(Ordering::SeqCst),
        0,
        "the handler must never run"
    );
}

#[tokio::test]
async fn certificate_from_another_ca_is_refused() {
    let h = start().await;
    let rogue = DevCa::generate("rogue CA").unwrap();
    let cert = rogue
        .issue_client(&ClientIdentity::new("shop", "c1").unwrap())
        .unwrap();
    // The rogue client trusts the real CA (so the server is fine to it) but
    // presents a certificate the server cannot verify.
    let tls = ClientTls::from_pem(&cert.pem_with_ca(&h.ca.ca_pem())).unwrap();
    let err = register(&tls, &h.endpoint).await.unwrap_err();
    assert_refused(&err, "UnknownCA");
    assert_eq!(h.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn expired_certificate_is_refused() {
    let h = start().await;
    let id = PeerIdentity::Client(ClientIdentity::new("shop", "c1").unwrap());
    let cert = h.ca.issue_peer(&id, Validity::expired()).unwrap();
    let tls = ClientTls::from_pem(&cert.pem_with_ca(&h.ca.ca_pem())).unwrap();
    let err = register(&tls, &h.endpoint).await.unwrap_err();
    assert_refused(&err, "CertificateExpired");
    assert_eq!(h.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn client_refuses_a_server_from_another_ca() {
    let h = start().await;
    let other = DevCa::generate("other CA").unwrap();
    let cert =
        h.ca.issue_client(&ClientIdentity::new("shop", "c1").unwrap())
            .unwrap();
    // Valid client certificate, but the client trusts only `other`.
    let tls = ClientTls::from_pem(&cert.pem_with_ca(&other.ca_pem())).unwrap();
    let err = register(&tls, &h.endpoint).await.unwrap_err();
    assert_refused(&err, "UnknownIssuer");
    assert_eq!(h.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn tls_1_2_is_refused() {
    let h = start().await;
    let cert =
        h.ca.issue_client(&ClientIdentity::new("shop", "c1").unwrap())
            .unwrap();
    let pem = cert.pem_with_ca(&h.ca.ca_pem());
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(&pem.ca) {
        roots.add(c.unwrap()).unwrap();
    }
    let chain = rustls::pki_types::CertificateDer::pem_slice_iter(&pem.cert)
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(&pem.key).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS12])
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)
    .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tls = ClientTls::from_rustls_config(Arc::new(config));
    let err = register(&tls, &h.endpoint).await.unwrap_err();
    assert_refused(&err, "ProtocolVersion");
    assert_eq!(h.calls.load(Ordering::SeqCst), 0);
}

use rustls::pki_types::pem::PemObject;
