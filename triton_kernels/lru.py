"""Online LRU (Linear Recurrent Unit) trained by exact RTRL: one fused step of state + traces.

The LRU of Orvieto et al. ("Resurrecting Recurrent Neural Networks for Long Sequences", ICML 2023), trained online by
RTRL as the "online LRU" baseline of Elelimy et al. (NeurIPS 2024, arXiv 2409.01449). The recurrence is diagonal, so
each unit's traces involve that unit only: O(nD) per sample and step, however far back the dependencies reach.

Model (per unit j, complex):  h_t = lambda * h_{t-1} + exp(gamma_log) * (B x_t),
    lambda = exp(-exp(nu_log) + i*exp(theta_log)),  output y_t = Re(C h_t) (C is trained by ordinary backprop).
Traces (complex, "holomorphic" derivatives of h_t):
    e_lambda <- lambda*e_lambda + h_{t-1}                  dh/dlambda            (B, 2, n)
    e_gamma  <- lambda*e_gamma  + B x_t                    dh/d exp(gamma_log)   (B, 2, n)
    E_B      <- lambda*E_B      + exp(gamma_log) * x_t     dh/dB  (n x D)        (B, 2, n, D)
    (the official online LRU scales E_B by gamma_log instead of exp(gamma_log): a bug, not copied here).

Complex numbers are real tensors with a "2" axis at dim 1: [:, 0] = real part, [:, 1] = imaginary part.

API (the shared shape and the reset convention: triton_kernels/__init__.py)
    LRUParams(nu_log (n,), theta_log (n,), gamma_log (n,), B_re (n, D), B_im (n, D))   recurrent params (no C)
    LRUTraces(lam (B,2,n), gamma (B,2,n), B (B,2,n,D))
    lru_init_params(n, D, r_min=0, r_max=1, max_phase=2*pi, generator=None, dtype=float32) -> LRUParams
    lru_init_readout(H, n, generator=None, dtype=float32) -> (C_re, C_im), each (H, n) ~ N(0, 1/n)
    lru_zero_carry(B, n, D, dtype=float32, device="cpu") -> (state (B,2,n), LRUTraces) all zeros
    lru_step(params, x (B,D), state, traces, reset (B,), *, backend="auto") -> (new_state, new_traces)
    lru_state_step(params, x, state, reset) -> new_state   (lru_step without the traces)
    lru_grads(params, x, state, reset, new_state, new_traces, delta (B,2,n)) -> (grad_x (B,D), LRUParams of grads)
        delta = [dL/dRe h_t, dL/dIm h_t] through this step's output path only. Parameter grads are summed
        over the batch; grad_x is the one-step input gradient (previous state treated as a constant). Only the
        parameters, the new traces and delta enter: x, state, reset and new_state are not needed by the LRU.
    lru_grads_from_carry(params, x, state, traces, reset, new_state, delta, *, index=None) -> (grad_x, LRUParams)
        the same gradients as lru_step + lru_grads, from the OLD traces without materialising the new E_B.
    lru_state_unroll(params, x (M,T,D), state (M,2,n), resets (M,T)) -> states (M,T,2,n)
        T lru_state_steps over a sequence (autograd-differentiable, for T-BPTT): lambda, exp(gamma_log) and B x_t
        are formed once per sequence, not per step; states[:, t] is the state after step t.

Gradients (real parameter p, L real): dL/dp = Re(conj(delta) * dh/dp), with
    dh/dnu_log = e_lambda * lambda * (-exp(nu_log)),   dh/dtheta_log = e_lambda * lambda * (i*exp(theta_log)),
    dh/dgamma_log = e_gamma * exp(gamma_log),          dh/dB_re = E_B,   dh/dB_im = i*E_B,
    dL/dx_k = sum_j Re(conj(delta_j) * exp(gamma_log_j) * B_jk).

Init defaults follow the RTU paper's online LRU (official code: r_min=0, r_max=1, max_phase=6.28; we use 2*pi):
|lambda| uniform on the ring [r_min, r_max], clamped away from 0 and 1 so that log(0) / sqrt(0) cannot occur.
"""
import math
from typing import NamedTuple

