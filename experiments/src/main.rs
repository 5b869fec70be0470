//! `fedsec-experiments`: the demo and the experiments behind
//! `experiments/results/`. See `experiments/README.md`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
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
    /// All five experiments, one after the other.
    All(Common),
}

#[derive(Debug, Clone, Args)]
struct Common {
    /// fast: CI-sized (seconds); full: the committed results.
    #[arg(long, value_enum, default_value = "full")]
    mode: Mode,
    /// Seed of data, selection, training and noise.
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
                "{} z={} AUC {:.3}",
                r.method, r.noise_multiplier, r.mean_tenant_auc
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Command::PrivacyUtility(c) => run_experiments(c, &[figures::privacy_utility::KEY]),
        Command::NonIid(c) => run_experiments(c, &[figures::non_iid::KEY]),
        Command::Scale(c) => run_experiments(c, &[figures::scale::KEY]),
        Command::Poisoning(c) => run_experiments(c, &[figures::poisoning::KEY]),
        Command::SmallTenants(c) => run_experiments(c, &[figures::small_tenants::KEY]),
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
