# Online TD(lambda) prediction on trace conditioning (an "animal learning" benchmark) with recurrent learners:
# RTUs and the online LRU trained by exact RTRL, GRU and LRU trained by truncated BPTT (T-BPTT).
# Docs: README.md; the RTU and online LRU with their RTRL traces: triton_kernels/rtu.py, lru.py. The task and the
# comparison (MSRE against compute, truncation length and parameters) follow Elelimy et al. 2024 (arXiv 2409.01449).
#
# The task in one paragraph (Rafiee et al., "From eye-blinks to state construction", Adaptive Behavior 2022): the
# observation is binary [US, CS, distractors...]. A trial starts with the conditioned stimulus (CS) on for 4 steps;
# ISI steps after the trial start the unconditioned stimulus (US) turns on for 2 steps; the next trial starts ISI + ITI
# steps after the start. The learner predicts the discounted sum of future US, v(o_t) ~ E[sum_k gamma^k c_{t+k+1}],
# with c = US. The CS is gone long before the US arrives, so the learner must carry a memory of it: a recurrent state.
#
# The learning rule in one paragraph: semi-gradient TD(lambda), fully online, one update per step:
#   delta_t = c_{t+1} + gamma * v(o_{t+1}) - v(o_t),   e_t = gamma * lambda * e_{t-1} + grad v(o_t),
#   Adam applied to the "gradient" -delta_t * e_t (as in the benchmark's code).
# grad v(o_t) comes from the RTRL traces (RTU, online LRU: O(1) in the history length) or from backprop through the
# last T steps, recomputed every step from the stored state of T steps ago (GRU, LRU: cost linear in T).
# Each value is computed once, online, with the parameters of its step: v(o_{t+1}) in delta_t and in delta_{t+1} is
# the same number (computed before the update of step t), as RTRL never recomputes past states.
#
# Model choices (no encoder): the binary observation goes straight into the recurrent layer (D = 2 + num_distractors
# = 12 by default), followed by a linear value head. Default sizes give equal recurrent-parameter budgets, as the RTU
# paper compares architectures (the value head is not counted): RTU n = 64 (1,664), GRU H = 18 (1,728), LRU n = 23
# with readout H = 23 (1,679). --param-budget / --hidden-size change them, and --flops-budget sizes every learner for
# equal compute instead (e.g. the GRU at T = 16 gets H = 7 for a 64-unit RTU's FLOPs); every run prints and logs its
# count and analytic FLOPs/step.
#
# Run length: --total-steps 100000 takes about a minute for the RTRL learners on one core of a 2-core CPU (about
# 0.55-0.62 ms of CPU time per step, see results/perf/rtrl_vs_tbptt.md); T-BPTT costs grow with T (GRU, T = 16: 2.1 ms).
# The source papers' runs are much longer (their exact step count was not checked here); use --total-steps to match
# them. A run checkpoints every --checkpoint-interval MSRE bins and continues exactly with --resume runs/<run> (a
# larger --total-steps extends a finished run).
import datetime
import json
import math
import os
import pickle
import random
import subprocess
import sys
import time
from collections import deque
from dataclasses import asdict, dataclass, fields
from typing import Literal, Optional, Tuple

import numpy as np
import torch
import torch.nn as nn
import tyro
from torch.utils.tensorboard import SummaryWriter

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # repo root: triton_kernels
from triton_kernels.lru import LRUParams, lru_grads, lru_init_params, lru_init_readout, lru_step, lru_zero_carry
from triton_kernels.rtu import RTUParams, rtu_grads, rtu_init_params, rtu_step, rtu_zero_carry

ARCHS = ("rtu_nonlinear", "rtu_linear", "lru_rtrl", "gru_tbptt", "lru_tbptt")
# the benchmark's settings (Rafiee et al. 2022): ISI -> (ISI interval, gamma)
ISI_PRESETS = {10: ((7, 13), 0.9), 20: ((14, 26), 0.95), 30: ((20, 40), 0.966)}
DEFAULT_RTU_UNITS = 64  # the default parameter budget is that of an RTU with this many units


@dataclass
class Args:
    exp_name: str = os.path.basename(__file__)[: -len(".py")]
    """the name of this experiment"""
    seed: int = 1
    """seed of the experiment (environment, initialisation)"""
    torch_deterministic: bool = True
    """if toggled, `torch.backends.cudnn.deterministic=True`"""
    track: bool = False
    """if toggled, this experiment will be tracked with Weights and Biases"""
    wandb_project_name: str = "rtrl-rl"
    """the wandb's project name"""
    wandb_entity: Optional[str] = None
    """the entity (team) of wandb's project"""

    # Environment: trace conditioning (Rafiee et al. 2022; defined in TraceConditioning)
    isi: Literal[10, 20, 30] = 10
    """benchmark preset: 10 -> ISI in (7,13), gamma 0.9; 20 -> (14,26), 0.95; 30 -> (20,40), 0.966"""
    isi_interval: Optional[Tuple[int, int]] = None
    """override the preset's inter-stimulus interval (lo hi, inclusive): US onset = trial start + ISI"""
    iti_interval: Tuple[int, int] = (80, 120)
    """inter-trial interval (lo hi, inclusive): the next trial starts ISI + ITI steps after the trial start"""
    num_distractors: int = 10
    """number of distractor stimuli (0..10); distractor d switches on w.p. 1/(10(d+1)) per step when inactive"""
    gamma: Optional[float] = None
    """discount factor of the predicted return (default: the preset's)"""
    total_steps: int = 100_000
    """number of online learning steps (a few minutes for the RTRL learners on one CPU core; see the header)"""

    # Learner
    arch: Literal["rtu_nonlinear", "rtu_linear", "lru_rtrl", "gru_tbptt", "lru_tbptt",
                  "rnn_rtrl", "rnn_uoro", "rnn_kfrtrl", "rnn_snap1", "gru_snap1"] = "rtu_nonlinear"
    """recurrent learner: RTU (non-linear / linear) or online LRU by exact RTRL; GRU or LRU by truncated BPTT;
    dense tanh RNN by exact RTRL (rnn_rtrl), UORO (rnn_uoro), KF-RTRL (rnn_kfrtrl) or SnAp-1 (rnn_snap1); GRU by
    SnAp-1 (gru_snap1). The dense RNN is always tanh (--activation does not apply to it or to the GRU)"""
    hidden_size: Optional[int] = None
    """units of the recurrent layer (RTU/LRU: complex units n, GRU: hidden size); default: matched to param_budget"""
    param_budget: Optional[int] = None
    """recurrent-parameter budget used to pick the default hidden_size of every arch (default: that of a 64-unit RTU)"""
    flops_budget: Optional[int] = None
    """instead of param_budget: compute budget, the largest hidden_size whose FLOPs per step (at this T) fit in it"""
    lru_readout_dim: Optional[int] = None
    """LRU readout width H of y = Re(C h) (default: H = n, the number of LRU units)"""
    activation: Literal["relu", "tanh"] = "relu"
    """f: inside the recurrence of the non-linear RTU; on the output of the linear RTU and of the LRU readout"""
    tbptt_len: int = 16
    """T: truncation length of the T-BPTT learners (gru_tbptt, lru_tbptt); ignored by the RTRL learners"""
    r_min: float = 0.0
    """smallest initial |lambda| of the RTU / LRU recurrence"""
    r_max: float = 1.0
    """largest initial |lambda| of the RTU / LRU recurrence"""
    learning_rate: float = 1e-3
    """Adam step size"""
    td_lambda: float = 0.9
    """lambda of TD(lambda): decay gamma*lambda of the eligibility trace"""
    adam_beta1: float = 0.9
    """Adam beta1 (the benchmark code's beta_m)"""
    adam_beta2: float = 0.999
    """Adam beta2 (the benchmark code's beta_v)"""
    adam_eps: float = 1e-8
    """Adam epsilon"""

    # Logging
    msre_bin: int = 10_000
    """width (in steps) of the bins of the binned MSRE curve"""
    summary_path: Optional[str] = None
    """if set, write a one-run summary there: JSON if it ends in .json, else append a row to a CSV file"""

    # Checkpoints
    checkpoint_interval: int = 10
    """save `runs/{run_name}/checkpoint.pt` every N MSRE bins and at the end (0: only at the end)"""
    resume: Optional[str] = None
    """continue the run in this run dir from its checkpoint (its saved args; a larger --total-steps extends it)"""


