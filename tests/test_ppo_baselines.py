"""PPO baselines (algos/ppo_gru_tbptt.py, ppo_lru_tbptt.py, ppo_mlp.py): T-BPTT windows and gradient, runs.

The BPTT references below are written out independently of the scripts: the GRU from its equations, the LRU with
torch complex tensors (the scripts use real/imag pairs and nn.GRUCell).
"""
import importlib
import math
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
import torch
from script_runner import PPO_SMOKE_ARGS, SMOKE_ENVS, read_scalars, run_script, run_script_with_prelude

TBPTT_SCRIPTS = ("ppo_gru_tbptt", "ppo_lru_tbptt")
SCRIPTS = TBPTT_SCRIPTS + ("ppo_mlp",)
F64 = torch.float64


def _fake_envs(obs_dim, continuous):
    obs_space = gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float64)
    action_space = gym.spaces.Box(-1, 1, (2,), np.float32) if continuous else gym.spaces.Discrete(3)
    return SimpleNamespace(single_observation_space=obs_space, single_action_space=action_space)


@pytest.mark.parametrize("script,expected", [("ppo_gru_tbptt", 24_960), ("ppo_lru_tbptt", 24_190), ("ppo_mlp", 0)])
def test_default_recurrent_parameter_budget(script, expected):
    """About 24k recurrent parameters at the defaults (D = 64), the RTU paper's budget; the GRU has both biases."""
    mod = importlib.import_module(script)
    agent = mod.Agent(_fake_envs(8, True), mod.Args())
    assert agent.recurrent_parameter_count() == expected
    if script == "ppo_gru_tbptt":
        assert agent.gru.bias_ih is not None and agent.gru.bias_hh is not None


def test_lru_tbptt_model_equals_online_lru():
    """ppo_lru_tbptt isolates the gradient method: same parameters, same init, same outputs as ppo_lru_rtrl."""
    tbptt, rtrl = importlib.import_module("ppo_lru_tbptt"), importlib.import_module("ppo_lru_rtrl")
    envs = _fake_envs(8, False)
    agents = []
    for mod in (tbptt, rtrl):
        torch.manual_seed(3)
        agents.append(mod.Agent(envs, mod.Args()))
    sd_tbptt, sd_rtrl = (a.state_dict() for a in agents)
    assert sd_tbptt.keys() == sd_rtrl.keys()
    for key in sd_tbptt:
        torch.testing.assert_close(sd_tbptt[key], sd_rtrl[key], rtol=0, atol=0, msg=key)
    # one rollout step from a non-zero state: the same new state and readout
    g = torch.Generator().manual_seed(0)
    obs, state = torch.randn(5, 8, generator=g), torch.randn(5, 2, 82, generator=g)
    reset = torch.tensor([0.0, 1.0, 0.0, 0.0, 1.0])
    new_tbptt = agents[0].step(obs, state, reset)
    new_rtrl, _ = agents[1].step(obs, state, rtrl.lru_zero_carry(5, 82, 64)[1], reset)
    torch.testing.assert_close(new_tbptt, new_rtrl)
    torch.testing.assert_close(agents[0].features(new_tbptt), agents[1].features(new_rtrl))


@pytest.mark.parametrize("script", TBPTT_SCRIPTS)
def test_windows_never_cross_envs(script):
    """to_windows: window w = k*N + env holds steps k*T .. k*T+T-1 of one env; window_indices selects its rows."""
    mod = importlib.import_module(script)
    S, N, T = 12, 3, 4
    step, env = torch.meshgrid(torch.arange(S), torch.arange(N), indexing="ij")
    buf = torch.stack([step, env], -1)  # (S, N, 2): every entry knows its (step, env)
    flat = mod.to_windows(buf, T)
    assert flat.shape == (S * N, 2)
    windows = torch.tensor([5, 0, 7])
    rows = flat[mod.window_indices(windows, T)].view(len(windows), T, 2)
    for w, row in zip(windows.tolist(), rows):
        k, e = divmod(w, N)
        assert row[:, 1].tolist() == [e] * T
        assert row[:, 0].tolist() == list(range(k * T, k * T + T))


