#!/usr/bin/env bash
# 1. Privacy–utility: held-out AUC against ε for several noise multipliers.
# Writes experiments/results/privacy_utility.{csv,png} and its section of
# experiments/results/README.md (full mode), or the same under
# experiments/out/fast/ (fast mode, CI-sized: seconds).
#
#   experiments/scripts/privacy_utility.sh [fast|full] [extra fedsec-experiments args]
set -euo pipefail
cd "$(dirname "$0")/../.."
mode=${1:-full}
shift || true
profile=--release
[ "$mode" = fast ] && profile=
exec cargo run -q $profile -p fedsec-experiments -- privacy-utility --mode "$mode" --seed 1 "$@"
