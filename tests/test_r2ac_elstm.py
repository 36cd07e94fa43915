"""R2AC + eLSTM (algos/r2ac_elstm.py) and the copy-task diagnostic (algos/copy_task_elstm.py).

- gradient paths (float64, the script's autograd.Function, model and loss, weights held fixed, episode resets inside
  segments and at a boundary): the eLSTM parameters' RTRL gradient summed over consecutive segments equals BPTT over
  the whole history; every other parameter (encoder, output gate, heads) gets the autograd gradient of the segment
  loss with the eLSTM frozen and the state carried in as a constant (or, with --encoder-grad one-step, with every
  step's previous state a constant);
- end-to-end runs of both scripts, both gradient methods, the MuJoCo and POPGym families;
- same seed -> identical losses; a different seed -> different losses;
- checkpoints: a run killed with SIGKILL and resumed ends exactly like an uninterrupted one (parameters and
  TensorBoard scalars), a finished run without annealing extends exactly; bad sizes and divergence stop the run
  with one "error:" line.
"""
import json
import math
import os
import re
import runpy
import signal
import sys
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
import torch
from script_runner import ALGOS, assert_same_run, read_scalars, run_and_kill, run_script

import copy_task_elstm
import r2ac_elstm

OBS_DIM, D, N = 5, 4, 6
ELSTM_NAMES = ["F", "Z", "w_f", "w_z", "b_f", "b_z"]


def _tiny_agent(continuous, head_dim, **args):
    obs_space = gym.spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float64)
    action_space = gym.spaces.Box(-1, 1, (2,), np.float32) if continuous else gym.spaces.Discrete(3)
    envs = SimpleNamespace(single_observation_space=obs_space, single_action_space=action_space)
    torch.manual_seed(0)
    agent = r2ac_elstm.Agent(envs, r2ac_elstm.Args(encoder_dim=D, hidden_dim=N, head_dim=head_dim, **args)).double()
    with torch.no_grad():  # random parameters (std 0.3 on top of the init) so that every term matters
        for p in agent.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return agent, action_space


def _segment_grads(agent, data, K, M, mode):
    """Sum over K segments of the gradient of the script's R2AC loss.

    mode "rtrl": the script's RTRL step, carry (state + traces) passed across segments without a graph.
    mode "bptt": autograd through the WHOLE concatenated sequence (no truncation anywhere).
    mode "tbptt": autograd truncated at every segment start (the script's --grad-method tbptt).
    mode "frozen": as "tbptt" with the eLSTM parameters frozen (requires_grad False): the reference of the layers
    below and above the cell under RTRL.
    mode "one-step": as "frozen" with the state cut before EVERY step: the reference of --encoder-grad one-step.
    Targets (V-trace returns, advantages) are detached in all modes, bootstraps come from the carry at the boundary.
    """
    obs, actions, rewards, dones_after, resets, last_rewards = data
    B = obs.shape[1]
    frozen = [getattr(agent, name) for name in ELSTM_NAMES] if mode in ("frozen", "one-step") else []
    for p in frozen:
        p.requires_grad_(False)
    agent.zero_grad(set_to_none=True)
    c, traces = agent.zero_carry(B, "cpu")
    total = 0.0
    for k in range(K):
        if mode != "bptt":
            c = c.detach()
        logps, ents, vals = [], [], []
        for t in range(k * M, (k + 1) * M):
            if mode == "one-step":
                c = c.detach()
            h, c, traces = agent.core_step(obs[t], last_rewards[t], c, traces, resets[t],
                                           "rtrl" if mode == "rtrl" else "tbptt")
            logp, ent, value = agent.evaluate(h, actions[t])
            logps.append(logp), ents.append(ent), vals.append(value)
        with torch.no_grad():
            h_next, _, _ = agent.core_step(obs[(k + 1) * M], last_rewards[(k + 1) * M], c, None, resets[(k + 1) * M],
                                           "tbptt")
            bootstrap = agent.get_value(h_next)
        seg = slice(k * M, (k + 1) * M)
        loss, *_ = r2ac_elstm.r2ac_loss(torch.stack(logps), torch.stack(ents), torch.stack(vals), rewards[seg],
                                        dones_after[seg], bootstrap, 0.99, 0.01, 0.5)
        if mode == "bptt":
            total = total + loss
        else:
            loss.backward()
    if mode == "bptt":
        total.backward()
    for p in frozen:
        assert p.grad is None
        p.requires_grad_(True)
    return {name: p.grad.clone() for name, p in agent.named_parameters() if p.grad is not None}


