//! The demo's report: `report.md` with three figures (held-out AUC by round
//! against the baselines, ε by round, per-archetype recall), `rounds.csv`,
//! and the summary lines the binary prints last.

use std::path::Path;

use crate::data::HoldoutSet;
use crate::error::{Error, Result};
use crate::plot::{self, BarChart, Legend, LineChart, Series};
use crate::report::{f3, markdown_table, write_csv};

use super::DemoOutcome;

fn caption(o: &DemoOutcome) -> String {
    format!(
        "{} tenants over loopback mTLS, m = {}, z = {:.3}, C = {}, d = {}; noise: opendp exact Gaussian (production-safe)",
        o.config.tenants,
        o.config.expected_cohort(),
        o.noise_multiplier,
        crate::figures::CLIP_NORM,
        o.parameters
    )
}

/// Writes `report.md`, `rounds.csv` and the figures into `o.config.out`.
pub fn write(o: &DemoOutcome, holdout: &HoldoutSet) -> Result<()> {
    let out = &o.config.out;
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    write_csv(&out.join("rounds.csv"), &o.rounds)?;
    let rounds = o.rounds.len().max(1) as f64;
    let x1 = rounds + 0.5;

    let auc_png = out.join("auc_by_round.png");
    plot::line_chart(
        &auc_png,
        (860, 540),
        &LineChart {
            title: "Held-out AUC by round: federated (DP) against the baselines".into(),
            caption: caption(o),
            x_label: "round".into(),
            y_label: "mean per-tenant held-out ROC-AUC".into(),
            x_log: false,
            x_range: Some((0.5, x1)),
            y_range: None,
            series: vec![
                Series::line(
                    format!("federated DP-FedAvg (ε = {:.2} at the end)", o.epsilon),
                    o.rounds
                        .iter()
                        .map(|r| (r.round as f64, r.mean_tenant_auc))
                        .collect(),
                    plot::color(0),
                ),
                Series::reference(
                    format!(
                        "centralised, non-private ({})",
                        f3(o.central.mean_tenant_auc)
                    ),
                    o.central.mean_tenant_auc,
                    0.5,
                    x1,
                    plot::REFERENCE_GREY,
                ),
                Series::reference(
                    format!("local-only ({})", f3(o.local.mean_tenant_auc)),
                    o.local.mean_tenant_auc,
                    0.5,
                    x1,
                    plot::color(3),
                ),
            ],
            legend: Legend::LowerRight,
        },
    )?;

    let eps_png = out.join("epsilon_by_round.png");
    plot::line_chart(
        &eps_png,
        (860, 500),
        &LineChart {
            title: format!("Privacy spent by round (δ = {:e})", o.config.delta),
            caption: caption(o),
            x_label: "round".into(),
            y_label: "ε spent".into(),
            x_log: false,
            x_range: Some((0.5, x1)),
            y_range: Some((0.0, o.config.epsilon * 1.15)),
            series: vec![
                Series::line(
                    "ε (PLD accountant, reported)",
                    o.rounds
                        .iter()
                        .map(|r| (r.round as f64, r.epsilon_pld))
                        .collect(),
                    plot::color(0),
                ),
                Series::line(
                    "ε (RDP accountant, recorded)",
                    o.rounds
                        .iter()
                        .map(|r| (r.round as f64, r.epsilon_rdp))
                        .collect(),
                    plot::color(1),
                )
                .no_markers(),
                Series::reference(
                    format!("budget ε = {}", o.config.epsilon),
                    o.config.epsilon,
                    0.5,
                    x1,
                    plot::color(3),
                ),
            ],
            legend: Legend::LowerRight,
        },
    )?;

    let recall_png = out.join("archetype_recall.png");
    let cats: Vec<String> = o
        .recall_federated
        .iter()
        .map(|r| {
            format!(
                "{}{} (n={})",
                r.archetype,
                match r.class.as_str() {
                    "abusive_bot" => "",
                    "good_bot" => " [good bot]",
                    _ => " [human]",
                },
                r.sessions
            )
        })
        .collect();
    let central: Vec<f64> = o
        .recall_federated
        .iter()
        .map(|r| {
            o.recall_central
                .iter()
                .find(|c| c.archetype == r.archetype)
                .map_or(f64::NAN, |c| c.flagged)
        })
        .collect();
    plot::bar_chart(
        &recall_png,
        (900, 620),
        &BarChart {
            title: "Per-archetype recall at 1 % false-positive rate".into(),
            caption: "share of each archetype's held-out sessions flagged as abuse; for [human] and [good bot] archetypes it is a false-positive rate"
                .into(),
            categories: cats,
            groups: vec![
                (
                    "federated DP-FedAvg".into(),
                    plot::color(0),
                    o.recall_federated.iter().map(|r| r.flagged).collect(),
                ),
                ("centralised, non-private".into(), plot::REFERENCE_GREY, central),
            ],
            x_label: "share flagged".into(),
            x_range: (0.0, 1.0),
        },
    )?;

    std::fs::write(out.join("report.md"), markdown(o, holdout))
        .map_err(|e| Error::io(out.join("report.md"), e))?;
    Ok(())
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn markdown(o: &DemoOutcome, holdout: &HoldoutSet) -> String {
    let c = &o.config;
    let bots = holdout.labels.iter().filter(|b| **b).count();
    let mut s = format!(
        "# fedsec demo report\n\n\
         A bot-abuse detector trained with DP-FedAvg across {} tenants without any tenant's logs \
         leaving its participant: a real coordinator (gRPC, mutual TLS 1.3, SQLite ledger) and one \
         real participant per tenant, in one process over loopback. Server noise: opendp's exact \
         Gaussian (the production-safe source). Job state at the end: **{}**.\n\n",
        c.tenants, o.job_state
    );
    s += &markdown_table(
        &["", "mean per-tenant held-out AUC", "pooled held-out AUC"],
        &[
            vec![
                format!(
                    "federated DP-FedAvg (ε = {:.2}, δ = {:e})",
                    o.epsilon, c.delta
                ),
                f3(o.federated.mean_tenant_auc),
                f3(o.federated.pooled_auc),
            ],
            vec![
                "centralised, non-private (all logs in one place)".into(),
                f3(o.central.mean_tenant_auc),
                f3(o.central.pooled_auc),
            ],
            vec![
                "local-only (each tenant alone)".into(),
                f3(o.local.mean_tenant_auc),
                f3(o.local.pooled_auc) + " ¹",
            ],
        ],
    );
    s += &format!(
        "\nMean per-tenant AUC: each tenant's held-out sessions scored by the model, ROC-AUC per tenant, \
         averaged over the {} tenants whose held-out window has both bots and humans. Pooled AUC: all \
         {} held-out sessions ({} bots) ranked together. ¹ For local-only each tenant's sessions are \
         scored by its own model; ranking them together also rewards each model for knowing its own \
         tenant's bot share, which no shared model can, so only the per-tenant mean compares fairly.\n\n",
        o.federated.tenants_with_auc, o.holdout_sessions, bots
    );
    s += &format!(
        "![held-out AUC by round]({})\n\n![epsilon by round]({})\n\n![per-archetype recall]({})\n\n",
        file_name(&c.out.join("auc_by_round.png")),
        file_name(&c.out.join("epsilon_by_round.png")),
        file_name(&c.out.join("archetype_recall.png"))
    );
    s += &format!(
        "## Setup\n\n\
         - Data: {} synthetic tenants (seed {}, Dirichlet α = 1, median {} sessions, 2 days of traffic), \
         written as real log files ({} lines, {:.0} MB with labels). Each participant reads the first \
         70 % of its tenant's time window ({} sessions in all); the sessions that start in the last 30 % \
         ({}) are held out for evaluation and read by nobody but this report.\n\
         - Model: {} with d = {} parameters, initial weights from seed {}.\n\
         - Job: {} rounds, expected cohort m = {} (q = {:.3}, Poisson sampling by keyed hash), clip norm \
         C = {}, noise multiplier z = {:.3} calibrated by the PLD accountant for ε = {} at δ = {:e} \
         after all rounds, fixed denominator m, FedAvgM server momentum {}; each selected participant \
         trains {} local epochs of SGD (lr {}, batch {}, class weighting) and clips its update.\n\
         - Noise on the averaged update: z·C·√d / m = {:.2}·C, below C as client-level DP needs \
         (with √d ≥ m / z the noise would drown the signal: that is why the model is small).\n\
         - Participants: {} of the {} tenants ran one (the job's population); {} sat out with fewer \
         training sessions than their own guard lets an update be computed from (they would skip \
         every task and hold each round they were selected for open until its deadline). {} updates \
         accepted, {} refused, {} tasks skipped, {} calls retried{}.\n\
         - Each tenant's own guard (participation basis: it does not trust the coordinator's q) \
         enforced a cap of ε = {:.2}, what taking part in every round would cost it unamplified.\n\
         - Time: data {:.0} s, baselines {:.0} s, federated job {:.0} s, total {:.0} s.\n\n",
        c.tenants,
        c.seed,
        c.median_sessions,
        o.log_lines,
        o.log_bytes as f64 / 1e6,
        o.train_sessions,
        o.holdout_sessions,
        crate::figures::model(),
        o.parameters,
        c.seed,
        c.rounds,
        c.cohort.min(o.participating as u32).max(2),
        o.sampling_rate,
        crate::figures::CLIP_NORM,
        o.noise_multiplier,
        c.epsilon,
        c.delta,
        crate::figures::SERVER_MOMENTUM,
        crate::figures::round_training().epochs,
        crate::figures::round_training().learning_rate,
        crate::figures::round_training().batch_size,
        o.noise_to_clip,
        o.participating,
        c.tenants,
        c.tenants - o.participating,
        o.submitted,
        o.rejected,
        o.skipped,
        o.retries,
        if o.event_samples.is_empty() {
            String::new()
        } else {
            format!(" (e.g. {})", o.event_samples.join("; "))
        },
        o.tenant_cap,
        o.timings[0],
        o.timings[1],
        o.timings[2],
        o.timings[3],
    );
    s += "## Rounds\n\n";
    let rows: Vec<Vec<String>> = o
        .rounds
        .iter()
        .map(|r| {
            vec![
                r.round.to_string(),
                r.participants.to_string(),
                format!("{:.0} %", 100.0 * r.clipped_fraction),
                format!("{:.3}", r.epsilon_pld),
                f3(r.mean_tenant_auc),
                f3(r.pooled_auc),
                format!("{:.1}", r.elapsed_s),
            ]
        })
        .collect();
    s += &markdown_table(
        &[
            "round",
            "participants",
            "re-clipped",
            "ε (PLD)",
            "AUC (per tenant)",
            "AUC (pooled)",
            "s",
        ],
        &rows,
    );
    s += "\n## Per-archetype recall\n\nAt the threshold that flags 1 % of held-out non-abusive sessions (humans and good bots; the model scores abuse).\n\n";
    let rows: Vec<Vec<String>> = o
        .recall_federated
        .iter()
        .map(|r| {
            let c = o
                .recall_central
                .iter()
                .find(|c| c.archetype == r.archetype)
                .map_or(f64::NAN, |c| c.flagged);
            vec![
                r.archetype.clone(),
                r.class.replace('_', " "),
                r.sessions.to_string(),
                f3(r.flagged),
                f3(c),
            ]
        })
        .collect();
    s += &markdown_table(
        &[
            "archetype",
            "class",
            "held-out sessions",
            "flagged (federated)",
            "flagged (centralised)",
        ],
        &rows,
    );
    s += &format!(
        "\nReproduce: `cargo run --release -p fedsec-experiments -- demo --tenants {} --rounds {} --cohort {} --epsilon {} --seed {}`\n",
        c.tenants, c.rounds, c.cohort, c.epsilon, c.seed
    );
    s
}

impl DemoOutcome {
    /// The closing summary the binary prints last.
    pub fn summary_lines(&self) -> Vec<String> {
        vec![
            format!(
                "federated DP-FedAvg: held-out AUC {} per tenant (pooled {}) after {} rounds, {} tenants, job {}",
                f3(self.federated.mean_tenant_auc),
                f3(self.federated.pooled_auc),
                self.rounds.len(),
                self.config.tenants,
                self.job_state
            ),
            format!(
                "baselines: centralised non-private {} per tenant (pooled {}), local-only {} per tenant",
                f3(self.central.mean_tenant_auc),
                f3(self.central.pooled_auc),
                f3(self.local.mean_tenant_auc)
            ),
            format!(
                "privacy: ε = {:.3} at δ = {:e} (PLD; z = {:.3}, q = {:.3}, C = {}, opendp noise); noise on the mean {:.2}·C",
                self.epsilon,
                self.config.delta,
                self.noise_multiplier,
                self.sampling_rate,
                crate::figures::CLIP_NORM,
                self.noise_to_clip
            ),
            format!(
                "report: {} ({:.0} s in all)",
                self.report.display(),
                self.timings[3]
            ),
        ]
    }
}
