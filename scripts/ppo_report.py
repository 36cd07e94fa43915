"""Curves and numbers of PPO sanity runs (any algos/ppo_*.py script), read from their TensorBoard event files or their
csv.gz export (no hand-written numbers).

Usage: python scripts/ppo_report.py --run RUN_DIR --out PREFIX --command "CMD" --commit SHA --date "DATE"
       [--script-sha256 SHA] [--machine TEXT] [--random-return R] [--note TEXT ...]
Writes PREFIX.png (episodic return: every episode, and the mean per PPO iteration) and PREFIX.md (the numbers below,
the command, commit, date, steps and seed).

Numbers: episodes, last env step; MMER (POPGym's metric: max over iterations of the mean return of the episodes
that ended in that iteration); the mean return of the last 10% of the episodes; steady SPS (env steps per second of
rollout + update, averaged over iterations after the first) and the mean rollout/update time per iteration; the
largest debug/first_minibatch_ratio_error where the script logs it (must be ~0: the first minibatch re-runs the rollout's parameters).
"""
import argparse
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from plot import load_scalars, run_name  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("--run", required=True)
p.add_argument("--out", required=True)
p.add_argument("--command", required=True)
p.add_argument("--commit", required=True)
p.add_argument("--script-sha256", help="sha256 of the script when it was not committed at --commit")
p.add_argument("--machine", default="2 shared CPU cores, busy with other jobs during the run: SPS is not a clean speed number")
p.add_argument("--date", required=True)
p.add_argument("--random-return", type=float)
p.add_argument("--note", action="append", default=[], help="extra bullet line(s) for the markdown")
opts = p.parse_args()

scalar = load_scalars(opts.run)  # a run directory or its export (scripts/plot.py's export_run)
ep_steps, ep_returns = scalar["charts/episodic_return"]
iter_steps = scalar["charts/SPS"][0]  # logged once per iteration, at the iteration's last env step
rollout, update = scalar["charts/rollout_time"][1], scalar["charts/update_time"][1]
steps_per_iter = int(iter_steps[0])

# episodes grouped by the iteration in which they ended
iteration = np.searchsorted(iter_steps, ep_steps)
centers, means = [], []
for it in np.unique(iteration):
    sel = iteration == it
    centers.append(iter_steps[min(it, len(iter_steps) - 1)])
    means.append(ep_returns[sel].mean())
means = np.array(means)
last = ep_returns[-max(1, len(ep_returns) // 10):]
steady_sps = steps_per_iter / np.mean(rollout[1:] + update[1:])
ratio_err = scalar["debug/first_minibatch_ratio_error"][1].max() if "debug/first_minibatch_ratio_error" in scalar else None
name = run_name(opts.run)
env_id, exp_name, seed = name.split("__")[:3]

fig, ax = plt.subplots(figsize=(7, 4))
ax.plot(ep_steps, ep_returns, ".", ms=2, alpha=0.3, color="C0", label="episodes")
ax.plot(centers, means, color="C1", label="mean per PPO iteration")
if opts.random_return is not None:
    ax.axhline(opts.random_return, color="gray", linestyle="--", label=f"random policy ({opts.random_return:g})")
ax.set_xlabel("environment steps")
ax.set_ylabel("episodic return")
ax.set_title(f"SANITY RUN: {exp_name} on {env_id}, seed {seed}", fontsize=10)
ax.legend(fontsize=8)
fig.tight_layout()
fig.savefig(opts.out + ".png", dpi=110)

lines = [
    f"# Sanity run (not a benchmark result): {exp_name} on {env_id}",
    "",
    "One seed, default hyperparameters of the script unless given in the command. A check that the script learns,",
    "not a tuned or multi-seed result. Numbers below are computed from the run's TensorBoard event file by",
    f"`python scripts/ppo_report.py` ({os.path.basename(opts.out)}.png is made by the same call).",
    "",
    f"- command (run in a scratch directory, OMP_NUM_THREADS=1): `{opts.command}`",
    f"- date: {opts.date}; git commit at start: {opts.commit}"
    + (f" ({exp_name}.py was uncommitted; its sha256 at start: {opts.script_sha256})" if opts.script_sha256 else ""),
    f"- env steps: {int(iter_steps[-1])} ({len(iter_steps)} iterations of {steps_per_iter}); seed {seed}",
    f"- machine: {opts.machine}",
    *([f"- random-policy reference return: {opts.random_return:g}"] if opts.random_return is not None else []),
    *[f"- {note}" for note in opts.note],
    "",
    "| metric | value |",
    "|-|-|",
    f"| episodes | {len(ep_returns)} |",
    f"| MMER (max over iterations of the mean return of the episodes ended in the iteration) | {means.max():.4f} |",
    f"| mean return, first iteration with episodes | {means[0]:.4f} |",
    f"| mean return, last 10% of episodes ({len(last)}) | {last.mean():.4f} |",
    f"| steady SPS (rollout + update, iterations 2..) | {steady_sps:.0f} |",
    f"| mean rollout time per iteration (s) | {rollout[1:].mean():.2f} |",
    f"| mean update time per iteration (s) | {update[1:].mean():.2f} |",
    *([f"| max debug/first_minibatch_ratio_error | {ratio_err:.2e} |"] if ratio_err is not None else []),
]
with open(opts.out + ".md", "w") as f:
    f.write("\n".join(lines) + "\n")
print("\n".join(lines))
