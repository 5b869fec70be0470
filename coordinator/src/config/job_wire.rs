//! A job's wire form: the Admin API's `JobConfig` message to a [`JobSpec`]
//! (validated like a file's) and back, and the training config sent in tasks.

use fedsec_model::ModelSpec;
use fedsec_proto::model::ModelSpecWire;
use fedsec_proto::v1;

use super::*;

impl JobSpec {
    /// Reads a job from the Admin API's `JobConfig`, filling defaults for
    /// zero/empty fields, and validates it (keys are prefixed `config.`).
    pub fn from_proto(msg: &v1::JobConfig, dangerous: &DangerousConfig) -> CResult<Self> {
        let model = msg
            .model_spec
            .as_ref()
            .ok_or_else(|| ConfigError::invalid("config.model_spec", "required"))?;
        let model = ModelSpec::from_proto(model)
            .map_err(|e| ConfigError::invalid("config.model_spec", e.to_string()))?;
        let mut spec = Self::new(msg.job_id.clone(), model, 1.0, 0);
        spec.name = msg.name.clone();
        spec.init_seed = msg.init_seed;
        spec.init_weights_path =
            (!msg.init_weights_path.is_empty()).then(|| PathBuf::from(&msg.init_weights_path));
        if msg.rounds != 0 {
            spec.rounds = msg.rounds;
        }
        match msg.sampling {
            Some(v1::job_config::Sampling::SamplingRate(q)) => spec.sampling_rate = Some(q),
            Some(v1::job_config::Sampling::ExpectedCohort(m)) => {
                spec.sampling_rate = None;
                spec.expected_cohort = Some(m);
            }
            None => spec.sampling_rate = None,
        }
        if let Some(c) = &msg.clipping {
            let d = ClippingSpec::default();
            spec.clipping = ClippingSpec {
                clip_norm: if c.clip_norm == 0.0 {
                    d.clip_norm
                } else {
                    c.clip_norm
                },
                adaptive: c.adaptive,
                target_quantile: if c.target_quantile == 0.0 {
                    d.target_quantile
                } else {
                    c.target_quantile
                },
                learning_rate: if c.learning_rate == 0.0 {
                    d.learning_rate
                } else {
                    c.learning_rate
                },
                count_stddev: c.count_stddev,
            };
        }
        match msg.noise {
            Some(v1::job_config::Noise::NoiseMultiplier(z)) => spec.noise_multiplier = Some(z),
            Some(v1::job_config::Noise::TargetEpsilon(e)) => spec.target_epsilon = Some(e),
            None => {}
        }
        if msg.delta != 0.0 {
            spec.delta = msg.delta;
        }
        spec.epsilon_budget = (msg.epsilon_budget != 0.0).then_some(msg.epsilon_budget);
        if msg.min_clients != 0 {
            spec.min_clients = msg.min_clients;
        }
        spec.population = (msg.population != 0).then_some(msg.population);
        if msg.population_drift != 0.0 {
            spec.population_drift = msg.population_drift;
        }
        if msg.round_deadline_ms != 0 {
            spec.round_deadline_ms = msg.round_deadline_ms;
        }
        spec.close_at_deadline = msg.close_at_deadline;
        if let Some(t) = &msg.training {
            let d = TrainingSpec::default();
            spec.training = TrainingSpec {
                local_epochs: if t.local_epochs == 0 {
                    d.local_epochs
                } else {
                    t.local_epochs
                },
                batch_size: if t.batch_size == 0 {
                    d.batch_size
                } else {
                    t.batch_size
                },
                learning_rate: if t.learning_rate == 0.0 {
                    d.learning_rate
                } else {
                    t.learning_rate
                },
                optimizer: match v1::LocalOptimizer::try_from(t.optimizer) {
                    Ok(v1::LocalOptimizer::Adam) => LocalOptimizerKind::Adam,
                    Ok(_) => LocalOptimizerKind::Sgd,
                    Err(_) => {
                        return Err(ConfigError::invalid(
                            "config.training.optimizer",
                            format!("unknown optimizer {}", t.optimizer),
                        ));
                    }
                },
                momentum: t.momentum,
                class_weighting: t.class_weighting,
                max_steps: t.max_steps,
            };
        }
        if let Some(o) = &msg.server_optimizer {
            spec.server_optimizer = ServerOptimizerSpec {
                learning_rate: if o.learning_rate == 0.0 {
                    1.0
                } else {
                    o.learning_rate
                },
                momentum: o.momentum,
            };
        }
        if msg.noise_source.len() > crate::fields::MAX_NOISE_SOURCE_BYTES {
            return Err(ConfigError::invalid(
                "config.noise_source",
                format!(
                    "{} bytes, the limit is {} (expected \"discrete\", \"opendp\" or \"simulation\")",
                    msg.noise_source.len(),
                    crate::fields::MAX_NOISE_SOURCE_BYTES
                ),
            ));
        }
        spec.noise_source = if msg.noise_source.is_empty() {
            NoiseKind::default()
        } else {
            msg.noise_source
                .parse()
                .map_err(|e: fedsec_privacy::NoiseError| {
                    ConfigError::invalid("config.noise_source", e.to_string())
                })?
        };
        spec.disable_noise = msg.disable_noise;
        spec.audit = msg.audit.map(|a| AuditSpec {
            canaries: a.canaries,
            seed: a.seed,
        });
        if let Some(screen) = &msg.screen {
            spec.screen = ScreenSpec::from_proto(screen)?;
        }
        spec.fill_defaults();
        spec.validate("config", dangerous)?;
        Ok(spec)
    }

