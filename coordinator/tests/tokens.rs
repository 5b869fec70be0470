//! OAuth2 / OIDC bearer tokens on top of mTLS (`[auth.tokens]`), over real
//! loopback mTLS, with the JWKS served over HTTPS by a tiny axum server
//! signed by the test PKI: every refusal the issue lists, its status and
//! message (never the token's contents), the audit row, JWKS rotation with
//! a rate-limited refetch, the embedded `tokens keygen` / `tokens issue` /
//! `admin --token-file` path, and tokens off = the behaviour without them.

#![allow(clippy::unwrap_used)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use fedsec_coordinator::auth::mint::{AccessClaims, SigningKey};
use fedsec_coordinator::config::TokensConfig;
use fedsec_coordinator::error::RejectReason;
use fedsec_proto::devca::{DEFAULT_VALIDITY, LoopbackPki};
use fedsec_proto::v1::admin_client::AdminClient;
use fedsec_proto::v1::coordinator_client::CoordinatorClient;
use fedsec_proto::v1::{
    GetTaskRequest, JobRef, ListAuditEventsRequest, ListJobsRequest, RegisterRequest,
};
use serde_json::json;
use support::{Harness, job, tenant_of};
use tonic::transport::Channel;
use tonic::{Code, Request};

const ISSUER: &str = "https://idp.test/realms/fedsec";
const AUDIENCE: &str = "fedsec-coordinator";