def _tiny_agent(mod, continuous):
    args = mod.Args(encoder_dim=4, hidden_dim=6, head_dim=8)
    torch.manual_seed(0)
    agent = mod.Agent(_fake_envs(5, continuous), args).double()
    with torch.no_grad():  # random parameters, not only the initial ones
        for p in agent.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return agent


def _gru_reference(cell, x, h):
    """The GRU equations (PyTorch's convention, both biases), independent of nn.GRUCell."""
    W_ir, W_iz, W_in = cell.weight_ih.chunk(3)
    W_hr, W_hz, W_hn = cell.weight_hh.chunk(3)
    b_ir, b_iz, b_in = cell.bias_ih.chunk(3)
    b_hr, b_hz, b_hn = cell.bias_hh.chunk(3)
    r = torch.sigmoid(x @ W_ir.T + b_ir + h @ W_hr.T + b_hr)
    z = torch.sigmoid(x @ W_iz.T + b_iz + h @ W_hz.T + b_hz)
    n = torch.tanh(x @ W_in.T + b_in + r * (h @ W_hn.T + b_hn))
    return (1 - z) * n + z * h


def _lru_reference(agent, x, h):
    """h_t = lambda*h_{t-1} + exp(gamma_log)*(B x_t) in torch complex numbers; state as (B, 2, n) (re, im) pairs."""
    lam = torch.exp(torch.complex(-agent.nu_log.exp(), agent.theta_log.exp()))
    B = torch.complex(agent.B_re, agent.B_im)
    hc = torch.complex(h[:, 0], h[:, 1])
    new = lam * hc + agent.gamma_log.exp() * (x.to(B.dtype) @ B.T)
    return torch.stack([new.real, new.imag], 1)


