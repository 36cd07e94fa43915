"""Check that each longer run repeats the shorter comparison's run of the same (env, setting, seed) exactly.

For every exported run in DIR/run_scalars/ (e.g. results/popgym/concentration_2M), compares its logged episode
returns (charts/episodic_return: step and value) up to the last step of the matching run in SHORTER/run_scalars/
(default: results/popgym, the 1M-step comparison) with that run's, and prints one line per pair. Exits non-zero if
any pair differs or has no match.

Usage: python scripts/continuation_check.py DIR [SHORTER]
  e.g. python scripts/continuation_check.py results/popgym/concentration_2M
"""
import glob
import os
import sys

POPGYM = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "results", "popgym")
from plot import load_scalars, run_name  # noqa: E402

if len(sys.argv) not in (2, 3):
    sys.exit(__doc__)
shorter = sys.argv[2] if len(sys.argv) == 3 else POPGYM
longer = sorted(glob.glob(os.path.join(sys.argv[1], "run_scalars", "*.csv.gz")))
if not longer:
    sys.exit(f"no exported runs in {sys.argv[1]}/run_scalars")
failed = 0
for path in longer:
    env, exp, seed, _ = run_name(path).split("__")
    matches = glob.glob(os.path.join(shorter, "run_scalars", f"{env}__{exp}__{seed}__*.csv.gz"))
    if len(matches) != 1:
        print(f"{env} {exp} seed {seed}: {len(matches)} matching runs in {shorter}")
        failed += 1
        continue
    s1, v1 = load_scalars(matches[0], ["charts/episodic_return"])["charts/episodic_return"]
    s2, v2 = load_scalars(path, ["charts/episodic_return"])["charts/episodic_return"]
    keep = s2 <= s1[-1]
    same = len(s1) == keep.sum() and (s1 == s2[keep]).all() and (v1 == v2[keep]).all()
    print(f"{env} {exp} seed {seed}: {len(s1)} episodes up to step {s1[-1]}: {'identical' if same else 'DIFFERENT'}")
    failed += not same
sys.exit(1 if failed else 0)
