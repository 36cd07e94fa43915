"""RTU (Recurrent Trace Unit) step with exact RTRL traces: PyTorch reference + fused Triton kernel.

Model (Elelimy et al., "Real-Time Recurrent Learning using Trace Units in Reinforcement Learning", NeurIPS 2024,
arXiv 2409.01449). Each of the n units has a complex recurrent weight lambda = r e^(i theta) = g + i phi and a
complex state, kept as two real parts "1" and "2": the recurrence is a 2x2 rotation-scaling per unit.
    r = exp(-exp(nu_log)),  theta = exp(theta_log),  g = r cos(theta),  phi = r sin(theta),  gamma = sqrt(1 - r^2)
    linear RTU:      c1_t = g c1_{t-1} - phi c2_{t-1} + gamma W1 x_t,   c2_t = g c2_{t-1} + phi c1_{t-1} + gamma W2 x_t,
                     output f([c1_t, c2_t]) (f outside the recurrence, applied by the caller)
    non-linear RTU:  h1_t = f(g h1_{t-1} - phi h2_{t-1} + gamma W1 x_t),
                     h2_t = f(g h2_{t-1} + phi h1_{t-1} + gamma W2 x_t),  output [h1_t, h2_t]
f is relu or tanh; the parameters are nu_log, theta_log (n,) and W1, W2 (n, D), no bias: 2n + 2nD in all.
Exact RTRL: a unit's state depends only on its own parameters, so the traces e_p = d state_t / d p cost O(nD) per
sample and step, however far back the dependencies reach. With prev = state_{t-1} and R e = (g e1 - phi e2,
g e2 + phi e1), every trace pair is updated from the OLD traces as
    e_p <- f' * (R e_p + u_p),  f' = f'(pre-activation) per part (1 for the linear RTU), where u_p is
    nu_log:     (dg prev1 - dphi prev2 + dgamma W1 x_t,  dg prev2 + dphi prev1 + dgamma W2 x_t)
    theta_log:  (dg_th prev1 - dphi_th prev2,  dg_th prev2 + dphi_th prev1)
    W1: (gamma x_t, 0)    W2: (0, gamma x_t)    (one D-vector per unit)
    dg = -nu g, dphi = -nu phi, dgamma = nu r^2 / gamma (nu = exp(nu_log)); dg_th = -theta phi, dphi_th = theta g.
The gradient of a loss of step t is grad(p) = sum_b delta1 e1_p + delta2 e2_p over the NEW traces, with
delta = dL/d(state_t) through step t's output only; summed over steps it is the exact gradient of the summed loss
(tests/test_rtu.py checks it against BPTT in float64). An episode start (reset) zeroes the previous state and traces.
The official RTU code drops the factor theta from the theta_log derivatives; here it is kept (the exact gradient).

API (the shared shape and the reset convention: triton_kernels/__init__.py)
---
RTUParams(nu_log (n,), theta_log (n,), W1 (n, D), W2 (n, D))       recurrent parameters, no bias.
RTUTraces(nu (B,2,n), theta (B,2,n), W1 (B,2,n,D), W2 (B,2,n,D))   d(state)/d(param) per sample;
    index 0 of dim 1 = "1" (real part), index 1 = "2" (imaginary part).
    Compact traces (linear RTU only): W2 is an empty (B,0,n,D) placeholder. The linear RTU's state c = c1 + i c2
    obeys c_t = lambda c_{t-1} + gamma (W1 x_t + i W2 x_t), so dc/dW2 = i dc/dW1: E1_W2 = -E2_W1, E2_W2 = E1_W1,
    and only the W1 traces need storing (half the memory). Every function below accepts both forms.
RTUCoefficients(r, g, phi, gamma, dg, dphi, dgamma, dg_th, dphi_th), each (n,): rtu_coefficients(params);
    dg, dphi, dgamma are derivatives w.r.t. nu_log, dg_th, dphi_th w.r.t. theta_log (with the factor theta).

rtu_init_params(n, D, r_min=0.0, r_max=1.0, generator=None, dtype=float32) -> RTUParams
    r = sqrt(u), u ~ U(r_min^2, r_max^2); theta ~ U(0, 2 pi); W1, W2 ~ N(0, 1/D) (LeCun normal).
rtu_zero_carry(B, n, D, dtype=float32, device="cpu", compact=False) -> (state (B,2,n), RTUTraces), all zeros;
    compact=True: compact traces (linear RTU only, see RTUTraces).
rtu_step(params, x, state, traces, reset, activation="relu", *, backend="auto") -> (new_state, new_traces)
    state (B,2,n) = previous [h1, h2] (activation "relu"/"tanh": non-linear RTU) or [c1, c2]
    (activation "linear": linear RTU, the caller applies the output non-linearity itself).
    Returns the new state and the new traces (including step t), compact if `traces` are.
rtu_state_step(params, x, state, reset, activation="relu") -> new_state   (rtu_step without the traces)
rtu_grads(params, x, state, reset, new_state, new_traces, delta, activation="relu") -> (grad_x (B,D), RTUParams)
    delta (B,2,n) = dL/d(new_state) through this step's output only. Parameter gradients are summed over the
    batch: grad(p) = sum_b delta1*e1_p + delta2*e2_p. grad_x is the one-step gradient (previous state constant):
    gamma * [(delta1*f'1) @ W1 + (delta2*f'2) @ W2], with f' read off new_state (state and reset are not needed).
rtu_grads_from_carry(params, x, state, traces, reset, new_state, delta, activation="relu", *, index=None)
        -> (grad_x, RTUParams)
    the same gradients as rtu_step + rtu_grads, from the OLD traces (see the function). With `index`, the W traces
    are never gathered: trace_contract.

Numerics (deviation from the official code): gamma = sqrt(max(1 - r^2, 1e-30)) with 1 - r^2 = -expm1(-2 nu)
computed as tanh(nu) (1 + r^2), no "+1e-8". In float32 r = exp(-nu) rounds to 1 for nu < 6e-8, where the naive
1 - r^2 would give gamma = 0 and an infinite dgamma; this form keeps gamma exact, so dgamma = nu r^2 / gamma is its
true derivative. (Not torch.expm1: torch.compile's vectorised CPU code computes expm1(x) as exp(x) - 1.)
The clamp only acts if nu underflows to 0.
"""
from typing import NamedTuple