def _rel(a, b):
    return ((a - b).norm() / b.norm().clamp_min(1e-300)).item()


def _episode_data(continuous, action_space, K, M, B):
    """Random observations, actions and rewards (|r| > 1 too: the reward input clips) over K segments of M steps."""
    T = K * M
    g = torch.Generator().manual_seed(1)
    obs = torch.randn(T + 1, B, OBS_DIM, generator=g, dtype=torch.float64)
    action_space.seed(2)
    actions = torch.stack([torch.stack([torch.as_tensor(action_space.sample()) for _ in range(B)]) for _ in range(T)])
    actions = actions.double() if continuous else actions
    rewards = 1.5 * torch.randn(T, B, generator=g, dtype=torch.float64)
    dones_after = torch.zeros(T, B, dtype=torch.float64)
    # episode ends: inside a segment (t=2 -> reset at 3), at a boundary (t=4 -> reset at 5 = start of segment 1),
    # two in one env, and one at the very last step (reset of the bootstrap step)
    for t, b in [(2, 0), (4, 1), (8, 0), (11, 2), (T - 1, 1)]:
        dones_after[t, b] = 1.0
    resets = torch.cat([torch.ones(1, B, dtype=torch.float64), dones_after])  # done before step t
    # the reward input: the previous step's reward, 0 before the first step, not reset at episode starts
    last_rewards = torch.cat([torch.zeros(1, B, dtype=torch.float64), rewards])
    return obs, actions, rewards, dones_after, resets, last_rewards


@pytest.mark.parametrize("reward_input", [True, False])
@pytest.mark.parametrize("head_dim", [0, 7])
@pytest.mark.parametrize("continuous", [False, True])
def test_rtrl_gradient_paths(continuous, head_dim, reward_input):
    """Default paths: (a) the layers below and above the eLSTM get the segment loss back-propagated through the
    unrolled cell states with the eLSTM frozen, truncated at the segment start; (b) the eLSTM gets the BPTT gradient
    over the whole history (several segments, resets inside)."""
    agent, action_space = _tiny_agent(continuous, head_dim, reward_input=reward_input)
    K, M, B = 3, 5, 3
    data = _episode_data(continuous, action_space, K, M, B)
    rtrl = _segment_grads(agent, data, K, M, "rtrl")
    bptt = _segment_grads(agent, data, K, M, "bptt")
    frozen = _segment_grads(agent, data, K, M, "frozen")
    one_step = _segment_grads(agent, data, K, M, "one-step")
    tbptt = _segment_grads(agent, data, K, M, "tbptt")
    assert sorted(rtrl) == sorted(bptt) and sorted(frozen) == sorted(set(bptt) - set(ELSTM_NAMES))
    for name, grad in bptt.items():
        assert grad.abs().max() > 1e-4, f"{name}: gradient vanishes, the comparison would be vacuous"
        ref = bptt[name] if name in ELSTM_NAMES else frozen[name]
        assert _rel(rtrl[name], ref) < 1e-8, f"{name}: relative error {_rel(rtrl[name], ref):.2e}"
    # the comparisons can fail: the encoder's segment gradient is neither the one-step one nor the untruncated one,
    # and truncating at segment starts changes the eLSTM gradients (the traces carried across segments matter)
    for name in ("encoder.0.weight", "encoder.0.bias"):
        assert _rel(frozen[name], one_step[name]) > 1e-3 and _rel(frozen[name], bptt[name]) > 1e-3, name
    assert max(_rel(tbptt[n], bptt[n]) for n in ELSTM_NAMES) > 1e-3


@pytest.mark.parametrize("continuous", [False, True])
def test_rtrl_one_step_encoder_gradient(continuous):
    """--encoder-grad one-step: the layers below the eLSTM see every step's previous state as a constant; the eLSTM
    still gets the exact whole-history gradient."""
    agent, action_space = _tiny_agent(continuous, 7, encoder_grad="one-step")
    K, M, B = 3, 5, 3
    data = _episode_data(continuous, action_space, K, M, B)
    rtrl = _segment_grads(agent, data, K, M, "rtrl")
    bptt = _segment_grads(agent, data, K, M, "bptt")
    one_step = _segment_grads(agent, data, K, M, "one-step")
    for name, grad in rtrl.items():
        ref = bptt[name] if name in ELSTM_NAMES else one_step[name]
        assert _rel(grad, ref) < 1e-8, f"{name}: relative error {_rel(grad, ref):.2e}"


