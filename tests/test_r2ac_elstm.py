"""R2AC + eLSTM (algos/r2ac_elstm.py) and the copy-task diagnostic (algos/copy_task_elstm.py), SPEC 5 and 9.

- the RTRL gradient accumulated over consecutive segments (the script's autograd.Function, model and loss, weights
  held fixed) equals BPTT over the concatenated sequence, with episode resets inside segments and at a boundary;
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


def _tiny_agent(continuous, head_dim):
    obs_space = gym.spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float64)
    action_space = gym.spaces.Box(-1, 1, (2,), np.float32) if continuous else gym.spaces.Discrete(3)
    envs = SimpleNamespace(single_observation_space=obs_space, single_action_space=action_space)
    torch.manual_seed(0)
    agent = r2ac_elstm.Agent(envs, r2ac_elstm.Args(encoder_dim=D, hidden_dim=N, head_dim=head_dim)).double()
    with torch.no_grad():  # random parameters (std 0.3 on top of the init) so that every term matters
        for p in agent.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return agent, action_space


def _segment_grads(agent, data, K, M, mode):
    """Sum over K segments of the gradient of the script's R2AC loss.

    mode "rtrl": the script's RTRL step, carry (state + traces) passed across segments without a graph.
    mode "bptt": autograd through the WHOLE concatenated sequence (no truncation anywhere).
    mode "tbptt": autograd truncated at every segment start (the script's --grad-method tbptt).
    Targets (V-trace returns, advantages) are detached in all modes, bootstraps come from the carry at the boundary.
    """
    obs, actions, rewards, dones_after, resets = data
    B = obs.shape[1]
    agent.zero_grad()
    c, traces = agent.zero_carry(B, "cpu")
    total = 0.0
    for k in range(K):
        if mode != "bptt":
            c = c.detach()
        logps, ents, vals = [], [], []
        for t in range(k * M, (k + 1) * M):
            h, c, traces = agent.core_step(obs[t], c, traces, resets[t], "rtrl" if mode == "rtrl" else "tbptt")
            logp, ent, value = agent.evaluate(h, actions[t])
            logps.append(logp), ents.append(ent), vals.append(value)
        with torch.no_grad():
            h_next, _, _ = agent.core_step(obs[(k + 1) * M], c, None, resets[(k + 1) * M], "tbptt")
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
    return {name: p.grad.clone() for name, p in agent.named_parameters()}


def _rel(a, b):
    return ((a - b).norm() / b.norm().clamp_min(1e-300)).item()


@pytest.mark.parametrize("head_dim", [0, 7])
@pytest.mark.parametrize("continuous", [False, True])
def test_rtrl_over_segments_equals_bptt_of_concatenation(continuous, head_dim):
    agent, action_space = _tiny_agent(continuous, head_dim)
    K, M, B = 3, 5, 3
    T = K * M
    g = torch.Generator().manual_seed(1)
    obs = torch.randn(T + 1, B, OBS_DIM, generator=g, dtype=torch.float64)
    action_space.seed(2)
    actions = torch.stack([torch.stack([torch.as_tensor(action_space.sample()) for _ in range(B)]) for _ in range(T)])
    actions = actions.double() if continuous else actions
    rewards = torch.randn(T, B, generator=g, dtype=torch.float64)
    dones_after = torch.zeros(T, B, dtype=torch.float64)
    # episode ends: inside a segment (t=2 -> reset at 3), at a boundary (t=4 -> reset at 5 = start of segment 1),
    # two in one env, and one at the very last step (reset of the bootstrap step)
    for t, b in [(2, 0), (4, 1), (8, 0), (11, 2), (T - 1, 1)]:
        dones_after[t, b] = 1.0
    resets = torch.cat([torch.ones(1, B, dtype=torch.float64), dones_after])  # done before step t
    data = (obs, actions, rewards, dones_after, resets)

    rtrl = _segment_grads(agent, data, K, M, "rtrl")
    bptt = _segment_grads(agent, data, K, M, "bptt")
    tbptt = _segment_grads(agent, data, K, M, "tbptt")
    elstm_names = ["F", "Z", "w_f", "w_z", "b_f", "b_z"]
    for name, grad in bptt.items():
        assert grad.abs().max() > 1e-4, f"{name}: gradient vanishes, the comparison would be vacuous"
        if name.startswith("encoder."):
            # RTRL gives the encoder the one-step gradient only (x_t's effect on later states is dropped, SPEC 5)
            assert _rel(rtrl[name], grad) > 1e-6, name
            continue
        assert _rel(rtrl[name], grad) < 1e-8, f"{name}: relative error {_rel(rtrl[name], grad):.2e}"
    # the traces carried across segments matter: truncating at segment starts changes the eLSTM gradients
    assert max(_rel(tbptt[n], bptt[n]) for n in elstm_names) > 1e-3


def test_r2ac_loss_is_vtrace_on_policy():
    """vs = n-step bootstrapped returns cut at episode ends; pg advantage = r + gamma*vs_{t+1} - V (SPEC 5)."""
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
    assert "recurrent parameters: 2112" in proc.stdout  # 2*16*64 + 4*16
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
    torch.manual_seed(3)
    action, logprob, value, new_carry = agent.policy_step(obs, carry, reset)
    h, c, _ = agent.core_step(obs, carry, agent.zero_carry(B, "cpu")[1], reset, "rtrl")
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
