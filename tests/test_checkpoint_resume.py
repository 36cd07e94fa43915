"""The PPO scripts' checkpoints, resume, completion marker, input checks and evaluation of a saved agent."""
import glob
import importlib
import json
import os
import signal
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest
import torch
from script_runner import ROOT, assert_same_run, run_and_kill, run_script

SCRIPTS = ("ppo_rtu_rtrl", "ppo_lru_rtrl", "ppo_gru_tbptt", "ppo_lru_tbptt", "ppo_mlp")
COMPILED = ("ppo_rtu_rtrl", "ppo_lru_rtrl")  # the scripts with a --compile flag
# 16 iterations of 128 steps, a checkpoint every 2
TINY = ("--total-timesteps", "2048", "--num-steps", "128", "--num-minibatches", "4", "--update-epochs", "2",
        "--checkpoint-interval", "2", "--seed", "5")


def eager(script):
    return ("--no-compile",) if script in COMPILED else ()


def run_dir_of(cwd):
    (run_dir,) = glob.glob(os.path.join(cwd, "runs", "*"))
    return run_dir


def scalars(run_dir):
    """All scalars of a run dir, every event file of it, as TensorBoard shows them (purged steps dropped)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(run_dir)
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def run_and_kill_dir(script, args, cwd, after_iteration):
    """run_and_kill, checked to have killed the run mid-way; returns the killed run's dir."""
    assert run_and_kill(script, args, cwd, after_iteration, timeout=600) == -signal.SIGKILL, \
        open(os.path.join(cwd, "killed.log")).read()[-2000:]
    return run_dir_of(cwd)


def assert_same_run_dirs(dir_a, dir_b):
    """Same final parameters and optimizer state, same curves (no duplicated or missing steps)."""
    assert_same_run(os.path.dirname(os.path.dirname(dir_a)), os.path.dirname(os.path.dirname(dir_b)))
    assert len(scalars(dir_a)["charts/episodic_return"]) > 0


@pytest.mark.parametrize("script", SCRIPTS)
def test_killed_and_resumed_run_equals_uninterrupted_run(script, tmp_path):
    args = ("--env-id", "popgym-RepeatPreviousEasy-v0", *TINY, *eager(script))
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    proc = run_script(script, *args, cwd=tmp_path / "a")
    assert proc.returncode == 0, proc.stderr[-3000:]
    killed = run_and_kill_dir(script, args, tmp_path / "b", after_iteration=4)
    assert not os.path.exists(os.path.join(killed, "done.json"))
    proc = run_script(script, *args, "--resume", killed, cwd=tmp_path / "b")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resumed" in proc.stdout
    assert_same_run_dirs(run_dir_of(tmp_path / "a"), killed)
    marker = json.load(open(os.path.join(killed, "done.json")))
    assert marker["script"] == f"{script}.py" and marker["global_step"] == 2048
    assert marker["args"]["total_timesteps"] == 2048 and marker["args"]["env_id"] == "popgym-RepeatPreviousEasy-v0"


@pytest.mark.parametrize("script,compiled", [("ppo_gru_tbptt", False), ("ppo_rtu_rtrl", True)])
def test_resume_is_exact_on_mujoco(script, compiled, tmp_path):
    """The physics state and the env's RNG are saved too: the resumed run crosses the 1000-step time limit exactly as
    the uninterrupted one (with torch.compile'd sampling, for the RTU)."""
    args = ("--env-id", "HalfCheetah-P-v5", *TINY, *(() if compiled else eager(script)))
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    proc = run_script(script, *args, cwd=tmp_path / "a")
    assert proc.returncode == 0, proc.stderr[-3000:]
    killed = run_and_kill_dir(script, args, tmp_path / "b", after_iteration=4)
    proc = run_script(script, *args, "--resume", killed, cwd=tmp_path / "b")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_same_run_dirs(run_dir_of(tmp_path / "a"), killed)


