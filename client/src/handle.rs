//! [`ParticipantHandle`]: what the host keeps while the participant runs —
//! events, the latest verified global model for scoring and explanations,
//! and a way to hand in labelled sessions.

use std::sync::{Arc, Mutex, RwLock};

use fedsec_detector::explain::baseline::DEFAULT_REFERENCES;
use fedsec_detector::explain::{Baseline, Reason, typical_humans};
use fedsec_detector::features::{self, NUM_FEATURES, SessionFeatures};
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
    /// Bot logit (rank by it: unlike the probability it does not saturate).
    pub logit: f32,
    /// Bot probability.
    pub probability: f32,
    /// Features pushing the score towards "bot" against the baseline,
    /// presence reasons first (the rules of
    /// [`fedsec_detector::explain::reasons`]); empty when nothing the
    /// session did stands out.
    pub reasons: Vec<Reason>,
}

/// Explanations of a batch and the baseline they compare with.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanations {
    /// The tenant's typical humans the reasons compare with (or the feature
    /// centres, when the batch holds too few; [`Baseline::notice`] says so).
    pub baseline: Baseline,
    /// One per session, in the order given.
    pub sessions: Vec<SessionExplanation>,
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

    /// The typical-human baseline of a batch of this tenant's sessions,
    /// exactly as `fedsec-client score` builds it from a log: the sessions
    /// the latest global model scores as human (p < 0.1, good bots
    /// excluded), sampled deterministically (up to 32), or the feature
    /// centres when fewer than 8 qualify
    /// ([`fedsec_detector::explain::baseline`]).
    pub fn typical_humans(&self, sessions: &[Session]) -> Result<Baseline, ScoreError> {
        let (_, scorer) = self.scorer()?;
        let (extracted, logits) = Self::logits(&scorer, sessions)?;
        Ok(Self::baseline_of(sessions, &extracted, &logits))
    }

    fn logits(
        scorer: &Scorer,
        sessions: &[Session],
    ) -> Result<(Vec<SessionFeatures>, Vec<f32>), ScoreError> {
        let extracted: Vec<SessionFeatures> = sessions.iter().map(features::extract).collect();
        let rows: Vec<f32> = extracted.iter().flat_map(|f| f.values).collect();
        let logits = scorer.logits(&rows)?;
        Ok((extracted, logits))
    }

    fn baseline_of(
        sessions: &[Session],
        extracted: &[SessionFeatures],
        logits: &[f32],
    ) -> Baseline {
        let keys: Vec<String> = sessions.iter().map(|s| s.key.to_string()).collect();
        typical_humans(
            keys.iter()
                .zip(extracted)
                .zip(logits)
                .map(|((k, f), &l)| (k.as_str(), &f.values, &f.raw, l, None)),
            DEFAULT_REFERENCES,
        )
    }

    /// Scores and explains every session of a batch against the typical
    /// humans of that same batch ([`Self::typical_humans`]; pass a batch of
    /// the tenant's ordinary traffic, not only suspects): the logit, the
    /// probability and at most `top` plain-words reasons of each, and the
    /// baseline (its [`Baseline::notice`] is the line `score` prints first).
    pub fn explain_sessions(
        &self,
        sessions: &[Session],
        top: usize,
    ) -> Result<Explanations, ScoreError> {
        let (m, scorer) = self.scorer()?;
        let (extracted, logits) = Self::logits(&scorer, sessions)?;
        let baseline = Self::baseline_of(sessions, &extracted, &logits);
        let sessions = Self::explain_rows(&m, &baseline, &extracted, top)?;
        Ok(Explanations { baseline, sessions })
    }

    /// Explains `sessions` against a baseline built earlier
    /// ([`Self::typical_humans`] of a larger batch), with the latest model.
    pub fn explain_against(
        &self,
        baseline: &Baseline,
        sessions: &[Session],
        top: usize,
    ) -> Result<Vec<SessionExplanation>, ScoreError> {
        let (m, _) = self.scorer()?;
        let extracted: Vec<SessionFeatures> = sessions.iter().map(features::extract).collect();
        Self::explain_rows(&m, baseline, &extracted, top)
    }

    fn explain_rows(
        m: &GlobalModel,
        baseline: &Baseline,
        extracted: &[SessionFeatures],
        top: usize,
    ) -> Result<Vec<SessionExplanation>, ScoreError> {
        let rows: Vec<_> = extracted
            .iter()
            .map(|f| (&f.values, &f.raw, None))
            .collect();
        Ok(baseline
            .reasons_for(&m.spec, &m.weights, &rows, top)?
            .into_iter()
            .map(|(e, reasons)| SessionExplanation {
                logit: e.logit,
                probability: e.probability(),
                reasons,
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use fedsec_detector::explain::{BaselineSource, top_reasons};
    use fedsec_detector::features::idx;
    use fedsec_detector::logs::time::format_clf_time;
    use fedsec_detector::logs::{LogReader, ReaderConfig};
    use fedsec_detector::session::{Sessionizer, sessionize};

    use super::*;

    const T0: i64 = 1_709_510_400; // 2024-03-04T00:00:00Z
    const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0";

    /// `n` requests of one client, `gap` seconds apart, each a distinct page.
    fn client_lines(ip: &str, ua: &str, start: i64, n: usize, gap: i64) -> String {
        (0..n)
            .map(|k| {
                let t = format_clf_time((start + gap * k as i64) * 1000, 0);
                format!("{ip} - - [{t}] \"GET /p{k} HTTP/1.1\" 200 5120 \"-\" \"{ua}\"\n")
            })
            .collect()
    }

    /// `humans` Firefox visitors making 60 requests 10 s apart (this
    /// tenant's people are busy), then one script making as many requests
    /// 1 s apart; sessions in closing order, the script last.
    fn sessions(humans: usize) -> Vec<Session> {
        let mut log: String = (0..humans)
            .map(|i| {
                client_lines(
                    &format!("198.51.100.{}", i + 1),
                    FIREFOX,
                    T0 + 7 * i as i64,
                    60,
                    10,
                )
            })
            .collect();
        log.push_str(&client_lines(
            "203.0.113.9",
            "python-requests/2.31.0",
            T0 + 7_200,
            60,
            1,
        ));
        let mut out = Vec::new();
        let mut reader = LogReader::new(log.as_bytes(), ReaderConfig::default());
        sessionize(
            &mut reader,
            &mut Sessionizer::default(),
            |s| out.push(s),
            |_| {},
        )
        .unwrap();
        out.sort_by_key(|s| s.key.start_ms);
        out
    }

    /// A handle on a hand-set logistic model: more requests, shorter gaps
    /// and no current browser push the logit up; the people sit at −5.
    fn handle_with_model(human: &SessionFeatures) -> ParticipantHandle {
        let spec = ModelSpec::logistic(NUM_FEATURES as u32);
        let mut w = vec![0.0f32; NUM_FEATURES + 1];
        w[idx::REQUESTS] = 1.0;
        w[idx::MEDIAN_GAP] = -1.0;
        w[idx::UA_BROWSER] = -4.0;
        let v = &human.values;
        w[NUM_FEATURES] = -5.0 - (v[idx::REQUESTS] - v[idx::MEDIAN_GAP] - 4.0 * v[idx::UA_BROWSER]);
        let shared = Arc::new(Shared {
            events: broadcast::channel(4).0,
            model: RwLock::new(None),
            store: Mutex::new(LocalStore::new(0.2, 100, 1)),
        });
        shared.set_model(Arc::new(GlobalModel {
            job_id: "j".into(),
            version: 1,
            round: 1,
            spec,
            weights: w,
            epsilon: None,
        }));
        ParticipantHandle { shared }
    }

    #[test]
    fn explanations_compare_with_the_tenants_typical_humans_not_feature_centres() {
        let batch = sessions(12);
        assert_eq!(batch.len(), 13);
        let suspect = batch.last().unwrap();
        assert_eq!(suspect.user_agent, "python-requests/2.31.0");
        let handle = handle_with_model(&features::extract(&batch[0]));

        let ex = handle.explain_sessions(&batch, 3).unwrap();
        // The baseline is this batch's people, as `score` builds it.
        assert_eq!(ex.baseline.source, BaselineSource::ScoredHumans);
        assert_eq!((ex.baseline.len(), ex.baseline.eligible), (12, 12));
        assert!(
            ex.baseline.notice().starts_with(
                "Reasons compare with: 12 sessions of this log the model scores as human"
            ),
            "{}",
            ex.baseline.notice()
        );
        assert_eq!(ex.sessions.len(), 13);
        let mine = &ex.sessions[12];
        assert!(mine.logit > ex.sessions[0].logit + 4.0, "{mine:?}");
        // The script makes as many requests as this tenant's people do: that
        // is no reason here. Its speed is, and says what is typical.
        let names: Vec<&str> = mine.reasons.iter().map(|r| r.name).collect();
        assert!(
            !mine.reasons.iter().any(|r| r.feature == idx::REQUESTS),
            "{names:?}"
        );
        let gap = mine
            .reasons
            .iter()
            .find(|r| r.feature == idx::MEDIAN_GAP)
            .unwrap_or_else(|| panic!("{names:?}"));
        assert!(gap.typical.is_some(), "{gap:?}");

        // Against the feature centres (the old embedding behaviour) the
        // request count *is* a reason: the test tells the two apart.
        let f = features::extract(suspect);
        let centre = fedsec_detector::explain::explain(
            &handle.model().unwrap().spec,
            &handle.model().unwrap().weights,
            &f.values,
            &fedsec_detector::explain::baseline_for(&f.values),
        )
        .unwrap();
        let old = top_reasons(&centre[0], &f.values, &f.raw, 3);
        assert!(old.iter().any(|r| r.feature == idx::REQUESTS), "{old:?}");

        // A baseline from the batch explains a few sessions alike.
        let baseline = handle.typical_humans(&batch).unwrap();
        // (Baselines hold NaN typical values where no reference has one.)
        assert_eq!(baseline.describe(), ex.baseline.describe());
        assert_eq!(baseline.typical(), ex.baseline.typical());
        let few = handle
            .explain_against(&baseline, std::slice::from_ref(suspect), 3)
            .unwrap();
        assert_eq!(few[0], *mine);
    }

    #[test]
    fn too_few_people_fall_back_to_the_feature_centres_and_say_so() {
        let batch = sessions(5);
        let handle = handle_with_model(&features::extract(&batch[0]));
        let ex = handle.explain_sessions(&batch, 3).unwrap();
        assert_eq!(ex.baseline.source, BaselineSource::FeatureCentres);
        assert_eq!(ex.baseline.eligible, 5);
        assert!(
            ex.baseline.notice().contains("fixed feature centres"),
            "{}",
            ex.baseline.notice()
        );
        // No model yet: an error, not a panic.
        let empty = ParticipantHandle {
            shared: Arc::new(Shared {
                events: broadcast::channel(4).0,
                model: RwLock::new(None),
                store: Mutex::new(LocalStore::new(0.2, 100, 1)),
            }),
        };
        assert!(matches!(
            empty.explain_sessions(&batch, 3),
            Err(ScoreError::NoModel)
        ));
    }
}
