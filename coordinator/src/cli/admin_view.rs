//! How admin command results are shown: JSON values and human tables for
//! jobs, clients, ledger entries, model versions and audit events.

use fedsec_coordinator::JobSpec;
use fedsec_coordinator::config::DangerousConfig;
use fedsec_proto::v1;
use serde_json::{Value, json};

pub(crate) fn num(v: f64) -> Value {
    if v.is_finite() {
        json!(v)
    } else {
        json!(if v > 0.0 { "inf" } else { "-inf" })
    }
}

pub(crate) fn short(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix).unwrap_or(name).to_owned()
}

pub(crate) fn job_state(s: i32) -> String {
    v1::JobState::try_from(s)
        .map_or_else(|_| s.to_string(), |s| short(s.as_str_name(), "JOB_STATE_"))
}

pub(crate) fn job_json(j: &v1::Job) -> Value {
    let permissive = DangerousConfig {
        allow_simulation_noise: true,
        allow_disabled_noise: true,
    };
    let config = j
        .config
        .as_ref()
        .and_then(|c| JobSpec::from_proto(c, &permissive).ok())
        .and_then(|s| serde_json::to_value(s).ok())
        .unwrap_or(Value::Null);
    json!({
        "job_id": j.job_id,
        "state": job_state(j.state),
        "state_reason": j.state_reason,
        "rounds_completed": j.rounds_completed,
        "current_version": j.current_version,
        "sampling_rate": num(j.sampling_rate),
        "expected_cohort": num(j.expected_cohort),
        "registered_tenants": j.registered_tenants,
        "noise_multiplier": num(j.noise_multiplier),
        "clip_norm": num(j.clip_norm),
        "epsilon_pld": num(j.epsilon_pld),
        "epsilon_rdp": num(j.epsilon_rdp),
        "created_unix_ms": j.created_unix_ms,
        "store_fault": j.store_fault.as_ref().map(|f| json!({
            "error": f.error,
            "since_unix_ms": f.since_unix_ms,
            "retries": f.retries,
            "next_retry_unix_ms": f.next_retry_unix_ms,
        })),
        "config": config,
    })
}

pub(crate) fn client_json(c: &v1::ClientInfo) -> Value {
    json!({
        "client_id": c.client_id,
        "tenant_id": c.tenant_id,
        "status": v1::ClientStatus::try_from(c.status)
            .map_or_else(|_| c.status.to_string(), |s| short(s.as_str_name(), "CLIENT_STATUS_")),
        "status_reason": c.status_reason,
        "registered_unix_ms": c.registered_unix_ms,
        "last_seen_unix_ms": c.last_seen_unix_ms,
        "rounds_participated": c.rounds_participated,
        "software": c.software,
    })
}

pub(crate) fn ledger_json(e: &v1::LedgerEntry) -> Value {
    json!({
        "seq": e.seq,
        "kind": v1::LedgerEntryKind::try_from(e.kind)
            .map_or_else(|_| e.kind.to_string(), |k| short(k.as_str_name(), "LEDGER_ENTRY_KIND_")),
        "charge": e.charge.map(|c| json!({
            "round": c.round,
            "sampling_rate": num(c.sampling_rate),
            "noise_multiplier": num(c.noise_multiplier),
            "clip_norm": num(c.clip_norm),
            "sensitivity": num(c.sensitivity),
            "count_stddev": num(c.count_stddev),
            "expected_cohort": num(c.expected_cohort),
            "committed_unix_ms": c.committed_unix_ms,
        })),
        "attempt": e.attempt,
        "epsilon_pld": num(e.epsilon_pld),
        "epsilon_rdp": num(e.epsilon_rdp),
        "delta": num(e.delta),
        "model_version": e.model_version,
        "participants": e.participants,
        "rejected": e.rejected,
        "clipped_fraction": num(e.clipped_fraction),
        "note": e.note,
        "committed_unix_ms": e.committed_unix_ms,
    })
}

pub(crate) fn model_json(m: &v1::ModelVersionInfo) -> Value {
    json!({
        "version": m.version,
        "round": m.round,
        "sha256": hex::encode(&m.sha256),
        "created_unix_ms": m.created_unix_ms,
        "epsilon_pld": num(m.epsilon_pld),
        "current": m.current,
    })
}

pub(crate) fn audit_json(e: &v1::AuditEvent) -> Value {
    json!({
        "id": e.id,
        "unix_ms": e.unix_ms,
        "kind": e.kind,
        "job_id": e.job_id,
        "client_id": e.client_id,
        "detail": e.detail,
    })
}

pub(crate) fn eps(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.4}")
    } else {
        "inf".into()
    }
}

pub(crate) fn print_jobs(jobs: &[v1::Job]) {
    println!(
        "{:<24} {:<17} {:>7} {:>7} {:>9} {:>9} {:>10}",
        "JOB", "STATE", "ROUNDS", "VERSION", "Q", "Z", "EPSILON"
    );
    for j in jobs {
        let rounds = j.config.as_ref().map_or(0, |c| c.rounds);
        println!(
            "{:<24} {:<17} {:>7} {:>7} {:>9.4} {:>9.4} {:>10}",
            j.job_id,
            job_state(j.state),
            format!("{}/{rounds}", j.rounds_completed),
            j.current_version,
            j.sampling_rate,
            j.noise_multiplier,
            eps(j.epsilon_pld),
        );
        if !j.state_reason.is_empty() {
            println!("    {}", j.state_reason);
        }
        if let Some(f) = &j.store_fault {
            println!(
                "    held by a store fault since {} ms ({} failed tries, retrying): {}",
                f.since_unix_ms, f.retries, f.error
            );
        }
    }
}
