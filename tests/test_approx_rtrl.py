"""algos/td_animal_learning.py, general-cell learners: exact RTRL on a dense tanh RNN, UORO, KF-RTRL and SnAp-1 (on the
dense RNN and on the GRU).

- Exact dense RTRL equals backprop through the whole history (autograd), float64, episode resets included.
- UORO and KF-RTRL are unbiased: over K independent draws of their random signs (same parameters, same inputs), the
  mean gradient estimate equals the exact RTRL gradient. The tolerance is a z-score bound: every entry of
  (mean of the K estimates - exact) / (sample std / sqrt(K)) lies within +-Z_MAX, so the allowed error shrinks as
  1 / sqrt(K). Fixed seed. The same statistic must reject a biased gradient (SnAp-1's) by a wide margin, so the
  bound is not vacuous.
- SnAp-1 equals exact RTRL (= autograd) when the recurrent matrix is diagonal, and differs from it when it is not.

The references are autograd unrolls of the model equations over the full history; they share no code with the
learners. A reset before step t zeroes h_{t-1} (the state is multiplied by 1 - done).
"""
import math

import pytest
import torch

import td_animal_learning as tdl

F64 = torch.float64
D = 4
DRAWS = 40_000  # independent estimates averaged in the unbiasedness tests
Z_MAX = 5.0  # bound on every standardised mean error (two-sided p ~ 6e-7 per entry under a normal approximation)


def inputs(T, seed=1):
    xs = torch.randn(T, D, generator=torch.Generator().manual_seed(seed), dtype=F64)
    xs[1::3] = (xs[1::3] > 0).to(F64)  # some binary observations too, as in the task
    return xs


def with_head(learner, seed=0):
    """A non-zero value head, so that every recurrent parameter gets a gradient."""
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        learner.w.copy_(torch.randn(learner.w.shape, generator=g, dtype=F64))
        learner.b.fill_(0.3)
    return learner


def dense(cls, n=5, seed=0, diagonal=False, **kw):
    learner = with_head(cls(D, n, generator=torch.Generator().manual_seed(seed), dtype=F64, **kw), seed)
    if diagonal:  # W_hh diagonal (W_in and b stay dense)
        with torch.no_grad():
            learner.W[:, :n] = torch.diag(torch.diagonal(learner.W[:, :n]))
    return learner


def gru(H=4, seed=0, diagonal=False):
    learner = with_head(tdl.GRUSnAp1(D, H, generator=torch.Generator().manual_seed(seed), dtype=F64), seed)
    if diagonal:  # each of the three H x H blocks of W_hh diagonal
        with torch.no_grad():
            learner.W_hh.view(3, H, H).mul_(torch.eye(H, dtype=F64))
    return learner


def ref_dense(leaves, xs, resets):
    W, w, b = leaves
    n = W.shape[0]
    h = torch.zeros(n, dtype=F64)
    for x, r in zip(xs, resets):
        if r:
            h = h * 0.0
        h = torch.tanh(W[:, :n] @ h + W[:, n:n + D] @ x + W[:, n + D])
    return w @ h + b


def ref_gru(leaves, xs, resets):
    W_ih, W_hh, b_ih, b_hh, w, b = leaves
    h = torch.zeros(W_hh.shape[1], dtype=F64)
    for x, r in zip(xs, resets):
        if r:
            h = h * 0.0
        (i_r, i_z, i_n), (h_r, h_z, h_n) = (W_ih @ x + b_ih).chunk(3), (W_hh @ h + b_hh).chunk(3)
        rg, zg = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
        ng = torch.tanh(i_n + rg * h_n)
        h = (1 - zg) * ng + zg * h
    return w @ h + b


RESETS = {10, 19}  # steps (1-based) before which the episode restarts


