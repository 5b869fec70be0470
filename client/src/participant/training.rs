//! Local training of a task: add the unlabelled rows (pseudo-labelled by
//! the global model when self-training is on), subsample to the tenant's
//! cap, train, report on the local holdout, clip (and noise) the update.

use fedsec_detector::dataset::Dataset;
use fedsec_detector::features::NUM_FEATURES;
use fedsec_detector::metrics::roc_auc;
use fedsec_detector::model::score;
use fedsec_detector::train::{TrainConfig, evaluate_loss, train_local};
use fedsec_detector::weak::SelfTraining;
use fedsec_detector::weak::self_train::pseudo_labels;
use fedsec_model::ModelSpec;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::data::Unlabelled;
use crate::events::{HoldoutReport, TrainReport};
use crate::guard::SkipReason;

use super::Trained;

fn auc(spec: &ModelSpec, weights: &[f32], data: &Dataset) -> Option<f64> {
    let scores = score(spec, weights, data.features()).ok()?;
    let labels: Vec<bool> = (0..data.len()).map(|i| data.is_bot(i)).collect();
    roc_auc(&scores, &labels).ok()
}

/// One local training run of a prepared task, moved to a blocking thread.
pub(super) struct LocalRun {
    /// The job's model.
    pub(super) spec: ModelSpec,
    /// The global weights the round trains from.
    pub(super) global: Vec<f32>,
    /// The local training rows with a label (ground truth or silver).
    pub(super) train: Dataset,
    /// Training rows the weak labeller abstained on (self-training).
    pub(super) unlabelled: Unlabelled,
    /// Self-training settings (`[labels.self_training]`).
    pub(super) self_training: SelfTraining,
    /// The job's round (self-training's warm-up counts rounds).
    pub(super) round: u64,
    /// The local holdout (may be empty).
    pub(super) holdout: Dataset,
    /// The task's training config after the tenant's limits.
    pub(super) config: TrainConfig,
    /// Seed of the run.
    pub(super) seed: u64,
    /// The tenant's cap on examples per round.
    pub(super) max_examples: Option<usize>,
    /// The task's clip norm.
    pub(super) clip_norm: f64,
    /// Client-side noise stddev (0: central noise).
    pub(super) noise_stddev: f64,
}

/// The round's training rows: the labelled rows, plus each unlabelled row
/// with its pseudo-label from the global model (self-training, after its
/// warm-up) or else as a negative at its own weight (left out at 0).
pub(super) fn with_unlabelled(
    spec: &ModelSpec,
    global: &[f32],
    mut train: Dataset,
    unlabelled: &Unlabelled,
    st: &SelfTraining,
    round: u64,
) -> Dataset {
    if unlabelled.is_empty() {
        return train;
    }
    let pseudo = if st.active(round) {
        // A model that cannot score (wrong width) pseudo-labels nothing.
        score(spec, global, &unlabelled.features)
            .map(|p| pseudo_labels(&p, st))
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    for (i, (x, &w)) in unlabelled
        .features
        .chunks_exact(NUM_FEATURES)
        .zip(&unlabelled.weights)
        .enumerate()
    {
        let target = pseudo
            .get(i)
            .copied()
            .flatten()
            .or((w > 0.0).then_some((false, w)));
        if let Some((bot, weight)) = target {
            // Rows were validated on the way into the store.
            let _ = train.push_weighted(x, bot, 0, weight);
        }
    }
    train
}

/// Trains, reports on the holdout, clips (and noises) the update.
pub(super) fn train_and_prepare(run: LocalRun) -> Result<Trained, SkipReason> {
    let LocalRun {
        spec,
        global,
        train,
        unlabelled,
        self_training,
        round,
        holdout,
        config,
        seed,
        max_examples,
        clip_norm,
        noise_stddev,
    } = run;
    let (spec, global, holdout, config) = (&spec, &global[..], &holdout, &config);
    let train = with_unlabelled(spec, global, train, &unlabelled, &self_training, round);
    let train = match max_examples {
        Some(k) if train.len() > k => {
            let mut idx: Vec<usize> = (0..train.len()).collect();
            let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7361_6d70_6c65);
            rand::seq::SliceRandom::shuffle(idx.as_mut_slice(), &mut rng);
            idx.truncate(k);
            idx.sort_unstable();
            train.subset(&idx)
        }
        _ => train,
    };
    let out = train_local(spec, global, &train, config, seed)
        .map_err(|e| SkipReason::TrainingFailed(e.to_string()))?;
    let holdout_report = if holdout.is_empty() {
        None
    } else {
        let local = fedsec_detector::train::apply_delta(global, &out.delta);
        let loss = |w: &[f32]| evaluate_loss(spec, w, holdout, false);
        match (loss(global), loss(&local)) {
            (Ok(loss_global), Ok(loss_local)) => Some(HoldoutReport {
                examples: holdout.len(),
                loss_global,
                loss_local,
                auc_global: auc(spec, global, holdout),
                auc_local: auc(spec, &local, holdout),
            }),
            _ => None,
        }
    };
    let mut update = out.delta;
    let p = crate::update::prepare(&mut update, clip_norm, noise_stddev)
        .map_err(|e| SkipReason::TrainingFailed(e.to_string()))?;
    Ok(Trained {
        report: TrainReport {
            examples: train.len(),
            steps: out.steps,
            loss_before: out.loss_before,
            loss_after: out.loss_after,
            holdout: holdout_report,
            update_norm: p.norm,
            clipped: !p.within_clip,
            client_noise_stddev: p.noise_stddev,
        },
        update,
        within_clip: p.within_clip,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlabelled_rows_get_pseudo_labels_only_after_the_warm_up() {
        // Every weight 0 but the output bias: p = sigmoid(5) ≈ 0.993 everywhere.
        let spec = ModelSpec::mlp(NUM_FEATURES as u32, [4]);
        let mut global = vec![0.0f32; spec.num_params()];
        if let Some(b) = global.last_mut() {
            *b = 5.0;
        }
        let mut labelled = Dataset::new(NUM_FEATURES);
        labelled.push(&[0.0; NUM_FEATURES], false).unwrap();
        let unlabelled = Unlabelled {
            features: vec![1.0; 3 * NUM_FEATURES],
            weights: vec![0.0, 0.1, 0.0],
        };
        let st = SelfTraining {
            enabled: true,
            share: 1.0,
            margin: 0.2,
            weight: 0.5,
            warmup_rounds: 2,
        };
        // Warm-up: only the weighted row trains, as a negative.
        let d = with_unlabelled(&spec, &global, labelled.clone(), &unlabelled, &st, 2);
        assert_eq!(d.len(), 2);
        assert!(!d.is_bot(1));
        // After it: all three pseudo-labelled abuse, weight 0.5·2·0.493.
        let d = with_unlabelled(&spec, &global, labelled.clone(), &unlabelled, &st, 3);
        assert_eq!(d.len(), 4);
        assert!((1..4).all(|i| d.is_bot(i)));
        assert!((d.weights()[1] - 0.5 * 2.0 * (0.99331 - 0.5)).abs() < 1e-3);
        // Off: as before self-training existed.
        let off = SelfTraining {
            enabled: false,
            ..st
        };
        assert_eq!(
            with_unlabelled(&spec, &global, labelled, &unlabelled, &off, 99).len(),
            2
        );
    }
}