@pytest.mark.parametrize("continuous", [True, False])
@pytest.mark.parametrize("script", TBPTT_SCRIPTS)
def test_windowed_update_gradient_equals_bptt(script, continuous):
    """The update's windowed gradient (to_windows, window_indices, Agent.unroll) equals plain autograd, float64.

    A rollout of S steps x N envs with episode starts inside (and at the first step of one env) stores the state from
    before each step. With T = S the update's loss gradient must equal full BPTT from the initial state; with T = S/3
    it must equal BPTT with the state detached at the window starts, and differ from full BPTT (truncation is real).
    """
    mod = importlib.import_module(script)
    agent = _tiny_agent(mod, continuous)
    S, N = 12, 3
    g = torch.Generator().manual_seed(1)
    obs = torch.randn(S, N, 5, generator=g, dtype=F64)
    dones = torch.zeros(S, N, dtype=F64)  # done BEFORE step t
    dones[0, 0] = dones[2, 1] = dones[5, 1] = dones[9, 2] = dones[11, 0] = 1
    state_shape = (N, 6) if script == "ppo_gru_tbptt" else (N, 2, 6)
    init_state = torch.randn(state_shape, generator=g, dtype=F64)  # a rollout that continues a previous one
    space = gym.spaces.Box(-1, 1, (2,), np.float32) if continuous else gym.spaces.Discrete(3)
    space.seed(0)
    actions = torch.stack([torch.as_tensor(np.stack([space.sample() for _ in range(N)])) for _ in range(S)])
    advantages, returns = torch.randn(S, N, generator=g, dtype=F64), torch.randn(S, N, generator=g, dtype=F64)

    def loss_of(states, actions, advantages, returns):
        _, logprob, entropy, value = agent.get_action_and_value(states, actions)
        return -(logprob * advantages).sum() + ((value.flatten() - returns) ** 2).sum() - 0.01 * entropy.sum()

    # the rollout (the script's step, no gradient): state before each step
    carry = torch.zeros((S,) + state_shape, dtype=F64)
    state = init_state
    with torch.no_grad():
        for t in range(S):
            carry[t] = state
            state = agent.step(obs[t], state, dones[t])

    def windowed_grads(T):
        agent.zero_grad()
        b = {k: mod.to_windows(v, T) for k, v in dict(obs=obs, dones=dones, actions=actions, adv=advantages,
                                                        ret=returns).items()}
        b_states = mod.to_windows(carry, T)[::T]
        windows = torch.randperm(N * S // T, generator=g)  # a shuffled set of windows, as a minibatch
        inds = mod.window_indices(windows, T)
        new_states = agent.unroll(b["obs"][inds].unflatten(0, (-1, T)), b_states[windows], b["dones"][inds].unflatten(0, (-1, T)))
        loss_of(new_states, b["actions"][inds], b["adv"][inds], b["ret"][inds]).backward()
        return {name: p.grad.clone() for name, p in agent.named_parameters()}

    def reference_grads(T):
        agent.zero_grad()
        state, states = init_state, []
        for t in range(S):
            if t % T == 0:
                state = state.detach()
            state = state * (1 - dones[t]).view(-1, *[1] * (state.dim() - 1))
            x = agent.encoder(obs[t])
            state = _gru_reference(agent.gru, x, state) if script == "ppo_gru_tbptt" else _lru_reference(agent, x, state)
            states.append(state)
        loss_of(torch.stack(states).flatten(0, 1), actions.flatten(0, 1), advantages.flatten(), returns.flatten()).backward()
        return {name: p.grad.clone() for name, p in agent.named_parameters()}

    def max_rel_err(a, b):
        return max(((a[k] - b[k]).abs().max() / b[k].abs().max().clamp_min(1e-12)).item() for k in b)

    full = reference_grads(S)
    assert all(v.abs().max() > 1e-3 for v in full.values())
    assert max_rel_err(windowed_grads(S), full) < 1e-10
    truncated = reference_grads(S // 3)
    assert max_rel_err(windowed_grads(S // 3), truncated) < 1e-10
    assert max_rel_err(truncated, full) > 1e-3


@pytest.mark.parametrize("script", SCRIPTS + ("ppo_rtu_rtrl", "ppo_lru_rtrl"))
def test_first_minibatch_ratio_is_one_across_episode_starts(script, tmp_path):
    """On the first minibatch of the first epoch, the ratio is 1 (within 1e-5) across episode boundaries.

    The script logs max|ratio - 1| of that minibatch (debug/first_minibatch_ratio_error), so this checks the real
    rollout storage (stored states or carries, resets), the windowing and the update. RepeatPreviousEasy episodes
    are 51 steps, so with T = 64 every window of the rollout contains an episode start at a position inside the
    window: the first minibatch has some. (The RTRL scripts store one carry per step; T only sets the minibatch.)
    """
    T, num_steps = 64, 256
    window = ("--tbptt-len", str(T)) if script in TBPTT_SCRIPTS else ("--no-compile",) if "rtrl" in script else ()
    proc = run_script(script, "--env-id", "popgym-RepeatPreviousEasy-v0", "--num-envs", "2", "--num-steps", str(num_steps),
                      *window, "--num-minibatches", "4", "--update-epochs", "1", "--total-timesteps", "1024",
                      cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    scalars = read_scalars(tmp_path)
    lengths = {v for _, v in scalars["charts/episodic_length"]}
    assert lengths == {51.0}, lengths
    starts = set(range(51, num_steps, 51))  # episode starts (done before step) in each env's first rollout
    for k in range(num_steps // T):
        assert any(k * T < s < (k + 1) * T for s in starts), f"window {k} has no episode start inside"
    errors = [v for _, v in scalars["debug/first_minibatch_ratio_error"]]
    assert len(errors) == 2
    assert all(0 <= e < 1e-5 for e in errors), errors


_RUNS = {}


def _smoke_run(script, env_id, tmp_path_factory):
    """One smoke run per (script, env), shared by the smoke and the determinism tests."""
    if (script, env_id) not in _RUNS:
        cwd = tmp_path_factory.mktemp(f"{script}-{env_id}")
        proc = run_script(script, "--env-id", env_id, *PPO_SMOKE_ARGS, cwd=cwd)
        assert proc.returncode == 0, proc.stderr[-3000:]
        _RUNS[script, env_id] = (proc, read_scalars(cwd))
    return _RUNS[script, env_id]


@pytest.mark.parametrize("script", SCRIPTS)
@pytest.mark.parametrize("env_id", SMOKE_ENVS)
def test_smoke(script, env_id, tmp_path_factory):
    proc, scalars = _smoke_run(script, env_id, tmp_path_factory)
    assert "recurrent parameters:" in proc.stdout
    for tag in ("charts/SPS", "charts/rollout_time", "charts/update_time", "losses/value_loss", "losses/approx_kl"):
        assert len(scalars[tag]) == 4, tag
        assert all(math.isfinite(v) for _, v in scalars[tag]), tag
    assert len(scalars["charts/episodic_return"]) > 0


@pytest.mark.parametrize("script", SCRIPTS)
def test_same_seed_same_losses(script, tmp_path, tmp_path_factory):
    env_id = "popgym-AutoencodeEasy-v0"
    _, first = _smoke_run(script, env_id, tmp_path_factory)
    proc = run_script(script, "--env-id", env_id, *PPO_SMOKE_ARGS, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    second = read_scalars(tmp_path)
    for tag in ("losses/value_loss", "losses/policy_loss", "losses/approx_kl", "charts/episodic_return"):
        assert len(first[tag]) > 0 and first[tag] == second[tag], tag


@pytest.mark.parametrize("script,args,message", [
    ("ppo_gru_tbptt", ("--num-minibatches", "64"), "32 windows, which is not divisible by num_minibatches=64"),
    ("ppo_lru_tbptt", ("--tbptt-len", "24"), "num_steps=512 is not divisible by tbptt_len=24"),
])
def test_bad_window_layout_fails_clearly(script, args, message, tmp_path):
    """Minibatches are sets of whole windows: a layout that does not divide fails at start with a one-line message."""
    proc = run_script(script, "--num-steps", "512", *args, cwd=tmp_path, timeout=120)
    assert proc.returncode != 0
    assert message in proc.stderr.strip().splitlines()[-1]


# Every episode ends on a step that both terminates and truncates, as Ant does when it falls at its time limit. A module
# of its own, so that the checkpoint can pickle the wrapped env.
ENDS_TOGETHER = """
import gymnasium as gym
_make = gym.make
class EndsTogether(gym.Wrapper):
    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, terminated or truncated, truncated, info
gym.make = lambda *a, **kw: EndsTogether(_make(*a, **{**kw, "max_episode_steps": 30}))
"""


@pytest.mark.parametrize("script,args", [(s, PPO_SMOKE_ARGS) for s in SCRIPTS + ("ppo_rtu_rtrl", "ppo_lru_rtrl")]
                         + [("r2ac_elstm", ("--num-envs", "2", "--segment-len", "10", "--hidden-dim", "16",
                                            "--total-timesteps", "200"))])
def test_step_that_terminates_and_truncates(script, args, tmp_path):
    """A terminal step is never bootstrapped, even when the time limit also fires on it (no empty final_obs batch)."""
    (tmp_path / "ends_together.py").write_text(ENDS_TOGETHER)
    proc = run_script_with_prelude(script, "import sys; sys.path.insert(0, '.'); import ends_together", "--env-id",
                                   "HalfCheetah-P-v5", *args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(read_scalars(tmp_path)["charts/episodic_return"]) >= 3
