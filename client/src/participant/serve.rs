//! Serving one task: check it against the guard, fetch the model, train,
//! record the round in the ledger and submit the update.

use super::training::{LocalRun, train_and_prepare};
use std::time::Instant;

use fedsec_proto::v1::{self};
use rand::RngExt;

use crate::error::{Disposition, Error};
use crate::events::{Event, TaskRef};
use crate::guard::{self, Assessment, SkipReason};
use crate::ledger::{EntryStatus, LedgerEntry};
use crate::retry::Backoff;
use crate::rpc::update_messages;
use crate::task::TaskTerms;

use super::{Runner, history_of, now_unix_ms, or_stop, training_seed};

impl Runner<'_> {
    /// Serves one task whose terms were parsed where it arrived
    /// ([`TaskTerms::from_proto`]): policy, download, guard, training,
    /// record, upload.
    pub(super) async fn serve(&mut self, task: TaskTerms, received: Instant) -> Result<(), Error> {
        let deadline = received.checked_add(task.remaining).unwrap_or(received);
        let tref = task.reference();
        let cfg = self.cfg();
        let planned = &task.planned;
        // 1. The policy's floors and ceilings.
        if let Err(reason) = guard::check_task(&cfg.policy, planned) {
            self.skip(&tref, reason);
            return Ok(());
        }
        let training = cfg.training.apply(task.training.clone());
        // 2. The base model, verified (and kept for scoring even if this
        //    round cannot be served).
        let model = match self.fetch_model(&tref, &task.spec, deadline).await {
            Ok(Some(d)) => d,
            Ok(None) => return Ok(()),
            Err(reason) => {
                self.skip(&tref, reason);
                return Ok(());
            }
        };
        if model.version != task.base_version {
            self.skip(
                &tref,
                SkipReason::ModelRejected(format!(
                    "asked for version {}, got {}",
                    task.base_version, model.version
                )),
            );
            return Ok(());
        }
        self.install(&model).await?;
        if let Some(problem) = &model.receipt_problem
            && planned.noise_enabled
        {
            self.p.emit(Event::Warning {
                message: format!("job {}: {problem}", planned.job_id),
            });
        }
        // 3. Local data.
        self.refresh_data(true).await?;
        let (train, unlabelled, holdout) = self.p.shared.store().snapshot_parts();
        // Rows that train whatever the model says (pseudo-labels only add).
        let have = train.len() + unlabelled.weighted();
        if have < cfg.data_options.min_examples {
            self.skip(
                &tref,
                SkipReason::NotEnoughData {
                    have,
                    need: cfg.data_options.min_examples,
                },
            );
            return Ok(());
        }
        // The tenant's floors on what one update may be computed from.
        let examples = cfg
            .training
            .max_examples_per_round
            .map_or(have, |k| k.min(have));
        let train_cfg = match guard::check_training(&cfg.policy, training, examples) {
            Ok(c) => c,
            Err(reason) => {
                self.skip(&tref, reason);
                return Ok(());
            }
        };
        // 4. The guard.
        let bound = cfg.job_id.as_deref() == Some(planned.job_id.as_str());
        let history = model
            .receipt
            .as_ref()
            .filter(|_| bound && cfg.policy.trust_coordinator_sampling)
            .map(history_of);
        let assessment = {
            let policy = cfg.policy.clone();
            let file = self.p.ledger_file()?.clone();
            let planned = planned.clone();
            or_stop(
                &self.stop,
                tokio::task::spawn_blocking(move || {
                    guard::decide(&policy, &file, &planned, history.as_deref())
                }),
            )
            .await
        };
        let assessment: Assessment = match assessment {
            None => return Ok(()),
            Some(Err(e)) => return Err(Error::task("guard")(e)),
            Some(Ok(Err(reason))) => {
                self.skip(&tref, reason);
                return Ok(());
            }
            Some(Ok(Ok(a))) => a,
        };
        if bound
            && cfg.policy.trust_coordinator_sampling
            && let Some(why) = &assessment.amplified_unavailable
        {
            self.p.emit(Event::Warning {
                message: format!(
                    "job {}: amplified accounting unavailable ({why}); counting this client's \
                     rounds unamplified",
                    planned.job_id
                ),
            });
        }
        // 5. Local training, off the async threads.
        let trained = {
            let spec = task.spec.clone();
            let weights = model.weights.clone();
            let seed = training_seed(cfg.seed, &tref);
            let (self_training, round) = (cfg.data_options.labels.self_training, tref.round);
            let max_examples = cfg.training.max_examples_per_round;
            let (clip, noise) = (planned.clip_norm, task.client_noise_stddev);
            or_stop(
                &self.stop,
                tokio::task::spawn_blocking(move || {
                    train_and_prepare(LocalRun {
                        spec,
                        global: weights,
                        train,
                        unlabelled,
                        self_training,
                        round,
                        holdout,
                        config: train_cfg,
                        seed,
                        max_examples,
                        clip_norm: clip,
                        noise_stddev: noise,
                    })
                }),
            )
            .await
        };
        let trained = match trained {
            None => return Ok(()),
            Some(Err(e)) => return Err(Error::task("training")(e)),
            Some(Ok(Err(reason))) => {
                self.skip(&tref, reason);
                return Ok(());
            }
            Some(Ok(Ok(t))) => t,
        };
        self.p.emit(Event::Trained {
            task: tref.clone(),
            report: trained.report.clone(),
        });
        if Instant::now() >= deadline {
            self.skip(&tref, SkipReason::DeadlinePassed);
            return Ok(());
        }
        // 6. Record in the tenant's ledger, durably, before anything is sent:
        // a new entry (one more step for the guard) unless this exact update
        // was recorded for this round attempt before (a resend after a
        // restart; the same bytes reveal nothing new). A task served again
        // with another base version or other data is a new contribution.
        let update_sha256 = hex::encode(fedsec_proto::tensor::digest(&trained.update));
        let existing = self
            .p
            .ledger_file()?
            .find_identical(
                &tref.job_id,
                tref.round,
                tref.attempt,
                tref.base_version,
                &update_sha256,
            )
            .cloned();
        let nonce_hex = match existing {
            Some(e) => e.nonce,
            None => {
                let nonce: [u8; 16] = rand::rng().random();
                let entry = LedgerEntry {
                    job_id: planned.job_id.clone(),
                    round: planned.round,
                    attempt: planned.attempt,
                    base_version: task.base_version,
                    sampling_rate: planned.sampling_rate,
                    noise_multiplier: planned.noise_multiplier,
                    clip_norm: planned.clip_norm,
                    delta: planned.delta,
                    noise_enabled: planned.noise_enabled,
                    client_noise_stddev: task.client_noise_stddev,
                    recorded_unix_ms: now_unix_ms(),
                    nonce: hex::encode(nonce),
                    update_sha256,
                    status: EntryStatus::Recorded,
                    detail: String::new(),
                    epsilon_after: Some(assessment.epsilon).filter(|e| e.is_finite()),
                    basis: assessment.basis.as_str().into(),
                };
                self.p.with_ledger(move |l| l.record(entry)).await?;
                hex::encode(nonce)
            }
        };
        self.p.emit(Event::Recorded {
            task: tref.clone(),
            epsilon: assessment.epsilon,
            basis: assessment.basis,
        });
        let nonce = hex::decode(&nonce_hex).unwrap_or_else(|_| nonce_hex.clone().into_bytes());
        // 7. Upload, retrying transient failures with the same nonce.
        let messages = update_messages(&tref, &nonce, &trained.update, trained.within_clip);
        self.submit(&tref, &nonce_hex, &messages, deadline).await
    }

    pub(super) async fn submit(
        &mut self,
        tref: &TaskRef,
        nonce_hex: &str,
        messages: &[v1::SubmitUpdateRequest],
        deadline: Instant,
    ) -> Result<(), Error> {
        let mut backoff = Backoff::new(
            self.p.config.timing.backoff_initial,
            self.p.config.timing.backoff_max,
        );
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let got = match or_stop(&self.stop, self.p.rpc.submit(messages)).await {
                None => return Ok(()),
                Some(r) => r,
            };
            let e = match got {
                Ok(resp) => {
                    let (job, round, attempt) = (tref.job_id.clone(), tref.round, tref.attempt);
                    let nonce = nonce_hex.to_owned();
                    self.p
                        .with_ledger(move |l| {
                            l.set_status(&job, round, attempt, &nonce, EntryStatus::Accepted, "")
                        })
                        .await?;
                    self.p.emit(Event::Submitted {
                        task: tref.clone(),
                        newly_accepted: resp.newly_accepted,
                        attempts,
                    });
                    return Ok(());
                }
                Err(e) => e,
            };
            match e.disposition() {
                Disposition::Definitive => {
                    let (job, round, attempt) = (tref.job_id.clone(), tref.round, tref.attempt);
                    let (nonce, detail) = (nonce_hex.to_owned(), e.message.clone());
                    self.p
                        .with_ledger(move |l| {
                            l.set_status(
                                &job,
                                round,
                                attempt,
                                &nonce,
                                EntryStatus::Rejected,
                                &detail,
                            )
                        })
                        .await?;
                    self.p.emit(Event::SubmitRejected {
                        task: tref.clone(),
                        message: e.message,
                    });
                    return Ok(());
                }
                Disposition::Reregister => {
                    if let Some(Err(Error::Ledger(l))) =
                        or_stop(&self.stop, self.p.register()).await
                    {
                        return Err(Error::Ledger(l));
                    }
                }
                Disposition::Transient => {}
            }
            let delay = backoff.fail_at_least(&mut self.rng, e.retry_after);
            if Instant::now() + delay >= deadline {
                let (job, round, attempt) = (tref.job_id.clone(), tref.round, tref.attempt);
                let nonce = nonce_hex.to_owned();
                let detail = format!("deadline passed while retrying: {}", e.message);
                self.p
                    .with_ledger(move |l| {
                        l.set_status(&job, round, attempt, &nonce, EntryStatus::Recorded, &detail)
                    })
                    .await?;
                self.skip(tref, SkipReason::DeadlinePassed);
                return Ok(());
            }
            self.p.emit(Event::Retrying {
                operation: e.operation,
                error: e.message.clone(),
                failures: backoff.failures(),
                delay_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            });
            if e.connection.is_some() {
                self.registered = false;
            }
            if !self.pause(delay).await {
                return Ok(());
            }
        }
    }
}