def test_reward_input_is_the_clipped_last_reward():
    """The eLSTM input is [encoder(obs), clip(r, -1, 1)]: the policy reads the reward, saturating at +-1."""
    agent, _ = _tiny_agent(False, 0)
    assert agent.F.shape == (N, D + 1) and agent.output_gate.in_features == D + 1 + N
    obs, c, reset = torch.randn(4, OBS_DIM, dtype=torch.float64), torch.randn(4, N, dtype=torch.float64), torch.zeros(4)
    out = {r: agent.core_step(obs, torch.full((4,), r, dtype=torch.float64), c, None, reset, "tbptt")[0]
           for r in (-7.0, -1.0, 0.0, 0.5, 1.0, 3.0)}
    assert torch.equal(out[3.0], out[1.0]) and torch.equal(out[-7.0], out[-1.0])
    assert not torch.allclose(out[0.5], out[0.0]) and not torch.allclose(out[1.0], out[0.5])
    x = torch.cat([agent.encoder(obs), torch.full((4, 1), 0.5, dtype=torch.float64)], -1)
    c_ref = r2ac_elstm.elstm_state_step(agent.elstm_params(), x, c, reset)
    assert torch.allclose(out[0.5], torch.sigmoid(agent.output_gate(torch.cat([x, c_ref], -1))) * c_ref)
    plain, _ = _tiny_agent(False, 0, reward_input=False)
    assert plain.F.shape == (N, D)


def test_r2ac_loss_is_vtrace_on_policy():
    """vs = n-step bootstrapped returns cut at episode ends; pg advantage = r + gamma*vs_{t+1} - V."""
    rewards = torch.tensor([[1.0], [2.0], [3.0]])
    dones_after = torch.tensor([[0.0], [1.0], [0.0]])
    values = torch.tensor([[0.5], [0.25], [-1.0]], requires_grad=True)
    logprobs = torch.zeros(3, 1, requires_grad=True)
    bootstrap, gamma = torch.tensor([10.0]), 0.9
    loss, pg, vloss, ent = r2ac_elstm.r2ac_loss(logprobs, torch.ones(3, 1), values, rewards, dones_after, bootstrap,
                                                gamma, 0.01, 0.5)
    vs = torch.tensor([1.0 + 0.9 * 2.0, 2.0, 3.0 + 0.9 * 10.0])
    assert torch.allclose(vloss, 0.5 * 0.5 * ((vs - values.detach().flatten()) ** 2).sum())
    loss.backward()
    assert torch.allclose(logprobs.grad.flatten(), -(vs - values.detach().flatten()))
    assert torch.allclose(ent, torch.tensor(3.0)) and torch.allclose(loss, pg + vloss - 0.01 * 3.0)