def test_finished_run_extends_with_a_larger_total(tmp_path):
    """A finished run resumed with a larger --total-timesteps equals one run of the larger total."""
    script, args = "ppo_mlp", ("--env-id", "popgym-RepeatPreviousEasy-v0", *TINY)
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    assert run_script(script, *args, "--total-timesteps", "4096", cwd=tmp_path / "a").returncode == 0
    assert run_script(script, *args, cwd=tmp_path / "b").returncode == 0
    short = run_dir_of(tmp_path / "b")
    os.remove(os.path.join(short, "done.json"))  # as if killed between the final checkpoint and the marker
    proc = run_script(script, *args, "--resume", short, cwd=tmp_path / "b")
    assert proc.returncode == 0 and "already finished" in proc.stdout
    assert json.load(open(os.path.join(short, "done.json")))["global_step"] == 2048
    proc = run_script(script, *args, "--total-timesteps", "4096", "--resume", short, cwd=tmp_path / "b")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_same_run_dirs(run_dir_of(tmp_path / "a"), short)
    assert json.load(open(os.path.join(short, "done.json")))["global_step"] == 4096


@pytest.mark.parametrize("flags,message", [
    (("--seed", "6"), "--seed 6 differs from the resumed run's 5"),
    (("--anneal-lr", "--total-timesteps", "4096"), "--anneal-lr True differs"),
])
def test_resume_refuses_a_different_configuration(flags, message, tmp_path):
    script, args = "ppo_mlp", ("--env-id", "popgym-RepeatPreviousEasy-v0", *TINY)
    assert run_script(script, *args, cwd=tmp_path).returncode == 0
    proc = run_script(script, *args, *flags, "--resume", run_dir_of(tmp_path), cwd=tmp_path)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [f"error: {message}" + proc.stderr.strip().split(message)[1]]


BAD_ARGS = [
    (("--num-steps", "0"), "--num-steps must be positive"),
    (("--num-minibatches", "0"), "--num-minibatches must be positive"),
    (("--num-envs", "0"), "--num-envs must be positive"),
    (("--update-epochs", "0"), "--update-epochs must be positive"),
    (("--learning-rate", "-1"), "--learning-rate must be positive"),
    (("--encoder-dim", "0"), "--encoder-dim must be positive"),
    (("--gamma", "1.5"), "--gamma must be in [0, 1]"),
    (("--checkpoint-interval", "-1"), "--checkpoint-interval must be >= 0"),
    (("--num-steps", "100", "--num-minibatches", "3"), "not divisible by num_minibatches=3"),
]


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("flags,message", BAD_ARGS + [(("--hidden-dim", "0"), "--hidden-dim must be positive"),
                                                      (("--tbptt-len", "0"), "--tbptt-len must be positive")])
def test_bad_sizes_and_rates_exit_with_one_line(script, flags, message):
    mod = importlib.import_module(script)
    names = {f.name for f in mod.fields(mod.Args)}
    if flags[0][2:].replace("-", "_") not in names:
        pytest.skip(f"{script} has no {flags[0]}")
    args = mod.Args()
    for name, value in zip(flags[::2], flags[1::2]):
        name = name[2:].replace("-", "_")
        setattr(args, name, type(getattr(args, name))(value))
    with pytest.raises(SystemExit) as e:
        mod.check_args(args)
    assert str(e.value).startswith("error: ") and message in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("script", SCRIPTS)
def test_bad_input_creates_no_run_dir(script, tmp_path):
    proc = run_script(script, "--num-steps", "0", cwd=tmp_path, timeout=120)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == ["error: --num-steps must be positive, got 0"]
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("script", ("ppo_rtu_rtrl", "ppo_lru_tbptt"))
def test_divergence_stops_with_one_line(script, tmp_path):
    proc = run_script(script, "--env-id", "popgym-RepeatPreviousEasy-v0", *TINY, "--learning-rate", "1e6",
                      *eager(script), cwd=tmp_path)
    assert proc.returncode != 0
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith("error: non-finite") and "global_step=" in line


