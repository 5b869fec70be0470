//! The demo's tenant data on disk: for each tenant, the detector's generator
//! writes a log over two days; the first 70 % of that time window is written
//! to `tenant-NNN.log` (with the full labels file) for the tenant's
//! participant to train on, and the sessions that start in the last 30 % are
//! the tenant's held-out evaluation set, which no participant reads.
//!
//! A time split is what a deployment would do (train on the past, check on
//! the future), and it keeps the evaluation sessions out of the files the
//! real client reads without coupling to the client's own holdout logic.

use std::io::Write;
use std::path::{Path, PathBuf};

use fedsec_detector::dataset::Dataset;
use fedsec_detector::logs::{LogFormat, ReaderConfig, clf, json};
use fedsec_detector::session::SessionConfig;
use fedsec_detector::synth::{
    self, SynthConfig, join_labels_with, netplan, read_labels, tenant_file_names,
};

use crate::data::TenantData;
use crate::error::{Error, Result};
use crate::sim::parallel_map;

/// Share of the generated time window written to the training log.
pub const TRAIN_WINDOW: f64 = 0.7;

/// One tenant's files and in-memory datasets.
#[derive(Debug, Clone)]
pub struct DemoTenant {
    /// Sessions the participant will read (from the log file, for baselines).
    pub data: TenantData,
    /// Log file the participant reads.
    pub log: PathBuf,
    /// Labels file the participant reads.
    pub labels: PathBuf,
    /// Log lines written.
    pub lines: usize,
    /// Bytes written (log + labels).
    pub bytes: u64,
}

/// Timestamp of a generated log line (CLF or JSON), if it parses.
fn line_ts(line: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(line).ok()?.trim_end();
    let rec = if text.starts_with('{') {
        json::parse_line(text).ok()?
    } else {
        clf::parse_line(text).ok()?
    };
    Some(rec.ts_ms)
}

/// Byte offset of the first line at or after `cutoff_ms` (lines are in time order).
pub fn split_offset(log: &[u8], cutoff_ms: i64) -> usize {
    let mut starts = vec![0usize];
    starts.extend(
        log.iter()
            .enumerate()
            .filter(|(i, b)| **b == b'\n' && i + 1 < log.len())
            .map(|(i, _)| i + 1),
    );
    let line_at = |k: usize| {
        let s = starts[k];
        let e = starts.get(k + 1).copied().unwrap_or(log.len());
        &log[s..e]
    };
    // First line whose timestamp is ≥ cutoff (unparsable lines count as before).
    let (mut lo, mut hi) = (0usize, starts.len());
    while lo < hi {
        let mid = (lo + hi) / 2;
        if line_ts(line_at(mid)).is_some_and(|t| t >= cutoff_ms) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    starts.get(lo).copied().unwrap_or(log.len())
}

fn sessions(log: &[u8], labels: &[u8], tenant: usize) -> Result<Dataset> {
    let labels = read_labels(labels).map_err(|e| Error::Synth {
        tenant,
        message: e.to_string(),
    })?;
    let ls = join_labels_with(
        log,
        ReaderConfig::with_format(LogFormat::Auto),
        SessionConfig::default(),
        netplan::enrichment(),
        &labels,
    )
    .map_err(|e| Error::Synth {
        tenant,
        message: e.to_string(),
    })?;
    Ok(ls.dataset)
}

/// Generates tenant `index`, writes its training log and labels into `dir`,
/// and returns its training and held-out sessions.
pub fn write_tenant(cfg: &SynthConfig, index: usize, dir: &Path) -> Result<DemoTenant> {
    let t = synth::generate_tenant(cfg, index).map_err(|e| Error::Synth {
        tenant: index,
        message: e.to_string(),
    })?;
    let window_ms = i64::from(cfg.days) * 86_400_000;
    let cutoff = cfg.start_unix_ms + (TRAIN_WINDOW * window_ms as f64) as i64;
    let off = split_offset(&t.log, cutoff);
    let (train_log, future) = t.log.split_at(off);
    let train = sessions(train_log, &t.labels, index)?;
    let holdout = sessions(future, &t.labels, index)?;
    let (log_name, labels_name) = tenant_file_names(index);
    let (log, labels) = (dir.join(log_name), dir.join(labels_name));
    let write = |p: &Path, bytes: &[u8]| -> Result<()> {
        let mut f = std::fs::File::create(p).map_err(|e| Error::io(p, e))?;
        f.write_all(bytes).map_err(|e| Error::io(p, e))
    };
    write(&log, train_log)?;
    write(&labels, &t.labels)?;
    Ok(DemoTenant {
        data: TenantData {
            index,
            name: t.summary.profile.name.clone(),
            kind: t.summary.profile.kind,
            train,
            holdout,
        },
        log,
        labels,
        lines: train_log.iter().filter(|&&b| b == b'\n').count(),
        bytes: (train_log.len() + t.labels.len()) as u64,
    })
}

/// Writes every tenant into `dir` on `threads` threads.
pub fn write_all(
    cfg: &SynthConfig,
    dir: &Path,
    threads: usize,
    progress: &(dyn Fn() + Sync),
) -> Result<Vec<DemoTenant>> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let idx: Vec<usize> = (0..cfg.tenants).collect();
    parallel_map(&idx, threads, |&i| {
        let r = write_tenant(cfg, i, dir);
        progress();
        r
    })
    .into_iter()
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_split_separates_past_and_future_sessions() {
        let cfg = SynthConfig {
            tenants: 1,
            seed: 4,
            median_sessions: 120.0,
            min_sessions: 100,
            max_sessions: 150,
            days: 2,
            ..SynthConfig::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let t = write_tenant(&cfg, 0, dir.path()).unwrap();
        let (tr, ho) = (&t.data.train, &t.data.holdout);
        // Both sides non-trivial (the split is by time, traffic follows daily cycles).
        let share = ho.len() as f64 / (tr.len() + ho.len()) as f64;
        assert!(share > 0.05 && share < 0.75, "{share}");
        let text = std::fs::read(&t.log).unwrap();
        let cutoff = cfg.start_unix_ms + (TRAIN_WINDOW * 2.0 * 86_400_000.0) as i64;
        assert!(
            text.split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .all(|l| line_ts(l).unwrap() < cutoff)
        );
        assert_eq!(t.lines, text.iter().filter(|&&b| b == b'\n').count());
        assert_eq!(split_offset(b"", 0), 0);
    }
}
