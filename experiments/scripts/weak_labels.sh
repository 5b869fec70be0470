#!/usr/bin/env bash
# 7. Weak labels: a federation where 0 %, 10 % or 100 % of tenants have
# ground-truth labels (the rest the weak labeller's silver labels), against
# the rules alone and local anomaly scores; 3 seeds.
# Writes experiments/results/weak_labels.{csv,png} and its section of
# experiments/results/README.md (full mode), or the same under
# experiments/out/fast/ (fast mode: a few minutes in a debug build).
# In full mode it also runs the per-tenant IsolationForest baseline
# (scikit-learn in a venv under target/, created on first use; not in CI):
# experiments/results/weak_labels_iforest.{csv,md}.
#
#   experiments/scripts/weak_labels.sh [fast|full] [extra fedsec-experiments args]
set -euo pipefail
cd "$(dirname "$0")/../.."
mode=${1:-full}
shift || true
features=target/weak-labels-features
args=(weak-labels --mode "$mode" --seed 1 --seeds 3)
[ "$mode" = full ] && args+=(--export-features "$features")
# FEDSEC_EXPERIMENTS_BIN: a built fedsec-experiments binary to use instead
# of `cargo run` (the tests run the scripts that way).
if [ -n "${FEDSEC_EXPERIMENTS_BIN:-}" ]; then
    run=("$FEDSEC_EXPERIMENTS_BIN")
else
    profile=--release
    [ "$mode" = fast ] && profile=
    run=(cargo run -q $profile -p fedsec-experiments --)
fi
"${run[@]}" "${args[@]}" "$@"
case " $* " in *" --help "*|*" -h "*) exit 0 ;; esac
if [ "$mode" = full ]; then
    venv=target/sklearn-venv
    if [ ! -x "$venv/bin/python" ]; then
        python3 -m venv "$venv"
        "$venv/bin/pip" install -q scikit-learn
    fi
    "$venv/bin/python" experiments/scripts/iforest_baseline.py --features "$features" \
        --csv experiments/results/weak_labels_iforest.csv \
        --md experiments/results/weak_labels_iforest.md
fi