def check_against_autograd(learner, ref, T=25, checkpoints=(1, 2, 9, 10, 11, 19, 25), resets=RESETS):
    xs = inputs(T)
    flags = [t in resets for t in range(1, T + 1)]
    worst = 0.0
    for t in range(1, T + 1):
        v, grads = learner.step(xs[t - 1], reset=flags[t - 1])
        if t not in checkpoints:
            continue
        leaves = [p.detach().clone().requires_grad_() for p in learner.parameters()]
        v_ref = ref(leaves, xs[:t], flags[:t])
        refs = torch.autograd.grad(v_ref, leaves)
        assert abs(v.item() - v_ref.item()) <= 1e-10 * max(1.0, abs(v_ref.item())), (t, v.item(), v_ref.item())
        assert len(grads) == len(refs)
        for i, (g, r) in enumerate(zip(grads, refs)):
            assert g.shape == r.shape, (t, i)
            scale = r.abs().max().item()
            if t == max(checkpoints):  # (right after a reset, W_hh's gradient is structurally zero)
                assert scale > 1e-8, (t, i, "reference gradient is trivially zero")
            err = (g - r).abs().max().item() / max(scale, 1e-30)
            worst = max(worst, err)
            assert err < 1e-8, (type(learner).__name__, t, i, err)
    return worst


# ------------------------------------------------------------------------------------------------ exact RTRL
def test_dense_rtrl_equals_bptt_with_resets():
    check_against_autograd(dense(tdl.RNNRTRL), ref_dense)


def test_resets_matter():
    """The same stream without resets gives other gradients after the first reset (so the test above checks them)."""
    a, b = dense(tdl.RNNRTRL), dense(tdl.RNNRTRL)
    for t, x in enumerate(inputs(12), start=1):
        _, ga = a.step(x, reset=t in RESETS)
        _, gb = b.step(x)
    assert (ga[0] - gb[0]).abs().max() > 1e-3


# ------------------------------------------------------------------------------------------------ SnAp-1
def test_dense_snap1_equals_exact_rtrl_when_recurrence_is_diagonal():
    check_against_autograd(dense(tdl.RNNSnAp1, diagonal=True), ref_dense)


def test_gru_snap1_equals_exact_rtrl_when_recurrence_is_diagonal():
    check_against_autograd(gru(diagonal=True), ref_gru)


@pytest.mark.parametrize("make,ref", [(lambda: dense(tdl.RNNSnAp1), ref_dense), (lambda: gru(), ref_gru)])
def test_snap1_is_biased_when_recurrence_is_dense(make, ref):
    with pytest.raises(AssertionError):
        check_against_autograd(make(), ref)
    # and by a clear margin, not by rounding: the worst relative error over the run is above 1e-3
    learner, xs = make(), inputs(25)
    worst = 0.0
    for x in xs:
        _, grads = learner.step(x)
    leaves = [p.detach().clone().requires_grad_() for p in learner.parameters()]
    refs = torch.autograd.grad(ref(leaves, xs, [False] * len(xs)), leaves)
    for g, r in zip(grads, refs):
        worst = max(worst, ((g - r).abs().max() / r.abs().max()).item())
    assert worst > 1e-3, worst


# ------------------------------------------------------------------------------------------------ unbiasedness
def standardised_errors(draws, target):
    """(mean over draws - target) / (sample std / sqrt(K)), entrywise; entries with zero spread must be exact."""
    K = draws.shape[0]
    mean, sd = draws.mean(0), draws.std(0)
    spread = sd > 1e-12 * max(1.0, target.abs().max().item())
    assert torch.allclose(mean[~spread], target[~spread], rtol=0, atol=1e-12)
    return (mean[spread] - target[spread]) / (sd[spread] / math.sqrt(K)), spread