# ---------------------------------------------------------------------------------------------------------------
# Environment: trace conditioning (Rafiee et al. 2022)
# ---------------------------------------------------------------------------------------------------------------
class TraceConditioning:
    """Trace conditioning with Poisson-like distractors. No actions: `step()` just advances time.

    Observation o_t = [US, CS, distractor_1, ..., distractor_k] in {0,1}. Time t = 0 starts the first trial.
    - Trial at time s: CS on for `cs_length` steps (s .. s+3); US on for `us_length` steps from s + ISI;
      next trial at s + ISI + ITI. ISI ~ U{isi_lo..isi_hi}, ITI ~ U{iti_lo..iti_hi} (inclusive), drawn at trial start.
    - Distractor d (d = 1..k) switches on at step t with probability 1/(10 d) if it was off at step t-1, and then
      stays on for `distractor_length` steps (as in the benchmark code: it cannot fire on the step it was last on).
    - `step()` returns (o_{t+1}, c_{t+1}) with the cumulant c_{t+1} = US in o_{t+1}.
    """

    def __init__(self, isi_interval, iti_interval, num_distractors, seed, cs_length=4, us_length=2,
                 distractor_length=4):
        self.isi_interval, self.iti_interval = tuple(isi_interval), tuple(iti_interval)
        self.num_distractors = num_distractors
        self.cs_length, self.us_length, self.distractor_length = cs_length, us_length, distractor_length
        self.distractor_probs = 1.0 / (10.0 * np.arange(1, num_distractors + 1))  # 1/10, 1/20, ..., 1/100
        self.obs_dim = 2 + num_distractors
        self.rng = np.random.default_rng(seed)
        self.t = 0

    def reset(self):
        self.t = 0
        self.cs_left = self.us_left = 0  # remaining "on" steps, counting the current one
        self.dist_left = np.zeros(self.num_distractors, dtype=np.int64)
        self.next_trial, self.us_onset = 0, -1
        return self._advance()

    def step(self):
        self.t += 1
        obs = self._advance()
        return obs, float(obs[0])

    def _advance(self):
        """Move every stimulus to time self.t and return o_t."""
        t = self.t
        self.cs_left, self.us_left = max(self.cs_left - 1, 0), max(self.us_left - 1, 0)
        if t == self.next_trial:  # trial start: CS on now, US on after ISI, next trial after ISI + ITI
            isi = int(self.rng.integers(self.isi_interval[0], self.isi_interval[1] + 1))
            iti = int(self.rng.integers(self.iti_interval[0], self.iti_interval[1] + 1))
            self.cs_left, self.us_onset, self.next_trial = self.cs_length, t + isi, t + isi + iti
        if t == self.us_onset:
            self.us_left = self.us_length
        was_on = self.dist_left > 0  # on at t-1
        self.dist_left = np.maximum(self.dist_left - 1, 0)
        fire = ~was_on & (self.rng.random(self.num_distractors) < self.distractor_probs)
        self.dist_left[fire] = self.distractor_length
        obs = np.empty(self.obs_dim, dtype=np.float32)
        obs[0], obs[1] = self.us_left > 0, self.cs_left > 0
        obs[2:] = self.dist_left > 0
        return obs


# ---------------------------------------------------------------------------------------------------------------
# MSRE: G_t = c_{t+1} + gamma * G_{t+1}, computed backwards from the recorded cumulants after the run
# ---------------------------------------------------------------------------------------------------------------
def compute_returns(cumulants, gamma):
    """cumulants[t] = c_{t+1} (the cumulant received on the transition t -> t+1). Returns G with
    G[t] = cumulants[t] + gamma * G[t+1] and G[N-1] = cumulants[N-1] (no bootstrap past the end of the run,
    as in the benchmark's compute_return_error)."""
    cumulants = np.asarray(cumulants, dtype=np.float64)
    returns = np.zeros_like(cumulants)
    g = 0.0
    for t in range(len(cumulants) - 1, -1, -1):
        g = cumulants[t] + gamma * g
        returns[t] = g
    return returns


def msre(values, returns):
    """Mean squared return error: mean over steps of (v_t - G_t)^2."""
    values, returns = np.asarray(values, dtype=np.float64), np.asarray(returns, dtype=np.float64)
    return float(np.mean((values - returns) ** 2))


# ---------------------------------------------------------------------------------------------------------------
# Learners. Every learner maps o_t directly (no encoder: D = obs_dim) to a recurrent layer and a linear value head
# v(o_t) = w . features_t + b (w, b start at zero, so v = 0 at the start, as in the benchmark's linear TD).
# `step(x)` consumes o_t, advances the recurrent state and returns (v(o_t), [d v(o_t) / d p for p in parameters()]).
# ---------------------------------------------------------------------------------------------------------------
def act_and_grad(z, activation):
    """f(z) and f'(z)."""
    if activation == "relu":
        return z.clamp_min(0), (z > 0).to(z.dtype)
    h = torch.tanh(z)
    return h, 1 - h * h


class RTURTRL:
    """RTU (triton_kernels/rtu.py) trained by exact RTRL. Non-linear RTU: the kernel state is h = [h1, h2] (f inside the
    recurrence), features = h. Linear RTU: the kernel state is c = [c1, c2], features = f(c)."""

    def __init__(self, obs_dim, n, nonlinear=True, activation="relu", r_min=0.0, r_max=1.0, generator=None,
                 dtype=torch.float32):
        self.n, self.nonlinear, self.activation = n, nonlinear, activation
        self.kernel_activation = activation if nonlinear else "linear"
        init = rtu_init_params(n, obs_dim, r_min=r_min, r_max=r_max, generator=generator, dtype=dtype)
        self.rec = RTUParams(*(nn.Parameter(p) for p in init))  # nu_log, theta_log, W1, W2
        self.w = nn.Parameter(torch.zeros(2 * n, dtype=dtype))  # value head on the 2n features [part 1, part 2]
        self.b = nn.Parameter(torch.zeros(1, dtype=dtype))
        self.state, self.traces = rtu_zero_carry(1, n, obs_dim, dtype=dtype)  # B = 1: one stream
        self.no_reset = torch.zeros(1, dtype=torch.bool)  # continuing task: never reset

    def parameters(self):
        return [*self.rec, self.w, self.b]

    def recurrent_parameters(self):
        return list(self.rec)

    @torch.no_grad()
    def step(self, x):
        x = x[None]  # (1, D)
        # one recurrent step and its RTRL trace update: traces = d state_t / d params over the whole history
        prev, (self.state, self.traces) = self.state, rtu_step(self.rec, x, self.state, self.traces, self.no_reset,
                                                               self.kernel_activation)
        s = self.state.reshape(-1)  # (2n,) = [h1 (or c1), h2 (or c2)]
        if self.nonlinear:
            feat, fprime = s, None
        else:
            feat, fprime = act_and_grad(s, self.activation)
        v = self.w @ feat + self.b
        # dv/dstate through this step's output only, then exact recurrent gradients from the traces
        dv_dstate = (self.w if fprime is None else self.w * fprime).view(1, 2, self.n)
        _, g = rtu_grads(self.rec, x, prev, self.no_reset, self.state, self.traces, dv_dstate, self.kernel_activation)
        return v, [*g, feat.clone(), torch.ones_like(self.b)]


