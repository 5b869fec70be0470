//! `fedsec-experiments`: the demo and the experiments behind
//! `experiments/results/`. See `experiments/README.md`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use fedsec_experiments::demo;
use fedsec_experiments::figures::{self, Mode, Setup};

#[derive(Debug, Parser)]
#[command(
    name = "fedsec-experiments",
    version,
    about = "fedsec demo and reproducible experiments"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The one-command demo: 300 tenants' logs, a coordinator and one
    /// participant per tenant over loopback mTLS, DP-FedAvg to ε = 3.
    Demo(DemoArgs),
    /// 1. Held-out AUC against ε (several noise multipliers, same rounds).
    PrivacyUtility(Common),
    /// 2. Non-IID tenants: Dirichlet α ∈ {0.1, 0.5, 1, 10}.
    NonIid(Common),
    /// 3. Scale: 10 → 1,000 tenants at a fixed ε.
    Scale(Common),
    /// 4. Poisoning: malicious tenants, server-side clipping on and off.
    Poisoning(Common),
    /// 5. Small tenants: per-tenant AUC by size, federated vs local-only.
    SmallTenants(Common),
    /// 6. Empirical privacy audit: canaries in the real coordinator vs the accountant's ε.
    Audit(Common),
    /// 7. Weak labels: 0 / 10 / 100 % of tenants with ground truth, the rest silver labels.
    WeakLabels(WeakArgs),
    /// All five experiments, one after the other.
    All(Common),
}

#[derive(Debug, Clone, Args)]
struct WeakArgs {
    #[command(flatten)]
    common: Common,
    /// Seeds: --seed, --seed + 1, ...
    #[arg(long, default_value_t = 3)]
    seeds: u64,
    /// Write each seed's features (tenant, split, label, f0..f50) as CSV here,
    /// for experiments/scripts/iforest_baseline.py.
    #[arg(long)]
    export_features: Option<PathBuf>,
    /// Only generate and export each seed's data (needs --export-features).
    #[arg(long, requires = "export_features")]
    export_only: bool,
}

#[derive(Debug, Clone, Args)]
struct DemoArgs {
    /// Tenants (one participant each).
    #[arg(long, default_value_t = 300)]
    tenants: usize,
    /// Planned rounds (z is calibrated for them).
    #[arg(long, default_value_t = 50)]
    rounds: u64,
    /// Expected cohort m per round.
    #[arg(long, default_value_t = 60)]
    cohort: u32,
    /// Target ε after all rounds.
    #[arg(long, default_value_t = 3.0)]
    epsilon: f64,
    /// δ.
    #[arg(long, default_value_t = 1e-6)]
    delta: f64,
    /// Seed of the data, the initial model and local training.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Where report.md and its figures go [default: experiments/out/demo].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Keep logs, PKI and state here instead of a temporary directory.
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Worker threads for data generation and baselines.
    #[arg(long, default_value_t = default_threads())]
    threads: usize,
    /// Median sessions per tenant.
    #[arg(long, default_value_t = 160.0)]
    median_sessions: f64,
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
    /// After the job, keep the coordinator (and its admin API) serving until
    /// Ctrl-C, for the incident runbook's post-mortem (README "Incident
    /// runbook"); the admin access is in `<work-dir>/admin.env` either way.
    #[arg(long)]
    keep_running: bool,
}

#[derive(Debug, Clone, Args)]
struct Common {
    /// fast: CI-sized (seconds); full: the committed results.
    #[arg(long, value_enum, default_value = "full")]
    mode: Mode,
    /// Seed of data, selection, training and noise; privacy-utility,
    /// non-iid, scale and small-tenants run over this seed and the next
    /// ones (3 seeds in full mode, 2 in fast mode) and report mean ± sd;
    /// audit over 3 seeds in full mode (per seed and pooled), 1 in fast.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Output directory [default: experiments/results in full mode,
    /// experiments/out/fast in fast mode].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Worker threads.
    #[arg(long, default_value_t = default_threads())]
    threads: usize,
    /// No progress bars.
    #[arg(long)]
    quiet: bool,
}

fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

impl Common {
    fn setup(&self) -> Setup {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        Setup {
            mode: self.mode,
            seed: self.seed,
            out: self.out.clone().unwrap_or_else(|| match self.mode {
                Mode::Full => root.join("results"),
                Mode::Fast => root.join("out").join("fast"),
            }),
            threads: self.threads.max(1),
            quiet: self.quiet,
        }
    }
}

type Experiment = fn(&Setup) -> fedsec_experiments::Result<(String, PathBuf)>;