import torch
import triton
import triton.language as tl
from torch import Tensor

from triton_kernels._common import keep_mask, tile_shape, trace_contract, use_triton

ACTIVATIONS = {"linear": 0, "relu": 1, "tanh": 2}
_MIN_1MR2 = 1e-30  # floor on 1 - r^2 (only reached if nu = exp(nu_log) underflows)


class RTUParams(NamedTuple):
    nu_log: Tensor  # (n,)
    theta_log: Tensor  # (n,)
    W1: Tensor  # (n, D)
    W2: Tensor  # (n, D)


class RTUTraces(NamedTuple):
    nu: Tensor  # (B, 2, n)
    theta: Tensor  # (B, 2, n)
    W1: Tensor  # (B, 2, n, D)
    W2: Tensor  # (B, 2, n, D)


def rtu_init_params(n, D, r_min=0.0, r_max=1.0, generator=None, dtype=torch.float32) -> RTUParams:
    f64 = dict(generator=generator, dtype=torch.float64)
    u = r_min**2 + (r_max**2 - r_min**2) * torch.rand(n, **f64)  # r uniform over the area of the ring: r = sqrt(u)
    r = u.clamp(1e-12, 1 - 1e-12).sqrt()  # keep log(0) and log(-log 1) finite
    nu_log = torch.log(-torch.log(r))  # r = exp(-exp(nu_log))
    theta_log = torch.log((2 * torch.pi * torch.rand(n, **f64)).clamp_min(1e-12))  # theta ~ U(0, 2 pi)
    W1, W2 = (torch.randn(n, D, **f64) / D**0.5 for _ in range(2))  # LeCun normal: var 1/D
    return RTUParams(*(p.to(dtype) for p in (nu_log, theta_log, W1, W2)))


