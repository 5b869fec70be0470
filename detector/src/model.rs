//! burn models described by [`ModelSpec`], in the canonical flat layout of
//! [`fedsec_model`].
//!
//! A [`Detector`] is a stack of burn `Linear` layers (ReLU between them; one
//! output unit, the bot logit). burn stores a linear weight as
//! `[fan_in, fan_out]` row-major, exactly the canonical layout, so
//! [`Detector::to_flat`] concatenates, layer by layer, `weight` then `bias`,
//! and [`Detector::from_flat`] rebuilds the same tensors from a slice: the
//! round trip is bit-exact and `spec.num_params()` values long, with
//! `spec.layout()` naming each slice. Logistic regression is the one-layer
//! case.
//!
//! This module also owns scoring ([`Scorer`], [`score`]) and the model file
//! ([`ModelFile`]: safetensors with the layout's tensor names and the spec in
//! the metadata).

use std::collections::HashMap;
use std::path::Path;

use burn::module::{Module, Param};
use burn::nn::Linear;
use burn::tensor::activation::{relu, sigmoid};
use burn::tensor::{Device, Tensor, TensorData};
use fedsec_model::{ModelSpec, ModelSpecError};
use safetensors::{Dtype, SafeTensors, tensor::TensorView};

/// Why a model could not be built, run, read or written.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The spec is invalid.
    #[error("invalid model spec: {0}")]
    Spec(#[from] ModelSpecError),
    /// The weight vector has the wrong length.
    #[error("weights have {got} values, the spec needs {expected}")]
    WrongLength {
        /// `spec.num_params()`.
        expected: usize,
        /// Length given.
        got: usize,
    },
    /// A weight is NaN or infinite.
    #[error("weight {index} is not finite ({value})")]
    NonFinite {
        /// Position in the flat vector.
        index: usize,
        /// The value.
        value: f32,
    },
    /// Feature rows do not match the model's input width.
    #[error("feature matrix of {len} values is not a whole number of rows of {input_dim}")]
    InputShape {
        /// Values given.
        len: usize,
        /// Model input width.
        input_dim: usize,
    },
    /// An input feature is NaN or infinite.
    #[error("feature value {index} is not finite")]
    NonFiniteInput {
        /// Position in the feature matrix.
        index: usize,
    },
    /// The backend failed to produce data.
    #[error("tensor backend: {0}")]
    Backend(String),
    /// Reading or writing a model file.
    #[error("model file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A model file is not a fedsec model.
    #[error("model file: {0}")]
    Format(String),
}

/// Checks a weight vector against a spec (length, finiteness).
pub fn check_weights(spec: &ModelSpec, weights: &[f32]) -> Result<(), ModelError> {
    spec.validate()?;
    let expected = spec.num_params();
    if weights.len() != expected {
        return Err(ModelError::WrongLength {
            expected,
            got: weights.len(),
        });
    }
    if let Some((index, &value)) = weights.iter().enumerate().find(|(_, w)| !w.is_finite()) {
        return Err(ModelError::NonFinite { index, value });
    }
    Ok(())
}

/// The CPU device models run on (burn's pure-Rust `flex` backend).
pub fn cpu() -> Device {
    Device::flex()
}

/// The CPU device with autodiff, for training and gradients.
pub fn cpu_autodiff() -> Device {
    Device::flex().autodiff()
}

/// A logistic regression or MLP as burn layers.
#[derive(Module, Debug)]
pub struct Detector {
    /// Dense layers, inputs to output.
    pub layers: Vec<Linear>,
}

fn tensor_data_vec<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>, ModelError> {
    t.try_into_data()
        .map_err(|e| ModelError::Backend(format!("{e:?}")))?
        .try_into_vec::<f32>()
        .map_err(|e| ModelError::Backend(format!("{e:?}")))
}

impl Detector {
    /// Builds the layers of `spec` from a flat vector in the canonical layout.
    pub fn from_flat(
        spec: &ModelSpec,
        weights: &[f32],
        device: &Device,
    ) -> Result<Self, ModelError> {
        check_weights(spec, weights)?;
        let mut offset = 0;
        let mut layers = Vec::new();
        for (fan_in, fan_out) in spec.layers() {
            let w = &weights[offset..offset + fan_in * fan_out];
            offset += fan_in * fan_out;
            let b = &weights[offset..offset + fan_out];
            offset += fan_out;
            let weight =
                Tensor::<2>::from_data(TensorData::new(w.to_vec(), [fan_in, fan_out]), device);
            let bias = Tensor::<1>::from_data(TensorData::new(b.to_vec(), [fan_out]), device);
            layers.push(Linear {
                weight: Param::from_tensor(weight),
                bias: Some(Param::from_tensor(bias)),
            });
        }
        Ok(Self { layers })
    }

