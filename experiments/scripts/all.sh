#!/usr/bin/env bash
# Every experiment, one after the other (full mode: the committed results,
# within 45 minutes on 2 cores; fast mode: under a minute).
#
#   experiments/scripts/all.sh [fast|full]
set -euo pipefail
cd "$(dirname "$0")"
mode=${1:-full}
start=$SECONDS
for s in privacy_utility non_iid scale poisoning small_tenants audit weak_labels; do
    ./$s.sh "$mode"
done
echo "all experiments ($mode mode) took $((SECONDS - start)) s"
