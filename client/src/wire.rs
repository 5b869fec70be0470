//! The wire form of the detector's [`TrainConfig`] (`fedsec.v1.TrainingConfig`):
//! conversions both ways, with validation on the way in; and a task's
//! [`TaskRef`] read from its wire message.
//!
//! The detector knows nothing of the wire; the client, which reads tasks from
//! it, owns this mapping.

use fedsec_detector::train::{ConfigError, Optimizer, TrainConfig};
use fedsec_proto::v1;

use crate::events::TaskRef;

/// The reference of a task as it arrived (job, round, attempt, base
/// version): what events name, also for a task whose terms are refused.
impl From<&v1::Task> for TaskRef {
    fn from(t: &v1::Task) -> Self {
        Self {
            job_id: t.job_id.clone(),
            round: t.round,
            attempt: t.attempt,
            base_version: t.base_version,
        }
    }
}

/// Conversions of a [`TrainConfig`] to and from its wire message.
pub trait TrainConfigWire: Sized {
    /// The config as its wire message.
    fn to_proto(&self) -> v1::TrainingConfig;
    /// Reads and validates the wire config; an unspecified optimiser means SGD
    /// (as the .proto documents).
    fn from_proto(m: &v1::TrainingConfig) -> Result<Self, ConfigError>;
}

impl TrainConfigWire for TrainConfig {
    fn to_proto(&self) -> v1::TrainingConfig {
        v1::TrainingConfig {
            local_epochs: self.epochs,
            batch_size: self.batch_size,
            learning_rate: self.learning_rate,
            optimizer: match self.optimizer {
                Optimizer::Sgd => v1::LocalOptimizer::Sgd,
                Optimizer::Adam => v1::LocalOptimizer::Adam,
            } as i32,
            momentum: self.momentum,
            class_weighting: self.class_weighting,
            max_steps: self.max_steps,
        }
    }

    fn from_proto(m: &v1::TrainingConfig) -> Result<Self, ConfigError> {
        let optimizer = match v1::LocalOptimizer::try_from(m.optimizer) {
            Ok(v1::LocalOptimizer::Unspecified | v1::LocalOptimizer::Sgd) => Optimizer::Sgd,
            Ok(v1::LocalOptimizer::Adam) => Optimizer::Adam,
            Err(_) => return Err(ConfigError::Optimizer(m.optimizer)),
        };
        let c = Self {
            epochs: m.local_epochs,
            batch_size: m.batch_size,
            learning_rate: m.learning_rate,
            optimizer,
            momentum: m.momentum,
            class_weighting: m.class_weighting,
            max_steps: m.max_steps,
        };
        c.validate()?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_config_conversion_validates() {
        let c = TrainConfig {
            epochs: 2,
            batch_size: 32,
            learning_rate: 0.05,
            optimizer: Optimizer::Sgd,
            momentum: 0.9,
            class_weighting: true,
            max_steps: 100,
        };
        assert_eq!(TrainConfig::from_proto(&c.to_proto()), Ok(c.clone()));
        let mut m = c.to_proto();
        m.optimizer = 0;
        assert_eq!(
            TrainConfig::from_proto(&m).map(|c| c.optimizer),
            Ok(Optimizer::Sgd)
        );
        m.optimizer = 9;
        assert_eq!(TrainConfig::from_proto(&m), Err(ConfigError::Optimizer(9)));
        type Mutation = fn(&mut v1::TrainingConfig);
        let cases: Vec<(Mutation, ConfigError)> = vec![
            (
                |m| m.learning_rate = f64::NAN,
                ConfigError::LearningRate(f64::NAN),
            ),
            (|m| m.learning_rate = 0.0, ConfigError::LearningRate(0.0)),
            (|m| m.batch_size = 0, ConfigError::BatchSize(0)),
            (|m| m.local_epochs = 0, ConfigError::Epochs(0)),
            (|m| m.momentum = 1.0, ConfigError::Momentum(1.0)),
            (
                |m| m.momentum = f64::INFINITY,
                ConfigError::Momentum(f64::INFINITY),
            ),
        ];
        for (mutate, want) in cases {
            let mut m = c.to_proto();
            mutate(&mut m);
            let got = TrainConfig::from_proto(&m).unwrap_err();
            assert_eq!(got.to_string(), want.to_string());
        }
    }
}
