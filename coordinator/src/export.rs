//! Model files: safetensors export with the model spec and the privacy
//! receipt in the metadata, and safetensors import of initial weights.
//!
//! Tensors are named and shaped by [`ModelSpec::layout`]
//! (`layers.{l}.weight` `[fan_in, fan_out]`, `layers.{l}.bias` `[fan_out]`),
//! dtype F32. Metadata keys: `format` (`fedsec`), `model_spec` (JSON),
//! `privacy_receipt` (the receipt's canonical JSON), `job_id`, `version`,
//! `round` and `sha256` (hex digest of the flat little-endian weights, the
//! same digest `GetModel` sends); a signed export adds `release_signature`
//! (hex Ed25519 signature of the release statement, as in the model header),
//! `signing_key_id` and `audit_head` (hex), which
//! `fedsec-client model verify FILE --public-key PEM` checks offline.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use fedsec_model::ModelSpec;
use safetensors::{Dtype, SafeTensors, tensor::TensorView};

/// Why a model file could not be written or read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExportError {
    /// The weights do not match the spec's parameter count.
    #[error("{got} weights for a model of {expected} parameters")]
    Dimension {
        /// Expected count.
        expected: usize,
        /// Given count.
        got: usize,
    },
    /// safetensors refused the data.
    #[error("safetensors: {0}")]
    Format(#[from] safetensors::SafeTensorError),
    /// The model spec could not be written as JSON metadata.
    #[error("model spec metadata: {0}")]
    SpecJson(#[source] serde_json::Error),
    /// A tensor of the layout is missing or has the wrong shape or dtype.
    #[error("tensor {name}: {problem}")]
    Tensor {
        /// Tensor name.
        name: String,
        /// What is wrong.
        problem: String,
    },
    /// The file may not be read (outside the allowed directory, not a
    /// regular file, too large).
    #[error("{path}: {problem}")]
    Refused {
        /// The path as given.
        path: std::path::PathBuf,
        /// Why.
        problem: String,
    },
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// What the exported file says about its weights.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportInfo<'a> {
    /// Job id.
    pub job_id: &'a str,
    /// Version number.
    pub version: u64,
    /// Round after which it was published.
    pub round: u64,
    /// The privacy receipt's canonical JSON.
    pub receipt_json: &'a str,
    /// The release signature, if the export is signed.
    pub release: Option<ReleaseMetadata>,
}

/// The release signature of an exported version and what it covers
/// besides the file's other metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseMetadata {
    /// Ed25519 signature of the release statement.
    pub signature: Vec<u8>,
    /// Id of the signing key.
    pub key_id: String,
    /// Hash of the audit row the release is anchored at (its sequence
    /// number stays in the coordinator's store).
    pub audit_head: [u8; 32],
}

