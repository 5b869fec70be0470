//! Certificates: a client presented with a coordinator certificate from
//! another CA refuses to connect and says why; a client whose own
//! certificate the coordinator refuses gets a clear message instead of a
//! bare "broken pipe"; neither gets registered.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use fedsec_client::{ConnectionError, DataSource, Error, Event, PrivacyPolicy, RunOutcome};
use fedsec_proto::devca::DevCa;
use fedsec_proto::tls::{ClientIdentity, ClientTls};
use support::{Harness, Recorder, builder, state_dir, wait_for};

/// A client identity issued by `ca`, trusting `trusted_ca_pem`.
fn tls_from(ca: &DevCa, trusted_ca_pem: &str, client: &str) -> ClientTls {
    let id = ClientIdentity::new("tenant-x", client).unwrap();
    let cert = ca.issue_client(&id).unwrap();
    ClientTls::from_pem(&cert.pem_with_ca(trusted_ca_pem)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_certificate_from_another_ca_is_refused_with_a_clear_error() {
    let h = Harness::start().await;
    let other = DevCa::generate("someone else's CA").unwrap();
    // Everything this client knows comes from the other CA.
    let tls = tls_from(&other, &other.ca_pem(), "client-1");
    let mut p = builder(
        &h.endpoint(),
        tls,
        DataSource::Host,
        PrivacyPolicy::new(10.0, 1e-5),
        &state_dir(h.dir.path(), "x1"),
        1,
    )
    .build()
    .unwrap();
    let err = p.register().await.unwrap_err();
    let Error::Rpc(rpc) = &err else {
        panic!("{err:?}")
    };
    assert!(
        matches!(
            rpc.connection,
            Some(ConnectionError::ServerCertificateUntrusted { .. })
        ),
        "{rpc:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("refusing to connect") && msg.contains("not issued by the CA"),
        "{msg}"
    );
    assert!(msg.contains(&h.endpoint()), "{msg}");

    // The running loop reports the same problem and keeps trying (the
    // coordinator's certificate may be fixed), without ever registering.
    let mut rx = p.subscribe();
    let rec = Recorder::start(p.subscribe());
    let (tx, stop) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(p.run(async move {
        let _ = stop.await;
    }));
    let e = wait_for(&mut rx, "a retried failure", |e| {
        matches!(e, Event::Retrying { .. })
    })
    .await;
    let Event::Retrying {
        operation, error, ..
    } = e
    else {
        unreachable!()
    };
    assert_eq!(operation, "Register");
    assert!(error.contains("not issued by the CA"), "{error}");
    tx.send(()).unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(5), run)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(outcome, RunOutcome::Shutdown);
    assert_eq!(rec.count(|e| matches!(e, Event::Registered { .. })), 0);
    assert!(h.running().admin().clients().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_from_another_ca_gets_a_clear_message() {
    let h = Harness::start().await;
    let other = DevCa::generate("someone else's CA").unwrap();
    // Trusts the right CA, but presents a certificate the coordinator refuses.
    let tls = tls_from(&other, h.pki.ca_pem(), "client-2");
    let mut p = builder(
        &h.endpoint(),
        tls,
        DataSource::Host,
        PrivacyPolicy::new(10.0, 1e-5),
        &state_dir(h.dir.path(), "x2"),
        2,
    )
    .build()
    .unwrap();
    let err = p.register().await.unwrap_err();
    let Error::Rpc(rpc) = &err else {
        panic!("{err:?}")
    };
    assert!(
        matches!(
            rpc.connection,
            Some(ConnectionError::ClientCertificateRefused { .. })
        ),
        "{rpc:?}"
    );
    assert!(
        err.to_string()
            .contains("refused this client's TLS certificate"),
        "{err}"
    );
    assert!(h.running().admin().clients().await.unwrap().is_empty());
}
