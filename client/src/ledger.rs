//! The tenant's own privacy ledger: a JSON file in the state directory with
//! every round this client contributed to, and the round history of each job
//! as last seen in a verified privacy receipt.
//!
//! An entry is written (durably, see [`crate::state::write_atomic`]) *before*
//! the update is submitted, so a crash after the submission can never leave
//! a contribution unrecorded. Its status is updated afterwards (accepted,
//! rejected); the guard counts every entry whatever its status. A task
//! served again (the same job, round and attempt after a restart, or with
//! another base version) gets a new entry and a new nonce — one more step
//! for the guard — unless the update is byte-identical to a recorded one
//! (same base version and SHA-256), which is a resend of that contribution.
//!
//! The file is never silently reset: an unreadable ledger is an error, because
//! starting from an empty one would under-count what the tenant has spent.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::state::write_atomic;

/// Ledger file name.
pub use crate::state::LEDGER_FILE;
/// Value of the `format` field.
pub const LEDGER_FORMAT: &str = "fedsec-client-ledger";
/// Current schema version.
pub const LEDGER_VERSION: u32 = 1;

/// Why the ledger or the state directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// An I/O error.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a ledger this version understands.
    #[error("{path}: not a readable fedsec client ledger: {problem}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// Another participant holds the state directory.
    #[error("{0} is in use by another participant")]
    Locked(PathBuf),
    /// The ledger belongs to another client identity.
    #[error(
        "the ledger in this state directory belongs to {recorded}, but the certificate identifies \
         {presented}; use a separate state directory per client identity"
    )]
    IdentityMismatch {
        /// `tenant/client` recorded in the ledger.
        recorded: String,
        /// `tenant/client` of the certificate.
        presented: String,
    },
}

/// Outcome of a recorded contribution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryStatus {
    /// Recorded; the upload had not been confirmed (yet).
    Recorded,
    /// The coordinator accepted the update.
    Accepted,
    /// The coordinator refused the update (the entry still counts).
    Rejected,
}

impl From<crate::state::StateError> for LedgerError {
    /// The state directory's errors are the ledger's (its file lives there).
    fn from(e: crate::state::StateError) -> Self {
        match e {
            crate::state::StateError::Io { context, source } => Self::Io { context, source },
            crate::state::StateError::Locked(path) => Self::Locked(path),
        }
    }
}

impl EntryStatus {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Recorded => "recorded",
            Self::Accepted => "accepted",
            Self::Rejected => "rejected",
        }
    }
}

/// One round this client contributed (or was about to contribute) to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerEntry {
    /// Job.
    pub job_id: String,
    /// Round (1-based).
    pub round: u64,
    /// Attempt of the round.
    pub attempt: u32,
    /// Model version the update was computed against.
    pub base_version: u64,
    /// Poisson sampling rate q of the round.
    pub sampling_rate: f64,
    /// Noise multiplier z of the round (the accounted, effective one; 0 when
    /// the job publishes without noise).
    pub noise_multiplier: f64,
    /// Clip norm C.
    pub clip_norm: f64,
    /// δ the job accounts at.
    pub delta: f64,
    /// Whether the coordinator said it adds noise.
    pub noise_enabled: bool,
    /// Stddev of the noise this client added itself (0 in central mode).
    pub client_noise_stddev: f64,
    /// When the entry was written (client clock, Unix ms).
    pub recorded_unix_ms: i64,
    /// The upload's nonce (hex), reused if the upload is retried.
    pub nonce: String,
    /// SHA-256 (hex) of the uploaded update; empty in entries written before
    /// it was recorded.
    #[serde(default)]
    pub update_sha256: String,
    /// Outcome.
    pub status: EntryStatus,
    /// Details of the outcome (e.g. the rejection message).
    #[serde(default)]
    pub detail: String,
    /// The guard's ε after this round at the tenant's δ, when it allowed it
    /// (`None`: unbounded, e.g. a noise-free job the tenant allowed).
    pub epsilon_after: Option<f64>,
    /// Accounting basis of `epsilon_after`.
    pub basis: String,
}

