#!/usr/bin/env python3
"""Per-tenant IsolationForest baseline for the weak-labels experiment (issue 20).

Each tenant fits scikit-learn's IsolationForest on its own *training* sessions'
51 features (no labels: unsupervised, as a tenant with logs only could) and
scores its own held-out sessions; the score is evaluated against ground truth
exactly as the Rust experiment does (mean per-tenant ROC-AUC over tenants
whose holdout has both classes; recall at 1 % FPR over the pooled holdout,
scikit-learn's max(tpr[fpr <= 0.01])).

Input: the CSVs `fedsec-experiments weak-labels --export-features DIR` writes
(`features-seed<N>.csv`: tenant,split,label,f0..f50). Output: a CSV row per
seed and a Markdown table with mean ± sd over seeds.

Not part of CI (CI does not need scikit-learn). Run through
experiments/scripts/weak_labels.sh, or by hand:

    python3 -m venv target/sklearn-venv
    target/sklearn-venv/bin/pip install scikit-learn
    target/sklearn-venv/bin/python experiments/scripts/iforest_baseline.py \
        --features DIR --csv experiments/results/weak_labels_iforest.csv \
        --md experiments/results/weak_labels_iforest.md
"""
import argparse
import csv
import glob
import os
import re
import statistics

import numpy as np
from sklearn.ensemble import IsolationForest
from sklearn.metrics import roc_auc_score, roc_curve


def load(path):
    tenants = {}
    with open(path, newline="") as f:
        r = csv.reader(f)
        header = next(r)
        nf = len(header) - 3
        for row in r:
            t, split, label = int(row[0]), row[1], int(row[2])
            x = [float(v) for v in row[3:3 + nf]]
            d = tenants.setdefault(t, {"train": [], "holdout": [], "y": []})
            if split == "train":
                d["train"].append(x)
            else:
                d["holdout"].append(x)
                d["y"].append(label)
    return tenants


def recall_at_fpr(y, s, max_fpr=0.01):
    fpr, tpr, _ = roc_curve(y, s)
    ok = tpr[fpr <= max_fpr]
    return float(ok.max()) if len(ok) else 0.0


def run_seed(path, seed):
    tenants = load(path)
    aucs, all_s, all_y = [], [], []
    for t in sorted(tenants):
        d = tenants[t]
        if not d["holdout"]:
            continue
        hold = np.array(d["holdout"])
        if len(d["train"]) >= 2:
            model = IsolationForest(n_estimators=200, random_state=seed).fit(np.array(d["train"]))
            s = -model.score_samples(hold)  # higher = more anomalous
        else:
            s = np.zeros(len(hold))
        # Pool per-tenant ranks (percentiles) so scores are comparable across tenants.
        ranks = np.argsort(np.argsort(s)) / max(len(s) - 1, 1)
        y = np.array(d["y"])
        if 0 < y.sum() < len(y):
            aucs.append(roc_auc_score(y, s))
        all_s.extend(ranks.tolist())
        all_y.extend(y.tolist())
    return {
        "seed": seed,
        "method": "iforest_per_tenant",
        "mean_tenant_auc": float(np.mean(aucs)),
        "recall_at_1pct_fpr": recall_at_fpr(np.array(all_y), np.array(all_s)),
        "tenants_with_auc": len(aucs),
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--features", required=True, help="directory of features-seed<N>.csv")
    p.add_argument("--csv", required=True)
    p.add_argument("--md", required=True)
    a = p.parse_args()
    files = sorted(glob.glob(os.path.join(a.features, "features-seed*.csv")))
    if not files:
        raise SystemExit(f"no features-seed*.csv in {a.features}")
    rows = []
    for f in files:
        seed = int(re.search(r"seed(\d+)", f).group(1))
        rows.append(run_seed(f, seed))
        print(f"seed {seed}: mean per-tenant AUC {rows[-1]['mean_tenant_auc']:.3f}, "
              f"recall@1%FPR {rows[-1]['recall_at_1pct_fpr']:.3f}")
    with open(a.csv, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)

    def pm(key):
        v = [r[key] for r in rows]
        sd = statistics.stdev(v) if len(v) > 1 else 0.0
        return f"{statistics.mean(v):.3f} ± {sd:.3f}"

    with open(a.md, "w") as f:
        f.write("| method | mean per-tenant AUC | recall at 1 % FPR | seeds |\n")
        f.write("|---|---|---|---|\n")
        f.write(f"| IsolationForest per tenant (scikit-learn, 200 trees, fitted on the tenant's "
                f"own training sessions, no labels) | {pm('mean_tenant_auc')} | "
                f"{pm('recall_at_1pct_fpr')} | {', '.join(str(r['seed']) for r in rows)} |\n")
    print(f"IsolationForest: AUC {pm('mean_tenant_auc')}, recall@1%FPR {pm('recall_at_1pct_fpr')}")


if __name__ == "__main__":
    main()
