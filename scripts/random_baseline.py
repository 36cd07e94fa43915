"""A uniform random policy on POPGym tasks, scored like the PPO runs: scripts/plot.py's final_score and mmer.

MMER is a maximum over training of noisy batch means, so even a policy that never learns scores above its mean
return. This gives that floor: the same env construction as the PPO scripts (algos/ppo_rtu_rtrl.make_env), the same
number of env steps, and MMER batches of 2048 steps (one PPO iteration), merged until they hold at least 10 episodes
(plot.py's defaults).

--policy constant always takes action 0 instead: a peaked policy that has learnt nothing, whose episode returns
spread more than a uniform policy's, and so whose MMER lies further above its mean.

--policy skewed --logit-std S [S ...] is a memoryless policy that is only slightly non-uniform: softmax of logits
drawn from N(0, S^2), redrawn at every reset (on ConcentrationEasy the cards are reshuffled each episode, so which
actions are preferred does not matter, only how much). One row per S, with the policy's mean entropy, to set beside a
PPO run's losses/entropy (scripts/concentration_dip.py).

Usage: python scripts/random_baseline.py popgym-RepeatFirstEasy-v0 [more env ids] [--steps 1000000] [--seed 1]
       [--policy uniform|constant|skewed] [--logit-std 0.5 ...]
"""
import argparse
import os
import sys

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path[:0] = [os.path.join(ROOT, "algos"), os.path.join(ROOT, "scripts")]
from plot import final_score, mmer  # noqa: E402
from ppo_rtu_rtrl import make_env  # noqa: E402

p = argparse.ArgumentParser()
p.add_argument("env_ids", nargs="+")
p.add_argument("--steps", type=int, default=1_000_000, help="env steps, as in a PPO run")
p.add_argument("--batch-steps", type=int, default=2048, help="env steps per PPO iteration (an MMER batch)")
p.add_argument("--min-episodes", type=int, default=10, help="batches are merged until they hold this many episodes")
p.add_argument("--seed", type=int, default=1)
p.add_argument("--policy", choices=["uniform", "constant", "skewed"], default="uniform",
               help="uniform random, always action 0, or slightly non-uniform (see --logit-std)")
p.add_argument("--logit-std", type=float, nargs="+", default=[0.5],
               help="skewed policy: std of its Gaussian logits; one table row per value")
a = p.parse_args()
if a.policy == "skewed" and not all(std > 0 for std in a.logit_std):
    sys.exit(f"--logit-std must be > 0 for --policy skewed, got {a.logit_std}")


def run_policy(env_id, sample, draw_probs=None):
    """Returns and end steps over a.steps env steps. sample(env, probs) picks each action; draw_probs(num_actions), if
    given, draws a new action distribution at every reset, and the mean entropy of those is returned as well."""
    env = make_env(env_id, 0, False, "random", 0.99, normalize=False)()
    env.action_space.seed(a.seed)
    env.reset(seed=a.seed)
    probs = draw_probs(env.action_space.n) if draw_probs else None
    returns, end_steps, entropies = [], [], []
    for step in range(1, a.steps + 1):
        _, _, terminated, truncated, info = env.step(sample(env, probs))
        if terminated or truncated:
            returns.append(float(info["episode"]["r"]))
            end_steps.append(step)
            env.reset()
            if draw_probs:
                entropies.append(float(-(probs * np.log(probs)).sum()))
                probs = draw_probs(env.action_space.n)
    if not returns:
        sys.exit(f"{env_id}: no episode ended within --steps {a.steps}; raise --steps")
    return returns, end_steps, (float(np.mean(entropies)) if draw_probs else None)


def scores(returns, end_steps):
    iteration_ends = np.arange(a.batch_steps, a.steps + 1, a.batch_steps)  # where a PPO run logs charts/SPS
    return (f"{np.mean(returns):.4f} | {final_score(returns):.4f} | "
            f"{mmer(end_steps, returns, iteration_ends, a.min_episodes):.4f} | {len(returns)} | {a.steps} | {a.seed} |")


if a.policy == "skewed":
    print("| logit std | env | mean policy entropy (nats) | mean return | final score (last 10% of episodes) | MMER "
          "| episodes | steps | seed |")
    print("|-|-|-|-|-|-|-|-|-|")
    for env_id in a.env_ids:
        for std in a.logit_std:
            rng = np.random.default_rng(a.seed)

            def draw_probs(n):  # softmax of Gaussian logits, redrawn every episode
                logits = rng.normal(0.0, std, n)
                return np.exp(logits) / np.exp(logits).sum()

            returns, end_steps, entropy = run_policy(
                env_id, lambda env, probs: int(rng.choice(len(probs), p=probs)), draw_probs)
            print(f"| {std} | {env_id} | {entropy:.3f} | {scores(returns, end_steps)}", flush=True)
else:
    print(f"| env | {a.policy} policy: mean return | final score (last 10% of episodes) | MMER | episodes | steps | seed |")
    print("|-|-|-|-|-|-|-|")
    for env_id in a.env_ids:
        returns, end_steps, _ = run_policy(
            env_id, (lambda env, probs: env.action_space.sample()) if a.policy == "uniform" else (lambda env, probs: 0))
        print(f"| {env_id} | {scores(returns, end_steps)}", flush=True)
