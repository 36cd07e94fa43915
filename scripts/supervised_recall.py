"""Can the PPO scripts' recurrent model learn a POPGym recall task when it is told the answer?

A diagnostic that takes reinforcement learning out: the same Agent, optimiser and update scheme as the PPO script,
but actions are uniformly random and the loss is the cross-entropy of the actor's logits against the correct action
(RepeatFirst: the episode's first card; RepeatPrevious: the card k steps back). So if the model fails here, the
obstacle is the architecture or its gradient, not exploration or the reward signal.

- RTRL scripts (ppo_rtu_rtrl, ppo_lru_rtrl): each iteration stores the carry (state and RTRL traces) before every
  step of a 2048-step rollout, then runs epochs x minibatches of one-step re-runs from the stored carries with the
  RTRL backward, exactly as the PPO update does (stale traces and a one-step gradient below the recurrence).
- ppo_gru_tbptt: the same rollout, updates by T-BPTT over windows of --tbptt-len steps from stored states.
Accuracy is measured on the rollout (the parameters before the iteration's update), on steps where the answer is not
visible (all but an episode's first step on RepeatFirst; steps >= k on RepeatPrevious).

Usage: python scripts/supervised_recall.py --script ppo_rtu_rtrl --env-id popgym-RepeatFirstEasy-v0 --iterations 100
       [--seed 1] [--out RUN.json] [-- SCRIPT FLAGS, e.g. --rtu-variant linear --first-step-copy]
       python scripts/supervised_recall.py --summarize DIR     (DIR/summary.md and DIR/accuracy.png from DIR/*.json)
"""
import argparse
import importlib
import json
import os
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "algos"))


