#!/usr/bin/env bash
# Round latency and coordinator peak RSS with 10, 100 and 1,000 clients per
# round at d = 100,000 parameters: the coordinator runs as its own process
# (`fedsec-coordinator serve`, release build) and a separate load generator
# drives the clients over mTLS, so the RSS is the coordinator's alone. This
# runs the coordinator's RSS harness (benches/scripts/coordinator_rss.sh) at
# that size; s/round there is wall time per round including the clients'
# polling. In-process round latency per phase: `cargo bench --bench round`.
#
#   benches/scripts/round_rss.sh
#   NOISE=opendp benches/scripts/round_rss.sh     # production noise
set -euo pipefail
cd "$(dirname "$0")/../.."
export DIM=${DIM:-100000}
export CLIENTS=${CLIENTS:-"10 100 1000"}
export ROUNDS=${ROUNDS:-5}
exec benches/scripts/coordinator_rss.sh
