"""Plot and summarise charts/episodic_return of r2ac_elstm.py runs from their TensorBoard event files.

Usage: python scripts/r2ac_plot.py OUT.png BIN_STEPS RANDOM_RETURN RUN_DIR [RUN_DIR ...]
Prints, per run, the mean episodic return in bins of BIN_STEPS env steps, the maximum over bins, and the mean
over the last 100 episodes; draws every run plus a horizontal line at RANDOM_RETURN (uniform random policy).
"""
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

out, bin_steps, random_return, run_dirs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4:]
fig, ax = plt.subplots(figsize=(7, 4))
for run_dir in run_dirs:
    acc = EventAccumulator(run_dir, size_guidance={"scalars": 0})
    acc.Reload()
    events = acc.Scalars("charts/episodic_return")
    steps = np.array([e.step for e in events])
    returns = np.array([e.value for e in events])
    bins = steps // bin_steps
    centers, means = [], []
    print(f"run {os.path.basename(run_dir.rstrip('/'))}: {len(returns)} episodes, last env step {steps.max()}")
    for b in np.unique(bins):
        sel = bins == b
        centers.append((b + 0.5) * bin_steps)
        means.append(returns[sel].mean())
        print(f"  steps [{b * bin_steps}, {(b + 1) * bin_steps}): mean episodic return {means[-1]:.4f} ({sel.sum()} episodes)")
    print(f"  max over bins of the binned mean: {max(means):.4f}")
    print(f"  mean of the last 100 episodes: {returns[-100:].mean():.4f}")
    ax.plot(centers, means, marker=".", label=os.path.basename(run_dir.rstrip("/")).split("__")[0] + " seed " +
            os.path.basename(run_dir.rstrip("/")).split("__")[2])
ax.axhline(random_return, color="gray", linestyle="--", label=f"uniform random policy ({random_return:.3f})")
ax.set_xlabel("environment steps")
ax.set_ylabel(f"mean episodic return (bins of {bin_steps} steps)")
ax.set_title("R2AC + eLSTM (RTRL), sanity run (reduced scale)")
ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(out, dpi=120)
print(f"saved {out}")