def answer(env, t):
    """The correct action of the task at step t of the current episode (None where it is visible in the input)."""
    game = env.unwrapped
    name = type(game).__name__
    if name.startswith("RepeatFirst"):
        return int(game.card), t > 0
    if name.startswith("RepeatPrevious"):
        return int(game.deck.show("player", ["suits_idx"])[0, -game.k - 1]) if t >= game.k else 0, t >= game.k
    sys.exit(f"error: no known answer for {name}; supported: RepeatFirst*, RepeatPrevious*")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--script", choices=["ppo_rtu_rtrl", "ppo_lru_rtrl", "ppo_gru_tbptt"])
    parser.add_argument("--env-id", default="popgym-RepeatFirstEasy-v0")
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", help="write the accuracy curve here (JSON)")
    parser.add_argument("--summarize", metavar="DIR", help="instead: write DIR/summary.md and DIR/accuracy.png from DIR/*.json")
    opts, script_flags = parser.parse_known_args()
    if opts.summarize:
        return summarize(opts.summarize)
    if opts.script is None:
        sys.exit("error: --script is required")
    script_flags = [f for f in script_flags if f != "--"]
    mod = importlib.import_module(opts.script)
    import tyro

    eager = ["--no-compile"] if hasattr(mod.Args, "compile") else []
    args = tyro.cli(mod.Args, args=["--env-id", opts.env_id, "--seed", str(opts.seed), *eager, *script_flags])
    mod.check_args(args)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    family = mod.env_family(args.env_id)
    env = mod.make_env(args.env_id, 0, False, "supervised", args.gamma, args.normalize_env, args.obs_norm,
                       args.popgym_obs, args.first_step_copy, args.prev_reward)()
    envs = type("Spaces", (), {"single_observation_space": env.observation_space,
                               "single_action_space": env.action_space})
    assert family == "popgym"
    agent = mod.Agent(envs, args)
    optimizer = torch.optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5)
    T = args.num_steps
    rtrl = opts.script != "ppo_gru_tbptt"
    obs_buf = torch.zeros((T, 1) + env.observation_space.shape)
    dones = torch.zeros((T, 1))
    labels = torch.zeros(T, dtype=torch.long)
    hidden = torch.zeros(T, dtype=torch.bool)
    next_obs = torch.tensor(env.reset(seed=args.seed)[0], dtype=torch.float32)[None]
    next_done, t_in_episode = torch.ones(1), 0
    carry = agent.initial_carry(1)
    curve = []
    start = time.time()
    for iteration in range(1, opts.iterations + 1):
        stored, correct = [], []
        for step in range(T):
            obs_buf[step], dones[step] = next_obs, next_done
            stored.append(carry)
            labels[step], hidden[step] = answer(env, t_in_episode)
            with torch.inference_mode():
                if rtrl:  # (state, traces)
                    carry = agent.step(next_obs, *carry, next_done)
                    state = carry[0]
                else:
                    state = carry = agent.step(next_obs, carry, next_done)
                logits = agent.actor(agent.features(state))
            correct.append(int(logits.argmax(-1)) == int(labels[step]))
            obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
            t_in_episode += 1
            if terminated or truncated:
                obs, _ = env.reset()
                t_in_episode = 0
            next_obs = torch.tensor(obs, dtype=torch.float32)[None]
            next_done = torch.tensor([float(terminated or truncated)])
        accuracy = float(np.mean(np.array(correct)[hidden.numpy()]))
        # update: the PPO script's epochs x minibatches, cross-entropy on the stored rollout
        b_obs, b_dones = obs_buf.flatten(0, 1), dones.flatten(0, 1)
        if rtrl:
            b_states = torch.cat([c[0] for c in stored])
            b_traces = type(stored[0][1])(*(torch.cat(ts) for ts in zip(*(c[1] for c in stored))))
            units = np.arange(T)
        else:
            L = args.tbptt_len
            b_states = torch.cat(stored)[::L]
            units = np.arange(T // L)
        for epoch in range(args.update_epochs):
            np.random.shuffle(units)
            for mb in np.array_split(units, args.num_minibatches):
                mb = torch.as_tensor(mb)
                if rtrl:
                    state = agent.step_rtrl(b_obs[mb], b_states, b_traces, mb, b_dones[mb])
                    idx = mb
                else:
                    idx = (mb[:, None] * L + torch.arange(L)).flatten()
                    state = agent.unroll(b_obs[idx].unflatten(0, (-1, L)), b_states[mb], b_dones[idx].unflatten(0, (-1, L)))
                logits = agent.actor(agent.features(state))
                loss = F.cross_entropy(logits[hidden[idx]], labels[idx][hidden[idx]])
                optimizer.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm)
                optimizer.step()
        curve.append((iteration * T, accuracy, float(loss)))
        print(f"iteration {iteration} steps {iteration * T} accuracy {accuracy:.3f} loss {float(loss):.3f} "
              f"({time.time() - start:.0f}s)", flush=True)
    if opts.out:
        commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
        with open(opts.out, "w") as f:
            json.dump({"script": opts.script, "flags": script_flags, "env_id": opts.env_id, "seed": opts.seed,
                       "command": " ".join(["python", "scripts/supervised_recall.py", *sys.argv[1:]]),
                       "commit": commit, "curve": curve}, f)


def summarize(folder, last=10):
    """One table row per run (accuracy on the steps that need memory, mean of the last `last` iterations) and a plot."""
    import glob

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [json.load(open(p)) | {"file": os.path.basename(p)} for p in sorted(glob.glob(os.path.join(folder, "*.json")))]
    if not runs:
        sys.exit(f"error: no *.json in {folder}")
    lines = ["| run | script | flags | steps | accuracy, last %d iterations | commit |" % last, "|-|-|-|-|-|-|"]
    for r in runs:
        acc = np.mean([a for _, a, _ in r["curve"][-last:]])
        flags = " ".join(r["flags"]) or "(defaults)"
        lines.append(f"| {r['file']} | {r['script']} | `{flags}` | {r['curve'][-1][0]} | {acc:.3f} | {r.get('commit', '')} |")
        plt.plot([c[0] for c in r["curve"]], [c[1] for c in r["curve"]], label=f"{r['script']} {flags}")
    plt.axhline(0.25, color="gray", ls=":", label="chance (4 suits)")
    plt.xlabel("env steps")
    plt.ylabel("accuracy where the answer is not visible")
    plt.legend(fontsize=7)
    plt.savefig(os.path.join(folder, "accuracy.png"), dpi=120, bbox_inches="tight")
    commands = ["", "Commands:", ""] + [f"- `{r['command']}`" for r in runs if "command" in r]
    with open(os.path.join(folder, "summary.md"), "w") as f:
        f.write("\n".join(lines + commands) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
