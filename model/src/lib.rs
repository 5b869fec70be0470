//! [`ModelSpec`]: the framework-free description of a detection model, and the
//! canonical layout of its flat `f32` parameter vector.
//!
//! The coordinator sees models only as flat vectors plus a spec; the detector
//! crate maps the same layout onto burn modules. The layout is:
//!
//! for each dense layer `l` from the inputs to the output, its weight matrix
//! row-major with shape `[fan_in, fan_out]` (named `layers.{l}.weight`),
//! then its bias of length `fan_out` (named `layers.{l}.bias`).
//!
//! The output layer has one unit, the bot logit. Hidden layers use ReLU.
//!
//! This is a leaf crate (serde, thiserror and a seeded RNG for initial weights; no
//! wire, no framework, no I/O) shared by the detector, the coordinator and the
//! client. The wire form of a spec and its conversions live in `fedsec-proto`
//! (`fedsec_proto::model::ModelSpecWire`).

use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

/// Largest parameter count a spec may describe (2^28 ≈ 268 M values, 1 GiB of f32).
pub const MAX_PARAMS: usize = 1 << 28;

/// Model family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// Logistic regression: one dense layer from the inputs to the logit.
    Logistic,
    /// Multi-layer perceptron with ReLU hidden layers.
    Mlp,
}

/// Architecture of a detection model.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// Model family.
    pub kind: ModelKind,
    /// Number of input features.
    pub input_dim: u32,
    /// Hidden layer widths (empty for logistic regression).
    #[serde(default)]
    pub hidden: Vec<u32>,
}

/// Why a [`ModelSpec`] is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelSpecError {
    /// The model kind was not set (or unknown) on the wire.
    #[error("model kind is unspecified")]
    UnspecifiedKind,
    /// Zero input features.
    #[error("input_dim must be at least 1")]
    ZeroInputDim,
    /// A logistic model with hidden layers.
    #[error("a logistic model has no hidden layers, got {0}")]
    LogisticWithHidden(usize),
    /// An MLP without hidden layers.
    #[error("an MLP needs at least one hidden layer")]
    MlpWithoutHidden,
    /// A hidden layer of width zero.
    #[error("hidden layer {0} has width 0")]
    ZeroWidth(usize),
    /// Too many parameters.
    #[error("model has more than {MAX_PARAMS} parameters")]
    TooLarge,
}

/// One named tensor of the flat layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorSlot {
    /// Name, e.g. `layers.0.weight`.
    pub name: String,
    /// Shape (`[fan_in, fan_out]` for weights, `[fan_out]` for biases).
    pub shape: Vec<usize>,
    /// Offset of the first value in the flat vector.
    pub offset: usize,
    /// Number of values.
    pub len: usize,
}

impl ModelSpec {
    /// Logistic regression over `input_dim` features.
    pub fn logistic(input_dim: u32) -> Self {
        Self {
            kind: ModelKind::Logistic,
            input_dim,
            hidden: Vec::new(),
        }
    }

    /// MLP over `input_dim` features with the given hidden widths.
    pub fn mlp(input_dim: u32, hidden: impl Into<Vec<u32>>) -> Self {
        Self {
            kind: ModelKind::Mlp,
            input_dim,
            hidden: hidden.into(),
        }
    }

    /// Checks the spec is well formed and not larger than [`MAX_PARAMS`].
    pub fn validate(&self) -> Result<(), ModelSpecError> {
        if self.input_dim == 0 {
            return Err(ModelSpecError::ZeroInputDim);
        }
        match self.kind {
            ModelKind::Logistic if !self.hidden.is_empty() => {
                return Err(ModelSpecError::LogisticWithHidden(self.hidden.len()));
            }
            ModelKind::Mlp if self.hidden.is_empty() => {
                return Err(ModelSpecError::MlpWithoutHidden);
            }
            _ => {}
        }
        if let Some(i) = self.hidden.iter().position(|&w| w == 0) {
            return Err(ModelSpecError::ZeroWidth(i));
        }
        let mut total: usize = 0;
        for (fan_in, fan_out) in self.layers() {
            total = fan_in
                .checked_mul(fan_out)
                .and_then(|w| w.checked_add(fan_out))
                .and_then(|l| total.checked_add(l))
                .filter(|&t| t <= MAX_PARAMS)
                .ok_or(ModelSpecError::TooLarge)?;
        }
        Ok(())
    }

