"""RTU: exact RTRL == BPTT (float64), compact linear traces == full traces == BPTT, Triton kernel == PyTorch reference
(float32, interpreter), dispatch, the PPO update's gradient from stored carries (eager and torch.compile'd)."""
import math

import pytest
import torch

import triton_kernels.rtu as rtu
from triton_kernels._common import trace_contract
from triton_kernels.rtu import (RTUParams, RTUTraces, rtu_grads, rtu_grads_from_carry, rtu_init_params, rtu_state_step,
                                rtu_step, rtu_zero_carry)

ACTS = ["linear", "relu", "tanh"]
F64 = torch.float64


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


def random_params(n, D, seed, dtype=F64):
    """Init, then perturbed: random decays and frequencies, O(1) weights."""
    gen = torch.Generator().manual_seed(seed)
    p = rtu_init_params(n, D, r_min=0.5, r_max=0.95, generator=gen, dtype=dtype)
    noise = lambda shape, s: s * torch.randn(shape, generator=gen, dtype=dtype)
    return RTUParams(p.nu_log + noise(n, 0.3), p.theta_log + noise(n, 0.3),
                     p.W1 + noise((n, D), 0.5), p.W2 + noise((n, D), 0.5))


def make_sequence(T, B, n, D, seed):
    gen = torch.Generator().manual_seed(seed)
    xs = torch.randn(T, B, D, generator=gen, dtype=F64)
    readout = torch.randn(T, B, 2, n, generator=gen, dtype=F64)
    resets = torch.zeros(T, B, dtype=torch.bool)
    resets[0] = True
    resets[4, 1] = resets[5, 0] = resets[9, 0] = resets[9, 2] = True
    return xs, resets, readout


def output(state, activation):
    """What the loss sees: the non-linear RTU outputs its state; the linear RTU outputs f(c), here tanh."""
    return torch.tanh(state) if activation == "linear" else state


# ---------------- independent BPTT reference (plain autograd unroll, real/imag pairs) ----------------
def bptt_step(p, x, prev, reset, activation):
    nu, theta = p[0].exp(), p[1].exp()
    r = torch.exp(-nu)
    g, phi, gamma = r * torch.cos(theta), r * torch.sin(theta), torch.sqrt(1 - r**2)
    prev = prev * (1 - reset.to(x.dtype))[:, None, None]
    a1, a2 = prev[:, 0], prev[:, 1]
    c1 = g * a1 - phi * a2 + gamma * (x @ p[2].T)
    c2 = g * a2 + phi * a1 + gamma * (x @ p[3].T)
    new = torch.stack((c1, c2), dim=1)
    return {"linear": new, "relu": torch.relu(new), "tanh": torch.tanh(new)}[activation]


def bptt_grads(params, xs, resets, readout, activation):
    p = [t.clone().requires_grad_() for t in params]
    state = torch.zeros(xs.shape[1], 2, params.nu_log.shape[0], dtype=F64)
    loss = 0
    for t in range(len(xs)):
        state = bptt_step(p, xs[t], state, resets[t], activation)
        loss = loss + (readout[t] * output(state, activation)).sum()
    return RTUParams(*torch.autograd.grad(loss, p))


# ---------------- RTRL with the module under test ----------------
def rtrl_segment(params, xs, resets, readout, activation, carry, check_grad_x=True):
    """Run one segment from `carry`; return the summed parameter gradients and the carry at its end."""
    state, traces = carry
    total = [torch.zeros_like(t) for t in params]
    for t in range(len(xs)):
        prev = state
        state, traces = rtu_step(params, xs[t], state, traces, resets[t], activation, backend="torch")
        s = state.detach().requires_grad_()
        (delta,) = torch.autograd.grad((readout[t] * output(s, activation)).sum(), s)
        grad_x, grads = rtu_grads(params, xs[t], prev, resets[t], state, traces, delta, activation)
        total = [a + b for a, b in zip(total, grads)]
        if check_grad_x:  # one-step gradient w.r.t. x_t, previous state a constant
            x = xs[t].clone().requires_grad_()
            out = output(bptt_step(params, x, prev.detach(), resets[t], activation), activation)
            (ref,) = torch.autograd.grad((readout[t] * out).sum(), x)
            assert rel_err(grad_x, ref) < 1e-8
    return RTUParams(*total), (state, traces)