def rtu_zero_carry(B, n, D, dtype=torch.float32, device="cpu", compact=False):
    z = dict(dtype=dtype, device=device)
    traces = RTUTraces(torch.zeros(B, 2, n, **z), torch.zeros(B, 2, n, **z),
                       torch.zeros(B, 2, n, D, **z), torch.zeros(B, 0 if compact else 2, n, D, **z))
    return torch.zeros(B, 2, n, **z), traces


def _compact(traces: RTUTraces, activation):
    """True for compact traces (W2 an empty (B,0,n,D) placeholder, E_W2 = i E_W1), which only the linear RTU has."""
    if traces.W2.shape[1] != 0:
        return False
    if activation != "linear":
        raise ValueError(f"compact traces (no W2 traces) exist for the linear RTU only, got activation {activation!r}")
    return True


class RTUCoefficients(NamedTuple):
    r: Tensor  # |lambda| = exp(-exp(nu_log))
    g: Tensor  # r cos(theta)
    phi: Tensor  # r sin(theta)
    gamma: Tensor  # sqrt(1 - r^2)
    dg: Tensor  # d/dnu_log of g, phi, gamma
    dphi: Tensor
    dgamma: Tensor
    dg_th: Tensor  # d/dtheta_log of g, phi
    dphi_th: Tensor


def rtu_coefficients(params: RTUParams) -> RTUCoefficients:
    nu, theta = params.nu_log.exp(), params.theta_log.exp()
    r = torch.exp(-nu)  # r = exp(-exp(nu_log))
    g, phi = r * torch.cos(theta), r * torch.sin(theta)  # g = r cos(theta), phi = r sin(theta)
    gamma = torch.sqrt(torch.clamp(torch.tanh(nu) * (1 + r * r), min=_MIN_1MR2))  # gamma = sqrt(1 - r^2)
    dg, dphi, dgamma = -nu * g, -nu * phi, nu * r**2 / gamma  # d/dnu_log
    dg_th, dphi_th = -phi * theta, g * theta  # d/dtheta_log (the official code drops the factor theta)
    return RTUCoefficients(r, g, phi, gamma, dg, dphi, dgamma, dg_th, dphi_th)


def _rot(a, c, s):
    """(a1, a2) -> (c*a1 - s*a2, c*a2 + s*a1) along dim 1: the rotation-scaling shared by every RTU update."""
    a1, a2 = a[:, 0], a[:, 1]
    return torch.stack((c * a1 - s * a2, c * a2 + s * a1), dim=1)


def _act_and_grad(pre, activation):
    """f(pre) and f'(pre)."""
    if activation == "relu":
        return pre.clamp_min(0), (pre > 0).to(pre.dtype)
    h = torch.tanh(pre)
    return h, 1 - h * h