# ---------------------------------------------------------------------------------------------------------------
# End-to-end runs (all subprocesses are started together: about a minute on 2 cores)
# ---------------------------------------------------------------------------------------------------------------
R2AC_SMALL = ("--num-envs", "8", "--segment-len", "10", "--hidden-dim", "16", "--total-timesteps", "1600")
RUNS = {
    # HalfCheetah: 1 env x 1100 steps, so the episode hits the 1000-step time limit (truncation bootstrap path)
    "cheetah_rtrl": ("r2ac_elstm", "--env-id", "HalfCheetah-P-v5", "--num-envs", "1", "--segment-len", "50",
                     "--hidden-dim", "16", "--total-timesteps", "1100"),
    "popgym_rtrl_a": ("r2ac_elstm", "--env-id", "popgym-RepeatPreviousEasy-v0", *R2AC_SMALL, "--seed", "7"),
    "popgym_rtrl_b": ("r2ac_elstm", "--env-id", "popgym-RepeatPreviousEasy-v0", *R2AC_SMALL, "--seed", "7"),
    # Tuple observations and MultiDiscrete actions (POPGym wrappers), trained by truncated BPTT
    "popgym_tbptt": ("r2ac_elstm", "--env-id", "popgym-MineSweeperEasy-v0", *R2AC_SMALL, "--grad-method", "tbptt"),
    "copy_rtrl": ("copy_task_elstm", "--max-len", "2", "--hidden-dim", "32", "--batch-size", "32", "--eval-every", "320",
                  "--learning-rate", "3e-3", "--max-updates", "3000"),
    "copy_bptt": ("copy_task_elstm", "--max-len", "2", "--hidden-dim", "32", "--batch-size", "32", "--eval-every", "320",
                  "--learning-rate", "3e-3", "--max-updates", "3000", "--grad-method", "bptt"),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    def launch(item):
        name, (script, *args) = item
        cwd = tmp_path_factory.mktemp(name)
        return name, (run_script(script, *args, cwd=cwd, timeout=600), cwd)

    with ThreadPoolExecutor(max_workers=len(RUNS)) as pool:
        return dict(pool.map(launch, RUNS.items()))


def _ok(runs, name):
    proc, cwd = runs[name]
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc, cwd


@pytest.mark.parametrize("name", ["cheetah_rtrl", "popgym_rtrl_a", "popgym_tbptt"])
def test_r2ac_smoke(runs, name):
    proc, cwd = _ok(runs, name)
    assert "recurrent parameters: 2144" in proc.stdout  # 2*16*(64 + 1) + 4*16: the eLSTM input holds the last reward
    scalars = read_scalars(cwd)
    num_segments = len(re.findall(r"^SPS: ", proc.stdout, re.M))
    assert num_segments == (1100 // 50 if name.startswith("cheetah") else 1600 // 80)
    for tag in ("charts/SPS", "charts/rollout_time", "charts/update_time", "charts/learning_rate",
                "losses/value_loss", "losses/policy_loss", "losses/entropy"):
        assert len(scalars[tag]) == num_segments, tag
        assert all(math.isfinite(v) for _, v in scalars[tag]), tag
    lr = [v for _, v in scalars["charts/learning_rate"]]
    assert lr[0] == pytest.approx(6e-4) and lr[-1] < lr[0] / 10  # linear decay towards 0
    episodes = scalars["charts/episodic_return"]
    assert len(episodes) > 0 and "final: global_step=" in proc.stdout
    if name.startswith("cheetah"):
        assert [s for s, _ in scalars["charts/episodic_length"]] and all(v == 1000 for _, v in scalars["charts/episodic_length"])


def test_r2ac_same_seed_same_losses(runs):
    losses = {}
    for name in ("popgym_rtrl_a", "popgym_rtrl_b"):
        proc, cwd = _ok(runs, name)
        losses[name] = re.findall(r"losses: .*$", proc.stdout, re.M)
        losses[name + "_tb"] = {tag: read_scalars(cwd)[tag] for tag in ("losses/value_loss", "losses/policy_loss",
                                                                         "charts/episodic_return")}
    assert len(losses["popgym_rtrl_a"]) == 20 and len(set(losses["popgym_rtrl_a"])) > 1
    assert losses["popgym_rtrl_a"] == losses["popgym_rtrl_b"]
    assert losses["popgym_rtrl_a_tb"] == losses["popgym_rtrl_b_tb"]


@pytest.mark.parametrize("name", ["copy_rtrl", "copy_bptt"])
def test_copy_task_solves_small_L(runs, name):
    proc, cwd = _ok(runs, name)
    final = proc.stdout.strip().splitlines()[-1]
    assert final.startswith("final: solved (100% validation sequence accuracy) L=2"), final
    rows = (cwd / "runs").glob("*/curve.csv")
    (curve,) = list(rows)
    lines = curve.read_text().strip().splitlines()
    assert lines[0].startswith("sequences,updates") and float(lines[-1].split(",")[-1]) == 1.0
    assert float(lines[1].split(",")[-1]) < 1.0  # the untrained model does not solve it
    assert len(read_scalars(cwd)["copy/val_seq_acc"]) == len(lines) - 1


def test_copy_task_batches_follow_the_protocol():
    inputs, targets, lengths = copy_task_elstm.make_batch(np.random.default_rng(0), 64, 7)
    assert inputs.shape == targets.shape == (2 * lengths.max(), 64)
    for b, l in enumerate(lengths):
        assert 1 <= l <= 7
        pattern = inputs[:l, b]
        assert set(pattern.tolist()) <= {0, 1} and (inputs[l:, b] == copy_task_elstm.BLANK).all()
        assert (targets[:l, b] == copy_task_elstm.IGNORE).all() and (targets[2 * l:, b] == copy_task_elstm.IGNORE).all()
        assert torch.equal(targets[l:2 * l, b], pattern)


def test_copy_task_streams_follow_the_protocol():
    """Each online stream is a concatenation of copy-task sequences; reset flags exactly at their first steps."""
    streams = copy_task_elstm.SequenceStreams(np.random.default_rng(3), 4, 5)
    steps = [streams.step() for _ in range(201)]
    completed = sum(s[3] for s in steps[:200])  # sequences whose last step is < 200: their successor starts <= 200
    found = 0
    for b in range(4):
        inputs = [int(s[0][b]) for s in steps]
        targets = [int(s[1][b]) for s in steps]
        starts = [t for t, s in enumerate(steps) if s[2][b]]
        assert starts[0] == 0
        for start, end in zip(starts, starts[1:]):  # one complete sequence per pair of consecutive starts
            length = (end - start) // 2
            assert end - start == 2 * length and 1 <= length <= 5
            pattern = inputs[start:start + length]
            assert set(pattern) <= {0, 1} and inputs[start + length:end] == [copy_task_elstm.BLANK] * length
            assert targets[start:start + length] == [copy_task_elstm.IGNORE] * length
            assert targets[start + length:end] == pattern
            found += 1
    assert found == completed


@pytest.mark.parametrize("continuous", [False, True])
def test_policy_log_prob_and_entropy_match_torch_distributions(continuous):
    agent, _ = _tiny_agent(continuous, head_dim=0)
    h = torch.randn(9, N, dtype=torch.float64)
    torch.manual_seed(5)
    action, logprob, entropy, value = agent.act(h)
    if continuous:
        dist = torch.distributions.Normal(agent.actor(h), agent.actor_logstd.exp().expand(9, -1))
        ref_logprob, ref_entropy = dist.log_prob(action).sum(-1), dist.entropy().sum(-1)
    else:
        dist = torch.distributions.Categorical(logits=agent.actor(h))
        ref_logprob, ref_entropy = dist.log_prob(action), dist.entropy()
    assert torch.allclose(logprob, ref_logprob) and torch.allclose(entropy, ref_entropy)
    lp2, ent2, v2 = agent.evaluate(h, action)
    assert torch.allclose(lp2, ref_logprob) and torch.allclose(ent2, ref_entropy) and torch.allclose(v2, value)


@pytest.mark.parametrize("continuous", [False, True])
def test_policy_step_is_the_training_step_without_gradient(continuous):
    """The evaluation interface: the same cell state, action (same sampler and random numbers), log-prob and value
    as the training rollout's core_step + act, nothing differentiable."""
    agent, _ = _tiny_agent(continuous, head_dim=7)
    B = 5
    assert torch.equal(agent.initial_carry(B), torch.zeros(B, N, dtype=torch.float64))
    obs = torch.randn(B, OBS_DIM, dtype=torch.float64)
    carry, reset = torch.randn(B, N, dtype=torch.float64), torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0])
    last_reward = torch.tensor([0.3, -2.0, 0.0, 1.0, 0.7], dtype=torch.float64)
    with pytest.raises(ValueError, match="last reward"):
        agent.policy_step(obs, carry, reset)
    torch.manual_seed(3)
    action, logprob, value, new_carry = agent.policy_step(obs, carry, reset, last_reward)
    h, c, _ = agent.core_step(obs, last_reward, carry, agent.zero_carry(B, "cpu")[1], reset, "rtrl")
    torch.manual_seed(3)
    train_action, train_logprob, _, train_value = agent.act(h)
    assert torch.equal(action, train_action)
    assert torch.allclose(new_carry, c) and torch.allclose(logprob, train_logprob) and torch.allclose(value, train_value)
    assert not any(t.requires_grad for t in (action, logprob, value, new_carry))


