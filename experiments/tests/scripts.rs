//! The scripts in `experiments/scripts/` call subcommands of this very
//! binary: each one, run with `fast` and the built binary
//! (`FEDSEC_EXPERIMENTS_BIN`), must reach its subcommand with `--mode fast
//! --seed 1` (checked through `--help`, which parses the subcommand and
//! stops). What fast mode computes is exercised in `fast_mode.rs`, which
//! calls the same functions these subcommands call.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

const SCRIPTS: [(&str, &str); 7] = [
    ("privacy_utility.sh", "Held-out AUC against ε"),
    ("non_iid.sh", "Non-IID tenants"),
    ("scale.sh", "Scale"),
    ("poisoning.sh", "Poisoning"),
    ("small_tenants.sh", "Small tenants"),
    ("audit.sh", "Empirical privacy audit"),
    ("weak_labels.sh", "Weak labels"),
];

#[test]
fn every_script_reaches_its_subcommand_in_fast_mode() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts");
    for (script, about) in SCRIPTS {
        let out = Command::new("bash")
            .arg(dir.join(script))
            .args(["fast", "--help"])
            .env(
                "FEDSEC_EXPERIMENTS_BIN",
                env!("CARGO_BIN_EXE_fedsec-experiments"),
            )
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains(about), "{script}: {stdout}");
        assert!(stdout.contains("--mode"), "{script}: {stdout}");
    }
    // all.sh runs every one of them.
    let all = std::fs::read_to_string(dir.join("all.sh")).unwrap();
    for (script, _) in SCRIPTS {
        assert!(all.contains(script.trim_end_matches(".sh")), "{script}");
    }
}
