"""eLSTM (element-wise LSTM, "quasi-LSTM") cell with its exact RTRL sensitivities.

The recurrent cell of Irie, Gopalakrishnan, Schmidhuber, "Exploring the Promise and Limits of Real-Time Recurrent
Learning" (ICLR 2024, arXiv 2305.19044), used there in the R2AC actor-critic.

Recurrence (per sample, element-wise over the N units; x_t in R^D):
    f_t = sigmoid(F x_t + w_f*c_{t-1} + b_f)
    z_t = tanh(Z x_t + w_z*c_{t-1} + b_z)
    c_t = f_t*c_{t-1} + (1 - f_t)*z_t
The output gate o_t = sigmoid(W_o [x_t, c_t] + b_o), h_t = o_t*c_t is NOT part of the recurrence: the caller
owns W_o and trains it by ordinary backprop.

Exact RTRL: because every unit only feeds back into itself, dc_t/dc_{t-1} is diagonal and the sensitivities
("traces") of c_t w.r.t. the recurrent parameters follow an O(ND) recursion per sample per step:
    zhat = (1 - f)*(1 - z^2);  fhat = (c_{t-1} - z)*f*(1 - f);  diag = f + w_z*zhat + w_f*fhat
    S_Z <- diag*S_Z + zhat x_t^T      S_F <- diag*S_F + fhat x_t^T           (N, D)
    s_wz <- diag*s_wz + zhat*c_{t-1}  s_wf <- diag*s_wf + fhat*c_{t-1}        (N,)
    s_bz <- diag*s_bz + zhat          s_bf <- diag*s_bf + fhat                (N,)
(The submitted paper text drops w_z*zhat from diag; that is not the exact gradient. tests/test_elstm.py shows it.)

API
    ELSTMParams(F, Z, w_f, w_z, b_f, b_z)       F, Z: (N, D); the rest (N,)
    ELSTMTraces(F, Z, w_f, w_z, b_f, b_z)       sensitivities of c_t: F, Z: (B, N, D); the rest (B, N)
    elstm_init_params(N, D, generator=None, dtype=torch.float32) -> ELSTMParams
        official init: every parameter ~ N(0, 0.1^2), forget-bias offset 0.
    elstm_zero_carry(B, N, D, dtype=torch.float32, device="cpu") -> (c, traces)      zeros, c: (B, N)
    elstm_step(params, x, state, traces, reset, backend="auto") -> (c_new, new_traces)
        x: (B, D); state: (B, N) = c_{t-1}; reset: (B,) bool or float. Where reset is true/nonzero, that sample's
        previous state and traces are zeroed BEFORE the step (episode start). Inputs are never modified in place.
        backend: "auto" (Triton on CUDA, reference on CPU), "torch" (reference), "triton" (fused kernel; on CPU
        only under TRITON_INTERPRET=1).
    elstm_grads(params, x, prev_state, reset, new_traces, delta) -> (grad_x, grads: ELSTMParams)
        delta: (B, N) = dL/dc_t through the output path of step t only; x, prev_state, reset: the step's inputs.
        grad_x (B, D): one-step gradient w.r.t. x_t with c_{t-1} held constant, (delta*zhat) Z + (delta*fhat) F.
        grads: parameter gradients of this step, summed over the batch, e.g. grad(Z) = sum_b delta[b,:,None]*S_Z[b].
        Summing grads over steps (and segments) gives the exact RTRL gradient of the summed loss.
"""
from typing import NamedTuple

import torch
import triton
import triton.language as tl
from torch import Tensor

from triton_kernels._common import next_pow2, trace_contract, use_triton


class ELSTMParams(NamedTuple):
    F: Tensor  # (N, D) forget-gate input weights
    Z: Tensor  # (N, D) cell-input weights
    w_f: Tensor  # (N,) forget-gate recurrent (element-wise) weights
    w_z: Tensor  # (N,) cell-input recurrent weights
    b_f: Tensor  # (N,)
    b_z: Tensor  # (N,)


class ELSTMTraces(NamedTuple):
    F: Tensor  # (B, N, D) dc_t/dF (row n of F only reaches unit n)
    Z: Tensor  # (B, N, D)
    w_f: Tensor  # (B, N)
    w_z: Tensor  # (B, N)
    b_f: Tensor  # (B, N)
    b_z: Tensor  # (B, N)


