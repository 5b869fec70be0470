//! [`ParticipantHandle`]: what the host keeps while the participant runs —
//! events, the latest verified global model for scoring and explanations,
//! and a way to hand in labelled sessions.

use std::sync::{Arc, Mutex, RwLock};

use fedsec_detector::explain::{Reason, baseline_for, explain, top_reasons};
use fedsec_detector::features::{self, NUM_FEATURES};
use fedsec_detector::model::{ModelError, ModelFile, Scorer};
use fedsec_detector::session::Session;
use fedsec_model::ModelSpec;
use tokio::sync::broadcast;

use crate::data::{LocalStore, RowError};
use crate::events::Event;

/// A verified global model.
#[derive(Debug, Clone, PartialEq)]
pub struct GlobalModel {
    /// Job.
    pub job_id: String,
    /// Version.
    pub version: u64,
    /// Round after which it was published (0: the initial model).
    pub round: u64,
    /// Architecture.
    pub spec: ModelSpec,
    /// Weights in the canonical layout.
    pub weights: Vec<f32>,
    /// ε (PLD) its privacy receipt states, when it has a guarantee.
    pub epsilon: Option<f64>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Provenance {
    job_id: String,
    version: u64,
    round: u64,
    epsilon_pld: Option<f64>,
}

impl GlobalModel {
    /// The model as the detector's model file; its note holds the
    /// provenance as JSON (`job_id`, `version`, `round`, `epsilon_pld`).
    pub fn to_model_file(&self) -> Result<ModelFile, ModelError> {
        let note = serde_json::to_string(&Provenance {
            job_id: self.job_id.clone(),
            version: self.version,
            round: self.round,
            epsilon_pld: self.epsilon.filter(|e| e.is_finite()),
        })
        .map_err(|e| ModelError::Format(e.to_string()))?;
        ModelFile::new(self.spec.clone(), self.weights.clone(), note)
    }

    /// Reads a model file written by [`Self::to_model_file`].
    pub fn from_model_file(file: ModelFile) -> Option<Self> {
        let p: Provenance = serde_json::from_str(&file.note).ok()?;
        Some(Self {
            job_id: p.job_id,
            version: p.version,
            round: p.round,
            spec: file.spec,
            weights: file.weights,
            epsilon: p.epsilon_pld,
        })
    }
}

/// Why scoring failed.
#[derive(Debug, thiserror::Error)]
pub enum ScoreError {
    /// No global model has been downloaded yet.
    #[error("no global model yet")]
    NoModel,
    /// The model does not take the detector's session features.
    #[error("the model takes {0} inputs, sessions have {NUM_FEATURES} features")]
    InputDim(u32),
    /// The detector refused the input or the model.
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// One session's score and its top reasons in plain words.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionExplanation {
    /// Bot probability.
    pub probability: f32,
    /// Features pushing the score towards "bot", largest first.
    pub reasons: Vec<Reason>,
}

/// State shared by the participant and its handles.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) events: broadcast::Sender<Event>,
    pub(crate) model: RwLock<Option<Arc<GlobalModel>>>,
    pub(crate) store: Mutex<LocalStore>,
}

impl Shared {
    pub(crate) fn model(&self) -> Option<Arc<GlobalModel>> {
        self.model.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn set_model(&self, m: Arc<GlobalModel>) {
        *self.model.write().unwrap_or_else(|p| p.into_inner()) = Some(m);
    }

    pub(crate) fn store(&self) -> std::sync::MutexGuard<'_, LocalStore> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A cheap, cloneable handle on a participant, usable from any thread while
/// [`Participant::run`](crate::Participant::run) runs (and after it ends).
///
/// Scoring runs the model on the calling thread (a small MLP scores a
/// thousand sessions in about a millisecond); call it from
/// `spawn_blocking` for very large batches.
#[derive(Debug, Clone)]
pub struct ParticipantHandle {
    pub(crate) shared: Arc<Shared>,
}

impl ParticipantHandle {
    /// A new receiver of the participant's events (from now on).
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.shared.events.subscribe()
    }

    /// The latest verified global model, if any.
    pub fn model(&self) -> Option<Arc<GlobalModel>> {
        self.shared.model()
    }

    fn scorer(&self) -> Result<(Arc<GlobalModel>, Scorer), ScoreError> {
        let m = self.model().ok_or(ScoreError::NoModel)?;
        if m.spec.input_dim as usize != NUM_FEATURES {
            return Err(ScoreError::InputDim(m.spec.input_dim));
        }
        let s = Scorer::new(&m.spec, &m.weights)?;
        Ok((m, s))
    }

    /// Bot probabilities of row-major feature rows ([`NUM_FEATURES`] wide)
    /// under the latest global model.
    pub fn score(&self, features: &[f32]) -> Result<Vec<f32>, ScoreError> {
        let (_, s) = self.scorer()?;
        Ok(s.probabilities(features)?)
    }

    /// Bot probabilities of sessions under the latest global model.
    pub fn score_sessions(&self, sessions: &[Session]) -> Result<Vec<f32>, ScoreError> {
        let rows: Vec<f32> = sessions
            .iter()
            .flat_map(|s| features::extract(s).values)
            .collect();
        self.score(&rows)
    }

    /// Probabilities and the `top` plain-words reasons of each session
    /// (the detector's attributions against a typical-human baseline).
    pub fn explain_sessions(
        &self,
        sessions: &[Session],
        top: usize,
    ) -> Result<Vec<SessionExplanation>, ScoreError> {
        let (m, _) = self.scorer()?;
        let extracted: Vec<_> = sessions.iter().map(features::extract).collect();
        let rows: Vec<f32> = extracted.iter().flat_map(|f| f.values).collect();
        let baselines: Vec<f32> = extracted
            .iter()
            .flat_map(|f| baseline_for(&f.values))
            .collect();
        let expl = explain(&m.spec, &m.weights, &rows, &baselines)?;
        Ok(expl
            .iter()
            .zip(&extracted)
            .map(|(e, f)| SessionExplanation {
                probability: e.probability(),
                reasons: top_reasons(e, &f.values, &f.raw, top),
            })
            .collect())
    }

    /// Hands in one labelled feature row for local training.
    pub fn add_labelled_features(&self, features: &[f32], is_bot: bool) -> Result<(), RowError> {
        self.shared.store().push(features, is_bot)
    }

    /// Hands in labelled sessions for local training; returns how many were kept.
    pub fn add_labelled_sessions<'a>(
        &self,
        sessions: impl IntoIterator<Item = (&'a Session, bool)>,
    ) -> usize {
        let rows: Vec<_> = sessions
            .into_iter()
            .map(|(s, bot)| (features::extract(s).values, bot))
            .collect();
        let mut store = self.shared.store();
        rows.iter()
            .filter(|(x, bot)| store.push(x, *bot).is_ok())
            .count()
    }

    /// Training and holdout examples held.
    pub fn data_counts(&self) -> (usize, usize) {
        let s = self.shared.store();
        (s.train_len(), s.holdout_len())
    }
}
