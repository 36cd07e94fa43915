"""Online LRU: exact RTRL == BPTT (float64), the official E_B bug is caught, Triton kernel == PyTorch reference.

The BPTT reference below is an independent autograd unroll written with torch complex tensors, so it shares no
formula with the real/imag-pair code in triton_kernels/lru.py.
"""
import pytest
import torch

import triton_kernels.lru as lru
from triton_kernels.lru import (LRUParams, LRUTraces, lru_grads, lru_grads_from_carry, lru_init_params,
                                lru_init_readout, lru_state_step, lru_state_unroll, lru_step,
                                lru_zero_carry)

F64 = torch.float64
B, N, D, H = 3, 5, 4, 2


def random_params(n, d, g, dtype=F64):
    """Random parameters away from the init distribution (gamma_log of both signs, large B)."""
    u = lambda: torch.rand(n, generator=g, dtype=dtype)  # noqa: E731
    return LRUParams(u() * 3.5 - 3.0, u() * 3.5 - 2.0, u() * 1.8 - 1.5,
                     torch.randn(n, d, generator=g, dtype=dtype), torch.randn(n, d, generator=g, dtype=dtype))


def make_problem(T, seed, params=None):
    g = torch.Generator().manual_seed(seed)
    p = params if params is not None else random_params(N, D, g)
    xs = torch.randn(T, B, D, generator=g, dtype=F64)
    C = lru_init_readout(H, N, generator=g, dtype=F64)
    readout = torch.randn(T, B, H, generator=g, dtype=F64)
    resets = torch.zeros(T, B, dtype=torch.bool)
    resets[0] = True
    for t, b in [(4, 1), (5, 0), (7, 0), (9, 2), (10, 1), (13, 2)]:
        if t < T:
            resets[t, b] = True
    return p, xs, resets, C, readout


def complex_lambda(p):
    return torch.exp(torch.complex(-p.nu_log.exp(), p.theta_log.exp()))


def complex_step(p, x, h, reset):
    """h_t = lambda*h_{t-1} + exp(gamma_log) * (B x_t) with torch complex numbers; h zeroed where reset."""
    Bc = torch.complex(p.B_re, p.B_im)
    h = torch.where(reset[:, None], torch.zeros_like(h), h)
    return complex_lambda(p) * h + p.gamma_log.exp() * (x.to(Bc.dtype) @ Bc.T)


def step_loss(C, readout_t, h_re, h_im):
    y = h_re @ C[0].T - h_im @ C[1].T  # y_t = Re(C h_t)
    return (readout_t * torch.tanh(y)).sum()


def bptt(p, xs, resets, C, readout):
    """Grads of sum_t loss_t by a plain autograd unroll; also the (detached) state before each step."""
    p = LRUParams(*(q.detach().clone().requires_grad_() for q in p))
    h = torch.zeros(xs.shape[1], p.nu_log.shape[0], dtype=torch.complex128)
    loss, h_before = 0.0, []
    for t in range(len(xs)):
        h_before.append(h.detach())
        h = complex_step(p, xs[t], h, resets[t])
        loss = loss + step_loss(C, readout[t], h.real, h.imag)
    return torch.autograd.grad(loss, p), h_before


def rtrl(p, xs, resets, C, readout, state, traces, buggy_EB=False):
    """Accumulated RTRL grads over a segment; returns (grads, per-step grad_x, final state, final traces)."""
    grads, grad_xs = [torch.zeros_like(q) for q in p], []
    E_bug = torch.complex(traces.B[:, 0], traces.B[:, 1])
    for t in range(len(xs)):
        prev = state
        state, traces = lru_step(p, xs[t], state, traces, resets[t], backend="torch")
        if buggy_EB:  # official code: E_B <- lambda*E_B + gamma_log * x_t   (instead of exp(gamma_log))
            E_bug = torch.where(resets[t][:, None, None], torch.zeros_like(E_bug), E_bug)
            E_bug = complex_lambda(p)[:, None] * E_bug + p.gamma_log[:, None] * xs[t][:, None, :]
            traces = traces._replace(B=torch.stack([E_bug.real, E_bug.imag], 1))
        s = state.detach().requires_grad_()
        (delta,) = torch.autograd.grad(step_loss(C, readout[t], s[:, 0], s[:, 1]), s)
        gx, g = lru_grads(p, xs[t], prev, resets[t], state, traces, delta)
        grads = [a + b for a, b in zip(grads, g)]
        grad_xs.append(gx)
    return grads, grad_xs, state, traces


def rel_err(a, ref):
    return ((a - ref).abs().max() / ref.abs().max()).item()


