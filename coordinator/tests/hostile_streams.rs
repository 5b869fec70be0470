//! What one identity can hold with streams, over a real server with mTLS:
//! unread `GetModel` downloads are capped per identity, bounded in memory
//! and reclaimed after their deadline; bytes in flight are capped; a
//! stalled upload loses its decode slot when its round closes.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use fedsec_coordinator::error::RETRY_AFTER_MS_METADATA;
use fedsec_proto::tensor::{MIN_CHUNK_BYTES, le_bytes};
use fedsec_proto::v1::coordinator_client::CoordinatorClient;
use fedsec_proto::v1::{GetModelRequest, RegisterRequest, SubmitUpdateRequest};
use support::{
    Harness, TestClient, chunk_msg, header_msg, job, rss_bytes, small_window_channel, tenant_of,
};
use tonic::Code;

const T: Duration = Duration::from_secs(20);

fn uploads_in_progress(h: &Harness) -> u64 {
    let text = h.running().metrics().encode();
    text.lines()
        .find_map(|l| l.strip_prefix("fedsec_uploads_in_progress "))
        .map_or(0, |v| v.trim().parse().unwrap())
}

/// Attack: one identity opens 480 `GetModel` streams of a 4 MB model on 8
/// connections and never reads them. Bound: at most
/// `limits.max_downloads_per_identity` (4) are admitted, the other 476 get
/// `RESOURCE_EXHAUSTED` with a retry-after hint, and the process's RSS grows
/// by at most 100 MB. After `limits.download_timeout_ms` (+5 s grace) the
/// unread downloads' connections are closed and the identity downloads
/// normally again. (Before: every stream was admitted, each holding about a
/// chunk, 1 MiB, of encoded data: 480 streams → +940 MB measured.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_downloads_of_one_identity_are_capped_bounded_and_reclaimed() {
    const D: u32 = 1_000_000;
    let h = Harness::start_with(|c| {
        // The stream share, not the rate limit, is under test.
        c.rate_limits.enabled = false;
        c.limits.download_timeout_ms = 2_000;
    })
    .await;
    let mut spec = job("big", D, 1.0);
    // One round, open (with nobody to report) for the whole test: nothing
    // is released; only downloads matter here.
    spec.round_deadline_ms = 3_600_000;
    h.running().admin().create_job(spec).await.unwrap();
    let channels: Vec<_> = (0..8)
        .map(|_| small_window_channel(&h.pki, &tenant_of("attacker"), "attacker", &h.endpoint()))
        .collect();
    CoordinatorClient::new(channels[0].clone())
        .register(RegisterRequest::default())
        .await
        .unwrap();
    // Warm up (allocations of a first full download), then the baseline.
    let mut probe = TestClient {
        id: "attacker".into(),
        grpc: CoordinatorClient::new(channels[0].clone()),
    };
    let (_, w) = probe.get_model("big", 0).await;
    assert_eq!(w.len(), D as usize);
    drop(w);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = rss_bytes();

    let calls = channels.iter().flat_map(|ch| {
        (0..60).map(move |_| {
            let mut c = CoordinatorClient::new(ch.clone());
            async move {
                c.get_model(GetModelRequest {
                    job_id: "big".into(),
                    version: 0,
                })
                .await
            }
        })
    });
    let results = futures_join_all(calls).await;
    let (mut open, mut refused) = (Vec::new(), 0);
    for r in results {
        match r {
            Ok(stream) => open.push(stream),
            Err(s) => {
                assert_eq!(s.code(), Code::ResourceExhausted, "{s:?}");
                assert!(s.message().contains("GetModel downloads"), "{s:?}");
                assert!(s.metadata().get(RETRY_AFTER_MS_METADATA).is_some());
                refused += 1;
            }
        }
    }
    assert_eq!(open.len(), 4, "admitted unread downloads");
    assert_eq!(refused, 476);
    // Let the server push what it will into the unread streams.
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let grown = rss_bytes().saturating_sub(before);
    eprintln!(
        "measured: 480 unread downloads grew RSS by {:.1} MB",
        grown as f64 / 1e6
    );
    assert!(
        grown <= 100 << 20,
        "480 unread downloads grew RSS by {} MB (bound 100 MB)",
        grown >> 20
    );

    // Past the deadline and its grace the unread streams' connections are
    // closed, their shares freed: the identity downloads normally again.
    let m = h.running().metrics();
    let until = tokio::time::Instant::now() + T;
    while m.connections_closed("download_deadline") == 0 {
        assert!(tokio::time::Instant::now() < until, "no connection closed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(open);
    let mut fresh = TestClient {
        id: "attacker".into(),
        grpc: CoordinatorClient::new(small_window_channel(
            &h.pki,
            &tenant_of("attacker"),
            "attacker",
            &h.endpoint(),
        )),
    };
    let (header, _) = fresh.get_model("big", 0).await;
    assert_eq!(header.num_params, u64::from(D));
}

/// Attack: one identity keeps an unread download of a 2.4 MB model open
/// and asks for a second one with `limits.max_bytes_in_flight_per_identity`
/// = 4 MiB.
/// Bound: the second is refused with `RESOURCE_EXHAUSTED` (bytes in flight)
/// and a retry-after hint; another identity is unaffected.
#[tokio::test]
async fn bytes_in_flight_are_capped_per_identity() {
    let h = Harness::start_with(|c| {
        c.rate_limits.enabled = false;
        c.limits.max_bytes_in_flight_per_identity = 4 << 20;
    })
    .await;
    let mut spec = job("mid", 600_000, 1.0);
    // One round, open for the whole test: nothing is released.
    spec.round_deadline_ms = 3_600_000;
    h.running().admin().create_job(spec).await.unwrap();
    let ch = small_window_channel(&h.pki, &tenant_of("greedy"), "greedy", &h.endpoint());
    let mut c = CoordinatorClient::new(ch);
    c.register(RegisterRequest::default()).await.unwrap();
    let req = || GetModelRequest {
        job_id: "mid".into(),
        version: 0,
    };
    let held = c.get_model(req()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let e = c.get_model(req()).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("bytes in flight"), "{e:?}");
    assert!(e.metadata().get(RETRY_AFTER_MS_METADATA).is_some());
    let mut other = h.clients(1).await.pop().unwrap();
    let (hdr, _) = other.get_model("mid", 0).await;
    assert_eq!(hdr.num_params, 600_000);
    // Reading (or dropping) the first download frees the share.
    drop(held);
    let until = tokio::time::Instant::now() + T;
    loop {
        match c.get_model(req()).await {
            Ok(_) => break,
            Err(e) => assert_eq!(e.code(), Code::ResourceExhausted),
        }
        assert!(tokio::time::Instant::now() < until, "share never freed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Attack (slowloris): a selected client sends its header and one chunk,
/// then stalls with its stream open, far within the per-message timeout
/// (60 s here), while the only decode slot is its own. Bound: its upload is
/// cut off (`FAILED_PRECONDITION`, stale round) when the round closes, not a
/// minute later; the slot is free at once, and the next attempt commits
/// with the honest client's update. (Before: the slot was held until the
/// per-message timeout, across rounds, and every later round was abandoned.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_upload_loses_its_slot_when_its_round_closes() {
    const DIM: u32 = 40_000;
    let h = Harness::start_with(|c| {
        c.limits.max_concurrent_uploads = 1;
        c.limits.upload_message_timeout_ms = 60_000;
        c.rate_limits.enabled = false;
    })
    .await;
    let mut cs = h.clients(2).await;
    let mut honest = cs.pop().unwrap();
    let mut attacker = cs.pop().unwrap();
    let mut spec = job("slow", DIM, 1.0);
    spec.rounds = 2;
    spec.min_clients = 1;
    spec.round_deadline_ms = 1_500;
    spec.disable_noise = true;
    let admin = h.running().admin();
    admin.create_job(spec).await.unwrap();

    let task = attacker.wait_task("slow", T).await;
    let (tx, rx) = tokio::sync::mpsc::channel::<SubmitUpdateRequest>(4);
    tx.send(header_msg(&task, u64::from(DIM), b"slow"))
        .await
        .unwrap();
    tx.send(chunk_msg(le_bytes(&vec![0.0; MIN_CHUNK_BYTES / 4])))
        .await
        .unwrap();
    let mut grpc = attacker.grpc.clone();
    let stalled = tokio::spawn(async move {
        grpc.submit_update(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
    });
    let until = tokio::time::Instant::now() + T;
    while uploads_in_progress(&h) == 0 {
        assert!(tokio::time::Instant::now() < until, "slot never taken");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The round closes at its deadline (1.5 s): the stalled upload ends then.
    let status = tokio::time::timeout(Duration::from_secs(10), stalled)
        .await
        .expect("the stalled upload was not cut off when its round closed")
        .unwrap()
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
    assert!(status.message().contains("cut off"), "{status:?}");
    assert_eq!(uploads_in_progress(&h), 0, "the slot is free again");
    drop(tx);

    // The next attempt gets the slot and commits the honest update.
    let t2 = honest
        .wait_task_after("slow", (task.round, task.attempt), T)
        .await;
    honest
        .submit(&t2, &vec![0.001; DIM as usize], b"honest")
        .await
        .unwrap();
    admin
        .wait_for_job("slow", T, |j| j.rounds_completed >= 1)
        .await
        .unwrap();
}

/// `futures::future::join_all` without the dependency.
async fn futures_join_all<F>(fs: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = fs.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}