class LRURTRL:
    """Online LRU (triton_kernels/lru.py) trained by exact RTRL: h_t = lambda*h_{t-1} + exp(gamma_log)*(B x_t),
    y_t = Re(C h_t) (H outputs), features = f(y_t). C gets its gradient by ordinary backprop (it is outside the
    recurrence)."""

    def __init__(self, obs_dim, n, readout_dim=None, activation="relu", r_min=0.0, r_max=1.0, generator=None,
                 dtype=torch.float32):
        self.n, self.H, self.activation = n, readout_dim or n, activation
        init = lru_init_params(n, obs_dim, r_min=r_min, r_max=r_max, generator=generator, dtype=dtype)
        self.rec = LRUParams(*(nn.Parameter(p) for p in init))  # nu_log, theta_log, gamma_log, B_re, B_im
        C_re, C_im = lru_init_readout(self.H, n, generator=generator, dtype=dtype)
        self.C_re, self.C_im = nn.Parameter(C_re), nn.Parameter(C_im)
        self.w = nn.Parameter(torch.zeros(self.H, dtype=dtype))
        self.b = nn.Parameter(torch.zeros(1, dtype=dtype))
        self.state, self.traces = lru_zero_carry(1, n, obs_dim, dtype=dtype)
        self.no_reset = torch.zeros(1, dtype=torch.bool)

    def parameters(self):
        return [*self.rec, self.C_re, self.C_im, self.w, self.b]

    def recurrent_parameters(self):  # the LRU layer includes its readout C (in the budget)
        return [*self.rec, self.C_re, self.C_im]

    @torch.no_grad()
    def step(self, x):
        x = x[None]
        prev, (self.state, self.traces) = self.state, lru_step(self.rec, x, self.state, self.traces, self.no_reset)
        h_re, h_im = self.state[0, 0], self.state[0, 1]
        y = self.C_re @ h_re - self.C_im @ h_im  # y = Re(C h)
        feat, fprime = act_and_grad(y, self.activation)
        v = self.w @ feat + self.b
        dv_dy = self.w * fprime
        # dv/d[Re h, Im h] = [C_re^T dv_dy, -C_im^T dv_dy]; recurrent gradients from the traces
        dv_dstate = torch.stack((self.C_re.T @ dv_dy, -(self.C_im.T @ dv_dy)))[None]
        _, g = lru_grads(self.rec, x, prev, self.no_reset, self.state, self.traces, dv_dstate)
        g_C_re, g_C_im = torch.outer(dv_dy, h_re), -torch.outer(dv_dy, h_im)
        return v, [*g, g_C_re, g_C_im, feat.clone(), torch.ones_like(self.b)]


class TBPTTLearner:
    """Truncated BPTT, online: keep the last T inputs and the (detached) state from before them; every step re-runs
    the cell over the window with the current parameters and backprops v(o_t) through it (cost linear in T).
    Subclasses define `unroll(xs, h0) -> list of states` and `features(h)`."""

    def __init__(self, T):
        self.T, self.window = T, deque()

    def step(self, x):
        self.window.append(x)
        states = self.unroll(torch.stack(tuple(self.window)), self.h0)  # states after each window step
        v = self.w @ self.features(states[-1]) + self.b
        params = self.parameters()
        grads = torch.autograd.grad(v, params)
        if len(self.window) == self.T:  # slide: the next window starts after its first input
            self.h0 = states[0].detach()
            self.window.popleft()
        return v.detach(), list(grads)


class GRUTBPTT(TBPTTLearner):
    """GRU (torch.nn.GRU, PyTorch's init drawn from `generator`) trained by T-BPTT; features = h_t."""

    def __init__(self, obs_dim, H, T, generator=None, dtype=torch.float32):
        super().__init__(T)
        self.gru = nn.GRU(obs_dim, H).to(dtype)
        with torch.no_grad():
            for p in self.gru.parameters():  # PyTorch's default GRU init U(-1/sqrt(H), 1/sqrt(H)), seeded
                p.uniform_(-H**-0.5, H**-0.5, generator=generator)
        self.w = nn.Parameter(torch.zeros(H, dtype=dtype))
        self.b = nn.Parameter(torch.zeros(1, dtype=dtype))
        self.h0 = torch.zeros(1, 1, H, dtype=dtype)

    def parameters(self):
        return [*self.gru.parameters(), self.w, self.b]

    def recurrent_parameters(self):
        return list(self.gru.parameters())

    def unroll(self, xs, h0):
        out, _ = self.gru(xs[:, None], h0)  # (L, 1, H)
        return [out[k:k + 1] for k in range(len(xs))]  # each (1, 1, H), the shape of h0

    def features(self, h):
        return h.reshape(-1)


class LRUTBPTT(TBPTTLearner):
    """LRU with the parameterisation of triton_kernels/lru.py (init from lru_init_params / lru_init_readout), written
    with torch complex autograd and trained by T-BPTT: h_t = lambda*h_{t-1} + exp(gamma_log)*(B x_t),
    features = f(Re(C h_t))."""

    def __init__(self, obs_dim, n, T, readout_dim=None, activation="relu", r_min=0.0, r_max=1.0, generator=None,
                 dtype=torch.float32):
        super().__init__(T)
        self.n, self.H, self.activation = n, readout_dim or n, activation
        init = lru_init_params(n, obs_dim, r_min=r_min, r_max=r_max, generator=generator, dtype=dtype)
        self.rec = LRUParams(*(nn.Parameter(p) for p in init))
        C_re, C_im = lru_init_readout(self.H, n, generator=generator, dtype=dtype)
        self.C_re, self.C_im = nn.Parameter(C_re), nn.Parameter(C_im)
        self.w = nn.Parameter(torch.zeros(self.H, dtype=dtype))
        self.b = nn.Parameter(torch.zeros(1, dtype=dtype))
        self.h0 = torch.zeros(n, dtype=torch.complex128 if dtype == torch.float64 else torch.complex64)

    def parameters(self):
        return [*self.rec, self.C_re, self.C_im, self.w, self.b]

    def recurrent_parameters(self):
        return [*self.rec, self.C_re, self.C_im]

    def unroll(self, xs, h0):
        p = self.rec
        lam = torch.exp(torch.complex(-p.nu_log.exp(), p.theta_log.exp()))  # exp(-exp(nu_log) + i exp(theta_log))
        u = p.gamma_log.exp() * torch.complex(xs @ p.B_re.T, xs @ p.B_im.T)  # exp(gamma_log) * (B x_k), (L, n)
        states, h = [], h0
        for k in range(len(xs)):
            h = lam * h + u[k]
            states.append(h)
        return states

    def features(self, h):
        return act_and_grad(self.C_re @ h.real - self.C_im @ h.imag, self.activation)[0]  # f(Re(C h))


# ---------------------------------------------------------------------------------------------------------------
# Sizes and compute (for the RTU paper's study of error against parameters and compute)
# ---------------------------------------------------------------------------------------------------------------
def recurrent_param_count(arch, D, size, readout_dim=None):
    """Recurrent parameters (the value head w, b is not counted).
    RTU (n units): nu_log, theta_log, W1, W2 = 2n + 2nD.  GRU (H): PyTorch GRU with both biases = 3H(D + H + 2).
    LRU (n units, readout H, default H = n): nu_log, theta_log, gamma_log, B (complex), C (complex) = 3n + 2nD + 2Hn.
    Dense tanh RNN (n units): W = [W_hh | W_in | b] = n(n + D + 1).  GRU by SnAp-1: the GRU's 3H(D + H + 2)."""
    if arch.startswith("rtu"):
        return 2 * size + 2 * size * D
    if arch == "gru_tbptt":
        return 3 * size * (D + size + 2)
    if arch == "gru_snap1":  # the same GRU
        return 3 * size * (D + size + 2)
    if arch.startswith("rnn"):  # dense tanh RNN, n units: W = [W_hh | W_in | b] = n (n + D + 1)
        return size * (size + D + 1)
    return 3 * size + 2 * size * D + 2 * (readout_dim or size) * size