def assert_grads_close(got, ref, tol=1e-8):
    for name, a, b in zip(RTUParams._fields, got, ref):
        assert b.abs().max() > 1e-3, f"{name}: reference gradient is ~0, the test would be vacuous"
        assert rel_err(a, b) < tol, f"{name}: rel err {rel_err(a, b):.2e}"


@pytest.mark.parametrize("activation", ACTS)
def test_rtrl_equals_bptt(activation):
    T, B, n, D = 12, 3, 5, 4
    params = random_params(n, D, seed=1)
    xs, resets, readout = make_sequence(T, B, n, D, seed=2)
    got, _ = rtrl_segment(params, xs, resets, readout, activation, rtu_zero_carry(B, n, D, dtype=F64))
    assert_grads_close(got, bptt_grads(params, xs, resets, readout, activation))


@pytest.mark.parametrize("activation", ACTS)
def test_rtrl_segments_equal_bptt_over_concatenation(activation):
    B, n, D = 3, 5, 4
    params = random_params(n, D, seed=3)
    xs, resets, readout = make_sequence(16, B, n, D, seed=4)  # resets at t=5 = first step of segment 2
    carry, total = rtu_zero_carry(B, n, D, dtype=F64), [0, 0, 0, 0]
    for lo, hi in [(0, 5), (5, 12), (12, 16)]:
        grads, carry = rtrl_segment(params, xs[lo:hi], resets[lo:hi], readout[lo:hi], activation, carry, False)
        carry = (carry[0].clone(), RTUTraces(*(t.clone() for t in carry[1])))  # as if stored in a buffer
        total = [a + b for a, b in zip(total, grads)]
    assert_grads_close(total, bptt_grads(params, xs, resets, readout, activation))


def bptt_final_state_jacobians(params, xs, resets, activation):
    """d(final state)/dW1 and d(final state)/dW2 by autograd through the unrolled sequence, each (B, 2, n, n, D)."""
    def final_state(W1, W2):
        p = (params.nu_log, params.theta_log, W1, W2)
        state = torch.zeros(xs.shape[1], 2, params.nu_log.shape[0], dtype=F64)
        for t in range(len(xs)):
            state = bptt_step(p, xs[t], state, resets[t], activation)
        return state
    return torch.autograd.functional.jacobian(final_state, (params.W1, params.W2))


def times_i(E):
    """(E1, E2) -> (-E2, E1) along dim 1: multiplication by i of E = E1 + i E2."""
    return torch.stack((-E[:, 1], E[:, 0]), dim=1)


@pytest.mark.parametrize("T", [10, 12])  # resets at t=4 (sample 1), 5 (sample 0), 9 (samples 0, 2): t=9 last or not
def test_linear_w2_jacobian_is_i_times_w1_jacobian(T):
    """Linear RTU: c_t = lambda c_{t-1} + gamma (W1 x_t + i W2 x_t), so dc/dW2 = i dc/dW1 (E1_W2 = -E2_W1,
    E2_W2 = E1_W1). Checked on the BPTT Jacobians, independently of the RTRL code; the non-linear RTU has no such
    identity (f' differs between the two parts). The RTRL traces are the diagonal blocks of these Jacobians."""
    B, n, D = 3, 5, 4
    params = random_params(n, D, seed=11)
    xs, resets, _ = make_sequence(T, B, n, D, seed=12)
    J1, J2 = bptt_final_state_jacobians(params, xs, resets, "linear")
    assert J1.abs().max() > 1e-2
    assert rel_err(J2, times_i(J1)) < 1e-12
    diag = lambda J: J.diagonal(dim1=2, dim2=3).permute(0, 1, 3, 2)  # (B, 2, n, D): d c_k / d W[k, :]
    assert (J1 * (1 - torch.eye(n, dtype=F64)[:, :, None])).abs().max() == 0  # unit k depends on row k of W only
    carry = rtu_zero_carry(B, n, D, dtype=F64)
    for t in range(T):
        carry = rtu_step(params, xs[t], *carry, resets[t], "linear", backend="torch")
        assert rel_err(carry[1].W2, times_i(carry[1].W1)) < 1e-12  # at every step, resets included
    assert rel_err(carry[1].W1, diag(J1)) < 1e-12 and rel_err(carry[1].W2, diag(J2)) < 1e-12
    J1, J2 = bptt_final_state_jacobians(params, xs, resets, "tanh")
    assert rel_err(J2, times_i(J1)) > 1e-2