@pytest.mark.parametrize("cls", [tdl.RNNUORO, tdl.RNNKFRTRL])
def test_estimator_is_unbiased(cls):
    """K = DRAWS independent estimates of dv/dW (same init, same inputs, a reset at step 4): at steps 3, 6 and 9 the
    mean equals the exact RTRL gradient within Z_MAX standard errors in every entry; SnAp-1's biased gradient is
    rejected by the same statistic."""
    torch.manual_seed(0)
    n, T, checkpoints, resets = 4, 9, (3, 6, 9), {4}
    est = dense(cls, n=n, seed=3, draws=DRAWS)
    est.generator = torch.Generator().manual_seed(1234)  # the signs (fixed seed)
    exact, snap = dense(tdl.RNNRTRL, n=n, seed=3), dense(tdl.RNNSnAp1, n=n, seed=3)
    assert torch.equal(est.W, exact.W) and torch.equal(est.W, snap.W)
    for t, x in enumerate(inputs(T, seed=2), start=1):
        g_mean, = est.step(x, reset=t in resets)[1][:1]
        g_exact, = exact.step(x, reset=t in resets)[1][:1]
        g_snap, = snap.step(x, reset=t in resets)[1][:1]
        if t not in checkpoints:
            continue
        draws = est.draw_grads
        assert draws.shape == (DRAWS, n, n + D + 1)
        torch.testing.assert_close(g_mean, draws.mean(0), rtol=1e-12, atol=1e-12)  # step returns the mean
        z, spread = standardised_errors(draws, g_exact)
        assert spread.float().mean() > 0.9, "the estimates are (almost) not random"
        assert z.abs().max() < Z_MAX, (cls.__name__, t, z.abs().max().item())
        # the bound has power: the biased SnAp-1 gradient, as a false target, is far outside it
        z_snap = (draws.mean(0) - g_snap)[spread] / (draws.std(0)[spread] / math.sqrt(DRAWS))
        assert z_snap.abs().max() > 4 * Z_MAX, (cls.__name__, t, z_snap.abs().max().item())


@pytest.mark.parametrize("cls", [tdl.RNNUORO, tdl.RNNKFRTRL])
def test_estimator_influence_matrix_is_unbiased(cls):
    """The same for the influence matrix itself, M_t = d h_t / d W (UORO: s~ theta~^T; KF-RTRL: A (x) u)."""
    n, T = 3, 7
    est = dense(cls, n=n, seed=5, draws=DRAWS)
    est.generator = torch.Generator().manual_seed(99)
    exact = dense(tdl.RNNRTRL, n=n, seed=5)
    for x in inputs(T, seed=4):
        est.step(x)
        exact.step(x)
    if cls is tdl.RNNUORO:
        draws = est.s[:, :, None, None] * est.theta[:, None]  # (K, n, n, m)
    else:
        draws = est.A[:, :, :, None] * est.u[:, None, None, :]
    z, spread = standardised_errors(draws, exact.M)
    assert spread.float().mean() > 0.9
    assert z.abs().max() < Z_MAX, (cls.__name__, z.abs().max().item())


def test_estimators_are_seeded():
    """Same generator seed -> the same estimates; another seed -> other estimates."""
    outs = []
    for seed in (7, 7, 8):
        est = dense(tdl.RNNUORO, seed=0)
        est.generator = torch.Generator().manual_seed(seed)
        for x in inputs(6):
            _, g = est.step(x)
        outs.append(g[0])
    assert torch.equal(outs[0], outs[1]) and not torch.equal(outs[0], outs[2])


# ------------------------------------------------------------------------------------------------ sizes, FLOPs
@pytest.mark.parametrize("arch", tdl.APPROX_ARCHS)
def test_param_count_and_matmul_flops(arch):
    """The parameter count is the learner's; the analytic FLOPs of a step are at least the matrix-product FLOPs
    that torch counts in it, and (for the dense RNN's exact RTRL, where products dominate) not far above them."""
    from torch.utils.flop_counter import FlopCounterMode

    D12, budget = 12, 1664
    size = tdl.default_hidden_size(arch, D12, budget)
    learner = tdl.make_learner(arch, D12, size, tdl.Args(arch=arch), torch.Generator().manual_seed(0))
    n_rec = sum(p.numel() for p in learner.recurrent_parameters())
    assert n_rec == tdl.recurrent_param_count(arch, D12, size) and abs(n_rec - budget) / budget < 0.05
    x = torch.ones(D12)
    learner.step(x)
    with FlopCounterMode(display=False) as counter:
        learner.step(x)
    mm = counter.get_total_flops()
    update = tdl.UPDATE_FLOPS_PER_PARAM * sum(p.numel() for p in learner.parameters())
    analytic = tdl.flops_per_step(arch, D12, size) - update
    assert mm <= analytic, (arch, mm, analytic)
    if arch == "rnn_rtrl":
        assert analytic < 1.6 * mm, (mm, analytic)
        n = size
        assert tdl.flops_per_step(arch, D12, 2 * n) > 12 * tdl.flops_per_step(arch, D12, n)  # O(n^4)


