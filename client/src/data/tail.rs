//! [`LogTail`]: incremental reading of one growing log file and its labels
//! file, through the detector's reader and sessionizer, joining each closed
//! session with its label.
//!
//! Only complete lines (ending in `\n`) are consumed; a line still being
//! written is read on a later poll. A file that shrinks was rotated or
//! truncated and is read again from the start. Sessions close as the log's
//! own clock passes their idle timeout; when a file stops growing, its open
//! sessions are closed too (by the wall clock for a live log, at once for a
//! historical one). Sessions whose label has not arrived yet wait, bounded
//! — or, with weak labelling on (the default), take a silver label at once
//! (ground truth already read wins; ground truth read later replaces the
//! silver label through [`Polled::relabels`]).

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use std::sync::Arc;

use fedsec_detector::dataset::TrafficClass;
use fedsec_detector::features::{self, NUM_FEATURES};
use fedsec_detector::logs::{LineEvent, LogReader, ReaderConfig};
use fedsec_detector::network::Enrichment;
use fedsec_detector::paths::fnv1a;
use fedsec_detector::session::{Session, Sessionizer};
use fedsec_detector::weak::{SessionFacts, Vote};

use super::{DataOptions, DataPipeline, LabelledLog, WeakLabelling};

/// One labelled session, ready for the store.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TailRow {
    /// Features.
    pub x: [f32; NUM_FEATURES],
    /// Abusive.
    pub bot: bool,
    /// Training weight (1 for ground truth).
    pub weight: f32,
    /// FNV-1a of the session key for a silver label (0 for ground truth).
    pub key: u64,
    /// The weak labeller abstained and self-training is on: the row waits
    /// for a pseudo-label (`weight` is the abstained weight, possibly 0).
    pub unlabelled: bool,
}

/// What one poll found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Polled {
    /// Newly labelled sessions.
    pub rows: Vec<TailRow>,
    /// Ground truth for sessions already stored with a silver label:
    /// (key hash, abusive).
    pub relabels: Vec<(u64, bool)>,
}

/// Largest block read per step; a partial line longer than this is skipped.
const READ_BLOCK: usize = 16 << 20;

/// Counters of one log file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileStats {
    /// Records parsed.
    pub records: u64,
    /// Malformed log lines skipped.
    pub malformed: u64,
    /// Sessions closed.
    pub sessions: u64,
    /// Sessions joined with a label.
    pub labelled: u64,
    /// Label lines read.
    pub labels: u64,
    /// Label lines that could not be parsed.
    pub malformed_labels: u64,
    /// Sessions or labels dropped because too many were waiting.
    pub dropped: u64,
    /// Times the file was found shorter than already read.
    pub truncations: u64,
    /// Sessions given a silver label "abuse".
    pub silver_abuse: u64,
    /// Sessions given a silver label "not abuse".
    pub silver_not_abuse: u64,
    /// Sessions the weak labeller abstained on.
    pub abstained: u64,
    /// Silver labels replaced by ground truth that arrived later.
    pub relabelled: u64,
}

/// One line of a labels file: the session key and its class. `class` wins,
/// then `is_abuse`, then `is_bot` (read as "abusive"); other fields are
/// ignored.
#[derive(Debug, serde::Deserialize)]
pub struct LabelLine {
    /// Session key.
    pub session: String,
    /// `human`, `good_bot` or `abusive_bot`.
    #[serde(default)]
    pub class: Option<TrafficClass>,
    /// Abusive or not.
    #[serde(default)]
    pub is_abuse: Option<bool>,
    /// Older files: a bot to block.
    #[serde(default)]
    pub is_bot: Option<bool>,
}

impl LabelLine {
    /// The training label (abusive bot), if the line has one.
    pub fn abusive(&self) -> Option<bool> {
        self.class
            .map(TrafficClass::is_abuse)
            .or(self.is_abuse)
            .or(self.is_bot)
    }
}