def _rtu_step_torch(params: RTUParams, x, state, traces: RTUTraces, reset, activation):
    _, g, phi, gamma, dg, dphi, dgamma, dg_th, dphi_th = rtu_coefficients(params)
    keep = keep_mask(reset, x)[:, None, None]  # an episode starts: zero the previous state and traces
    prev = state * keep  # [h1, h2]_{t-1} (or [c1, c2]_{t-1})
    wx = torch.stack((x @ params.W1.T, x @ params.W2.T), dim=1)  # [W1 x_t, W2 x_t]  (B,2,n)
    # pre1 = g*prev1 - phi*prev2 + gamma*W1x;  pre2 = g*prev2 + phi*prev1 + gamma*W2x
    pre = _rot(prev, g, phi) + gamma * wx
    # non-linear RTU: h = f(pre), and every "1" trace is multiplied by f'(pre1), every "2" trace by f'(pre2);
    # linear RTU: the state is c = pre and f' = 1 inside the recurrence.
    h, fp = (pre, torch.ones_like(pre)) if activation == "linear" else _act_and_grad(pre, activation)
    # Every trace update (module docstring) reads  e_new = f' * (R e_old + u),  with R the rotation-scaling
    # (R e)_1 = g*e1 - phi*e2, (R e)_2 = g*e2 + phi*e1 (right-hand sides use the OLD traces) and u the input term.
    # With f' and the reset folded into per-unit coefficients:  e_new = a*e_old + b*swap(e_old) + f'*u,
    # a = f'*g*keep, b = f'*(-phi, +phi)*keep, swap(e1, e2) = (e2, e1); the big traces are touched 3 times.
    a = fp * g * keep
    b = fp * torch.stack((-phi, phi)) * keep

    def rotate(e):  # f' * R e_old, zeroed at a reset
        a_, b_ = (a, b) if e.dim() == 3 else (a[..., None], b[..., None])
        return torch.addcmul(a_ * e, b_, e.flip(1))

    # e1_nu <- dg*prev1 + g*e1_nu - dphi*prev2 - phi*e2_nu + dgamma*W1x
    # e2_nu <- dg*prev2 + g*e2_nu + dphi*prev1 + phi*e1_nu + dgamma*W2x
    e_nu = rotate(traces.nu) + fp * (_rot(prev, dg, dphi) + dgamma * wx)
    # e_th: same form with the theta derivatives and no gamma term
    e_th = rotate(traces.theta) + fp * _rot(prev, dg_th, dphi_th)
    # W traces: the input term f' * gamma * x_t enters part "1" of the W1 traces and part "2" of the W2 traces.
    # Written as one broadcast expression (no in-place slice update), so that torch.compile makes one pass over them.
    fp_g = fp * gamma  # (B,2,n)
    part = torch.arange(2, device=x.device)[:, None]  # (2,1): 0 = part "1", 1 = part "2"
    gx = lambda p: ((part == p) * fp_g)[..., None] * x[:, None, None, :]  # (B,2,n,D), zero on the other part
    # E1_W1 <- g*E1_W1 - phi*E2_W1 + gamma*x;  E2_W1 <- g*E2_W1 + phi*E1_W1
    E_W1 = rotate(traces.W1) + gx(0)
    if _compact(traces, activation):  # linear RTU: E_W2 = i E_W1 is implied, not stored
        return h, RTUTraces(e_nu, e_th, E_W1, traces.W2)
    # E1_W2 <- g*E1_W2 - phi*E2_W2;  E2_W2 <- g*E2_W2 + phi*E1_W2 + gamma*x
    E_W2 = rotate(traces.W2) + gx(1)
    return h, RTUTraces(e_nu, e_th, E_W1, E_W2)


@triton.jit
def _expm1_neg(x):
    """exp(x) - 1 for x <= 0, accurate near 0 (Kahan's trick; libdevice.expm1 is unavailable in the interpreter)."""
    u = tl.exp(x)
    exact = (u == 1.0) | (u == 0.0)  # there the result is x, resp. -1
    u_safe = tl.where(exact, 0.5, u)
    return tl.where(u == 1.0, x, tl.where(u == 0.0, -1.0, (u_safe - 1.0) * x / tl.log(u_safe)))