@pytest.mark.parametrize("script", SCRIPTS)
def test_light_env_wrapper_equals_gymnasium_stack(script):
    """The one-pass wrapper gives bit for bit what CleanRL's gymnasium wrappers give, across episode ends."""
    mod = importlib.import_module(script)
    for env_id, normalize in (("Hopper-P-v5", True), ("popgym-RepeatPreviousEasy-v0", False)):
        ours = mod.make_env(env_id, 0, False, "test", 0.99, normalize)()
        ref = mod.make_env(env_id, 0, False, "test", 0.99, normalize)().env  # the same env without our wrapper
        ref = gym.wrappers.RecordEpisodeStatistics(gym.wrappers.FlattenObservation(ref))
        space = ref.action_space
        if isinstance(space, gym.spaces.Box):
            ref = gym.wrappers.ClipAction(ref)
        if normalize:
            ref = gym.wrappers.NormalizeObservation(ref)
            ref = gym.wrappers.TransformObservation(ref, lambda o: np.clip(o, -10, 10), ref.observation_space)
            ref = gym.wrappers.NormalizeReward(ref, gamma=0.99)
            ref = gym.wrappers.TransformReward(ref, lambda r: np.clip(r, -10, 10))
        space.seed(0)
        obs_a, _ = ours.reset(seed=1)
        obs_b, _ = ref.reset(seed=1)
        episodes = 0
        for _ in range(1500):
            np.testing.assert_array_equal(obs_a, obs_b)
            action = space.sample() * 1.5 if isinstance(space, gym.spaces.Box) else space.sample()  # 1.5: clipped
            obs_a, r_a, term_a, trunc_a, info_a = ours.step(action)
            obs_b, r_b, term_b, trunc_b, info_b = ref.step(action)
            assert r_a == r_b and term_a == term_b and trunc_a == trunc_b
            if term_a or trunc_a:
                episodes += 1
                assert info_a["episode"]["r"] == info_b["episode"]["r"]
                assert info_a["episode"]["l"] == info_b["episode"]["l"]
                obs_a, _ = ours.reset()
                obs_b, _ = ref.reset()
        assert episodes > 2


@pytest.mark.parametrize("script", SCRIPTS)
def test_sample_action_matches_torch_distributions(script):
    mod = importlib.import_module(script)
    torch.manual_seed(0)
    mean, logstd = torch.randn(4, 3), torch.randn(1, 3) * 0.3
    action, logprob = mod.sample_action(mean, logstd)
    ref = torch.distributions.Normal(mean, logstd.exp().expand_as(mean))
    torch.testing.assert_close(logprob, ref.log_prob(action).sum(1))
    draws = torch.stack([mod.sample_action(mean, logstd)[0] for _ in range(4000)])
    torch.testing.assert_close(draws.mean(0), mean, atol=0.1, rtol=0)
    torch.testing.assert_close(draws.std(0), logstd.exp().expand_as(mean), atol=0.1, rtol=0)

    logits = torch.tensor([[0.0, 1.0, -1.0, 2.0], [3.0, 0.0, 0.0, -5.0]])
    action, logprob = mod.sample_action(logits)
    torch.testing.assert_close(logprob, torch.distributions.Categorical(logits=logits).log_prob(action))
    draws = torch.stack([mod.sample_action(logits)[0] for _ in range(20000)])
    freq = torch.stack([(draws == k).float().mean(0) for k in range(4)], 1)
    torch.testing.assert_close(freq, logits.softmax(-1), atol=0.015, rtol=0)


def test_evaluate_a_saved_recurrent_agent(tmp_path):
    proc = run_script("ppo_gru_tbptt", "--env-id", "Reacher-POMDP-v5", *TINY, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    evaluate = os.path.join(ROOT, "scripts", "evaluate.py")
    out = subprocess.run([sys.executable, evaluate, run_dir_of(tmp_path), "--episodes", "3"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.count("episode ") == 3 and "mean return" in out.stdout.splitlines()[-1]
    bad = subprocess.run([sys.executable, evaluate, str(tmp_path / "nothing")], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and bad.stderr.strip().splitlines() == [f"error: no checkpoint at {tmp_path / 'nothing'}"]