/// One committed round of a job, from a verified privacy receipt.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryRound {
    /// Round.
    pub round: u64,
    /// q.
    pub sampling_rate: f64,
    /// Effective noise multiplier (update and adaptive-clipping count together).
    pub noise_multiplier: f64,
    /// Commit time (coordinator clock).
    pub committed_unix_ms: i64,
}

/// A job's round history as last seen.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobHistory {
    /// Model version whose receipt this is.
    pub version: u64,
    /// Every committed round, in order.
    pub rounds: Vec<HistoryRound>,
}

/// The client identity a ledger belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerIdentity {
    /// Tenant id.
    pub tenant_id: String,
    /// Client id.
    pub client_id: String,
}

/// The file's contents.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerFile {
    /// Always [`LEDGER_FORMAT`].
    pub format: String,
    /// Schema version.
    pub version: u32,
    /// The identity, once registered.
    pub identity: Option<LedgerIdentity>,
    /// Contributions, in the order they were recorded.
    pub entries: Vec<LedgerEntry>,
    /// Per job: the round history from the latest verified receipt.
    #[serde(default)]
    pub jobs: BTreeMap<String, JobHistory>,
}

impl Default for LedgerFile {
    fn default() -> Self {
        Self {
            format: LEDGER_FORMAT.into(),
            version: LEDGER_VERSION,
            identity: None,
            entries: Vec::new(),
            jobs: BTreeMap::new(),
        }
    }
}

impl LedgerFile {
    /// Parses and checks a ledger's text.
    pub fn parse(text: &str, path: &Path) -> Result<Self, LedgerError> {
        let corrupt = |problem: String| LedgerError::Corrupt {
            path: path.to_owned(),
            problem,
        };
        let file: Self = serde_json::from_str(text).map_err(|e| corrupt(e.to_string()))?;
        if file.format != LEDGER_FORMAT {
            return Err(corrupt(format!("format is {:?}", file.format)));
        }
        if file.version != LEDGER_VERSION {
            return Err(corrupt(format!(
                "schema version {} (this client reads {LEDGER_VERSION})",
                file.version
            )));
        }
        for (i, e) in file.entries.iter().enumerate() {
            let finite_pos = |v: f64| v.is_finite() && v >= 0.0;
            let valid = e.round != 0
                && e.sampling_rate > 0.0
                && e.sampling_rate <= 1.0
                && finite_pos(e.noise_multiplier)
                && finite_pos(e.clip_norm)
                && e.delta > 0.0
                && e.delta < 1.0;
            if !valid {
                return Err(corrupt(format!("entry {i} has out-of-range values")));
            }
        }
        Ok(file)
    }

    /// Entries of one job.
    pub fn entries_of<'a>(&'a self, job_id: &'a str) -> impl Iterator<Item = &'a LedgerEntry> {
        self.entries.iter().filter(move |e| e.job_id == job_id)
    }

    /// The first entry for a round attempt, if recorded.
    pub fn find(&self, job_id: &str, round: u64, attempt: u32) -> Option<&LedgerEntry> {
        self.entries
            .iter()
            .find(|e| e.job_id == job_id && e.round == round && e.attempt == attempt)
    }

    /// The entry recording exactly this update for this round attempt (same
    /// base version and update digest), whose upload may be resent as is.
    pub fn find_identical(
        &self,
        job_id: &str,
        round: u64,
        attempt: u32,
        base_version: u64,
        update_sha256: &str,
    ) -> Option<&LedgerEntry> {
        self.entries.iter().find(|e| {
            e.job_id == job_id
                && e.round == round
                && e.attempt == attempt
                && e.base_version == base_version
                && !e.update_sha256.is_empty()
                && e.update_sha256 == update_sha256
        })
    }
}

