//! [`LogReader`]: a streaming, line-bounded reader over any [`BufRead`].
//!
//! It holds one line at a time (at most [`ReaderConfig::max_line_bytes`]; the
//! bytes of a longer line are skipped without being stored), parses it in the
//! configured syntax, and yields either a record borrowed from that line or
//! a [`MalformedLine`] with the 1-based line number, the client (when the
//! line got that far) and the reason. Malformed lines never stop the stream;
//! only I/O errors do. They are counted by reason and by client (bounded).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::Path;
use std::sync::Arc;

use super::client::ClientIpPolicy;
use super::format::{FormatError, LineFormat};
use super::json::JsonFields;
use super::{LogFormat, LogRecord, MalformedReason, clf, json, json_map};

/// Reader settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReaderConfig {
    /// Line syntax (default [`LogFormat::Auto`]: JSON for lines starting
    /// with `{`, otherwise the CLF presets; a configured `line_format`
    /// replaces the presets).
    pub format: LogFormat,
    /// A configured `log_format` (nginx or Apache syntax, or a preset).
    pub line_format: Option<Arc<LineFormat>>,
    /// Field names of JSON lines (default: the detector's names).
    pub json_fields: Arc<JsonFields>,
    /// Trusted proxies and the header that names the client behind them.
    pub client_ip: Arc<ClientIpPolicy>,
    /// Longest accepted line in bytes, without its newline (default 32 KiB;
    /// nginx's default header buffers cap a request line at 8 KiB).
    pub max_line_bytes: usize,
}

impl Default for ReaderConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Auto,
            line_format: None,
            json_fields: Arc::new(JsonFields::default()),
            client_ip: Arc::new(ClientIpPolicy::default()),
            max_line_bytes: 32 * 1024,
        }
    }
}

impl ReaderConfig {
    /// Default settings with the given format.
    pub fn with_format(format: LogFormat) -> Self {
        Self {
            format,
            ..Self::default()
        }
    }

    /// Settings from a `log_format` value: `auto`, `json`, `clf`, a preset
    /// (`combined`, `main`, `common`, `vhost_combined`) or a format string
    /// in nginx or Apache syntax.
    pub fn from_log_format(spec: &str) -> Result<Self, FormatError> {
        match spec {
            "auto" => Ok(Self::with_format(LogFormat::Auto)),
            "json" | "jsonl" => Ok(Self::with_format(LogFormat::Json)),
            "clf" => Ok(Self::with_format(LogFormat::Clf)),
            other => Ok(Self {
                format: LogFormat::Clf,
                line_format: Some(Arc::new(LineFormat::compile(other)?)),
                ..Self::default()
            }),
        }
    }
}

/// A rejected line: where, whose and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct MalformedLine {
    /// 1-based line number in the input.
    pub line: u64,
    /// The client key, when the line was read that far.
    pub client: Option<String>,
    /// Why it was rejected.
    pub reason: MalformedReason,
}

/// What one non-blank line turned into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineEvent<'a> {
    /// A parsed request, borrowed from the reader's line buffer.
    Record(LogRecord<'a>),
    /// A line that could not be parsed.
    Malformed(MalformedLine),
}

/// Counters of everything read so far.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReaderStats {
    /// Lines read, including blank and malformed ones.
    pub lines: u64,
    /// Lines parsed into records.
    pub records: u64,
    /// Empty or whitespace-only lines (skipped silently).
    pub blank: u64,
    /// Malformed lines.
    pub malformed: u64,
    /// Malformed lines by [`MalformedReason::kind`].
    pub malformed_by_kind: BTreeMap<String, u64>,
    /// Malformed lines by client key (`-` when the line had no readable
    /// client); at most [`MAX_CLIENT_COUNTERS`] keys, later clients count
    /// under `(other)`.
    pub malformed_by_client: BTreeMap<String, u64>,
}

/// Most distinct clients [`ReaderStats::malformed_by_client`] keeps.
pub const MAX_CLIENT_COUNTERS: usize = 10_000;

/// Streaming access-log reader. See the [module docs](self).
#[derive(Debug)]
pub struct LogReader<R> {
    inner: R,
    config: ReaderConfig,
    buf: Vec<u8>,
    line_no: u64,
    stats: ReaderStats,
    /// The preset that read the previous CLF line.
    preset: usize,
}

impl LogReader<BufReader<File>> {
    /// Opens a file for streaming.
    pub fn open(path: impl AsRef<Path>, config: ReaderConfig) -> io::Result<Self> {
        Ok(Self::new(
            BufReader::with_capacity(256 * 1024, File::open(path)?),
            config,
        ))
    }
}