def compact(traces):
    """The compact form of full linear-RTU traces: W2 dropped (E_W2 = i E_W1)."""
    return traces._replace(W2=traces.W2[:, :0])


@pytest.mark.parametrize("segments", [[(0, 12)], [(0, 5), (5, 12), (12, 16)]])
def test_compact_linear_traces_equal_full_traces_and_bptt(segments):
    """Storing only the W1 traces of the linear RTU: the same gradients as the full traces and as BPTT, resets
    included (t=5 resets sample 0 at the start of a segment), also when the carry is stored between segments."""
    B, n, D = 3, 5, 4
    params = random_params(n, D, seed=13)
    xs, resets, readout = make_sequence(segments[-1][1], B, n, D, seed=14)
    carries = {"full": rtu_zero_carry(B, n, D, dtype=F64), "compact": rtu_zero_carry(B, n, D, dtype=F64, compact=True)}
    assert carries["compact"][1].W2.shape == (B, 0, n, D)
    totals = {}
    for name in carries:
        total = [0, 0, 0, 0]
        for lo, hi in segments:
            grads, carry = rtrl_segment(params, xs[lo:hi], resets[lo:hi], readout[lo:hi], "linear", carries[name])
            carries[name] = (carry[0].clone(), RTUTraces(*(t.clone() for t in carry[1])))  # as if stored in a buffer
            total = [a + b for a, b in zip(total, grads)]
        totals[name] = total
    assert carries["compact"][1].W2.shape == (B, 0, n, D)
    (state, traces), (full_state, full_traces) = carries["compact"], carries["full"]
    for got, full in zip((state, *traces[:3]), (full_state, *full_traces[:3])):
        assert torch.equal(got, full)  # the same arithmetic for everything that is stored
    assert_grads_close(totals["compact"], totals["full"], tol=1e-12)
    assert_grads_close(totals["compact"], bptt_grads(params, xs, resets, readout, "linear"))


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_compact_traces_rejected_for_nonlinear_rtu(activation):
    params, x, state, traces, reset = random_step_inputs(3, 5, 4, F64, seed=0)
    with pytest.raises(ValueError, match="linear RTU only"):
        rtu_step(params, x, state, compact(traces), reset, activation, backend="torch")
    with pytest.raises(ValueError, match="linear RTU only"):
        rtu_grads_from_carry(params, x, state, compact(traces), reset, state, state, activation)


@pytest.mark.parametrize("activation", ["linear", "relu"])
def test_official_theta_bug_is_detected(activation, monkeypatch):
    """The official code drops the factor theta in d/dtheta_log: its gradient is the true one / theta."""
    T, B, n, D = 12, 3, 5, 4
    params = random_params(n, D, seed=5)
    xs, resets, readout = make_sequence(T, B, n, D, seed=6)
    ref = bptt_grads(params, xs, resets, readout, activation)
    exact = rtu.rtu_coefficients

    def buggy(p):
        c = exact(p)
        theta = p.theta_log.exp()
        return c._replace(dg_th=c.dg_th / theta, dphi_th=c.dphi_th / theta)

    monkeypatch.setattr(rtu, "rtu_coefficients", buggy)
    got, _ = rtrl_segment(params, xs, resets, readout, activation, rtu_zero_carry(B, n, D, dtype=F64), False)
    theta = params.theta_log.exp()
    assert rel_err(got.theta_log, ref.theta_log / theta) < 1e-8  # the bug is exactly "/ theta"
    assert rel_err(got.theta_log, ref.theta_log) > 1e-2  # and the RTRL == BPTT test would catch it
    assert rel_err(got.nu_log, ref.nu_log) < 1e-8