/// Bounded map whose oldest insertions go first.
#[derive(Debug)]
struct Bounded<V> {
    map: HashMap<String, V>,
    order: VecDeque<String>,
    cap: usize,
}

impl<V> Bounded<V> {
    fn new(cap: usize) -> Self {
        Self {
            map: HashMap::new(),
            order: VecDeque::new(),
            cap: cap.max(1),
        }
    }

    /// Inserts; returns how many entries were evicted.
    fn insert(&mut self, k: String, v: V) -> u64 {
        if self.map.insert(k.clone(), v).is_none() {
            self.order.push_back(k);
        }
        let mut evicted = 0;
        while self.map.len() > self.cap {
            match self.order.pop_front() {
                Some(old) => {
                    if self.map.remove(&old).is_some() {
                        evicted += 1;
                    }
                }
                None => break,
            }
        }
        // Keys removed by `take` linger in `order`; compact now and then.
        if self.order.len() > 2 * self.cap {
            let map = &self.map;
            self.order.retain(|k| map.contains_key(k));
        }
        evicted
    }

    fn take(&mut self, k: &str) -> Option<V> {
        self.map.remove(k)
    }
}

/// One log file and its labels, read incrementally.
#[derive(Debug)]
pub struct LogTail {
    files: LabelledLog,
    reader: ReaderConfig,
    enrichment: Arc<Enrichment>,
    idle_timeout_ms: i64,
    sessionizer: Sessionizer,
    session_config: fedsec_detector::session::SessionConfig,
    log_offset: u64,
    labels_offset: u64,
    stream_clock: i64,
    labels: Bounded<bool>,
    pending: Bounded<[f32; NUM_FEATURES]>,
    /// Keys of sessions stored with a silver label (ground truth may follow).
    silver: Bounded<()>,
    weak: Option<Arc<WeakLabelling>>,
    stats: FileStats,
}

/// Reads the complete lines appended to `path` since `*offset`. Returns
/// `Ok(None)` if the file does not exist, and sets `*truncated` when the file
/// is shorter than `*offset` (the caller restarts from 0).
fn read_new_lines(
    path: &Path,
    offset: &mut u64,
    truncated: &mut bool,
) -> io::Result<Option<Vec<u8>>> {
    let mut f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let len = f.metadata()?.len();
    if len < *offset {
        *truncated = true;
        *offset = 0;
    }
    if len == *offset {
        return Ok(Some(Vec::new()));
    }
    f.seek(SeekFrom::Start(*offset))?;
    let want = usize::try_from(len - *offset)
        .unwrap_or(usize::MAX)
        .min(READ_BLOCK);
    let mut buf = Vec::with_capacity(want);
    (&mut f).take(want as u64).read_to_end(&mut buf)?;
    match memchr_last_newline(&buf) {
        Some(i) => {
            buf.truncate(i + 1);
            *offset += buf.len() as u64;
        }
        None if buf.len() >= READ_BLOCK => {
            // One enormous unterminated line: skip it (the reader would
            // reject it as too long anyway).
            *offset += buf.len() as u64;
            buf.clear();
        }
        None => buf.clear(),
    }
    Ok(Some(buf))
}

fn memchr_last_newline(buf: &[u8]) -> Option<usize> {
    buf.iter().rposition(|&b| b == b'\n')
}

impl LogTail {
    /// A tail positioned at the start of both files.
    pub fn new(files: LabelledLog, options: &DataOptions, pipeline: &DataPipeline) -> Self {
        let cap = options.max_examples.max(1024);
        Self {
            files,
            reader: pipeline.reader.clone(),
            enrichment: pipeline.enrichment.clone(),
            idle_timeout_ms: options.sessions.idle_timeout_ms.max(1),
            sessionizer: Sessionizer::with_enrichment(
                options.sessions.clone(),
                pipeline.enrichment.clone(),
            ),
            session_config: options.sessions.clone(),
            log_offset: 0,
            labels_offset: 0,
            stream_clock: i64::MIN,
            labels: Bounded::new(cap),
            pending: Bounded::new(cap),
            silver: Bounded::new(cap),
            weak: pipeline.weak.clone(),
            stats: FileStats::default(),
        }
    }

