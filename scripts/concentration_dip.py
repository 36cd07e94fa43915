"""ConcentrationEasy's early dip below the random level: each PPO run's return and policy entropy early in training.

Reads the TensorBoard event files of the given run dirs and prints one markdown row per run: mean episodic return
over the first --start-steps env steps (the policy is still near uniform), then mean episodic return and mean
logged losses/entropy over env steps [--lo, --hi) (the dip); then a 'final:' line with the number of runs and the
Pearson correlation over runs of those last two columns. Set the entropy beside random_baseline.py's skewed policy, a
memoryless policy of about that entropy.

--export DIR writes the two tags' values before env step --hi to DIR/<run name>.csv.gz (plot.py's exported-run format,
a few kB each). Event files are not committed (runs/ is git-ignored); the exports are, and this script reads them like
run dirs, with the same output.

Usage: python scripts/concentration_dip.py RUN_DIR_OR_EXPORT [...] [--lo 20000] [--hi 100000] [--start-steps 10000]
       [--export DIR]
"""
import argparse
import os
import sys

import numpy as np

from plot import EXPORT_SUFFIX, export_run, load_scalars, run_name  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("run_dirs", nargs="+")
p.add_argument("--start-steps", type=int, default=10_000, help="the first window: env steps [0, this)")
p.add_argument("--lo", type=int, default=20_000, help="the dip window starts at this env step")
p.add_argument("--hi", type=int, default=100_000, help="the dip window ends before this env step")
p.add_argument("--export", metavar="DIR", help="write each run's two tags before env step --hi to DIR/<run>.csv.gz")
a = p.parse_args()
if not 0 < a.start_steps <= a.lo < a.hi:
    sys.exit(f"need 0 < --start-steps <= --lo < --hi, got {a.start_steps}, {a.lo}, {a.hi}")
if a.export:
    os.makedirs(a.export, exist_ok=True)


def window_mean(steps, values, lo, hi, what, run):
    inside = (steps >= lo) & (steps < hi)
    if not inside.any():
        sys.exit(f"{run}: no {what} logged in env steps [{lo}, {hi})")
    return float(values[inside].mean())


print(f"| run | return, steps [0, {a.start_steps}) | return, steps [{a.lo}, {a.hi}) | "
      f"policy entropy (nats), steps [{a.lo}, {a.hi}) |")
print("|-|-|-|-|")
dip_returns, dip_entropies = [], []
for d in a.run_dirs:
    run = run_name(d)
    sc = load_scalars(d, ["charts/episodic_return", "losses/entropy"])
    if "charts/episodic_return" not in sc or "losses/entropy" not in sc:
        sys.exit(f"{d}: needs charts/episodic_return and losses/entropy in its event files")
    if a.export:
        export_run(os.path.join(a.export, run + EXPORT_SUFFIX),
                   {tag: (steps[steps < a.hi], values[steps < a.hi]) for tag, (steps, values) in sc.items()})
    r_steps, r_values = sc["charts/episodic_return"]
    e_steps, e_values = sc["losses/entropy"]
    dip_returns.append(window_mean(r_steps, r_values, a.lo, a.hi, "return", run))
    dip_entropies.append(window_mean(e_steps, e_values, a.lo, a.hi, "entropy", run))
    print(f"| {run} | {window_mean(r_steps, r_values, 0, a.start_steps, 'return', run):.3f} | "
          f"{dip_returns[-1]:.3f} | {dip_entropies[-1]:.3f} |")
if len(a.run_dirs) > 2:
    print(f"\nfinal: runs={len(a.run_dirs)} pearson_r_entropy_return={np.corrcoef(dip_entropies, dip_returns)[0, 1]:.2f}")
