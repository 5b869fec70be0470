//! What a task asks, parsed and checked against what the client can do, and
//! local training of a prepared task.

use super::*;

/// What a task asks, parsed and checked against what the client can do.
pub(super) struct PreparedTask {
    pub(super) spec: ModelSpec,
    pub(super) train: TrainConfig,
    pub(super) noise_stddev: f64,
}

pub(super) fn prepare_task(task: &v1::Task, cfg: &Config) -> Result<PreparedTask, SkipReason> {
    let invalid = |m: String| SkipReason::InvalidTask(m);
    let spec = task
        .model_spec
        .as_ref()
        .ok_or_else(|| invalid("the task has no model spec".into()))
        .and_then(|s| ModelSpec::from_proto(s).map_err(|e| invalid(format!("model spec: {e}"))))?;
    if spec.input_dim as usize != NUM_FEATURES {
        return Err(invalid(format!(
            "the job's model takes {} inputs; this client's sessions have {NUM_FEATURES} features",
            spec.input_dim
        )));
    }
    let train = task
        .training
        .as_ref()
        .ok_or_else(|| invalid("the task has no training configuration".into()))
        .and_then(|t| {
            TrainConfig::from_proto(t).map_err(|e| invalid(format!("training config: {e}")))
        })?;
    let train = cfg.training.apply(train);
    let noise_stddev = match &task.client_noise {
        Some(n) if n.mode == v1::NoiseMode::Client as i32 => {
            if !(n.stddev > 0.0 && n.stddev.is_finite()) {
                return Err(invalid(format!(
                    "client noise mode with stddev {}",
                    n.stddev
                )));
            }
            n.stddev
        }
        Some(n)
            if n.mode == v1::NoiseMode::Central as i32
                || n.mode == v1::NoiseMode::Unspecified as i32 =>
        {
            0.0
        }
        None => 0.0,
        Some(n) => return Err(invalid(format!("unknown noise mode {}", n.mode))),
    };
    Ok(PreparedTask {
        spec,
        train,
        noise_stddev,
    })
}

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
