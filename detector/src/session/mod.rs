//! Sessionizing: grouping requests into visits, incrementally and in bounded
//! memory.
//!
//! A request belongs to the session of its `session_id` when it carries one,
//! otherwise to the session of its (client IP, user agent) pair. A session
//! ends when its next request would come more than
//! [`SessionConfig::idle_timeout_ms`] (30 minutes) after its last one, when it
//! reaches [`SessionConfig::max_requests_per_session`], when more than
//! [`SessionConfig::max_open_sessions`] are open (the least recently queued is
//! closed early), or at [`Sessionizer::finish`]. Idle sessions are flushed as
//! the stream's clock (the latest timestamp seen, or the time a host passes
//! to [`Sessionizer::flush_idle`]) moves past their timeout, so memory holds
//! only sessions active within the last timeout window.
//!
//! Each session is identified by a [`SessionKey`]: its identity plus the
//! timestamp of its first request. The synthetic generator writes the same key
//! into its labels file, which makes the join between logs and labels exact.
//!
//! Every request also goes into the cross-session [`Windows`], and when a
//! session closes its [`SessionContext`] is read from them: what its client,
//! prefix, user agent, accounts and AS did in the hour before it ended, and
//! whether it is a verified crawler ([`crate::network`]).
//!
//! A sessionizer built [`with_evidence`](Sessionizer::with_evidence) also
//! counts the *shapes* of each session's request targets (query values
//! replaced by typed placeholders, [`crate::shape`]) in
//! [`Session::shapes`], for [`crate::evidence`]; features never read them.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use crate::evidence::ShapeTally;
use crate::logs::{Action, LogRecord, Method, Outcome};
use crate::network::{CrawlerCheck, Enrichment, WindowConfig, WindowCounts, WindowEvent, Windows};
use crate::paths::{self, PathInfo};

/// Most distinct accounts remembered per session.
pub const MAX_SESSION_ACCOUNTS: usize = 16;

/// Sessionizer limits.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionConfig {
    /// Idle gap that ends a session, ms (default 30 minutes).
    pub idle_timeout_ms: i64,
    /// Most sessions open at once (default 100 000); beyond it the oldest
    /// queued session is closed early ([`CloseReason::Evicted`]).
    pub max_open_sessions: usize,
    /// Most requests kept per session (default 10 000); the next request
    /// starts a new session ([`CloseReason::RequestCap`]).
    pub max_requests_per_session: usize,
    /// Cross-session windows (their `lag_ms` is set to the idle timeout).
    pub windows: WindowConfig,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            idle_timeout_ms: 30 * 60 * 1000,
            max_open_sessions: 100_000,
            max_requests_per_session: 10_000,
            windows: WindowConfig::default(),
        }
    }
}

/// What a session is keyed by.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SessionIdentity {
    /// The application's session id.
    SessionId(String),
    /// Client IP and user agent.
    IpUa {
        /// Client IP.
        ip: String,
        /// User agent (may be empty).
        user_agent: String,
    },
}

/// Identity of one session: who, and when it started.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionKey {
    /// Timestamp of the session's first request, Unix ms.
    pub start_ms: i64,
    /// Session id or (IP, user agent).
    pub identity: SessionIdentity,
}

impl fmt::Display for SessionKey {
    /// `sid:<start_ms>:<session_id>` or `ipua:<start_ms>:<ip>:<fnv1a(ua) as 16 hex>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.identity {
            SessionIdentity::SessionId(id) => write!(f, "sid:{}:{id}", self.start_ms),
            SessionIdentity::IpUa { ip, user_agent } => write!(
                f,
                "ipua:{}:{ip}:{:016x}",
                self.start_ms,
                paths::fnv1a(user_agent.as_bytes())
            ),
        }
    }
}

/// Why a session was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    /// No request within the idle timeout.
    Idle,
    /// The per-session request cap was reached.
    RequestCap,
    /// Closed early because too many sessions were open.
    Evicted,
    /// End of input ([`Sessionizer::finish`]).
    EndOfInput,
}

/// One request as the features see it (no strings kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// Unix ms.
    pub ts_ms: i64,
    /// UTC offset of the timestamp, minutes.
    pub utc_offset_min: i16,
    /// Method.
    pub method: Method,
    /// HTTP status.
    pub status: u16,
    /// Response bytes.
    pub bytes: u64,
    /// Path kind, hashes and depth.
    pub path: PathInfo,
    /// Hash of the referer's path; `None` when there was no referer.
    pub referer_path: Option<u64>,
    /// Outcome reported by the application, if any.
    pub outcome: Option<Outcome>,
}