import torch
import triton
import triton.language as tl

from triton_kernels._common import keep_mask, tile_shape, trace_contract, use_triton


class LRUParams(NamedTuple):
    nu_log: torch.Tensor  # (n,)
    theta_log: torch.Tensor  # (n,)
    gamma_log: torch.Tensor  # (n,)
    B_re: torch.Tensor  # (n, D)
    B_im: torch.Tensor  # (n, D)


class LRUTraces(NamedTuple):
    lam: torch.Tensor  # (B, 2, n)     e_lambda = dh/dlambda
    gamma: torch.Tensor  # (B, 2, n)     e_gamma = dh/d exp(gamma_log)
    B: torch.Tensor  # (B, 2, n, D)  E_B = dh/dB


def lru_init_params(n, D, r_min=0.0, r_max=1.0, max_phase=2 * math.pi, generator=None, dtype=torch.float32):
    """Orvieto et al. 2023 init; defaults r_min=0, r_max=1 as in the RTU paper's online LRU."""
    eps = 1e-6
    u = torch.rand(n, generator=generator, dtype=torch.float64)
    mag2 = (u * (r_max**2 - r_min**2) + r_min**2).clamp(eps, 1 - eps)  # |lambda|^2, uniform on the ring
    nu_log = torch.log(-0.5 * torch.log(mag2))  # |lambda| = exp(-nu)
    theta = (max_phase * torch.rand(n, generator=generator, dtype=torch.float64)).clamp_min(eps)
    gamma_log = torch.log(torch.sqrt(1 - mag2))  # normalisation sqrt(1 - |lambda|^2)
    B = torch.randn(2, n, D, generator=generator, dtype=torch.float64) / math.sqrt(2 * D)
    return LRUParams(*(p.to(dtype) for p in (nu_log, torch.log(theta), gamma_log, B[0], B[1])))


def lru_init_readout(H, n, generator=None, dtype=torch.float32):
    """Readout C = C_re + i C_im (H x n), each part ~ N(0, 1/n). y = Re(C h) = C_re h_re - C_im h_im."""
    C = torch.randn(2, H, n, generator=generator, dtype=torch.float64) / math.sqrt(n)
    return C[0].to(dtype), C[1].to(dtype)


def lru_zero_carry(B, n, D, dtype=torch.float32, device="cpu"):
    z = dict(dtype=dtype, device=device)
    traces = LRUTraces(torch.zeros(B, 2, n, **z), torch.zeros(B, 2, n, **z), torch.zeros(B, 2, n, D, **z))
    return torch.zeros(B, 2, n, **z), traces


def _lambda(params):
    """lambda = exp(-exp(nu_log) + i*exp(theta_log)) as (re, im), each (n,)."""
    r = torch.exp(-torch.exp(params.nu_log))
    theta = torch.exp(params.theta_log)
    return r * torch.cos(theta), r * torch.sin(theta)


def _lam_times(lam_re, lam_im, z):
    """lambda * z for z of shape (B, 2, n, ...) (complex on dim 1); lam_* broadcast against z[:, 0]."""
    return torch.stack([lam_re * z[:, 0] - lam_im * z[:, 1], lam_re * z[:, 1] + lam_im * z[:, 0]], 1)