    /// All parameters as one vector in the canonical layout.
    pub fn to_flat(&self) -> Result<Vec<f32>, ModelError> {
        let mut out = Vec::new();
        for layer in &self.layers {
            out.extend(tensor_data_vec(layer.weight.val())?);
            match &layer.bias {
                Some(b) => out.extend(tensor_data_vec(b.val())?),
                None => return Err(ModelError::Backend("layer without bias".into())),
            }
        }
        Ok(out)
    }

    /// Bot logits `[n, 1]` of a batch of feature rows `[n, input_dim]`.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let last = self.layers.len().saturating_sub(1);
        let mut h = x;
        for (i, layer) in self.layers.iter().enumerate() {
            h = layer.forward(h);
            if i < last {
                h = relu(h);
            }
        }
        h
    }
}

/// Validates a row-major feature matrix and returns its row count.
pub(crate) fn check_rows(features: &[f32], input_dim: usize) -> Result<usize, ModelError> {
    if input_dim == 0 || !features.len().is_multiple_of(input_dim) {
        return Err(ModelError::InputShape {
            len: features.len(),
            input_dim,
        });
    }
    if let Some(index) = features.iter().position(|v| !v.is_finite()) {
        return Err(ModelError::NonFiniteInput { index });
    }
    Ok(features.len() / input_dim)
}

/// A model ready to score feature rows (no autodiff).
#[derive(Debug)]
pub struct Scorer {
    spec: ModelSpec,
    model: Detector,
    device: Device,
}

impl Scorer {
    /// Builds the model from a spec and flat weights.
    pub fn new(spec: &ModelSpec, weights: &[f32]) -> Result<Self, ModelError> {
        let device = cpu();
        let model = Detector::from_flat(spec, weights, &device)?;
        Ok(Self {
            spec: spec.clone(),
            model,
            device,
        })
    }

    /// The spec.
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// Bot logits of row-major feature rows (`n × input_dim` values).
    pub fn logits(&self, features: &[f32]) -> Result<Vec<f32>, ModelError> {
        let d = self.spec.input_dim as usize;
        let n = check_rows(features, d)?;
        if n == 0 {
            return Ok(Vec::new());
        }
        let x = Tensor::<2>::from_data(TensorData::new(features.to_vec(), [n, d]), &self.device);
        tensor_data_vec(self.model.forward(x))
    }

    /// Bot probabilities (sigmoid of the logits).
    pub fn probabilities(&self, features: &[f32]) -> Result<Vec<f32>, ModelError> {
        let d = self.spec.input_dim as usize;
        let n = check_rows(features, d)?;
        if n == 0 {
            return Ok(Vec::new());
        }
        let x = Tensor::<2>::from_data(TensorData::new(features.to_vec(), [n, d]), &self.device);
        tensor_data_vec(sigmoid(self.model.forward(x)))
    }
}

/// Bot probabilities of row-major feature rows under `weights`.
pub fn score(spec: &ModelSpec, weights: &[f32], features: &[f32]) -> Result<Vec<f32>, ModelError> {
    Scorer::new(spec, weights)?.probabilities(features)
}

/// A model on disk: a safetensors file whose tensors are named by
/// `spec.layout()` (`layers.0.weight` `[fan_in, fan_out]`, `layers.0.bias`, ...)
/// in little-endian f32, with metadata `format = "fedsec-model"`,
/// `spec` (the spec as JSON) and free-form `note`.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelFile {
    /// Architecture.
    pub spec: ModelSpec,
    /// Flat weights in the canonical layout.
    pub weights: Vec<f32>,
    /// Free text (provenance), stored as metadata `note`.
    pub note: String,
}

/// Value of the `format` metadata key.
pub const MODEL_FILE_FORMAT: &str = "fedsec-model";

impl ModelFile {
    /// Checks the weights and wraps them.
    pub fn new(
        spec: ModelSpec,
        weights: Vec<f32>,
        note: impl Into<String>,
    ) -> Result<Self, ModelError> {
        check_weights(&spec, &weights)?;
        Ok(Self {
            spec,
            weights,
            note: note.into(),
        })
    }