impl Request {
    /// Extracts the request's facts from a log record.
    pub fn from_record(r: &LogRecord<'_>) -> Self {
        Self {
            ts_ms: r.ts_ms,
            utc_offset_min: r.utc_offset_min,
            method: r.method,
            status: r.status,
            bytes: r.bytes,
            path: paths::classify(r.method, &r.path),
            referer_path: paths::referer_path_hash(&r.referer),
            outcome: r.outcome,
        }
    }
}

/// What the cross-session windows and the tenant's network files say about
/// a session, read when it closed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SessionContext {
    /// Window counts over the hour before the session's end.
    pub counts: WindowCounts,
    /// Verified-crawler verdict.
    pub crawler: CrawlerCheck,
    /// Crawler ranges were supplied.
    pub crawler_ranges_loaded: bool,
}

impl Default for SessionContext {
    fn default() -> Self {
        Self {
            counts: WindowCounts::default(),
            crawler: CrawlerCheck::Unknown,
            crawler_ranges_loaded: false,
        }
    }
}

/// A closed session.
#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    /// Identity and start.
    pub key: SessionKey,
    /// Client key of the first request (address, or host name).
    pub ip: String,
    /// Client address of the first request (`None` for a host name).
    pub addr: Option<IpAddr>,
    /// Autonomous system (logged, or from the tenant's database).
    pub asn: Option<u32>,
    /// Hashes of the distinct accounts seen (at most [`MAX_SESSION_ACCOUNTS`]).
    pub accounts: Vec<u64>,
    /// Cross-session context, read at close.
    pub context: SessionContext,
    /// User agent of the first request.
    pub user_agent: String,
    /// Requests in arrival order.
    pub requests: Vec<Request>,
    /// Some request carried a `session_id`.
    pub saw_session_id: bool,
    /// Some request carried a `user`.
    pub saw_user: bool,
    /// Some request carried an `outcome` field.
    pub saw_outcome: bool,
    /// An AS is known for some request (logged or from the database).
    pub saw_asn: bool,
    /// Why it was closed.
    pub close_reason: CloseReason,
    /// Shapes of its request targets, when the sessionizer keeps evidence.
    pub shapes: Option<ShapeTally>,
}

impl Session {
    /// Timestamp of the last request (max over requests), Unix ms.
    pub fn end_ms(&self) -> i64 {
        self.requests
            .iter()
            .map(|r| r.ts_ms)
            .max()
            .unwrap_or(self.key.start_ms)
    }
}

#[derive(Debug)]
struct Open {
    session: Session,
    map_key: Box<str>,
    last_seen: i64,
    generation: u64,
}

/// Incremental sessionizer. Feed records with [`push`](Self::push), take
/// closed sessions with [`pop_closed`](Self::pop_closed), call
/// [`finish`](Self::finish) at end of input.
#[derive(Debug)]
pub struct Sessionizer {
    config: SessionConfig,
    index: HashMap<Box<str>, usize>,
    slots: Vec<Option<Open>>,
    free: Vec<usize>,
    /// (slot, generation, last_seen when queued); one live entry per open session.
    queue: VecDeque<(usize, u64, i64)>,
    next_generation: u64,
    now_ms: i64,
    key_buf: String,
    closed: VecDeque<Session>,
    open_count: usize,
    windows: Windows,
    enrichment: Arc<Enrichment>,
    evidence: bool,
}

fn login_flags(r: &Request) -> (bool, bool) {
    let login = match r.outcome.and_then(|o| o.action) {
        Some(a) => a == Action::Login,
        None => r.path.login,
    };
    let failed = login
        && match r.outcome {
            Some(o) => !o.success,
            None => r.status >= 400,
        };
    (login, failed)
}

impl Sessionizer {
    /// A sessionizer with the given limits (values below 1 are raised to 1)
    /// and no network files.
    pub fn new(config: SessionConfig) -> Self {
        Self::with_enrichment(config, Arc::new(Enrichment::default()))
    }

    /// A sessionizer that looks up ASes and crawler ranges in `enrichment`.
    pub fn with_enrichment(mut config: SessionConfig, enrichment: Arc<Enrichment>) -> Self {
        config.idle_timeout_ms = config.idle_timeout_ms.max(1);
        config.max_open_sessions = config.max_open_sessions.max(1);
        config.max_requests_per_session = config.max_requests_per_session.max(1);
        config.windows.lag_ms = config.idle_timeout_ms;
        let windows = Windows::new(config.windows.clone());
        Self {
            windows,
            enrichment,
            config,
            index: HashMap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            queue: VecDeque::new(),
            next_generation: 0,
            now_ms: i64::MIN,
            key_buf: String::with_capacity(256),
            closed: VecDeque::new(),
            open_count: 0,
            evidence: false,
        }
    }

    /// Also keep the shapes of each session's request targets
    /// ([`Session::shapes`], bounded per session by
    /// [`crate::evidence::MAX_SHAPES`]) for evidence. Off by default:
    /// training and feature extraction do not need them.
    pub fn with_evidence(mut self, on: bool) -> Self {
        self.evidence = on;
        self
    }