def test_gru_snap1_starts_from_the_tbptt_gru_init():
    """The same seed gives the SnAp-1 GRU and the T-BPTT GRU the same initial weights (a like-for-like comparison)."""
    a = tdl.make_learner("gru_snap1", 12, 18, tdl.Args(arch="gru_snap1"), torch.Generator().manual_seed(3))
    b = tdl.make_learner("gru_tbptt", 12, 18, tdl.Args(arch="gru_tbptt"), torch.Generator().manual_seed(3))
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


# ------------------------------------------------------------------------------------------------ report script
def test_report_script_selects_and_tabulates(tmp_path):
    """approx_rtrl_report.py: the selected step size is the lowest mean MSRE over the selection seeds, a diverged
    step size is not eligible, runs at another step size are refused, and results_md.py reads records.csv."""
    import csv
    import json
    import os
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script = os.path.join(root, "scripts", "approx_rtrl_report.py")

    def summary(folder, arch, T, lr, seed, msre, isi=10, budget=""):
        setting = f"td_{arch}" + (f"_T{T}" if T else "") + budget + f"_lr{lr}"
        s = dict(arch=arch, isi=isi, seed=seed, steps=1000, msre=msre, msre_last_bin=msre, params=1700,
                 tbptt_len=T, flops_per_step=40000 if not T else 10000 * T, sec_per_step=1e-3,
                 learning_rate=float(lr), gamma=0.9, td_lambda=0.9, num_distractors=10, hidden_size=18,
                 run_name=f"TraceConditioning-ISI7-13__{setting}__{arch}__{seed}__1")
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, f"{setting}__{seed}.json"), "w") as f:
            json.dump(s, f)

    sel, runs = tmp_path / "sel", tmp_path / "runs"
    for lr, m in (("1e-4", 0.3), ("1e-3", 0.1), ("3e-3", 0.2)):
        for seed, dm in ((101, 0.0), (102, 0.01)):
            summary(sel, "rnn_uoro", None, lr, seed, m + dm)
            summary(sel, "gru_tbptt", 4, lr, seed, m + dm if lr != "1e-3" else 0.5)
    # 3e-4: one seed diverged (no summary; the sweep log says so) for UORO, whose 3e-4 is otherwise the best
    summary(sel, "rnn_uoro", None, "3e-4", 101, 0.01)
    os.makedirs(runs / ".logs")
    (runs / ".logs" / "TraceConditioning-ISI10__td_rnn_uoro_lr3e-4__102__abcd1234.log").write_text(
        "error: non-finite TD error at step 5\n")
    for seed in (101, 102):
        summary(sel, "gru_tbptt", 4, "3e-4", seed, 0.4)
    out = tmp_path / "out"
    run = lambda *a: subprocess.run([sys.executable, script, *a], capture_output=True, text=True)  # noqa: E731
    p = run("select", str(sel), "--runs-dir", str(runs), "--out", str(out), "--seeds", "101 102")
    assert p.returncode == 0, p.stderr
    chosen = {r["arch"]: r["learning_rate"] for r in csv.DictReader(open(out / "selected_lr.csv"))}
    assert chosen == {"rnn_uoro": "1e-3", "gru_tbptt": "3e-3"}
    assert (out / "sensitivity_isi10.png").exists()
    # a selection run with neither a summary nor a divergence is an error
    os.remove(sel / "td_gru_tbptt_T4_lr1e-4__102.json")
    assert run("select", str(sel), "--runs-dir", str(runs), "--out", str(out), "--seeds", "101 102").returncode != 0
    rep = tmp_path / "rep"
    for seed in (1, 2, 3):
        summary(rep, "rnn_uoro", None, "1e-3", seed, 0.1 + seed / 100)
        summary(rep, "gru_tbptt", 4, "3e-3", seed, 0.2)
    (out / "README.md").write_text("x\n<!-- approx-rtrl tables: written by scripts/approx_rtrl_report.py report; do "
                                   "not edit by hand -->\nold\n<!-- /approx-rtrl tables -->\ny\n")
    p = run("report", str(rep), "--out", str(out), "--selected", str(out / "selected_lr.csv"))
    assert p.returncode == 0, p.stderr
    text = (out / "README.md").read_text()
    assert "old" not in text and "| dense RNN, UORO | approximate RTRL, general cell | - | 1,700 | 40,000 |" in text
    assert text.startswith("x\n") and text.endswith("<!-- /approx-rtrl tables -->\ny\n")
    for f in ("records.csv", "msre.md", "msre_vs_flops_isi10.png", "time_vs_flops_isi10.png", "msre_vs_T_isi10.png"):
        assert (out / f).exists(), f
    sys.path.insert(0, os.path.join(root, "scripts"))
    import results_md

    results_md.at(str(out / "README.md"))  # records.csv has trace_records.csv's columns
    assert results_md.trace("records.csv", 10, "rnn_uoro", None, 1700) == "0.12"  # mean of 0.11, 0.12, 0.13
    summary(rep, "gru_tbptt", 4, "1e-3", 4, 0.2)  # a run at a step size that was not selected
    assert run("report", str(rep), "--out", str(out), "--selected", str(out / "selected_lr.csv")).returncode != 0
    os.remove(rep / "td_gru_tbptt_T4_lr1e-3__4.json")
    # another budget at the step size selected at the default budget (approx_rtrl.sh LR_BUDGET=-): refused unless
    # the report is told so
    summary(rep, "rnn_uoro", None, "1e-3", 1, 0.3, budget="_P800")
    assert run("report", str(rep), "--out", str(out), "--selected", str(out / "selected_lr.csv")).returncode != 0
    p = run("report", str(rep), "--out", str(out), "--selected", str(out / "selected_lr.csv"), "--lr-budget", "-")
    assert p.returncode == 0, p.stderr
    assert "| dense RNN, UORO | approximate RTRL, general cell | 800 |" in (out / "msre.md").read_text()
    assert "as the run goes on" not in (out / "msre.md").read_text()  # no curves in these summaries