def default_hidden_size(arch, D, budget=None, readout_dim=None):
    """The size whose recurrent parameter count is closest to `budget` (default: a 64-unit RTU's, 26*64 = 1,664 at
    D = 12). At D = 12: RTU n = 64 (1,664), GRU H = 18 (1,728), LRU n = 23 with H = 23 (1,679)."""
    budget = budget or recurrent_param_count("rtu", D, DEFAULT_RTU_UNITS)
    return min(range(1, 4097), key=lambda s: abs(recurrent_param_count(arch, D, s, readout_dim) - budget))


def hidden_size_for_flops(arch, D, budget, T=1, readout_dim=None):
    """The largest size whose FLOPs per step (flops_per_step, at truncation length T) do not exceed `budget`: learners
    compared at equal compute get at most the same FLOPs, never more."""
    fits = [s for s in range(1, 4097) if flops_per_step(arch, D, s, T, readout_dim) <= budget]
    if not fits:
        raise ValueError(f"--flops-budget {budget} is below the FLOPs per step of a 1-unit {arch} "
                         f"({flops_per_step(arch, D, 1, T, readout_dim)})")
    return fits[-1]


# per-parameter cost of the update, common to every learner: eligibility e = gamma*lambda*e + g (2 FLOPs),
# grad = -delta*e (1), Adam (m: 3, v: 4, bias-corrected step m/(sqrt(v)+eps)*lr and the subtraction: 5)
UPDATE_FLOPS_PER_PARAM = 2 + 1 + 12


def flops_per_step(arch, D, size, T=1, readout_dim=None):
    """Analytic FLOPs of one online learning step: recurrent forward, gradient of v(o_t) w.r.t. every parameter,
    TD(lambda) eligibility and Adam update (the environment is not counted).

    Conventions: a multiply or an add is 1 FLOP, a transcendental (exp, sin, sigmoid, ...) is 1 FLOP, a matrix-vector
    product (a x b) is 2ab; the backward pass of autograd costs 2x its forward pass (the usual estimate). Terms:
    - RTU, n units: W1 x, W2 x 4nD; W traces 16nD (2 matrices x 2 parts x (g*E - phi*E') + gamma*x); non-linear:
      times f' 4nD; gradient contraction delta . E 8nD; O(n) terms (coefficients, nu/theta traces, state, head) 80n.
    - Online LRU, n units, readout H: B x 4nD; E_B <- lambda*E_B + gamma*x 8nD; B gradients 8nD; readout y = Re(C h)
      4Hn, its backprop to h 4Hn and C gradients 2Hn; O(n) terms 60n, head O(H) 6H.
    - GRU, hidden H (= size), T-BPTT: one cell forward F = 6HD + 6H^2 + 20H (3 gates x (input and hidden mat-vecs)
      + gating); per step T cells forward + backward = 3 T F, plus the head 6H.
    - LRU, T-BPTT: one cell forward F = 4nD + 12n (input projection, complex lambda*h + u); per step 3 (T F + 4Hn + 3H)
      + 10n (lambda).
    - Dense tanh RNN, n units, m = n + D + 1 (W is n x m): forward W xt 2nm, tanh and d = 1 - h^2 3n, head and its
      gradient 4n; then, by how d h / d W is tracked (see DenseRNN):
      exact RTRL: W_hh M 2n^3 m, + xt on the diagonal nm, times d n^2 m, gradient w^T M 2n^2 m;
      UORO: W_hh s~ 2n^2, times d n, signs and nu*d 3n, norms 2nm + 4n + 2m, rho0 / rho1 10, s~ update 3n,
      theta~ update 3nm + n, gradient (w . s~) theta~ 2n + nm;
      KF-RTRL: W_hh A 2n^3, times d n^2, norms 2n^2 + 4m + 2n, p1 / p2 10, u update 3m, A update 2n^2 + n,
      gradient w^T A then outer with u 2n^2 + nm;
      SnAp-1: S = d * (diag(W_hh) * S + xt) 3nm, gradient w * S nm.
    - GRU, SnAp-1: the cell forward F = 6HD + 6H^2 + 20H, row coefficients and the diagonal Jacobian 20H, the trace
      update S = J S + a * input 3 x (recurrent parameters), gradient w * S 1 x (recurrent parameters), head 4H.
    - Every arch: UPDATE_FLOPS_PER_PARAM x (all parameters, head included)."""
    H = readout_dim or size
    n = size
    if arch in ("rtu_nonlinear", "rtu_linear"):
        core = 4 * n * D + 16 * n * D + 8 * n * D + 80 * n + (4 * n * D if arch == "rtu_nonlinear" else 0)
        head = 2 * n + 1
    elif arch == "lru_rtrl":
        core = 4 * n * D + 8 * n * D + 8 * n * D + 10 * H * n + 60 * n + 6 * H
        head = H + 1
    elif arch == "gru_tbptt":  # (no readout: H is the hidden size)
        cell = 6 * n * D + 6 * n * n + 20 * n
        core = 3 * T * cell + 6 * n
        head = n + 1
    elif arch == "lru_tbptt":
        cell = 4 * n * D + 12 * n
        core = 3 * (T * cell + 4 * H * n + 3 * H) + 10 * n
        head = H + 1
    elif arch.startswith("rnn"):
        m = n + D + 1
        track = {"rnn_rtrl": 2 * n**3 * m + n * m + n * n * m + 2 * n * n * m,
                 "rnn_uoro": (2 * n * n + n) + 3 * n + (2 * n * m + 4 * n + 2 * m) + 10 + 3 * n + (3 * n * m + n)
                 + (2 * n + n * m),
                 "rnn_kfrtrl": (2 * n**3 + n * n) + (2 * n * n + 4 * m + 2 * n) + 10 + 3 * m + (2 * n * n + n)
                 + (2 * n * n + n * m),
                 "rnn_snap1": 3 * n * m + n * m}[arch]
        core = 2 * n * m + 3 * n + 4 * n + track
        head = n + 1
    elif arch == "gru_snap1":
        P = 3 * n * (D + n + 2)
        core = 6 * n * D + 6 * n * n + 20 * n + 20 * n + 4 * P + 4 * n
        head = n + 1
    else:
        raise ValueError(f"unknown arch {arch!r}; expected one of {ARCHS}")
    params = recurrent_param_count(arch, D, size, readout_dim) + head
    return int(core + UPDATE_FLOPS_PER_PARAM * params)


def make_learner(arch, obs_dim, size, args, generator, dtype=torch.float32):
    common = dict(r_min=args.r_min, r_max=args.r_max, generator=generator, dtype=dtype)
    if arch in ("rtu_nonlinear", "rtu_linear"):
        return RTURTRL(obs_dim, size, nonlinear=arch == "rtu_nonlinear", activation=args.activation, **common)
    if arch == "lru_rtrl":
        return LRURTRL(obs_dim, size, args.lru_readout_dim, args.activation, **common)
    if arch == "gru_tbptt":
        return GRUTBPTT(obs_dim, size, args.tbptt_len, generator=generator, dtype=dtype)
    if arch == "lru_tbptt":
        return LRUTBPTT(obs_dim, size, args.tbptt_len, args.lru_readout_dim, args.activation, **common)
    dense = {"rnn_rtrl": RNNRTRL, "rnn_uoro": RNNUORO, "rnn_kfrtrl": RNNKFRTRL, "rnn_snap1": RNNSnAp1}
    if arch in dense:
        return dense[arch](obs_dim, size, generator=generator, dtype=dtype)
    if arch == "gru_snap1":
        return GRUSnAp1(obs_dim, size, generator=generator, dtype=dtype)
    raise ValueError(f"unknown arch {arch!r}; expected one of {ARCHS}")


