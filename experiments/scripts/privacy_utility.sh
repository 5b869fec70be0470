#!/usr/bin/env bash
# 1. Privacy–utility: held-out AUC against ε for several noise multipliers.
# Runs seeds 1, 2, 3 (full mode) or 1, 2 (fast mode): mean ± sd over seeds.
# Writes experiments/results/privacy_utility.{csv,png} and its section of
# experiments/results/README.md (full mode), or the same under
# experiments/out/fast/ (fast mode, CI-sized: seconds).
#
#   experiments/scripts/privacy_utility.sh [fast|full] [extra fedsec-experiments args]
set -euo pipefail
cd "$(dirname "$0")/../.."
mode=${1:-full}
shift || true
# FEDSEC_EXPERIMENTS_BIN: a built fedsec-experiments binary to use instead
# of `cargo run` (the tests run the scripts that way).
if [ -n "${FEDSEC_EXPERIMENTS_BIN:-}" ]; then
    exec "$FEDSEC_EXPERIMENTS_BIN" privacy-utility --mode "$mode" --seed 1 "$@"
fi
profile=--release
[ "$mode" = fast ] && profile=
exec cargo run -q $profile -p fedsec-experiments -- privacy-utility --mode "$mode" --seed 1 "$@"