def test_report_script_adds_curves_and_ranks_them(tmp_path):
    """add-curves copies a run's binned MSRE curve from its TensorBoard file into its summary (refusing a curve that
    does not end at the summary's last bin); with curves in every summary, report ranks the final window at a third,
    two thirds and the end of the run, and plots the curves."""
    import json
    import os
    import subprocess
    import sys

    from torch.utils.tensorboard import SummaryWriter

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script = os.path.join(root, "scripts", "approx_rtrl_report.py")
    run = lambda *a: subprocess.run([sys.executable, script, *a], capture_output=True, text=True)  # noqa: E731
    rep, runs = tmp_path / "rep", tmp_path / "runs"
    os.makedirs(rep)
    curves = {"rnn_uoro": [0.5, 0.1, 0.3], "gru_tbptt": [0.4, 0.2, 0.2]}  # UORO: first, then ahead, then behind
    for arch, curve in curves.items():
        for seed in (1, 2):
            T = 4 if arch == "gru_tbptt" else None
            setting = f"td_{arch}" + (f"_T{T}" if T else "") + "_lr1e-3"
            run_name = f"TraceConditioning-ISI7-13__{setting}__{arch}__{seed}__1"
            w = SummaryWriter(str(runs / f"ID{arch}{seed}" / run_name))
            for i, v in enumerate(curve):
                w.add_scalar("charts/msre_binned", v, min((i + 1) * 10, 25))
            w.close()
            s = dict(arch=arch, isi=10, seed=seed, steps=25, msre=float(sum(curve)) / 3, msre_last_bin=curve[-1],
                     msre_bin=10, params=100, tbptt_len=T, flops_per_step=1000, sec_per_step=1e-3,
                     learning_rate=1e-3, gamma=0.9, td_lambda=0.9, num_distractors=0, hidden_size=8,
                     run_name=run_name)
            (rep / f"{setting}__{seed}.json").write_text(json.dumps(s))
    p = run("add-curves", str(rep), "--runs-dir", str(runs))
    assert p.returncode == 0 and "added msre_binned to 4 of 4" in p.stdout, p.stderr
    got = json.loads((rep / "td_rnn_uoro_lr1e-3__1.json").read_text())["msre_binned"]
    assert got == [float(x) for x in __import__("numpy").float32(curves["rnn_uoro"])]
    out = tmp_path / "out"
    p = run("report", str(rep), "--out", str(out))
    assert p.returncode == 0, p.stderr
    md = (out / "msre.md").read_text()
    assert "| 10 steps | 20 steps | 25 steps |" in md
    assert "| GRU, T-BPTT, T = 4 | - | 0.4000 (1) | 0.2000 (2) | 0.2000 (1) |" in md
    assert "| dense RNN, UORO | - | 0.5000 (2) | 0.1000 (1) | 0.3000 (2) |" in md
    assert (out / "msre_curves_isi10.png").exists()
    # a summary whose last bin disagrees with its TensorBoard curve is refused
    s = json.loads((rep / "td_rnn_uoro_lr1e-3__2.json").read_text())
    del s["msre_binned"]
    s["msre_last_bin"] = 0.9
    (rep / "td_rnn_uoro_lr1e-3__2.json").write_text(json.dumps(s))
    p = run("add-curves", str(rep), "--runs-dir", str(runs))
    assert p.returncode != 0 and "ends at" in p.stderr