    /// The files.
    pub fn files(&self) -> &LabelledLog {
        &self.files
    }

    /// Counters so far.
    pub fn stats(&self) -> &FileStats {
        &self.stats
    }

    fn on_session(&mut self, s: &Session, out: &mut Polled) {
        self.stats.sessions += 1;
        let key = s.key.to_string();
        let f = features::extract(s);
        let x = f.values;
        if let Some(bot) = self.labels.take(&key) {
            self.stats.labelled += 1;
            out.rows.push(TailRow {
                x,
                bot,
                weight: 1.0,
                key: 0,
                unlabelled: false,
            });
            return;
        }
        let target = self.weak.as_ref().map(|w| {
            let label = w.labeller.label(&SessionFacts::of(s, &f));
            (label.vote, w.target(&label), w.self_training.enabled)
        });
        match target {
            Some((Vote::Abstain, target, true)) => {
                // Self-training: kept as an unlabelled row (a pseudo-label
                // each round, or the abstained weight); ground truth arriving
                // later replaces it like a silver label.
                self.stats.abstained += 1;
                self.stats.dropped += self.silver.insert(key.clone(), ());
                out.rows.push(TailRow {
                    x,
                    bot: false,
                    weight: target.map_or(0.0, |t| t.1),
                    key: fnv1a(key.as_bytes()).max(1),
                    unlabelled: true,
                });
            }
            Some((vote, Some((bot, weight)), _)) => {
                match vote {
                    Vote::Abuse => self.stats.silver_abuse += 1,
                    Vote::NotAbuse => self.stats.silver_not_abuse += 1,
                    Vote::Abstain => self.stats.abstained += 1,
                }
                let h = fnv1a(key.as_bytes()).max(1);
                self.stats.dropped += self.silver.insert(key, ());
                out.rows.push(TailRow {
                    x,
                    bot,
                    weight,
                    key: h,
                    unlabelled: false,
                });
            }
            Some((_, None, _)) => {
                // Abstained and left out: wait for ground truth like any
                // unlabelled session.
                self.stats.abstained += 1;
                self.stats.dropped += self.pending.insert(key, x);
            }
            None => self.stats.dropped += self.pending.insert(key, x),
        }
    }

    fn drain(&mut self, out: &mut Polled) {
        while let Some(s) = self.sessionizer.pop_closed() {
            self.on_session(&s, out);
        }
    }