    /// Serialises to safetensors bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, ModelError> {
        check_weights(&self.spec, &self.weights)?;
        let bytes: Vec<u8> = self.weights.iter().flat_map(|w| w.to_le_bytes()).collect();
        let layout = self.spec.layout();
        let mut views = Vec::with_capacity(layout.len());
        for slot in &layout {
            let data = &bytes[slot.offset * 4..(slot.offset + slot.len) * 4];
            let view = TensorView::new(Dtype::F32, slot.shape.clone(), data)
                .map_err(|e| ModelError::Format(e.to_string()))?;
            views.push((slot.name.clone(), view));
        }
        let spec_json =
            serde_json::to_string(&self.spec).map_err(|e| ModelError::Format(e.to_string()))?;
        let meta = HashMap::from([
            ("format".to_string(), MODEL_FILE_FORMAT.to_string()),
            ("spec".to_string(), spec_json),
            ("note".to_string(), self.note.clone()),
        ]);
        safetensors::serialize(views, Some(meta)).map_err(|e| ModelError::Format(e.to_string()))
    }

    /// Parses and validates safetensors bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ModelError> {
        let st = SafeTensors::deserialize(bytes).map_err(|e| ModelError::Format(e.to_string()))?;
        let (_, meta) =
            SafeTensors::read_metadata(bytes).map_err(|e| ModelError::Format(e.to_string()))?;
        let meta = meta
            .metadata()
            .clone()
            .ok_or_else(|| ModelError::Format("no metadata (not a fedsec model)".into()))?;
        if meta.get("format").map(String::as_str) != Some(MODEL_FILE_FORMAT) {
            return Err(ModelError::Format(format!(
                "metadata format is not {MODEL_FILE_FORMAT:?}"
            )));
        }
        let spec: ModelSpec = serde_json::from_str(meta.get("spec").map_or("", String::as_str))
            .map_err(|e| ModelError::Format(format!("metadata spec: {e}")))?;
        spec.validate()?;
        let layout = spec.layout();
        if st.len() != layout.len() {
            return Err(ModelError::Format(format!(
                "{} tensors, the spec has {}",
                st.len(),
                layout.len()
            )));
        }
        let mut weights = Vec::with_capacity(spec.num_params());
        for slot in &layout {
            let t = st
                .tensor(&slot.name)
                .map_err(|e| ModelError::Format(format!("{}: {e}", slot.name)))?;
            if t.dtype() != Dtype::F32 || t.shape() != slot.shape.as_slice() {
                return Err(ModelError::Format(format!(
                    "{}: expected F32 {:?}, found {:?} {:?}",
                    slot.name,
                    slot.shape,
                    t.dtype(),
                    t.shape()
                )));
            }
            weights.extend(
                t.data()
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            );
        }
        let note = meta.get("note").cloned().unwrap_or_default();
        Self::new(spec, weights, note)
    }

    /// Writes the file.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), ModelError> {
        let path = path.as_ref();
        std::fs::write(path, self.to_bytes()?).map_err(|source| ModelError::Io {
            path: path.display().to_string(),
            source,
        })
    }

    /// Reads and validates a file (at most 1 GiB).
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ModelError> {
        let path = path.as_ref();
        let io = |source| ModelError::Io {
            path: path.display().to_string(),
            source,
        };
        let len = std::fs::metadata(path).map_err(io)?.len();
        if len > 1 << 30 {
            return Err(ModelError::Format(format!(
                "{} is larger than 1 GiB",
                path.display()
            )));
        }
        Self::from_bytes(&std::fs::read(path).map_err(io)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_roundtrip_is_bit_exact() {
        for spec in [
            ModelSpec::logistic(38),
            ModelSpec::mlp(38, [16, 8]),
            ModelSpec::mlp(5, [3]),
        ] {
            let mut w = spec.init_weights(3);
            // Include values whose bits must survive exactly.
            w[0] = f32::MIN_POSITIVE;
            w[1] = -0.0;
            w[2] = 1.0e-38;
            let n = w.len();
            w[n - 1] = 0.1;
            let model = Detector::from_flat(&spec, &w, &cpu()).unwrap();
            let back = model.to_flat().unwrap();
            assert_eq!(back.len(), spec.num_params());
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&back), bits(&w), "{spec}");
            // The layout names the burn tensors: layer l's weight is at the slot's offset.
            for (l, layer) in model.layers.iter().enumerate() {
                let slot = &spec.layout()[2 * l];
                assert_eq!(slot.shape, layer.weight.val().dims().to_vec());
                let vals = tensor_data_vec(layer.weight.val()).unwrap();
                assert_eq!(bits(&vals), bits(&w[slot.offset..slot.offset + slot.len]));
            }
        }
    }

    #[test]
    fn rejects_bad_weights_and_inputs() {
        let spec = ModelSpec::mlp(4, [3]);
        let mut w = spec.init_weights(1);
        assert!(matches!(
            Detector::from_flat(&spec, &w[1..], &cpu()),
            Err(ModelError::WrongLength {
                expected: 19,
                got: 18
            })
        ));
        w[5] = f32::NAN;
        assert!(matches!(
            Detector::from_flat(&spec, &w, &cpu()),
            Err(ModelError::NonFinite { index: 5, .. })
        ));
        let s = Scorer::new(&spec, &spec.init_weights(1)).unwrap();
        assert!(matches!(
            s.logits(&[0.0; 5]),
            Err(ModelError::InputShape { .. })
        ));
        assert!(matches!(
            s.logits(&[0.0, 0.0, f32::INFINITY, 0.0]),
            Err(ModelError::NonFiniteInput { index: 2 })
        ));
        assert_eq!(s.logits(&[]).unwrap(), Vec::<f32>::new());
    }

    #[test]
    fn forward_matches_a_hand_computation() {
        // 2 → 2 → 1 with known weights.
        let spec = ModelSpec::mlp(2, [2]);
        #[rustfmt::skip]
        let w = vec![
            1.0, -1.0,   // input 0 → hidden 0, 1
            2.0, 0.5,    // input 1 → hidden 0, 1
            0.1, -0.2,   // hidden bias
            1.5, -3.0,   // hidden → out
            0.25,        // out bias
        ];
        let s = Scorer::new(&spec, &w).unwrap();
        let x = [1.0f32, 2.0, -1.0, 0.0];
        let hand = |x0: f32, x1: f32| {
            let h0 = (1.0 * x0 + 2.0 * x1 + 0.1).max(0.0);
            let h1 = (-x0 + 0.5 * x1 - 0.2).max(0.0);
            1.5 * h0 - 3.0 * h1 + 0.25
        };
        let logits = s.logits(&x).unwrap();
        assert!((logits[0] - hand(1.0, 2.0)).abs() < 1e-6);
        assert!((logits[1] - hand(-1.0, 0.0)).abs() < 1e-6);
        let p = s.probabilities(&x).unwrap();
        assert!((p[0] - 1.0 / (1.0 + (-logits[0]).exp())).abs() < 1e-6);
        let lr = ModelSpec::logistic(2);
        let p = score(&lr, &[0.5, -0.25, 0.125], &[2.0, 4.0]).unwrap();
        assert!((p[0] - 1.0 / (1.0 + (-0.125f32).exp())).abs() < 1e-6);
    }

    #[test]
    fn model_file_roundtrip_and_rejections() {
        let spec = ModelSpec::mlp(6, [4]);
        let w = spec.init_weights(9);
        let f = ModelFile::new(spec.clone(), w.clone(), "test").unwrap();
        let bytes = f.to_bytes().unwrap();
        let back = ModelFile::from_bytes(&bytes).unwrap();
        assert_eq!(back, f);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        f.save(&path).unwrap();
        assert_eq!(ModelFile::load(&path).unwrap(), f);
        assert!(matches!(
            ModelFile::from_bytes(&bytes[..bytes.len() - 4]),
            Err(ModelError::Format(_))
        ));
        assert!(matches!(
            ModelFile::from_bytes(b"garbage"),
            Err(ModelError::Format(_))
        ));
        // A safetensors file without our metadata.
        let data = vec![0u8; 8];
        let plain = safetensors::serialize(
            [("x", TensorView::new(Dtype::F32, vec![2], &data).unwrap())],
            None,
        )
        .unwrap();
        assert!(matches!(
            ModelFile::from_bytes(&plain),
            Err(ModelError::Format(_))
        ));
        assert!(matches!(
            ModelFile::load(dir.path().join("missing")),
            Err(ModelError::Io { .. })
        ));
    }
}