def _lru_step_torch(params, x, state, traces, reset):
    """PyTorch reference of one step (the model and traces of the module docstring), vectorised over the batch."""
    keep = keep_mask(reset, x)  # episode start: previous state and traces are zeroed before the step
    h, e_lam, e_gam, E_B = (t * keep.view(-1, *[1] * (t.dim() - 1)) for t in (state, *traces))
    lam_re, lam_im = _lambda(params)
    gamma = torch.exp(params.gamma_log)
    Bx = torch.stack([x @ params.B_re.T, x @ params.B_im.T], 1)  # B x_t, (B, 2, n)
    new_h = _lam_times(lam_re, lam_im, h) + gamma * Bx  # h_t = lambda*h_{t-1} + exp(gamma_log)*(B x_t)
    new_e_lam = _lam_times(lam_re, lam_im, e_lam) + h  # e_lambda <- lambda*e_lambda + h_{t-1}
    new_e_gam = _lam_times(lam_re, lam_im, e_gam) + Bx  # e_gamma <- lambda*e_gamma + B x_t
    new_E_B = _lam_times(lam_re[:, None], lam_im[:, None], E_B)  # E_B <- lambda*E_B ...
    new_E_B[:, 0] += gamma[:, None] * x[:, None, :]  # ... + exp(gamma_log)*x_t (x is real: real part only)
    return new_h, LRUTraces(new_e_lam, new_e_gam, new_E_B)