fn experiments() -> [(&'static str, Experiment); 5] {
    [
        (figures::privacy_utility::KEY, |s| {
            figures::privacy_utility::run(s).map(|o| (summary_pu(&o), o.png))
        }),
        (figures::non_iid::KEY, |s| {
            figures::non_iid::run(s).map(|o| (format!("{} rows", o.rows.len()), o.png))
        }),
        (figures::scale::KEY, |s| {
            figures::scale::run(s).map(|o| (format!("{} rows", o.rows.len()), o.png))
        }),
        (figures::poisoning::KEY, |s| {
            figures::poisoning::run(s).map(|o| (format!("{} runs", o.rows.len()), o.png))
        }),
        (figures::small_tenants::KEY, |s| {
            figures::small_tenants::run(s).map(|o| (format!("{} rows", o.rows.len()), o.png))
        }),
    ]
}

fn summary_pu(o: &figures::privacy_utility::Outcome) -> String {
    o.rows
        .iter()
        .map(|r| {
            format!(
                "seed {} {} z={} AUC {:.3}",
                r.seed, r.method, r.noise_multiplier, r.mean_tenant_auc
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn run_experiments(c: &Common, which: &[&str]) -> ExitCode {
    let setup = c.setup();
    for (key, f) in experiments() {
        if !which.contains(&key) {
            continue;
        }
        let t0 = std::time::Instant::now();
        match f(&setup) {
            Ok((summary, png)) => {
                println!(
                    "{key}: done in {:.0} s ({summary}); figure {}",
                    t0.elapsed().as_secs_f64(),
                    png.display()
                );
            }
            Err(e) => {
                eprintln!("{key}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    println!("results: {}", setup.readme().display());
    ExitCode::SUCCESS
}

fn weak_labels(a: &WeakArgs) -> ExitCode {
    let setup = a.common.setup();
    let t0 = std::time::Instant::now();
    let opts = figures::weak_labels::Options {
        seeds: a.seeds,
        export_features: a.export_features.clone(),
    };
    if a.export_only {
        let Some(dir) = &a.export_features else {
            eprintln!("--export-only needs --export-features");
            return ExitCode::FAILURE;
        };
        return match figures::weak_labels::export(&setup, a.seeds, dir) {
            Ok(files) => {
                for f in files {
                    println!("wrote {}", f.display());
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("weak-labels: {e}");
                ExitCode::FAILURE
            }
        };
    }
    match figures::weak_labels::run(&setup, &opts) {
        Ok(o) => {
            for s in figures::weak_labels::summarise(&o.rows) {
                println!(
                    "{} (ground truth {}): AUC {:.3} ± {:.3}, recall@1%FPR {:.3} ± {:.3}",
                    s.method,
                    if s.gt_share.is_nan() {
                        "n/a".to_string()
                    } else {
                        format!("{:.0} %", 100.0 * s.gt_share)
                    },
                    s.auc_mean,
                    s.auc_sd,
                    s.recall_mean,
                    s.recall_sd
                );
            }
            println!(
                "weak-labels: done in {:.0} s; figure {}",
                t0.elapsed().as_secs_f64(),
                o.png.display()
            );
            println!("results: {}", setup.readme().display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("weak-labels: {e}");
            ExitCode::FAILURE
        }
    }
}

fn audit(c: &Common) -> ExitCode {
    let setup = c.setup();
    let t0 = std::time::Instant::now();
    match figures::audit::run(&setup) {
        Ok(o) => {
            for r in &o.rows {
                println!(
                    "{} (seed {}): accountant ε {:.3}, ε̂ final {:.3}, ε̂ all iterates {:.3}, lower bound {:.3}",
                    r.run,
                    r.seed,
                    r.accountant_epsilon,
                    r.epsilon_one_shot_final,
                    r.epsilon_one_shot_all_iterates,
                    r.epsilon_lower_bound
                );
            }
            println!(
                "audit: done in {:.0} s, every check passed; figure {}",
                t0.elapsed().as_secs_f64(),
                o.png.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("audit: {e}");
            ExitCode::FAILURE
        }
    }
}

fn demo(a: &DemoArgs) -> ExitCode {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut cfg = demo::DemoConfig::standard(
        a.out
            .clone()
            .unwrap_or_else(|| root.join("out").join("demo")),
    );
    cfg.tenants = a.tenants;
    cfg.rounds = a.rounds;
    cfg.cohort = a.cohort;
    cfg.epsilon = a.epsilon;
    cfg.delta = a.delta;
    cfg.seed = a.seed;
    cfg.work_dir = a.work_dir.clone();
    cfg.threads = a.threads.max(1);
    cfg.median_sessions = a.median_sessions;
    cfg.quiet = a.quiet;
    println!(
        "fedsec demo: {} tenants, {} rounds, expected cohort {}, target ε = {} at δ = {:e}",
        cfg.tenants,
        cfg.rounds,
        cfg.expected_cohort(),
        cfg.epsilon,
        cfg.delta
    );
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("demo: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let keep_running = a.keep_running;
    let hooks = demo::DemoHooks {
        on_admin: Some(Box::new(|access: &demo::AdminAccess| {
            for line in access.lines() {
                println!("{line}");
            }
        })),
        hold: keep_running.then(|| -> demo::Hold {
            Box::new(|outcome: &demo::DemoOutcome| {
                for line in outcome.summary_lines() {
                    println!("{line}");
                }
                println!("the coordinator keeps serving for the incident runbook; Ctrl-C stops it");
                Box::pin(async {
                    if let Err(e) = tokio::signal::ctrl_c().await {
                        eprintln!("demo: cannot wait for Ctrl-C ({e}); stopping");
                    }
                })
            })
        }),
    };
    match rt.block_on(demo::run_with(cfg, hooks)) {
        Ok(outcome) => {
            if !keep_running {
                for line in outcome.summary_lines() {
                    println!("{line}");
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("demo failed: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match &cli.command {
        Command::Demo(a) => demo(a),
        Command::PrivacyUtility(c) => run_experiments(c, &[figures::privacy_utility::KEY]),
        Command::NonIid(c) => run_experiments(c, &[figures::non_iid::KEY]),
        Command::Scale(c) => run_experiments(c, &[figures::scale::KEY]),
        Command::Poisoning(c) => run_experiments(c, &[figures::poisoning::KEY]),
        Command::SmallTenants(c) => run_experiments(c, &[figures::small_tenants::KEY]),
        Command::Audit(c) => audit(c),
        Command::WeakLabels(a) => weak_labels(a),
        Command::All(c) => run_experiments(
            c,
            &[
                figures::privacy_utility::KEY,
                figures::non_iid::KEY,
                figures::scale::KEY,
                figures::poisoning::KEY,
                figures::small_tenants::KEY,
            ],
        ),
    }
}
