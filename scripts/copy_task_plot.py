"""Plot validation accuracy curves of copy_task_elstm.py runs from the curve.csv each run writes.

Usage: python scripts/copy_task_plot.py OUT.png RUN_DIR [RUN_DIR ...]
"""
import csv
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

out, run_dirs = sys.argv[1], sys.argv[2:]
fig, axes = plt.subplots(1, 2, figsize=(11, 4))
for run_dir in run_dirs:
    with open(os.path.join(run_dir, "curve.csv")) as f:
        rows = list(csv.DictReader(f))
    label = os.path.basename(run_dir.rstrip("/"))
    seqs = [int(r["sequences"]) for r in rows]
    wall = [float(r["wall_time"]) / 60 for r in rows]
    for ax, x in zip(axes, (seqs, wall)):
        ax.plot(x, [100 * float(r["val_seq_acc"]) for r in rows], label=f"{label}: sequence acc.")
        ax.plot(x, [100 * float(r["val_token_acc"]) for r in rows], linestyle="--", label=f"{label}: bit acc.")
    last = rows[-1]
    print(f"{label}: {len(rows)} evaluations; last: sequences={last['sequences']} updates={last['updates']} "
          f"wall_time={last['wall_time']}s val_token_acc={100 * float(last['val_token_acc']):.2f}% "
          f"val_seq_acc={100 * float(last['val_seq_acc']):.2f}%; "
          f"best val_seq_acc={max(100 * float(r['val_seq_acc']) for r in rows):.2f}%")
axes[0].set_xlabel("training sequences")
axes[1].set_xlabel("wall time (min)")
for ax in axes:
    ax.set_ylabel("validation accuracy (%)")
    ax.set_ylim(0, 101)
    ax.grid(alpha=0.3)
axes[0].legend(fontsize=7)
fig.suptitle("Copy task, eLSTM (reduced scale)")
fig.tight_layout()
fig.savefig(out, dpi=120)
print(f"saved {out}")