    /// Limits in force.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// Sessions currently open.
    pub fn open_sessions(&self) -> usize {
        self.open_count
    }

    /// Closed sessions waiting to be taken.
    pub fn closed_len(&self) -> usize {
        self.closed.len()
    }

    /// Takes the oldest closed session.
    pub fn pop_closed(&mut self) -> Option<Session> {
        self.closed.pop_front()
    }

    /// Takes every closed session.
    pub fn drain_closed(&mut self) -> impl Iterator<Item = Session> + '_ {
        self.closed.drain(..)
    }

    /// The cross-session windows.
    pub fn windows(&self) -> &Windows {
        &self.windows
    }

    /// Counts a malformed line against its client (the stream clock's time).
    pub fn note_malformed(&mut self, client: Option<&str>) {
        if let Some(c) = client {
            self.windows.note_malformed(c);
        }
    }

    /// Adds one request; may close sessions (idle, capped or evicted).
    pub fn push(&mut self, rec: &LogRecord<'_>) {
        let ts = rec.ts_ms;
        self.now_ms = self.now_ms.max(ts);
        let request = Request::from_record(rec);
        let asn = self.enrichment.asn_of(rec.asn, rec.addr);
        let (login, login_failed) = login_flags(&request);
        self.windows.push(&WindowEvent {
            ts_ms: ts,
            client: &rec.ip,
            addr: rec.addr,
            user_agent: &rec.user_agent,
            user: rec.user.as_deref(),
            asn,
            login,
            login_failed,
        });
        self.key_buf.clear();
        match &rec.session_id {
            Some(id) => {
                self.key_buf.push_str("s\u{0}");
                self.key_buf.push_str(id);
            }
            None => {
                self.key_buf.push_str("i\u{0}");
                self.key_buf.push_str(&rec.ip);
                self.key_buf.push('\u{0}');
                self.key_buf.push_str(&rec.user_agent);
            }
        }
        if let Some(&slot) = self.index.get(self.key_buf.as_str()) {
            let (expired, full) = match &self.slots[slot] {
                Some(open) => (
                    ts - open.last_seen > self.config.idle_timeout_ms,
                    open.session.requests.len() >= self.config.max_requests_per_session,
                ),
                None => (true, false),
            };
            if expired {
                self.close(slot, CloseReason::Idle);
            } else if full {
                self.close(slot, CloseReason::RequestCap);
            } else if let Some(open) = self.slots[slot].as_mut() {
                open.last_seen = open.last_seen.max(ts);
                let s = &mut open.session;
                s.requests.push(request);
                if self.evidence {
                    note_shape(s, rec, &request);
                }
                s.saw_session_id |= rec.session_id.is_some();
                s.saw_user |= rec.user.is_some();
                s.saw_outcome |= rec.outcome_present;
                s.saw_asn |= asn.is_some();
                if s.asn.is_none() {
                    s.asn = asn;
                }
                note_account(&mut s.accounts, rec.user.as_deref());
                self.expire();
                return;
            }
        }
        if self.open_count >= self.config.max_open_sessions {
            self.evict_one();
        }
        self.open_new(rec, request, asn);
        self.expire();
    }

    fn open_new(&mut self, rec: &LogRecord<'_>, request: Request, asn: Option<u32>) {
        let identity = match &rec.session_id {
            Some(id) => SessionIdentity::SessionId(id.to_string()),
            None => SessionIdentity::IpUa {
                ip: rec.ip.to_string(),
                user_agent: rec.user_agent.to_string(),
            },
        };
        let session = Session {
            key: SessionKey {
                start_ms: rec.ts_ms,
                identity,
            },
            ip: rec.ip.to_string(),
            addr: rec.addr,
            asn,
            accounts: Vec::new(),
            context: SessionContext::default(),
            user_agent: rec.user_agent.to_string(),
            requests: vec![request],
            saw_session_id: rec.session_id.is_some(),
            saw_user: rec.user.is_some(),
            saw_outcome: rec.outcome_present,
            saw_asn: asn.is_some(),
            close_reason: CloseReason::EndOfInput,
            shapes: None,
        };
        let mut session = session;
        note_account(&mut session.accounts, rec.user.as_deref());
        if self.evidence {
            note_shape(&mut session, rec, &request);
        }
        let generation = self.next_generation;
        self.next_generation += 1;
        let map_key: Box<str> = self.key_buf.as_str().into();
        let open = Open {
            session,
            map_key: map_key.clone(),
            last_seen: rec.ts_ms,
            generation,
        };
        let slot = match self.free.pop() {
            Some(s) => {
                self.slots[s] = Some(open);
                s
            }
            None => {
                self.slots.push(Some(open));
                self.slots.len() - 1
            }
        };
        self.index.insert(map_key, slot);
        self.queue.push_back((slot, generation, rec.ts_ms));
        self.open_count += 1;
    }

    fn close(&mut self, slot: usize, reason: CloseReason) {
        if let Some(open) = self.slots[slot].take() {
            self.index.remove(&open.map_key);
            self.free.push(slot);
            self.open_count -= 1;
            let mut s = open.session;
            s.close_reason = reason;
            s.context = SessionContext {
                counts: self.windows.query(
                    s.end_ms(),
                    &s.ip,
                    s.addr,
                    &s.user_agent,
                    &s.accounts,
                    s.asn,
                ),
                crawler: self.enrichment.crawlers.check(&s.user_agent, s.addr),
                crawler_ranges_loaded: !self.enrichment.crawlers.is_empty(),
            };
            self.closed.push_back(s);
        }
    }

    fn is_live(&self, slot: usize, generation: u64) -> bool {
        matches!(&self.slots[slot], Some(o) if o.generation == generation)
    }

    fn evict_one(&mut self) {
        while let Some((slot, generation, _)) = self.queue.pop_front() {
            if self.is_live(slot, generation) {
                self.close(slot, CloseReason::Evicted);
                return;
            }
        }
    }

    /// Closes queued sessions idle for longer than the timeout at `now_ms`.
    fn expire(&mut self) {
        let timeout = self.config.idle_timeout_ms;
        while let Some(&(slot, generation, queued)) = self.queue.front() {
            let last_seen = match &self.slots[slot] {
                Some(o) if o.generation == generation => o.last_seen,
                _ => {
                    self.queue.pop_front();
                    continue;
                }
            };
            if self.now_ms.saturating_sub(last_seen) > timeout {
                self.queue.pop_front();
                self.close(slot, CloseReason::Idle);
            } else if last_seen > queued {
                // Active since it was queued: re-queue at its last activity.
                self.queue.pop_front();
                self.queue.push_back((slot, generation, last_seen));
            } else {
                break;
            }
        }
    }

    /// Advances the clock to `now_ms` (e.g. wall-clock time in a live host)
    /// and closes sessions idle for longer than the timeout.
    pub fn flush_idle(&mut self, now_ms: i64) {
        self.now_ms = self.now_ms.max(now_ms);
        self.expire();
    }

    /// Closes every open session (end of input), oldest queued first.
    pub fn finish(&mut self) {
        while let Some((slot, generation, _)) = self.queue.pop_front() {
            if self.is_live(slot, generation) {
                self.close(slot, CloseReason::EndOfInput);
            }
        }
    }
}