def elstm_init_params(N: int, D: int, generator=None, dtype=torch.float32) -> ELSTMParams:
    """Official init (IDSIA/rtrl-elstm): every parameter ~ N(0, 0.1^2), forget-bias offset 0."""
    randn = lambda *shape: 0.1 * torch.randn(*shape, generator=generator, dtype=dtype)
    return ELSTMParams(F=randn(N, D), Z=randn(N, D), w_f=randn(N), w_z=randn(N), b_f=randn(N), b_z=randn(N))


def elstm_zero_carry(B: int, N: int, D: int, dtype=torch.float32, device="cpu"):
    zeros = lambda *shape: torch.zeros(*shape, dtype=dtype, device=device)
    traces = ELSTMTraces(F=zeros(B, N, D), Z=zeros(B, N, D), w_f=zeros(B, N), w_z=zeros(B, N), b_f=zeros(B, N), b_z=zeros(B, N))
    return zeros(B, N), traces


def _gates(params: ELSTMParams, x: Tensor, c_prev: Tensor):
    """One step's gates, new state and RTRL coefficients; c_prev is already reset."""
    f = torch.sigmoid(x @ params.F.T + params.w_f * c_prev + params.b_f)  # f = sigmoid(F x + w_f*c_prev + b_f)
    z = torch.tanh(x @ params.Z.T + params.w_z * c_prev + params.b_z)  # z = tanh(Z x + w_z*c_prev + b_z)
    c = f * c_prev + (1 - f) * z  # c = f*c_prev + (1 - f)*z
    zhat = (1 - f) * (1 - z * z)  # zhat = (1 - f)(1 - z^2) = dc/d(z pre-activation)
    fhat = (c_prev - z) * f * (1 - f)  # fhat = (c_prev - z) f (1 - f) = dc/d(f pre-activation)
    diag = f + params.w_z * zhat + params.w_f * fhat  # diag = dc/dc_prev = f + w_z*zhat + w_f*fhat (exact)
    return c, zhat, fhat, diag


def _elstm_step_torch(params: ELSTMParams, x: Tensor, state: Tensor, traces: ELSTMTraces, reset: Tensor):
    """PyTorch reference of one step (the recursion of the module docstring), vectorised over the batch."""
    keep = (reset == 0)[:, None]  # (B, 1): False where an episode starts at this step
    c_prev = torch.where(keep, state, 0.0)  # reset: previous state = 0 ...
    c, zhat, fhat, diag = _gates(params, x, c_prev)
    decay = torch.where(keep, diag, 0.0)  # ... and previous traces = 0 (folded into their decay, saves a pass)
    new = ELSTMTraces(
        F=decay[..., None] * traces.F + fhat[..., None] * x[:, None, :],  # S_F <- diag*S_F + fhat (outer) x
        Z=decay[..., None] * traces.Z + zhat[..., None] * x[:, None, :],  # S_Z <- diag*S_Z + zhat (outer) x
        w_f=decay * traces.w_f + fhat * c_prev,  # s_wf <- diag*s_wf + fhat*c_prev
        w_z=decay * traces.w_z + zhat * c_prev,  # s_wz <- diag*s_wz + zhat*c_prev
        b_f=decay * traces.b_f + fhat,  # s_bf <- diag*s_bf + fhat
        b_z=decay * traces.b_z + zhat,  # s_bz <- diag*s_bz + zhat
    )
    return c, new


@triton.jit
def _sigmoid(a):
    return 1.0 / (1.0 + tl.exp(-a))


@triton.jit
def _tanh(a):
    e = tl.exp(-2.0 * tl.abs(a))  # in (0, 1]: no overflow, accurate near 0
    t = (1.0 - e) / (1.0 + e)
    return tl.where(a < 0, -t, t)


