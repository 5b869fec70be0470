#!/usr/bin/env bash
# Peak RSS of the coordinator with 10, 100 and 1,000 clients per round at
# d = 1,000,000 parameters (4 MB per update), against the same process's RSS
# before any round (baseline, measured in the same run). Streaming
# aggregation keeps memory O(model): the peak must stay flat in the number
# of clients.
#
#   benches/scripts/coordinator_rss.sh            # 10 100 1000 clients, 3 rounds
#   CLIENTS="10 100" ROUNDS=2 benches/scripts/coordinator_rss.sh
#   NOISE=opendp benches/scripts/coordinator_rss.sh   # exact noise (slower rounds)
#   STREAM_WINDOW=1048576 CONN_WINDOW=2097152 benches/scripts/coordinator_rss.sh
#                                     # HTTP/2 windows (default: the coordinator's)
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
BIN=target/release/fedsec-coordinator
LOADGEN=target/release/examples/loadgen

work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
max_clients=$(echo "$CLIENTS" | tr ' ' '\n' | sort -n | tail -1)
"$BIN" certs init --out "$work/pki" --clients "$max_clients" >/dev/null   # one tenant per client

rss_kb() { awk "/^$2:/ {print \$2}" "/proc/$1/status"; }

printf '%8s %7s %12s %14s %12s %10s\n' clients rounds baseline_MB peak_RSS_MB peak/base s/round
for n in $CLIENTS; do
    dir="$work/run-$n"
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
    RUST_LOG=warn "$BIN" serve --config "$dir/coordinator.toml" 2>"$dir/coordinator.log" &
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
noise_source = "$NOISE"
noise_multiplier = 1.0
TOML
    "$LOADGEN" --pki "$work/pki" --endpoint "https://localhost:$PORT" --job rss --clients "$n" --rounds "$ROUNDS" 2>"$dir/loadgen.log" &
    lg=$!
    # Wait for the registrations, then measure the baseline and start the job.
    until grep -q "clients registered" "$dir/loadgen.log" 2>/dev/null; do sleep 0.2; done
    base=$(rss_kb $pid VmRSS)
    start=$(date +%s.%N)
    "$BIN" admin --endpoint "https://localhost:$PORT" --ca "$work/pki/ca.pem" \
        --cert "$work/pki/admin.pem" --key "$work/pki/admin.key" jobs create --file "$dir/job.toml" >/dev/null 2>"$dir/admin.log" || {
        cat "$dir/admin.log"; exit 1; }
    wait $lg
    end=$(date +%s.%N)
    peak=$(rss_kb $pid VmHWM)
    kill -TERM $pid
    wait $pid || true
    awk -v n="$n" -v r="$ROUNDS" -v b="$base" -v p="$peak" -v s="$start" -v e="$end" \
        'BEGIN { printf "%8d %7d %12.1f %14.1f %12.2f %10.2f\n", n, r, b/1024, p/1024, p/b, (e-s)/r }'
    grep -h "loadgen: round" "$dir/loadgen.log" | sed 's/^/    /'
done
