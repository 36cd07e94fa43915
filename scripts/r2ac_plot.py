"""Plot and summarise charts/episodic_return of r2ac_elstm.py runs from their TensorBoard event files or exports.

Usage: python scripts/r2ac_plot.py OUT.png BIN_STEPS RANDOM_RETURN RUN [RUN ...]   (RUN: run directory or .csv.gz)
Prints, per run, the mean episodic return in bins of BIN_STEPS env steps, the maximum over bins, and the mean
over the last 100 episodes; draws every run plus a horizontal line at RANDOM_RETURN (uniform random policy).
"""
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from plot import load_scalars, parse_run_name, run_name  # noqa: E402

out, bin_steps, random_return, run_dirs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4:]
fig, ax = plt.subplots(figsize=(7, 4))
for run_dir in run_dirs:
    steps, returns = load_scalars(run_dir, ["charts/episodic_return"])["charts/episodic_return"]
    name = run_name(run_dir)
    bins = steps // bin_steps
    centers, means = [], []
    print(f"run {name}: {len(returns)} episodes, last env step {steps.max()}")
    for b in np.unique(bins):
        sel = bins == b
        centers.append((b + 0.5) * bin_steps)
        means.append(returns[sel].mean())
        print(f"  steps [{b * bin_steps}, {(b + 1) * bin_steps}): mean episodic return {means[-1]:.4f} ({sel.sum()} episodes)")
    print(f"  max over bins of the binned mean: {max(means):.4f}")
    print(f"  mean of the last 100 episodes: {returns[-100:].mean():.4f}")
    env, exp, seed = parse_run_name(name)
    ax.plot(centers, means, marker=".", label=f"{exp} on {env}, seed {seed}")
ax.axhline(random_return, color="gray", linestyle="--", label=f"uniform random policy ({random_return:.3f})")
ax.set_xlabel("environment steps")
ax.set_ylabel(f"mean episodic return (bins of {bin_steps} steps)")
ax.set_title("R2AC + eLSTM, sanity run (reduced scale)")
ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(out, dpi=120)
print(f"saved {out}")
