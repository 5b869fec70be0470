#!/usr/bin/env python3
"""Shares of a process's CPU samples by category, from `perf script` output.

Reads `perf script -F comm,tid,ip,sym,dso` of a recording made with
`--call-graph dwarf` on stdin (one sample: a header line, then its stack,
leaf first, then a blank line). Each sample is charged to one category by
its leaf frame; memcpy/memset, the allocator and the kernel are split
further by the first caller that names who asked for them. Used by
benches/scripts/profile_ingest.sh.

    perf script -i coordinator.data -F comm,tid,ip,sym,dso | \
        python3 benches/scripts/perf_categories.py --freq 499
"""

import argparse
import collections
import re
import sys

# Categories by the leaf frame's symbol, first match wins.
LEAF = [
    ("TLS AES-GCM (ring)", re.compile(r"aes|gcm|ghash|gfmul|clmul|ring::aead|ring_core_.*(aead|gcm)", re.I)),
    ("SHA-256 of the update (sha2)", re.compile(r"sha2::|sha256|sha_ni|x86_sha|schedule_rounds|^rounds4|^compress$|_mm_sha", re.I)),
    ("update screen (fedsec_round::screen::measure)", re.compile(r"fedsec_round::screen")),
    ("memcpy / memmove", re.compile(r"mem(cpy|move)|__memcpy|__memmove")),
    ("memset", re.compile(r"memset")),
    ("allocator (glibc malloc/free)", re.compile(
        r"^(__libc_)?(malloc|free|calloc|realloc|cfree)$|_int_(malloc|free|realloc)|tcache|arena_|sysmalloc|"
        r"malloc_consolidate|unlink_chunk|__rust_(alloc|dealloc|realloc)|__rdl_|alloc::alloc::|^_?mi_")),
    ("locks / atomics (user)", re.compile(r"pthread_mutex|pthread_cond|lll_lock|__lll_|futex|std::sys::sync|parking_lot")),
    ("HTTP/2 (h2 / hyper)", re.compile(r"^<?&?(mut )?(h2|hyper|hyper_util|http_body|http_body_util|http)::|^<h2::|^<hyper")),
    ("gRPC codec (tonic / prost)", re.compile(r"tonic|prost")),
    ("TLS record layer (rustls, not AES)", re.compile(r"rustls")),
    ("f32 norm / re-clip / accumulate kernels", re.compile(
        r"fedsec_privacy::(kernels|clip)|pulp|Measured|RoundSum|accumulate|clip_into|add_scaled|sum_squares|square_into")),
    ("noise draw", re.compile(r"discrete|rand_chacha|chacha|noise", re.I)),
    ("SQLite commit", re.compile(r"sqlite|rusqlite", re.I)),
    ("bytes::", re.compile(r"^<?&?bytes::|bytes::")),
    ("tokio runtime", re.compile(r"tokio")),
    ("fedsec other", re.compile(r"fedsec")),
]

SCREEN = re.compile(r"fedsec_round::screen::measure|JobScreen.*::screen|dot_and_signs")

# Frames that do not say who asked (skipped when looking for the caller).
GLUE = re.compile(
    r"mem(cpy|move|set)|^(__libc_)?(malloc|free|calloc|realloc)$|_int_|tcache|alloc::|__rust_|__rdl_|"
    r"core::ptr::|core::slice::|core::intrinsics|<alloc::|^alloc::|bytes::|BytesMut|Vec<|RawVec|"
    r"std::io::|<std::io|core::ops::function|^\[unknown\]$|^$|unknown"
)

