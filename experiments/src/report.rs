//! Output files: CSV tables and the sections of `experiments/results/README.md`.
//!
//! Each experiment owns one section of the results README, delimited by
//! `<!-- section:KEY -->` … `<!-- /section:KEY -->`. Writing a section
//! replaces only that section and keeps the others, in the canonical order
//! of [`SECTION_ORDER`], so the experiments can be re-run one at a time.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::error::{Error, Result};

/// Keys of the results README's sections, in the order they appear.
pub const SECTION_ORDER: [&str; 5] = [
    "privacy-utility",
    "non-iid",
    "scale",
    "poisoning",
    "small-tenants",
];

/// Text above the first section of a new results README.
pub const README_HEADER: &str = "# fedsec experiment results\n\n\
Written by `fedsec-experiments` (one section per experiment; each script in\n\
`experiments/scripts/` regenerates its own section, CSV and PNG). Simulated\n\
clients run in-process and the server noise comes from the seeded\n\
`SimulationGaussian` source (fast, reproducible, not production-safe); the\n\
privacy accounting is the coordinator's (PLD, add/remove-one-client).\n\
See `experiments/README.md` for how to run them.\n";

/// Writes `rows` as a CSV file with a header row.
pub fn write_csv<T: Serialize>(path: &Path, rows: &[T]) -> Result<()> {
    let csv_err = |source| Error::Csv {
        path: path.to_owned(),
        source,
    };
    let mut w = csv::Writer::from_path(path).map_err(csv_err)?;
    for r in rows {
        w.serialize(r).map_err(csv_err)?;
    }
    w.flush().map_err(|e| Error::io(path, e))?;
    Ok(())
}

fn open_marker(key: &str) -> String {
    format!("<!-- section:{key} -->")
}

fn close_marker(key: &str) -> String {
    format!("<!-- /section:{key} -->")
}

/// Splits a README into its header and its sections by key.
fn parse(text: &str) -> (String, BTreeMap<String, String>) {
    let mut sections = BTreeMap::new();
    let mut header = String::new();
    let mut rest = text;
    let mut first = true;
    while let Some(start) = rest.find("<!-- section:") {
        if first {
            header = rest[..start].to_string();
            first = false;
        }
        let after = &rest[start + "<!-- section:".len()..];
        let Some(end_key) = after.find(" -->") else {
            break;
        };
        let key = after[..end_key].to_string();
        let body_start = start + "<!-- section:".len() + end_key + " -->".len();
        let close = close_marker(&key);
        let Some(close_at) = rest[body_start..].find(&close) else {
            break;
        };
        let body = rest[body_start..body_start + close_at].trim().to_string();
        sections.insert(key, body);
        rest = &rest[body_start + close_at + close.len()..];
    }
    if first {
        header = text.to_string();
    }
    (header, sections)
}

/// Replaces (or adds) section `key` of the README at `path` with `body`.
pub fn upsert_section(path: &Path, key: &str, body: &str) -> Result<()> {
    let existing = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(Error::io(path, e)),
    };
    let (mut header, mut sections) = parse(&existing);
    if header.trim().is_empty() {
        header = README_HEADER.to_string();
    }
    sections.insert(key.to_string(), body.trim().to_string());
    let mut keys: Vec<&String> = sections.keys().collect();
    keys.sort_by_key(|k| {
        (
            SECTION_ORDER
                .iter()
                .position(|o| o == k)
                .unwrap_or(SECTION_ORDER.len()),
            (*k).clone(),
        )
    });
    let mut out = header.trim_end().to_string();
    out.push_str("\n\n");
    for k in keys {
        out.push_str(&open_marker(k));
        out.push('\n');
        out.push_str(&sections[k]);
        out.push('\n');
        out.push_str(&close_marker(k));
        out.push_str("\n\n");
    }
    let out = out.trim_end().to_string() + "\n";
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    std::fs::write(path, out).map_err(|e| Error::io(path, e))
}

/// A Markdown table from a header and rows of cells.
pub fn markdown_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut s = format!("| {} |\n|", header.join(" | "));
    for _ in header {
        s.push_str("---|");
    }
    s.push('\n');
    for r in rows {
        s.push_str(&format!("| {} |\n", r.join(" | ")));
    }
    s
}

/// Formats an AUC (or any value in [0, 1]) with 3 decimals, "–" if undefined.
pub fn f3(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.3}")
    } else {
        "–".into()
    }
}

/// Formats ε: "∞" without noise.
pub fn eps(v: f64) -> String {
    if v.is_infinite() {
        "∞".into()
    } else if v.is_finite() {
        format!("{v:.2}")
    } else {
        "–".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_are_replaced_in_place_and_kept_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("README.md");
        upsert_section(&p, "scale", "## Scale\nv1").unwrap();
        upsert_section(&p, "privacy-utility", "## PU\nv1").unwrap();
        upsert_section(&p, "scale", "## Scale\nv2").unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.starts_with("# fedsec experiment results"));
        assert!(text.contains("v2") && !text.contains("## Scale\nv1"));
        let pu = text.find("## PU").unwrap();
        let sc = text.find("## Scale").unwrap();
        assert!(pu < sc, "canonical order");
        // Idempotent.
        upsert_section(&p, "scale", "## Scale\nv2").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), text);
        assert_eq!(text.matches("<!-- section:").count(), 2);
    }

    #[test]
    fn tables_and_numbers() {
        let t = markdown_table(&["a", "b"], &[vec!["1".into(), "2".into()]]);
        assert_eq!(t, "| a | b |\n|---|---|\n| 1 | 2 |\n");
        assert_eq!(f3(0.12345), "0.123");
        assert_eq!(f3(f64::NAN), "–");
        assert_eq!(eps(f64::INFINITY), "∞");
        assert_eq!(eps(2.5), "2.50");
    }
}