# ---------------------------------------------------------------------------------------------------------------
# General (dense) cells trained online by exact RTRL and by approximations of it: UORO, KF-RTRL, SnAp-1
# ---------------------------------------------------------------------------------------------------------------
# the learners of this section, selected by --arch like the others
APPROX_ARCHS = ("rnn_rtrl", "rnn_uoro", "rnn_kfrtrl", "rnn_snap1", "gru_snap1")
ARCHS = ARCHS + APPROX_ARCHS

# The dense tanh RNN (n units, D inputs, m = n + D + 1), in the notation of Mujika et al. 2018 (Sec. 2-3):
#   xt_t = [h_{t-1}; x_t; 1] (m,),   h_t = tanh(W xt_t),   W = [W_hh | W_in | b] (n x m),   v(o_t) = w . h_t + b_v.
# Its influence matrix M_t = d h_t / d W, with M_t[i, k, j] = d h_{t,i} / d W_kj, obeys the RTRL recursion
#   M_t = H_t M_{t-1} + F_t,   H_t = d h_t / d h_{t-1} = diag(d_t) W_hh,   F_t[i, k, j] = d_{t,i} [i = k] xt_{t,j},
# with d_t = tanh'(W xt_t) = 1 - h_t^2 (the forward-mode recursion of Tallec & Ollivier 2017, Sec. 2; Mujika et al.
# 2018, Sec. 2; Menick et al. 2021, Sec. 2, "J_t = I_t + D_t J_{t-1}"). F_t is the Kronecker product of xt_t and
# diag(d_t): that structure is what KF-RTRL keeps (Mujika et al. 2018, Sec. 3). The gradient of the value is
#   dv(o_t) / dW_kj = sum_i w_i M_t[i, k, j].
# Exact RTRL stores M (n^2 m numbers) and pays O(n^3 m) = O(n^4) per step for H_t M_{t-1}. The approximations store:
#   UORO:    M ~ s~ (x) theta~ (a state-space vector times a parameter-space vector), O(n m) per step;
#   KF-RTRL: M ~ A (x) u, M[i, k, j] ~ A[i, k] u[j] (A: n x n, u: m), O(n^3) per step;
#   SnAp-1:  only M[k, k, j], the influence of W_kj on the unit k that it feeds directly, O(n m) per step.
# UORO and KF-RTRL are unbiased: over their random signs, E[estimate of M_t] = M_t given the same parameters and
# inputs (tests/test_approx_rtrl.py checks it statistically). SnAp-1 is biased unless W_hh is diagonal.
# Resets: `step(x, reset=True)` starts an episode: h_{t-1} and the influence (or its estimate) are zeroed before the
# step, as if the state were multiplied by (1 - done). The trace-conditioning stream never resets; the tests do.
# UORO and KF-RTRL can carry `draws` independent estimates side by side (the tests use this to average over the
# random signs); `step` returns their mean and leaves each draw's gradient of W in `draw_grads`. Runs use draws = 1.
class DenseRNN:
    """Dense tanh RNN with a linear value head; subclasses track d h_t / d W. W starts as PyTorch's nn.RNN init,
    every entry ~ U(-1/sqrt(n), 1/sqrt(n)); the head starts at zero, as in every other learner."""

    def __init__(self, obs_dim, n, generator=None, dtype=torch.float32):
        self.n, self.D, self.m = n, obs_dim, n + obs_dim + 1
        self.W = nn.Parameter(torch.empty(n, self.m, dtype=dtype).uniform_(-n**-0.5, n**-0.5, generator=generator))
        self.w = nn.Parameter(torch.zeros(n, dtype=dtype))
        self.b = nn.Parameter(torch.zeros(1, dtype=dtype))
        self.h = torch.zeros(n, dtype=dtype)
        self.generator = generator  # the random signs of UORO / KF-RTRL are drawn from the (seeded) init generator

    def parameters(self):
        return [self.W, self.w, self.b]

    def recurrent_parameters(self):
        return [self.W]

    @torch.no_grad()
    def step(self, x, reset=False):
        if reset:
            self.h = torch.zeros_like(self.h)
            self.reset_influence()
        xt = torch.cat((self.h, x.to(self.W.dtype), self.h.new_ones(1)))  # [h_{t-1}; x_t; 1]
        h = torch.tanh(self.W @ xt)
        g_W = self.track(xt, 1 - h * h)  # update the influence (estimate) to step t; dv/dW from it
        self.h = h
        return self.w @ h + self.b, [g_W, h.clone(), torch.ones_like(self.b)]

    def signs(self, *shape):
        """Independent uniform random signs (+1 / -1)."""
        return torch.randint(0, 2, shape, generator=self.generator).to(self.W.dtype).mul_(2).sub_(1)

    def _mean_over_draws(self, g):
        self.draw_grads = g
        return g[0] if len(g) == 1 else g.mean(0)


class RNNRTRL(DenseRNN):
    """Exact RTRL on the dense tanh RNN: M_t = diag(d_t) (W_hh M_{t-1} + [i = k] xt_j), O(n^3 m) per step."""

    def __init__(self, obs_dim, n, generator=None, dtype=torch.float32):
        super().__init__(obs_dim, n, generator, dtype)
        self.M = torch.zeros(n, n, self.m, dtype=dtype)

    def reset_influence(self):
        self.M = torch.zeros_like(self.M)

    def track(self, xt, d):
        n, m = self.n, self.m
        M = (self.W[:, :n] @ self.M.view(n, n * m)).view(n, n, m)  # W_hh M_{t-1}
        M.diagonal(dim1=0, dim2=1).add_(xt[:, None])  # + [i = k] xt_j (view of shape (m, n))
        self.M = M.mul_(d[:, None, None])  # diag(d_t) (...): H_t M_{t-1} + F_t
        return (self.w @ self.M.view(n, n * m)).view(n, m)


class RNNUORO(DenseRNN):
    """UORO (Tallec & Ollivier 2017, Sec. 3, Prop. 1 and Algorithm 1) on the dense tanh RNN: M_t ~ s~_t theta~_t^T
    with s~ (n,) and theta~ (n x m, the shape of W). With nu a vector of independent random signs:
        s~_t     = rho0 H_t s~_{t-1} + rho1 nu,
        theta~_t = theta~_{t-1} / rho0 + (nu^T F_t) / rho1,      nu^T F_t = (nu * d_t) xt_t^T,
    unbiased because E[nu nu^T] = I and every cross term is odd in nu (rho0, rho1 are even in nu). The
    variance-reduction factors equalise the norms of the two factors of each rank-one term (Prop. 1):
        rho0 = sqrt(|theta~_{t-1}| / (|H_t s~_{t-1}| + eps)) + eps,   rho1 = sqrt(|nu^T F_t| / (|nu| + eps)) + eps.
    The gradient estimate is dv/dW ~ (w . s~_t) theta~_t. O(n m) per step."""

    eps = 1e-7

    def __init__(self, obs_dim, n, generator=None, dtype=torch.float32, draws=1):
        super().__init__(obs_dim, n, generator, dtype)
        self.draws = draws
        self.s = torch.zeros(draws, n, dtype=dtype)
        self.theta = torch.zeros(draws, n, self.m, dtype=dtype)

    def reset_influence(self):
        self.s, self.theta = torch.zeros_like(self.s), torch.zeros_like(self.theta)

    def track(self, xt, d):
        eps = self.eps
        Hs = d * (self.s @ self.W[:, :self.n].T)  # H_t s~_{t-1} = d_t * (W_hh s~_{t-1}), (K, n)
        nu = self.signs(self.draws, self.n)
        nu_d = nu * d  # nu^T F_t = outer(nu * d_t, xt_t); its norm is |nu * d_t| |xt_t|
        rho0 = torch.sqrt(self.theta.flatten(1).norm(dim=1) / (Hs.norm(dim=1) + eps)) + eps
        rho1 = torch.sqrt(nu_d.norm(dim=1) * xt.norm() / (math.sqrt(self.n) + eps)) + eps
        self.s = rho0[:, None] * Hs + rho1[:, None] * nu
        self.theta = self.theta / rho0[:, None, None] + (nu_d / rho1[:, None])[:, :, None] * xt
        return self._mean_over_draws((self.s @ self.w)[:, None, None] * self.theta)