# ---------------------------------------------------------------------------------------------------------------
# Checkpoints: kill (SIGKILL) and resume, extension, refusals, bad input, divergence
# ---------------------------------------------------------------------------------------------------------------
R2AC_POPGYM = ("r2ac_elstm", "--env-id", "popgym-RepeatPreviousEasy-v0", "--num-envs", "4", "--segment-len", "5",
               "--hidden-dim", "8", "--encoder-dim", "8", "--checkpoint-interval", "7")
# MuJoCo physics, its RNG (the reset after the time limit at step 1000) and normalisation statistics in the env state;
# truncated BPTT (no traces); no annealing (extendable)
R2AC_CHEETAH = ("r2ac_elstm", "--env-id", "HalfCheetah-P-v5", "--grad-method", "tbptt", "--no-anneal-lr", "--num-envs",
                "1", "--segment-len", "10", "--hidden-dim", "8", "--encoder-dim", "8", "--checkpoint-interval", "7")
COPY = ("copy_task_elstm", "--max-len", "4", "--hidden-dim", "8", "--batch-size", "8", "--val-size", "100",
        "--learning-rate", "1e-3", "--checkpoint-interval", "3")
KILL_CASES = {  # name: (command, kill once the checkpoint's iteration >= k); about 100 iterations, a few seconds
    "r2ac_popgym": ((*R2AC_POPGYM, "--total-timesteps", "2000"), 14),
    "r2ac_cheetah": ((*R2AC_CHEETAH, "--total-timesteps", "1100"), 14),
    "copy_rtrl": ((*COPY, "--eval-every", "40", "--max-updates", "600"), 6),
    "copy_bptt": ((*COPY, "--eval-every", "24", "--grad-method", "bptt", "--max-updates", "100"), 6),
}
EXTEND = {  # name: (the length flag, the shorter run's value): a finished run extended to the full length
    "r2ac_cheetah": ("--total-timesteps", "500"),
    "copy_rtrl": ("--max-updates", "300"),  # stops between two evaluations
}
FAILING = {  # name: (command, what the one error line says)
    "r2ac_bad_size": (("r2ac_elstm", "--num-envs", "0"), "error: --num-envs must be positive, got 0"),
    "r2ac_bad_reward_scale": (("r2ac_elstm", "--reward-scale", "0"), "error: --reward-scale must be positive, got 0.0"),
    "r2ac_diverges": ((*R2AC_POPGYM, "--total-timesteps", "800", "--learning-rate", "1e38"),
                      "error: non-finite parameters after the update at global_step="),
}