/// A JWKS served over HTTPS (TLS 1.3, the test PKI's CA), counting fetches.
struct JwksServer {
    url: String,
    ca_pem: String,
    jwks: Arc<Mutex<serde_json::Value>>,
    fetches: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl JwksServer {
    async fn start(pki: &LoopbackPki, keys: &[&SigningKey]) -> Self {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let issued = pki
            .ca()
            .issue_server(&["localhost".into(), "127.0.0.1".into()], DEFAULT_VALIDITY)
            .unwrap();
        let certs = CertificateDer::pem_slice_iter(issued.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).unwrap();
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let jwks = Arc::new(Mutex::new(jwks_of(keys)));
        let fetches = Arc::new(AtomicUsize::new(0));
        let app = {
            let (jwks, fetches) = (jwks.clone(), fetches.clone());
            axum::Router::new().route(
                "/realms/fedsec/protocol/openid-connect/certs",
                axum::routing::get(move || {
                    let (jwks, fetches) = (jwks.clone(), fetches.clone());
                    async move {
                        fetches.fetch_add(1, Ordering::SeqCst);
                        (
                            [(axum::http::header::CONTENT_TYPE, "application/json")],
                            jwks.lock().unwrap().to_string(),
                        )
                    }
                }),
            )
        };
        let task = tokio::spawn(async move {
            let _ = axum::serve(TlsListener { listener, acceptor }, app).await;
        });
        Self {
            url: format!("https://localhost:{port}/realms/fedsec/protocol/openid-connect/certs"),
            ca_pem: pki.ca_pem().to_owned(),
            jwks,
            fetches,
            task,
        }
    }

    fn serve(&self, keys: &[&SigningKey]) {
        *self.jwks.lock().unwrap() = jwks_of(keys);
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

/// Completed TLS connections for `axum::serve` (handshakes one at a time:
/// the only client is the coordinator under test).
struct TlsListener {
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Ok((tcp, peer)) = self.listener.accept().await else {
                continue;
            };
            if let Ok(Ok(tls)) =
                tokio::time::timeout(Duration::from_secs(5), self.acceptor.accept(tcp)).await
            {
                return (tls, peer);
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.listener.local_addr()
    }
}

fn jwks_of(keys: &[&SigningKey]) -> serde_json::Value {
    json!({ "keys": keys.iter().map(|k| k.public_jwk()).collect::<Vec<_>>() })
}

/// A coordinator requiring tokens from `server`'s JWKS.
async fn start(
    server: &JwksServer,
    pki: Arc<LoopbackPki>,
    tweak: impl FnOnce(&mut TokensConfig),
) -> Harness {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let ca = dir.path().join("idp-ca.pem");
    std::fs::write(&ca, &server.ca_pem).unwrap();
    let mut tokens = TokensConfig::with_jwks_file(ISSUER, AUDIENCE, "unused");
    tokens.jwks_file = None;
    tokens.jwks_url = Some(server.url.clone());
    tokens.jwks_ca = Some(ca);
    tweak(&mut tokens);
    let mut config = support::test_config(dir.path());
    config.auth.tokens = Some(tokens);
    // These tests send many refused tokens on one connection; past the
    // Refused bucket (default burst 10) the coordinator closes it.
    config.rate_limits.refused_burst = 1000;
    let running = fedsec_coordinator::Coordinator::start_with_tls(config, pki.server_tls().clone())
        .await
        .unwrap();
    Harness {
        pki,
        dir,
        running: Some(running),
    }
}

fn client_uri(id: &str) -> String {
    format!("spiffe://fedsec/tenant/{}/client/{id}", tenant_of(id))
}

fn claims(sub: &str, scope: &str) -> AccessClaims {
    AccessClaims::new(
        ISSUER,
        AUDIENCE,
        sub,
        &[scope.to_owned()],
        Duration::from_secs(300),
    )
    .unwrap()
}

fn with_token<T>(msg: T, token: Option<&str>) -> Request<T> {
    let mut r = Request::new(msg);
    if let Some(t) = token {
        r.metadata_mut()
            .insert("authorization", format!("Bearer {t}").parse().unwrap());
    }
    r
}

fn grpc(h: &Harness, id: &str) -> CoordinatorClient<Channel> {
    CoordinatorClient::new(
        h.pki
            .client_tls(&tenant_of(id), id)
            .unwrap()
            .channel(&h.endpoint())
            .unwrap(),
    )
}

async fn register(
    c: &mut CoordinatorClient<Channel>,
    token: Option<&str>,
) -> Result<(), tonic::Status> {
    c.register(with_token(
        RegisterRequest {
            software: "tokens-test".into(),
        },
        token,
    ))
    .await
    .map(|_| ())
}

/// The status of `Register` with `token`, checked for `code` and `needle`,
/// and for not echoing any of `secrets`.
async fn refused(
    c: &mut CoordinatorClient<Channel>,
    token: &str,
    code: Code,
    needle: &str,
    secrets: &[&str],
) {
    let s = register(c, Some(token)).await.unwrap_err();
    assert_eq!(s.code(), code, "{needle}: {s:?}");
    assert!(
        s.message().contains(needle),
        "expected {needle:?} in {:?}",
        s.message()
    );
    for secret in secrets {
        assert!(
            !s.message().contains(secret),
            "{secret:?} leaked: {:?}",
            s.message()
        );
    }
}

/// Every bad token of the issue's list is refused with its status and a
/// message naming the check, never the token's contents; a good token
/// passes; refusals are audited and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_bad_token_is_refused_with_its_status_and_a_good_one_passes() {
    let pki = support::pki();
    let (key, _) = SigningKey::generate().unwrap();
    let (other, _) = SigningKey::generate().unwrap();
    let server = JwksServer::start(&pki, &[&key]).await;
    let h = start(&server, pki, |_| {}).await;
    let mut c = grpc(&h, "c000");
    let me = client_uri("c000");
    let now = jsonwebtoken::get_current_timestamp();

    // No token: UNAUTHENTICATED, and nothing reaches the service.
    let s = register(&mut c, None).await.unwrap_err();
    assert_eq!(s.code(), Code::Unauthenticated, "{s:?}");
    assert!(s.message().contains("bearer token is required"), "{s:?}");

    // A good token.
    let good = key.issue(&claims(&me, "fedsec.client")).unwrap();
    register(&mut c, Some(&good)).await.unwrap();
    c.get_task(with_token(
        GetTaskRequest {
            job_id: String::new(),
        },
        Some(&good),
    ))
    .await
    .unwrap();

    let secret_jti = "jti-secret-4711";
    let mint = |f: &dyn Fn(&mut AccessClaims)| {
        let mut cl = claims(&me, "fedsec.client");
        cl.jti = secret_jti.into();
        f(&mut cl);
        key.issue(&cl).unwrap()
    };
    let secrets = [secret_jti];
    // Expired beyond the 60 s skew; not yet valid beyond it.
    let t = mint(&|c| {
        c.iat = now - 3600;
        c.nbf = now - 3600;
        c.exp = now - 120;
    });
    refused(&mut c, &t, Code::Unauthenticated, "expired", &secrets).await;
    // Within the skew, an expired token still passes (configurable skew).
    let t = mint(&|c| c.exp = now - 30);
    register(&mut c, Some(&t)).await.unwrap();
    let t = mint(&|c| c.nbf = now + 3600);
    refused(&mut c, &t, Code::Unauthenticated, "not yet valid", &secrets).await;
    let t = mint(&|c| c.aud = "someone-else".into());
    refused(
        &mut c,
        &t,
        Code::Unauthenticated,
        "wrong audience",
        &["someone-else", secret_jti],
    )
    .await;
    let t = mint(&|c| c.iss = "https://evil.test".into());
    refused(
        &mut c,
        &t,
        Code::Unauthenticated,
        "wrong issuer",
        &["evil.test", secret_jti],
    )
    .await;
    // Wrong scope: valid token, not for this service.
    let t = mint(&|c| c.scope = "fedsec.admin.read fedsec.admin.write".into());
    refused(
        &mut c,
        &t,
        Code::PermissionDenied,
        "lacks the scope \"fedsec.client\"",
        &secrets,
    )
    .await;
    // Subject ≠ certificate: c001's token presented by c000.
    let t = mint(&|c| c.sub = client_uri("c001"));
    refused(
        &mut c,
        &t,
        Code::Unauthenticated,
        "not issued to this caller",
        &["c001", secret_jti],
    )
    .await;
    // Unknown key: a well-formed token from a key the JWKS does not have.
    let t = other.issue(&claims(&me, "fedsec.client")).unwrap();
    refused(&mut c, &t, Code::Unauthenticated, "does not have", &secrets).await;
    // A forged payload under the real signature.
    let mut parts: Vec<String> = good.split('.').map(String::from).collect();
    let mut payload: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(&parts[1]).unwrap()).unwrap();
    payload["scope"] = json!("fedsec.client fedsec.admin.write");
    parts[1] = URL_SAFE_NO_PAD.encode(payload.to_string());
    refused(
        &mut c,
        &parts.join("."),
        Code::Unauthenticated,
        "bad signature",
        &secrets,
    )
    .await;
    // alg none, with and without a signature part.
    let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims(&me, "fedsec.client")).unwrap());
    let none = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    refused(
        &mut c,
        &format!("{none}.{body}."),
        Code::Unauthenticated,
        "algorithm none is not allowed",
        &[],
    )
    .await;
    // HS256 key confusion: an HMAC over the token with the public key as
    // the secret, naming the real kid.
    let jwk = key.public_jwk();
    let hs = jsonwebtoken::encode(
        &{
            let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
            h.kid = Some(key.kid().into());
            h
        },
        &claims(&me, "fedsec.client"),
        &jsonwebtoken::EncodingKey::from_secret(jwk.to_string().as_bytes()).unwrap(),
    )
    .unwrap();
    refused(
        &mut c,
        &hs,
        Code::Unauthenticated,
        "HS256 is not allowed",
        &[],
    )
    .await;
    // Oversized metadata is refused before parsing.
    let huge = format!(
        "{}.{}.{}",
        "a".repeat(4000),
        "b".repeat(4000),
        "c".repeat(400)
    );
    refused(
        &mut c,
        &huge,
        Code::Unauthenticated,
        "more than the 8192 accepted",
        &["aaaa"],
    )
    .await;
    refused(
        &mut c,
        "not-a-jwt",
        Code::Unauthenticated,
        "not a well-formed",
        &["not-a-jwt"],
    )
    .await;

    // Counted and audited (an admin with a read token lists the rows).
    let m = h.running().metrics();
    assert!(
        m.rejections(RejectReason::TokenInvalid) >= 11,
        "{}",
        m.rejections(RejectReason::TokenInvalid)
    );
    assert_eq!(m.rejections(RejectReason::TokenDenied), 1);
    let admin_token = key
        .issue(&claims("spiffe://fedsec/admin/admin", "fedsec.admin.read"))
        .unwrap();
    let events = h
        .admin_grpc("admin")
        .list_audit_events(with_token(
            ListAuditEventsRequest {
                job_id: String::new(),
                limit: 100,
            },
            Some(&admin_token),
        ))
        .await
        .unwrap()
        .into_inner()
        .events;
    let refusals: Vec<_> = events
        .iter()
        .filter(|e| e.kind == "token_refused")
        .collect();
    assert!(refusals.len() >= 12, "{events:?}");
    assert!(
        refusals.iter().all(|e| e.client_id == "c000"),
        "{refusals:?}"
    );
    assert!(
        refusals
            .iter()
            .any(|e| e.detail.contains("Coordinator/Register") && e.detail.contains("expired")),
        "{refusals:?}"
    );
    assert!(
        refusals.iter().all(|e| !e.detail.contains(secret_jti)),
        "{refusals:?}"
    );
    // Health needs no token (the certificate is still required).
    let mut health = tonic_health::pb::health_client::HealthClient::new(
        h.pki
            .client_tls(&tenant_of("c000"), "c000")
            .unwrap()
            .channel(&h.endpoint())
            .unwrap(),
    );
    health
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap();
}

