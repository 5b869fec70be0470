#!/usr/bin/env bash
# Peak RSS of the coordinator with 10, 100 and 1,000 clients per round at
# d = 1,000,000 parameters (4 MB per update), against the same process's RSS
# before any round (baseline, measured in the same run). Streaming
# aggregation keeps memory O(model): the peak must stay flat in the number
# of clients.
#
#   benches/scripts/coordinator_rss.sh            # 10 100 1000 clients, 3 rounds
#   CLIENTS="10 100" ROUNDS=2 benches/scripts/coordinator_rss.sh
#   NOISE=opendp benches/scripts/coordinator_rss.sh   # one noise source
#   CLIENTS=100 NOISE="simulation discrete opendp" benches/scripts/coordinator_rss.sh
#                                     # several sources in one run: prints each
#                                     # source's s/round over simulation's (the
#                                     # issue-18 gate: discrete / simulation ≤ 1.3;
#                                     # a source named twice runs twice, averaged)
#   COORD_LOG="warn,fedsec_coordinator::job::noise=debug" ...  # + noise draw/wait times
#   STREAM_WINDOW=1048576 CONN_WINDOW=2097152 benches/scripts/coordinator_rss.sh
#                                     # HTTP/2 windows (default: the coordinator's)
#   COORD_BIN=/tmp/before/fedsec-coordinator ...   # another build of the coordinator
#                                     # (A/B runs; the load generator stays this tree's)
#
# The coordinator runs as its own process (release build); a separate load
# generator process (coordinator/examples/loadgen.rs) drives the clients.
set -euo pipefail
cd "$(dirname "$0")/../.."

CLIENTS=${CLIENTS:-"10 100 1000"}
ROUNDS=${ROUNDS:-3}
DIM=${DIM:-1000000}
NOISE=${NOISE:-simulation}
PORT=${PORT:-27443}
STREAM_WINDOW=${STREAM_WINDOW:-}
CONN_WINDOW=${CONN_WINDOW:-}

cargo build --release -q -p fedsec-coordinator --bin fedsec-coordinator --example loadgen
BIN=${COORD_BIN:-target/release/fedsec-coordinator}
LOADGEN=target/release/examples/loadgen

work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
max_clients=$(echo "$CLIENTS" | tr ' ' '\n' | sort -n | tail -1)
"$BIN" certs init --out "$work/pki" --clients "$max_clients" >/dev/null   # one tenant per client

rss_kb() { awk "/^$2:/ {print \$2}" "/proc/$1/status"; }
# The process's user + system CPU time, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
tick=$(getconf CLK_TCK)

printf '%-10s %8s %7s %12s %14s %12s %10s\n' noise clients rounds baseline_MB peak_RSS_MB peak/base s/round
declare -A per_round
for n in $CLIENTS; do
for noise in $NOISE; do
    runs=$((${runs:-0} + 1))
    dir="$work/run-$runs-$n-$noise"
    mkdir -p "$dir"
    cat >"$dir/coordinator.toml" <<TOML
listen = "127.0.0.1:$PORT"
data_dir = "$dir/data"
admins = ["admin"]
[tls]
ca = "$work/pki/ca.pem"
cert = "$work/pki/server.pem"
key = "$work/pki/server.key"
[metrics]
enabled = false
[limits]
${STREAM_WINDOW:+http2_stream_window_bytes = $STREAM_WINDOW}
${CONN_WINDOW:+http2_connection_window_bytes = $CONN_WINDOW}
[dangerous]
allow_simulation_noise = true
TOML
    RUST_LOG=${COORD_LOG:-warn} "$BIN" serve --config "$dir/coordinator.toml" 2>"$dir/coordinator.log" &
    pid=$!
    for _ in $(seq 100); do
        grep -q . /proc/$pid/status 2>/dev/null && (echo >/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break
        sleep 0.1
    done
    # The job is created over the Admin API after the clients registered
    # (q = 1, the expected cohort is everyone).
    cat >"$dir/job.toml" <<TOML
id = "rss"
model = { kind = "logistic", input_dim = $((DIM - 1)) }
sampling_rate = 1.0
rounds = $ROUNDS
population = $n
round_deadline_ms = 3600000
noise_source = "$noise"
noise_multiplier = 1.0
TOML
    "$LOADGEN" --pki "$work/pki" --endpoint "https://localhost:$PORT" --job rss --clients "$n" --rounds "$ROUNDS" 2>"$dir/loadgen.log" &
    lg=$!
    # Wait for the registrations, then measure the baseline and start the job.
    until grep -q "clients registered" "$dir/loadgen.log" 2>/dev/null; do sleep 0.2; done
    base=$(rss_kb $pid VmRSS)
    cpu0=$(cpu_ticks $pid)
    start=$(date +%s.%N)
    "$BIN" admin --endpoint "https://localhost:$PORT" --ca "$work/pki/ca.pem" \
        --cert "$work/pki/admin.pem" --key "$work/pki/admin.key" jobs create --file "$dir/job.toml" >/dev/null 2>"$dir/admin.log" || {
        cat "$dir/admin.log"; exit 1; }
    wait $lg
    end=$(date +%s.%N)
    peak=$(rss_kb $pid VmHWM)
    cpu1=$(cpu_ticks $pid)
    kill -TERM $pid
    wait $pid || true
    t=$(awk -v r="$ROUNDS" -v s="$start" -v e="$end" 'BEGIN { printf "%.3f", (e-s)/r }')
    per_round[$n,$noise]="${per_round[$n,$noise]:-} $t"
    awk -v x="$noise" -v n="$n" -v r="$ROUNDS" -v b="$base" -v p="$peak" -v t="$t" \
        'BEGIN { printf "%-10s %8d %7d %12.1f %14.1f %12.2f %10.3f\n", x, n, r, b/1024, p/1024, p/b, t }'
    # The coordinator's own CPU time over the rounds (uploads, closes,
    # commits), per byte of f32 update received: on a shared machine this
    # moves less with the load than the wall time does.
    awk -v a="$cpu0" -v b="$cpu1" -v t="$tick" -v n="$n" -v r="$ROUNDS" -v d="$DIM" 'BEGIN {
        s = (b - a) / t; printf "    coordinator CPU: %.2f s over %d rounds = %.2f ns per byte of update\n", s, r, s * 1e9 / (n * r * d * 4) }'
    grep -h "loadgen: round" "$dir/loadgen.log" | sed 's/^/    /'
    # With COORD_LOG="warn,fedsec_coordinator::job::noise=debug": when each
    # round's noise was drawn and how long the close waited for it.
    grep -h "round noise" "$dir/coordinator.log" | sed -e 's/\x1b\[[0-9;]*m//g' -e 's/^/    /' || true
done
done
# Same-run ratios of each source's mean time per round to simulation
# noise's (a source named twice in NOISE is run twice and averaged).
if [[ " $NOISE " == *" simulation "* ]]; then
    for n in $CLIENTS; do
        for noise in $(echo $NOISE | tr ' ' '\n' | awk '!seen[$0]++'); do
            [[ $noise == simulation ]] && continue
            awk -v x="$noise" -v n="$n" -v d="$DIM" -v a="${per_round[$n,$noise]}" -v b="${per_round[$n,simulation]}" '
                function mean(s,   k, v, i, t) { k = split(s, v, " "); t = 0; for (i = 1; i <= k; i++) t += v[i]; return t / k }
                BEGIN { printf "ratio %s / simulation at %d clients, d = %d: %.3f s / %.3f s = %.2f\n", x, n, d, mean(a), mean(b), mean(a) / mean(b) }'
        done
    done
    echo "load: $(uptime)"
fi