def _run_dir(cwd):
    (run_dir,) = (cwd / "runs").iterdir()
    return run_dir


def _checkpoint(run_dir):
    return torch.load(run_dir / "checkpoint.pt", weights_only=False)


def _kill_case(name, full, killed, extended):
    (script, *args), k = KILL_CASES[name]
    out = {"full": run_script(script, *args, cwd=full, timeout=600), "full_cwd": full, "killed_cwd": killed}
    out["kill_rc"] = run_and_kill(script, args, killed, k)
    checkpoint = _checkpoint(_run_dir(killed))
    out["killed_at"] = checkpoint["iteration"]
    out["logged_after"] = max(step for values in read_scalars(killed).values() for step, _ in values) > \
        checkpoint["global_step"]
    if (_run_dir(killed) / "curve.csv").exists():
        out["logged_after"] &= (_run_dir(killed) / "curve.csv").stat().st_size > checkpoint["curve_bytes"]
    out["resumed"] = run_script(script, "--resume", f"runs/{_run_dir(killed).name}", cwd=killed, timeout=600)
    if name in EXTEND:
        flag, shorter = EXTEND[name]
        full_length = args[args.index(flag) + 1]
        short = [*args[:args.index(flag) + 1], shorter, *args[args.index(flag) + 2:]]
        out["short"] = run_script(script, *short, cwd=extended, timeout=600)
        out["extended"] = run_script(script, "--resume", f"runs/{_run_dir(extended).name}", flag, full_length,
                                     cwd=extended, timeout=600)
        out["extended_cwd"] = extended
    return name, out


def _failing_case(name, cwd):
    (script, *args), _ = FAILING[name]
    return name, (run_script(script, *args, cwd=cwd, timeout=600), cwd)


@pytest.fixture(scope="module")
def checkpoint_runs(tmp_path_factory):
    # the directories are made here: tmp_path_factory is not thread-safe
    kill_dirs = {name: [tmp_path_factory.mktemp(f"{name}_{what}") for what in ("full", "killed", "extended")]
                 for name in KILL_CASES}
    failing_dirs = {name: tmp_path_factory.mktemp(name) for name in FAILING}
    with ThreadPoolExecutor(max_workers=len(KILL_CASES) + len(FAILING)) as pool:
        kills = [pool.submit(_kill_case, name, *dirs) for name, dirs in kill_dirs.items()]
        failing = [pool.submit(_failing_case, name, cwd) for name, cwd in failing_dirs.items()]
        return dict(f.result() for f in kills), dict(f.result() for f in failing)