def test_report_script_loads_each_run_once_and_keeps_step_sizes_apart(tmp_path):
    """approx_rtrl_report.py's loader (the trace-conditioning one): two step sizes of one learner and seed are two
    records, and so are two budgets that give the same network, while a second copy of a run's summary is the same
    record, not a second seed."""
    import importlib.util
    import json
    import os
    import shutil

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    spec = importlib.util.spec_from_file_location("approx_rtrl_report",
                                                  os.path.join(root, "scripts", "approx_rtrl_report.py"))
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    for lr, msre in (("1e-3", 0.1), ("3e-3", 0.2)):  # identical but for the step size
        s = dict(arch="rnn_uoro", isi=10, seed=101, steps=1000, msre=msre, msre_last_bin=msre, params=1700,
                 tbptt_len=None, flops_per_step=40000, sec_per_step=1e-3, learning_rate=float(lr), gamma=0.9,
                 td_lambda=0.9, num_distractors=10, hidden_size=18,
                 run_name=f"TraceConditioning-ISI10__td_rnn_uoro_lr{lr}__rnn_uoro__101__1")
        (tmp_path / f"td_rnn_uoro_lr{lr}__101.json").write_text(json.dumps(s))
    (tmp_path / "copy").mkdir()
    shutil.copy(tmp_path / "td_rnn_uoro_lr1e-3__101.json", tmp_path / "copy")
    recs = report.load([str(tmp_path)])
    assert sorted((r["learning_rate"], r["msre"]) for r in recs) == [(1e-3, 0.1), (3e-3, 0.2)]
    assert {r["budget"] for r in recs} == {"-"} and {r["T"] for r in recs} == {"-"}
    # a budget that gives the default network (e.g. a FLOPs budget equal to the default's FLOPs) is a run of its own
    s.update(learning_rate=1e-3, msre=0.1, run_name="TraceConditioning-ISI10__td_rnn_uoro_F40000_lr1e-3__rnn_uoro__101__2")
    (tmp_path / "td_rnn_uoro_F40000_lr1e-3__101.json").write_text(json.dumps(s))
    recs = report.load([str(tmp_path)])
    assert sorted((r["budget"], r["learning_rate"]) for r in recs) == [("-", 1e-3), ("-", 3e-3), ("F40000", 1e-3)]
    assert [report.budget_of(dict(run_name=f"TraceConditioning-ISI10__td_gru_tbptt_T16{b}_lr3e-3__gru_tbptt__1__1"))
            for b in ("", "_P800", "_F56591")] == ["-", "800", "F56591"]
    assert [report.budget_tag(b) for b in ("-", "800", "F56591")] == ["", "_P800", "_F56591"]
