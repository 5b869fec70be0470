//! The PLD accountant at small δ (1e-8 … 1e-12) against Google dp_accounting's
//! PLD accountant at value interval 1e-5 (`tests/data/pld_small_delta.csv`,
//! made by `tests/data/pld_small_delta.py`).
//!
//! Before the tilted composition with a rigorous error bound, every one of
//! these calls below δ = 1e-10 was refused (`DeltaBelowFloor`), and e.g.
//! `q = 0.001, z = 1, T = 1000` was refused below δ ≈ 1.1e-7.
#![allow(clippy::unwrap_used)]

use fedsec_privacy::accounting::{Mechanism, PldAccountant};

struct Row {
    q: f64,
    z: f64,
    t: u64,
    delta: f64,
    eps: f64,
}

fn rows() -> Vec<Row> {
    let text = include_str!("data/pld_small_delta.csv");
    text.lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            Row {
                q: f[0].parse().unwrap(),
                z: f[1].parse().unwrap(),
                t: f[2].parse().unwrap(),
                delta: f[3].parse().unwrap(),
                eps: f[4].parse().unwrap(),
            }
        })
        .collect()
}

/// Rows where dp_accounting itself is pessimistic by more than 0.5 %: its
/// composition truncates `1e-15`-ish tail mass per step into δ, which at
/// δ = 1e-12 over 10⁶ rounds is most of δ (it reports 2.31 at δ = 1e-12
/// against 0.77 at 1e-10 for q = 1e-4, z = 1). There fedsec may be below it
/// (measured down to −1.6 %) and must not be more than 2 % above it.
fn dp_accounting_truncation_dominates(r: &Row) -> bool {
    r.delta <= 1e-12 && r.t >= 1000
}

/// The fast rows (T ≤ 100, q ≥ 0.01; ~10 s in a debug build): always run.
#[test]
fn small_deltas_match_dp_accounting_fast_rows() {
    check(|r| r.t <= 100 && r.q >= 0.01);
}

/// Every row up to T = 10⁵ (~11 min in a debug build on a loaded 2-core
/// machine, a fraction of that in release):
/// `cargo test --release -p fedsec-privacy --test pld_small_delta -- --ignored --nocapture`.
#[test]
#[ignore = "slow in debug builds; run with --release --ignored"]
fn small_deltas_match_dp_accounting_all_rows() {
    check(|r| r.t <= 100_000);
}

fn check(select: impl Fn(&Row) -> bool) {
    let mut report = Vec::new();
    let mut worst: (f64, f64) = (0.0, 0.0);
    let mut fallbacks = 0;
    for r in rows().iter().filter(|r| select(r)) {
        let m = Mechanism {
            sampling_rate: r.q,
            noise_multiplier: r.z,
        };
        let got = PldAccountant
            .epsilon_detailed(&[(m, r.t)], r.delta)
            .unwrap();
        let rel = got.epsilon / r.eps - 1.0;
        report.push(format!(
            "q={} z={} T={} δ={:e}: fedsec {:.6} dp_accounting {:.6} ({:+.3} %), error share {:.1e}, rdp fallback {}",
            r.q, r.z, r.t, r.delta, got.epsilon, r.eps, 100.0 * rel, got.error_delta / r.delta, got.rdp_fallback
        ));
        if dp_accounting_truncation_dominates(r) {
            assert!(rel <= 0.02, "{}", report.last().unwrap());
            continue;
        }
        if got.rdp_fallback {
            // The PLD's error bound took > 1 % of δ: RDP answered, said so,
            // and is never optimistic.
            assert!(rel >= 0.0, "{}", report.last().unwrap());
            fallbacks += 1;
            continue;
        }
        worst = (worst.0.min(rel), worst.1.max(rel));
        assert!((-0.005..=0.01).contains(&rel), "{}", report.last().unwrap());
    }
    eprintln!(
        "{}\nworst: {:+.3} % … {:+.3} %; RDP fallbacks: {fallbacks}",
        report.join("\n"),
        100.0 * worst.0,
        100.0 * worst.1
    );
    // q = 1e-5, z = 0.5, T = 100 at δ ≤ 1e-9 (3 rows) fell back while the
    // error share was judged at each direction's own ε; since it is judged at
    // the reported ε they answer by PLD (checked one by one: +0.03 %,
    // +0.01 %, −0.18 %). The all-rows run has not been repeated since, so
    // the limit stays at what was measured.
    assert!(fallbacks <= 3, "{fallbacks} RDP fallbacks");
}
