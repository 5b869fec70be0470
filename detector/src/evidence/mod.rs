//! Evidence an analyst can check a score against: per session, the request
//! shapes it asked for (counted as the sessionizer reads them, with query
//! values replaced by typed placeholders, see [`crate::shape`]), their
//! statuses, walks through pages, the time window; across sessions,
//! which other sessions share its address, user agent or AS
//! ([`related::RelatedIndex`]).
//!
//! Nothing here feeds the model: the feature vector and the model spec are
//! unchanged, and a sessionizer keeps shapes only when asked to
//! ([`crate::session::Sessionizer::with_evidence`]).
//!
//! Memory per session is bounded: at most [`MAX_SHAPES`] shapes (the
//! requests of further shapes are only counted), [`MAX_STATUSES`] distinct
//! statuses per shape and [`MAX_DISTINCT`] distinct targets per shape.

pub mod related;

use serde::Serialize;

use crate::logs::Method;
use crate::logs::time::format_rfc3339;
use crate::session::Session;
use crate::shape::Shaped;

/// Most distinct (method, shape) pairs kept per session.
pub const MAX_SHAPES: usize = 32;
/// Most distinct statuses counted per shape (the rest are "other").
pub const MAX_STATUSES: usize = 6;
/// Most distinct targets (exact path and query) counted per shape.
pub const MAX_DISTINCT: usize = 256;

/// A walk through a pagination parameter, in arrival order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PageWalk {
    /// First page value seen.
    pub first: u64,
    /// Last page value seen.
    pub last: u64,
    /// Smallest page value.
    pub min: u64,
    /// Largest page value.
    pub max: u64,
    /// Requests that carried a page value.
    pub valued: u64,
    /// Steps to a larger page than the previous one.
    pub forward: u64,
    /// Steps to a smaller page.
    pub back: u64,
}

impl PageWalk {
    fn start(v: u64) -> Self {
        Self {
            first: v,
            last: v,
            min: v,
            max: v,
            valued: 1,
            forward: 0,
            back: 0,
        }
    }

    fn step(&mut self, v: u64) {
        if v > self.last {
            self.forward += 1;
        } else if v < self.last {
            self.back += 1;
        }
        self.last = v;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.valued += 1;
    }

    /// A walk through pages: at least 3 valued requests spanning at least
    /// 3 page values, moving forward at least twice and at least three
    /// times as often as back.
    pub fn is_pagination(&self) -> bool {
        self.valued >= 3
            && self.max - self.min >= 2
            && self.forward >= 2
            && self.forward >= 3 * self.back
    }
}

/// Requests of one (method, shape) in a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeStats {
    /// Method.
    pub method: Method,
    /// Shape (see [`crate::shape`]).
    pub shape: Box<str>,
    key: u64,
    /// Hash of the first exact path seen with this shape (query excluded),
    /// as in [`crate::paths::PathInfo::hash`].
    pub path_hash: u64,
    /// Requests.
    pub requests: u64,
    /// (status, requests), most frequent first once finished.
    pub statuses: Vec<(u16, u64)>,
    /// Requests whose status did not fit in [`MAX_STATUSES`].
    pub other_statuses: u64,
    targets: Vec<u64>,
    /// More than [`MAX_DISTINCT`] distinct targets were seen.
    pub distinct_capped: bool,
    /// Pagination values, when the shape has a page parameter.
    pub walk: Option<PageWalk>,
}

impl ShapeStats {
    /// Distinct exact targets (path and query) seen, up to [`MAX_DISTINCT`].
    pub fn distinct(&self) -> usize {
        self.targets.len()
    }
}

/// Shapes of a session's requests, counted as they arrive.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ShapeTally {
    /// Shapes in first-seen order.
    pub shapes: Vec<ShapeStats>,
    /// Requests whose shape did not fit in [`MAX_SHAPES`].
    pub overflow_requests: u64,
}

