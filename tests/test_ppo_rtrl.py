"""PPO with exact RTRL (algos/ppo_rtu_rtrl.py, algos/ppo_lru_rtrl.py): environments, the update's gradient, runs."""
import importlib
import math
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
import torch
from script_runner import PPO_SMOKE_ARGS, SMOKE_ENVS, read_scalars, run_script

SCRIPTS = ("ppo_rtu_rtrl", "ppo_lru_rtrl")

# Observation indices kept by -P (positions and angles) and -V (velocities) in gymnasium's v5 observation, which
# leaves out the root's x (and y for Ant; Ant made without contact forces). Written out independently of the scripts.
PV_INDICES = {
    "Hopper": (list(range(0, 5)), list(range(5, 11))),
    "HalfCheetah": (list(range(0, 8)), list(range(8, 17))),
    "Walker2d": (list(range(0, 8)), list(range(8, 17))),
    "Ant": (list(range(0, 13)), list(range(13, 27))),
}


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("name", sorted(PV_INDICES))
def test_pv_masks_select_position_and_velocity_indices(script, name):
    mod = importlib.import_module(script)
    kwargs = {"include_cfrc_ext_in_observation": False} if name == "Ant" else {}
    full = gym.make(f"{name}-v5", **kwargs)
    for variant, indices in zip("PV", PV_INDICES[name]):
        env = mod.make_env(f"{name}-{variant}-v5", 0, False, "test", 0.99, normalize=False)()
        assert env.observation_space.shape == (len(indices),)
        obs, _ = env.reset(seed=3)
        full_obs, _ = full.reset(seed=3)
        np.testing.assert_array_equal(obs, full_obs[indices])
        action = full.action_space.sample()
        obs, *_ = env.step(action)
        full_obs, *_ = full.step(action)
        np.testing.assert_array_equal(obs, full_obs[indices])