fn note_shape(s: &mut Session, rec: &LogRecord<'_>, request: &Request) {
    let shaped = crate::shape::shape_target(&rec.path, &rec.query);
    let mut target = paths::fnv1a(rec.path.as_bytes());
    for b in std::iter::once(b'?').chain(rec.query.bytes()) {
        target ^= u64::from(b);
        target = target.wrapping_mul(0x0100_0000_01b3);
    }
    s.shapes.get_or_insert_with(ShapeTally::default).add(
        rec.method,
        &shaped,
        request.path.hash,
        target,
        rec.status,
    );
}

fn note_account(accounts: &mut Vec<u64>, user: Option<&str>) {
    if let Some(u) = user {
        let h = paths::fnv1a(u.as_bytes());
        if accounts.len() < MAX_SESSION_ACCOUNTS && !accounts.contains(&h) {
            accounts.push(h);
        }
    }
}

/// Reads a whole log: every record goes through `sessionizer`, every closed
/// session (including those open at the end) to `on_session`, every
/// malformed line to `on_malformed`. Returns the reader's counters.
pub fn sessionize<R: std::io::BufRead>(
    reader: &mut crate::logs::LogReader<R>,
    sessionizer: &mut Sessionizer,
    mut on_session: impl FnMut(Session),
    mut on_malformed: impl FnMut(&crate::logs::MalformedLine),
) -> std::io::Result<crate::logs::ReaderStats> {
    use crate::logs::LineEvent;
    while let Some(ev) = reader.next_event()? {
        match ev {
            LineEvent::Record(r) => sessionizer.push(&r),
            LineEvent::Malformed(m) => {
                sessionizer.note_malformed(m.client.as_deref());
                on_malformed(&m)
            }
        }
        while let Some(s) = sessionizer.pop_closed() {
            on_session(s);
        }
    }
    sessionizer.finish();
    for s in sessionizer.drain_closed() {
        on_session(s);
    }
    Ok(reader.stats().clone())
}

impl Default for Sessionizer {
    fn default() -> Self {
        Self::new(SessionConfig::default())
    }
}

#[cfg(test)]
mod tests;
