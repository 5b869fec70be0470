//! `fedsec-client score`: score every session of a log with a model file and
//! print the most abusive ones with their top reasons in plain words, then
//! the good bots apart: verified crawlers (address in the crawler's
//! published ranges) and bots that name themselves and score below the
//! abuse threshold. A verified crawler is never in the abuse list; a bot
//! that claims a crawler from an address outside its ranges is.
//!
//! Memory stays bounded: sessions are scored in batches as the sessionizer
//! closes them, and only the current top N of each list are kept.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::path::PathBuf;

use clap::Args;
use fedsec_detector::explain::{Reason, baseline_for, explain, top_reasons};
use fedsec_detector::features::{self, NUM_FEATURES, RawFeatures, idx};
use fedsec_detector::logs::LogReader;
use fedsec_detector::model::{ModelFile, Scorer};
use fedsec_detector::session::{Session, SessionConfig, Sessionizer, sessionize};
use serde::Serialize;

use super::{CliError, LogArgs, MalformedReporter, open_log};

/// Arguments of `score`.
#[derive(Debug, Args)]
pub(crate) struct ScoreArgs {
    /// Model file (safetensors written by fedsec, see `fedsec_detector::model::ModelFile`).
    #[arg(long)]
    model: PathBuf,
    /// Access log to read (`-` for standard input).
    #[arg(long)]
    logs: PathBuf,
    /// How many of the most abusive sessions (and of the good bots) to print.
    #[arg(long, default_value_t = 10)]
    top: usize,
    #[command(flatten)]
    log: LogArgs,
    /// Reasons per session.
    #[arg(long, default_value_t = 3)]
    reasons: usize,
    /// Print one JSON object per session instead of text.
    #[arg(long)]
    json: bool,
    /// Malformed lines reported individually before only counting.
    #[arg(long, default_value_t = 20)]
    report_malformed: u64,
}

/// Why a session is listed as a good bot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum GoodBot {
    /// Its user agent names a crawler and its address is in that crawler's ranges.
    VerifiedCrawler,
    /// It names itself a bot (not a crawler it fails to be) and scores below 0.5.
    DeclaredBot,
}

impl GoodBot {
    fn of(raw: &RawFeatures, p: f32) -> Option<Self> {
        let r = &raw.0;
        if r[idx::CRAWLER_VERIFIED] == 1.0 {
            Some(Self::VerifiedCrawler)
        } else if r[idx::UA_KNOWN_BOT] == 1.0 && r[idx::CRAWLER_SPOOFED] != 1.0 && p < 0.5 {
            Some(Self::DeclaredBot)
        } else {
            None
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::VerifiedCrawler => "verified crawler",
            Self::DeclaredBot => "declared bot",
        }
    }
}

/// A good bot kept for the report (the busiest first).
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct GoodEntry {
    requests: usize,
    seq: Reverse<u64>,
    key: String,
    ip: String,
    user_agent: String,
    kind_verified: bool,
    probability_bits: u32,
}

/// A session kept for the final report.
struct Candidate {
    probability: f32,
    /// Arrival order, to break ties deterministically (earlier wins).
    seq: u64,
    key: String,
    ip: String,
    user_agent: String,
    requests: usize,
    raw: RawFeatures,
    values: [f32; NUM_FEATURES],
}

impl Candidate {
    fn rank_key(&self) -> (f32, Reverse<u64>) {
        (self.probability, Reverse(self.seq))
    }
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Candidate {}
impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> Ordering {
        let (a, b) = (self.rank_key(), other.rank_key());
        a.0.total_cmp(&b.0).then(a.1.cmp(&b.1))
    }
}

/// Scores closed sessions in batches and keeps the top N.
struct Ranker<'a> {
    scorer: &'a Scorer,
    top: usize,
    pending: Vec<(Session, features::SessionFeatures)>,
    heap: BinaryHeap<Reverse<Candidate>>,
    good: BinaryHeap<Reverse<GoodEntry>>,
    seq: u64,
    scored: u64,
    flagged: u64,
    verified_crawlers: u64,
    declared_bots: u64,
    error: Option<String>,
}

impl Ranker<'_> {
    const BATCH: usize = 2048;

    fn push(&mut self, s: Session) {
        let f = features::extract(&s);
        self.pending.push((s, f));
        if self.pending.len() >= Self::BATCH {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.pending.is_empty() || self.error.is_some() {
            self.pending.clear();
            return;
        }
        let rows: Vec<f32> = self.pending.iter().flat_map(|(_, f)| f.values).collect();
        let probs = match self.scorer.probabilities(&rows) {
            Ok(p) => p,
            Err(e) => {
                self.error = Some(e.to_string());
                return;
            }
        };
        for ((s, f), p) in self.pending.drain(..).zip(probs) {
            self.scored += 1;
            let seq = self.seq;
            self.seq += 1;
            if let Some(kind) = GoodBot::of(&f.raw, p) {
                match kind {
                    GoodBot::VerifiedCrawler => self.verified_crawlers += 1,
                    GoodBot::DeclaredBot => self.declared_bots += 1,
                }
                if self.top > 0 {
                    self.good.push(Reverse(GoodEntry {
                        requests: s.requests.len(),
                        seq: Reverse(seq),
                        key: s.key.to_string(),
                        ip: s.ip,
                        user_agent: s.user_agent,
                        kind_verified: kind == GoodBot::VerifiedCrawler,
                        probability_bits: p.to_bits(),
                    }));
                    if self.good.len() > self.top {
                        self.good.pop();
                    }
                }
                continue;
            }
            if p >= 0.5 {
                self.flagged += 1;
            }
            let better = match self.heap.peek() {
                _ if self.heap.len() < self.top => true,
                Some(Reverse(worst)) => (p, Reverse(seq)) > worst.rank_key(),
                None => false,
            };
            if better && self.top > 0 {
                self.heap.push(Reverse(Candidate {
                    probability: p,
                    seq,
                    key: s.key.to_string(),
                    ip: s.ip,
                    user_agent: s.user_agent,
                    requests: s.requests.len(),
                    raw: f.raw,
                    values: f.values,
                }));
                if self.heap.len() > self.top {
                    self.heap.pop();
                }
            }
        }
    }
}

