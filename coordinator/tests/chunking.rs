//! The chunking contract of the `.proto`, over a real server with mTLS:
//! any fixed chunk size from 64 KiB to 1 MiB is accepted for every model
//! size (each update decodes exactly: the committed mean is checked), and a
//! chunk below 64 KiB that does not complete the tensor is refused at once.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use fedsec_proto::tensor::{MAX_CHUNK_BYTES, MIN_CHUNK_BYTES, digest, le_bytes};
use fedsec_proto::v1::SubmitUpdateRequest;
use support::{Harness, chunk_msg, header_msg, job, trailer_msg};
use tonic::Code;

const T: Duration = Duration::from_secs(30);

/// Chunk sizes a client may pick: the two ends of the range and two between.
const CHUNK_BYTES: [usize; 4] = [MIN_CHUNK_BYTES, 100_000, 256 << 10, MAX_CHUNK_BYTES];

fn chunked(
    task: &fedsec_proto::v1::Task,
    update: &[f32],
    chunk_bytes: usize,
    nonce: &[u8],
) -> Vec<SubmitUpdateRequest> {
    let mut m = vec![header_msg(task, update.len() as u64, nonce)];
    m.extend(
        update
            .chunks(chunk_bytes / 4)
            .map(|c| chunk_msg(le_bytes(c))),
    );
    m.push(trailer_msg(digest(update).to_vec()));
    m
}

/// Contract: a client written from the `.proto` chunking at any fixed size
/// from 64 KiB to 1 MiB is accepted at every model size. Checked at d =
/// 16,385, 262,145 and 1,000,003 (one, a few and many chunks; sizes that
/// are not multiples of any chunk). (Before: a count limit of
/// `2·⌈d/2¹⁸⌉ + 8` chunks, in no contract, refused 64 KiB chunks above
/// ~164k parameters: d = 262,145 needs 17 chunks, the limit was 12.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_chunking_from_64_kib_to_1_mib_is_accepted_at_every_size() {
    let h = Harness::start_with(|c| c.rate_limits.enabled = false).await;
    let mut cs = h.clients(CHUNK_BYTES.len()).await;
    let admin = h.running().admin();
    for (j, d) in [16_385u32, 262_145, 1_000_003].into_iter().enumerate() {
        let id = format!("chunks{j}");
        let mut spec = job(&id, d, 1.0);
        spec.rounds = 1;
        spec.population = Some(CHUNK_BYTES.len() as u64);
        spec.min_clients = CHUNK_BYTES.len() as u32;
        spec.round_deadline_ms = 30_000;
        spec.disable_noise = true;
        spec.clipping.clip_norm = 1e3;
        admin.create_job(spec).await.unwrap();
        let (_, w0) = cs[0].get_model(&id, 0).await;
        let mut sum = vec![0f64; d as usize];
        for (i, &cb) in CHUNK_BYTES.iter().enumerate() {
            let task = cs[i].wait_task(&id, T).await;
            let update: Vec<f32> = (0..d as usize)
                .map(|k| ((k % 7) as f32 - 3.0) * 1e-4 * (i + 1) as f32)
                .collect();
            for (s, u) in sum.iter_mut().zip(&update) {
                *s += f64::from(*u);
            }
            cs[i]
                .submit_raw(chunked(&task, &update, cb, b"n"))
                .await
                .unwrap_or_else(|e| panic!("d = {d}, {cb}-byte chunks: {e:?}"));
        }
        admin
            .wait_for_job(&id, T, |j| j.rounds_completed == 1)
            .await
            .unwrap();
        let (_, w1) = cs[0].get_model(&id, 0).await;
        // FedAvg with the fixed denominator q × population = 4 (every tenant
        // reported).
        for k in (0..d as usize).step_by(997) {
            let expected = f64::from(w0[k]) + sum[k] / CHUNK_BYTES.len() as f64;
            assert!(
                (f64::from(w1[k]) - expected).abs() < 1e-5,
                "d = {d}, value {k}: {} vs {expected}",
                w1[k]
            );
        }
    }
}

/// Attack: chunks below the 64 KiB minimum that do not complete the tensor
/// (a 4-byte chunk between full ones; an empty chunk). Bound: refused at
/// that chunk with `INVALID_ARGUMENT` (`bad_chunk`), so no sender can make
/// the coordinator process more than `⌈4d / 64 KiB⌉` chunks, or stall it
/// with empty ones. (Before: any chunk size was accepted up to the count
/// limit, including empty chunks.)
#[tokio::test]
async fn small_chunks_that_do_not_complete_the_tensor_are_refused() {
    const D: u32 = 300_000;
    let h = Harness::start().await;
    let mut c = h.clients(1).await.pop().unwrap();
    let mut spec = job("small", D, 1.0);
    spec.round_deadline_ms = 30_000;
    // Exact noise for 300k values would take seconds at release.
    spec.disable_noise = true;
    h.running().admin().create_job(spec).await.unwrap();
    let task = c.wait_task("small", T).await;
    let update = vec![0.0f32; D as usize];
    // Full 1 MiB chunks, with a 4-byte chunk slipped in after the first.
    let mut m = chunked(&task, &update, MAX_CHUNK_BYTES, b"n");
    let first = match &m[1].part {
        Some(fedsec_proto::v1::submit_update_request::Part::Chunk(c)) => c.data.clone(),
        _ => unreachable!(),
    };
    let cut = first.len() - 4;
    m[1] = chunk_msg(first.slice(..cut));
    m.insert(2, chunk_msg(first.slice(cut..)));
    let e = c.submit_raw(m).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(
        e.message().contains("below the 65536-byte minimum"),
        "{e:?}"
    );
    // An empty chunk.
    let mut m = chunked(&task, &update, MAX_CHUNK_BYTES, b"n");
    m.insert(1, chunk_msg(bytes::Bytes::new()));
    let e = c.submit_raw(m).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    // The well-formed upload is still accepted afterwards.
    let r = c
        .submit_raw(chunked(&task, &update, MIN_CHUNK_BYTES, b"n"))
        .await
        .unwrap();
    assert!(r.newly_accepted);
}