@triton.jit
def _lru_step_kernel(nu_log_ptr, theta_log_ptr, gamma_log_ptr, B_re_ptr, B_im_ptr, x_ptr, h_ptr, keep_ptr,
                     e_lam_ptr, e_gam_ptr, E_B_ptr, h_out, e_lam_out, e_gam_out, E_B_out,
                     n, D, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    """One program = one sample b x BLOCK_N units; the whole D axis (padded to BLOCK_D) in one tile."""
    b = tl.program_id(0).to(tl.int64)
    rows = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    cols = tl.arange(0, BLOCK_D)
    rmask, cmask = rows < n, cols < D
    tile = rows[:, None] * D + cols[None, :]
    tmask = rmask[:, None] & cmask[None, :]
    keep = tl.load(keep_ptr + b)  # keep_mask: 0 at an episode start, where the previous state and traces are zeroed
    # lambda = exp(-exp(nu_log) + i*exp(theta_log)), gamma = exp(gamma_log)
    r = tl.exp(-tl.exp(tl.load(nu_log_ptr + rows, mask=rmask, other=0.0)))
    theta = tl.exp(tl.load(theta_log_ptr + rows, mask=rmask, other=0.0))
    lam_re, lam_im = r * tl.cos(theta), r * tl.sin(theta)
    gamma = tl.exp(tl.load(gamma_log_ptr + rows, mask=rmask, other=0.0))
    # B x_t by row reduction over the D axis
    x = tl.load(x_ptr + b * D + cols, mask=cmask, other=0.0)
    bx_re = tl.sum(tl.load(B_re_ptr + tile, mask=tmask, other=0.0) * x[None, :], axis=1)
    bx_im = tl.sum(tl.load(B_im_ptr + tile, mask=tmask, other=0.0) * x[None, :], axis=1)
    # h_t = lambda*h_{t-1} + gamma*(B x_t)
    vec = b * 2 * n + rows  # offset of the real part of a (B, 2, n) tensor; imag part at + n
    h_re = tl.load(h_ptr + vec, mask=rmask, other=0.0) * keep
    h_im = tl.load(h_ptr + vec + n, mask=rmask, other=0.0) * keep
    tl.store(h_out + vec, lam_re * h_re - lam_im * h_im + gamma * bx_re, mask=rmask)
    tl.store(h_out + vec + n, lam_re * h_im + lam_im * h_re + gamma * bx_im, mask=rmask)
    # e_lambda <- lambda*e_lambda + h_{t-1}
    e_re = tl.load(e_lam_ptr + vec, mask=rmask, other=0.0) * keep
    e_im = tl.load(e_lam_ptr + vec + n, mask=rmask, other=0.0) * keep
    tl.store(e_lam_out + vec, lam_re * e_re - lam_im * e_im + h_re, mask=rmask)
    tl.store(e_lam_out + vec + n, lam_re * e_im + lam_im * e_re + h_im, mask=rmask)
    # e_gamma <- lambda*e_gamma + B x_t
    e_re = tl.load(e_gam_ptr + vec, mask=rmask, other=0.0) * keep
    e_im = tl.load(e_gam_ptr + vec + n, mask=rmask, other=0.0) * keep
    tl.store(e_gam_out + vec, lam_re * e_re - lam_im * e_im + bx_re, mask=rmask)
    tl.store(e_gam_out + vec + n, lam_re * e_im + lam_im * e_re + bx_im, mask=rmask)
    # E_B <- lambda*E_B + gamma*x_t (x real: real part only)
    mat = b * 2 * n * D + tile  # real part of a (B, 2, n, D) tensor; imag part at + n*D
    E_re = tl.load(E_B_ptr + mat, mask=tmask, other=0.0) * keep
    E_im = tl.load(E_B_ptr + mat + n * D, mask=tmask, other=0.0) * keep
    lr, li = lam_re[:, None], lam_im[:, None]
    tl.store(E_B_out + mat, lr * E_re - li * E_im + gamma[:, None] * x[None, :], mask=tmask)
    tl.store(E_B_out + mat + n * D, lr * E_im + li * E_re, mask=tmask)


def _lru_step_triton(params, x, state, traces, reset):
    Bsz, D = x.shape
    n = params.nu_log.shape[0]
    params = [p.contiguous() for p in params]
    x, state = x.contiguous(), state.contiguous()
    traces = [t.contiguous() for t in traces]
    keep = keep_mask(reset, x).contiguous()
    h_out, e_lam_out, e_gam_out, E_B_out = (torch.empty_like(t) for t in (state, *traces))
    BLOCK_N, BLOCK_D = tile_shape(n, D)
    grid = (Bsz, triton.cdiv(n, BLOCK_N))
    _lru_step_kernel[grid](*params, x, state, keep, *traces, h_out, e_lam_out, e_gam_out, E_B_out,
                           n, D, BLOCK_N=BLOCK_N, BLOCK_D=BLOCK_D)
    return h_out, LRUTraces(e_lam_out, e_gam_out, E_B_out)


def lru_step(params, x, state, traces, reset, *, backend="auto"):
    step = _lru_step_triton if use_triton(x, backend) else _lru_step_torch
    return step(params, x, state, traces, reset)


def lru_grads(params, x, state, reset, new_state, new_traces, delta):
    """One step's RTRL gradients from the NEW traces (module docstring). x, state, reset and new_state are unused by
    the math (kept for the uniform API). Returns (grad_x (B,D), LRUParams of grads summed over the batch)."""
    d_re, d_im = delta[:, 0], delta[:, 1]
    lam_re, lam_im = _lambda(params)
    nu, theta, gamma = params.nu_log.exp(), params.theta_log.exp(), params.gamma_log.exp()
    le = _lam_times(lam_re, lam_im, new_traces.lam)  # lambda * e_lambda
    re_dle = d_re * le[:, 0] + d_im * le[:, 1]  # Re(conj(delta) * lambda*e_lambda)
    im_dle = d_re * le[:, 1] - d_im * le[:, 0]  # Im(conj(delta) * lambda*e_lambda)
    g_nu_log = -nu * re_dle.sum(0)  # Re(conj(delta) * lambda*e_lambda * (-nu))
    g_theta_log = -theta * im_dle.sum(0)  # Re(conj(delta) * lambda*e_lambda * (i*theta)) = -theta*Im(...)
    eg = new_traces.gamma
    g_gamma_log = gamma * (d_re * eg[:, 0] + d_im * eg[:, 1]).sum(0)  # Re(conj(delta) * e_gamma) * gamma
    g_B_re = trace_contract(torch.stack((d_re, d_im), 1), new_traces.B)  # Re(conj(d) E_B)
    g_B_im = trace_contract(torch.stack((d_im, -d_re), 1), new_traces.B)  # Re(conj(d) i E_B)
    grad_x = (d_re * gamma) @ params.B_re + (d_im * gamma) @ params.B_im  # sum_j Re(conj(d_j) gamma_j B_jk)
    return grad_x, LRUParams(g_nu_log, g_theta_log, g_gamma_log, g_B_re, g_B_im)


def lru_state_step(params, x, state, reset):
    """The state part of lru_step only (no traces): what the PPO update's forward pass needs."""
    h = state * keep_mask(reset, x)[:, None, None]
    lam_re, lam_im = _lambda(params)
    Bx = torch.stack([x @ params.B_re.T, x @ params.B_im.T], 1)
    return _lam_times(lam_re, lam_im, h) + torch.exp(params.gamma_log) * Bx  # h_t = lambda*h_{t-1} + exp(gamma_log)*Bx


def lru_state_unroll(params, x, state, resets):
    """lru_state_step over a sequence x (M, T, D) from state (M, 2, n); resets (M, T) as lru_state_step's reset at
    each step. Returns the states after each step, (M, T, 2, n). Only the recurrence itself stays in the time loop:
    lambda, exp(gamma_log) and the input term B x_t for all T steps (one matmul) are computed once."""
    lam_re, lam_im = _lambda(params)
    gamma_Bx = torch.exp(params.gamma_log) * torch.stack([x @ params.B_re.T, x @ params.B_im.T], 2)  # (M, T, 2, n)
    keep = keep_mask(resets, x)
    states = []
    for t in range(x.shape[1]):
        state = _lam_times(lam_re, lam_im, state * keep[:, t, None, None]) + gamma_Bx[:, t]
        states.append(state)
    return torch.stack(states, 1)


def lru_grads_from_carry(params, x, state, traces, reset, new_state, delta, *, index=None):
    """lru_grads of the step from the carry (state, traces), without materialising the new E_B.

    E_B_new = lambda*E_B_old + exp(gamma_log)*x, so conj(delta)*E_B_new = conj(delta*conj(lambda))*E_B_old
    + exp(gamma_log)*conj(delta)*x: the (B,2,n,D) trace is read once and never written. The small (B,2,n) traces are
    updated as in lru_step. Same results as lru_step + lru_grads.
    index (B,) optional: state and traces are whole buffers and the carry is their rows `index` (under torch.compile
    the gather then fuses with the contraction, and the gathered traces are never materialised).
    """
    if index is not None:
        state, traces = state.index_select(0, index), LRUTraces(*(t.index_select(0, index) for t in traces))
    keep = keep_mask(reset, x)
    lam_re, lam_im = _lambda(params)
    gamma = torch.exp(params.gamma_log)
    h = state * keep[:, None, None]
    Bx = torch.stack([x @ params.B_re.T, x @ params.B_im.T], 1)
    small = LRUTraces(_lam_times(lam_re, lam_im, traces.lam * keep[:, None, None]) + h,  # e_lambda (new)
                      _lam_times(lam_re, lam_im, traces.gamma * keep[:, None, None]) + Bx,  # e_gamma (new)
                      torch.zeros_like(traces.B[:1]))  # E_B placeholder: its gradient is formed below
    grad_x, grads = lru_grads(params, x, state, reset, new_state, small, delta)
    d_re, d_im = delta[:, 0], delta[:, 1]
    # d' = delta * conj(lambda), zero where the old traces were reset
    dp_re, dp_im = (d_re * lam_re + d_im * lam_im) * keep[:, None], (d_im * lam_re - d_re * lam_im) * keep[:, None]
    g_B_re = trace_contract(torch.stack((dp_re, dp_im), 1), traces.B) + gamma[:, None] * (d_re.T @ x)
    g_B_im = trace_contract(torch.stack((dp_im, -dp_re), 1), traces.B) + gamma[:, None] * (d_im.T @ x)
    return grad_x, grads._replace(B_re=g_B_re, B_im=g_B_im)
