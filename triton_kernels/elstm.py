"""eLSTM (element-wise LSTM, "quasi-LSTM") cell with its exact RTRL sensitivities.

The recurrent cell of Irie, Gopalakrishnan, Schmidhuber, "Exploring the Promise and Limits of Real-Time Recurrent
Learning" (ICLR 2024, arXiv 2305.19044), used there in the R2AC actor-critic.

Recurrence (per sample, element-wise over the n units; x_t in R^D):
    f_t = sigmoid(F x_t + w_f*c_{t-1} + b_f)
    z_t = tanh(Z x_t + w_z*c_{t-1} + b_z)
    c_t = f_t*c_{t-1} + (1 - f_t)*z_t
The output gate o_t = sigmoid(W_o [x_t, c_t] + b_o), h_t = o_t*c_t is NOT part of the recurrence: the caller
owns W_o and trains it by ordinary backprop.

Exact RTRL: because every unit only feeds back into itself, dc_t/dc_{t-1} is diagonal and the sensitivities
("traces") of c_t w.r.t. the recurrent parameters follow an O(nD) recursion per sample per step:
    zhat = (1 - f)*(1 - z^2);  fhat = (c_{t-1} - z)*f*(1 - f);  diag = f + w_z*zhat + w_f*fhat
    S_Z <- diag*S_Z + zhat x_t^T      S_F <- diag*S_F + fhat x_t^T           (n, D)
    s_wz <- diag*s_wz + zhat*c_{t-1}  s_wf <- diag*s_wf + fhat*c_{t-1}        (n,)
    s_bz <- diag*s_bz + zhat          s_bf <- diag*s_bf + fhat                (n,)
(The submitted paper text drops w_z*zhat from diag; that is not the exact gradient. tests/test_elstm.py shows it.)

API (the shared shape and the reset convention: triton_kernels/__init__.py)
    ELSTMParams(F, Z, w_f, w_z, b_f, b_z)       F, Z: (n, D); the rest (n,)
    ELSTMTraces(F, Z, w_f, w_z, b_f, b_z)       sensitivities of c_t: F, Z: (B, n, D); the rest (B, n)
    elstm_init_params(n, D, generator=None, dtype=torch.float32) -> ELSTMParams
        official init: every parameter ~ N(0, 0.1^2), forget-bias offset 0.
    elstm_zero_carry(B, n, D, dtype=torch.float32, device="cpu") -> (c, traces)      zeros, c: (B, n)
    elstm_step(params, x, state, traces, reset, *, backend="auto") -> (c_new, new_traces)
        x: (B, D); state: (B, n) = c_{t-1}.
    elstm_state_step(params, x, state, reset) -> c_new      (elstm_step without the traces; truncated BPTT)
    elstm_grads(params, x, state, reset, new_state, new_traces, delta) -> (grad_x, grads: ELSTMParams)
        delta: (B, n) = dL/dc_t through the output path of step t only; x, state, reset: the step's inputs.
        grad_x (B, D): one-step gradient w.r.t. x_t with c_{t-1} held constant, (delta*zhat) Z + (delta*fhat) F.
        grads: parameter gradients of this step, summed over the batch, e.g. grad(Z) = sum_b delta[b,:,None]*S_Z[b].
        Summing grads over steps (and segments) gives the exact RTRL gradient of the summed loss.
    elstm_grads_from_carry(params, x, state, traces, reset, new_state, delta, *, index=None) -> (grad_x, grads)
        the same gradients as elstm_step + elstm_grads, from the OLD traces: S_new = diag*S_old + (input term), so
        sum_b delta*S_new = sum_b (delta*diag)*S_old + sum_b delta*(input term).
    ELSTMStepRTRL: the autograd.Function of one step whose backward is exact RTRL (see there).
"""
from typing import NamedTuple

import torch
import triton
import triton.language as tl
from torch import Tensor

from triton_kernels._common import keep_mask, tile_shape, trace_contract, use_triton


class ELSTMParams(NamedTuple):
    F: Tensor  # (n, D) forget-gate input weights
    Z: Tensor  # (n, D) cell-input weights
    w_f: Tensor  # (n,) forget-gate recurrent (element-wise) weights
    w_z: Tensor  # (n,) cell-input recurrent weights
    b_f: Tensor  # (n,)
    b_z: Tensor  # (n,)


class ELSTMTraces(NamedTuple):
    F: Tensor  # (B, n, D) dc_t/dF (row j of F only reaches unit j)
    Z: Tensor  # (B, n, D)
    w_f: Tensor  # (B, n)
    w_z: Tensor  # (B, n)
    b_f: Tensor  # (B, n)
    b_z: Tensor  # (B, n)


