"""A uniform random policy on POPGym tasks, scored like the PPO runs: final score and MMER (scripts/plot.py's).

MMER is a maximum over training of noisy batch means, so even a policy that never learns scores above its mean
return. This gives that floor: the same env construction as the PPO scripts (algos/ppo_rtu_rtrl.make_env), the same
number of env steps, and batches of 2048 steps (one PPO iteration), merged until they hold at least 10 episodes.

--policy constant always takes action 0 instead: a peaked policy that has learnt nothing, whose episode returns
spread more than a uniform policy's, and so whose MMER lies further above its mean.

Usage: python results/popgym/random_baseline.py popgym-RepeatFirstEasy-v0 [more env ids] [--steps 1000000] [--seed 1]
       [--policy uniform|constant]
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "algos"))
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
    returns, batch_means, batch = [], [], []
    for step in range(1, a.steps + 1):
        _, _, terminated, truncated, info = env.step(env.action_space.sample() if a.policy == "uniform" else 0)
        if terminated or truncated:
            returns.append(float(info["episode"]["r"]))
            batch.append(returns[-1])
            env.reset()
        if step % a.batch_steps == 0 and len(batch) >= a.min_episodes:
            batch_means.append(np.mean(batch))
            batch = []
    returns = np.array(returns)
    final = returns[-max(1, len(returns) // 10):].mean()
    print(f"| {env_id} | {returns.mean():.4f} | {final:.4f} | {max(batch_means):.4f} | {len(returns)} | {a.steps} | {a.seed} |",
          flush=True)