    /// Reads whatever was appended since the last poll and returns the newly
    /// labelled sessions' features (and late ground truth for silver rows).
    pub fn poll(&mut self, now_wall_ms: i64) -> io::Result<Polled> {
        let mut out = Polled::default();
        // Labels first, so sessions closing in this poll find theirs.
        while let Some(labels_path) = self.files.labels.clone() {
            let mut truncated = false;
            let Some(bytes) =
                read_new_lines(&labels_path, &mut self.labels_offset, &mut truncated)?
            else {
                break;
            };
            if truncated {
                self.stats.truncations += 1;
            }
            if bytes.is_empty() {
                break;
            }
            for line in bytes.split(|&b| b == b'\n') {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                self.stats.labels += 1;
                let parsed = serde_json::from_slice::<LabelLine>(line)
                    .ok()
                    .and_then(|l| Some((l.abusive()?, l.session)));
                match parsed {
                    Some((abusive, session)) => {
                        if let Some(x) = self.pending.take(&session) {
                            self.stats.labelled += 1;
                            out.rows.push(TailRow {
                                x,
                                bot: abusive,
                                weight: 1.0,
                                key: 0,
                                unlabelled: false,
                            });
                        } else if self.silver.take(&session).is_some() {
                            self.stats.labelled += 1;
                            self.stats.relabelled += 1;
                            out.relabels
                                .push((fnv1a(session.as_bytes()).max(1), abusive));
                        } else {
                            self.stats.dropped += self.labels.insert(session, abusive);
                        }
                    }
                    None => self.stats.malformed_labels += 1,
                }
            }
        }
        let mut grew = false;
        loop {
            let mut truncated = false;
            let Some(bytes) =
                read_new_lines(&self.files.log, &mut self.log_offset, &mut truncated)?
            else {
                break;
            };
            if truncated {
                // Rotated or truncated: close what was open, start afresh.
                self.stats.truncations += 1;
                self.sessionizer.finish();
                self.drain(&mut out);
                self.sessionizer = Sessionizer::with_enrichment(
                    self.session_config.clone(),
                    self.enrichment.clone(),
                );
                self.stream_clock = i64::MIN;
            }
            if bytes.is_empty() {
                break;
            }
            grew = true;
            let mut reader = LogReader::new(bytes.as_slice(), self.reader.clone());
            while let Some(ev) = reader.next_event()? {
                match ev {
                    LineEvent::Record(r) => {
                        self.stats.records += 1;
                        self.stream_clock = self.stream_clock.max(r.ts_ms);
                        self.sessionizer.push(&r);
                    }
                    LineEvent::Malformed(m) => {
                        self.stats.malformed += 1;
                        self.sessionizer.note_malformed(m.client.as_deref());
                    }
                }
                while let Some(s) = self.sessionizer.pop_closed() {
                    self.on_session(&s, &mut out);
                }
            }
        }
        if !grew && self.sessionizer.open_sessions() > 0 {
            if now_wall_ms.saturating_sub(self.stream_clock) > self.idle_timeout_ms {
                // Every open session is idle by the wall clock: close them
                // without moving the log's own clock (a historical file that
                // grows later is still sessionized by its timestamps).
                self.sessionizer.finish();
            } else {
                self.sessionizer.flush_idle(now_wall_ms);
            }
            self.drain(&mut out);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const T0: &str = "04/Mar/2024:10:00:00 +0000";

    fn line(ip: &str, ts: &str, path: &str) -> String {
        format!("{ip} - - [{ts}] \"GET {path} HTTP/1.1\" 200 512 \"-\" \"curl/8.0\"\n")
    }

    fn key(ip: &str) -> String {
        // The sessionizer's key for an (IP, UA) session starting at T0.
        format!(
            "ipua:1709546400000:{ip}:{:016x}",
            fedsec_detector::paths::fnv1a(b"curl/8.0")
        )
    }

    fn ipua_key(ip: &str) -> String {
        format!(
            "ipua:1709546400000:{ip}:{:016x}",
            fedsec_detector::paths::fnv1a(
                b"Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0"
            )
        )
    }

    /// Ground truth only (sessions wait for their labels).
    fn no_weak() -> DataOptions {
        let mut o = DataOptions::default();
        o.labels.weak = false;
        o
    }

    fn append(path: &Path, text: &str) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    #[test]
    fn growing_files_partial_lines_and_late_labels() {
        let dir = tempfile::tempdir().unwrap();
        let files = LabelledLog {
            log: dir.path().join("a.log"),
            labels: Some(dir.path().join("a.labels.jsonl")),
        };
        let o = no_weak();
        let mut tail = LogTail::new(files.clone(), &o, &o.pipeline().unwrap());
        // Nothing exists yet.
        assert!(tail.poll(0).unwrap().rows.is_empty());
        append(&files.log, &line("1.1.1.1", T0, "/a"));
        // A partial line is not consumed.
        let second = line("2.2.2.2", T0, "/b");
        append(&files.log, &second[..20]);
        let now = 1_709_546_400_000 + 3_600_000 * 24;
        // The file did grow in this poll: its one session stays open.
        assert!(tail.poll(now).unwrap().rows.is_empty());
        append(&files.log, &second[20..]);
        // Grew again (the rest of line 2); next poll is quiescent and closes both.
        assert!(tail.poll(now).unwrap().rows.is_empty());
        assert!(tail.poll(now).unwrap().rows.is_empty());
        assert_eq!(tail.stats().records, 2);
        assert_eq!(tail.stats().sessions, 2);
        assert_eq!(tail.stats().malformed, 0);
        // Labels arrive after the sessions closed.
        append(
            files.labels.as_ref().unwrap(),
            &format!(
                "{{\"session\":\"{}\",\"is_bot\":true,\"archetype\":\"x\",\"requests\":1}}\nnot json\n",
                key("1.1.1.1")
            ),
        );
        let got = tail.poll(now).unwrap().rows;
        assert_eq!(got.len(), 1);
        assert!(got[0].bot);
        assert_eq!(tail.stats().malformed_labels, 1);
        append(
            files.labels.as_ref().unwrap(),
            &format!("{{\"session\":\"{}\",\"is_bot\":false}}\n", key("2.2.2.2")),
        );
        let got = tail.poll(now).unwrap().rows;
        assert_eq!(got.len(), 1);
        assert!(!got[0].bot);
        assert_eq!(tail.stats().labelled, 2);
    }

    #[test]
    fn truncation_restarts_from_the_beginning() {
        let dir = tempfile::tempdir().unwrap();
        let files = LabelledLog {
            log: dir.path().join("b.log"),
            labels: Some(dir.path().join("b.labels.jsonl")),
        };
        append(
            files.labels.as_ref().unwrap(),
            &format!("{{\"session\":\"{}\",\"is_bot\":true}}\n", key("3.3.3.3")),
        );
        append(&files.log, &line("9.9.9.9", T0, "/x"));
        append(&files.log, &line("9.9.9.9", T0, "/y"));
        let o = no_weak();
        let mut tail = LogTail::new(files.clone(), &o, &o.pipeline().unwrap());
        let now = 1_709_546_400_000 + 86_400_000;
        tail.poll(now).unwrap();
        std::fs::write(&files.log, line("3.3.3.3", T0, "/z")).unwrap();
        tail.poll(now).unwrap();
        let got = tail.poll(now).unwrap().rows;
        assert_eq!(got.len(), 1, "{:?}", tail.stats());
        assert_eq!(tail.stats().truncations, 1);
    }

    #[test]
    fn logs_only_sessions_get_silver_labels_and_late_ground_truth_replaces_them() {
        let dir = tempfile::tempdir().unwrap();
        let files = LabelledLog {
            log: dir.path().join("c.log"),
            labels: Some(dir.path().join("c.labels.jsonl")),
        };
        // curl (an HTTP library: the user_agent rule votes abuse, weight 2);
        // a browser on one page (no vote: abstains, a 0.1 negative by default).
        append(&files.log, &line("4.4.4.4", T0, "/a"));
        append(
            &files.log,
            &format!(
                "5.5.5.5 - - [{T0}] \"GET / HTTP/1.1\" 200 512 \"-\" \"Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0\"\n"
            ),
        );
        let o = DataOptions::default();
        let mut tail = LogTail::new(files.clone(), &o, &o.pipeline().unwrap());
        let now = 1_709_546_400_000 + 86_400_000;
        assert!(
            tail.poll(now).unwrap().rows.is_empty(),
            "sessions still open"
        );
        let got = tail.poll(now).unwrap();
        assert_eq!(got.rows.len(), 2, "{:?}", tail.stats());
        let curl = got.rows.iter().find(|r| r.bot).unwrap();
        assert_eq!(
            (curl.weight, curl.key),
            (1.0, fnv1a(key("4.4.4.4").as_bytes()))
        );
        let browser = got.rows.iter().find(|r| !r.bot).unwrap();
        assert!((browser.weight - 0.1).abs() < 1e-6, "{}", browser.weight);
        let st = tail.stats();
        assert_eq!((st.silver_abuse, st.abstained, st.labelled), (1, 1, 0));
        // Ground truth arrives later: the curl session was a good bot after all.
        append(
            files.labels.as_ref().unwrap(),
            &format!(
                "{{\"session\":\"{}\",\"class\":\"good_bot\"}}\n",
                key("4.4.4.4")
            ),
        );
        let got = tail.poll(now).unwrap();
        assert!(got.rows.is_empty());
        assert_eq!(
            got.relabels,
            vec![(fnv1a(key("4.4.4.4").as_bytes()), false)]
        );
        assert_eq!(tail.stats().relabelled, 1);
    }

    #[test]
    fn with_self_training_abstained_sessions_are_kept_unlabelled_and_ground_truth_replaces_them() {
        let dir = tempfile::tempdir().unwrap();
        let files = LabelledLog {
            log: dir.path().join("s.log"),
            labels: Some(dir.path().join("s.labels.jsonl")),
        };
        append(&files.log, &line("4.4.4.4", T0, "/a"));
        append(
            &files.log,
            &format!(
                "5.5.5.5 - - [{T0}] \"GET / HTTP/1.1\" 200 512 \"-\" \"Mozilla/5.0 (X11; Linux x86_64; rv:140.0) Gecko/20100101 Firefox/140.0\"\n"
            ),
        );
        let mut o = DataOptions::default();
        o.labels.abstained_weight = 0.0;
        o.labels.self_training.enabled = true;
        let mut tail = LogTail::new(files.clone(), &o, &o.pipeline().unwrap());
        let now = 1_709_546_400_000 + 86_400_000;
        tail.poll(now).unwrap();
        let got = tail.poll(now).unwrap();
        // Without self-training an abstained session at weight 0 waits; with
        // it, the session is kept as an unlabelled row (weight 0).
        assert_eq!(got.rows.len(), 2, "{:?}", tail.stats());
        let curl = got.rows.iter().find(|r| r.bot).unwrap();
        assert!(!curl.unlabelled);
        let browser = got.rows.iter().find(|r| !r.bot).unwrap();
        assert!(browser.unlabelled && browser.weight == 0.0, "{browser:?}");
        assert_eq!(tail.stats().abstained, 1);
        append(
            files.labels.as_ref().unwrap(),
            &format!(
                "{{\"session\":\"{}\",\"class\":\"human\"}}\n",
                ipua_key("5.5.5.5")
            ),
        );
        let got = tail.poll(now).unwrap();
        assert_eq!(got.relabels, vec![(browser.key, false)]);
    }

    #[test]
    fn ground_truth_read_first_wins_and_no_labels_file_is_fine() {
        let dir = tempfile::tempdir().unwrap();
        let files = LabelledLog {
            log: dir.path().join("d.log"),
            labels: Some(dir.path().join("d.labels.jsonl")),
        };
        append(&files.log, &line("6.6.6.6", T0, "/a"));
        append(
            files.labels.as_ref().unwrap(),
            &format!(
                "{{\"session\":\"{}\",\"class\":\"human\"}}\n",
                key("6.6.6.6")
            ),
        );
        let o = DataOptions::default();
        let mut tail = LogTail::new(files, &o, &o.pipeline().unwrap());
        let now = 1_709_546_400_000 + 86_400_000;
        tail.poll(now).unwrap();
        let got = tail.poll(now).unwrap().rows;
        // curl would be silver "abuse"; the ground truth says human, weight 1.
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].bot, got[0].weight, got[0].key), (false, 1.0, 0));
        assert_eq!(tail.stats().silver_abuse, 0);

        let logs_only = LabelledLog {
            log: dir.path().join("e.log"),
            labels: None,
        };
        append(&logs_only.log, &line("7.7.7.7", T0, "/a"));
        let mut tail = LogTail::new(logs_only, &o, &o.pipeline().unwrap());
        tail.poll(now).unwrap();
        assert_eq!(tail.poll(now).unwrap().rows.len(), 1);
        // Weak labelling off and no labels file: nothing to train on.
        let off = no_weak();
        let mut tail = LogTail::new(
            LabelledLog {
                log: dir.path().join("e.log"),
                labels: None,
            },
            &off,
            &off.pipeline().unwrap(),
        );
        tail.poll(now).unwrap();
        assert!(tail.poll(now).unwrap().rows.is_empty());
    }
}