def _assert_same_run(cwd_a, cwd_b):
    """Identical final parameters (and optimizer state), identical TensorBoard scalars except timing, both complete."""
    assert_same_run(cwd_a, cwd_b)
    if (_run_dir(cwd_a) / "curve.csv").exists():  # copy task: the rows after the checkpoint are dropped too
        curves = [[row.split(",")[:3] + row.split(",")[4:]  # (without the wall_time column)
                   for row in (_run_dir(cwd) / "curve.csv").read_text().splitlines()] for cwd in (cwd_a, cwd_b)]
        assert curves[0] == curves[1] and len(curves[0]) > 6


@pytest.mark.parametrize("name", list(KILL_CASES))
def test_killed_and_resumed_run_equals_uninterrupted_run(checkpoint_runs, name):
    out = checkpoint_runs[0][name]
    assert out["full"].returncode == 0, out["full"].stderr[-3000:]
    assert out["kill_rc"] == -signal.SIGKILL, f"the run was not killed mid-way (exit {out['kill_rc']})"
    last = _checkpoint(_run_dir(out["full_cwd"]))["iteration"]
    assert KILL_CASES[name][1] <= out["killed_at"] < last and out["logged_after"]
    assert out["resumed"].returncode == 0, out["resumed"].stderr[-3000:]
    assert "resumed runs/" in out["resumed"].stdout
    _assert_same_run(out["full_cwd"], out["killed_cwd"])
    done = json.loads((_run_dir(out["killed_cwd"]) / "done.json").read_text())
    full_done = json.loads((_run_dir(out["full_cwd"]) / "done.json").read_text())
    assert done["script"] == KILL_CASES[name][0][0] + ".py" and done["global_step"] == full_done["global_step"]
    assert {**done["args"], "resume": None} == full_done["args"]
    if name == "r2ac_cheetah":  # the time limit ended the episode after the resume: MuJoCo reset from its restored RNG
        assert out["killed_at"] < 100
        assert read_scalars(out["killed_cwd"])["charts/episodic_length"] == [(1000, 1000.0)]


@pytest.mark.parametrize("name", list(EXTEND))
def test_finished_run_without_annealing_extends_exactly(checkpoint_runs, name):
    out = checkpoint_runs[0][name]
    assert out["short"].returncode == 0 and out["extended"].returncode == 0, out["extended"].stderr[-3000:]
    assert "resumed runs/" in out["extended"].stdout
    _assert_same_run(out["full_cwd"], out["extended_cwd"])
    flag = EXTEND[name][0]
    full_length = KILL_CASES[name][0][KILL_CASES[name][0].index(flag) + 1]
    args = json.loads((_run_dir(out["extended_cwd"]) / "done.json").read_text())["args"]
    assert args[flag[2:].replace("-", "_")] == int(full_length)


def _run_in_process(script, args, cwd, monkeypatch):
    """Run algos/<script>.py's main in this process (fast: no imports) until it exits; returns the exit code."""
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", [f"{script}.py", *args])
    with pytest.raises(SystemExit) as e:
        runpy.run_path(os.path.join(ALGOS, f"{script}.py"), run_name="__main__")
    return e.value.code


def test_resume_refuses_what_would_not_continue_the_run(checkpoint_runs, monkeypatch, capsys):
    out = checkpoint_runs[0]["r2ac_popgym"]
    assert out["full"].returncode == 0, out["full"].stderr[-3000:]
    cwd, resume = out["full_cwd"], ["--resume", f"runs/{_run_dir(out['full_cwd']).name}"]
    before = sorted(p.name for p in _run_dir(cwd).iterdir())
    assert _run_in_process("r2ac_elstm", resume, cwd, monkeypatch) in (0, None)
    assert "already finished at global_step=2000" in capsys.readouterr().out
    for extra, message in ((["--total-timesteps", "16000"], "error: cannot change --total-timesteps of a run whose "
                            "learning rate anneals over it"),
                           (["--seed", "5"], "error: --seed 5 differs from the resumed run's 1"),
                           (["--total-timesteps", "1000", "--no-anneal-lr"], "error: --anneal-lr False differs")):
        assert str(_run_in_process("r2ac_elstm", resume + extra, cwd, monkeypatch)).startswith(message)
    assert _run_in_process("r2ac_elstm", ["--resume", "runs/nothing"], cwd, monkeypatch).startswith(
        "error: --resume runs/nothing: no checkpoint.pt there")
    assert sorted(p.name for p in _run_dir(cwd).iterdir()) == before  # done.json kept, nothing written


