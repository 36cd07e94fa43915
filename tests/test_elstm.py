"""eLSTM exact RTRL (triton_kernels/elstm.py): RTRL == BPTT in float64 (resets, segments), the paper-text diag is wrong,
Triton kernel == PyTorch reference (float32/float64, interpreter), dispatch launches the kernel only when asked, the
gradient from the stored carry (old traces, buffer rows) equals step + grads."""
import pytest
import torch

import triton_kernels.elstm as elstm
from triton_kernels.elstm import (ELSTMParams, ELSTMTraces, elstm_grads, elstm_grads_from_carry, elstm_init_params,
                                  elstm_state_step, elstm_step, elstm_zero_carry)

B, N, D = 3, 5, 4
RESETS = [(3, 0), (6, 1), (6, 2), (9, 0), (12, 1), (13, 2)]  # (t, b): episode of sample b starts at step t


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


def make_problem(T, seed=0):
    """Random params (std 0.5, larger than init so that every term matters), inputs, resets, output gate, readouts."""
    g = torch.Generator().manual_seed(seed)
    rnd = lambda *s: 0.5 * torch.randn(*s, generator=g, dtype=torch.float64)
    params = ELSTMParams(F=rnd(N, D), Z=rnd(N, D), w_f=rnd(N), w_z=rnd(N), b_f=rnd(N), b_z=rnd(N))
    xs, readout = rnd(T, B, D) * 2, rnd(T, B, N)
    W_o, b_o = rnd(N, D + N), rnd(N)
    resets = torch.zeros(T, B, dtype=torch.bool)
    for t, b in RESETS:
        if t < T:
            resets[t, b] = True
    return params, xs, resets, W_o, b_o, readout


def step_loss(x, c, W_o, b_o, readout):
    """Output path of one step: o = sigmoid(W_o [x, c] + b_o), h = o*c, loss = sum(readout*h)."""
    o = torch.sigmoid(torch.cat([x, c], -1) @ W_o.T + b_o)
    return (readout * o * c).sum()


def bptt_grads(params, xs, resets, W_o, b_o, readout):
    """Independent plain autograd unroll of the eLSTM over the whole sequence."""
    p = [t.clone().requires_grad_() for t in params]
    F, Z, w_f, w_z, b_f, b_z = p
    c, loss = torch.zeros(xs.shape[1], N, dtype=xs.dtype), 0.0
    for t in range(len(xs)):
        c = c * (~resets[t])[:, None]
        f = torch.sigmoid(xs[t] @ F.T + w_f * c + b_f)
        z = torch.tanh(xs[t] @ Z.T + w_z * c + b_z)
        c = f * c + (1 - f) * z
        loss = loss + step_loss(xs[t], c, W_o, b_o, readout[t])
    return ELSTMParams(*torch.autograd.grad(loss, p))


def rtrl_grads(params, xs, resets, W_o, b_o, readout, carry=None, step=elstm_step):
    """RTRL over a segment; returns summed grads, per-step grad_x and the carry (state, traces)."""
    c, traces = carry if carry is not None else elstm_zero_carry(xs.shape[1], N, D, dtype=xs.dtype)
    total, grad_xs = [torch.zeros_like(p) for p in params], []
    for t in range(len(xs)):
        c_new, traces = step(params, xs[t], c, traces, resets[t], backend="torch")
        c_leaf = c_new.detach().requires_grad_()
        (delta,) = torch.autograd.grad(step_loss(xs[t], c_leaf, W_o, b_o, readout[t]), c_leaf)
        grad_x, grads = elstm_grads(params, xs[t], c, resets[t], c_new, traces, delta)
        total = [a + g for a, g in zip(total, grads)]
        grad_xs.append((grad_x, delta, c))
        c = c_new
    return ELSTMParams(*total), grad_xs, (c, traces)


def test_rtrl_equals_bptt():
    params, xs, resets, W_o, b_o, readout = make_problem(T=12)
    ref = bptt_grads(params, xs, resets, W_o, b_o, readout)
    got, grad_xs, _ = rtrl_grads(params, xs, resets, W_o, b_o, readout)
    for name, a, b in zip(ELSTMParams._fields, got, ref):
        assert rel_err(a, b) < 1e-8, name
    # grad_x: one-step gradient of delta . c_t w.r.t. x_t with c_{t-1} held constant (reset applied)
    F, Z, w_f, w_z, b_f, b_z = params
    for t, (grad_x, delta, c_prev) in enumerate(grad_xs):
        x = xs[t].clone().requires_grad_()
        c = c_prev * (~resets[t])[:, None]
        f = torch.sigmoid(x @ F.T + w_f * c + b_f)
        z = torch.tanh(x @ Z.T + w_z * c + b_z)
        (ref_x,) = torch.autograd.grad((delta * (f * c + (1 - f) * z)).sum(), x)
        assert rel_err(grad_x, ref_x) < 1e-10, t


def test_segments_equal_bptt_over_concatenation():
    params, xs, resets, W_o, b_o, readout = make_problem(T=16, seed=1)
    ref = bptt_grads(params, xs, resets, W_o, b_o, readout)
    total, carry, t0 = [torch.zeros_like(p) for p in params], None, 0
    for T in (5, 7, 4):  # segments start at t = 0, 5, 12; resets at t = 3, 6, 9, 13 inside, (12, 1) on a boundary
        sl = slice(t0, t0 + T)
        grads, _, carry = rtrl_grads(params, xs[sl], resets[sl], W_o, b_o, readout[sl], carry=carry)
        total, t0 = [a + g for a, g in zip(total, grads)], t0 + T
    for name, a, b in zip(ELSTMParams._fields, total, ref):
        assert rel_err(a, b) < 1e-8, name