@triton.jit
def _rtu_step_kernel(nu_log_ptr, theta_log_ptr, w1_ptr, w2_ptr, x_ptr, keep_ptr,
                     state_ptr, e_nu_ptr, e_th_ptr, e_w1_ptr, e_w2_ptr,  # previous carry
                     out_state_ptr, out_nu_ptr, out_th_ptr, out_w1_ptr, out_w2_ptr,  # new carry
                     n, D, MIN_1MR2: tl.constexpr, ACTIVATION: tl.constexpr, COMPACT: tl.constexpr,
                     BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):
    """COMPACT (linear RTU): the W2 traces are neither read nor written (E_W2 = i E_W1); e_w2_ptr, out_w2_ptr unused."""
    b = tl.program_id(0).to(tl.int64)  # one sample per program along axis 0, a block of units along axis 1
    offs_n = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    mask_n = offs_n < n
    mask_nd = mask_n[:, None] & (offs_d[None, :] < D)
    offs_nd = offs_n[:, None] * D + offs_d[None, :]

    # coefficients (same formulas as rtu_coefficients)
    nu = tl.exp(tl.load(nu_log_ptr + offs_n, mask=mask_n, other=0.0))
    theta = tl.exp(tl.load(theta_log_ptr + offs_n, mask=mask_n, other=0.0))
    r = tl.exp(-nu)
    g, phi = r * tl.cos(theta), r * tl.sin(theta)
    gamma = tl.sqrt(tl.maximum(-_expm1_neg(-2.0 * nu), MIN_1MR2))
    dg, dphi, dgamma = -nu * g, -nu * phi, nu * r * r / gamma
    dg_th, dphi_th = -phi * theta, g * theta

    # W1 x_t, W2 x_t as row reductions of the [BLOCK_N, BLOCK_D] weight tiles
    x = tl.load(x_ptr + b * D + offs_d, mask=offs_d < D, other=0.0)
    wx1 = tl.sum(tl.load(w1_ptr + offs_nd, mask=mask_nd, other=0.0) * x[None, :], axis=1)
    wx2 = tl.sum(tl.load(w2_ptr + offs_nd, mask=mask_nd, other=0.0) * x[None, :], axis=1)

    # previous carry, zeroed where an episode starts
    keep = tl.load(keep_ptr + b)  # keep_mask: 0 at a reset
    vec1 = b * 2 * n + offs_n  # (B,2,n) offsets of part "1"; part "2" is + n
    mat1 = b * 2 * n * D + offs_nd  # (B,2,n,D) offsets of part "1"; part "2" is + n*D
    p1 = tl.load(state_ptr + vec1, mask=mask_n, other=0.0) * keep
    p2 = tl.load(state_ptr + vec1 + n, mask=mask_n, other=0.0) * keep
    a1 = tl.load(e_nu_ptr + vec1, mask=mask_n, other=0.0) * keep
    a2 = tl.load(e_nu_ptr + vec1 + n, mask=mask_n, other=0.0) * keep
    t1 = tl.load(e_th_ptr + vec1, mask=mask_n, other=0.0) * keep
    t2 = tl.load(e_th_ptr + vec1 + n, mask=mask_n, other=0.0) * keep
    U1 = tl.load(e_w1_ptr + mat1, mask=mask_nd, other=0.0) * keep
    U2 = tl.load(e_w1_ptr + mat1 + n * D, mask=mask_nd, other=0.0) * keep

    # state and trace updates (right-hand sides use the old traces)
    pre1 = g * p1 - phi * p2 + gamma * wx1
    pre2 = g * p2 + phi * p1 + gamma * wx2
    n1 = dg * p1 + g * a1 - dphi * p2 - phi * a2 + dgamma * wx1
    n2 = dg * p2 + g * a2 + dphi * p1 + phi * a1 + dgamma * wx2
    th1 = dg_th * p1 + g * t1 - dphi_th * p2 - phi * t2
    th2 = dg_th * p2 + g * t2 + dphi_th * p1 + phi * t1
    gm, pm, gx = g[:, None], phi[:, None], gamma[:, None] * x[None, :]
    W11 = gm * U1 - pm * U2 + gx
    W12 = gm * U2 + pm * U1

    if ACTIVATION == 0:  # linear RTU: the state is c
        h1, h2 = pre1, pre2
    else:  # non-linear RTU: h = f(pre), traces times f'(pre)
        if ACTIVATION == 1:  # relu
            h1, h2 = tl.maximum(pre1, 0.0), tl.maximum(pre2, 0.0)
            f1, f2 = tl.where(pre1 > 0, 1.0, 0.0), tl.where(pre2 > 0, 1.0, 0.0)
        else:  # tanh(p) = sign(p) * -expm1(-2|p|) / (2 + expm1(-2|p|))
            m1, m2 = _expm1_neg(-2.0 * tl.abs(pre1)), _expm1_neg(-2.0 * tl.abs(pre2))
            h1 = tl.where(pre1 < 0, 1.0, -1.0) * m1 / (2.0 + m1)
            h2 = tl.where(pre2 < 0, 1.0, -1.0) * m2 / (2.0 + m2)
            f1, f2 = 1.0 - h1 * h1, 1.0 - h2 * h2
        n1, n2, th1, th2 = n1 * f1, n2 * f2, th1 * f1, th2 * f2
        W11, W12 = W11 * f1[:, None], W12 * f2[:, None]

    tl.store(out_state_ptr + vec1, h1, mask=mask_n)
    tl.store(out_state_ptr + vec1 + n, h2, mask=mask_n)
    tl.store(out_nu_ptr + vec1, n1, mask=mask_n)
    tl.store(out_nu_ptr + vec1 + n, n2, mask=mask_n)
    tl.store(out_th_ptr + vec1, th1, mask=mask_n)
    tl.store(out_th_ptr + vec1 + n, th2, mask=mask_n)
    tl.store(out_w1_ptr + mat1, W11, mask=mask_nd)
    tl.store(out_w1_ptr + mat1 + n * D, W12, mask=mask_nd)

    if not COMPACT:  # the W2 traces, same form with the input term on part "2"
        V1 = tl.load(e_w2_ptr + mat1, mask=mask_nd, other=0.0) * keep
        V2 = tl.load(e_w2_ptr + mat1 + n * D, mask=mask_nd, other=0.0) * keep
        W21 = gm * V1 - pm * V2
        W22 = gm * V2 + pm * V1 + gx
        if ACTIVATION != 0:
            W21, W22 = W21 * f1[:, None], W22 * f2[:, None]
        tl.store(out_w2_ptr + mat1, W21, mask=mask_nd)
        tl.store(out_w2_ptr + mat1 + n * D, W22, mask=mask_nd)


