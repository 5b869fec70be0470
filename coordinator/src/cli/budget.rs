//! `fedsec-coordinator budget`: plan a job's privacy budget before running it.
//!
//! - `budget epsilon --q Q --z Z --rounds T --delta D [--accountant pld|rdp]`:
//!   ε after `T` rounds.
//! - `budget calibrate --q Q --rounds T --delta D --target-eps E`: the smallest
//!   noise multiplier that keeps ε ≤ E.
//! - `budget rounds --q Q --z Z --delta D --target-eps E`: the most rounds
//!   that keep ε ≤ E.
//!
//! Each prints one human sentence, or one JSON object with `--json`. The
//! default accountant is PLD (the bound fedsec reports); RDP is the
//! conservative cross-check. Where the PLD accountant handed the answer to
//! its RDP fallback (its own error bound would take > 1 % of δ), the
//! sentence names RDP and the JSON has `"rdp_fallback": true`.

use clap::{Args, Subcommand, ValueEnum};
use fedsec_privacy::accounting::{Accountant, Mechanism, PldAccountant, RdpAccountant};
use fedsec_privacy::calibrate::{calibrate_noise_multiplier, max_rounds};
use serde_json::json;

use super::CliError;

/// Budget planning commands.
#[derive(Debug, Subcommand)]
pub(crate) enum BudgetCommand {
    /// ε after a number of rounds at sampling rate q and noise multiplier z.
    Epsilon(EpsilonArgs),
    /// Smallest noise multiplier z that keeps ε within a target.
    Calibrate(CalibrateArgs),
    /// Largest number of rounds that keeps ε within a target.
    Rounds(RoundsArgs),
}

/// Which accountant answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum AccountantChoice {
    /// Privacy loss distributions: the tight bound fedsec reports.
    Pld,
    /// Rényi DP: fast, conservative cross-check.
    Rdp,
}

impl AccountantChoice {
    fn accountant(self) -> &'static dyn Accountant {
        match self {
            AccountantChoice::Pld => &PldAccountant,
            AccountantChoice::Rdp => &RdpAccountant,
        }
    }

    fn label(self) -> &'static str {
        match self {
            AccountantChoice::Pld => "PLD",
            AccountantChoice::Rdp => "RDP",
        }
    }
}

/// Options shared by every budget command.
#[derive(Debug, Args)]
pub(crate) struct Common {
    /// δ of the (ε, δ) guarantee, in (0, 1); typically below 1/(number of clients).
    #[arg(long, value_parser = parse_delta, allow_negative_numbers = true)]
    delta: f64,
    /// Accountant to use.
    #[arg(long, value_enum, default_value_t = AccountantChoice::Pld)]
    accountant: AccountantChoice,
    /// Print one JSON object instead of a sentence.
    #[arg(long)]
    json: bool,
}

/// Arguments of `budget epsilon`.
#[derive(Debug, Args)]
pub(crate) struct EpsilonArgs {
    /// Poisson sampling rate q in (0, 1]: each client's chance to be in a round.
    #[arg(long, value_parser = parse_rate, allow_negative_numbers = true)]
    q: f64,
    /// Noise multiplier z > 0 (noise stddev / clip norm).
    #[arg(long, value_parser = parse_positive, allow_negative_numbers = true)]
    z: f64,
    /// Number of rounds T ≥ 1.
    #[arg(long, value_parser = parse_rounds, allow_negative_numbers = true)]
    rounds: u64,
    #[command(flatten)]
    common: Common,
}

/// Arguments of `budget calibrate`.
#[derive(Debug, Args)]
pub(crate) struct CalibrateArgs {
    /// Poisson sampling rate q in (0, 1].
    #[arg(long, value_parser = parse_rate, allow_negative_numbers = true)]
    q: f64,
    /// Number of rounds T ≥ 1.
    #[arg(long, value_parser = parse_rounds, allow_negative_numbers = true)]
    rounds: u64,
    /// Target ε > 0.
    #[arg(long = "target-eps", value_parser = parse_positive, allow_negative_numbers = true)]
    target_eps: f64,
    #[command(flatten)]
    common: Common,
}

/// Arguments of `budget rounds`.
#[derive(Debug, Args)]
pub(crate) struct RoundsArgs {
    /// Poisson sampling rate q in (0, 1].
    #[arg(long, value_parser = parse_rate, allow_negative_numbers = true)]
    q: f64,
    /// Noise multiplier z > 0.
    #[arg(long, value_parser = parse_positive, allow_negative_numbers = true)]
    z: f64,
    /// Target ε > 0.
    #[arg(long = "target-eps", value_parser = parse_positive, allow_negative_numbers = true)]
    target_eps: f64,
    #[command(flatten)]
    common: Common,
}

