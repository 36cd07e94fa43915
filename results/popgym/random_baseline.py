"""A uniform random policy on POPGym tasks, scored like the PPO runs: scripts/plot.py's final_score and mmer.

MMER is a maximum over training of noisy batch means, so even a policy that never learns scores above its mean
return. This gives that floor: the same env construction as the PPO scripts (algos/ppo_rtu_rtrl.make_env), the same
number of env steps, and MMER batches of 2048 steps (one PPO iteration), merged until they hold at least 10 episodes
(plot.py's defaults).

--policy constant always takes action 0 instead: a peaked policy that has learnt nothing, whose episode returns
spread more than a uniform policy's, and so whose MMER lies further above its mean.

Usage: python results/popgym/random_baseline.py popgym-RepeatFirstEasy-v0 [more env ids] [--steps 1000000] [--seed 1]
       [--policy uniform|constant]
"""
import argparse
import os
import sys

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
sys.path[:0] = [os.path.join(ROOT, "algos"), os.path.join(ROOT, "scripts")]
from plot import final_score, mmer  # noqa: E402
from ppo_rtu_rtrl import make_env  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("env_ids", nargs="+")
p.add_argument("--steps", type=int, default=1_000_000, help="env steps, as in a PPO run")
p.add_argument("--batch-steps", type=int, default=2048, help="env steps per PPO iteration (an MMER batch)")
p.add_argument("--min-episodes", type=int, default=10, help="batches are merged until they hold this many episodes")
p.add_argument("--seed", type=int, default=1)
p.add_argument("--policy", choices=["uniform", "constant"], default="uniform", help="uniform random, or always action 0")
a = p.parse_args()

print(f"| env | {a.policy} policy: mean return | final score (last 10% of episodes) | MMER | episodes | steps | seed |")
print("|-|-|-|-|-|-|-|")
for env_id in a.env_ids:
    env = make_env(env_id, 0, False, "random", 0.99, normalize=False)()
    env.action_space.seed(a.seed)
    env.reset(seed=a.seed)
    returns, end_steps = [], []
    for step in range(1, a.steps + 1):
        _, _, terminated, truncated, info = env.step(env.action_space.sample() if a.policy == "uniform" else 0)
        if terminated or truncated:
            returns.append(float(info["episode"]["r"]))
            end_steps.append(step)
            env.reset()
    iteration_ends = np.arange(a.batch_steps, a.steps + 1, a.batch_steps)  # where a PPO run logs charts/SPS
    print(f"| {env_id} | {np.mean(returns):.4f} | {final_score(returns):.4f} | "
          f"{mmer(end_steps, returns, iteration_ends, a.min_episodes):.4f} | {len(returns)} | {a.steps} | {a.seed} |",
          flush=True)
