//! Every rejection of `SubmitUpdate` (and of callers) gets its documented
//! status, a metric and an audit event, and nothing of a rejected upload
//! reaches the published mean.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use bytes::Bytes;
use fedsec_coordinator::RejectReason;
use fedsec_proto::tensor::{MAX_CHUNK_BYTES, digest, le_bytes};
use fedsec_proto::v1::{ClientActionRequest, GetTaskRequest, SubmitUpdateRequest};
use support::{
    Harness, TestClient, chunk_msg, header_msg, job, tenant_of, trailer_msg, update_messages,
};
use tonic::Code;

const T: Duration = Duration::from_secs(20);
const DIM: u32 = 6;

async fn expect(c: &mut TestClient, messages: Vec<SubmitUpdateRequest>, code: Code, what: &str) {
    match c.submit_raw(messages).await {
        Ok(r) => panic!("{what}: expected {code:?}, got success {r:?}"),
        Err(s) => assert_eq!(s.code(), code, "{what}: {s:?}"),
    }
}

fn good(v: f32) -> Vec<f32> {
    vec![v; DIM as usize]
}

#[tokio::test]
async fn every_rejection_has_its_status_and_touches_nothing() {
    let h = Harness::start().await;
    let mut cs = h.clients(3).await;
    let mut spec = job("rej", DIM, 1.0);
    spec.disable_noise = true;
    spec.rounds = 2;
    spec.min_clients = 3;
    spec.population = Some(3);
    spec.round_deadline_ms = 15_000;
    spec.clipping.clip_norm = 10.0;
    let admin = h.running().admin();
    admin.create_job(spec).await.unwrap();
    let (_, w0) = cs[0].get_model("rej", 0).await;
    let task = cs[0].wait_task("rej", T).await;
    let d = DIM as u64;
    let c = &mut cs[0];

    // Framing.
    expect(
        c,
        vec![chunk_msg(le_bytes(&[1.0; 6]))],
        Code::InvalidArgument,
        "missing header",
    )
    .await;
    expect(c, vec![], Code::InvalidArgument, "empty stream").await;
    let mut m = update_messages(&task, &good(0.1), b"n");
    m.insert(1, header_msg(&task, d, b"n"));
    expect(c, m, Code::InvalidArgument, "duplicate header").await;
    expect(
        c,
        update_messages(&task, &good(0.1), b""),
        Code::InvalidArgument,
        "empty nonce",
    )
    .await;

    // Header against the coordinator's state.
    let mut t = task.clone();
    t.job_id = "nope".into();
    expect(
        c,
        update_messages(&t, &good(0.1), b"n"),
        Code::NotFound,
        "unknown job",
    )
    .await;
    let mut t = task.clone();
    t.round += 1;
    expect(
        c,
        update_messages(&t, &good(0.1), b"n"),
        Code::FailedPrecondition,
        "future round",
    )
    .await;
    let mut t = task.clone();
    t.attempt += 1;
    expect(
        c,
        update_messages(&t, &good(0.1), b"n"),
        Code::FailedPrecondition,
        "other attempt",
    )
    .await;
    let mut t = task.clone();
    t.base_version += 1;
    expect(
        c,
        update_messages(&t, &good(0.1), b"n"),
        Code::FailedPrecondition,
        "base version",
    )
    .await;
    expect(
        c,
        update_messages(&task, &[0.1; 5], b"n"),
        Code::InvalidArgument,
        "declared dimension",
    )
    .await;

    // Chunks and digest.
    let v = good(0.1);
    let sha = digest(&v).to_vec();
    expect(
        c,
        vec![
            header_msg(&task, d, b"n"),
            chunk_msg(Bytes::from_static(&[0u8; 7])),
            trailer_msg(sha.clone()),
        ],
        Code::InvalidArgument,
        "unaligned chunk",
    )
    .await;
    expect(
        c,
        vec![
            header_msg(&task, d, b"n"),
            chunk_msg(le_bytes(&[0.1; 7])),
            trailer_msg(sha.clone()),
        ],
        Code::InvalidArgument,
        "too long",
    )
    .await;
    expect(
        c,
        vec![
            header_msg(&task, d, b"n"),
            chunk_msg(le_bytes(&[0.1; 5])),
            trailer_msg(sha.clone()),
        ],
        Code::InvalidArgument,
        // A short final chunk that does not complete the tensor: below the
        // 64 KiB chunk minimum, so `bad_chunk` (at this size a short
        // upload cannot reach `wrong_dimension`).
        "too short",
    )
    .await;
    let mut m = vec![header_msg(&task, d, b"n")];
    m.extend(std::iter::repeat_n(chunk_msg(Bytes::new()), 20));
    m.push(trailer_msg(sha.clone()));
    expect(c, m, Code::InvalidArgument, "empty chunks").await;
    expect(
        c,
        vec![
            header_msg(&task, d, b"n"),
            chunk_msg(Bytes::from(vec![0u8; 2 * MAX_CHUNK_BYTES])),
        ],
        Code::InvalidArgument,
        "oversized message",
    )
    .await;
    let mut m = update_messages(&task, &v, b"n");
    m.pop();
    expect(c, m, Code::InvalidArgument, "missing trailer").await;
    let mut bad = sha.clone();
    bad[0] ^= 1;
    let mut m = update_messages(&task, &v, b"n");
    *m.last_mut().unwrap() = trailer_msg(bad);
    expect(c, m, Code::DataLoss, "digest mismatch").await;
    let mut m = update_messages(&task, &v, b"n");
    m.push(chunk_msg(le_bytes(&[0.0])));
    expect(c, m, Code::InvalidArgument, "message after the trailer").await;

    // Values.
    let mut nan = v.clone();
    nan[3] = f32::NAN;
    expect(
        c,
        update_messages(&task, &nan, b"n"),
        Code::InvalidArgument,
        "NaN",
    )
    .await;
    let mut inf = v.clone();
    inf[0] = f32::NEG_INFINITY;
    expect(
        c,
        update_messages(&task, &inf, b"n"),
        Code::InvalidArgument,
        "infinity",
    )
    .await;

    // One submission per client and round.
    let accepted = good(0.5);
    let r = c.submit(&task, &accepted, b"first").await.unwrap();
    assert!(r.newly_accepted);
    let r = c.submit(&task, &accepted, b"first").await.unwrap();
    assert!(!r.newly_accepted, "same nonce: idempotent");
    expect(
        c,
        update_messages(&task, &good(0.9), b"second"),
        Code::AlreadyExists,
        "other nonce",
    )
    .await;

    // Callers.
    let mut stranger = TestClient::connect(&h.pki, &tenant_of("late"), "late", &h.endpoint());
    expect(
        &mut stranger,
        update_messages(&task, &v, b"n"),
        Code::FailedPrecondition,
        "unregistered",
    )
    .await;
    let e = stranger.get_task("rej").await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    stranger.register().await.unwrap();
    expect(
        &mut stranger,
        update_messages(&task, &v, b"n"),
        Code::PermissionDenied,
        "not selected",
    )
    .await;
    let mut impostor = TestClient::connect(&h.pki, "tenant-b", "c001", &h.endpoint());
    let e = impostor.register().await.unwrap_err();
    assert_eq!(
        e.code(),
        Code::PermissionDenied,
        "a client id bound to another tenant: {e:?}"
    );
    let mut admin_grpc = h.admin_grpc("admin");
    admin_grpc
        .quarantine_client(ClientActionRequest {
            client_id: "late".into(),
            reason: "test".into(),
        })
        .await
        .unwrap();
    expect(
        &mut stranger,
        update_messages(&task, &v, b"n"),
        Code::PermissionDenied,
        "quarantined",
    )
    .await;
    assert_eq!(
        stranger.get_task("rej").await.unwrap_err().code(),
        Code::PermissionDenied
    );
    admin_grpc
        .revoke_client(ClientActionRequest {
            client_id: "late".into(),
            reason: "test".into(),
        })
        .await
        .unwrap();
    assert_eq!(
        stranger.register().await.unwrap_err().code(),
        Code::PermissionDenied,
        "revoked"
    );
    let admin_as_client = TestClient {
        id: "admin".into(),
        grpc: fedsec_proto::v1::coordinator_client::CoordinatorClient::new(
            h.pki
                .admin_tls("admin")
                .unwrap()
                .channel(&h.endpoint())
                .unwrap(),
        ),
    };
    let mut admin_as_client = admin_as_client;
    assert_eq!(
        admin_as_client
            .grpc
            .get_task(GetTaskRequest::default())
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );

    // The other two report; the round commits with exactly the accepted updates.
    let t1 = cs[1].wait_task("rej", T).await;
    cs[1].submit(&t1, &good(-0.25), b"a").await.unwrap();
    // A rejected attempt first frees nothing but its own slot.
    expect(
        &mut cs[2],
        update_messages(&t1, &nan, b"x"),
        Code::InvalidArgument,
        "NaN from c002",
    )
    .await;
    let t2 = cs[2].wait_task("rej", T).await;
    cs[2].submit(&t2, &good(0.125), b"b").await.unwrap();
    admin
        .wait_for_job("rej", T, |j| j.rounds_completed == 1)
        .await
        .unwrap();
    let (_, w1) = cs[0].get_model("rej", 0).await;
    for i in 0..DIM as usize {
        let expected = (f64::from(w0[i]) + (0.5 - 0.25 + 0.125) / 3.0) as f32;
        assert!(
            (w1[i] - expected).abs() < 1e-6,
            "{i}: {} vs {expected}",
            w1[i]
        );
    }
    // Late submissions for the closed round are stale.
    expect(
        &mut cs[1],
        update_messages(&task, &v, b"z"),
        Code::FailedPrecondition,
        "closed round",
    )
    .await;

    // Metrics and audit.
    let m = h.running().metrics();
    for (reason, at_least) in [
        (RejectReason::BadHeader, 3),
        (RejectReason::UnknownJob, 1),
        (RejectReason::StaleRound, 3),
        (RejectReason::StaleBaseVersion, 1),
        (RejectReason::WrongDimension, 2),
        (RejectReason::BadChunk, 5),
        (RejectReason::DigestMismatch, 1),
        (RejectReason::NonFinite, 3),
        (RejectReason::Duplicate, 1),
        (RejectReason::Unregistered, 1),
        (RejectReason::NotSelected, 1),
        (RejectReason::Quarantined, 1),
        (RejectReason::Revoked, 1),
    ] {
        assert!(
            m.rejections(reason) >= at_least,
            "{}: {} < {at_least}",
            reason.label(),
            m.rejections(reason)
        );
    }
    let audit = admin.audit_events(Some("rej"), 1000).await.unwrap();
    let rejected = audit.iter().filter(|e| e.kind == "update_rejected").count();
    assert!(rejected >= 15, "{rejected} audit events");
    assert!(audit.iter().any(|e| e.detail.contains("digest")));
    let ledger = admin.ledger("rej").await.unwrap();
    assert_eq!(ledger[0].participants, 3);
    assert!(
        ledger[0].rejected >= 10,
        "rejections counted against the round: {}",
        ledger[0].rejected
    );
}