fn parse_f64(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number"))?;
    if v.is_finite() {
        Ok(v)
    } else {
        Err(format!("{s:?} is not a finite number"))
    }
}

fn parse_rate(s: &str) -> Result<f64, String> {
    let v = parse_f64(s)?;
    if v > 0.0 && v <= 1.0 {
        Ok(v)
    } else {
        Err(format!("the sampling rate must be in (0, 1], got {v}"))
    }
}

fn parse_delta(s: &str) -> Result<f64, String> {
    let v = parse_f64(s)?;
    if v > 0.0 && v < 1.0 {
        Ok(v)
    } else {
        Err(format!("delta must be in (0, 1), got {v}"))
    }
}

fn parse_positive(s: &str) -> Result<f64, String> {
    let v = parse_f64(s)?;
    if v > 0.0 {
        Ok(v)
    } else {
        Err(format!("must be greater than 0, got {v}"))
    }
}

fn parse_rounds(s: &str) -> Result<u64, String> {
    let v: u64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a whole number of rounds"))?;
    if v >= 1 {
        Ok(v)
    } else {
        Err("must be at least 1".to_string())
    }
}

/// Runs a budget subcommand.
pub(crate) fn run(cmd: BudgetCommand) -> Result<(), CliError> {
    let out = match cmd {
        BudgetCommand::Epsilon(a) => epsilon(a)?,
        BudgetCommand::Calibrate(a) => calibrate(a)?,
        BudgetCommand::Rounds(a) => rounds(a)?,
    };
    println!("{out}");
    Ok(())
}

/// ε after `t` rounds, and whether the PLD accountant handed the question
/// to its RDP fallback (always `false` when RDP was chosen).
fn eps_at(
    choice: AccountantChoice,
    q: f64,
    z: f64,
    t: u64,
    delta: f64,
) -> Result<(f64, bool), CliError> {
    let m = Mechanism {
        sampling_rate: q,
        noise_multiplier: z,
    };
    Ok(match choice {
        AccountantChoice::Pld => {
            let d = PldAccountant.epsilon_detailed(&[(m, t)], delta)?;
            (d.epsilon, d.rdp_fallback)
        }
        AccountantChoice::Rdp => (RdpAccountant.epsilon(&[(m, t)], delta)?, false),
    })
}

fn epsilon(a: EpsilonArgs) -> Result<String, CliError> {
    let acct = a.common.accountant.accountant();
    let (eps, rdp_fallback) = eps_at(a.common.accountant, a.q, a.z, a.rounds, a.common.delta)?;
    Ok(if a.common.json {
        json!({
            "command": "epsilon",
            "accountant": acct.name(),
            "accountant_version": acct.version(),
            "rdp_fallback": rdp_fallback,
            "q": a.q,
            "z": a.z,
            "rounds": a.rounds,
            "delta": a.common.delta,
            "epsilon": eps,
        })
        .to_string()
    } else {
        format!(
            "After {} rounds with sampling rate q = {} and noise multiplier z = {}, the job is \
             (ε = {}, δ = {})-differentially private for each client ({}, add/remove one client).",
            a.rounds,
            a.q,
            a.z,
            fmt_eps(eps),
            fmt_delta(a.common.delta),
            answered_by(a.common.accountant, rdp_fallback)
        )
    })
}

/// Which accountant answered, for the human sentence: the PLD accountant
/// hands the question to RDP when its own error bound would take more than
/// 1 % of δ, and the sentence must not credit PLD with RDP's looser value.
fn answered_by(choice: AccountantChoice, rdp_fallback: bool) -> String {
    if rdp_fallback {
        "RDP accountant: the PLD accountant's own error bound would take more than 1 % of δ here"
            .to_string()
    } else {
        format!("{} accountant", choice.label())
    }
}

/// `z` rounded *up* to four significant digits: printing it must not
/// promise less noise than calibrated (ε is non-increasing in z, so ε at the
/// printed value is at most ε at `z`).
pub(crate) fn round_up_4_significant(z: f64) -> f64 {
    if !(z > 0.0 && z.is_finite()) {
        return z;
    }
    let scale = 10f64.powi(3 - z.log10().floor() as i32);
    let up = (z * scale).ceil() / scale;
    // Division may round below z by an ulp: step up until it is not.
    if up >= z {
        up
    } else {
        ((z * scale).ceil() + 1.0) / scale
    }
}