def _rtu_step_triton(params: RTUParams, x, state, traces: RTUTraces, reset, activation):
    (B, D), n = x.shape, params.nu_log.shape[0]
    compact = _compact(traces, activation)
    ins = [t.contiguous() for t in (*params, x, keep_mask(reset, x), state, *traces)]
    outs = [torch.empty(t.shape, dtype=t.dtype, device=t.device) for t in (state, *traces)]
    # compact: the kernel never touches the W2 pointers; pass the W1 ones (an empty tensor may have a null pointer)
    w2_in, w2_out = (ins[-2], outs[-2]) if compact else (ins[-1], outs[-1])
    BLOCK_N, BLOCK_D = tile_shape(n, D)
    grid = (B, triton.cdiv(n, BLOCK_N))
    _rtu_step_kernel[grid](*ins[:-1], w2_in, *outs[:-1], w2_out, n, D, MIN_1MR2=_MIN_1MR2,
                           ACTIVATION=ACTIVATIONS[activation], COMPACT=compact, BLOCK_N=BLOCK_N, BLOCK_D=BLOCK_D)
    return outs[0], RTUTraces(*outs[1:])


def rtu_step(params: RTUParams, x, state, traces: RTUTraces, reset, activation="relu", *, backend="auto"):
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {tuple(ACTIVATIONS)}, got {activation!r}")
    step = _rtu_step_triton if use_triton(x, backend) else _rtu_step_torch
    return step(params, x, state, traces, reset, activation)


def rtu_grads(params: RTUParams, x, state, reset, new_state, new_traces: RTUTraces, delta, activation="relu"):
    """Gradients of one step from its NEW traces (module docstring); state and reset are not needed by the RTU."""
    # grad(p) = sum_b delta1*e1_p + delta2*e2_p  (new traces)
    grad_nu = (delta * new_traces.nu).sum((0, 1))
    grad_theta = (delta * new_traces.theta).sum((0, 1))
    grad_W1 = trace_contract(delta, new_traces.W1)
    # compact traces: E_W2 = i E_W1 = _rot(E_W1, 0, 1), so delta . E_W2 = _rot_T(delta, 0, 1) . E_W1
    d_W2, E_W2 = (_rot_T(delta, 0, 1), new_traces.W1) if _compact(new_traces, activation) else (delta, new_traces.W2)
    grad_W2 = trace_contract(d_W2, E_W2)
    # one-step input gradient: gamma * [(delta1*f'1) @ W1 + (delta2*f'2) @ W2], f' from the new state
    d = delta * _fprime(new_state, activation) * rtu_coefficients(params).gamma
    grad_x = d[:, 0] @ params.W1 + d[:, 1] @ params.W2
    return grad_x, RTUParams(grad_nu, grad_theta, grad_W1, grad_W2)


