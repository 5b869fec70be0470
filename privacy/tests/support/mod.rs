//! Shared helpers of the fedsec-privacy integration tests: reading the
//! reference tables copied into `tests/data/`.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::PathBuf;

/// Path of a file in `tests/data/`.
pub(crate) fn data_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("data")
        .join(name)
}

/// One row of a reference CSV: column name → raw string.
#[derive(Debug, Clone)]
pub(crate) struct Row(pub(crate) HashMap<String, String>);

impl Row {
    /// The column parsed as f64 (panics if missing or empty).
    pub(crate) fn f(&self, col: &str) -> f64 {
        self.opt(col)
            .unwrap_or_else(|| panic!("column {col} is empty in {self:?}"))
    }
    /// The column parsed as f64, `None` if empty.
    pub(crate) fn opt(&self, col: &str) -> Option<f64> {
        let s = self.0.get(col).unwrap_or_else(|| panic!("no column {col}"));
        if s.trim().is_empty() {
            None
        } else {
            Some(s.trim().parse().unwrap())
        }
    }
    /// The column parsed as u64.
    pub(crate) fn u(&self, col: &str) -> u64 {
        self.f(col) as u64
    }
    /// A short label for assertion messages.
    pub(crate) fn label(&self) -> String {
        format!(
            "q={} z={} T={} δ={}",
            self.0["q"], self.0["z"], self.0["T"], self.0["delta"]
        )
    }
}

/// Reads a simple comma-separated file with a header line.
pub(crate) fn read_csv(name: &str) -> Vec<Row> {
    let text = std::fs::read_to_string(data_path(name)).unwrap();
    let mut lines = text.lines();
    let header: Vec<String> = lines
        .next()
        .unwrap()
        .split(',')
        .map(|s| s.trim().to_string())
        .collect();
    lines
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let cells: Vec<&str> = l.split(',').collect();
            Row(header
                .iter()
                .cloned()
                .zip(cells.iter().map(|c| c.to_string()))
                .collect())
        })
        .collect()
}
