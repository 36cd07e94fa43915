# Diagnostic for the R2AC sanity failure on POPGym: can the R2AC update (algos/r2ac_elstm.py: its Agent, eLSTM,
# r2ac_loss, RMSProp settings and grad-norm clip) learn a delayed contextual bandit at POPGym's reward scale?
#
# Task: every step shows a random suit (one-hot, 4 values); the reward is +scale if the action equals the suit shown
# k steps earlier, else -scale (scale = 1/48, as in popgym RepeatPreviousEasy, whose k is 4). k = 0 needs no memory.
# No episode ends (a continuing task); the carry is reset once, at the start. Prints the accuracy of the sampled
# actions per segment (chance = 0.25) and the mean policy entropy (log 4 = 1.386 is uniform).
#
# Usage: python scripts/r2ac_delayed_bandit.py --delay 4 --iterations 300 [--grad-method tbptt]
#        python scripts/r2ac_delayed_bandit.py --plot OUT.png OUTPUT [OUTPUT ...]   (the printed outputs of such runs:
#        their accuracy and entropy against env steps)
import argparse
import os
import sys
import types
from collections import deque

import gymnasium as gym
import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "algos"))
import r2ac_elstm  # noqa: E402



def plot(out, outputs):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for path in outputs:
        with open(path) as f:
            label, *lines = [line.split() for line in f if line.strip()]
        # "iteration I env steps N accuracy A entropy E"
        steps, acc, ent = zip(*[(int(w[4]), float(w[6]), float(w[8])) for w in lines if w[0] == "iteration"])
        for ax, y in zip(axes, (acc, ent)):
            # the header "delay K, G, M m, B b, lr L, forget bias F" without the batch size
            name = ", ".join(x for x in " ".join(label).split(", ") if not x.startswith("B "))
            ax.plot(steps, y, marker=".", linestyle="--" if "tbptt" in label[2] else "-", label=name)
    axes[0].axhline(0.25, color="gray", linestyle=":", label="chance")
    axes[1].axhline(np.log(4), color="gray", linestyle=":", label="uniform policy")
    for ax, name in zip(axes, ("accuracy of the sampled actions", "policy entropy")):
        ax.set_xlabel("environment steps")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("R2AC update on a delayed contextual bandit (k: steps of memory needed)")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    print(f"saved {out}")


p = argparse.ArgumentParser()
p.add_argument("--delay", type=int, default=0, help="k: the action must match the suit shown k steps earlier")
p.add_argument("--iterations", type=int, default=200, help="segments, i.e. optimizer steps")
p.add_argument("--grad-method", choices=["rtrl", "tbptt"], default="rtrl")
p.add_argument("--segment-len", type=int, default=50)
p.add_argument("--num-envs", type=int, default=32)
p.add_argument("--learning-rate", type=float, default=6e-4)
p.add_argument("--forget-bias", type=float, default=0.0)
p.add_argument("--reward-scale", type=float, default=1 / 48)
p.add_argument("--seed", type=int, default=1)
p.add_argument("--plot", nargs="+", metavar="PATH", help="instead of training: OUT.png, then outputs of this script")
a = p.parse_args()
if a.plot:
    plot(a.plot[0], a.plot[1:])
    sys.exit(0)

torch.manual_seed(a.seed)
rng = np.random.default_rng(a.seed)
args = r2ac_elstm.Args(learning_rate=a.learning_rate, forget_bias=a.forget_bias, segment_len=a.segment_len,
                       num_envs=a.num_envs, grad_method=a.grad_method)
spaces = types.SimpleNamespace(single_observation_space=gym.spaces.Box(0, 1, (4,)), single_action_space=gym.spaces.Discrete(4))
agent = r2ac_elstm.Agent(spaces, args)
optimizer = torch.optim.RMSprop(agent.parameters(), lr=args.learning_rate, alpha=args.rmsprop_alpha, eps=args.rmsprop_eps)
M, B = args.segment_len, args.num_envs
c, traces = agent.zero_carry(B, "cpu")
if args.grad_method == "tbptt":
    traces = None
suit = rng.integers(0, 4, B)
shown = deque([suit] * (a.delay + 1), maxlen=a.delay + 1)  # shown[0] is the suit from k steps ago
reset = torch.ones(B)
last_reward = torch.zeros(B)  # the core's reward input (the official learner's): the previous step's reward
print(f"delay {a.delay}, {args.grad_method}, M {M}, B {B}, lr {args.learning_rate}, forget bias {a.forget_bias}")
for iteration in range(a.iterations):
    c = c.detach()
    logprobs, entropies, values, rewards, hits = [], [], [], [], []
    for step in range(M):
        obs = torch.tensor(np.eye(4)[suit], dtype=torch.float32)
        h, c, traces = agent.core_step(obs, last_reward, c, traces, reset, args.grad_method)
        action, logprob, entropy, value = agent.act(h)
        hit = action.numpy() == shown[0]
        last_reward = torch.tensor(np.where(hit, a.reward_scale, -a.reward_scale), dtype=torch.float32)
        rewards.append(last_reward)
        logprobs.append(logprob), entropies.append(entropy), values.append(value), hits.append(hit.mean())
        suit, reset = rng.integers(0, 4, B), torch.zeros(B)
        shown.append(suit)
    with torch.no_grad():
        next_h, _, _ = agent.core_step(torch.tensor(np.eye(4)[suit], dtype=torch.float32), last_reward, c, None, reset,
                                    "tbptt")
        bootstrap = agent.get_value(next_h)
    loss, _, _, entropy_sum = r2ac_elstm.r2ac_loss(torch.stack(logprobs), torch.stack(entropies), torch.stack(values),
                                                   torch.stack(rewards), torch.zeros(M, B), bootstrap, args.gamma,
                                                   args.ent_coef, args.baseline_cost)
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm)
    optimizer.step()
    if iteration % max(1, a.iterations // 10) == 0 or iteration == a.iterations - 1:
        print(f"iteration {iteration:5d} env steps {(iteration + 1) * M * B:8d} accuracy {np.mean(hits):.3f} "
              f"entropy {entropy_sum.item() / (M * B):.3f}", flush=True)