def test_resume_of_a_checkpoint_saved_before_the_reward_input(tmp_path, monkeypatch):
    """A checkpoint whose args lack reward_input and encoder_grad (and which holds no last reward) continues as the
    run it was: no reward input and, under RTRL, the one-step encoder gradient."""
    args = ["--env-id", "popgym-RepeatPreviousEasy-v0", "--num-envs", "4", "--segment-len", "5", "--hidden-dim", "8",
            "--encoder-dim", "8", "--no-anneal-lr", "--no-reward-input", "--encoder-grad", "one-step"]
    full, old = tmp_path / "full", tmp_path / "old"
    full.mkdir(), old.mkdir()

    def run(cwd, *extra):  # in this process (fast: no imports); a run that completes returns without exiting
        monkeypatch.chdir(cwd)
        monkeypatch.setattr(sys, "argv", ["r2ac_elstm.py", *extra])
        runpy.run_path(os.path.join(ALGOS, "r2ac_elstm.py"), run_name="__main__")

    run(full, *args, "--total-timesteps", "400")
    run(old, *args, "--total-timesteps", "200")
    path = _run_dir(old) / "checkpoint.pt"
    checkpoint = _checkpoint(_run_dir(old))
    del checkpoint["args"]["reward_input"], checkpoint["args"]["encoder_grad"], checkpoint["last_reward"]
    torch.save(checkpoint, path)
    resume = ["--resume", f"runs/{_run_dir(old).name}", "--total-timesteps", "400"]
    run(old, *resume)
    _assert_same_run(full, old)
    saved = json.loads((_run_dir(old) / "done.json").read_text())["args"]
    assert saved["reward_input"] is False and saved["encoder_grad"] == "one-step"


@pytest.mark.parametrize("name", list(FAILING))
def test_failures_are_one_error_line(checkpoint_runs, name):
    proc, cwd = checkpoint_runs[1][name]
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith(FAILING[name][1]), proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and sum(line.startswith("error:") for line in lines) == 1
    if name.endswith("bad_size"):
        assert lines == [lines[-1]] and not (cwd / "runs").exists()


@pytest.mark.parametrize("script,args,message", [
    ("r2ac_elstm", ["--segment-len", "0"], "--segment-len must be positive"),
    ("r2ac_elstm", ["--hidden-dim", "0"], "--hidden-dim must be positive"),
    ("r2ac_elstm", ["--encoder-dim", "0"], "--encoder-dim must be positive"),
    ("r2ac_elstm", ["--learning-rate=-1"], "--learning-rate must be positive"),
    ("r2ac_elstm", ["--gamma", "1.5"], "--gamma must be in [0, 1]"),
    ("r2ac_elstm", ["--head-dim=-1"], "--head-dim must be >= 0"),
    ("r2ac_elstm", ["--checkpoint-interval=-1"], "--checkpoint-interval must be >= 0"),
    ("r2ac_elstm", ["--total-timesteps", "100"], "is smaller than one segment"),
    ("r2ac_elstm", ["--grad-method", "tbptt", "--encoder-grad", "one-step"], "--encoder-grad one-step needs"),
    ("copy_task_elstm", ["--max-len", "0"], "--max-len must be positive"),
    ("copy_task_elstm", ["--hidden-dim", "0"], "--hidden-dim must be positive"),
    ("copy_task_elstm", ["--val-size", "0"], "--val-size must be positive"),
    ("copy_task_elstm", ["--eval-every", "0"], "--eval-every must be positive"),
    ("copy_task_elstm", ["--learning-rate", "0"], "--learning-rate must be positive"),
    ("copy_task_elstm", ["--max-updates", "0"], "--max-updates must be positive"),
])
def test_bad_sizes_exit_before_a_run_dir(script, args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [f"{script}.py", *args])
    with pytest.raises(SystemExit) as e:
        runpy.run_path(os.path.join(ALGOS, f"{script}.py"), run_name="__main__")
    assert isinstance(e.value.code, str) and e.value.code.startswith("error: ") and message in e.value.code, e.value.code
    assert "\n" not in e.value.code and not (tmp_path / "runs").exists()