def test_init_params():
    n, D = 2000, 16
    p = rtu_init_params(n, D, r_min=0.4, r_max=0.9, generator=torch.Generator().manual_seed(0))
    r, theta = torch.exp(-p.nu_log.exp()), p.theta_log.exp()
    assert p.W1.shape == p.W2.shape == (n, D) and p.nu_log.dtype == torch.float32
    assert 0.4 - 1e-6 <= r.min() and r.max() <= 0.9 + 1e-6
    assert abs((r**2).mean().item() - (0.4**2 + 0.9**2) / 2) < 0.02  # r^2 uniform: uniform on the ring
    assert 0 < theta.min() and theta.max() <= 2 * math.pi + 1e-5
    assert abs(p.W1.var().item() * D - 1) < 0.05
    coeffs = rtu.rtu_coefficients(rtu_init_params(n, D, generator=torch.Generator().manual_seed(1)))
    assert all(torch.isfinite(c).all() for c in coeffs)  # r_min = 0, r_max = 1 extremes stay finite


@pytest.mark.parametrize("compiled", [False, True])
def test_coefficients_accurate_as_r_tends_to_1(compiled):
    """gamma = sqrt(1 - r^2) and dgamma stay accurate in float32 down to nu = exp(nu_log) = 1e-9 (r = 1 to float32
    precision), eager and torch.compile'd (whose vectorised CPU code turns expm1(x) into exp(x) - 1)."""
    nu = torch.tensor([1e-1, 1e-3, 1e-5, 1e-7, 3e-8, 1e-9] + [0.5] * 10)  # 16: one full vector of the compiled loop
    params = RTUParams(nu.log(), torch.zeros(16), torch.zeros(16, 2), torch.zeros(16, 2))
    coefficients = torch.compile(rtu.rtu_coefficients, dynamic=False) if compiled else rtu.rtu_coefficients
    got = coefficients(params)
    ref = rtu.rtu_coefficients(RTUParams(*(p.double() for p in params)))
    for name in ("gamma", "dgamma"):
        g, r = getattr(got, name), getattr(ref, name)
        assert rel_err(g / r, torch.ones_like(r)) < 1e-6, name


# ---------------- Triton kernel == reference ----------------
def random_step_inputs(B, n, D, dtype, seed):
    gen = torch.Generator().manual_seed(seed)
    rnd = lambda *s: torch.randn(*s, generator=gen, dtype=dtype)
    params = random_params(n, D, seed, dtype)
    traces = RTUTraces(rnd(B, 2, n), rnd(B, 2, n), rnd(B, 2, n, D), rnd(B, 2, n, D))
    reset = torch.tensor([True, False, True])[:B] if B == 3 else torch.tensor([False, True])
    return params, rnd(B, D), rnd(B, 2, n), traces, reset


@pytest.mark.parametrize("activation", ACTS)
@pytest.mark.parametrize("B,n,D,dtype", [(3, 37, 19, torch.float32), (2, 192, 64, torch.float32),
                                         (3, 5, 3, torch.float64)])
