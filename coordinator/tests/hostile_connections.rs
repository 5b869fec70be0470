//! Connection-level defence over a real server with mTLS: silent sockets
//! are capped per source address and dropped after the handshake timeout;
//! revoked and quarantined identities are refused on every service, health
//! included, and a refused identity that keeps calling loses its
//! connection; health calls are throttled per identity; oversized header
//! lists are refused.

#![allow(clippy::unwrap_used)]

mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use fedsec_coordinator::error::RETRY_AFTER_MS_METADATA;
use fedsec_proto::v1::GetTaskRequest;
use fedsec_proto::v1::coordinator_client::CoordinatorClient;
use support::{Harness, accepted_sockets, small_window_channel, tenant_of};
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

/// Attack: 300 TCP connections from one address that never start TLS.
/// Bound: the coordinator holds at most
/// `limits.max_pending_handshakes_per_address` (32 here; default 128) of
/// them, closes the rest at accept, drops the held ones after
/// `limits.handshake_timeout_ms` (1 s here), and keeps serving clients
/// from other addresses meanwhile. (Before: every silent socket was held,
/// one descriptor each, for 10 s: 3,000 sockets → 3,000 descriptors.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_are_capped_per_address_and_time_out() {
    let h = Harness::start_with(|c| {
        c.limits.handshake_timeout_ms = 1_000;
        c.limits.max_pending_handshakes_per_address = 32;
    })
    .await;
    let port = h.running().local_addr().port();
    let server: SocketAddr = ([127, 0, 0, 1], port).into();
    let attacker = Ipv4Addr::new(127, 0, 0, 2);
    let mut silent = Vec::new();
    for _ in 0..300 {
        let s = tokio::net::TcpSocket::new_v4().unwrap();
        s.bind((attacker, 0).into()).unwrap();
        silent.push(s.connect(server).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let held = accepted_sockets(port, attacker);
    eprintln!("measured: {held} of 300 silent connections held");
    assert!(
        held <= 32,
        "{held} silent connections held (bound: 32 per address)"
    );
    // A client from another address gets through during the flood.
    let mut legit = h.client("legit").await;
    legit.register().await.unwrap();
    // After the handshake timeout none is held.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(accepted_sockets(port, attacker), 0);
    let m = h.running().metrics();
    assert!(m.connections_refused("max_pending_handshakes_per_address") >= 250);
    assert!(m.connections_refused("handshake_timeout") >= 1);
    drop(silent);
}

fn health(h: &Harness, client_id: &str) -> HealthClient<tonic::transport::Channel> {
    HealthClient::new(small_window_channel(
        &h.pki,
        &tenant_of(client_id),
        client_id,
        &h.endpoint(),
    ))
}

fn check() -> HealthCheckRequest {
    HealthCheckRequest {
        service: String::new(),
    }
}

/// Attack: a revoked identity (its certificate still valid for TLS) floods
/// `grpc.health.v1`; a quarantined one calls health; an active one floods
/// it. Bounds: revoked and quarantined identities get `PERMISSION_DENIED`
/// on health as on every service; past `rate_limits.refused_burst` (10)
/// refused calls the revoked identity's connection is closed, so 100 calls
/// get at most a dozen answers; an active identity gets `RESOURCE_EXHAUSTED`
/// with a retry-after hint past `rate_limits.health_burst` (20). (Before:
/// health answered every call of every identity, revoked ones included.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_identities_are_refused_on_every_service_and_floods_are_cut() {
    let h = Harness::start().await;
    let _cs = h.clients(3).await;
    let admin = h.running().admin();
    admin.revoke_client("c000", "stolen key").await.unwrap();
    admin
        .quarantine_client("c001", "odd updates")
        .await
        .unwrap();

    // Revoked: health, the Coordinator and the Admin service all refuse.
    let mut revoked = health(&h, "c000");
    let e = revoked.check(check()).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains("revoked"), "{e:?}");
    let e = CoordinatorClient::new(small_window_channel(
        &h.pki,
        &tenant_of("c000"),
        "c000",
        &h.endpoint(),
    ))
    .get_task(GetTaskRequest::default())
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    // Its flood: answered at most `refused_burst` (+ refill) times, then
    // its connections are closed before a call is answered.
    let mut answered = 0;
    for _ in 0..100 {
        match revoked.check(check()).await {
            Ok(r) => panic!("a revoked identity got a health answer: {r:?}"),
            Err(e) if e.code() == Code::PermissionDenied => answered += 1,
            Err(_) => {}
        }
    }
    assert!(
        answered <= 12,
        "{answered} refusals answered (bound: 10 + refill)"
    );
    let m = h.running().metrics();
    assert!(m.connections_closed("refused_identity_flood") >= 1);

    // Quarantined: health refused too; the Coordinator says why.
    let e = health(&h, "c001").check(check()).await.unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let e = CoordinatorClient::new(small_window_channel(
        &h.pki,
        &tenant_of("c001"),
        "c001",
        &h.endpoint(),
    ))
    .get_task(GetTaskRequest::default())
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(e.message().contains("quarantined"), "{e:?}");

    // Active: served, but throttled past its health burst.
    let mut active = health(&h, "c002");
    let (mut ok, mut limited) = (0, 0);
    for _ in 0..40 {
        match active.check(check()).await {
            Ok(_) => ok += 1,
            Err(e) => {
                assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
                assert!(e.metadata().get(RETRY_AFTER_MS_METADATA).is_some());
                limited += 1;
            }
        }
    }
    assert!((20..=22).contains(&ok), "{ok} health answers (burst 20)");
    assert_eq!(ok + limited, 40);
}

