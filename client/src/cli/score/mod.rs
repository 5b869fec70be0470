//! `fedsec-client score`: score every session of a log with a model file and
//! print the most abusive ones, ranked by bot logit, each with its reasons
//! in plain words and the evidence to check them against (top paths with
//! query shapes, statuses, time window, related sessions by address, user
//! agent and AS); then the good bots apart: verified crawlers (address in
//! the crawler's published ranges) and bots that name themselves (not
//! scanners or browser automation) and score below the abuse threshold. A
//! verified crawler is never in the abuse list;
//! a bot that claims a crawler from an address outside its ranges is.
//!
//! Reasons are attributions against this tenant's own typical humans
//! ([`fedsec_detector::explain::baseline`]): sessions of the log labelled
//! human (`--labels`), else sessions the model scores as human.
//!
//! Memory stays bounded: sessions are scored in batches as the sessionizer
//! closes them; only the current top N of each list, the baseline sample
//! and the bounded related-session index are kept. `--rank rules-first`
//! reads the log twice: a first pass keeps a bounded sample of its sessions'
//! features as the tenant's own reference ([`local`]).

mod local;
mod rank;
mod render;

use std::collections::HashSet;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use fedsec_client::data::LabelLine;
use fedsec_detector::dataset::TrafficClass;
use fedsec_detector::explain::BaselineSource;
use fedsec_detector::features::NUM_FEATURES;
use fedsec_detector::logs::LogReader;
use fedsec_detector::model::{ModelFile, Scorer};
use fedsec_detector::session::{SessionConfig, Sessionizer, sessionize};

use super::{CliError, LogArgs, MalformedReporter, open_log};
use fedsec_detector::explain::GoodBot;
use local::{RulesFirst, Thinned};
use rank::{Order, Ranker};
use render::{BaselineReport, GoodReport, Report, abuse_text, p_text, probability, safe};

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
    /// Labels of this log (JSON lines `{"session": key, "class": "human"|...}`,
    /// the training labels format): its human sessions are the baseline
    /// reasons compare with, instead of the sessions the model scores as human.
    #[arg(long)]
    labels: Option<PathBuf>,
    /// Reference sessions in the typical-human baseline.
    #[arg(long, default_value_t = fedsec_detector::explain::baseline::DEFAULT_REFERENCES)]
    baseline_sessions: usize,
    /// Rank by the model's logit plus this weight times the weak labeller's
    /// vote sum (`fedsec_detector::weak::combine`): the model and the
    /// tenant's own rules together. 0 (the default) ranks by the model alone;
    /// experiment 7 chose γ on validation (see experiments/results section 7).
    #[arg(long, default_value_t = 0.0)]
    rules_weight: f32,
    /// Take `[labels]` (rules, outcome files) for `--rules-weight` and
    /// `--rank rules-first` from this client.toml; default: the built-in rules.
    #[arg(long)]
    labels_config: Option<PathBuf>,
    /// How to order the abuse list: `model` (the logit, plus `--rules-weight`
    /// times the rules' vote sum) or `rules-first` (the rules' vote sum, the
    /// sessions it ties on ordered by how unusual they are for this log: the
    /// best ranking without any label in experiment 7). rules-first reads the
    /// log twice, so not from standard input.
    #[arg(long, value_enum, default_value_t = RankBy::Model)]
    rank: RankBy,
    /// With `--rank rules-first`: the share of the local anomaly percentile in
    /// the tie-break, the rest the model's percentile among this log's
    /// sessions (default 1: experiment 7 chose it on every seed).
    #[arg(long)]
    tie_anomaly_share: Option<f32>,
    /// Print one JSON object per session instead of text.
    #[arg(long)]
    json: bool,
    /// Malformed lines reported individually before only counting.
    #[arg(long, default_value_t = 20)]
    report_malformed: u64,
}

/// How `score` orders the abuse list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum RankBy {
    /// The model's logit (plus `--rules-weight` times the rules' vote sum).
    Model,
    /// The rules' vote sum first, ties by the local anomaly score.
    RulesFirst,
}

/// The weak labeller of `--labels-config` (`[labels]`), or the built-in rules.
fn labeller(config: Option<&Path>) -> Result<fedsec_detector::weak::Labeller, CliError> {
    let mut options = match config {
        Some(p) => fedsec_client::config::ClientConfig::load(p)?.labels,
        None => fedsec_client::LabelOptions::default(),
    };
    options.weak = true;
    Ok(options.load()?.ok_or("weak labelling is off")?.labeller)
}

/// First pass of `--rank rules-first`: a bounded sample of the log's
/// sessions' features (malformed lines are reported by the second pass).
/// The log must be a regular file: a pipe (`-`, `/dev/stdin`, `<(...)`)
/// would be empty for the second pass.
fn reference_sample(args: &ScoreArgs) -> Result<Thinned, CliError> {
    let regular =
        args.logs.as_os_str() != "-" && std::fs::metadata(&args.logs).is_ok_and(|m| m.is_file());
    if !regular {
        return Err(format!(
            "--rank rules-first reads the log twice: --logs {} must be a regular file (not standard input or a pipe)",
            args.logs.display()
        )
        .into());
    }
    let pipeline = args.log.pipeline()?;
    let mut reader = LogReader::new(open_log(&args.logs)?, pipeline.reader);
    let mut sessionizer =
        Sessionizer::with_enrichment(SessionConfig::default(), pipeline.enrichment);
    let mut sample = Thinned::default();
    sessionize(
        &mut reader,
        &mut sessionizer,
        |s| sample.push(&fedsec_detector::features::extract(&s).values),
        |_| {},
    )
    .map_err(|e| format!("reading {}: {e}", args.logs.display()))?;
    Ok(sample)
}