def test_triton_matches_reference(B, n, D, dtype, activation):
    params, x, state, traces, reset = random_step_inputs(B, n, D, dtype, seed=n + D)
    if dtype == torch.float64:
        reset = reset.to(dtype)  # float resets are accepted too
    inputs = [t.clone() for t in (*params, x, state, *traces, reset)]
    ref_state, ref_traces = rtu_step(params, x, state, traces, reset, activation, backend="torch")
    got_state, got_traces = rtu_step(params, x, state, traces, reset, activation, backend="triton")
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    for name, a, b in zip(("state", *RTUTraces._fields), (got_state, *got_traces), (ref_state, *ref_traces)):
        assert a.shape == b.shape and a.dtype == b.dtype
        assert rel_err(a, b) < tol, f"{name}: rel err {rel_err(a, b):.2e}"
    # reset samples start from a zero carry, so E1_W2 = g*0 - phi*0 stays exactly 0 there
    assert (got_traces.W2[reset.bool(), 0] == 0).all() and (ref_traces.W2[reset.bool(), 0] == 0).all()
    assert (ref_traces.W2[~reset.bool(), 0] != 0).any()
    for before, after in zip(inputs, (*params, x, state, *traces, reset)):
        assert torch.equal(before, after)  # inputs not modified in place


@pytest.mark.parametrize("B,n,D,dtype", [(3, 37, 19, torch.float32), (3, 5, 3, torch.float64)])
def test_triton_compact_matches_reference(B, n, D, dtype):
    """Compact linear traces: the kernel skips the W2 traces and computes the rest exactly as with full traces."""
    params, x, state, traces, reset = random_step_inputs(B, n, D, dtype, seed=n + D)
    ref_state, ref_traces = rtu_step(params, x, state, compact(traces), reset, "linear", backend="torch")
    got_state, got_traces = rtu_step(params, x, state, compact(traces), reset, "linear", backend="triton")
    _, full_traces = rtu_step(params, x, state, traces, reset, "linear", backend="triton")
    assert got_traces.W2.shape == ref_traces.W2.shape == (B, 0, n, D)
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    names = ("state", *RTUTraces._fields[:3])
    for name, a, b in zip(names, (got_state, *got_traces[:3]), (ref_state, *ref_traces[:3])):
        assert a.shape == b.shape and a.dtype == b.dtype
        assert rel_err(a, b) < tol, f"{name}: rel err {rel_err(a, b):.2e}"
    assert torch.equal(got_traces.W1, full_traces.W1)


# ---------------- dispatch ----------------
class CountingKernel:
    def __init__(self, kernel):
        self.kernel, self.launches = kernel, 0

    def __getitem__(self, grid):
        def launch(*args, **kwargs):
            self.launches += 1
            return self.kernel[grid](*args, **kwargs)
        return launch


@pytest.mark.parametrize("backend,expected", [("triton", 1), ("torch", 0), ("auto", 0)])
def test_dispatch(backend, expected, monkeypatch):
    counter = CountingKernel(rtu._rtu_step_kernel)
    monkeypatch.setattr(rtu, "_rtu_step_kernel", counter)
    params, x, state, traces, reset = random_step_inputs(3, 7, 5, torch.float32, seed=0)
    new_state, _ = rtu_step(params, x, state, traces, reset, "relu", backend=backend)
    assert counter.launches == expected
    ref_state, _ = rtu_step(params, x, state, traces, reset, "relu", backend="torch")
    assert rel_err(new_state, ref_state) < 1e-5


