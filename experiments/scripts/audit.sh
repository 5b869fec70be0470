#!/usr/bin/env bash
# 6. Empirical privacy audit: the coordinator's canary mode with noise
# calibrated to ε ∈ {1, 2, 4, 8} (δ = 1e-6) and once without noise.
# Runs seeds 1, 2, 3 (full mode: each seed's audit and the canaries pooled
# over seeds) or seed 1 alone (fast mode, CI's cost of one audit).
# Writes experiments/results/audit.{csv,png} and its section of
# experiments/results/README.md (full mode), or the same under
# experiments/out/fast/ (fast mode, CI-sized: seconds).
# Exits non-zero if any lower bound exceeds the accountant's ε, or if the
# run without noise does not report a large ε.
#
#   experiments/scripts/audit.sh [fast|full] [extra fedsec-experiments args]
set -euo pipefail
cd "$(dirname "$0")/../.."
mode=${1:-full}
shift || true
# FEDSEC_EXPERIMENTS_BIN: a built fedsec-experiments binary to use instead
# of `cargo run` (the tests run the scripts that way).
if [ -n "${FEDSEC_EXPERIMENTS_BIN:-}" ]; then
    exec "$FEDSEC_EXPERIMENTS_BIN" audit --mode "$mode" --seed 1 "$@"
fi
profile=--release
[ "$mode" = fast ] && profile=
exec cargo run -q $profile -p fedsec-experiments -- audit --mode "$mode" --seed 1 "$@"