/// Little-endian bytes of `values`.
fn le(values: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(values.len() * 4);
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// A safetensors file of `weights` (flat, canonical layout) with the spec and
/// receipt in its metadata.
pub fn to_safetensors(
    spec: &ModelSpec,
    weights: &[f32],
    info: &ExportInfo<'_>,
) -> Result<Vec<u8>, ExportError> {
    if weights.len() != spec.num_params() {
        return Err(ExportError::Dimension {
            expected: spec.num_params(),
            got: weights.len(),
        });
    }
    let layout = spec.layout();
    let bytes: Vec<Vec<u8>> = layout
        .iter()
        .map(|s| le(&weights[s.offset..s.offset + s.len]))
        .collect();
    let mut views = Vec::with_capacity(layout.len());
    for (slot, data) in layout.iter().zip(&bytes) {
        let view =
            TensorView::new(Dtype::F32, slot.shape.clone(), data).map_err(ExportError::Format)?;
        views.push((slot.name.clone(), view));
    }
    let spec_json = serde_json::to_string(spec).map_err(ExportError::SpecJson)?;
    let mut metadata = HashMap::from([
        ("format".to_owned(), "fedsec".to_owned()),
        ("model_spec".to_owned(), spec_json),
        ("privacy_receipt".to_owned(), info.receipt_json.to_owned()),
        ("job_id".to_owned(), info.job_id.to_owned()),
        ("version".to_owned(), info.version.to_string()),
        ("round".to_owned(), info.round.to_string()),
        (
            "sha256".to_owned(),
            hex::encode(fedsec_proto::tensor::digest(weights)),
        ),
    ]);
    if let Some(r) = &info.release {
        metadata.extend([
            ("release_signature".to_owned(), hex::encode(&r.signature)),
            ("signing_key_id".to_owned(), r.key_id.clone()),
            ("audit_head".to_owned(), hex::encode(r.audit_head)),
        ]);
    }
    safetensors::serialize(views, Some(metadata)).map_err(ExportError::Format)
}

/// Reads the flat weights of `spec` from safetensors bytes; also returns the
/// file's metadata. Every layout tensor must be present as F32 with the
/// layout's shape.
pub fn from_safetensors(
    spec: &ModelSpec,
    bytes: &[u8],
) -> Result<(Vec<f32>, HashMap<String, String>), ExportError> {
    let (_, meta) = SafeTensors::read_metadata(bytes).map_err(ExportError::Format)?;
    let st = SafeTensors::deserialize(bytes).map_err(ExportError::Format)?;
    let mut out = vec![0f32; spec.num_params()];
    for slot in spec.layout() {
        let t = st.tensor(&slot.name).map_err(|e| ExportError::Tensor {
            name: slot.name.clone(),
            problem: e.to_string(),
        })?;
        if t.dtype() != Dtype::F32 {
            return Err(ExportError::Tensor {
                name: slot.name,
                problem: format!("dtype {:?}, expected F32", t.dtype()),
            });
        }
        if t.shape() != slot.shape.as_slice() {
            return Err(ExportError::Tensor {
                name: slot.name.clone(),
                problem: format!("shape {:?}, expected {:?}", t.shape(), slot.shape),
            });
        }
        let dst = &mut out[slot.offset..slot.offset + slot.len];
        for (d, b) in dst.iter_mut().zip(t.data().chunks_exact(4)) {
            *d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        }
    }
    Ok((out, meta.metadata().clone().unwrap_or_default()))
}

/// Extra bytes an initial-weights file may have beyond its 4 bytes per
/// parameter (the safetensors header and metadata).
pub const INIT_WEIGHTS_HEADER_BYTES: u64 = 1 << 20;

/// The file `path` names inside `dir`: relative paths are resolved against
/// `dir`; after resolving symlinks the file must be inside `dir` and a
/// regular file (no device, FIFO, directory or socket).
pub fn resolve_initial_weights(dir: &Path, path: &Path) -> Result<PathBuf, ExportError> {
    let refuse = |problem: String| ExportError::Refused {
        path: path.to_owned(),
        problem,
    };
    let dir = dir
        .canonicalize()
        .map_err(|e| refuse(format!("init_weights_dir {}: {e}", dir.display())))?;
    let joined = if path.is_absolute() {
        path.to_owned()
    } else {
        dir.join(path)
    };
    let real = joined.canonicalize().map_err(|e| refuse(e.to_string()))?;
    if !real.starts_with(&dir) {
        return Err(refuse(format!(
            "not inside init_weights_dir {}",
            dir.display()
        )));
    }
    let meta = std::fs::metadata(&real).map_err(|e| refuse(e.to_string()))?;
    if !meta.is_file() {
        return Err(refuse("not a regular file".into()));
    }
    Ok(real)
}

/// Reads initial weights for `spec` from the safetensors file `path` names
/// inside `dir` ([`resolve_initial_weights`]), reading at most
/// `min(max_bytes, 4·params + INIT_WEIGHTS_HEADER_BYTES)` bytes; rejects
/// NaN/Inf.
pub fn read_initial_weights(
    spec: &ModelSpec,
    dir: &Path,
    path: &Path,
    max_bytes: u64,
) -> Result<Vec<f32>, ExportError> {
    use std::io::Read;
    let real = resolve_initial_weights(dir, path)?;
    let cap =
        max_bytes.min((spec.num_params() as u64).saturating_mul(4) + INIT_WEIGHTS_HEADER_BYTES);
    let read_err = |source| ExportError::Read {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(&real).map_err(read_err)?;
    // Checked again on the open file: it may have been swapped since.
    let meta = file.metadata().map_err(read_err)?;
    if !meta.is_file() {
        return Err(ExportError::Refused {
            path: path.to_owned(),
            problem: "not a regular file".into(),
        });
    }
    if meta.len() > cap {
        return Err(ExportError::Refused {
            path: path.to_owned(),
            problem: format!(
                "{} bytes, more than the {cap} a file for this model may have",
                meta.len()
            ),
        });
    }
    let mut bytes = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
    file.take(cap + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > cap {
        return Err(ExportError::Refused {
            path: path.to_owned(),
            problem: format!("more than the {cap} bytes a file for this model may have"),
        });
    }
    let (w, _) = from_safetensors(spec, &bytes)?;
    if let Some(i) = w.iter().position(|x| !x.is_finite()) {
        return Err(ExportError::Tensor {
            name: "(flat)".into(),
            problem: format!("value {i} is NaN or infinite"),
        });
    }
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_with_metadata() {
        let spec = ModelSpec::mlp(3, [2]);
        let w: Vec<f32> = (0..spec.num_params()).map(|i| i as f32 * 0.5).collect();
        let info = ExportInfo {
            job_id: "j",
            version: 4,
            round: 3,
            receipt_json: "{\"epsilon_pld\":1.0}",
            release: None,
        };
        let bytes = to_safetensors(&spec, &w, &info).unwrap();
        let (back, meta) = from_safetensors(&spec, &bytes).unwrap();
        assert_eq!(back, w);
        assert_eq!(meta["version"], "4");
        assert_eq!(meta["privacy_receipt"], "{\"epsilon_pld\":1.0}");
        let spec_back: ModelSpec = serde_json::from_str(&meta["model_spec"]).unwrap();
        assert_eq!(spec_back, spec);
        assert_eq!(
            meta["sha256"],
            hex::encode(fedsec_proto::tensor::digest(&w))
        );
        // A file for another architecture is refused with the tensor's name.
        let other = ModelSpec::mlp(3, [4]);
        let e = from_safetensors(&other, &bytes).unwrap_err();
        assert!(e.to_string().contains("layers.0.weight"), "{e}");
        assert!(to_safetensors(&spec, &w[1..], &info).is_err());
    }
}
