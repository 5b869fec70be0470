//! Times the PLD accountant on the settings of the `pld_smallest_delta` and
//! `epsilon_10k` benchmarks (release build; a quick same-machine check while
//! iterating, the criterion bench in `benches/` is the measurement of record).
//!
//! ```sh
//! cargo run --release -p fedsec-privacy --example pld_timer [-- REPEATS [FILTER]]
//! ```
//!
//! Prints, per setting, ε, the error share of δ, whether the RDP fallback
//! answered, and the best and median wall time of `REPEATS` runs (default
//! 3), and the median CPU time of the calling thread (from
//! `/proc/thread-self/schedstat` where available: on a loaded machine the
//! wall time measures the load as much as the code).
#![allow(clippy::unwrap_used)]

use std::time::Instant;

use fedsec_privacy::accounting::{Mechanism, PldAccountant};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let repeats: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(3);
    let filter = args.get(2).cloned().unwrap_or_default();
    let abadi = Mechanism {
        sampling_rate: 0.01,
        noise_multiplier: 4.0,
    };
    let small = Mechanism {
        sampling_rate: 0.01,
        noise_multiplier: 1.0,
    };
    let settings: Vec<(String, Mechanism, u64, f64)> = vec![
        ("epsilon_10k/pld".into(), abadi, 10_000, 1e-5),
        ("epsilon_100k/pld".into(), abadi, 100_000, 1e-5),
        ("pld_smallest_delta/1000".into(), small, 1_000, 1e-15),
        ("pld_smallest_delta/10000".into(), small, 10_000, 1e-15),
        ("pld_smallest_delta/100000".into(), small, 100_000, 1e-15),
        ("pld_smallest_delta/1000000".into(), small, 1_000_000, 1e-15),
    ];
    for (name, m, t, delta) in settings {
        if !name.contains(&filter) {
            continue;
        }
        let mut times = Vec::new();
        let mut cpu = Vec::new();
        let mut last = None;
        for _ in 0..repeats.max(1) {
            let (start, cpu_start) = (Instant::now(), thread_cpu_seconds());
            let d = PldAccountant.epsilon_detailed(&[(m, t)], delta).unwrap();
            times.push(start.elapsed().as_secs_f64());
            if let (Some(a), Some(b)) = (cpu_start, thread_cpu_seconds()) {
                cpu.push(b - a);
            }
            last = Some(d);
        }
        times.sort_by(f64::total_cmp);
        cpu.sort_by(f64::total_cmp);
        let cpu = cpu
            .get(cpu.len() / 2)
            .map_or("n/a".to_string(), |c| format!("{c:.3} s"));
        let d = last.unwrap();
        println!(
            "{name:28} ε = {:.6}  error share {:.1e}  rdp fallback {}  best {:.3} s  median {:.3} s  cpu {cpu}",
            d.epsilon,
            d.error_delta / delta,
            d.rdp_fallback,
            times[0],
            times[times.len() / 2],
        );
    }
}

/// CPU time of the calling thread so far, in seconds (Linux).
fn thread_cpu_seconds() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: f64 = text.split_whitespace().next()?.parse().ok()?;
    Some(ns * 1e-9)
}