def random_carry(B, n, D, activation, seed, is_compact=False):
    """Random float64 parameters, input, carry (compact: W2 = i W1 implied), reset and output gradient."""
    g = torch.Generator().manual_seed(seed)
    params = RTUParams(*(p + 0.3 * torch.randn(p.shape, generator=g, dtype=F64)
                         for p in rtu_init_params(n, D, generator=g, dtype=F64)))
    x = torch.randn(B, D, generator=g, dtype=F64)
    state = torch.randn(B, 2, n, generator=g, dtype=F64)
    traces = RTUTraces(*(torch.randn(t.shape, generator=g, dtype=F64) for t in rtu_zero_carry(B, n, D)[1]))
    reset = torch.tensor([0.0, 1.0, 0.0, 0.0, 1.0, 0.0] * (B // 6) + [0.0] * (B % 6), dtype=F64)
    delta = torch.randn(B, 2, n, generator=g, dtype=F64)
    return params, x, state, compact(traces) if is_compact else traces, reset, delta


CARRY_VARIANTS = [("linear", False), ("linear", True), ("relu", False), ("tanh", False)]


@pytest.mark.parametrize("activation,is_compact", CARRY_VARIANTS)
def test_grads_from_carry_equal_step_then_grads(activation, is_compact):
    """The PPO update's one-read gradient (from the OLD traces) equals rtu_step + rtu_grads (from the new ones)."""
    B, n, D = 6, 7, 5
    params, x, state, traces, reset, delta = random_carry(B, n, D, activation, seed=5, is_compact=is_compact)
    new_state, new_traces = rtu_step(params, x, state, traces, reset, activation, backend="torch")
    torch.testing.assert_close(rtu_state_step(params, x, state, reset, activation), new_state, rtol=0, atol=0)
    expected = rtu_grads(params, x, state, reset, new_state, new_traces, delta, activation)
    got = rtu_grads_from_carry(params, x, state, traces, reset, new_state, delta, activation)
    for e, o in zip((expected[0], *expected[1]), (got[0], *got[1])):
        assert e.abs().max() > 1e-3
        torch.testing.assert_close(o, e, rtol=1e-12, atol=1e-12)
    if is_compact:  # the same gradients as full traces whose W2 traces are i times the W1 traces
        full = traces._replace(W2=times_i(traces.W1))
        got_full = rtu_grads_from_carry(params, x, state, full, reset, new_state, delta, activation)
        for e, o in zip((got_full[0], *got_full[1]), (got[0], *got[1])):
            torch.testing.assert_close(o, e, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("B,rows_per_block", [(64, 4), (6, 4), (7, 4), (1, 4), (8, 8), (8, 16), (8, None)])
def test_trace_contract_of_buffer_rows(B, rows_per_block):
    """trace_contract(a, E, index) (blocked sums of gathered rows) == trace_contract(a, E[index]), any B."""
    g = torch.Generator().manual_seed(B)
    E = torch.randn(3 * B, 2, 5, 4, generator=g, dtype=F64)
    a = torch.randn(B, 2, 5, generator=g, dtype=F64)
    index = torch.randperm(3 * B, generator=g)[:B]
    got = trace_contract(a, E, index, rows_per_block)
    torch.testing.assert_close(got, trace_contract(a, E[index]), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("activation,is_compact", [("linear", True), ("relu", False)])
def test_grads_from_buffer_rows_compiled_equal_reference(activation, is_compact):
    """The PPO update's call, rtu_grads_from_carry(..., index) on whole buffers, torch.compile'd (the fast path:
    the W traces are contracted in blocks of gathered rows, never gathered) equals the eager gradient of the
    gathered carry."""
    B, n, D, rows = 12, 7, 5, 30
    params, x, _, _, reset, delta = random_carry(B, n, D, activation, seed=7)
    _, _, b_state, b_traces, _, _ = random_carry(rows, n, D, activation, seed=8, is_compact=is_compact)
    index = torch.randperm(rows, generator=torch.Generator().manual_seed(9))[:B]
    state, traces = b_state[index], RTUTraces(*(t[index] for t in b_traces))
    new_state = rtu_state_step(params, x, state, reset, activation)
    expected = rtu_grads_from_carry(params, x, state, traces, reset, new_state, delta, activation)
    compiled = torch.compile(rtu_grads_from_carry, dynamic=False)
    for fn in (rtu_grads_from_carry, compiled):
        got = fn(params, x, b_state, b_traces, reset, new_state, delta, activation, index=index)
        for e, o in zip((expected[0], *expected[1]), (got[0], *got[1])):
            assert e.abs().max() > 1e-3
            torch.testing.assert_close(o, e, rtol=1e-10, atol=1e-10)