def _fprime(new_state, activation):
    """f'(pre) read off the post-activation state (relu: h > 0, tanh: 1 - h^2; linear RTU: 1)."""
    if activation == "relu":
        return (new_state > 0).to(new_state.dtype)
    if activation == "tanh":
        return 1 - new_state * new_state
    return torch.ones_like(new_state)


def _rot_T(a, c, s):
    """Transpose of _rot: (a1, a2) -> (c*a1 + s*a2, c*a2 - s*a1), so that sum(a * _rot(e)) = sum(_rot_T(a) * e)."""
    a1, a2 = a[:, 0], a[:, 1]
    return torch.stack((c * a1 + s * a2, c * a2 - s * a1), dim=1)


def rtu_state_step(params: RTUParams, x, state, reset, activation="relu"):
    """The state part of rtu_step only (no traces): what the PPO update's forward pass needs."""
    k = rtu_coefficients(params)
    prev = state * keep_mask(reset, x)[:, None, None]
    pre = _rot(prev, k.g, k.phi) + k.gamma * torch.stack((x @ params.W1.T, x @ params.W2.T), dim=1)
    return pre if activation == "linear" else _act_and_grad(pre, activation)[0]


def rtu_grads_from_carry(params: RTUParams, x, state, traces: RTUTraces, reset, new_state, delta, activation="relu",
                         *, index=None):
    """rtu_grads of the step from the carry (state, traces), without materialising the new traces.

    Every new trace is linear in the old one: e_new = f' * (R e_old + u), R the rotation-scaling by (g, phi) and u the
    step's input term. With a = delta * f':  sum_b delta . e_new = sum_b (R^T a) . e_old + sum_b a . u,
    so the (B,2,n,D) traces are read once and never written. Same results as rtu_step + rtu_grads.
    index (B,) optional: state and traces are whole buffers and the carry is their rows `index`. The small ones are
    gathered; the W traces are contracted in place by trace_contract(..., index) (under torch.compile the gather then
    fuses with the contraction, and the gathered W traces are never materialised).
    """
    gather = (lambda t: t) if index is None else (lambda t: t.index_select(0, index))
    state, e_nu, e_theta = gather(state), gather(traces.nu), gather(traces.theta)
    _, g, phi, gamma, dg, dphi, dgamma, dg_th, dphi_th = rtu_coefficients(params)
    keep = keep_mask(reset, x)[:, None, None]
    prev = state * keep  # [h1, h2]_{t-1}, zeroed at an episode start
    a = delta * _fprime(new_state, activation)  # delta * f'(pre)
    a_old = _rot_T(a, g, phi) * keep  # R^T a, zero where the old traces were reset
    wx = torch.stack((x @ params.W1.T, x @ params.W2.T), dim=1)
    # nu, theta: u = R'(prev) (+ dgamma * Wx for nu), R' the rotation by the derivatives of (g, phi)
    grad_nu = (a_old * e_nu + a * (_rot(prev, dg, dphi) + dgamma * wx)).sum((0, 1))
    grad_theta = (a_old * e_theta + a * _rot(prev, dg_th, dphi_th)).sum((0, 1))
    # W1: u = (gamma x, 0); W2: u = (0, gamma x)
    grad_W1 = trace_contract(a_old, traces.W1, index) + gamma[:, None] * (a[:, 0].T @ x)
    # compact traces: E_W2 = i E_W1 = _rot(E_W1, 0, 1), so a_old . E_W2 = _rot_T(a_old, 0, 1) . E_W1
    a_W2, E_W2 = (_rot_T(a_old, 0, 1), traces.W1) if _compact(traces, activation) else (a_old, traces.W2)
    grad_W2 = trace_contract(a_W2, E_W2, index) + gamma[:, None] * (a[:, 1].T @ x)
    grad_x = (a[:, 0] * gamma) @ params.W1 + (a[:, 1] * gamma) @ params.W2
    return grad_x, RTUParams(grad_nu, grad_theta, grad_W1, grad_W2)