#[derive(Serialize)]
struct GoodReport<'a> {
    list: &'static str,
    good_bot: GoodBot,
    probability: f32,
    session: &'a str,
    ip: &'a str,
    user_agent: &'a str,
    requests: usize,
}

#[derive(Serialize)]
struct Report<'a> {
    list: &'static str,
    rank: usize,
    probability: f32,
    session: &'a str,
    ip: &'a str,
    user_agent: &'a str,
    requests: usize,
    reasons: &'a [Reason],
}

/// Runs `score`.
pub(crate) fn run(args: ScoreArgs) -> Result<(), CliError> {
    let model = ModelFile::load(&args.model)?;
    if model.spec.input_dim as usize != NUM_FEATURES {
        return Err(format!(
            "--model {}: the model takes {} features, this build computes {NUM_FEATURES}",
            args.model.display(),
            model.spec.input_dim
        )
        .into());
    }
    let scorer = Scorer::new(&model.spec, &model.weights)?;
    let pipeline = args.log.pipeline()?;
    let input = open_log(&args.logs)?;
    let mut reader = LogReader::new(input, pipeline.reader);
    let mut sessionizer =
        Sessionizer::with_enrichment(SessionConfig::default(), pipeline.enrichment);
    let mut malformed = MalformedReporter::new(args.report_malformed);
    let mut ranker = Ranker {
        scorer: &scorer,
        top: args.top,
        pending: Vec::new(),
        heap: BinaryHeap::new(),
        good: BinaryHeap::new(),
        seq: 0,
        scored: 0,
        flagged: 0,
        verified_crawlers: 0,
        declared_bots: 0,
        error: None,
    };
    let stats = sessionize(
        &mut reader,
        &mut sessionizer,
        |s| ranker.push(s),
        |m| malformed.report(m),
    )
    .map_err(|e| format!("reading {}: {e}", args.logs.display()))?;
    ranker.flush();
    if let Some(e) = ranker.error.take() {
        return Err(format!("scoring: {e}").into());
    }
    tracing::info!(
        lines = stats.lines,
        malformed = stats.malformed,
        sessions = ranker.scored,
        abuse_at_half = ranker.flagged,
        verified_crawlers = ranker.verified_crawlers,
        declared_bots = ranker.declared_bots,
        model = %model.spec,
        "scored"
    );
    let mut best: Vec<Candidate> = ranker.heap.into_iter().map(|Reverse(c)| c).collect();
    best.sort_by(|a, b| b.cmp(a));
    let rows: Vec<f32> = best.iter().flat_map(|c| c.values).collect();
    let baselines: Vec<f32> = best.iter().flat_map(|c| baseline_for(&c.values)).collect();
    let explanations = explain(&model.spec, &model.weights, &rows, &baselines)?;
    for (rank, (c, e)) in best.iter().zip(&explanations).enumerate() {
        let reasons = top_reasons(e, &c.values, &c.raw, args.reasons);
        if args.json {
            let report = Report {
                list: "abuse",
                rank: rank + 1,
                probability: c.probability,
                session: &c.key,
                ip: &c.ip,
                user_agent: &c.user_agent,
                requests: c.requests,
                reasons: &reasons,
            };
            println!("{}", serde_json::to_string(&report)?);
        } else {
            println!(
                "#{:<3} p={:.3}  {}  ({} requests, {}, {:?})",
                rank + 1,
                c.probability,
                c.key,
                c.requests,
                c.ip,
                c.user_agent
            );
            if reasons.is_empty() {
                println!("      (no feature pushes this session above a typical visit)");
            }
            for (i, r) in reasons.iter().enumerate() {
                println!("      {}. {}", i + 1, r.text);
            }
        }
    }
    let mut good: Vec<GoodEntry> = ranker.good.into_iter().map(|Reverse(g)| g).collect();
    good.sort_by(|a, b| b.cmp(a));
    if !args.json {
        println!(
            "\nGood bots (not abuse): {} sessions of verified crawlers, {} of bots that name themselves",
            ranker.verified_crawlers, ranker.declared_bots
        );
    }
    for g in &good {
        let kind = if g.kind_verified {
            GoodBot::VerifiedCrawler
        } else {
            GoodBot::DeclaredBot
        };
        let p = f32::from_bits(g.probability_bits);
        if args.json {
            let r = GoodReport {
                list: "good_bots",
                good_bot: kind,
                probability: p,
                session: &g.key,
                ip: &g.ip,
                user_agent: &g.user_agent,
                requests: g.requests,
            };
            println!("{}", serde_json::to_string(&r)?);
        } else {
            println!(
                "  {:<16} p={p:.3}  {}  ({} requests, {}, {:?})",
                kind.label(),
                g.key,
                g.requests,
                g.ip,
                g.user_agent
            );
        }
    }
    Ok(())
}
