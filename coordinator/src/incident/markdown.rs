//! Rendering a report as a Markdown post-mortem draft (pure).

use std::fmt::Write as _;

use super::IncidentReport;

/// Escapes what would break a table cell or start markup.
fn cell(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('|', "\\|")
        .replace(['\n', '\r'], " ")
        .replace('<', "&lt;")
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "—".to_owned(), |v| v.to_string())
}

fn eps(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.4}")
    } else {
        "inf".into()
    }
}

/// The report as Markdown: summary, per-job impact (rounds, versions,
/// remediation point, privacy spent), rejected uploads, admin actions, the
/// timeline and the coverage caveats; sections a responder fills in are
/// marked TODO.
pub fn render(r: &IncidentReport) -> String {
    let mut m = String::new();
    let who = match (&r.subject.client_id, &r.subject.tenant_id) {
        (Some(c), _) => format!("client `{}`", cell(c)),
        (None, Some(t)) => format!("tenant `{}`", cell(t)),
        (None, None) => "nobody".to_owned(),
    };
    let _ = writeln!(m, "# Incident report: {who}\n");
    let _ = writeln!(
        m,
        "Draft generated at {} ms (Unix) by {} ({}).{}\n",
        r.generated_unix_ms,
        cell(&r.generated_by),
        r.schema,
        r.subject.job_id.as_ref().map_or(String::new(), |j| format!(
            " Restricted to job `{}`.",
            cell(j)
        ))
    );
    let _ = writeln!(m, "## Summary\n");
    let _ = writeln!(m, "TODO (responder): what happened, impact, root cause.\n");
    for j in &r.jobs {
        let _ = writeln!(
            m,
            "- job `{}`: contributed to {} round(s), {} rejected, {} excluded; current version {} {}; last version before the first contribution: {}.",
            cell(&j.job_id),
            j.rounds_contributed.len(),
            j.rejected,
            j.excluded,
            j.current_version,
            if j.current_carries {
                "**carries its influence**"
            } else {
                "does not carry its influence"
            },
            opt(j.last_version_before)
        );
    }
    if r.jobs.is_empty() {
        let _ = writeln!(m, "- no recorded submission to any job.");
    }
    if !r.coverage.complete {
        let _ = writeln!(
            m,
            "\n**Coverage warning:** the record of who took part does not hold every committed contribution of these identities (retention: {} days / {} rows, or rounds older than the record). Earlier rounds may be missing.",
            r.coverage.contribution_max_age_days, r.coverage.contribution_max_rows
        );
    }
    let _ = writeln!(m, "\n## Identities\n");
    let _ = writeln!(
        m,
        "| client | tenant | status | reason | registered (ms) | last seen (ms) | rounds |\n|---|---|---|---|---|---|---|"
    );
    for i in &r.identities {
        let _ = writeln!(
            m,
            "| {} | {} | {} | {} | {} | {} | {} |",
            cell(&i.client_id),
            cell(&i.tenant_id),
            i.status,
            cell(&i.status_reason),
            i.registered_unix_ms,
            i.last_seen_unix_ms,
            i.rounds_participated
        );
    }
    if let Some(c) = &r.containment {
        let _ = writeln!(
            m,
            "\nThe tenant is **contained** since {} ms: {} (quarantined: {}).",
            c.since_unix_ms,
            cell(&c.reason),
            cell(&c.quarantined.join(", "))
        );
    }
    for j in &r.jobs {
        let _ = writeln!(m, "\n## Job `{}`\n", cell(&j.job_id));
        let _ = writeln!(
            m,
            "- state {}, {} rounds committed, current version {}",
            j.state, j.rounds_completed, j.current_version
        );
        let _ = writeln!(m, "- rounds contributed to: {:?}", j.rounds_contributed);
        let _ = writeln!(
            m,
            "- versions published with its update: {:?}",
            j.versions_contributed
        );
        let _ = writeln!(
            m,
            "- versions carrying its influence (lineage): {:?}",
            j.versions_carrying
        );
        let _ = writeln!(
            m,
            "- first published contribution: {}",
            j.first_contribution
                .map_or("none".to_owned(), |(r, v)| format!(
                    "round {r}, version {v}"
                ))
        );
        let _ = writeln!(
            m,
            "- last version before it (rollback target of `admin models rollback --before-client`): {}",
            opt(j.last_version_before)
        );
        let _ = writeln!(
            m,
            "- privacy already spent: ε = {} (RDP {}) at δ = {} over {} charged round(s); a rollback does not refund it",
            eps(j.spent.epsilon_pld),
            eps(j.spent.epsilon_rdp),
            j.spent.delta,
            j.spent.rounds_charged
        );
        let _ = writeln!(
            m,
            "\n| round | attempt | client | outcome | norm | clipped | published | base | screen | reason |\n|---|---|---|---|---|---|---|---|---|---|"
        );
        for e in &j.entries {
            let _ = writeln!(
                m,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                e.round,
                e.attempt,
                cell(&e.client_id),
                e.outcome,
                e.norm.map_or("—".into(), |n| format!("{n:.4}")),
                if e.clipped { "yes" } else { "no" },
                e.published_version
                    .map_or("— (abandoned)".into(), |v| v.to_string()),
                opt(e.base_version),
                e.screen
                    .as_ref()
                    .map_or("—".into(), |s| cell(&s.to_string())),
                cell(&e.reason)
            );
        }
        if j.entries_not_listed > 0 {
            let _ = writeln!(m, "\n{} more rows not listed.", j.entries_not_listed);
        }
    }
    let _ = writeln!(m, "\n## Rejected uploads\n");
    let mut any = false;
    for j in &r.jobs {
        for e in j.entries.iter().filter(|e| e.outcome != "ACCEPTED") {
            any = true;
            let _ = writeln!(
                m,
                "- job `{}` round {} attempt {}: `{}` {}: {}",
                cell(&j.job_id),
                e.round,
                e.attempt,
                cell(&e.client_id),
                e.outcome.to_lowercase(),
                cell(&e.reason)
            );
        }
    }
    if !any {
        let _ = writeln!(m, "None recorded.");
    }
    let _ = writeln!(m, "\n## Admin actions (hash-chained audit log)\n");
    let admin: Vec<_> = r.audit.iter().filter(|a| a.admin_action).collect();
    if admin.is_empty() {
        let _ = writeln!(m, "None.");
    }
    for a in admin {
        let _ = writeln!(
            m,
            "- #{} at {} ms: {} {}",
            a.id,
            a.unix_ms,
            a.kind,
            cell(&a.detail)
        );
    }
    let _ = writeln!(m, "\n## Timeline\n");
    for t in &r.timeline {
        let _ = writeln!(m, "- {} ms: {}", t.unix_ms, cell(&t.what));
    }
    if r.coverage.audit_truncated {
        let _ = writeln!(
            m,
            "\n(More audit events concern the subject than are listed.)"
        );
    }
    let _ = writeln!(
        m,
        "\n## Remediation and follow-up\n\nTODO (responder): containment, rollback, recovery, lessons."
    );
    m
}
