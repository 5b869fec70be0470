#!/usr/bin/env bash
# Clip-and-accumulate throughput as a ratio to a plain memory-bandwidth loop
# (acc[i] += v[i] as f64, as compiled and under AVX2 dispatch; the faster one)
# measured in the same run, at d = 100,000 (in cache)
# and d = 16,777,216 (memory-bound). Goal: ratio >= 0.7.
#
#   benches/scripts/aggregation_ratio.sh          # summary only (~1 min)
#   FULL=1 benches/scripts/aggregation_ratio.sh   # criterion runs too
set -euo pipefail
cd "$(dirname "$0")/../.."
filter=${FULL:+aggregation}
# A filter that matches no criterion benchmark skips straight to the summary.
cargo bench -q -p fedsec-benches --bench aggregation -- "${filter:-summary-only}" 2>/dev/null |
    sed -n '/aggregation summary/,$p'