class RNNKFRTRL(DenseRNN):
    """KF-RTRL (Mujika et al. 2018, Sec. 3) on the dense tanh RNN: M_t[i, k, j] ~ A_t[i, k] u_t[j] (A: n x n,
    u: m). H_t M_{t-1} + F_t ~ (H_t A_{t-1}) (x) u_{t-1} + diag(d_t) (x) xt_t is a sum of two Kronecker products;
    with independent random signs c1, c2 it is replaced, without bias (E[c1 c2] = 0, E[c^2] = 1), by one:
        u_t = c1 p1 u_{t-1} + c2 p2 xt_t,      A_t = c1 (H_t A_{t-1}) / p1 + c2 diag(d_t) / p2,
    with the variance-minimising factors p1 = sqrt(|H_t A_{t-1}| / |u_{t-1}|), p2 = sqrt(|d_t| / |xt_t|) (Frobenius
    norms; eps guards the first step, where u = A = 0). The gradient estimate is dv/dW_kj ~ (w^T A_t)_k u_t[j].
    O(n^3) per step (H_t A_{t-1} = diag(d_t) W_hh A_{t-1})."""

    eps = 1e-7

    def __init__(self, obs_dim, n, generator=None, dtype=torch.float32, draws=1):
        super().__init__(obs_dim, n, generator, dtype)
        self.draws = draws
        self.u = torch.zeros(draws, self.m, dtype=dtype)
        self.A = torch.zeros(draws, n, n, dtype=dtype)

    def reset_influence(self):
        self.u, self.A = torch.zeros_like(self.u), torch.zeros_like(self.A)

    def track(self, xt, d):
        eps = self.eps
        HA = d[:, None] * (self.W[:, :self.n] @ self.A)  # H_t A_{t-1}, (K, n, n)
        c = self.signs(self.draws, 2)
        p1 = torch.sqrt(HA.flatten(1).norm(dim=1) / (self.u.norm(dim=1) + eps)) + eps
        p2 = torch.sqrt(d.norm() / (xt.norm() + eps)) + eps
        c1, c2 = c[:, 0], c[:, 1]
        self.u = (c1 * p1)[:, None] * self.u + (c2 * p2)[:, None] * xt
        self.A = (c1 / p1)[:, None, None] * HA + torch.diag_embed((c2 / p2)[:, None] * d)
        return self._mean_over_draws((self.w @ self.A)[:, :, None] * self.u[:, None, :])


class RNNSnAp1(DenseRNN):
    """SnAp-1 (Menick et al. 2021, Sec. 3: J_t ~ (I_t + D_t J_{t-1}) masked to the entries that are non-zero after
    one step) on the dense tanh RNN. W_kj reaches only unit k in one step, so the kept influence is S[k, j] ~
    M[k, k, j], and only the diagonal of H_t acts on it:
        S_t = d_t * (diag(W_hh) * S_{t-1} + xt_t)   (row k scaled by d_{t,k} and W_kk),   dv/dW_kj ~ w_k S_t[k, j].
    Exact when W_hh is diagonal (then H_t is diagonal and the dropped entries stay zero). O(n m) per step."""

    def __init__(self, obs_dim, n, generator=None, dtype=torch.float32):
        super().__init__(obs_dim, n, generator, dtype)
        self.S = torch.zeros(n, self.m, dtype=dtype)

    def reset_influence(self):
        self.S = torch.zeros_like(self.S)

    def track(self, xt, d):
        self.S = d[:, None] * (self.W.diagonal()[:, None] * self.S + xt)  # W.diagonal() = diag(W_hh)
        return self.w[:, None] * self.S


class GRUSnAp1:
    """GRU (PyTorch's equations and parameters, the init of GRUTBPTT) trained by SnAp-1 (Menick et al. 2021, Sec. 3)
    with the hidden state h as the recurrent state:
        r = sig(W_ir x + b_ir + W_hr h + b_hr),  z = sig(W_iz x + b_iz + W_hz h + b_hz),
        c = tanh(W_ic x + b_ic + r * (W_hc h + b_hc)),  h' = (1 - z) * c + z * h.
    Every parameter sits in a row (gate g, unit i) and reaches only h'_i in one step, so SnAp-1 keeps one number per
    parameter, its influence S on h_i, a tensor of the parameter's shape:
        S_t = J_t,i S_{t-1} + (immediate d h'_i / d p),   J_t,i = d h'_i / d h_i (the diagonal of d h' / d h),
        J_t,i = z_i + a_z,i W_hz[i, i] + a_hc,i W_hc[i, i] + a_r,i W_hr[i, i], with the row coefficients
        a_c = (1 - z)(1 - c^2), a_z = (h - c) z (1 - z), a_r = a_c (W_hc h + b_hc) r (1 - r), a_hc = a_c r:
        d h'_i / d W_ih[(g, i), j] = a_g,i x_j, d h'_i / d W_hh[(g, i), j] = a'_g,i h_j (a' = a except a'_c = a_hc),
        and the same coefficients for the biases b_ih (a) and b_hh (a'). Gradient: dv / dp = w_i S.
    Exact when the three blocks of W_hh are diagonal. O(parameters) per step."""

    def __init__(self, obs_dim, H, generator=None, dtype=torch.float32):
        self.H = H
        shapes = ((3 * H, obs_dim), (3 * H, H), (3 * H,), (3 * H,))  # nn.GRU's order: W_ih, W_hh, b_ih, b_hh
        self.W_ih, self.W_hh, self.b_ih, self.b_hh = (  # PyTorch's default GRU init U(-1/sqrt(H), 1/sqrt(H)), seeded
            nn.Parameter(torch.empty(s, dtype=dtype).uniform_(-H**-0.5, H**-0.5, generator=generator)) for s in shapes)
        self.w = nn.Parameter(torch.zeros(H, dtype=dtype))
        self.b = nn.Parameter(torch.zeros(1, dtype=dtype))
        self.h = torch.zeros(H, dtype=dtype)
        self.S = [torch.zeros(s, dtype=dtype) for s in shapes]

    def parameters(self):
        return [self.W_ih, self.W_hh, self.b_ih, self.b_hh, self.w, self.b]

    def recurrent_parameters(self):
        return [self.W_ih, self.W_hh, self.b_ih, self.b_hh]

    @torch.no_grad()
    def step(self, x, reset=False):
        H, hp = self.H, self.h
        if reset:
            hp = torch.zeros_like(hp)
            self.S = [torch.zeros_like(s) for s in self.S]
        x = x.to(hp.dtype)
        gi, gh = self.W_ih @ x + self.b_ih, self.W_hh @ hp + self.b_hh
        r = torch.sigmoid(gi[:H] + gh[:H])
        z = torch.sigmoid(gi[H:2 * H] + gh[H:2 * H])
        hc = gh[2 * H:]
        c = torch.tanh(gi[2 * H:] + r * hc)
        h = (1 - z) * c + z * hp
        a_c = (1 - z) * (1 - c * c)
        a_z = (hp - c) * z * (1 - z)
        a_r = a_c * hc * r * (1 - r)
        a_hc = a_c * r
        Wd = self.W_hh.view(3, H, H).diagonal(dim1=1, dim2=2)  # rows: diag(W_hr), diag(W_hz), diag(W_hc)
        J = (z + a_r * Wd[0] + a_z * Wd[1] + a_hc * Wd[2]).repeat(3)  # J_i for every row (g, i)
        a_in, a_rec = torch.cat((a_r, a_z, a_c)), torch.cat((a_r, a_z, a_hc))
        S_ih, S_hh, S_bi, S_bh = self.S
        self.S = [J[:, None] * S_ih + a_in[:, None] * x, J[:, None] * S_hh + a_rec[:, None] * hp,
                  J * S_bi + a_in, J * S_bh + a_rec]
        self.h = h
        w3 = self.w.repeat(3)
        grads = [w3[:, None] * self.S[0], w3[:, None] * self.S[1], w3 * self.S[2], w3 * self.S[3]]
        return self.w @ h + self.b, [*grads, h.clone(), torch.ones_like(self.b)]