/// The ledger file and its in-memory copy; every change is persisted before
/// the call returns.
#[derive(Debug)]
pub struct Ledger {
    path: PathBuf,
    file: LedgerFile,
}

impl Ledger {
    /// Opens `path`, or starts an empty ledger if it does not exist.
    pub fn open(path: &Path) -> Result<Self, LedgerError> {
        let file = match std::fs::read_to_string(path) {
            Ok(text) => LedgerFile::parse(&text, path)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => LedgerFile::default(),
            Err(source) => {
                return Err(LedgerError::Io {
                    context: format!("cannot read {}", path.display()),
                    source,
                });
            }
        };
        Ok(Self {
            path: path.to_owned(),
            file,
        })
    }

    /// Reads a ledger without taking the state directory's lock (for the
    /// `ledger` command; writes are atomic renames, so a reader never sees a
    /// half-written file).
    pub fn read(path: &Path) -> Result<LedgerFile, LedgerError> {
        let text = std::fs::read_to_string(path).map_err(|source| LedgerError::Io {
            context: format!("cannot read {}", path.display()),
            source,
        })?;
        LedgerFile::parse(&text, path)
    }

    /// The contents.
    pub fn file(&self) -> &LedgerFile {
        &self.file
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn persist(&self, next: &LedgerFile) -> Result<(), LedgerError> {
        let json = serde_json::to_vec_pretty(next).map_err(|e| LedgerError::Io {
            context: "cannot serialise the ledger".into(),
            source: std::io::Error::other(e),
        })?;
        write_atomic(&self.path, &json).map_err(|source| LedgerError::Io {
            context: format!("cannot write {}", self.path.display()),
            source,
        })
    }

    /// Applies `change` to a copy, persists it, then keeps it. On error the
    /// in-memory ledger is unchanged.
    fn update(&mut self, change: impl FnOnce(&mut LedgerFile)) -> Result<(), LedgerError> {
        let mut next = self.file.clone();
        change(&mut next);
        self.persist(&next)?;
        self.file = next;
        Ok(())
    }

    /// Records the identity on first registration; refuses another identity.
    pub fn bind_identity(&mut self, identity: LedgerIdentity) -> Result<(), LedgerError> {
        match &self.file.identity {
            Some(known) if *known == identity => Ok(()),
            Some(known) => Err(LedgerError::IdentityMismatch {
                recorded: format!("{}/{}", known.tenant_id, known.client_id),
                presented: format!("{}/{}", identity.tenant_id, identity.client_id),
            }),
            None => self.update(|f| f.identity = Some(identity)),
        }
    }

    /// Appends a contribution (durably).
    pub fn record(&mut self, entry: LedgerEntry) -> Result<(), LedgerError> {
        self.update(|f| f.entries.push(entry))
    }

    /// Sets the outcome of the contribution uploaded with `nonce` (hex) for
    /// a round attempt.
    pub fn set_status(
        &mut self,
        job_id: &str,
        round: u64,
        attempt: u32,
        nonce: &str,
        status: EntryStatus,
        detail: &str,
    ) -> Result<(), LedgerError> {
        self.update(|f| {
            for e in &mut f.entries {
                if e.job_id == job_id
                    && e.round == round
                    && e.attempt == attempt
                    && e.nonce == nonce
                {
                    e.status = status;
                    e.detail = detail.to_owned();
                }
            }
        })
    }

    /// Stores a job's history if it is newer than the one kept.
    pub fn set_history(&mut self, job_id: &str, history: JobHistory) -> Result<(), LedgerError> {
        match self.file.jobs.get(job_id) {
            Some(h) if h.version >= history.version && h.rounds.len() >= history.rounds.len() => {
                Ok(())
            }
            _ => self.update(|f| {
                f.jobs.insert(job_id.to_owned(), history);
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn entry(job: &str, round: u64) -> LedgerEntry {
        LedgerEntry {
            job_id: job.into(),
            round,
            attempt: 1,
            base_version: round - 1,
            sampling_rate: 0.5,
            noise_multiplier: 1.1,
            clip_norm: 1.0,
            delta: 1e-5,
            noise_enabled: true,
            client_noise_stddev: 0.0,
            recorded_unix_ms: 1,
            nonce: "00".into(),
            update_sha256: String::new(),
            status: EntryStatus::Recorded,
            detail: String::new(),
            epsilon_after: Some(1.5),
            basis: "participation".into(),
        }
    }

    #[test]
    fn entries_survive_reopen_bit_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(LEDGER_FILE);
        let mut l = Ledger::open(&p).unwrap();
        assert!(l.file().entries.is_empty());
        let mut e = entry("j", 1);
        e.sampling_rate = 0.1 + 0.2; // not exactly representable in decimal
        e.noise_multiplier = std::f64::consts::PI;
        l.record(e.clone()).unwrap();
        l.set_status("j", 1, 1, "00", EntryStatus::Accepted, "")
            .unwrap();
        // Another nonce of the same attempt is another entry: untouched.
        l.set_status("j", 1, 1, "ff", EntryStatus::Rejected, "x")
            .unwrap();
        let back = Ledger::open(&p).unwrap();
        assert_eq!(back.file().entries.len(), 1);
        let got = &back.file().entries[0];
        assert_eq!(got.sampling_rate.to_bits(), e.sampling_rate.to_bits());
        assert_eq!(got.noise_multiplier.to_bits(), e.noise_multiplier.to_bits());
        assert_eq!(got.status, EntryStatus::Accepted);
        assert_eq!(Ledger::read(&p).unwrap(), *back.file());
    }

    #[test]
    fn a_crash_mid_write_leaves_the_previous_ledger() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(LEDGER_FILE);
        let mut l = Ledger::open(&p).unwrap();
        l.record(entry("j", 1)).unwrap();
        // A writer that died after writing part of its temporary file.
        std::fs::write(
            dir.path().join(".ledger.json.tmp-999"),
            b"{\"format\": \"fed",
        )
        .unwrap();
        let back = Ledger::open(&p).unwrap();
        assert_eq!(back.file().entries.len(), 1);
        // The next write still succeeds and keeps everything.
        let mut back = back;
        back.record(entry("j", 2)).unwrap();
        assert_eq!(Ledger::open(&p).unwrap().file().entries.len(), 2);
    }

    #[test]
    fn a_damaged_ledger_is_an_error_never_a_reset() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(LEDGER_FILE);
        let mut l = Ledger::open(&p).unwrap();
        l.record(entry("j", 1)).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        std::fs::write(&p, &text[..text.len() / 2]).unwrap();
        assert!(matches!(Ledger::open(&p), Err(LedgerError::Corrupt { .. })));
        let bad = text.replace("\"sampling_rate\": 0.5", "\"sampling_rate\": 7.0");
        std::fs::write(&p, bad).unwrap();
        let err = Ledger::open(&p).unwrap_err();
        assert!(err.to_string().contains("out-of-range"), "{err}");
    }

    #[test]
    fn identity_is_bound_once() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(LEDGER_FILE);
        let mut l = Ledger::open(&p).unwrap();
        let a = LedgerIdentity {
            tenant_id: "t".into(),
            client_id: "a".into(),
        };
        l.bind_identity(a.clone()).unwrap();
        l.bind_identity(a).unwrap();
        let err = l
            .bind_identity(LedgerIdentity {
                tenant_id: "t".into(),
                client_id: "b".into(),
            })
            .unwrap_err();
        assert!(err.to_string().contains("t/a"), "{err}");
    }

    #[test]
    fn failed_writes_leave_memory_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("missing-dir").join(LEDGER_FILE);
        let mut l = Ledger::open(&p).unwrap();
        assert!(l.record(entry("j", 1)).is_err());
        assert!(l.file().entries.is_empty());
    }
}