def test_rtrl_equals_bptt():
    p, xs, resets, C, readout = make_problem(T=12, seed=0)
    ref, h_before = bptt(p, xs, resets, C, readout)
    grads, grad_xs, _, _ = rtrl(p, xs, resets, C, readout, *lru_zero_carry(B, N, D, dtype=F64))
    for name, g, r in zip(LRUParams._fields, grads, ref):
        assert r.abs().max() > 1e-3, name  # the reference gradient is not trivially zero
        assert rel_err(g, r) < 1e-8, (name, rel_err(g, r))
    # one-step input gradient: autograd of loss_t w.r.t. x_t with the previous state held constant
    for t in range(len(xs)):
        x = xs[t].clone().requires_grad_()
        h = complex_step(p, x, h_before[t], resets[t])
        (ref_gx,) = torch.autograd.grad(step_loss(C, readout[t], h.real, h.imag), x)
        assert rel_err(grad_xs[t], ref_gx) < 1e-8, t


def test_rtrl_segments_equal_bptt_of_concatenation():
    p, xs, resets, C, readout = make_problem(T=16, seed=1)
    ref, _ = bptt(p, xs, resets, C, readout)
    carry, total, start = lru_zero_carry(B, N, D, dtype=F64), None, 0
    for T in (5, 7, 4):
        sl = slice(start, start + T)
        grads, _, state, traces = rtrl(p, xs[sl], resets[sl], C, readout[sl], *carry)
        carry = (state.clone(), LRUTraces(*(t.clone() for t in traces)))  # stored carry, as a rollout would
        total = grads if total is None else [a + b for a, b in zip(total, grads)]
        start += T
    assert resets[5:12].any() and resets[12:].any()  # resets inside later segments
    for name, g, r in zip(LRUParams._fields, total, ref):
        assert rel_err(g, r) < 1e-8, (name, rel_err(g, r))


def test_official_EB_bug_is_caught():
    p0 = lru_init_params(N, D, generator=torch.Generator().manual_seed(2), dtype=F64)
    assert (p0.gamma_log < 0).all()  # init: gamma = sqrt(1 - |lambda|^2) < 1
    p, xs, resets, C, readout = make_problem(T=12, seed=2, params=p0)
    ref, _ = bptt(p, xs, resets, C, readout)
    good = rtrl(p, xs, resets, C, readout, *lru_zero_carry(B, N, D, dtype=F64))[0]
    bug = rtrl(p, xs, resets, C, readout, *lru_zero_carry(B, N, D, dtype=F64), buggy_EB=True)[0]
    for i in (3, 4):  # B_re, B_im
        assert rel_err(good[i], ref[i]) < 1e-8
        assert rel_err(bug[i], ref[i]) > 0.5
        assert (bug[i] * ref[i]).sum() < 0  # gamma_log < 0 flips the sign of the B gradient
    for i in (0, 1, 2):  # the other parameters do not see E_B
        assert rel_err(bug[i], ref[i]) < 1e-8


def random_step_inputs(Bsz, n, d, seed, dtype):
    g = torch.Generator().manual_seed(seed)
    p = random_params(n, d, g, dtype)
    rnd = lambda *s: torch.randn(*s, generator=g, dtype=dtype)  # noqa: E731
    x, state = rnd(Bsz, d), rnd(Bsz, 2, n)
    traces = LRUTraces(rnd(Bsz, 2, n), rnd(Bsz, 2, n), rnd(Bsz, 2, n, d))
    return p, x, state, traces


@pytest.mark.parametrize("Bsz,n,d,reset,dtype,tol", [
    (3, 37, 19, [True, False, True], torch.float32, 1e-5),
    (2, 192, 64, [0.0, 1.0], torch.float32, 1e-5),  # float flags
    (2, 5, 3, [False, True], torch.float64, 1e-12),
])
def test_triton_matches_reference(Bsz, n, d, reset, dtype, tol):
    p, x, state, traces = random_step_inputs(Bsz, n, d, seed=n, dtype=dtype)
    reset = torch.tensor(reset)
    inputs = [t.clone() for t in (*p, x, state, *traces)]
    ref_h, ref_tr = lru_step(p, x, state, traces, reset, backend="torch")
    h, tr = lru_step(p, x, state, traces, reset, backend="triton")
    for name, a, r in zip(("state", *LRUTraces._fields), (h, *tr), (ref_h, *ref_tr)):
        assert a.shape == r.shape and a.dtype == dtype
        assert rel_err(a, r) < tol, (name, rel_err(a, r))
    for a, b in zip(inputs, (*p, x, state, *traces)):
        assert torch.equal(a, b)  # inputs are not modified in place
    r = reset.bool()  # reset samples: e_lambda = lambda*0 + h_{t-1} = 0; the others are not zero
    assert (h[r] != 0).all() and (tr.lam[r] == 0).all() and (tr.lam[~r] != 0).all()