/// Attack: a call whose metadata (header list) is 64 KiB. Bound:
/// `limits.http2_max_header_list_bytes` (16 KiB) — the call fails and the
/// server keeps serving.
#[tokio::test]
async fn oversized_header_lists_are_refused() {
    let h = Harness::start().await;
    let mut c = h.clients(1).await.pop().unwrap();
    let mut req = tonic::Request::new(GetTaskRequest::default());
    req.metadata_mut()
        .insert("x-junk", "j".repeat(64 << 10).parse().unwrap());
    assert!(c.grpc.get_task(req).await.is_err());
    let mut c = h.client("after").await;
    c.register().await.unwrap();
}

/// Attack: one identity opens connection after connection (each a full
/// mTLS handshake), and one source address opens more connections than
/// its share. Bounds: `limits.max_connections_per_identity` (3 here;
/// default 8) open connections per certificate — the 4th is closed right
/// after its handshake and its call fails — and
/// `limits.max_connections_per_address` (6 here; default 1024) per source
/// IP; a closed connection frees its place. (Before: neither was capped.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_capped_per_identity_and_per_address() {
    let h = Harness::start_with(|c| {
        c.limits.max_connections_per_identity = 3;
        c.limits.max_connections_per_address = 6;
        c.rate_limits.enabled = false;
    })
    .await;
    let connect = |id: &str| {
        CoordinatorClient::new(small_window_channel(
            &h.pki,
            &tenant_of(id),
            id,
            &h.endpoint(),
        ))
    };
    // Three connections of "hog" are served (each channel is one connection).
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut c = connect("hog");
        c.register(fedsec_proto::v1::RegisterRequest::default())
            .await
            .unwrap();
        held.push(c);
    }
    // The fourth is closed after its handshake: its call fails.
    let e = connect("hog")
        .get_task(GetTaskRequest::default())
        .await
        .unwrap_err();
    assert!(closed(&e), "{e:?}");
    let m = h.running().metrics();
    assert!(m.connections_refused("max_connections_per_identity") >= 1);

    // Other identities from the same address: 3 more fit (6 per address),
    // the next is refused at accept.
    let mut kept: Vec<_> = (0..3).map(|i| connect(&format!("other{i}"))).collect();
    for c in &mut kept {
        c.register(fedsec_proto::v1::RegisterRequest::default())
            .await
            .unwrap();
    }
    let e = connect("late")
        .register(fedsec_proto::v1::RegisterRequest::default())
        .await
        .unwrap_err();
    assert!(closed(&e), "{e:?}");
    assert!(m.connections_refused("max_connections_per_address") >= 1);

    // Closing connections frees their places.
    drop(held);
    drop(kept);
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match connect("hog").get_task(GetTaskRequest::default()).await {
            Ok(_) => break,
            Err(e) => assert!(closed(&e), "{e:?}"),
        }
        assert!(
            tokio::time::Instant::now() < until,
            "closed connections never freed their places"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether a call failed because the server closed its connection (at
/// accept or right after the handshake): a transport error, not a status
/// the server sent (`UNAVAILABLE`, `CANCELLED` or `UNKNOWN` by timing).
fn closed(e: &tonic::Status) -> bool {
    let transport = std::error::Error::source(e)
        .is_some_and(|s| s.downcast_ref::<tonic::transport::Error>().is_some());
    transport || e.code() == Code::Unavailable
}
