"""Is a curve still rising? Each run's mean episodic return in consecutive windows of env steps.

Reads the exported runs in DIR/run_scalars/ (scripts/plot.py --export-runs) and writes DIR/windows.md: a table with
one row per run and then one row per setting (the mean over its seeds), one column per window (a, a + W] of env
steps. A window in which no episode of a run ended is left empty, and so is the setting's mean there.

Usage: python scripts/windows.py DIR [--window 500000] [--check]
  e.g. python scripts/windows.py results/popgym --window 250000
  --check changes nothing and exits 1 if DIR/windows.md is not what this would write (tests/test_results_md.py).
"""
import argparse
import glob
import os
import sys
from collections import defaultdict

import numpy as np

from plot import load_scalars, run_name  # noqa: E402

TAG = "charts/episodic_return"

p = argparse.ArgumentParser()
p.add_argument("dir", help="a results folder with a run_scalars/ subfolder")
p.add_argument("--window", type=int, default=500_000, help="env steps per window")
p.add_argument("--check", action="store_true", help="change nothing; exit 1 if DIR/windows.md is out of date")
args = p.parse_args()
if args.window <= 0:
    sys.exit("error: --window must be positive")
paths = sorted(glob.glob(os.path.join(args.dir, "run_scalars", "*.csv.gz")))
if not paths:
    sys.exit(f"error: no exported runs in {args.dir}/run_scalars")

runs = {}  # (env, exp, seed) -> (steps, returns)
for path in paths:
    env, exp, seed, _ = run_name(path).split("__")
    runs[env, exp, int(seed)] = load_scalars(path, [TAG])[TAG]
n_windows = int(np.ceil(max(steps[-1] for steps, _ in runs.values()) / args.window))
edges = [i * args.window for i in range(n_windows + 1)]


def fmt_steps(n):
    return f"{n / 1e6:g}M" if n else "0"


def window_means(steps, returns):
    out = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        inside = (steps > lo) & (steps <= hi)
        out.append(returns[inside].mean() if inside.any() else None)
    return out


lines = [f"Mean episodic return in windows of {args.window:,} env steps (`{TAG}`), written by",
         f"`python scripts/windows.py {os.path.relpath(args.dir)} --window {args.window}`.", ""]
header = ["run"] + [f"{fmt_steps(lo)}-{fmt_steps(hi)}" for lo, hi in zip(edges[:-1], edges[1:])]
for env in sorted({env for env, _, _ in runs}):
    lines += [f"## {env}", "", "| " + " | ".join(header) + " |", "|" + "-|" * len(header)]
    by_exp = defaultdict(list)
    for (e, exp, seed), (steps, returns) in sorted(runs.items()):
        if e == env:
            means = window_means(steps, returns)
            by_exp[exp].append(means)
            lines.append(f"| {exp} seed {seed} | " + " | ".join("" if m is None else f"{m:.3f}" for m in means) + " |")
    for exp, rows in by_exp.items():
        cells = ["" if any(r[i] is None for r in rows) else f"{np.mean([r[i] for r in rows]):.3f}"
                 for i in range(n_windows)]
        lines.append(f"| {exp} mean (n={len(rows)}) | " + " | ".join(cells) + " |")
    lines.append("")
out = os.path.join(args.dir, "windows.md")
text = "\n".join(lines)
if args.check:
    stale = True
    if os.path.exists(out):
        with open(out) as f:
            stale = f.read() != text
    print(f"{out} is {'out of date' if stale else 'up to date'}")
    sys.exit(1 if stale else 0)
with open(out, "w") as f:
    f.write(text)
print(f"wrote {out}")
