//! A quarantine or revocation is never lost to a `Register` running at the
//! same time, over a real server with mTLS: the store is wrapped to hold
//! `Register` for 400 ms between its store write and what follows, and the
//! admin action lands inside that window.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use support::{Harness, TestClient};
use tonic::Code;

/// Attack: a client re-registers exactly while an admin quarantines (then
/// revokes) it; its `Register` read the client's status before the admin
/// action and writes what it read back to memory afterwards. Bound: the
/// admin action wins every time: the client's next calls are refused
/// (`PERMISSION_DENIED`) and it is never selected. (Before: the stale
/// record overwrote the fresh quarantine in memory and the client kept
/// working.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrent_register_cannot_undo_a_quarantine_or_a_revocation() {
    let (h, store) = Harness::start_injected().await;
    let admin = h.running().admin();
    let mut c = h.client("racer").await;
    c.register().await.unwrap();

    for (action, expect) in [("quarantine", "quarantined"), ("revoke", "revoked")] {
        store.delay_after("upsert_client", Duration::from_millis(400));
        let mut grpc = c.grpc.clone();
        let register = tokio::spawn(async move {
            grpc.register(fedsec_proto::v1::RegisterRequest::default())
                .await
        });
        // Inside the window: Register has stored (and read) the client.
        tokio::time::sleep(Duration::from_millis(150)).await;
        match action {
            "quarantine" => admin.quarantine_client("racer", "race").await.unwrap(),
            _ => admin.revoke_client("racer", "race").await.unwrap(),
        };
        let r = register.await.unwrap();
        store.clear("upsert_client");
        assert_eq!(
            r.unwrap_err().code(),
            Code::PermissionDenied,
            "the racing Register after the {action}"
        );
        let e = c.get_task("").await.unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{action}: {e:?}");
        assert!(e.message().contains(expect), "{action}: {e:?}");
        let listed = admin.clients().await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_ne!(
            listed[0].status,
            fedsec_proto::v1::ClientStatus::Active as i32,
            "{action} lost in the store"
        );
    }
    // Revocation is permanent: a later Register does not bring it back.
    let mut again =
        TestClient::connect(&h.pki, &support::tenant_of("racer"), "racer", &h.endpoint());
    assert_eq!(
        again.register().await.unwrap_err().code(),
        Code::PermissionDenied
    );
}