    /// The job as the Admin API's `JobConfig` (defaults filled in).
    pub fn to_proto(&self) -> v1::JobConfig {
        v1::JobConfig {
            job_id: self.id.clone(),
            name: self.name.clone(),
            model_spec: Some(self.model.to_proto()),
            init_seed: self.init_seed,
            init_weights_path: self
                .init_weights_path
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            rounds: self.rounds,
            sampling: match self.sampling() {
                Sampling::Rate(q) => Some(v1::job_config::Sampling::SamplingRate(q)),
                Sampling::Cohort(m) => Some(v1::job_config::Sampling::ExpectedCohort(m)),
            },
            clipping: Some(v1::ClippingConfig {
                clip_norm: self.clipping.clip_norm,
                adaptive: self.clipping.adaptive,
                target_quantile: self.clipping.target_quantile,
                learning_rate: self.clipping.learning_rate,
                count_stddev: self.clipping.count_stddev,
            }),
            noise: match self.noise_level() {
                NoiseLevel::Multiplier(z) => Some(v1::job_config::Noise::NoiseMultiplier(z)),
                NoiseLevel::TargetEpsilon(e) => Some(v1::job_config::Noise::TargetEpsilon(e)),
            },
            delta: self.delta,
            epsilon_budget: self.epsilon_budget.unwrap_or(0.0),
            min_clients: self.min_clients,
            population: self.population.unwrap_or(0),
            population_drift: self.population_drift,
            round_deadline_ms: self.round_deadline_ms,
            close_at_deadline: self.close_at_deadline,
            training: Some(self.training_proto()),
            server_optimizer: Some(v1::ServerOptimizer {
                learning_rate: self.server_optimizer.learning_rate,
                momentum: self.server_optimizer.momentum,
            }),
            noise_source: self.noise_source.as_str().to_owned(),
            disable_noise: self.disable_noise,
            audit: self.audit.as_ref().map(|a| v1::AuditConfig {
                canaries: a.canaries,
                seed: a.seed,
            }),
            screen: Some(self.screen.to_proto()),
        }
    }

    /// The local training config as sent in tasks.
    pub fn training_proto(&self) -> v1::TrainingConfig {
        let t = &self.training;
        v1::TrainingConfig {
            local_epochs: t.local_epochs,
            batch_size: t.batch_size,
            learning_rate: t.learning_rate,
            optimizer: match t.optimizer {
                LocalOptimizerKind::Sgd => v1::LocalOptimizer::Sgd,
                LocalOptimizerKind::Adam => v1::LocalOptimizer::Adam,
            } as i32,
            momentum: t.momentum,
            class_weighting: t.class_weighting,
            max_steps: t.max_steps,
        }
    }
}
