//! Opening a planned round attempt: select its cohort by keyed hash over
//! the tenants, record the attempt, and publish its task (driver step 2).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use fedsec_proto::model::ModelSpecWire;
use fedsec_proto::v1;
use fedsec_round::PlannedRound;
use tokio::time::Instant;

use crate::engine::{Engine, now_unix_ms};
use crate::error::Error;
use crate::round::{OpenRound, Opening};
use crate::store::{AttemptRecord, AttemptState, Resolution};

use super::{JobRuntime, Published, weather};

/// Selects the cohort of a planned round, records the attempt and opens it
/// for uploads: each tenant of the plan-time snapshot independently with
/// probability q, keyed on the tenant id (all of a tenant's identities are
/// one unit).
pub(super) async fn open_attempt(
    engine: &Arc<Engine>,
    job: &Arc<JobRuntime>,
    res: &Resolution,
    planned: &PlannedRound,
    current: &Published,
    selectable: Vec<String>,
) -> Result<Arc<OpenRound>, Error> {
    let job_id = job.id().to_owned();
    let round = planned.charge.round;
    let attempt = {
        let id = job_id.clone();
        engine.db(move |s| s.next_attempt(&id, round)).await?
    };
    let selected: HashSet<String> = selectable
        .into_iter()
        .filter(|t| {
            engine
                .sampler
                .selected(&job_id, round, attempt, t, res.sampling_rate)
        })
        .collect();
    let deadline_ms = job.spec.round_deadline_ms;
    let opened = now_unix_ms();
    let deadline_unix_ms = opened + i64::try_from(deadline_ms).unwrap_or(i64::MAX / 2);
    let deadline = Instant::now() + Duration::from_millis(deadline_ms);
    let record = AttemptRecord {
        job_id: job_id.clone(),
        round,
        attempt,
        state: AttemptState::Open,
        base_version: current.version,
        opened_unix_ms: opened,
        deadline_unix_ms,
        closed_unix_ms: None,
        selected: selected.len() as u64,
        accepted: 0,
        rejected: 0,
        note: String::new(),
    };
    engine.db(move |s| s.open_attempt(&record)).await?;
    // The store took a write: a fault holding the job is over (issue 16).
    weather::cleared(engine, job).await;
    if !job.noise_enabled() {
        tracing::warn!(job = %job_id, round, "DANGEROUS: this job publishes WITHOUT noise; its models carry no privacy guarantee");
    } else if !job.spec.noise_source.is_production_safe() {
        tracing::warn!(job = %job_id, round, source = %job.spec.noise_source, "DANGEROUS: this job uses a noise source that is not floating-point safe");
    }
    let task = v1::Task {
        job_id: job_id.clone(),
        round,
        attempt,
        base_version: current.version,
        model_spec: Some(job.spec.model.to_proto()),
        training: Some(job.spec.training_proto()),
        clip_norm: planned.charge.clip_norm,
        client_noise: Some(v1::ClientNoise {
            mode: v1::NoiseMode::Central as i32,
            stddev: 0.0,
        }),
        deadline_unix_ms,
        remaining_ms: 0,
        sampling_rate: res.sampling_rate,
        noise_multiplier: if job.noise_enabled() {
            planned.charge.mechanism().noise_multiplier
        } else {
            0.0
        },
        delta: job.spec.delta,
        noise_enabled: job.noise_enabled(),
    };
    let open = Arc::new(OpenRound::new(Opening {
        job_id: job_id.clone(),
        round,
        attempt,
        base_version: current.version,
        clip_norm: planned.charge.clip_norm,
        dim: job.dim,
        deadline,
        deadline_unix_ms,
        selected,
        task,
    }));
    job.set_round(Some(open.clone()));
    job.opened.notify_one();
    tracing::info!(job = %job_id, round, attempt, selected = open.selected.len(), deadline_ms, base_version = current.version, "round opened");
    Ok(open)
}