/// Admin scopes: read calls need `fedsec.admin.read`, mutating calls
/// `fedsec.admin.write` and (by default) an `amr` showing MFA; a client
/// scope opens nothing on Admin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_reads_and_writes_need_their_scopes_and_writes_need_mfa() {
    let pki = support::pki();
    let (key, _) = SigningKey::generate().unwrap();
    let server = JwksServer::start(&pki, &[&key]).await;
    let h = start(&server, pki, |_| {}).await;
    h.running()
        .admin()
        .create_job(job("bots", 3, 0.5))
        .await
        .unwrap();
    let mut admin: AdminClient<Channel> = h.admin_grpc("admin");
    let me = "spiffe://fedsec/admin/admin";
    let token = |scope: &str, amr: &[&str]| {
        let mut c = claims(me, scope);
        c.amr = amr.iter().map(|s| (*s).to_owned()).collect();
        key.issue(&c).unwrap()
    };
    let read = token("fedsec.admin.read", &[]);
    let write = token("fedsec.admin.write", &["pwd"]);
    let write_mfa = token("fedsec.admin.write", &["pwd", "otp"]);
    let client = token("fedsec.client", &["mfa"]);
    let jobs = admin
        .list_jobs(with_token(ListJobsRequest {}, Some(&read)))
        .await
        .unwrap();
    assert_eq!(jobs.into_inner().jobs.len(), 1);
    let e = admin
        .list_jobs(with_token(ListJobsRequest {}, Some(&client)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("fedsec.admin.read"), "{e:?}");
    let pause = |t: &str| {
        with_token(
            JobRef {
                job_id: "bots".into(),
            },
            Some(t),
        )
        .into_inner()
    };
    let e = admin
        .pause_job(with_token(pause(&read).clone(), Some(&read)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("fedsec.admin.write"), "{e:?}");
    let e = admin
        .pause_job(with_token(pause(&write), Some(&write)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("multi-factor"), "{e:?}");
    let paused = admin
        .pause_job(with_token(pause(&write_mfa), Some(&write_mfa)))
        .await
        .unwrap();
    assert_eq!(paused.into_inner().job_id, "bots");
    // A write token does not read (scopes are separate grants).
    let e = admin
        .list_jobs(with_token(ListJobsRequest {}, Some(&write_mfa)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    // The MFA requirement can be switched off.
    drop(h);
    let pki = support::pki();
    let server = JwksServer::start(&pki, &[&key]).await;
    let h = start(&server, pki, |t| t.require_mfa_for_admin_write = false).await;
    h.running()
        .admin()
        .create_job(job("bots", 3, 0.5))
        .await
        .unwrap();
    h.admin_grpc("admin")
        .pause_job(with_token(
            JobRef {
                job_id: "bots".into(),
            },
            Some(&write),
        ))
        .await
        .unwrap();
}

/// Key rotation at the IdP: a token from a new key makes the coordinator
/// refetch the JWKS (the new key verifies at once), the removed old key
/// stops verifying, and unknown `kid`s refetch at most once per
/// `jwks_min_refetch_s` however many arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwks_rotation_fetches_new_keys_drops_old_ones_and_rate_limits_refetches() {
    let pki = support::pki();
    let (old, _) = SigningKey::generate().unwrap();
    let (new, _) = SigningKey::generate().unwrap();
    let server = JwksServer::start(&pki, &[&old]).await;
    let h = start(&server, pki, |t| {
        t.jwks_refresh_s = 3600;
        t.jwks_min_refetch_s = 2;
    })
    .await;
    assert_eq!(server.fetches(), 1, "loaded once at start");
    let mut c = grpc(&h, "c000");
    let me = client_uri("c000");
    let old_token = old.issue(&claims(&me, "fedsec.client")).unwrap();
    let new_token = new.issue(&claims(&me, "fedsec.client")).unwrap();
    register(&mut c, Some(&old_token)).await.unwrap();
    // The IdP rotates: the new key in, the old one out.
    server.serve(&[&new]);
    register(&mut c, Some(&new_token)).await.unwrap();
    assert_eq!(server.fetches(), 2, "one refetch for the new kid");
    let s = register(&mut c, Some(&old_token)).await.unwrap_err();
    assert_eq!(s.code(), Code::Unauthenticated, "{s:?}");
    assert!(s.message().contains("does not have"), "{s:?}");
    // A flood of forged kids within the interval fetches nothing more.
    for i in 0..20 {
        let (forged, _) = SigningKey::generate().unwrap();
        let t = forged
            .issue(&claims(&me, &format!("fedsec.client{i}")))
            .unwrap();
        let s = register(&mut c, Some(&t)).await.unwrap_err();
        assert_eq!(s.code(), Code::Unauthenticated);
    }
    assert_eq!(server.fetches(), 2, "refetches are rate-limited");
    register(&mut c, Some(&new_token)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (forged, _) = SigningKey::generate().unwrap();
    let t = forged.issue(&claims(&me, "fedsec.client")).unwrap();
    assert!(register(&mut c, Some(&t)).await.is_err());
    assert_eq!(server.fetches(), 3, "one refetch per interval");
}

/// Without `[auth.tokens]` nothing changes: no token needed, and an
/// `authorization` header (even garbage) is ignored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_off_is_todays_behaviour() {
    let h = Harness::start().await;
    let mut c = grpc(&h, "c000");
    register(&mut c, None).await.unwrap();
    register(&mut c, Some("garbage")).await.unwrap();
    h.admin_grpc("admin")
        .list_jobs(ListJobsRequest {})
        .await
        .unwrap();
}

/// A start with an unusable JWKS fails and names the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unusable_jwks_fails_the_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let pki = support::pki();
    let jwks = dir.path().join("jwks.json");
    // Only a symmetric key: unusable by design.
    std::fs::write(
        &jwks,
        r#"{"keys":[{"kty":"oct","k":"c2VjcmV0","kid":"h"}]}"#,
    )
    .unwrap();
    let mut config = support::test_config(&dir.path().join("data"));
    config.auth.tokens = Some(TokensConfig::with_jwks_file(ISSUER, AUDIENCE, &jwks));
    let e =
        fedsec_coordinator::Coordinator::start_with_tls(config.clone(), pki.server_tls().clone())
            .await
            .unwrap_err();
    assert!(e.to_string().starts_with("auth.tokens.jwks_file:"), "{e}");
    assert!(e.to_string().contains("no usable signature key"), "{e}");
    let mut t = TokensConfig::with_jwks_file(ISSUER, AUDIENCE, "x");
    t.jwks_file = None;
    t.jwks_url = Some("https://127.0.0.1:1/certs".into());
    t.jwks_timeout_ms = 500;
    config.auth.tokens = Some(t);
    let e = fedsec_coordinator::Coordinator::start_with_tls(config, pki.server_tls().clone())
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("auth.tokens.jwks_url: cannot fetch"),
        "{e}"
    );
}

/// The embedded issuer end to end through the binaries: `tokens keygen`
/// writes a key and a JWKS, a coordinator uses the JWKS file,
/// `tokens issue --cert` mints an admin read token for the admin
/// certificate, and `admin --token-file` lists jobs with it; without the
/// token, or for a write, the CLI fails with the coordinator's message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_keygen_issue_and_the_admin_cli_work_together() {
    use std::process::Command;
    const BIN: &str = env!("CARGO_BIN_EXE_fedsec-coordinator");
    let files = tempfile::tempdir().unwrap();
    let path = |n: &str| files.path().join(n);
    let out = Command::new(BIN)
        .args(["tokens", "keygen", "--key"])
        .arg(path("issuer.key"))
        .arg("--jwks")
        .arg(path("jwks.json"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path("issuer.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let h = Harness::start_with(|c| {
        c.auth.tokens = Some(TokensConfig::with_jwks_file(
            ISSUER,
            AUDIENCE,
            path("jwks.json"),
        ));
    })
    .await;
    h.running()
        .admin()
        .create_job(job("bots", 3, 0.5))
        .await
        .unwrap();
    let admin = h.pki.ca().issue_admin("admin").unwrap();
    std::fs::write(path("ca.pem"), h.pki.ca_pem()).unwrap();
    std::fs::write(path("admin.pem"), &admin.cert_pem).unwrap();
    std::fs::write(path("admin.key"), &admin.key_pem).unwrap();
    let out = Command::new(BIN)
        .args(["tokens", "issue", "--key"])
        .arg(path("issuer.key"))
        .args(["--issuer", ISSUER, "--audience", AUDIENCE, "--cert"])
        .arg(path("admin.pem"))
        .args(["--scope", "fedsec.admin.read", "--ttl", "5m", "--out"])
        .arg(path("admin.token"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let admin_cli = |token: bool, args: &[&str]| {
        let mut cmd = Command::new(BIN);
        cmd.arg("admin")
            .args(["--endpoint", &h.endpoint(), "--ca"])
            .arg(path("ca.pem"))
            .arg("--cert")
            .arg(path("admin.pem"))
            .arg("--key")
            .arg(path("admin.key"))
            .env_remove("FEDSEC_TOKEN_FILE");
        if token {
            cmd.arg("--token-file").arg(path("admin.token"));
        }
        cmd.args(args).output().unwrap()
    };
    let out = admin_cli(true, &["--json", "jobs", "list"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"bots\""));
    let out = admin_cli(false, &["jobs", "list"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("bearer token is required"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = admin_cli(true, &["jobs", "pause", "bots"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("fedsec.admin.write"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A JWKS that cannot be refreshed keeps serving its last good keys for
/// `jwks_max_stale_s`, then calls are refused with `UNAVAILABLE` (not
/// verified against keys that may have been revoked meanwhile); a
/// readable JWKS again restores service without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jwks_that_cannot_be_refreshed_goes_stale_and_then_refuses() {
    let files = tempfile::tempdir().unwrap();
    let jwks = files.path().join("jwks.json");
    let (key, _) = SigningKey::generate().unwrap();
    fedsec_coordinator::auth::mint::add_to_jwks(&jwks, &key).unwrap();
    let h = Harness::start_with(|c| {
        let mut t = TokensConfig::with_jwks_file(ISSUER, AUDIENCE, &jwks);
        t.jwks_refresh_s = 1;
        t.jwks_max_stale_s = 2;
        c.auth.tokens = Some(t);
    })
    .await;
    let mut c = grpc(&h, "c000");
    let token = key
        .issue(&claims(&client_uri("c000"), "fedsec.client"))
        .unwrap();
    register(&mut c, Some(&token)).await.unwrap();
    std::fs::remove_file(&jwks).unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // Refresh failed: the last good keys still verify.
    register(&mut c, Some(&token)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let s = register(&mut c, Some(&token)).await.unwrap_err();
    assert_eq!(s.code(), Code::Unavailable, "{s:?}");
    assert!(s.message().contains("JWKS could not be refreshed"), "{s:?}");
    fedsec_coordinator::auth::mint::add_to_jwks(&jwks, &key).unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    register(&mut c, Some(&token)).await.unwrap();
}