fn calibrate(a: CalibrateArgs) -> Result<String, CliError> {
    let acct = a.common.accountant.accountant();
    let z = calibrate_noise_multiplier(acct, a.q, a.rounds, a.common.delta, a.target_eps)?;
    let (eps, fallback) = eps_at(a.common.accountant, a.q, z, a.rounds, a.common.delta)?;
    // The human sentence shows z to four digits: round up, and state ε at the
    // value shown.
    let z_shown = round_up_4_significant(z);
    let (eps_shown, fallback_shown) =
        eps_at(a.common.accountant, a.q, z_shown, a.rounds, a.common.delta)?;
    Ok(if a.common.json {
        json!({
            "command": "calibrate",
            "accountant": acct.name(),
            "accountant_version": acct.version(),
            "rdp_fallback": fallback,
            "q": a.q,
            "rounds": a.rounds,
            "delta": a.common.delta,
            "target_epsilon": a.target_eps,
            "z": z,
            "epsilon": eps,
        })
        .to_string()
    } else {
        format!(
            "To stay within ε = {} at δ = {} over {} rounds with sampling rate q = {}, use a noise \
             multiplier of at least z = {} (ε = {} there; {}).",
            a.target_eps,
            fmt_delta(a.common.delta),
            a.rounds,
            a.q,
            z_shown,
            fmt_eps_up(eps_shown),
            answered_by(a.common.accountant, fallback_shown)
        )
    })
}

fn rounds(a: RoundsArgs) -> Result<String, CliError> {
    let acct = a.common.accountant.accountant();
    let t = max_rounds(acct, a.q, a.z, a.common.delta, a.target_eps)?;
    // ε at the answer (one round's when none fits), and who answered it.
    let (eps, fallback) = eps_at(a.common.accountant, a.q, a.z, t.max(1), a.common.delta)?;
    Ok(if a.common.json {
        json!({
            "command": "rounds",
            "accountant": acct.name(),
            "accountant_version": acct.version(),
            "rdp_fallback": fallback,
            "q": a.q,
            "z": a.z,
            "delta": a.common.delta,
            "target_epsilon": a.target_eps,
            "rounds": t,
            "epsilon": if t > 0 { eps } else { 0.0 },
        })
        .to_string()
    } else if t == 0 {
        format!(
            "Not even one round fits in ε = {} at δ = {} with q = {} and z = {}: one round already \
             costs ε = {} ({}).",
            a.target_eps,
            fmt_delta(a.common.delta),
            a.q,
            a.z,
            fmt_eps(eps),
            answered_by(a.common.accountant, fallback)
        )
    } else {
        format!(
            "With sampling rate q = {} and noise multiplier z = {}, at most {} rounds fit in ε = {} at \
             δ = {} (ε after {} rounds: {}; {}).",
            a.q,
            a.z,
            t,
            a.target_eps,
            fmt_delta(a.common.delta),
            t,
            fmt_eps(eps),
            answered_by(a.common.accountant, fallback)
        )
    })
}

/// δ as a person writes it: `1e-5`, or plain for large values.
fn fmt_delta(d: f64) -> String {
    if d < 1e-3 {
        format!("{d:e}")
    } else {
        d.to_string()
    }
}

/// Four significant digits rounded *up* (an ε shown next to a promise must
/// not read lower than it is).
fn fmt_eps_up(e: f64) -> String {
    if !e.is_finite() || e == 0.0 {
        return fmt_eps(e);
    }
    let digits = (3 - e.abs().log10().floor() as i32).clamp(0, 12);
    let scale = 10f64.powi(digits);
    fmt_eps((e * scale).ceil() / scale)
}

/// Four significant digits, plain notation for human output.
fn fmt_eps(e: f64) -> String {
    if !e.is_finite() {
        return "infinity".to_string();
    }
    if e == 0.0 {
        return "0".to_string();
    }
    let digits = (3 - e.abs().log10().floor() as i32).clamp(0, 12) as usize;
    format!("{e:.digits$}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sentence_names_the_accountant_that_answered() {
        assert_eq!(answered_by(AccountantChoice::Pld, false), "PLD accountant");
        assert_eq!(answered_by(AccountantChoice::Rdp, false), "RDP accountant");
        let fallback = answered_by(AccountantChoice::Pld, true);
        assert!(fallback.starts_with("RDP accountant: "), "{fallback}");
        assert!(!fallback.starts_with("PLD"), "{fallback}");
    }

    #[test]
    fn shown_z_is_rounded_up() {
        assert_eq!(round_up_4_significant(0.016_891), 0.01690);
        assert_eq!(round_up_4_significant(3.813_21), 3.814);
        assert_eq!(round_up_4_significant(2.5), 2.5);
        for z in [0.0123456, 1.0 / 3.0, 123.456_78, 9.999_91] {
            assert!(round_up_4_significant(z) >= z, "{z}");
        }
    }
}
