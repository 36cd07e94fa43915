"""Mean episodic return of a uniform random policy, with the environment construction of algos/r2ac_elstm.py.

Usage: python scripts/r2ac_random_baseline.py popgym-RepeatFirstEasy-v0 [episodes] [seed]
Its last line, "final: env=... mean_return=... sem=... episodes=... seed=...", is what scripts/results_md.py's logkey
reads.
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "algos"))
from r2ac_elstm import make_env  # noqa: E402

env_id = sys.argv[1]
episodes = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
seed = int(sys.argv[3]) if len(sys.argv) > 3 else 0
env = make_env(env_id, 0, False, "random", 0.99, normalize=False)()
env.action_space.seed(seed)
env.reset(seed=seed)
returns = []
while len(returns) < episodes:
    _, _, terminated, truncated, info = env.step(env.action_space.sample())
    if terminated or truncated:
        returns.append(float(info["episode"]["r"]))
        env.reset()
returns = np.array(returns)
sem = returns.std() / np.sqrt(len(returns))
print(f"random policy on {env_id}: mean episodic return {returns.mean():.4f} +- {sem:.4f} (s.e.m.) over {len(returns)} "
      f"episodes, seed {seed}")
print(f"final: env={env_id} mean_return={returns.mean():.4f} sem={sem:.4f} episodes={len(returns)} seed={seed}")