impl ShapeTally {
    /// Counts one request: its method, shaped target, path hash (query
    /// excluded), hash of the exact target (path and query) and status.
    pub fn add(
        &mut self,
        method: Method,
        shaped: &Shaped,
        path_hash: u64,
        target_hash: u64,
        status: u16,
    ) {
        let key = crate::paths::fnv1a(shaped.shape.as_bytes()) ^ method_salt(method);
        let pos = self
            .shapes
            .iter()
            .position(|s| s.key == key && s.method == method && *s.shape == *shaped.shape);
        let s = match pos {
            Some(i) => &mut self.shapes[i],
            None if self.shapes.len() < MAX_SHAPES => {
                self.shapes.push(ShapeStats {
                    method,
                    shape: shaped.shape.as_str().into(),
                    key,
                    path_hash,
                    requests: 0,
                    statuses: Vec::new(),
                    other_statuses: 0,
                    targets: Vec::new(),
                    distinct_capped: false,
                    walk: None,
                });
                let last = self.shapes.len() - 1;
                &mut self.shapes[last]
            }
            None => {
                self.overflow_requests += 1;
                return;
            }
        };
        s.requests += 1;
        match s.statuses.iter().position(|(st, _)| *st == status) {
            Some(i) => s.statuses[i].1 += 1,
            None if s.statuses.len() < MAX_STATUSES => s.statuses.push((status, 1)),
            None => s.other_statuses += 1,
        }
        if !s.targets.contains(&target_hash) {
            if s.targets.len() < MAX_DISTINCT {
                s.targets.push(target_hash);
            } else {
                s.distinct_capped = true;
            }
        }
        if let Some(v) = shaped.page {
            match s.walk.as_mut() {
                Some(w) => w.step(v),
                None => s.walk = Some(PageWalk::start(v)),
            }
        }
    }
}

/// `2024-03-04T00:09:05Z` (milliseconds only when not zero).
fn utc(ts_ms: i64) -> String {
    let s = format_rfc3339(ts_ms, 0);
    let s = s.strip_suffix("+00:00").unwrap_or(&s);
    let s = s.strip_suffix(".000").unwrap_or(s);
    format!("{s}Z")
}

fn method_salt(m: Method) -> u64 {
    crate::paths::fnv1a(m.as_str().as_bytes()).rotate_left(17)
}

/// Requests with one status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StatusCount {
    /// HTTP status.
    pub status: u16,
    /// Requests.
    pub requests: u64,
}

/// One of a session's most requested shapes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PathEvidence {
    /// Method.
    pub method: &'static str,
    /// Shape, e.g. `/c/shoes?page=<int>`.
    pub shape: String,
    /// Requests.
    pub requests: u64,
    /// Distinct exact targets (at least this many when `distinct_capped`).
    pub distinct: usize,
    /// More targets than counted.
    pub distinct_capped: bool,
    /// Statuses, most frequent first (`other_statuses` beyond them).
    pub statuses: Vec<StatusCount>,
    /// Requests with statuses beyond those listed.
    pub other_statuses: u64,
    /// The page walk, when the requests paginate (see [`PageWalk::is_pagination`]).
    pub pagination: Option<PageWalk>,
    #[serde(skip)]
    path_hash: u64,
}

impl PathEvidence {
    /// One line: `GET /c/shoes?page=<int> ×110 (110 distinct; 200 ×108, 404 ×2; pages 1 → 110)`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.requests > 1 {
            parts.push(format!(
                "{}{} distinct",
                if self.distinct_capped { "≥ " } else { "" },
                self.distinct
            ));
        }
        let mut st: Vec<String> = self
            .statuses
            .iter()
            .map(|s| format!("{} ×{}", s.status, s.requests))
            .collect();
        if self.other_statuses > 0 {
            st.push(format!("other ×{}", self.other_statuses));
        }
        parts.push(st.join(", "));
        if let Some(w) = &self.pagination {
            parts.push(format!("pagination: pages {} → {}", w.first, w.last));
        }
        format!(
            "{} {} ×{} ({})",
            self.method,
            self.shape,
            self.requests,
            parts.join("; ")
        )
    }

    /// The pagination sentence, when this shape is a walk through pages.
    pub fn pagination_sentence(&self) -> Option<String> {
        let w = self.pagination?;
        Some(format!(
            "paginated through {} ({} requests, pages {} → {})",
            self.shape, self.requests, w.first, w.last
        ))
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct MostHit {
    path_hash: u64,
    requests: u64,
    paginating: Option<usize>,
}

/// What a session did, for an analyst to check its score against.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evidence {
    /// Requests.
    pub requests: usize,
    /// First request, RFC 3339 UTC (`2024-03-04T00:00:00Z`).
    pub start: String,
    /// Last request, RFC 3339 UTC.
    pub end: String,
    /// Seconds from the first to the last request.
    pub duration_s: f64,
    /// Statuses over the whole session, most frequent first.
    pub statuses: Vec<StatusCount>,
    /// Most requested shapes, most requests first.
    pub top_paths: Vec<PathEvidence>,
    /// Requests not in `top_paths` (other shapes, or shapes beyond [`MAX_SHAPES`]).
    pub other_requests: u64,
    /// Shapes were kept for this session (the sessionizer ran with evidence).
    pub shapes_kept: bool,
    /// Most requests to one exact path (query excluded) and, when that is
    /// a walk through pages, the shape that paginates.
    #[serde(skip)]
    most_hit: Option<MostHit>,
}

