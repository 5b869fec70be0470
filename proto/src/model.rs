//! The wire form of a [`ModelSpec`] (`fedsec.v1.ModelSpec`): conversions both
//! ways, with validation on the way in.
//!
//! The spec itself, its layout and its validation live in the leaf crate
//! `fedsec-model`; this module only maps it to and from the generated message.

use fedsec_model::{ModelKind, ModelSpec, ModelSpecError};

use crate::v1;

/// Conversions of a [`ModelSpec`] to and from its wire message.
///
/// An extension trait so callers keep writing `spec.to_proto()` and
/// `ModelSpec::from_proto(&msg)`; import it with
/// `use fedsec_proto::model::ModelSpecWire;`.
pub trait ModelSpecWire: Sized {
    /// The spec as its wire message.
    fn to_proto(&self) -> v1::ModelSpec;
    /// Reads and validates a spec from its wire message.
    fn from_proto(msg: &v1::ModelSpec) -> Result<Self, ModelSpecError>;
}

impl ModelSpecWire for ModelSpec {
    fn to_proto(&self) -> v1::ModelSpec {
        v1::ModelSpec {
            kind: match self.kind {
                ModelKind::Logistic => v1::ModelKind::Logistic,
                ModelKind::Mlp => v1::ModelKind::Mlp,
            } as i32,
            input_dim: self.input_dim,
            hidden: self.hidden.clone(),
        }
    }

    fn from_proto(msg: &v1::ModelSpec) -> Result<Self, ModelSpecError> {
        let kind = match v1::ModelKind::try_from(msg.kind) {
            Ok(v1::ModelKind::Logistic) => ModelKind::Logistic,
            Ok(v1::ModelKind::Mlp) => ModelKind::Mlp,
            _ => return Err(ModelSpecError::UnspecifiedKind),
        };
        let spec = Self {
            kind,
            input_dim: msg.input_dim,
            hidden: msg.hidden.clone(),
        };
        spec.validate()?;
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proto_roundtrip_and_rejection() {
        let spec = ModelSpec::mlp(25, [64]);
        assert_eq!(ModelSpec::from_proto(&spec.to_proto()), Ok(spec));
        let mut msg = ModelSpec::logistic(3).to_proto();
        msg.kind = 0;
        assert_eq!(
            ModelSpec::from_proto(&msg),
            Err(ModelSpecError::UnspecifiedKind)
        );
        msg.kind = 99;
        assert_eq!(
            ModelSpec::from_proto(&msg),
            Err(ModelSpecError::UnspecifiedKind)
        );
        let mut bad = ModelSpec::logistic(3).to_proto();
        bad.input_dim = 0;
        assert_eq!(
            ModelSpec::from_proto(&bad),
            Err(ModelSpecError::ZeroInputDim)
        );
    }
}
