//! A job's update screen at run time: the round core's
//! [`Screener`](fedsec_round::Screener) (config and every tenant's own score
//! history), the model's layers and the public reference direction (the
//! previous published global update).
//!
//! The upload path measures a fully decoded update outside any lock
//! ([`JobScreen::screen`]: one pass over the decode buffer, one value per
//! layer allocated), then takes the screener's mutex only to read and
//! update that tenant's bounded history. The reference is set by the driver
//! when it publishes a round's model (`new − old`), and cleared by a
//! rollback; after a restart there is none until the next round publishes
//! (the direction rules do not fire meanwhile).
//!
//! The screener keeps one history per tenant that ever sent an update (at
//! most `limits.max_tenants`, which registration enforces, each at most
//! `history_len` scores): none is ever evicted, so whether one tenant's
//! update is flagged never depends on which other tenants took part.

use std::sync::{Arc, Mutex, RwLock};

use fedsec_round::screen::{self, Layer, Reference};
use fedsec_round::{ScreenPolicy, Screened, Screener};

use crate::config::JobSpec;

/// A job's screen.
#[derive(Debug)]
pub(crate) struct JobScreen {
    /// What happens to a flagged update.
    pub policy: ScreenPolicy,
    layers: Vec<Layer>,
    screener: Mutex<Screener>,
    reference: RwLock<Option<Arc<Reference>>>,
}

impl JobScreen {
    /// The screen of a job (its spec validated).
    pub(crate) fn new(spec: &JobSpec) -> Self {
        let config = spec.screen.config();
        Self {
            policy: config.policy,
            layers: screen::layers(&spec.model),
            screener: Mutex::new(Screener::new(config, usize::MAX)),
            reference: RwLock::new(None),
        }
    }

    /// Sets (or clears) the previous published update.
    pub(crate) fn set_reference(&self, reference: Option<Reference>) {
        *self.reference.write().unwrap_or_else(|p| p.into_inner()) = reference.map(Arc::new);
    }

    /// Screens a decoded update of `tenant` against the round's `C`.
    /// `None` when it cannot be measured (wrong length, NaN/Inf): the
    /// accumulator refuses it with its own error.
    pub(crate) fn screen(&self, tenant: &str, update: &[f32], clip_norm: f64) -> Option<Screened> {
        let reference = self
            .reference
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let stats = screen::measure(update, clip_norm, reference.as_deref(), &self.layers)?;
        Some(
            self.screener
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .screen(tenant, stats),
        )
    }
}

/// A screened update's scores as JSON (for logs and records).
pub(crate) fn scores_json(s: &Screened) -> serde_json::Value {
    let st = &s.stats;
    serde_json::json!({
        "norm": st.norm,
        "norm_ratio": st.norm_ratio,
        "cosine": st.cosine,
        "sign_agreement": st.sign_agreement,
        "layer_norms": st.layer_norms,
        "max_layer_share": st.max_layer_share,
        "norm_z": st.norm_z,
        "cosine_z": st.cosine_z,
        "flagged": s.findings.iter().map(|f| serde_json::json!({
            "statistic": f.statistic.as_str(),
            "value": f.value,
            "threshold": f.threshold,
        })).collect::<Vec<_>>(),
        "excluded": s.exclude,
    })
}