@pytest.mark.parametrize("script", SCRIPTS)
def test_reacher_target_visible_only_at_first_step(script):
    mod = importlib.import_module(script)
    envs = gym.vector.SyncVectorEnv([mod.make_env("Reacher-POMDP-v5", 0, False, "test", 0.99, normalize=False)],
                                    autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    hidden = [4, 5, 8, 9]
    obs, _ = envs.reset(seed=0)
    assert np.all(obs[0, hidden] != 0)
    episode_starts = 0
    for t in range(120):  # Reacher episodes are 50 steps: covers two autoresets
        obs, _, terminated, truncated, infos = envs.step(envs.action_space.sample())
        if terminated[0] or truncated[0]:
            episode_starts += 1
            assert np.all(obs[0, hidden] != 0), "first observation of the next episode must show the target"
            assert np.all(infos["final_obs"][0][hidden] == 0)
        else:
            assert np.all(obs[0, hidden] == 0), f"target visible at step {t}"
    assert episode_starts == 2


def _tiny_agent(mod, continuous, **model_args):
    obs_space = gym.spaces.Box(-np.inf, np.inf, (5,), np.float64)
    action_space = gym.spaces.Box(-1, 1, (2,), np.float32) if continuous else gym.spaces.Discrete(3)
    envs = SimpleNamespace(single_observation_space=obs_space, single_action_space=action_space)
    args = mod.Args(encoder_dim=4, hidden_dim=6, head_dim=8, **model_args)
    torch.manual_seed(0)
    agent = mod.Agent(envs, args).double()
    with torch.no_grad():  # random parameters, not only the initial ones
        for p in agent.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return agent, action_space


MODEL_VARIANTS = [  # compile=True: the torch.compile'd gradient of the scripts' default must be exact too
    ("ppo_rtu_rtrl", dict(rtu_variant="nonlinear", activation="relu", compile=False)),
    ("ppo_rtu_rtrl", dict(rtu_variant="nonlinear", activation="tanh", compile=False)),
    ("ppo_rtu_rtrl", dict(rtu_variant="linear", activation="tanh", compile=False)),
    ("ppo_rtu_rtrl", dict(rtu_variant="nonlinear", activation="relu", compile=True)),
    ("ppo_rtu_rtrl", dict(rtu_variant="linear", activation="relu", compile=True)),
    ("ppo_lru_rtrl", dict(compile=False)),
    ("ppo_lru_rtrl", dict(compile=True)),
]


@pytest.mark.parametrize("continuous", [True, False])
@pytest.mark.parametrize("script,model_args", MODEL_VARIANTS)
def test_update_gradient_of_stored_carry_equals_autograd(script, model_args, continuous):
    """The PPO update's gradient for a stored carry equals autograd through the whole history that produced the carry.

    The carry after k rollout steps (state and traces, computed without gradients) is what the buffer stores. The
    update re-runs one step from it (RTRL backward). The reference re-runs the k+1 steps with autograd, the encoder
    output of earlier steps detached: RTRL gives the encoder only the one-step gradient, the previous state being a
    constant of the carry. Every parameter's gradient must agree, in float64.
    """
    mod = importlib.import_module(script)
    agent, action_space = _tiny_agent(mod, continuous, **model_args)
    B, k = 4, 7
    g = torch.Generator().manual_seed(1)
    obs = torch.randn(k + 1, B, 5, generator=g, dtype=torch.float64)
    resets = torch.zeros(k + 1, B, dtype=torch.float64)
    resets[0] = 1
    resets[3, 1] = resets[5, 2] = resets[k, 3] = 1  # episode starts inside the history and at the update step
    actions = torch.stack([torch.as_tensor(action_space.sample()) for _ in range(B)])
    advantages = torch.randn(B, generator=g, dtype=torch.float64)
    returns = torch.randn(B, generator=g, dtype=torch.float64)

    def loss_of(new_state, perm=torch.arange(B)):
        _, logprob, entropy, value = agent.get_action_and_value(new_state, actions[perm])
        return (-(logprob * advantages[perm]).mean() + ((value.flatten() - returns[perm]) ** 2).mean()
                - 0.01 * entropy.mean())

    def zero_carry():  # the script's own initial carry (the linear RTU's compact traces), in float64
        state, traces = agent.initial_carry(B)
        return state.double(), type(traces)(*(t.double() for t in traces))

    # the rollout: the buffers store the carry before each step 0..k, flattened over (step, env) as in the update
    state, traces = zero_carry()
    carries = []
    with torch.no_grad():
        for t in range(k + 1):
            carries.append((state, traces))
            state, traces = agent.step(obs[t], state, traces, resets[t])
    b_states = torch.stack([c[0] for c in carries]).flatten(0, 1)
    b_traces = type(traces)(*(torch.stack(parts).flatten(0, 1) for parts in zip(*(c[1] for c in carries))))
    index = k * B + torch.tensor([2, 0, 3, 1])  # the carries before step k, in shuffled order
    perm = index - k * B
    agent.zero_grad()
    loss_of(agent.step_rtrl(obs[k][perm], b_states, b_traces, index, resets[k][perm]), perm).backward()
    rtrl = {name: p.grad.clone() for name, p in agent.named_parameters()}

    # the reference: autograd through the whole history (the reference step is differentiable)
    agent.zero_grad()
    state, traces = zero_carry()
    for t in range(k + 1):
        x = agent.encoder(obs[t])
        state, traces = _step_from_features(agent, script, x if t == k else x.detach(), state, traces, resets[t])
    loss_of(state).backward()
    assert any(p.grad.abs().max() > 1e-3 for p in agent.parameters())
    for name, p in agent.named_parameters():
        err = (rtrl[name] - p.grad).abs().max() / p.grad.abs().max().clamp_min(1e-12)
        assert err < 1e-8, f"{name}: relative error {err:.2e}"


def _step_from_features(agent, script, x, state, traces, reset):
    """The reference recurrent step on encoder features x, differentiable by autograd (the kernels' torch path)."""
    mod = importlib.import_module(script)
    if script == "ppo_rtu_rtrl":
        return mod.rtu_step(agent.rtu_params(), x, state, traces, reset, agent.recurrent_activation, backend="torch")
    return mod.lru_step(agent.lru_params(), x, state, traces, reset, backend="torch")


@pytest.mark.parametrize("script,model_args", [("ppo_rtu_rtrl", dict(rtu_variant="nonlinear", compile=False)),
                                               ("ppo_rtu_rtrl", dict(rtu_variant="linear", compile=False)),
                                               ("ppo_lru_rtrl", dict(compile=False)),
                                               ("ppo_rtu_rtrl", dict(rtu_variant="nonlinear", compile=True)),
                                               ("ppo_lru_rtrl", dict(compile=True))])
def test_refresh_carries_equals_replay(script, model_args):
    """--fresh-carries: after a refresh, the stored carries are those of a replay of the rollout's observations with
    the current parameters from the first stored carry, each the carry BEFORE its step, resets included (compiled:
    the scripts' default)."""
    mod = importlib.import_module(script)
    agent, _ = _tiny_agent(mod, True, **model_args)
    tol = 1e-12 if model_args["compile"] else 0.0
    T, B = 6, 3
    g = torch.Generator().manual_seed(2)
    obs = torch.randn(T, B, 5, generator=g, dtype=torch.float64)
    dones = torch.zeros(T, B, dtype=torch.float64)
    dones[2, 1] = dones[4, 0] = dones[5, 2] = 1
    state0, traces0 = agent.initial_carry(B)  # the first carry: random, as left by the previous rollout
    state0 = torch.randn(state0.shape, generator=g, dtype=torch.float64)
    traces0 = type(traces0)(*(torch.randn(t.shape, generator=g, dtype=torch.float64) for t in traces0))
    carry_states = torch.randn((T,) + state0.shape, generator=g, dtype=torch.float64)  # stale: anything
    carry_traces = type(traces0)(*(torch.randn((T,) + t.shape, generator=g, dtype=torch.float64) for t in traces0))
    carry_states[0] = state0
    for buf, t in zip(carry_traces, traces0):
        buf[0] = t
    with torch.no_grad():
        values, (last_state, last_traces) = mod.refresh_carries(agent, obs, dones, carry_states, carry_traces)
        state, traces = state0, traces0
        for t in range(T):
            # eager: bitwise; compiled: the fused step rounds differently (float64 round-off only)
            torch.testing.assert_close(carry_states[t], state, rtol=0, atol=tol)
            assert all(torch.allclose(buf[t], tr, rtol=0, atol=tol) for buf, tr in zip(carry_traces, traces)), t
            state, traces = _step_from_features(agent, script, agent.encoder(obs[t]), state, traces, dones[t])
            torch.testing.assert_close(values[t], agent.critic(agent.features(state)).flatten(), rtol=0, atol=1e-12)
    torch.testing.assert_close(last_state, state, rtol=0, atol=1e-12)
    assert all(torch.allclose(a, b, rtol=0, atol=1e-12) for a, b in zip(last_traces, traces))


@pytest.mark.parametrize("script,flags", [("ppo_rtu_rtrl", ("--fresh-carries", "--fresh-targets")),
                                          ("ppo_rtu_rtrl", ("--fresh-targets",)), ("ppo_lru_rtrl", ("--fresh-carries",))])
def test_smoke_fresh(script, flags, tmp_path):
    proc = run_script(script, "--env-id", "HalfCheetah-P-v5", *PPO_SMOKE_ARGS, *flags, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("env_id", SMOKE_ENVS)
def test_smoke(script, env_id, tmp_path):
    # the default torch.compile'd update runs on one env (compiling costs ~20 s per run); the others run eager
    compile_args = () if env_id == SMOKE_ENVS[0] else ("--no-compile",)
    proc = run_script(script, "--env-id", env_id, *PPO_SMOKE_ARGS, *compile_args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "recurrent parameters:" in proc.stdout
    scalars = read_scalars(tmp_path)
    for tag in ("charts/SPS", "charts/rollout_time", "charts/update_time", "losses/value_loss", "losses/approx_kl"):
        assert len(scalars[tag]) == 4, tag
        assert all(math.isfinite(v) for _, v in scalars[tag]), tag
    assert len(scalars["charts/episodic_return"]) > 0


@pytest.mark.parametrize("script", SCRIPTS)
def test_same_seed_same_losses(script, tmp_path):
    runs = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        proc = run_script(script, "--env-id", "popgym-RepeatPreviousEasy-v0", "--seed", "7", *PPO_SMOKE_ARGS, "--no-compile",
                          cwd=tmp_path / name)
        assert proc.returncode == 0, proc.stderr[-3000:]
        runs.append(read_scalars(tmp_path / name))
    for tag in ("losses/value_loss", "losses/policy_loss", "losses/approx_kl", "charts/episodic_return"):
        assert runs[0][tag] == runs[1][tag], tag


@pytest.mark.parametrize("script", SCRIPTS)
def test_unknown_env_id_fails_clearly(script, tmp_path):
    proc = run_script(script, "--env-id", "NoSuchEnv-v3", cwd=tmp_path, timeout=120)
    assert proc.returncode != 0
    last_line = proc.stderr.strip().splitlines()[-1]
    assert "unknown env id 'NoSuchEnv-v3'" in last_line and "popgym" in last_line and "Reacher-POMDP-v5" in last_line