fn note_malformed(
    stats: &mut ReaderStats,
    line: u64,
    reason: MalformedReason,
    client: Option<Cow<'_, str>>,
) -> MalformedLine {
    stats.malformed += 1;
    *stats.malformed_by_kind.entry(reason.kind()).or_insert(0) += 1;
    let key = client.as_deref().unwrap_or("-");
    if let Some(n) = stats.malformed_by_client.get_mut(key) {
        *n += 1;
    } else if stats.malformed_by_client.len() < MAX_CLIENT_COUNTERS {
        stats.malformed_by_client.insert(key.to_string(), 1);
    } else {
        *stats
            .malformed_by_client
            .entry("(other)".to_string())
            .or_insert(0) += 1;
    }
    MalformedLine {
        line,
        client: client.map(Cow::into_owned),
        reason,
    }
}

enum RawLine {
    Eof,
    Line,
    TooLong(usize),
}

impl<R: BufRead> LogReader<R> {
    /// Wraps a buffered reader.
    pub fn new(inner: R, config: ReaderConfig) -> Self {
        Self {
            inner,
            config,
            buf: Vec::with_capacity(1024),
            line_no: 0,
            stats: ReaderStats::default(),
            preset: 0,
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> &ReaderStats {
        &self.stats
    }

    /// Number of the last line read (1-based; 0 before the first).
    pub fn line_number(&self) -> u64 {
        self.line_no
    }

    /// Reads the next line into `buf` (without `\n` / `\r\n`), keeping at most
    /// `max_line_bytes`.
    fn read_raw_line(&mut self) -> io::Result<RawLine> {
        self.buf.clear();
        let max = self.config.max_line_bytes;
        let mut total = 0usize;
        let mut too_long = false;
        let mut saw_any = false;
        loop {
            let avail = match self.inner.fill_buf() {
                Ok(a) => a,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if avail.is_empty() {
                if !saw_any {
                    return Ok(RawLine::Eof);
                }
                break;
            }
            saw_any = true;
            let (chunk, consumed, done) = match memchr::memchr(b'\n', avail) {
                Some(i) => (&avail[..i], i + 1, true),
                None => (avail, avail.len(), false),
            };
            total = total.saturating_add(chunk.len());
            if !too_long {
                if total > max {
                    too_long = true;
                    self.buf.clear();
                } else {
                    self.buf.extend_from_slice(chunk);
                }
            }
            self.inner.consume(consumed);
            if done {
                break;
            }
        }
        if too_long {
            return Ok(RawLine::TooLong(total));
        }
        if self.buf.last() == Some(&b'\r') {
            self.buf.pop();
        }
        Ok(RawLine::Line)
    }

    /// The next record or malformed line; `Ok(None)` at end of input. Blank
    /// lines are skipped.
    pub fn next_event(&mut self) -> io::Result<Option<LineEvent<'_>>> {
        loop {
            let raw = self.read_raw_line()?;
            match raw {
                RawLine::Eof => return Ok(None),
                RawLine::TooLong(len) => {
                    self.line_no += 1;
                    self.stats.lines += 1;
                    let limit = self.config.max_line_bytes;
                    let reason = MalformedReason::TooLong { limit, len };
                    let m = note_malformed(&mut self.stats, self.line_no, reason, None);
                    return Ok(Some(LineEvent::Malformed(m)));
                }
                RawLine::Line => {
                    self.line_no += 1;
                    self.stats.lines += 1;
                    if self.buf.iter().all(u8::is_ascii_whitespace) {
                        self.stats.blank += 1;
                        continue;
                    }
                    break;
                }
            }
        }
        let line = self.line_no;
        let text = match std::str::from_utf8(&self.buf) {
            Ok(t) => t,
            Err(e) => {
                let reason = MalformedReason::InvalidUtf8(e.valid_up_to());
                let m = note_malformed(&mut self.stats, line, reason, None);
                return Ok(Some(LineEvent::Malformed(m)));
            }
        };
        let format = match self.config.format {
            LogFormat::Auto if text.trim_start().starts_with('{') => LogFormat::Json,
            LogFormat::Auto => LogFormat::Clf,
            f => f,
        };
        let policy = &*self.config.client_ip;
        let parsed = match (format, &self.config.line_format) {
            (LogFormat::Json, _) if self.config.json_fields.is_default() => {
                json::parse_line_with(text, policy)
            }
            (LogFormat::Json, _) => {
                json_map::parse_line_mapped(text, &self.config.json_fields, policy)
            }
            (_, Some(f)) => f.parse(text, policy),
            _ => match clf::parse_with_presets(text, policy, self.preset) {
                Ok((rec, i)) => {
                    self.preset = i;
                    Ok(rec)
                }
                Err(e) => Err(e),
            },
        };
        match parsed {
            Ok(rec) => {
                self.stats.records += 1;
                Ok(Some(LineEvent::Record(rec)))
            }
            Err((reason, client)) => Ok(Some(LineEvent::Malformed(note_malformed(
                &mut self.stats,
                line,
                reason,
                client,
            )))),
        }
    }

    /// Reads to the end, calling `on_record` for each record and `on_malformed`
    /// for each malformed line. Returns the final counters.
    pub fn for_each(
        mut self,
        mut on_record: impl FnMut(&LogRecord<'_>),
        mut on_malformed: impl FnMut(&MalformedLine),
    ) -> io::Result<ReaderStats> {
        while let Some(ev) = self.next_event()? {
            match ev {
                LineEvent::Record(r) => on_record(&r),
                LineEvent::Malformed(m) => on_malformed(&m),
            }
        }
        Ok(self.stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    const GOOD: &str =
        r#"192.0.2.1 - - [04/Mar/2024:09:15:02 +0000] "GET / HTTP/1.1" 200 5 "-" "curl/8.4.0""#;
    const GOOD_JSON: &str = r#"{"ts":"2024-03-04T09:15:03Z","ip":"192.0.2.1","method":"GET","path":"/a","status":200,"bytes":1,"referer":"-","ua":"curl/8.4.0"}"#;

    fn collect(
        input: Vec<u8>,
        config: ReaderConfig,
    ) -> (Vec<LogRecord<'static>>, Vec<MalformedLine>, ReaderStats) {
        let mut recs = Vec::new();
        let mut bad = Vec::new();
        let stats = LogReader::new(Cursor::new(input), config)
            .for_each(
                |r| recs.push(r.clone().into_owned()),
                |m| bad.push(m.clone()),
            )
            .unwrap();
        (recs, bad, stats)
    }

    #[test]
    fn hostile_stream_never_stops() {
        let mut input = Vec::new();
        input.extend_from_slice(GOOD.as_bytes());
        input.extend_from_slice(b"\r\n\n   \n");
        input.extend_from_slice(&[0xff, 0xfe, b'x', b'\n']);
        input.extend_from_slice(&vec![b'a'; 100_000]);
        input.push(b'\n');
        input.extend_from_slice(b"1.2.3.4 - - [10/Oct/2000:13:55:36 -0700] \"GET / HTTP/1.0\n");
        input.extend_from_slice(GOOD_JSON.as_bytes());
        input.push(b'\n');
        input.extend_from_slice(b"{\"ts\":\n");
        input.extend_from_slice(GOOD.as_bytes()); // no final newline
        let (recs, bad, stats) = collect(input, ReaderConfig::default());
        assert_eq!(recs.len(), 3);
        assert_eq!(recs[1].path, "/a");
        let lines: Vec<u64> = bad.iter().map(|m| m.line).collect();
        assert_eq!(lines, vec![4, 5, 6, 8]);
        assert_eq!(bad[0].reason, MalformedReason::InvalidUtf8(0));
        assert_eq!(
            bad[1].reason,
            MalformedReason::TooLong {
                limit: 32 * 1024,
                len: 100_000
            }
        );
        assert_eq!(bad[2].reason.kind(), "unterminated:request");
        assert_eq!(bad[3].reason.kind(), "json");
        assert_eq!(stats.lines, 9);
        assert_eq!(stats.blank, 2);
        assert_eq!(stats.records, 3);
        assert_eq!(stats.malformed, 4);
        assert_eq!(stats.malformed_by_kind.get("too_long"), Some(&1));
        assert!(bad[1].to_string().starts_with("line 5: line longer than"));
    }

    #[test]
    fn explicit_format_rejects_the_other() {
        let input = format!("{GOOD}\n{GOOD_JSON}\n").into_bytes();
        let (recs, bad, _) = collect(input.clone(), ReaderConfig::with_format(LogFormat::Clf));
        assert_eq!((recs.len(), bad.len(), bad[0].line), (1, 1, 2));
        let (recs, bad, _) = collect(input, ReaderConfig::with_format(LogFormat::Json));
        assert_eq!((recs.len(), bad.len(), bad[0].line), (1, 1, 1));
    }

    #[test]
    fn tiny_buffers_and_exact_limits() {
        let line = GOOD.as_bytes();
        let mut input = line.to_vec();
        input.push(b'\n');
        input.extend_from_slice(line);
        input.push(b'x');
        input.push(b'\n');
        let config = ReaderConfig {
            format: LogFormat::Clf,
            max_line_bytes: line.len(),
            ..ReaderConfig::default()
        };
        let mut reader = LogReader::new(BufReader::with_capacity(7, Cursor::new(input)), config);
        assert!(matches!(
            reader.next_event().unwrap(),
            Some(LineEvent::Record(_))
        ));
        match reader.next_event().unwrap() {
            Some(LineEvent::Malformed(m)) => assert_eq!(
                m.reason,
                MalformedReason::TooLong {
                    limit: line.len(),
                    len: line.len() + 1
                }
            ),
            other => panic!("{other:?}"),
        }
        assert!(reader.next_event().unwrap().is_none());
    }
}
