#!/usr/bin/env bash
# 2. Non-IID tenants: Dirichlet α ∈ {0.1, 0.5, 1, 10}.
# Runs seeds 1, 2, 3 (full mode) or 1, 2 (fast mode): mean ± sd over seeds.
# Writes experiments/results/non_iid.{csv,png} and its section of
# experiments/results/README.md (full mode), or the same under
# experiments/out/fast/ (fast mode, CI-sized: seconds).
#
#   experiments/scripts/non_iid.sh [fast|full] [extra fedsec-experiments args]
set -euo pipefail
cd "$(dirname "$0")/../.."
mode=${1:-full}
shift || true
# FEDSEC_EXPERIMENTS_BIN: a built fedsec-experiments binary to use instead
# of `cargo run` (the tests run the scripts that way).
if [ -n "${FEDSEC_EXPERIMENTS_BIN:-}" ]; then
    exec "$FEDSEC_EXPERIMENTS_BIN" non-iid --mode "$mode" --seed 1 "$@"
fi
profile=--release
[ "$mode" = fast ] && profile=
exec cargo run -q $profile -p fedsec-experiments -- non-iid --mode "$mode" --seed 1 "$@"
