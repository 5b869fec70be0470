#!/usr/bin/env bash
# Where the upload path's CPU goes: runs benches/scripts/coordinator_rss.sh
# (the real `fedsec-coordinator serve` and the load generator, each its own
# process, 100 mTLS clients, d = 1,000,000, q = 1) and records both
# processes with `perf` from the moment every client registered to the end,
# then prints each process's CPU time and its share by category
# (benches/scripts/perf_categories.py).
#
#   benches/scripts/profile_ingest.sh                  # 100 clients, 4 rounds
#   ROUNDS=6 FREQ=499 benches/scripts/profile_ingest.sh
#   OUT=/tmp/prof benches/scripts/profile_ingest.sh    # keep perf.data files there
#   COORD_BIN=/tmp/before/fedsec-coordinator ...       # profile another build
#
# Needs `perf` and the right to attach to the processes (root, or
# kernel.perf_event_paranoid <= 1). On a VM without hardware counters the
# event is `cpu-clock` (a timer: shares of CPU time, not of cycles). Stacks
# are unwound from DWARF (the release profile carries line tables), so
# memcpy, the allocator and the kernel are charged to their Rust callers.
set -euo pipefail
cd "$(dirname "$0")/../.."

CLIENTS=${CLIENTS:-100}
ROUNDS=${ROUNDS:-4}
DIM=${DIM:-1000000}
FREQ=${FREQ:-499}
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"

cargo build --release -q -p fedsec-coordinator --bin fedsec-coordinator --example loadgen
root=$(pwd)
echo "load before: $(uptime)"
CLIENTS=$CLIENTS ROUNDS=$ROUNDS DIM=$DIM NOISE=${NOISE:-discrete} \
    benches/scripts/coordinator_rss.sh >"$OUT/run.txt" 2>&1 &
script=$!

# The two processes of this worktree's build.
pid_of() {
    local want=$1 p
    for p in /proc/[0-9]*; do
        [[ $(readlink "$p/exe" 2>/dev/null) == "$want" ]] && { basename "$p"; return 0; }
    done
    return 1
}
until lg=$(pid_of "$root/target/release/examples/loadgen"); do sleep 0.05; done
coord=$(pid_of "$(realpath "${COORD_BIN:-target/release/fedsec-coordinator}")")
# Registration (TLS handshakes) is not the upload path: start once it is over.
until grep -q "clients registered" "/proc/$lg/fd/2" 2>/dev/null; do sleep 0.05; done
cpu_s() { awk '{ printf "%.2f", ($14 + $15) / 100 }' "/proc/$1/stat"; }
c0=$(cpu_s "$coord"); l0=$(cpu_s "$lg"); t0=$(date +%s.%N)
perf record -q -e cpu-clock -F "$FREQ" --call-graph dwarf,16384 -p "$coord" -o "$OUT/coordinator.data" 2>/dev/null &
pc=$!
perf record -q -e cpu-clock -F "$FREQ" --call-graph dwarf,16384 -p "$lg" -o "$OUT/loadgen.data" 2>/dev/null &
pl=$!
# The load generator exits after its last round; the coordinator is
# stopped by the script right after, so read its CPU time now.
while kill -0 "$lg" 2>/dev/null; do
    c1=$(cpu_s "$coord" 2>/dev/null || echo "$c1"); l1=$(cpu_s "$lg" 2>/dev/null || echo "${l1:-$l0}")
    sleep 0.05
done
t1=$(date +%s.%N)
kill -INT "$pc" 2>/dev/null || true
wait "$pl" "$pc" 2>/dev/null || true
wait "$script" || true
echo "load after: $(uptime)"
cat "$OUT/run.txt"
awk -v a="$t0" -v b="$t1" -v c0="$c0" -v c1="$c1" -v l0="$l0" -v l1="$l1" 'BEGIN {
    printf "recorded %.2f s wall: coordinator %.2f CPU-s, load generator %.2f CPU-s (at least, read every 50 ms)\n", b - a, c1 - c0, l1 - l0 }'
for who in coordinator loadgen; do
    echo "== $who"
    perf script -i "$OUT/$who.data" -F comm,tid,ip,sym,dso 2>/dev/null |
        python3 benches/scripts/perf_categories.py --freq "$FREQ"
done
echo "perf data in $OUT"