class ELSTMGates(NamedTuple):
    """One step's new state and local derivatives (each (B, n)), from the (already reset) previous state."""
    c: Tensor  # c_t = f*c_prev + (1 - f)*z
    zhat: Tensor  # (1 - f)(1 - z^2) = dc_t/d(z pre-activation)
    fhat: Tensor  # (c_prev - z) f (1 - f) = dc_t/d(f pre-activation)
    diag: Tensor  # f + w_z*zhat + w_f*fhat = dc_t/dc_prev (exact)


def elstm_init_params(n: int, D: int, generator=None, dtype=torch.float32) -> ELSTMParams:
    """Official init (IDSIA/rtrl-elstm): every parameter ~ N(0, 0.1^2), forget-bias offset 0."""
    randn = lambda *shape: 0.1 * torch.randn(*shape, generator=generator, dtype=dtype)
    return ELSTMParams(F=randn(n, D), Z=randn(n, D), w_f=randn(n), w_z=randn(n), b_f=randn(n), b_z=randn(n))


def elstm_zero_carry(B: int, n: int, D: int, dtype=torch.float32, device="cpu"):
    zeros = lambda *shape: torch.zeros(*shape, dtype=dtype, device=device)
    traces = ELSTMTraces(F=zeros(B, n, D), Z=zeros(B, n, D),
                         w_f=zeros(B, n), w_z=zeros(B, n), b_f=zeros(B, n), b_z=zeros(B, n))
    return zeros(B, n), traces


def _cell(params: ELSTMParams, x: Tensor, c_prev: Tensor):
    """The eLSTM step itself, (f, z, c_t), from the (already reset) previous state: the one PyTorch forward of the
    recurrence (the Triton kernel has its own copy)."""
    f = torch.sigmoid(x @ params.F.T + params.w_f * c_prev + params.b_f)  # f = sigmoid(F x + w_f*c_prev + b_f)
    z = torch.tanh(x @ params.Z.T + params.w_z * c_prev + params.b_z)  # z = tanh(Z x + w_z*c_prev + b_z)
    return f, z, f * c_prev + (1 - f) * z  # c = f*c_prev + (1 - f)*z


def _gates(params: ELSTMParams, x: Tensor, c_prev: Tensor) -> ELSTMGates:
    """One step's new state and its RTRL coefficients; c_prev is already reset."""
    f, z, c = _cell(params, x, c_prev)
    zhat = (1 - f) * (1 - z * z)  # zhat = (1 - f)(1 - z^2) = dc/d(z pre-activation)
    fhat = (c_prev - z) * f * (1 - f)  # fhat = (c_prev - z) f (1 - f) = dc/d(f pre-activation)
    diag = f + params.w_z * zhat + params.w_f * fhat  # diag = dc/dc_prev = f + w_z*zhat + w_f*fhat (exact)
    return ELSTMGates(c, zhat, fhat, diag)