KERNEL_SUB = [
    ("kernel: page faults / page zeroing", re.compile(r"page_fault|clear_page|do_anonymous|handle_mm_fault|exc_page")),
    ("kernel: loopback TCP (send/recv, copies, softirq)", re.compile(
        r"tcp_|inet_|ip_|__dev_queue|loopback|net_rx|netif|skb|sock_(sendmsg|recvmsg|read|write)|copy_(user|to_iter|from_iter)|_copy_")),
    ("kernel: futex / scheduling", re.compile(r"futex|schedule|finish_task_switch|try_to_wake|wake_up|sched_")),
    ("kernel: epoll", re.compile(r"epoll|ep_poll|ep_")),
    ("kernel: mmap / munmap / madvise", re.compile(r"mmap|munmap|madvise|unmap|zap_")),
]


def caller_of(stack):
    """First frame above the leaf that is not glue, as a short name."""
    for sym, dso in stack[1:]:
        if dso.startswith("[kernel") or GLUE.search(sym):
            continue
        return short(sym)
    return "?"


def short(sym):
    sym = re.sub(r"::h[0-9a-f]{16}$", "", sym)
    sym = re.sub(r"<[^<>]*>", "<>", sym)
    sym = re.sub(r"<[^<>]*>", "<>", sym)
    return sym[:90]


def classify(stack):
    """(category, sub-category or None) of one sample.

    The leaf decides; a leaf inlined into its caller (dso "inlined") that
    matches no category is charged to the first enclosing frame that does.
    """
    sym, dso = stack[0]
    if dso.startswith("[kernel"):
        ksyms = " ".join(s for s, d in stack if d.startswith("[kernel"))
        for name, pat in KERNEL_SUB:
            if pat.search(ksyms):
                return "kernel", name
        return "kernel", "kernel: other (syscall entry/exit, timers, irq)"
    # The screen runs the same vectorised kernels as the re-clip: charge
    # them to whoever called them.
    if any(SCREEN.search(s) for s, _ in stack):
        return "update screen (fedsec_round::screen::measure)", None
    for i, (sym, dso) in enumerate(stack):
        for name, pat in LEAF:
            if pat.search(sym):
                if name in ("memcpy / memmove", "memset", "allocator (glibc malloc/free)",
                            "locks / atomics (user)", "bytes::"):
                    return name, caller_of(stack[i:])
                return name, None
        if dso != "inlined":
            return "other: " + dso.split("/")[-1], short(sym)
    return "other", short(stack[0][0])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--freq", type=float, required=True, help="perf record -F")
    ap.add_argument("--top", type=int, default=6, help="sub-entries shown per category")
    args = ap.parse_args()

    cats = collections.Counter()
    subs = collections.defaultdict(collections.Counter)
    leaves = collections.Counter()
    total = 0
    stack = []

    def flush():
        nonlocal total, stack
        if stack:
            cat, sub = classify(stack)
            if cat == "kernel":
                cat, sub = sub, short(caller_of(stack))
            cats[cat] += 1
            if sub:
                subs[cat][sub] += 1
            leaves[short(stack[0][0])] += 1
            total += 1
        stack = []

    for line in sys.stdin:
        if not line.strip():
            flush()
            continue
        if not line.startswith("\t") and not line.startswith(" "):
            flush()  # a header line
            continue
        m = re.match(r"\s*[0-9a-f]+\s+(.*?)\s+\(([^()]*)\)\s*$", line)
        if m:
            stack.append((m.group(1), m.group(2)))
        else:
            parts = line.split()
            stack.append((" ".join(parts[1:]) if len(parts) > 1 else "?", "?"))
    flush()

    if total == 0:
        print("no samples")
        return
    print(f"{total} samples = {total / args.freq:.2f} CPU-s at {args.freq:g} Hz")
    print(f"{'share':>6}  {'CPU-s':>6}  category")
    for cat, n in cats.most_common():
        print(f"{100 * n / total:5.1f}%  {n / args.freq:6.2f}  {cat}")
        for sub, k in subs[cat].most_common(args.top):
            print(f"{'':16}{100 * k / total:5.1f}%  {sub}")
    print("top leaf symbols:")
    for sym, n in leaves.most_common(25):
        print(f"  {100 * n / total:5.1f}%  {sym}")


if __name__ == "__main__":
    main()
