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
# with readout H = 23 (1,679). --param-budget / --hidden-size change them; every run prints and logs its count and
# analytic FLOPs/step.
#
# Run length: --total-steps 100000 takes about a minute for the RTRL learners on one core of a 2-core CPU (about
# 0.55-0.62 ms of CPU time per step, see results/perf/rtrl_vs_tbptt.md); T-BPTT costs grow with T (GRU, T = 16: 2.1 ms).
# The source papers' runs are much longer (their exact step count was not checked here); use --total-steps to match
# them.
import datetime
import json
import math
import os
import random
import subprocess
import sys
import time
from collections import deque
from dataclasses import asdict, dataclass
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
    arch: Literal["rtu_nonlinear", "rtu_linear", "lru_rtrl", "gru_tbptt", "lru_tbptt"] = "rtu_nonlinear"
    """recurrent learner: RTU (non-linear / linear) or online LRU by exact RTRL; GRU or LRU by truncated BPTT"""
    hidden_size: Optional[int] = None
    """units of the recurrent layer (RTU/LRU: complex units n, GRU: hidden size); default: matched to param_budget"""
    param_budget: Optional[int] = None
    """recurrent-parameter budget used to pick the default hidden_size of every arch (default: that of a 64-unit RTU)"""
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
    LRU (n units, readout H, default H = n): nu_log, theta_log, gamma_log, B (complex), C (complex) = 3n + 2nD + 2Hn."""
    if arch.startswith("rtu"):
        return 2 * size + 2 * size * D
    if arch == "gru_tbptt":
        return 3 * size * (D + size + 2)
    return 3 * size + 2 * size * D + 2 * (readout_dim or size) * size


def default_hidden_size(arch, D, budget=None, readout_dim=None):
    """The size whose recurrent parameter count is closest to `budget` (default: a 64-unit RTU's, 26*64 = 1,664 at
    D = 12). At D = 12: RTU n = 64 (1,664), GRU H = 18 (1,728), LRU n = 23 with H = 23 (1,679)."""
    budget = budget or recurrent_param_count("rtu", D, DEFAULT_RTU_UNITS)
    return min(range(1, 4097), key=lambda s: abs(recurrent_param_count(arch, D, s, readout_dim) - budget))


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
    raise ValueError(f"unknown arch {arch!r}; expected one of {ARCHS}")


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
    for name in ("total_steps", "tbptt_len", "msre_bin"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    for name in ("hidden_size", "param_budget", "lru_readout_dim"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if not (args.learning_rate > 0 and 0 <= args.r_min <= args.r_max <= 1):
        raise ValueError("need --learning-rate > 0 and 0 <= --r-min <= --r-max <= 1")
    for name in ("adam_beta1", "adam_beta2"):
        if not 0 <= getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be in [0, 1), got {getattr(args, name)}")
    if not args.adam_eps >= 0:
        raise ValueError(f"--adam-eps must be >= 0, got {args.adam_eps}")
    return isi_interval, gamma


def write_summary(path, summary):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if path.endswith(".json"):
        with open(path, "w") as f:
            json.dump(summary, f, indent=2)
        return
    new = not os.path.exists(path) or os.path.getsize(path) == 0
    with open(path, "a") as f:
        if new:
            f.write(",".join(summary) + "\n")
        f.write(",".join(str(v).replace(",", ";") for v in summary.values()) + "\n")


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
    try:
        isi_interval, gamma = check_args(args)
    except ValueError as e:
        sys.exit(f"error: {e}")
    env_name = f"TraceConditioning-ISI{isi_interval[0]}-{isi_interval[1]}"
    run_name = f"{env_name}__{args.exp_name}__{args.arch}__{args.seed}__{int(time.time())}"
    if args.track:
        import wandb

        wandb.init(project=args.wandb_project_name, entity=args.wandb_entity, sync_tensorboard=True,
                   config=vars(args), name=run_name, save_code=True)
    writer = SummaryWriter(f"runs/{run_name}")
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
    size = args.hidden_size or default_hidden_size(args.arch, D, args.param_budget, args.lru_readout_dim)
    T = args.tbptt_len if is_tbptt else 1
    learner = make_learner(args.arch, D, size, args, torch.Generator().manual_seed(args.seed))
    params = learner.parameters()
    n_rec = sum(p.numel() for p in learner.recurrent_parameters())
    n_total = sum(p.numel() for p in params)
    flops = flops_per_step(args.arch, D, size, T, args.lru_readout_dim)
    print(f"{args.arch}: hidden_size={size} recurrent_params={n_rec} total_params={n_total} "
          f"flops_per_step={flops} obs_dim={D} isi_interval={isi_interval} gamma={gamma}")
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
    obs = env.reset()
    start_time = time.perf_counter()
    v, grad = learner.step(torch.from_numpy(obs))  # v(o_0) and its gradient
    bin_start, bin_sq_td = start_time, 0.0
    for t in range(N):
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
            now, steps = time.perf_counter(), (t % args.msre_bin) + 1
            writer.add_scalar("charts/SPS", steps / (now - bin_start), t + 1)
            writer.add_scalar("charts/sec_per_step", (now - bin_start) / steps, t + 1)
            writer.add_scalar("losses/td_error_sq", bin_sq_td / steps, t + 1)
            writer.add_scalar("charts/value_mean", float(values[t + 1 - steps: t + 1].mean()), t + 1)
            bin_start, bin_sq_td = now, 0.0
    sec_per_step = (time.perf_counter() - start_time) / N

    # MSRE over the whole run and binned (G_t needs the future, so it is computed after the run)
    returns = compute_returns(cumulants, gamma)
    final_msre = msre(values, returns)
    sq_err = (values - returns) ** 2
    for s in range(0, N, args.msre_bin):
        writer.add_scalar("charts/msre_binned", float(sq_err[s: s + args.msre_bin].mean()), min(s + args.msre_bin, N))
    last_bin = float(sq_err[(N - 1) // args.msre_bin * args.msre_bin:].mean())
    writer.add_scalar("charts/msre", final_msre, N)
    if not math.isfinite(final_msre):
        sys.exit(f"error: non-finite MSRE ({final_msre})")

    summary = dict(arch=args.arch, isi=args.isi, isi_lo=isi_interval[0], isi_hi=isi_interval[1], gamma=gamma,
                   seed=args.seed, steps=N, msre=final_msre, msre_last_bin=last_bin, params=n_rec,
                   total_params=n_total, hidden_size=size, tbptt_len=args.tbptt_len if is_tbptt else None,
                   flops_per_step=flops, sec_per_step=sec_per_step, learning_rate=args.learning_rate,
                   td_lambda=args.td_lambda, num_distractors=args.num_distractors, run_name=run_name)
    if args.summary_path:
        write_summary(args.summary_path, summary)
    print(f"FINAL_MSRE arch={args.arch} isi={args.isi} seed={args.seed} msre={final_msre:.6g} "
          f"msre_last_bin={last_bin:.6g} params={n_rec} flops_per_step={flops} sec_per_step={sec_per_step:.4g} "
          f"tbptt_len={summary['tbptt_len']} steps={N}")
    writer.close()
    # one update per step: the run's steps are its iterations
    write_done_marker(f"runs/{run_name}", args, N, N, time.perf_counter() - start_time)
    if args.track:
        wandb.finish()
    return summary


if __name__ == "__main__":
    main(tyro.cli(Args))