class CountingKernel:
    def __init__(self, kernel):
        self.kernel, self.launches = kernel, 0

    def __getitem__(self, grid):
        launch = self.kernel[grid]

        def counted(*args, **kwargs):
            self.launches += 1
            return launch(*args, **kwargs)

        return counted


@pytest.mark.parametrize("backend,launches", [("triton", 1), ("torch", 0), ("auto", 0)])
def test_backend_dispatch(monkeypatch, backend, launches):
    counter = CountingKernel(lru._lru_step_kernel)
    monkeypatch.setattr(lru, "_lru_step_kernel", counter)
    p, x, state, traces = random_step_inputs(2, 5, 3, seed=0, dtype=torch.float32)
    lru_step(p, x, state, traces, torch.tensor([False, True]), backend=backend)
    assert counter.launches == launches


def test_grads_from_carry_equal_step_then_grads():
    """The PPO update's one-read gradient (from the OLD E_B) equals lru_step + lru_grads (from the new traces)."""
    g = torch.Generator().manual_seed(5)
    B, n, D = 6, 7, 5
    params = LRUParams(*(p + 0.3 * torch.randn(p.shape, generator=g, dtype=torch.float64)
                         for p in lru_init_params(n, D, generator=g, dtype=torch.float64)))
    x = torch.randn(B, D, generator=g, dtype=torch.float64)
    state = torch.randn(B, 2, n, generator=g, dtype=torch.float64)
    traces = LRUTraces(*(torch.randn(t.shape, generator=g, dtype=torch.float64) for t in lru_zero_carry(B, n, D)[1]))
    reset = torch.tensor([0.0, 1.0, 0.0, 0.0, 1.0, 0.0], dtype=torch.float64)
    delta = torch.randn(B, 2, n, generator=g, dtype=torch.float64)

    new_state, new_traces = lru_step(params, x, state, traces, reset, backend="torch")
    torch.testing.assert_close(lru_state_step(params, x, state, reset), new_state, rtol=1e-14, atol=1e-14)
    expected = lru_grads(params, x, state, reset, new_state, new_traces, delta)
    got = lru_grads_from_carry(params, x, state, traces, reset, new_state, delta)
    for e, o in zip((expected[0], *expected[1]), (got[0], *got[1])):
        assert e.abs().max() > 1e-3
        torch.testing.assert_close(o, e, rtol=1e-12, atol=1e-12)


def test_state_unroll_equals_state_steps():
    """lru_state_unroll (T-BPTT's forward, lambda and B x hoisted out of the loop) equals T lru_state_steps, in value
    and in autograd gradient w.r.t. every parameter, the inputs and the initial state (float64)."""
    g = torch.Generator().manual_seed(6)
    M, T, n, D = 4, 7, 5, 3
    params = LRUParams(*(p + 0.3 * torch.randn(p.shape, generator=g, dtype=torch.float64)
                         for p in lru_init_params(n, D, generator=g, dtype=torch.float64)))
    x = torch.randn(M, T, D, generator=g, dtype=torch.float64)
    state = torch.randn(M, 2, n, generator=g, dtype=torch.float64)
    resets = (torch.rand(M, T, generator=g) < 0.3).to(torch.float64)
    resets[1, 3] = 1.0  # at least one reset inside a sequence
    weights = torch.randn(M, T, 2, n, generator=g, dtype=torch.float64)
    leaves = [*params, x, state]

    def value_and_grads(run):
        for leaf in leaves:
            leaf.grad = None
            leaf.requires_grad_(True)
        states = run()
        (states * weights).sum().backward()
        return states.detach(), [leaf.grad.clone() for leaf in leaves]

    def stepwise():
        s, out = state, []
        for t in range(T):
            s = lru_state_step(params, x[:, t], s, resets[:, t])
            out.append(s)
        return torch.stack(out, 1)

    expected, expected_grads = value_and_grads(stepwise)
    got, got_grads = value_and_grads(lambda: lru_state_unroll(params, x, state, resets))
    assert got.shape == (M, T, 2, n)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    for g_got, g_expected in zip(got_grads, expected_grads):
        assert g_expected.abs().max() > 0
        torch.testing.assert_close(g_got, g_expected, rtol=1e-12, atol=1e-12)