def check_args(args):
    """Return (isi_interval, gamma) or raise ValueError with a message that names the bad setting."""
    if args.arch not in ARCHS:
        raise ValueError(f"unknown arch {args.arch!r}; expected one of {ARCHS}")
    if args.isi not in ISI_PRESETS:
        raise ValueError(f"--isi must be one of {tuple(ISI_PRESETS)}, got {args.isi!r}")
    isi_interval, gamma = ISI_PRESETS[args.isi]
    isi_interval = tuple(args.isi_interval) if args.isi_interval is not None else isi_interval
    gamma = args.gamma if args.gamma is not None else gamma
    for name, (lo, hi), low in (("isi_interval", isi_interval, 1), ("iti_interval", args.iti_interval, 2)):
        if not (isinstance(lo, int) and isinstance(hi, int) and low <= lo <= hi):
            raise ValueError(f"--{name.replace('_', '-')} must be two integers {low} <= lo <= hi, got {(lo, hi)}")
    if not 0 <= args.num_distractors <= 10:
        raise ValueError(f"--num-distractors must be in 0..10, got {args.num_distractors}")
    if not 0.0 <= gamma < 1.0:
        raise ValueError(f"--gamma must be in [0, 1), got {gamma}")
    if not 0.0 <= args.td_lambda <= 1.0:
        raise ValueError(f"--td-lambda must be in [0, 1], got {args.td_lambda}")
    if args.checkpoint_interval < 0:
        raise ValueError(f"--checkpoint-interval must be >= 0, got {args.checkpoint_interval}")
    for name in ("total_steps", "tbptt_len", "msre_bin"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if sum(getattr(args, name) is not None for name in ("hidden_size", "param_budget", "flops_budget")) > 1:
        raise ValueError("give at most one of --hidden-size, --param-budget and --flops-budget")
    for name in ("hidden_size", "param_budget", "flops_budget", "lru_readout_dim"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if not (args.learning_rate > 0 and 0 <= args.r_min <= args.r_max <= 1):
        raise ValueError("need --learning-rate > 0 and 0 <= --r-min <= --r-max <= 1")
    for name in ("adam_beta1", "adam_beta2"):
        if not 0 <= getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be in [0, 1), got {getattr(args, name)}")
    if not args.adam_eps >= 0:
        raise ValueError(f"--adam-eps must be >= 0, got {args.adam_eps}")
    if args.flops_budget is not None:  # a budget that no size fits is bad input: say so before the run starts
        hidden_size_for_flops(args.arch, 2 + args.num_distractors, args.flops_budget,
                              args.tbptt_len if args.arch.endswith("tbptt") else 1, args.lru_readout_dim)
    return isi_interval, gamma


def write_summary(path, summary):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if path.endswith(".json"):
        with open(path, "w") as f:
            json.dump(summary, f, indent=2)
        return
    new = not os.path.exists(path) or os.path.getsize(path) == 0
    summary = {k: v for k, v in summary.items() if not isinstance(v, list)}  # one value per cell; curves: JSON
    with open(path, "a") as f:
        if new:
            f.write(",".join(summary) + "\n")
        f.write(",".join(str(v).replace(",", ";") for v in summary.values()) + "\n")


def resume_args(args):
    """--resume RUN_DIR: the run's saved Args and checkpoint. A flag given now must equal the saved value, except a
    larger --total-steps, which extends the run."""
    path = os.path.join(args.resume, "checkpoint.pt")
    if not os.path.isfile(path):
        sys.exit(f"error: --resume {args.resume}: no checkpoint.pt there")
    checkpoint = torch.load(path, weights_only=False)
    if checkpoint["script"] != os.path.basename(__file__):
        sys.exit(f"error: --resume {args.resume} is a run of {checkpoint['script']}, not {os.path.basename(__file__)}")
    missing = [f.name for f in fields(Args) if f.name not in checkpoint["args"]]
    if missing:  # its defaults may not be what the run used
        sys.exit(f"error: --resume {args.resume}: the checkpoint predates --{missing[0].replace('_', '-')}; start the run over")
    saved, default = Args(**checkpoint["args"]), Args()
    for f in fields(Args):
        given = getattr(args, f.name)
        if f.name in ("resume", "total_steps"):
            continue
        if given != getattr(default, f.name) and given != getattr(saved, f.name):
            sys.exit(f"error: --{f.name.replace('_', '-')} {given} differs from the resumed run's {getattr(saved, f.name)}")
    if args.total_steps != default.total_steps and args.total_steps != saved.total_steps:
        if args.total_steps < checkpoint["global_step"]:
            sys.exit(f"error: --total-steps {args.total_steps} is below the run's {checkpoint['global_step']} steps")
        saved.total_steps = args.total_steps
    saved.resume = args.resume
    return saved, checkpoint


def save_checkpoint(path, checkpoint):
    """Write to a temporary file, then rename: a kill at any moment leaves the previous checkpoint intact."""
    torch.save(checkpoint, path + ".tmp")
    os.replace(path + ".tmp", path)


def write_done_marker(run_dir, args, global_step, iterations, wall_time):
    """The completion marker that sweeps and plots read: the full configuration, the steps done and the commit."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=os.path.dirname(os.path.abspath(__file__)),
                                capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = None
    marker = dict(script=os.path.basename(__file__), args=vars(args), command=sys.argv, global_step=global_step,
                  iterations=iterations, wall_time_s=round(wall_time, 1), commit=commit,
                  finished=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
    with open(os.path.join(run_dir, "done.json"), "w") as f:
        json.dump(marker, f, indent=1)


def main(args: Args):
    checkpoint = None
    if args.resume:
        args, checkpoint = resume_args(args)
    try:
        isi_interval, gamma = check_args(args)
    except ValueError as e:
        sys.exit(f"error: {e}")
    env_name = f"TraceConditioning-ISI{isi_interval[0]}-{isi_interval[1]}"
    run_name = f"{env_name}__{args.exp_name}__{args.arch}__{args.seed}__{int(time.time())}"
    run_dir = f"runs/{run_name}"
    if checkpoint is not None:
        run_dir, run_name = args.resume, os.path.basename(os.path.normpath(args.resume))
        if checkpoint["global_step"] >= args.total_steps:
            print(f"{run_dir} already finished after {checkpoint['global_step']} steps")
            return None
        if os.path.exists(os.path.join(run_dir, "done.json")):
            os.remove(os.path.join(run_dir, "done.json"))  # extended: no longer complete
    if args.track:
        import wandb

        wandb.init(project=args.wandb_project_name, entity=args.wandb_entity, sync_tensorboard=True,
                   config=vars(args), name=run_name, save_code=True)
    # on resume, TensorBoard drops what the interrupted run logged after its checkpoint (purge_step)
    writer = SummaryWriter(run_dir, purge_step=None if checkpoint is None else checkpoint["global_step"] + 1)
    if checkpoint is None:
        writer.add_text("hyperparameters",
                        "|param|value|\n|-|-|\n%s" % ("\n".join([f"|{k}|{v}|" for k, v in vars(args).items()])))

    # TRY NOT TO MODIFY: seeding
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic

    env = TraceConditioning(isi_interval, args.iti_interval, args.num_distractors, seed=args.seed)
    D = env.obs_dim
    is_tbptt = args.arch.endswith("tbptt")
    T = args.tbptt_len if is_tbptt else 1
    if args.flops_budget:
        size = hidden_size_for_flops(args.arch, D, args.flops_budget, T, args.lru_readout_dim)
    else:
        size = args.hidden_size or default_hidden_size(args.arch, D, args.param_budget, args.lru_readout_dim)
    learner = make_learner(args.arch, D, size, args, torch.Generator().manual_seed(args.seed))
    if checkpoint is not None:  # the env and learner exactly as checkpointed: RNGs, recurrent state, traces, window
        saved = pickle.loads(checkpoint["state"])
        vars(env).update(saved["env"])
        vars(learner).update(saved["learner"])
    params = learner.parameters()
    n_rec = sum(p.numel() for p in learner.recurrent_parameters())
    n_total = sum(p.numel() for p in params)
    flops = flops_per_step(args.arch, D, size, T, args.lru_readout_dim)
    print(f"{args.arch}: hidden_size={size} recurrent_params={n_rec} total_params={n_total} "
          f"flops_per_step={flops} obs_dim={D} isi_interval={isi_interval} gamma={gamma}")
    if checkpoint is None:
        writer.add_text("model/recurrent_params", f"{args.arch}: hidden_size={size}, recurrent parameters {n_rec}, "
                        f"total parameters {n_total}, FLOPs per step {flops}")
        writer.add_scalar("charts/recurrent_params", n_rec, 0)
        writer.add_scalar("charts/flops_per_step", flops, 0)
    # fused Adam: one kernel for all parameter tensors (the default for-loop Adam costs ~4x more per step on CPU)
    optimizer = torch.optim.Adam(params, lr=args.learning_rate, betas=(args.adam_beta1, args.adam_beta2),
                                 eps=args.adam_eps, fused=True)
    elig = [torch.zeros_like(p) for p in params]  # eligibility trace e_t, one tensor per parameter
    decay = gamma * args.td_lambda

    N = args.total_steps
    values, cumulants = np.zeros(N), np.zeros(N)
    t0, bin_from, bin_sq_td, wall_before = 0, 0, 0.0, 0.0  # bin_from: the first step of the current MSRE bin
    if checkpoint is None:
        obs = env.reset()
    else:  # continue exactly where the checkpoint was taken
        optimizer.load_state_dict(checkpoint["optimizer"])
        elig, v, grad = saved["elig"], saved["v"], saved["grad"]
        t0 = checkpoint["global_step"]
        values[:t0], cumulants[:t0] = saved["values"], saved["cumulants"]
        bin_from, bin_sq_td = saved["bin"]
        random.setstate(checkpoint["rng"][0])
        np.random.set_state(checkpoint["rng"][1])
        torch.set_rng_state(checkpoint["rng"][2])
        wall_before = checkpoint["wall_time"]
        print(f"resumed {run_dir} after {t0} steps")
    start_time = time.perf_counter()
    if checkpoint is None:
        v, grad = learner.step(torch.from_numpy(obs))  # v(o_0) and its gradient
    timer = (start_time, t0)  # (time, step) of the last log: steps per second

    def save_state(steps):
        """Everything the next step needs: v(o_steps) and its gradient, the traces, the recorded values."""
        writer.flush()  # everything logged up to here is on disk before the checkpoint says so
        state = dict(env=vars(env), learner=vars(learner), elig=elig, v=v, grad=grad, values=values[:steps],
                     cumulants=cumulants[:steps], bin=(bin_from, bin_sq_td))
        save_checkpoint(f"{run_dir}/checkpoint.pt", dict(
            script=os.path.basename(__file__), args=vars(args), global_step=steps, iteration=steps // args.msre_bin,
            model={str(i): p.detach() for i, p in enumerate(params)}, optimizer=optimizer.state_dict(),
            state=pickle.dumps(state), rng=(random.getstate(), np.random.get_state(), torch.get_rng_state()),
            wall_time=wall_before + time.perf_counter() - start_time))

    for t in range(t0, N):
        values[t] = v_t = v.item()
        obs, c = env.step()  # o_{t+1}, c_{t+1}
        cumulants[t] = c
        v, grad_next = learner.step(torch.from_numpy(obs))  # v(o_{t+1}), computed with the current parameters
        delta = c + gamma * v.item() - v_t  # TD error delta_t
        if not math.isfinite(delta):
            sys.exit(f"error: non-finite TD error at step {t} (v_t={v_t}, v_t+1={v.item()}); "
                     f"try a smaller --learning-rate")
        # e_t = gamma*lambda*e_{t-1} + grad v(o_t); Adam on -delta_t * e_t (foreach ops: one call for all tensors)
        torch._foreach_mul_(elig, decay)
        torch._foreach_add_(elig, grad)
        for p, g in zip(params, torch._foreach_mul(elig, -delta)):
            p.grad = g
        optimizer.step()
        grad = grad_next
        bin_sq_td += delta * delta

        if (t + 1) % args.msre_bin == 0 or t + 1 == N:
            now, steps = time.perf_counter(), t + 1 - bin_from
            writer.add_scalar("charts/SPS", (t + 1 - timer[1]) / (now - timer[0]), t + 1)
            writer.add_scalar("charts/sec_per_step", (now - timer[0]) / (t + 1 - timer[1]), t + 1)
            writer.add_scalar("losses/td_error_sq", bin_sq_td / steps, t + 1)
            writer.add_scalar("charts/value_mean", float(values[t + 1 - steps: t + 1].mean()), t + 1)
            timer = (now, t + 1)
            if (t + 1) % args.msre_bin == 0:  # a bin is full; a run that ends mid-bin keeps it open (extension)
                bin_from, bin_sq_td = t + 1, 0.0
                if args.checkpoint_interval and (t + 1) // args.msre_bin % args.checkpoint_interval == 0 and t + 1 < N:
                    save_state(t + 1)
    wall_time = wall_before + time.perf_counter() - start_time
    sec_per_step = wall_time / N

    # MSRE over the whole run and binned (G_t needs the future, so it is computed after the run)
    returns = compute_returns(cumulants, gamma)
    final_msre = msre(values, returns)
    sq_err = (values - returns) ** 2
    binned = [float(sq_err[s: s + args.msre_bin].mean()) for s in range(0, N, args.msre_bin)]
    for i, b in enumerate(binned):
        writer.add_scalar("charts/msre_binned", b, min((i + 1) * args.msre_bin, N))
    last_bin = binned[-1]
    writer.add_scalar("charts/msre", final_msre, N)
    if not math.isfinite(final_msre):
        sys.exit(f"error: non-finite MSRE ({final_msre})")

    summary = dict(arch=args.arch, isi=args.isi, isi_lo=isi_interval[0], isi_hi=isi_interval[1], gamma=gamma,
                   seed=args.seed, steps=N, msre=final_msre, msre_last_bin=last_bin, msre_bin=args.msre_bin, params=n_rec,
                   total_params=n_total, hidden_size=size, tbptt_len=args.tbptt_len if is_tbptt else None,
                   flops_per_step=flops, sec_per_step=sec_per_step, learning_rate=args.learning_rate,
                   td_lambda=args.td_lambda, num_distractors=args.num_distractors, run_name=run_name,
                   msre_binned=binned)
    if args.summary_path:
        write_summary(args.summary_path, summary)
    print(f"FINAL_MSRE arch={args.arch} isi={args.isi} seed={args.seed} msre={final_msre:.6g} "
          f"msre_last_bin={last_bin:.6g} params={n_rec} flops_per_step={flops} sec_per_step={sec_per_step:.4g} "
          f"tbptt_len={summary['tbptt_len']} steps={N}")
    save_state(N)
    writer.close()
    # one update per step: the run's steps are its iterations
    write_done_marker(run_dir, args, N, N, wall_time)
    if args.track:
        wandb.finish()
    return summary


if __name__ == "__main__":
    main(tyro.cli(Args))