    /// `(fan_in, fan_out)` of each dense layer, inputs to output.
    pub fn layers(&self) -> Vec<(usize, usize)> {
        let mut widths = Vec::with_capacity(self.hidden.len() + 2);
        widths.push(self.input_dim as usize);
        widths.extend(self.hidden.iter().map(|&w| w as usize));
        widths.push(1);
        widths.windows(2).map(|w| (w[0], w[1])).collect()
    }

    /// Number of parameters. Only meaningful for a spec that passed
    /// [`validate`](Self::validate) (saturates instead of overflowing).
    pub fn num_params(&self) -> usize {
        self.layers().iter().fold(0usize, |acc, &(i, o)| {
            acc.saturating_add(i.saturating_mul(o).saturating_add(o))
        })
    }

    /// Named tensors of the canonical flat layout, in order.
    pub fn layout(&self) -> Vec<TensorSlot> {
        let mut offset = 0;
        let mut slots = Vec::new();
        for (l, (fan_in, fan_out)) in self.layers().into_iter().enumerate() {
            for (name, shape) in [
                (format!("layers.{l}.weight"), vec![fan_in, fan_out]),
                (format!("layers.{l}.bias"), vec![fan_out]),
            ] {
                let len = shape.iter().product();
                slots.push(TensorSlot {
                    name,
                    shape,
                    offset,
                    len,
                });
                offset += len;
            }
        }
        slots
    }

    /// Seeded initial weights in the canonical layout: each weight uniform in
    /// `[-1/√fan_in, 1/√fan_in]` (burn's default Kaiming-uniform bound for
    /// linear layers), biases zero. Deterministic per seed (ChaCha8).
    pub fn init_weights(&self, seed: u64) -> Vec<f32> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut out = Vec::with_capacity(self.num_params());
        for (fan_in, fan_out) in self.layers() {
            let bound = 1.0 / (fan_in as f32).sqrt();
            out.extend((0..fan_in * fan_out).map(|_| rng.random_range(-bound..=bound)));
            out.extend(std::iter::repeat_n(0.0, fan_out));
        }
        out
    }
}

impl std::fmt::Display for ModelSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.kind {
            ModelKind::Logistic => write!(f, "logistic({})", self.input_dim),
            ModelKind::Mlp => {
                write!(f, "mlp({}", self.input_dim)?;
                for h in &self.hidden {
                    write!(f, "→{h}")?;
                }
                write!(f, "→1)")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn param_counts_and_layout() {
        let lr = ModelSpec::logistic(25);
        assert_eq!(lr.num_params(), 26);
        let mlp = ModelSpec::mlp(25, [64, 32]);
        assert_eq!(mlp.num_params(), 25 * 64 + 64 + 64 * 32 + 32 + 32 + 1);
        let layout = mlp.layout();
        assert_eq!(layout.len(), 6);
        assert_eq!(layout[0].name, "layers.0.weight");
        assert_eq!(layout[0].shape, vec![25, 64]);
        assert_eq!(layout[1].offset, 25 * 64);
        let last = layout.last().unwrap();
        assert_eq!(last.offset + last.len, mlp.num_params());
    }

    #[test]
    fn validation_names_the_problem() {
        assert_eq!(
            ModelSpec::logistic(0).validate(),
            Err(ModelSpecError::ZeroInputDim)
        );
        assert_eq!(
            ModelSpec::mlp(3, vec![]).validate(),
            Err(ModelSpecError::MlpWithoutHidden)
        );
        assert_eq!(
            ModelSpec::mlp(3, [4, 0]).validate(),
            Err(ModelSpecError::ZeroWidth(1))
        );
        let mut lr = ModelSpec::logistic(3);
        lr.hidden = vec![2];
        assert_eq!(lr.validate(), Err(ModelSpecError::LogisticWithHidden(1)));
        assert_eq!(
            ModelSpec::mlp(u32::MAX, [u32::MAX]).validate(),
            Err(ModelSpecError::TooLarge)
        );
        assert!(ModelSpec::mlp(25, [64]).validate().is_ok());
    }

    #[test]
    fn init_is_seeded_and_bounded() {
        let spec = ModelSpec::mlp(16, [8]);
        let a = spec.init_weights(7);
        assert_eq!(a, spec.init_weights(7));
        assert_ne!(a, spec.init_weights(8));
        assert_eq!(a.len(), spec.num_params());
        let layout = spec.layout();
        let w0 = &a[layout[0].offset..layout[0].offset + layout[0].len];
        assert!(w0.iter().all(|w| w.abs() <= 0.25));
        let b0 = &a[layout[1].offset..layout[1].offset + layout[1].len];
        assert!(b0.iter().all(|&b| b == 0.0));
    }
}
