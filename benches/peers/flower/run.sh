#!/usr/bin/env bash
# Peer comparison: the same DP-FedAvg job in Flower and in fedsec, and the
# ratios. Both run N clients (every client in every round: q = 1, cohort N),
# a model of DIM f32 parameters, server-side fixed clipping to C = 1 and
# Gaussian noise z = 1 on the sum, ROUNDS rounds, over loopback gRPC with
# TLS, server and clients in separate processes on this machine:
#
# - Flower 1.42 (flwr from PyPI, in benches/peers/flower/.venv, created here):
#   legacy gRPC server with FedAvg wrapped in
#   DifferentialPrivacyServerSideFixedClipping, numpy clients (threads of
#   one process) returning global + a fixed update (flower_dp.py);
# - fedsec: `fedsec-coordinator serve` (release build) with the load
#   generator (coordinator/examples/loadgen.rs), i.e.
#   benches/scripts/coordinator_rss.sh at the same size.
#
# Printed per N: server wall time per round and server peak RSS for both,
# and Flower / fedsec ratios (> 1: fedsec is faster / smaller).
#
#   benches/peers/flower/run.sh
#   CLIENTS="10 100" ROUNDS=3 DIM=100000 benches/peers/flower/run.sh
#   NOISE=opendp benches/peers/flower/run.sh     # fedsec with opendp's exact noise
#   NOISE=simulation benches/peers/flower/run.sh # fedsec with simulation noise
#                         (default: discrete, fedsec's production noise; Flower's
#                         own DP noise is numpy's floating-point Gaussian)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
CLIENTS=${CLIENTS:-"10 100 1000"}
ROUNDS=${ROUNDS:-5}
DIM=${DIM:-100000}
PORT=${PORT:-28443}
export NOISE=${NOISE:-discrete}

# The venv. flwr 1.42.0 declares certifi>=2026.10.19, which the package
# index here does not serve: flwr goes in with --no-deps and its other
# dependencies from requirements.txt (pip then warns about certifi only).
venv=$here/.venv
if ! "$venv/bin/python" -c 'import flwr, numpy' 2>/dev/null; then
    python3.11 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check --no-deps 'flwr==1.42.0'
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$here/requirements.txt" 2>&1 |
        grep -v -e "dependency resolver" -e "certifi" || true
    "$venv/bin/python" -c 'import flwr, numpy'
fi
py=$venv/bin/python

cd "$root"
cargo build --release -q -p fedsec-coordinator --bin fedsec-coordinator --example loadgen
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
target/release/fedsec-coordinator certs init --out "$work/pki" --clients 1 --tenants t1 >/dev/null

echo "Flower $("$py" -c 'import flwr; print(flwr.__version__)'): $ROUNDS rounds, d = $DIM, z = 1, C = 1, q = 1" >&2
for n in $CLIENTS; do
    out=$work/flower-$n.json
    "$py" "$here/flower_dp.py" server --port "$PORT" --clients "$n" --rounds "$ROUNDS" \
        --dim "$DIM" --pki "$work/pki" --out "$out" >"$work/flower-server-$n.log" 2>&1 &
    srv=$!
    for _ in $(seq 300); do (echo >/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done
    "$py" "$here/flower_dp.py" clients --port "$PORT" --clients "$n" --dim "$DIM" \
        --pki "$work/pki" >"$work/flower-clients-$n.log" 2>&1 &
    cl=$!
    if ! wait $srv; then
        # A cell Flower cannot run (e.g. out of memory) is reported, not fatal.
        echo "  flower N = $n FAILED:" >&2
        tail -5 "$work/flower-server-$n.log" >&2
        kill $cl 2>/dev/null || true
        wait $cl || true
        echo "flower $n 0 0 0" >>"$work/table"
        continue
    fi
    wait $cl || true
    "$py" -c "import json; r = json.load(open('$out')); print('flower', $n, r['mean_round_s'], r['baseline_mb'], r['peak_rss_mb'])" >>"$work/table"
    echo "  flower N = $n done" >&2
done

echo "fedsec ($NOISE noise): $ROUNDS rounds, d = $DIM, z = 1, C = 1, q = 1" >&2
CLIENTS="$CLIENTS" ROUNDS=$ROUNDS DIM=$DIM PORT=$PORT benches/scripts/coordinator_rss.sh >"$work/fedsec.txt"
# columns: noise clients rounds baseline_MB peak_RSS_MB peak/base s/round
awk '$2 ~ /^[0-9]+$/ && NF == 7 { print "fedsec", $2, $7, $4, $5 }' "$work/fedsec.txt" >>"$work/table"

echo
echo "DP-FedAvg, d = $DIM, z = 1, C = 1, every client every round, $ROUNDS rounds (loopback TLS, 2 processes)"
awk '
    { key = $1 " " $2; t[key] = $3; b[key] = $4; p[key] = $5; if ($1 == "flower") ns[++k] = $2 }
    END {
        printf "%8s | %12s %12s %7s | %14s %14s %7s\n", "clients", "flower s/rnd", "fedsec s/rnd", "ratio", "flower peak MB", "fedsec peak MB", "ratio"
        for (i = 1; i <= k; i++) {
            n = ns[i]; f = "flower " n; s = "fedsec " n
            if (t[f] == 0) { printf "%8d | %12s %12.3f %7s | %14s %14.0f %7s\n", n, "failed", t[s], "-", "failed", p[s], "-"; continue }
            printf "%8d | %12.3f %12.3f %7.1f | %14.0f %14.0f %7.1f\n", n, t[f], t[s], t[f] / t[s], p[f], p[s], p[f] / p[s]
        }
        printf "(baseline RSS before the first round, MB:"
        for (i = 1; i <= k; i++) { n = ns[i]; printf " N=%d flower %.0f fedsec %.0f;", n, b["flower " n], b["fedsec " n] }
        print ")"
    }' "$work/table"
