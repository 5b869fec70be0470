//! Local training of a task: subsample to the tenant's cap, train, report on
//! the local holdout, clip (and noise) the update.

use fedsec_detector::dataset::Dataset;
use fedsec_detector::metrics::roc_auc;
use fedsec_detector::model::score;
use fedsec_detector::train::{TrainConfig, evaluate_loss, train_local};
use fedsec_model::ModelSpec;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

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
    /// The local training rows.
    pub(super) train: Dataset,
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

/// Trains, reports on the holdout, clips (and noises) the update.
pub(super) fn train_and_prepare(run: LocalRun) -> Result<Trained, SkipReason> {
    let LocalRun {
        spec,
        global,
        train,
        holdout,
        config,
        seed,
        max_examples,
        clip_norm,
        noise_stddev,
    } = run;
    let (spec, global, holdout, config) = (&spec, &global[..], &holdout, &config);
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
