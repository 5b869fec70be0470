#!/usr/bin/env python3
"""Reference ε at small δ for the Poisson-subsampled Gaussian (add/remove one),
from Google's dp_accounting PLD accountant at a fine discretisation.

Writes pld_small_delta.csv (columns q,z,T,delta,eps_pld,interval,seconds) next
to this file. Used only as a test oracle by tests/pld_small_delta.rs.

    python3 -m venv /tmp/dpvenv && /tmp/dpvenv/bin/pip install dp-accounting==0.6.0
    /tmp/dpvenv/bin/python privacy/tests/data/pld_small_delta.py

dp_accounting 0.6.0, PLDAccountant(NeighboringRelation.ADD_OR_REMOVE_ONE,
value_discretization_interval=1e-5) — pessimistic estimate (connect-the-dots),
its default tail truncation — composed with compose(event, T).
"""
import csv
import os
import sys
import time

import dp_accounting
from dp_accounting.pld import pld_privacy_accountant

DELTAS = [1e-8, 1e-9, 1e-10, 1e-12]
SETTINGS = [
    # (q, z, T)
    (0.01, 1.0, 10),
    (0.1, 1.0, 100),
    (0.05, 1.5, 100),
    (0.2, 3.0, 50),
    (0.01, 2.0, 1000),
    (0.001, 1.0, 1000),
    (0.0001, 0.7, 1000),
    (0.01, 4.0, 10000),
    (0.001, 2.0, 10000),
    (0.00001, 0.5, 100),
    (0.01, 1.0, 100000),
    (0.0001, 1.0, 1000000),
]


def epsilons(q, z, t, interval):
    acc = pld_privacy_accountant.PLDAccountant(
        dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE,
        value_discretization_interval=interval,
    )
    event = dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(z))
    acc.compose(event, t)
    return [acc.get_epsilon(d) for d in DELTAS]


def main():
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pld_small_delta.csv")
    rows = []
    for q, z, t in SETTINGS:
        interval = 1e-5
        start = time.time()
        eps = epsilons(q, z, t, interval)
        secs = time.time() - start
        for d, e in zip(DELTAS, eps):
            rows.append((q, z, t, d, e, interval, round(secs, 2)))
        print(q, z, t, interval, [round(e, 6) for e in eps], f"{secs:.1f}s", file=sys.stderr, flush=True)
    with open(out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["q", "z", "T", "delta", "eps_pld", "interval", "seconds"])
        for r in rows:
            w.writerow([repr(r[0]), repr(r[1]), r[2], repr(r[3]), f"{r[4]:.8g}", repr(r[5]), r[6]])


if __name__ == "__main__":
    main()