def _paper_text_step(params, x, state, traces, reset, backend):
    """The recursion as printed in the paper: diag = f + w_f*fhat (w_z*zhat dropped)."""
    keep = (reset == 0)[:, None]
    c_prev = torch.where(keep, state, 0.0)
    c, zhat, fhat, diag = elstm._gates(params, x, c_prev)
    d = torch.where(keep, diag - params.w_z * zhat, 0.0)
    return c, ELSTMTraces(
        F=d[..., None] * traces.F + fhat[..., None] * x[:, None], Z=d[..., None] * traces.Z + zhat[..., None] * x[:, None],
        w_f=d * traces.w_f + fhat * c_prev, w_z=d * traces.w_z + zhat * c_prev, b_f=d * traces.b_f + fhat, b_z=d * traces.b_z + zhat,
    )


def test_paper_text_diag_is_not_exact():
    params, xs, resets, W_o, b_o, readout = make_problem(T=12)
    ref = bptt_grads(params, xs, resets, W_o, b_o, readout)
    got, _, _ = rtrl_grads(params, xs, resets, W_o, b_o, readout, step=_paper_text_step)
    errs = {name: rel_err(a, b) for name, a, b in zip(ELSTMParams._fields, got, ref)}
    assert min(errs.values()) > 1e-3, errs  # every parameter's gradient is clearly wrong


def random_inputs(B, N, D, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    rnd = lambda *s: torch.randn(*s, generator=g, dtype=dtype)
    params = ELSTMParams(F=0.3 * rnd(N, D), Z=0.3 * rnd(N, D), w_f=rnd(N), w_z=rnd(N), b_f=rnd(N), b_z=rnd(N))
    traces = ELSTMTraces(F=rnd(B, N, D), Z=rnd(B, N, D), w_f=rnd(B, N), w_z=rnd(B, N), b_f=rnd(B, N), b_z=rnd(B, N))
    reset = torch.arange(B) % 2 == 1  # mixed: odd samples start an episode
    return params, rnd(B, D), rnd(B, N), traces, reset


@pytest.mark.parametrize("B,N,D,dtype", [(3, 37, 19, torch.float32), (2, 188, 64, torch.float32), (3, 37, 19, torch.float64)])
def test_triton_matches_reference(B, N, D, dtype):
    params, x, state, traces, reset = random_inputs(B, N, D, dtype)
    inputs = [t.clone() for t in (x, state, *traces)]
    ref = elstm_step(params, x, state, traces, reset, backend="torch")
    got = elstm_step(params, x, state, traces, reset.float(), backend="triton")
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    for name, a, b in zip(("c",) + ELSTMTraces._fields, (got[0], *got[1]), (ref[0], *ref[1])):
        assert a.dtype == dtype and rel_err(a, b) < tol, name
    assert all(torch.equal(a, b) for a, b in zip(inputs, (x, state, *traces)))  # no in-place modification
    c0, tr0 = elstm_step(params, x, torch.zeros_like(state), ELSTMTraces(*map(torch.zeros_like, traces)), reset, backend="torch")
    for a, b in zip((ref[0], *ref[1]), (c0, *tr0)):  # reset samples (odd b) ignore the incoming carry
        assert torch.equal(a[1::2], b[1::2]) and not torch.allclose(a[0::2], b[0::2])


@pytest.mark.parametrize("backend,launches", [("triton", 1), ("torch", 0), ("auto", 0)])
def test_dispatch_launches_kernel(monkeypatch, backend, launches):
    count, kernel = [0], elstm._elstm_step_kernel

    class Counting:
        def __getitem__(self, grid):
            def launch(*args, **kwargs):
                count[0] += 1
                return kernel[grid](*args, **kwargs)
            return launch

    monkeypatch.setattr(elstm, "_elstm_step_kernel", Counting())
    params, x, state, traces, reset = random_inputs(2, 7, 3, torch.float32)
    elstm_step(params, x, state, traces, reset, backend=backend)
    assert count[0] == launches


def test_grads_from_carry_equal_step_then_grads():
    """The one-read gradient (from the OLD traces, also from rows `index` of whole buffers) equals elstm_step +
    elstm_grads (from the new ones); elstm_state_step is elstm_step's state."""
    B, rows = 6, 15
    params, _, _, b_traces, _ = random_inputs(rows, 7, 5, torch.float64, seed=3)
    g = torch.Generator().manual_seed(4)
    x, delta = torch.randn(B, 5, generator=g, dtype=torch.float64), torch.randn(B, 7, generator=g, dtype=torch.float64)
    b_state = torch.randn(rows, 7, generator=g, dtype=torch.float64)
    reset = torch.tensor([0.0, 1.0, 0.0, 0.0, 1.0, 0.0], dtype=torch.float64)
    index = torch.randperm(rows, generator=g)[:B]
    state, traces = b_state[index], ELSTMTraces(*(t[index] for t in b_traces))
    new_state, new_traces = elstm_step(params, x, state, traces, reset, backend="torch")
    torch.testing.assert_close(elstm_state_step(params, x, state, reset), new_state, rtol=0, atol=0)
    expected = elstm_grads(params, x, state, reset, new_state, new_traces, delta)
    for got in (elstm_grads_from_carry(params, x, state, traces, reset, new_state, delta),
                elstm_grads_from_carry(params, x, b_state, b_traces, reset, new_state, delta, index=index)):
        for e, o in zip((expected[0], *expected[1]), (got[0], *got[1])):
            assert e.abs().max() > 1e-3
            torch.testing.assert_close(o, e, rtol=1e-12, atol=1e-12)
