//! Offline verification of a model file's release signature
//! (`fedsec-client model verify FILE --public-key PEM`, issue 21).
//!
//! Two files carry one: the coordinator's safetensors export (`admin
//! models export`, metadata `format = "fedsec"`: `model_spec`, `job_id`,
//! `version`, `round`, `privacy_receipt`, `release_signature`,
//! `audit_head`) and `fedsec-client model pull`'s model file (`format =
//! "fedsec-model"`, the same values in its `note` JSON under `release`).
//! The weights' SHA-256 is recomputed from the tensors, the receipt's from
//! its JSON, and the release statement
//! ([`fedsec_proto::release::ReleaseStatement`]) checked against the key:
//! a changed byte of weights, receipt or metadata, another key, or a
//! missing signature is refused.

use fedsec_model::ModelSpec;
use fedsec_proto::release::{ReleasePublicKey, ReleaseStatement};
use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};

/// What `model pull` writes under `release` in its note, and what an
/// export's metadata holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseRecord {
    /// The privacy receipt's canonical JSON, as served.
    pub receipt_json: String,
    /// Hex Ed25519 signature.
    pub signature: String,
    /// Id of the signing key (informative).
    pub signing_key_id: String,
    /// Hash of the audit row the release is anchored at, hex.
    pub audit_head: String,
}

/// A verified model file.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedFile {
    /// Job.
    pub job_id: String,
    /// Version.
    pub version: u64,
    /// Round.
    pub round: u64,
    /// Architecture.
    pub spec: ModelSpec,
    /// Hash of the audit row the release is anchored at.
    pub audit_head: [u8; 32],
}

#[derive(Deserialize)]
struct PullNote {
    job_id: String,
    version: u64,
    round: u64,
    release: Option<ReleaseRecord>,
}

/// Verifies the release signature of a model file's bytes with `key`.
pub fn verify_model_file(bytes: &[u8], key: &ReleasePublicKey) -> Result<VerifiedFile, String> {
    let (_, meta) =
        SafeTensors::read_metadata(bytes).map_err(|e| format!("not safetensors: {e}"))?;
    let meta = meta
        .metadata()
        .clone()
        .ok_or("no metadata: not a fedsec model file")?;
    let get = |k: &str| {
        meta.get(k)
            .cloned()
            .ok_or_else(|| format!("metadata has no {k:?}"))
    };
    let num = |k: &str, v: String| {
        v.parse::<u64>()
            .map_err(|_| format!("metadata {k:?} is not a number"))
    };
    let (spec_json, job_id, version, round, release) = match meta.get("format").map(String::as_str)
    {
        Some("fedsec") => (
            get("model_spec")?,
            get("job_id")?,
            num("version", get("version")?)?,
            num("round", get("round")?)?,
            ReleaseRecord {
                receipt_json: get("privacy_receipt")?,
                signature: meta.get("release_signature").cloned().unwrap_or_default(),
                signing_key_id: meta.get("signing_key_id").cloned().unwrap_or_default(),
                audit_head: meta.get("audit_head").cloned().unwrap_or_default(),
            },
        ),
        Some(fedsec_detector::model::MODEL_FILE_FORMAT) => {
            let note: PullNote =
                serde_json::from_str(&get("note")?).map_err(|e| format!("metadata note: {e}"))?;
            let release = note
                .release
                .ok_or("the model file carries no release signature (pulled unsigned?)")?;
            (get("spec")?, note.job_id, note.version, note.round, release)
        }
        other => {
            return Err(format!(
                "metadata format {other:?} is not a fedsec model file"
            ));
        }
    };
    let spec: ModelSpec =
        serde_json::from_str(&spec_json).map_err(|e| format!("metadata model spec: {e}"))?;
    spec.validate().map_err(|e| format!("model spec: {e}"))?;
    let st = SafeTensors::deserialize(bytes).map_err(|e| format!("not safetensors: {e}"))?;
    let layout = spec.layout();
    if st.len() != layout.len() {
        return Err(format!(
            "{} tensors, the spec has {}",
            st.len(),
            layout.len()
        ));
    }
    let mut le = Vec::with_capacity(spec.num_params() * 4);
    for slot in &layout {
        let t = st
            .tensor(&slot.name)
            .map_err(|e| format!("{}: {e}", slot.name))?;
        if t.dtype() != Dtype::F32 || t.shape() != slot.shape.as_slice() {
            return Err(format!("{}: expected F32 {:?}", slot.name, slot.shape));
        }
        le.extend_from_slice(t.data());
    }
    let weights_sha256: [u8; 32] = {
        use sha2::Digest;
        sha2::Sha256::digest(&le).into()
    };
    let audit_head = hex::decode(&release.audit_head)
        .ok()
        .and_then(|h| <[u8; 32]>::try_from(h.as_slice()).ok())
        .ok_or("audit_head is not 32 bytes of hex")?;
    let signature = hex::decode(&release.signature).map_err(|_| "release_signature is not hex")?;
    let statement = ReleaseStatement::new(
        &job_id,
        version,
        round,
        &spec,
        weights_sha256,
        &release.receipt_json,
        audit_head,
    );
    key.verify(&statement, &signature)
        .map_err(|e| e.to_string())?;
    Ok(VerifiedFile {
        job_id,
        version,
        round,
        spec,
        audit_head,
    })
}
