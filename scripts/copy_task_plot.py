"""Plot validation accuracy curves of copy_task_elstm.py runs from the curve.csv each run writes, against training
sequences, updates (log scale: BPTT makes one update per batch, RTRL one per token) and wall time.

Usage: python scripts/copy_task_plot.py OUT.png RUN_DIR [RUN_DIR ...]
summary(RUN_DIR) returns a run's last evaluation and best validation sequence accuracy (scripts/results_md.py reads it).
"""
import csv
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def curve(run_dir):
    with open(os.path.join(run_dir, "curve.csv"), newline="") as f:
        return list(csv.DictReader(f))


def summary(run_dir):
    """{evaluations, sequences, updates, wall_time (s), val_token_acc, val_seq_acc (the last evaluation's, in %),
    best_val_seq_acc (%)}"""
    rows = curve(run_dir)
    last = rows[-1]
    return dict(evaluations=len(rows), sequences=int(last["sequences"]), updates=int(last["updates"]),
                wall_time=float(last["wall_time"]), val_token_acc=100 * float(last["val_token_acc"]),
                val_seq_acc=100 * float(last["val_seq_acc"]),
                best_val_seq_acc=max(100 * float(r["val_seq_acc"]) for r in rows))


def main(out, run_dirs):
    fig, axes = plt.subplots(1, 3, figsize=(16, 4))
    for run_dir in run_dirs:
        rows = curve(run_dir)
        label = os.path.basename(run_dir.rstrip("/"))
        seqs = [int(r["sequences"]) for r in rows]
        updates = [int(r["updates"]) for r in rows]
        wall = [float(r["wall_time"]) / 60 for r in rows]
        seq_acc = [100 * float(r["val_seq_acc"]) for r in rows]
        bit_acc = [100 * float(r["val_token_acc"]) for r in rows]
        # updates start at 0 and only grow: the log axis skips the leading evaluations at 0
        for ax, x, first in zip(axes, (seqs, updates, wall), (0, updates.count(0), 0)):
            (line,) = ax.plot(x[first:], seq_acc[first:], label=f"{label}: sequence acc.")
            ax.plot(x[first:], bit_acc[first:], linestyle="--", color=line.get_color(), label=f"{label}: bit acc.")
        s = summary(run_dir)
        print(f"{label}: {s['evaluations']} evaluations; last: sequences={s['sequences']} updates={s['updates']} "
              f"wall_time={s['wall_time']:.2f}s val_token_acc={s['val_token_acc']:.2f}% "
              f"val_seq_acc={s['val_seq_acc']:.2f}%; best val_seq_acc={s['best_val_seq_acc']:.2f}%")
    axes[0].set_xlabel("training sequences")
    axes[1].set_xlabel("updates")
    axes[1].set_xscale("log")
    axes[2].set_xlabel("wall time (min)")
    for ax in axes:
        ax.set_ylabel("validation accuracy (%)")
        ax.set_ylim(0, 101)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("Copy task, eLSTM (reduced scale)")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    print(f"saved {out}")
    return fig


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
