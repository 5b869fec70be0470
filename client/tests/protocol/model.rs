//! A model that does not match what was announced, or whose release
//! signature does not verify, is refused: nothing is trained or sent.

use fedsec_client::{Event, RunOutcome, SkipReason};
use fedsec_detector::features::NUM_FEATURES;
use fedsec_model::ModelSpec;
use fedsec_proto::tensor::digest;

use crate::scripted::{Tamper, honest, run_against};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_whose_digest_does_not_match_is_rejected() {
    let mut script = honest();
    let mut other = script.weights.clone();
    other[3] += 1e-3;
    script.tampered_digest = Some(digest(&other).to_vec());
    let f = run_against(script).await;
    assert!(matches!(f.outcome, RunOutcome::JobFinished { .. }));
    let reasons: Vec<SkipReason> = f
        .recorder
        .events()
        .into_iter()
        .filter_map(|e| match e {
            Event::Skipped { reason, .. } => Some(reason),
            _ => None,
        })
        .collect();
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    match &reasons[0] {
        SkipReason::ModelRejected(m) => assert!(m.contains("digest does not match"), "{m}"),
        other => panic!("{other:?}"),
    }
    let s = f.script.lock().unwrap();
    assert!(s.uploads.is_empty(), "nothing was sent");
    assert!(f.ledger.entries.is_empty(), "nothing was recorded");
    assert_eq!(
        f.recorder.count(|e| matches!(e, Event::Trained { .. })),
        0,
        "nothing was trained"
    );
    assert!(
        f.model.is_none(),
        "the tampered model is not used for scoring"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_of_another_architecture_is_rejected() {
    let mut script = honest();
    // The task trains logistic(38); the download is an MLP (correct digest).
    let mlp = ModelSpec::mlp(NUM_FEATURES as u32, [4]);
    script.weights = mlp.init_weights(1);
    script.served_spec = Some(mlp);
    script.finish_after_download = true;
    let f = run_against(script).await;
    let rejected = f.recorder.events().into_iter().find_map(|e| match e {
        Event::Skipped {
            reason: SkipReason::ModelRejected(m),
            ..
        } => Some(m),
        _ => None,
    });
    let m = rejected.unwrap();
    assert!(m.contains("but the task trains"), "{m}");
    assert!(f.script.lock().unwrap().uploads.is_empty());
    assert!(f.ledger.entries.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_changed_after_signing_is_refused_before_training() {
    for tamper in [
        Tamper::Weights,
        Tamper::Receipt,
        Tamper::HeaderRound,
        Tamper::Signature,
        Tamper::WrongKey,
        Tamper::Unsigned,
        Tamper::AuditHead,
    ] {
        let mut script = honest();
        script.release_tamper = Some(tamper);
        let f = run_against(script).await;
        let reasons: Vec<SkipReason> = f
            .recorder
            .events()
            .into_iter()
            .filter_map(|e| match e {
                Event::Skipped { reason, .. } => Some(reason),
                _ => None,
            })
            .collect();
        assert_eq!(reasons.len(), 1, "{tamper:?}: {reasons:?}");
        match &reasons[0] {
            SkipReason::ModelRejected(m) => {
                assert!(m.contains("release signature"), "{tamper:?}: {m}");
            }
            other => panic!("{tamper:?}: {other:?}"),
        }
        let s = f.script.lock().unwrap();
        assert!(s.uploads.is_empty(), "{tamper:?}: nothing was sent");
        assert!(f.ledger.entries.is_empty(), "{tamper:?}: nothing recorded");
        assert_eq!(
            f.recorder.count(|e| matches!(e, Event::Trained { .. })),
            0,
            "{tamper:?}: nothing was trained"
        );
        assert!(f.model.is_none(), "{tamper:?}: the model was installed");
    }
}