@triton.jit
def _elstm_step_kernel(
    F_ptr, Z_ptr, wf_ptr, wz_ptr, bf_ptr, bz_ptr,  # params: (N, D), (N,) x4
    x_ptr, c_ptr, reset_ptr,  # x (B, D), c_prev (B, N), reset (B,)
    SF_ptr, SZ_ptr, swf_ptr, swz_ptr, sbf_ptr, sbz_ptr,  # old traces: (B, N, D) x2, (B, N) x4
    c_out, SF_out, SZ_out, swf_out, swz_out, sbf_out, sbz_out,  # outputs, same shapes
    N, D, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):
    b = tl.program_id(0)
    rn = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)  # unit indices of this tile
    rd = tl.arange(0, BLOCK_D)
    mn, md = rn < N, rd < D
    m2 = mn[:, None] & md[None, :]
    nd = rn[:, None] * D + rd[None, :]  # offsets into an (N, D) matrix
    vec = b * N + rn  # offsets into (B, N)
    mat = b * N * D + nd  # offsets into (B, N, D)

    keep = tl.load(reset_ptr + b) == 0  # reset: previous state and traces read as zero
    x = tl.load(x_ptr + b * D + rd, mask=md, other=0.0)
    c_prev = tl.where(keep, tl.load(c_ptr + vec, mask=mn, other=0.0), 0.0)
    w_f = tl.load(wf_ptr + rn, mask=mn, other=0.0)
    w_z = tl.load(wz_ptr + rn, mask=mn, other=0.0)
    Fx = tl.sum(tl.load(F_ptr + nd, mask=m2, other=0.0) * x[None, :], axis=1)  # F x, row reduction
    Zx = tl.sum(tl.load(Z_ptr + nd, mask=m2, other=0.0) * x[None, :], axis=1)  # Z x
    f = _sigmoid(Fx + w_f * c_prev + tl.load(bf_ptr + rn, mask=mn, other=0.0))
    z = _tanh(Zx + w_z * c_prev + tl.load(bz_ptr + rn, mask=mn, other=0.0))
    tl.store(c_out + vec, f * c_prev + (1.0 - f) * z, mask=mn)

    zhat = (1.0 - f) * (1.0 - z * z)
    fhat = (c_prev - z) * f * (1.0 - f)
    diag = f + w_z * zhat + w_f * fhat
    S = tl.where(keep, tl.load(SF_ptr + mat, mask=m2, other=0.0), 0.0)
    tl.store(SF_out + mat, diag[:, None] * S + fhat[:, None] * x[None, :], mask=m2)
    S = tl.where(keep, tl.load(SZ_ptr + mat, mask=m2, other=0.0), 0.0)
    tl.store(SZ_out + mat, diag[:, None] * S + zhat[:, None] * x[None, :], mask=m2)
    s = tl.where(keep, tl.load(swf_ptr + vec, mask=mn, other=0.0), 0.0)
    tl.store(swf_out + vec, diag * s + fhat * c_prev, mask=mn)
    s = tl.where(keep, tl.load(swz_ptr + vec, mask=mn, other=0.0), 0.0)
    tl.store(swz_out + vec, diag * s + zhat * c_prev, mask=mn)
    s = tl.where(keep, tl.load(sbf_ptr + vec, mask=mn, other=0.0), 0.0)
    tl.store(sbf_out + vec, diag * s + fhat, mask=mn)
    s = tl.where(keep, tl.load(sbz_ptr + vec, mask=mn, other=0.0), 0.0)
    tl.store(sbz_out + vec, diag * s + zhat, mask=mn)


def _elstm_step_triton(params: ELSTMParams, x: Tensor, state: Tensor, traces: ELSTMTraces, reset: Tensor):
    B, D = x.shape
    N = state.shape[1]
    params = [p.contiguous() for p in params]
    x, state, reset = x.contiguous(), state.contiguous(), reset.to(x.dtype).contiguous()
    traces = [t.contiguous() for t in traces]
    c = torch.empty_like(state)
    new = ELSTMTraces(*(torch.empty_like(t) for t in traces))
    BLOCK_D = next_pow2(D)
    BLOCK_N = min(next_pow2(N), max(1, 4096 // BLOCK_D))  # tile of at most ~4k elements
    grid = (B, triton.cdiv(N, BLOCK_N))
    _elstm_step_kernel[grid](*params, x, state, reset, *traces, c, *new, N, D, BLOCK_N=BLOCK_N, BLOCK_D=BLOCK_D)
    return c, new


def elstm_step(params: ELSTMParams, x: Tensor, state: Tensor, traces: ELSTMTraces, reset: Tensor, backend: str = "auto"):
    """One eLSTM step and its RTRL trace update; returns (c_t, new traces). See the module docstring."""
    step = _elstm_step_triton if use_triton(x, backend) else _elstm_step_torch
    return step(params, x, state, traces, reset)


def elstm_grads(params: ELSTMParams, x: Tensor, prev_state: Tensor, reset: Tensor, new_traces: ELSTMTraces, delta: Tensor):
    """Gradients of step t from delta = dL/dc_t (output path of step t only); see the module docstring."""
    c_prev = torch.where((reset == 0)[:, None], prev_state, 0.0)
    _, zhat, fhat, _ = _gates(params, x, c_prev)
    grad_x = (delta * zhat) @ params.Z + (delta * fhat) @ params.F  # dc/dx with c_prev constant, contracted with delta
    grads = ELSTMParams(*(trace_contract(delta, t) if t.dim() == 3 else (delta * t).sum(0) for t in new_traces))
    return grad_x, grads