def _elstm_step_torch(params: ELSTMParams, x: Tensor, state: Tensor, traces: ELSTMTraces, reset: Tensor):
    """PyTorch reference of one step (the recursion of the module docstring), vectorised over the batch."""
    keep = keep_mask(reset, x)[:, None]  # (B, 1): 0 where an episode starts at this step
    c_prev = state * keep  # reset: previous state = 0 ...
    c, zhat, fhat, diag = _gates(params, x, c_prev)
    decay = diag * keep  # ... and previous traces = 0 (folded into their decay, saves a pass)
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
    F_ptr, Z_ptr, wf_ptr, wz_ptr, bf_ptr, bz_ptr,  # params: (n, D), (n,) x4
    x_ptr, c_ptr, keep_ptr,  # x (B, D), c_prev (B, n), keep (B,)
    SF_ptr, SZ_ptr, swf_ptr, swz_ptr, sbf_ptr, sbz_ptr,  # old traces: (B, n, D) x2, (B, n) x4
    c_out, SF_out, SZ_out, swf_out, swz_out, sbf_out, sbz_out,  # outputs, same shapes
    n, D, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):
    b = tl.program_id(0).to(tl.int64)  # one sample per program along axis 0, a block of units along axis 1
    rn = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)  # unit indices of this tile
    rd = tl.arange(0, BLOCK_D)
    mn, md = rn < n, rd < D
    m2 = mn[:, None] & md[None, :]
    nd = rn[:, None] * D + rd[None, :]  # offsets into an (n, D) matrix
    vec = b * n + rn  # offsets into (B, n)
    mat = b * n * D + nd  # offsets into (B, n, D)

    keep = tl.load(keep_ptr + b)  # keep_mask: 0 at a reset, where the previous state and traces are zeroed
    x = tl.load(x_ptr + b * D + rd, mask=md, other=0.0)
    c_prev = tl.load(c_ptr + vec, mask=mn, other=0.0) * keep
    w_f = tl.load(wf_ptr + rn, mask=mn, other=0.0)
    w_z = tl.load(wz_ptr + rn, mask=mn, other=0.0)
    Fx = tl.sum(tl.load(F_ptr + nd, mask=m2, other=0.0) * x[None, :], axis=1)  # F x, row reduction
    Zx = tl.sum(tl.load(Z_ptr + nd, mask=m2, other=0.0) * x[None, :], axis=1)  # Z x
    f = _sigmoid(Fx + w_f * c_prev + tl.load(bf_ptr + rn, mask=mn, other=0.0))
    z = _tanh(Zx + w_z * c_prev + tl.load(bz_ptr + rn, mask=mn, other=0.0))
    tl.store(c_out + vec, f * c_prev + (1.0 - f) * z, mask=mn)

    zhat = (1.0 - f) * (1.0 - z * z)
    fhat = (c_prev - z) * f * (1.0 - f)
    decay = (f + w_z * zhat + w_f * fhat) * keep  # diag, and the old traces zeroed at a reset
    S = tl.load(SF_ptr + mat, mask=m2, other=0.0)
    tl.store(SF_out + mat, decay[:, None] * S + fhat[:, None] * x[None, :], mask=m2)
    S = tl.load(SZ_ptr + mat, mask=m2, other=0.0)
    tl.store(SZ_out + mat, decay[:, None] * S + zhat[:, None] * x[None, :], mask=m2)
    s = tl.load(swf_ptr + vec, mask=mn, other=0.0)
    tl.store(swf_out + vec, decay * s + fhat * c_prev, mask=mn)
    s = tl.load(swz_ptr + vec, mask=mn, other=0.0)
    tl.store(swz_out + vec, decay * s + zhat * c_prev, mask=mn)
    s = tl.load(sbf_ptr + vec, mask=mn, other=0.0)
    tl.store(sbf_out + vec, decay * s + fhat, mask=mn)
    s = tl.load(sbz_ptr + vec, mask=mn, other=0.0)
    tl.store(sbz_out + vec, decay * s + zhat, mask=mn)


def _elstm_step_triton(params: ELSTMParams, x: Tensor, state: Tensor, traces: ELSTMTraces, reset: Tensor):
    (B, D), n = x.shape, state.shape[1]
    params = [p.contiguous() for p in params]
    x, state, keep = x.contiguous(), state.contiguous(), keep_mask(reset, x).contiguous()
    traces = [t.contiguous() for t in traces]
    c = torch.empty_like(state)
    new = ELSTMTraces(*(torch.empty_like(t) for t in traces))
    BLOCK_N, BLOCK_D = tile_shape(n, D)
    grid = (B, triton.cdiv(n, BLOCK_N))
    _elstm_step_kernel[grid](*params, x, state, keep, *traces, c, *new, n, D, BLOCK_N=BLOCK_N, BLOCK_D=BLOCK_D)
    return c, new


def elstm_step(params: ELSTMParams, x: Tensor, state: Tensor, traces: ELSTMTraces, reset: Tensor, *,
               backend: str = "auto"):
    """One eLSTM step and its RTRL trace update; returns (c_t, new traces). See the module docstring."""
    step = _elstm_step_triton if use_triton(x, backend) else _elstm_step_torch
    return step(params, x, state, traces, reset)


def elstm_state_step(params: ELSTMParams, x: Tensor, state: Tensor, reset: Tensor):
    """The state part of elstm_step only (no traces), differentiable by autograd: truncated BPTT and evaluation."""
    return _cell(params, x, state * keep_mask(reset, x)[:, None])[2]


def _contract(delta: Tensor, traces: ELSTMTraces) -> ELSTMParams:
    """sum_b delta * S over the batch for every trace: (n, D) for F and Z, (n,) for the rest."""
    return ELSTMParams(*(trace_contract(delta, t) if t.dim() == 3 else (delta * t).sum(0) for t in traces))


def elstm_grads(params: ELSTMParams, x: Tensor, state: Tensor, reset: Tensor, new_state: Tensor,
                new_traces: ELSTMTraces, delta: Tensor):
    """Gradients of step t from delta = dL/dc_t (output path of step t only); see the module docstring.
    state and reset are the step's inputs (grad_x needs the gates); new_state is not needed."""
    _, zhat, fhat, _ = _gates(params, x, state * keep_mask(reset, x)[:, None])
    grad_x = (delta * zhat) @ params.Z + (delta * fhat) @ params.F  # dc/dx with c_prev constant, contracted with delta
    return grad_x, _contract(delta, new_traces)