impl Evidence {
    /// The evidence of a closed session, with its `top` most requested shapes.
    pub fn of(session: &Session, top: usize) -> Self {
        let reqs = &session.requests;
        let first = reqs
            .iter()
            .map(|r| r.ts_ms)
            .min()
            .unwrap_or(session.key.start_ms);
        let last = reqs.iter().map(|r| r.ts_ms).max().unwrap_or(first);
        let mut statuses: Vec<StatusCount> = Vec::new();
        for r in reqs {
            match statuses.iter_mut().find(|s| s.status == r.status) {
                Some(s) => s.requests += 1,
                None => statuses.push(StatusCount {
                    status: r.status,
                    requests: 1,
                }),
            }
        }
        statuses.sort_by(|a, b| b.requests.cmp(&a.requests).then(a.status.cmp(&b.status)));
        let mut hashes: Vec<u64> = reqs.iter().map(|r| r.path.hash).collect();
        hashes.sort_unstable();
        let (mut best_hash, mut best_n, mut run) = (0u64, 0u64, 0u64);
        for (i, h) in hashes.iter().enumerate() {
            run = if i > 0 && hashes[i - 1] == *h {
                run + 1
            } else {
                1
            };
            if run > best_n {
                best_n = run;
                best_hash = *h;
            }
        }
        let mut shapes: Vec<&ShapeStats> = session
            .shapes
            .as_ref()
            .map(|t| t.shapes.iter().collect())
            .unwrap_or_default();
        shapes.sort_by(|a, b| b.requests.cmp(&a.requests).then(a.shape.cmp(&b.shape)));
        let top_paths: Vec<PathEvidence> = shapes
            .iter()
            .take(top)
            .map(|s| {
                let mut st: Vec<StatusCount> = s
                    .statuses
                    .iter()
                    .map(|&(status, requests)| StatusCount { status, requests })
                    .collect();
                st.sort_by(|a, b| b.requests.cmp(&a.requests).then(a.status.cmp(&b.status)));
                PathEvidence {
                    method: s.method.as_str(),
                    shape: s.shape.to_string(),
                    requests: s.requests,
                    distinct: s.distinct(),
                    distinct_capped: s.distinct_capped,
                    statuses: st,
                    other_statuses: s.other_statuses,
                    pagination: s.walk.filter(PageWalk::is_pagination),
                    path_hash: s.path_hash,
                }
            })
            .collect();
        let shown: u64 = top_paths.iter().map(|p| p.requests).sum();
        // The shape that explains the most-hit path as a walk through pages:
        // a paginating shape of that path holding at least half its hits.
        let paginating = top_paths.iter().position(|p| {
            p.path_hash == best_hash && p.pagination.is_some() && 2 * p.requests >= best_n
        });
        Self {
            requests: reqs.len(),
            start: utc(first),
            end: utc(last),
            duration_s: (last - first) as f64 / 1000.0,
            statuses,
            other_requests: (reqs.len() as u64).saturating_sub(shown),
            top_paths,
            shapes_kept: session.shapes.is_some(),
            most_hit: (best_n > 0).then_some(MostHit {
                path_hash: best_hash,
                requests: best_n,
                paginating,
            }),
        }
    }

    /// The shape whose page walk explains the session's most-hit path, if any.
    pub fn pagination_of_most_hit(&self) -> Option<&PathEvidence> {
        self.top_paths.get(self.most_hit?.paginating?)
    }

    /// The listed shape with most of the most-hit path's requests, if any.
    pub fn most_hit_shape(&self) -> Option<&PathEvidence> {
        self.most_hit_shapes().into_iter().next()
    }

    /// Every listed shape of the most-hit path (one path can be requested
    /// with several methods or query shapes), most requests first (then by
    /// method and shape).
    pub fn most_hit_shapes(&self) -> Vec<&PathEvidence> {
        let Some(m) = self.most_hit else {
            return Vec::new();
        };
        let mut out: Vec<&PathEvidence> = self
            .top_paths
            .iter()
            .filter(|p| p.path_hash == m.path_hash)
            .collect();
        out.sort_by(|a, b| {
            b.requests
                .cmp(&a.requests)
                .then(a.method.cmp(b.method))
                .then_with(|| a.shape.cmp(&b.shape))
        });
        out
    }

    /// Statuses in one line: `200 ×108, 404 ×2`.
    pub fn statuses_line(&self) -> String {
        self.statuses
            .iter()
            .map(|s| format!("{} ×{}", s.status, s.requests))
            .collect::<Vec<_>>()
            .join(", ")
    }
}
