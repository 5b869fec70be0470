#!/usr/bin/env bash
# 2. Non-IID tenants: Dirichlet α ∈ {0.1, 0.5, 1, 10}.
# Writes experiments/results/non_iid.{csv,png} and its section of
# experiments/results/README.md (full mode), or the same under
# experiments/out/fast/ (fast mode, CI-sized: seconds).
#
#   experiments/scripts/non_iid.sh [fast|full] [extra fedsec-experiments args]
set -euo pipefail
cd "$(dirname "$0")/../.."
mode=${1:-full}
shift || true
profile=--release
[ "$mode" = fast ] && profile=
exec cargo run -q $profile -p fedsec-experiments -- non-iid --mode "$mode" --seed 1 "$@"