/// Keys of the sessions a labels file calls human (`class: human`, or an
/// old file's `is_bot: false`).
fn human_keys(path: &Path) -> Result<HashSet<String>, CliError> {
    let file =
        std::fs::File::open(path).map_err(|e| format!("--labels {}: {e}", path.display()))?;
    let mut out = HashSet::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| format!("--labels {}: {e}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let l: LabelLine = serde_json::from_str(&line)
            .map_err(|e| format!("--labels {} line {}: {e}", path.display(), i + 1))?;
        let human = match l.class {
            Some(c) => c == TrafficClass::Human,
            None => l.is_bot == Some(false),
        };
        if human {
            out.insert(l.session);
        }
    }
    Ok(out)
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
    let humans = args.labels.as_deref().map(human_keys).transpose()?;
    let source = if humans.is_some() {
        BaselineSource::LabelledHumans
    } else {
        BaselineSource::ScoredHumans
    };
    if !(args.rules_weight.is_finite() && args.rules_weight >= 0.0) {
        return Err(format!(
            "--rules-weight must be finite and at least 0 (got {})",
            args.rules_weight
        )
        .into());
    }
    let tie_anomaly_share = args.tie_anomaly_share.unwrap_or(1.0);
    if !(0.0..=1.0).contains(&tie_anomaly_share) {
        return Err(
            format!("--tie-anomaly-share must be in [0, 1] (got {tie_anomaly_share})").into(),
        );
    }
    if args.rank == RankBy::Model && args.tie_anomaly_share.is_some() {
        return Err("--tie-anomaly-share is for --rank rules-first".into());
    }
    let scorer = Scorer::new(&model.spec, &model.weights)?;
    let order = match args.rank {
        RankBy::RulesFirst => {
            if args.rules_weight > 0.0 {
                return Err(
                    "--rules-weight is for --rank model; rules-first ranks by the rules already"
                        .into(),
                );
            }
            let labeller = labeller(args.labels_config.as_deref())?;
            let sample = reference_sample(&args)?;
            Order::RulesFirst(Box::new(RulesFirst::new(
                labeller,
                &sample,
                &scorer,
                tie_anomaly_share,
            )?))
        }
        RankBy::Model if args.rules_weight > 0.0 => Order::ModelPlusRules(
            Box::new(labeller(args.labels_config.as_deref())?),
            args.rules_weight,
        ),
        RankBy::Model => Order::Model,
    };
    let pipeline = args.log.pipeline()?;
    let input = open_log(&args.logs)?;
    let mut reader = LogReader::new(input, pipeline.reader);
    let mut sessionizer =
        Sessionizer::with_enrichment(SessionConfig::default(), pipeline.enrichment)
            .with_evidence(true);
    let mut malformed = MalformedReporter::new(args.report_malformed);
    let mut ranker = Ranker::new(&scorer, args.top, args.baseline_sessions, humans);
    ranker.order = order;
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
        unindexed_related = ranker.related.unindexed,
        model = %model.spec,
        "scored"
    );
    let (verified, declared) = (ranker.verified_crawlers, ranker.declared_bots);
    let (best, good, related, sampler) = ranker.into_lists();
    let baseline = sampler.finish(source);
    let baseline_report = BaselineReport::of(&baseline);
    let rows: Vec<_> = best
        .iter()
        .map(|c| (&c.values, &c.raw, Some(&c.evidence)))
        .collect();
    let explained = baseline.reasons_for(&model.spec, &model.weights, &rows, args.reasons)?;
    if !args.json {
        println!("{}", baseline.notice());
    }
    for (rank, (c, (_, listed))) in best.iter().zip(&explained).enumerate() {
        let flagged = c.logit >= 0.0;
        let rel = related.related(&c.key, &c.ip, &c.user_agent, c.asn, flagged);
        if args.json {
            let report = Report {
                list: "abuse",
                rank: rank + 1,
                logit: c.logit,
                probability: probability(c.logit),
                session: &c.key,
                ip: &c.ip,
                user_agent: &c.user_agent,
                asn: c.asn,
                requests: c.requests,
                rules_score: c.parts.map(|p| p.rules_score),
                tie_break: c.parts.map(|p| p.tie_break),
                anomaly_percentile: c.parts.map(|p| p.anomaly_percentile),
                reasons: listed,
                evidence: &c.evidence,
                related: &rel,
                baseline: &baseline_report,
            };
            println!("{}", serde_json::to_string(&report)?);
        } else {
            print!("{}", abuse_text(rank + 1, c, listed, &rel));
        }
    }
    if !args.json {
        println!(
            "\nGood bots (not abuse): {verified} sessions of verified crawlers, {declared} of bots that name themselves"
        );
    }
    for g in &good {
        let kind = if g.kind_verified {
            GoodBot::VerifiedCrawler
        } else {
            GoodBot::DeclaredBot
        };
        let logit = f32::from_bits(g.logit_bits);
        if args.json {
            let r = GoodReport {
                list: "good_bots",
                good_bot: kind,
                logit,
                probability: probability(logit),
                session: &g.key,
                ip: &g.ip,
                user_agent: &g.user_agent,
                requests: g.requests,
            };
            println!("{}", serde_json::to_string(&r)?);
        } else {
            println!(
                "  {:<16} p={}  {}  ({} requests, {}, \"{}\")",
                kind.label(),
                p_text(logit),
                safe(&g.key),
                g.requests,
                safe(&g.ip),
                safe(&g.user_agent)
            );
        }
    }
    Ok(())
}