def elstm_grads_from_carry(params: ELSTMParams, x: Tensor, state: Tensor, traces: ELSTMTraces, reset: Tensor,
                           new_state: Tensor, delta: Tensor, *, index=None):
    """elstm_grads of the step from the carry (state, traces), without materialising the new traces.

    Every new trace is S_new = decay*S_old + u (decay = diag, 0 at a reset; u = fhat x^T, zhat x^T, fhat*c_prev,
    zhat*c_prev, fhat, zhat), so sum_b delta*S_new = sum_b (delta*decay)*S_old + sum_b delta*u: the (B, n, D)
    traces are read once and never written. Same results as elstm_step + elstm_grads.
    index (B,) optional: state and traces are whole buffers and the carry is their rows `index` (F and Z traces are
    contracted in place by trace_contract(..., index)).
    """
    gather = (lambda t: t) if index is None else (lambda t: t.index_select(0, index))
    keep = keep_mask(reset, x)[:, None]
    c_prev = gather(state) * keep
    _, zhat, fhat, diag = _gates(params, x, c_prev)
    d_old = delta * diag * keep  # delta * decay
    df, dz = delta * fhat, delta * zhat
    grads = ELSTMParams(
        F=trace_contract(d_old, traces.F, index) + df.T @ x,
        Z=trace_contract(d_old, traces.Z, index) + dz.T @ x,
        w_f=(d_old * gather(traces.w_f) + df * c_prev).sum(0),
        w_z=(d_old * gather(traces.w_z) + dz * c_prev).sum(0),
        b_f=(d_old * gather(traces.b_f) + df).sum(0),
        b_z=(d_old * gather(traces.b_z) + dz).sum(0),
    )
    return dz @ params.Z + df @ params.F, grads


class ELSTMStepRTRL(torch.autograd.Function):
    """One eLSTM step whose backward gives the eLSTM parameters their exact RTRL gradient (R2AC and the copy task).

    apply(x, F, Z, w_f, w_z, b_f, b_z, state, S_F, S_Z, s_wf, s_wz, s_bf, s_bz, reset) -> (c_out, c_next, *new traces)
    forward: elstm_step from the carry (state = c_{t-1}, traces) of the previous step. c_t is returned twice with the
    same value: `c_out` feeds this step's output gate, `c_next` the next step. Their gradients are kept apart because
    they play different roles (the traces are non-differentiable outputs).
    backward, with e_t = dL/dc_out (the loss of step t through its own output only) and g_t = dL/dc_next (the loss of
    the later steps of the segment, back-propagated through the unrolled cell states):
      - eLSTM parameters: sum_b e_t * S_t from the NEW traces (elstm_grads). S_t summarises the whole history, so
        summing this over the steps gives the exact gradient; adding g_t here would count the later steps' losses twice.
      - x_t and c_{t-1}: (e_t + g_t) times the step's local derivatives, so the layers below the cell get the
        segment loss through the unrolled states (the caller cuts c at the segment start). If the caller passes a
        detached c_{t-1}, g_t = 0 and x_t gets the one-step gradient.
    The official learner does not double-count either: it reads its RTRL top gradient off a concatenated copy of the
    cell states, which the recurrence does not use, so that gradient is e_t alone.
    """

    @staticmethod
    def forward(ctx, x, F, Z, w_f, w_z, b_f, b_z, state, tr_F, tr_Z, tr_wf, tr_wz, tr_bf, tr_bz, reset):
        params = ELSTMParams(F, Z, w_f, w_z, b_f, b_z)
        c, new = elstm_step(params, x, state, ELSTMTraces(tr_F, tr_Z, tr_wf, tr_wz, tr_bf, tr_bz), reset)
        ctx.save_for_backward(x, F, Z, w_f, w_z, b_f, b_z, state, reset, *new)
        ctx.mark_non_differentiable(*new)
        ctx.set_materialize_grads(False)  # a missing gradient stays None: no zero tensors to add
        return (c, c.clone(), *new)

    @staticmethod
    def backward(ctx, e, g, *unused_trace_grads):
        x, F, Z, w_f, w_z, b_f, b_z, state, reset, *new = ctx.saved_tensors
        params = ELSTMParams(F, Z, w_f, w_z, b_f, b_z)
        keep = keep_mask(reset, x)[:, None]  # an episode start zeroes c_{t-1}: no gradient reaches it there
        _, zhat, fhat, diag = _gates(params, x, state * keep)
        if e is None:
            e = torch.zeros_like(state)
        grads = _contract(e, ELSTMTraces(*new))
        total = e if g is None else e + g
        grad_x = (total * zhat) @ Z + (total * fhat) @ F if ctx.needs_input_grad[0] else None
        grad_state = total * diag * keep if ctx.needs_input_grad[7] else None  # dc_t/dc_{t-1} is diagonal
        return (grad_x, *grads, grad_state) + (None,) * 7
