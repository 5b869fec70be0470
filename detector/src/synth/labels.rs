//! The labels file of a synthetic tenant and its exact join with the
//! sessions the sessionizer finds in the tenant's log.
//!
//! One JSON object per line: `{"session": "<SessionKey>", "archetype":
//! "<name>", "class": "human|good_bot|abusive_bot", "is_bot": true|false,
//! "requests": <n>}` (`is_bot`: automated, good or not). The key is the
//! [`SessionKey`](crate::session::SessionKey) string the sessionizer produces
//! for the session (its identity and first timestamp as written in the log).

use std::collections::HashMap;
use std::io::{self, BufRead};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::Archetype;
use crate::dataset::{Dataset, TrafficClass};
use crate::features::{self, NUM_FEATURES, RawFeatures};
use crate::logs::{LogReader, ReaderConfig, ReaderStats};
use crate::network::Enrichment;
use crate::session::{SessionConfig, Sessionizer, sessionize};
use crate::weak::SessionFacts;

/// One line of a labels file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelRecord {
    /// Session key string (see [`SessionKey`](crate::session::SessionKey)).
    pub session: String,
    /// Archetype name (see [`Archetype::name`]).
    pub archetype: String,
    /// Traffic class (`human`, `good_bot`, `abusive_bot`); files written
    /// before classes existed lack it and get the archetype's class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<TrafficClass>,
    /// Ground truth: automated traffic (good or abusive).
    pub is_bot: bool,
    /// Requests the generator wrote for the session.
    pub requests: usize,
}

/// A labels file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LabelError {
    /// Reading failed.
    #[error("reading labels: {0}")]
    Io(#[from] io::Error),
    /// A line is not a label record.
    #[error("labels line {line}: {source}")]
    Parse {
        /// 1-based line number.
        line: usize,
        /// The JSON error.
        source: serde_json::Error,
    },
    /// The same session appears twice.
    #[error("labels line {line}: duplicate session {session}")]
    Duplicate {
        /// 1-based line number.
        line: usize,
        /// The key.
        session: String,
    },
}

impl LabelRecord {
    /// The record's class: as written, else its archetype's, else (an
    /// unknown archetype) abusive for a bot and human otherwise.
    pub fn traffic_class(&self) -> TrafficClass {
        self.class
            .unwrap_or_else(|| match self.archetype.parse::<Archetype>() {
                Ok(a) => a.class(),
                Err(_) if self.is_bot => TrafficClass::AbusiveBot,
                Err(_) => TrafficClass::Human,
            })
    }
}

/// Reads a labels file into a map keyed by session key.
pub fn read_labels(r: impl BufRead) -> Result<HashMap<String, LabelRecord>, LabelError> {
    let mut out = HashMap::new();
    for (i, line) in r.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let rec: LabelRecord = serde_json::from_str(&line).map_err(|source| LabelError::Parse {
            line: i + 1,
            source,
        })?;
        if out.contains_key(&rec.session) {
            return Err(LabelError::Duplicate {
                line: i + 1,
                session: rec.session,
            });
        }
        out.insert(rec.session.clone(), rec);
    }
    Ok(out)
}

/// How well sessions and labels matched.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct JoinReport {
    /// Log reader counters.
    pub reader: ReaderStats,
    /// Sessions the sessionizer produced.
    pub sessions: usize,
    /// Sessions with a label.
    pub labelled: usize,
    /// Sessions without a label (dropped from the dataset).
    pub unlabelled: usize,
    /// Labels no session matched.
    pub unmatched_labels: usize,
    /// Labelled sessions whose request count differs from the label's.
    pub request_count_mismatches: usize,
}

impl JoinReport {
    /// Every session has exactly its label, with the same request count.
    pub fn is_exact(&self) -> bool {
        self.unlabelled == 0
            && self.unmatched_labels == 0
            && self.request_count_mismatches == 0
            && self.reader.malformed == 0
    }
}

/// Labelled sessions of one log.
#[derive(Debug, Clone, Default)]
pub struct LabelledSessions {
    /// Features, labels (1 = abusive bot), and the archetype id as the row
    /// tag ([`Archetype::id`], `u32::MAX` for an unknown name).
    pub dataset: Dataset,
    /// Class of each row.
    pub classes: Vec<TrafficClass>,
    /// Session key of each row.
    pub keys: Vec<String>,
    /// Raw features of each row.
    pub raw: Vec<RawFeatures>,
    /// What the weak labeller reads about each row's session
    /// ([`crate::weak::SessionFacts`]).
    pub facts: Vec<SessionFacts>,
    /// Join statistics.
    pub report: JoinReport,
}

/// Sessionizes `logs` and joins each session with its label (no network
/// files: ASes only as logged, crawler checks missing).
pub fn join_labels<R: BufRead>(
    logs: R,
    reader: ReaderConfig,
    sessions: SessionConfig,
    labels: &HashMap<String, LabelRecord>,
) -> io::Result<LabelledSessions> {
    join_labels_with(
        logs,
        reader,
        sessions,
        Arc::new(Enrichment::default()),
        labels,
    )
}

/// [`join_labels`] with the tenant's network files.
pub fn join_labels_with<R: BufRead>(
    logs: R,
    reader: ReaderConfig,
    sessions: SessionConfig,
    enrichment: Arc<Enrichment>,
    labels: &HashMap<String, LabelRecord>,
) -> io::Result<LabelledSessions> {
    let mut out = LabelledSessions {
        dataset: Dataset::new(NUM_FEATURES),
        ..LabelledSessions::default()
    };
    let mut used = 0usize;
    let mut reader = LogReader::new(logs, reader);
    let mut sessionizer = Sessionizer::with_enrichment(sessions, enrichment);
    let stats = sessionize(
        &mut reader,
        &mut sessionizer,
        |s| {
            out.report.sessions += 1;
            let key = s.key.to_string();
            match labels.get(&key) {
                Some(label) => {
                    used += 1;
                    out.report.labelled += 1;
                    if label.requests != s.requests.len() {
                        out.report.request_count_mismatches += 1;
                    }
                    let f = features::extract(&s);
                    let tag = label
                        .archetype
                        .parse::<Archetype>()
                        .map_or(u32::MAX, |a| a.id());
                    let class = label.traffic_class();
                    // Features are finite by construction.
                    if out
                        .dataset
                        .push_tagged(&f.values, class.is_abuse(), tag)
                        .is_ok()
                    {
                        out.keys.push(key);
                        out.raw.push(f.raw);
                        out.facts.push(SessionFacts::of(&s, &f));
                        out.classes.push(class);
                    }
                }
                None => out.report.unlabelled += 1,
            }
        },
        |_| {},
    )?;
    out.report.reader = stats;
    out.report.unmatched_labels = labels.len().saturating_sub(used);
    Ok(out)
}
