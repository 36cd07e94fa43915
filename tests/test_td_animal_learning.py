"""algos/td_animal_learning.py: trace-conditioning statistics, MSRE, exact gradients of every learner, smoke runs,
the completion marker done.json, checkpoints (kill and resume, extension) and one-line errors.

The gradient references below are independent autograd unrolls of the model equations (triton_kernels/rtu.py,
lru.py, PyTorch's GRU equations) over the full history, written with real arithmetic; they share no code with the
learners.
"""
import json
import math
import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
import tyro

import td_animal_learning as tdl
from script_runner import assert_same_run, run_and_kill, run_script

F64 = torch.float64
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "algos", "td_animal_learning.py")


# ------------------------------------------------------------------------------------------------ environment
def runs_of_ones(col):
    """(onset indices, lengths) of maximal runs of ones; a run still going at the end is dropped."""
    padded = np.concatenate(([0], col.astype(int), [0]))
    diff = np.diff(padded)
    starts, ends = np.flatnonzero(diff == 1), np.flatnonzero(diff == -1)
    keep = ends < len(col)
    return starts[keep], (ends - starts)[keep]


@pytest.fixture(scope="module")
def long_run():
    env = tdl.TraceConditioning((7, 13), (80, 120), num_distractors=10, seed=3)
    obs, cums = [env.reset()], []
    for _ in range(50_000):
        o, c = env.step()
        obs.append(o)
        cums.append(c)
    return np.array(obs), np.array(cums)


def test_env_cs_us_and_trial_timing(long_run):
    O, cums = long_run
    assert O.shape == (50_001, 12) and set(np.unique(O)) <= {0.0, 1.0}
    np.testing.assert_array_equal(cums, O[1:, 0])  # cumulant c_{t+1} = US in o_{t+1}
    cs_on, cs_len = runs_of_ones(O[:, 1])
    us_on, us_len = runs_of_ones(O[:, 0])
    assert cs_on[0] == 0 and len(cs_on) > 400
    assert (cs_len == 4).all() and (us_len == 2).all()
    # every US onset follows the latest CS onset (= trial start) by ISI in [7, 13], every value of the interval occurs
    trial_of_us = np.searchsorted(cs_on, us_on, side="right") - 1
    isi = us_on - cs_on[trial_of_us]
    assert len(np.unique(trial_of_us)) == len(us_on)  # one US per trial
    assert set(isi) == set(range(7, 14))
    # trial gaps = ISI + ITI in [7 + 80, 13 + 120], close to both ends over ~450 trials
    gaps = np.diff(cs_on)
    assert gaps.min() >= 87 and gaps.max() <= 133
    assert gaps.min() <= 92 and gaps.max() >= 128
    assert abs(gaps.mean() - (10 + 100)) < 2.0
    # ITI of trial k = next trial start - US onset of trial k: all of 80..120 occur (inclusive ends), nothing else
    np.testing.assert_array_equal(trial_of_us, np.arange(len(us_on)))
    k = min(len(us_on), len(cs_on) - 1)
    assert set(cs_on[1:k + 1] - us_on[:k]) == set(range(80, 121))


def test_env_distractor_rates(long_run):
    O, _ = long_run
    for d in range(10):
        col = O[:, 2 + d]
        _, lengths = runs_of_ones(col)
        assert (lengths == 4).all(), d
        off_before = col[:-1] == 0
        onsets = off_before & (col[1:] == 1)
        p, n = 1.0 / (10 * (d + 1)), off_before.sum()
        p_hat = onsets.sum() / n
        assert abs(p_hat - p) < 4 * math.sqrt(p * (1 - p) / n), (d, p_hat, p)


def test_env_seeded_and_no_distractors():
    a, b = (tdl.TraceConditioning((14, 26), (80, 120), 3, seed=7) for _ in range(2))
    oa = [a.reset()] + [a.step()[0] for _ in range(500)]
    ob = [b.reset()] + [b.step()[0] for _ in range(500)]
    np.testing.assert_array_equal(np.array(oa), np.array(ob))
    env = tdl.TraceConditioning((7, 13), (80, 120), 0, seed=0)
    assert env.reset().shape == (2,)


# ------------------------------------------------------------------------------------------------ MSRE
def test_returns_and_msre_by_hand():
    # cumulants[t] = c_{t+1}; gamma = 0.5:
    # G3 = 1, G2 = 0 + 0.5*1 = 0.5, G1 = 1 + 0.5*0.5 = 1.25, G0 = 0 + 0.5*1.25 = 0.625
    G = tdl.compute_returns([0.0, 1.0, 0.0, 1.0], 0.5)
    np.testing.assert_allclose(G, [0.625, 1.25, 0.5, 1.0], rtol=0, atol=1e-15)
    # errors: (0.5-0.625)^2 = 0.015625, (1-1.25)^2 = 0.0625, (0.5-0.5)^2 = 0, (0-1)^2 = 1 -> mean 0.26953125
    assert tdl.msre([0.5, 1.0, 0.5, 0.0], G) == pytest.approx(0.26953125, abs=1e-15)
    assert tdl.msre(G, G) == 0.0


# ------------------------------------------------------------------------------------------------ gradients
def f_act(z, activation):
    return torch.relu(z) if activation == "relu" else torch.tanh(z)


def ref_value(arch, leaves, xs, activation, cut=0):
    """v(o_t) by a full-history autograd unroll; the state is detached after `cut` steps (0: no truncation)."""
    if arch.startswith("rtu"):
        nu_log, theta_log, W1, W2, w, b = leaves
        nu, theta = nu_log.exp(), theta_log.exp()
        r = torch.exp(-nu)
        g, phi, gam = r * torch.cos(theta), r * torch.sin(theta), torch.sqrt(1 - r * r)
        s1 = s2 = torch.zeros_like(nu)
        for k, x in enumerate(xs):
            if k == cut and cut:
                s1, s2 = s1.detach(), s2.detach()
            a1 = g * s1 - phi * s2 + gam * (W1 @ x)
            a2 = g * s2 + phi * s1 + gam * (W2 @ x)
            s1, s2 = (f_act(a1, activation), f_act(a2, activation)) if arch == "rtu_nonlinear" else (a1, a2)
        s = torch.cat([s1, s2])
        feat = s if arch == "rtu_nonlinear" else f_act(s, activation)
        return w @ feat + b
    if arch == "gru_tbptt":
        W_ih, W_hh, b_ih, b_hh, w, b = leaves
        h = torch.zeros(W_hh.shape[1], dtype=F64)
        for k, x in enumerate(xs):
            if k == cut and cut:
                h = h.detach()
            gi, gh = W_ih @ x + b_ih, W_hh @ h + b_hh
            (i_r, i_z, i_n), (h_r, h_z, h_n) = gi.chunk(3), gh.chunk(3)
            rg, zg = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
            ng = torch.tanh(i_n + rg * h_n)
            h = (1 - zg) * ng + zg * h
        return w @ h + b
    # LRU (RTRL or T-BPTT), real/imaginary pairs
    nu_log, theta_log, gamma_log, B_re, B_im, C_re, C_im, w, b = leaves
    r, theta = torch.exp(-nu_log.exp()), theta_log.exp()
    l_re, l_im, gam = r * torch.cos(theta), r * torch.sin(theta), gamma_log.exp()
    h_re = h_im = torch.zeros_like(nu_log)
    for k, x in enumerate(xs):
        if k == cut and cut:
            h_re, h_im = h_re.detach(), h_im.detach()
        h_re, h_im = (l_re * h_re - l_im * h_im + gam * (B_re @ x), l_re * h_im + l_im * h_re + gam * (B_im @ x))
    return w @ f_act(C_re @ h_re - C_im @ h_im, activation) + b


def make_f64_learner(arch, activation="relu", T=50, seed=0):
    args = tdl.Args(arch=arch, activation=activation, tbptt_len=T)
    size = {"rtu_nonlinear": 7, "rtu_linear": 7, "lru_rtrl": 6, "gru_tbptt": 5, "lru_tbptt": 6}[arch]
    learner = tdl.make_learner(arch, 4, size, args, torch.Generator().manual_seed(seed), dtype=F64)
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():  # a non-zero value head, so that every parameter gets a gradient
        learner.w.copy_(torch.randn(learner.w.shape, generator=g, dtype=F64))
        learner.b.fill_(0.3)
    return learner


def check_gradients(arch, activation, T, checkpoints, cut_of_t):
    learner = make_f64_learner(arch, activation, T)
    g = torch.Generator().manual_seed(1)
    xs = torch.randn(max(checkpoints), 4, generator=g, dtype=F64)
    xs[1::3] = (xs[1::3] > 0).to(F64)  # some binary observations too, as in the task
    for t in range(1, max(checkpoints) + 1):
        v, grads = learner.step(xs[t - 1])
        if t not in checkpoints:
            continue
        leaves = [p.detach().clone().requires_grad_() for p in learner.parameters()]
        v_ref = ref_value(arch, leaves, xs[:t], activation, cut=cut_of_t(t))
        refs = torch.autograd.grad(v_ref, leaves)
        assert abs(v.item() - v_ref.item()) <= 1e-10 * max(1.0, abs(v_ref.item())), (t, v.item(), v_ref.item())
        assert len(grads) == len(refs)
        for i, (gr, ref) in enumerate(zip(grads, refs)):
            assert gr.shape == ref.shape, (t, i)
            scale = ref.abs().max().item()
            if t == max(checkpoints):  # (at t = 1 some gradients are structurally zero, e.g. theta_log's)
                assert scale > 1e-8, (arch, t, i, "reference gradient is trivially zero")
            err = (gr - ref).abs().max().item() / max(scale, 1e-30)
            assert err < 1e-8, (arch, activation, t, i, err)


@pytest.mark.parametrize("arch,activation", [("rtu_nonlinear", "relu"), ("rtu_nonlinear", "tanh"),
                                             ("rtu_linear", "relu"), ("lru_rtrl", "relu"), ("lru_rtrl", "tanh")])
def test_rtrl_gradient_equals_full_history_autograd(arch, activation):
    check_gradients(arch, activation, T=None, checkpoints={1, 2, 7, 25}, cut_of_t=lambda t: 0)


@pytest.mark.parametrize("arch", ["gru_tbptt", "lru_tbptt"])
def test_tbptt_gradient_equals_full_history_autograd_when_T_covers_history(arch):
    check_gradients(arch, "relu", T=25, checkpoints={1, 2, 7, 25}, cut_of_t=lambda t: 0)


@pytest.mark.parametrize("arch", ["gru_tbptt", "lru_tbptt"])
def test_tbptt_gradient_is_truncated_after_T_steps(arch):
    T = 4  # window = last 4 inputs, started from the detached state after t - 4 steps
    check_gradients(arch, "relu", T=T, checkpoints={3, 4, 5, 12}, cut_of_t=lambda t: max(t - T, 0))
    # and the truncated gradient really differs from the full-history one
    learner = make_f64_learner(arch, "relu", T)
    xs = torch.randn(12, 4, generator=torch.Generator().manual_seed(1), dtype=F64)
    for x in xs:
        _, grads = learner.step(x)
    leaves = [p.detach().clone().requires_grad_() for p in learner.parameters()]
    full = torch.autograd.grad(ref_value(arch, leaves, xs, "relu"), leaves)
    assert max((a - b).abs().max().item() for a, b in zip(grads, full)) > 1e-6


# ------------------------------------------------------------------------------------------------ sizes, FLOPs
@pytest.mark.parametrize("arch", tdl.ARCHS)
def test_param_counts_and_default_sizes(arch):
    D = 12
    size = tdl.default_hidden_size(arch, D)
    learner = tdl.make_learner(arch, D, size, tdl.Args(arch=arch), torch.Generator().manual_seed(0))
    n_rec = sum(p.numel() for p in learner.recurrent_parameters())
    assert n_rec == tdl.recurrent_param_count(arch, D, size)
    assert abs(n_rec - 26 * 64) / (26 * 64) < 0.05  # equal budget: a 64-unit RTU's 1,664 parameters
    f1, f2, f8 = (tdl.flops_per_step(arch, D, size, T) for T in (1, 2, 8))
    if arch.endswith("tbptt"):
        assert f2 > f1 and f8 - f1 == 7 * (f2 - f1)  # affine in T
    else:
        assert f8 == f1  # RTRL: no T


@pytest.mark.parametrize("arch,T", [("gru_tbptt", 16), ("gru_tbptt", 1), ("lru_tbptt", 4), ("rnn_rtrl", 1),
                                    ("rtu_linear", 1)])
def test_flops_budget_picks_the_largest_size_that_fits(arch, T):
    D = 12
    budget = tdl.flops_per_step("rtu_nonlinear", D, tdl.default_hidden_size("rtu_nonlinear", D))
    size = tdl.hidden_size_for_flops(arch, D, budget, T)
    assert tdl.flops_per_step(arch, D, size, T) <= budget < tdl.flops_per_step(arch, D, size + 1, T)
    if (arch, T) == ("gru_tbptt", 16):  # the equal-compute GRU at T = 16 is far smaller than the equal-parameter one
        assert size < tdl.default_hidden_size(arch, D) / 2


# ------------------------------------------------------------------------------------------------ runs
def parse_final(out):
    lines = [ln for ln in out.splitlines() if ln.startswith("FINAL_MSRE ")]
    assert len(lines) == 1, out
    return dict(kv.split("=", 1) for kv in lines[0].split()[1:])


@pytest.mark.parametrize("arch", tdl.ARCHS)
def test_smoke_run(arch, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    summary = tdl.main(tdl.Args(arch=arch, total_steps=1000, msre_bin=400, tbptt_len=4, seed=2,
                                summary_path=str(tmp_path / "s.csv")))
    fields = parse_final(capsys.readouterr().out)
    assert fields["arch"] == arch and fields["isi"] == "10" and fields["seed"] == "2"
    assert math.isfinite(float(fields["msre"])) and float(fields["msre"]) > 0
    assert int(fields["params"]) == summary["params"] and float(fields["sec_per_step"]) > 0
    assert math.isclose(float(fields["msre"]), summary["msre"], rel_tol=1e-5)
    assert (tmp_path / "s.csv").read_text().splitlines()[0].startswith("arch,isi,")
    (run_dir,) = (tmp_path / "runs").iterdir()
    done = json.loads((run_dir / "done.json").read_text())  # the completion marker of a finished run
    assert done["script"] == "td_animal_learning.py" and done["global_step"] == done["iterations"] == 1000
    assert done["args"]["arch"] == arch and done["args"]["seed"] == 2 and done["wall_time_s"] >= 0
    assert isinstance(done["command"], list) and {"commit", "finished"} <= done.keys()


def test_cli_json_summary_and_presets(tmp_path):
    out_json = tmp_path / "summary.json"
    proc = subprocess.run([sys.executable, SCRIPT, "--arch", "rtu_linear", "--isi", "20", "--total-steps", "300",
                           "--msre-bin", "100", "--summary-path", str(out_json)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    fields = parse_final(proc.stdout)
    summary = json.loads(out_json.read_text())
    assert fields["isi"] == "20" and (summary["isi_lo"], summary["isi_hi"], summary["gamma"]) == (14, 26, 0.95)
    assert summary["steps"] == 300 and math.isfinite(summary["msre"])
    # the binned curve: three equal bins, so their mean is the whole run's MSRE; the last one is msre_last_bin
    assert len(summary["msre_binned"]) == 3 and summary["msre_binned"][-1] == summary["msre_last_bin"]
    assert math.isclose(sum(summary["msre_binned"]) / 3, summary["msre"], rel_tol=1e-9)


def test_bad_input_fails_clearly(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        tyro.cli(tdl.Args, args=["--arch", "lstm"])
    assert e.value.code != 0
    for kwargs, words in [(dict(arch="lstm"), "unknown arch"), (dict(isi_interval=(13, 7)), "isi-interval"),
                          (dict(iti_interval=(0, 5)), "iti-interval"), (dict(num_distractors=11), "num-distractors"),
                          (dict(total_steps=0), "total-steps"), (dict(hidden_size=0), "hidden-size"),
                          (dict(learning_rate=-1.0), "learning-rate"), (dict(adam_beta1=1.0), "adam-beta1"),
                          (dict(adam_beta2=-0.5), "adam-beta2"), (dict(adam_eps=-1e-8), "adam-eps"),
                          (dict(flops_budget=10), "flops-budget"), (dict(flops_budget=0), "flops-budget"),
                          (dict(flops_budget=10**5, param_budget=800), "at most one of"),
                          (dict(checkpoint_interval=-1), "checkpoint-interval")]:
        with pytest.raises(SystemExit) as e:
            tdl.main(tdl.Args(**{"total_steps": 10, **kwargs}))
        assert isinstance(e.value.code, str) and e.value.code.startswith("error:") and words in e.value.code
        assert "\n" not in e.value.code
    assert not (tmp_path / "runs").exists()  # nothing is created on bad input


def test_divergence_fails_clearly(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        tdl.main(tdl.Args(arch="rtu_linear", learning_rate=1e30, total_steps=2000, msre_bin=1000))
    assert isinstance(e.value.code, str) and "non-finite" in e.value.code
    assert not list(tmp_path.glob("runs/*/done.json"))  # not complete


# ------------------------------------------------------------------------------------------------ checkpoints
# 30 bins of 100 steps, a checkpoint every 2 bins; 3 distractors (their RNG is in the env state). The learners cover
# the three kinds of state: RTRL traces, the T-BPTT window and its start state, UORO's random-sign generator.
CKPT = ("--total-steps", "3000", "--msre-bin", "100", "--checkpoint-interval", "2", "--num-distractors", "3", "--seed", "4")
CKPT_ARCHS = {"rtu_nonlinear": (), "gru_tbptt": ("--tbptt-len", "4"), "rnn_uoro": ()}


def _ckpt_case(arch, tmp_path):
    """An uninterrupted run; a run killed (SIGKILL) after its 6th bin and resumed; a 2000-step run extended to 3000."""
    args = ("--arch", arch, *CKPT_ARCHS[arch], *CKPT, "--summary-path", "s.json")
    dirs = {k: tmp_path / f"{arch}_{k}" for k in ("full", "killed", "extended")}
    for d in dirs.values():
        d.mkdir()
    out = dict(dirs=dirs, full=run_script("td_animal_learning", *args, cwd=dirs["full"]))
    out["kill_rc"] = run_and_kill("td_animal_learning", args, dirs["killed"], after_iteration=6)
    (killed,) = (dirs["killed"] / "runs").iterdir()
    out["killed_at"] = torch.load(killed / "checkpoint.pt", weights_only=False)["global_step"]
    out["resumed"] = run_script("td_animal_learning", "--resume", f"runs/{killed.name}", cwd=dirs["killed"])
    short = [a if a != "3000" else "2000" for a in args]
    out["short"] = run_script("td_animal_learning", *short, cwd=dirs["extended"])
    (ext,) = (dirs["extended"] / "runs").iterdir()
    out["extended"] = run_script("td_animal_learning", "--resume", f"runs/{ext.name}", "--total-steps", "3000",
                                 cwd=dirs["extended"])
    return arch, out


@pytest.fixture(scope="module")
def ckpt_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("td_ckpt")
    with ThreadPoolExecutor(max_workers=len(CKPT_ARCHS)) as pool:
        return dict(pool.map(lambda arch: _ckpt_case(arch, root), CKPT_ARCHS))


def _summary(cwd):
    s = json.loads((cwd / "s.json").read_text())
    return {k: v for k, v in s.items() if k not in ("sec_per_step", "run_name")}


@pytest.mark.parametrize("arch", list(CKPT_ARCHS))
def test_killed_and_resumed_run_equals_uninterrupted_run(ckpt_runs, arch):
    """Same parameters, Adam state, TensorBoard curves (the killed run's steps after its checkpoint dropped) and MSRE."""
    out = ckpt_runs[arch]
    assert out["full"].returncode == 0, out["full"].stderr[-3000:]
    assert out["kill_rc"] == -signal.SIGKILL, "the run was not killed mid-way"
    assert 600 <= out["killed_at"] < 3000
    assert out["resumed"].returncode == 0 and "resumed runs/" in out["resumed"].stdout, out["resumed"].stderr[-3000:]
    assert_same_run(out["dirs"]["full"], out["dirs"]["killed"])
    assert _summary(out["dirs"]["full"]) == _summary(out["dirs"]["killed"])


@pytest.mark.parametrize("arch", list(CKPT_ARCHS))
def test_finished_run_extends_exactly(ckpt_runs, arch):
    out = ckpt_runs[arch]
    assert out["short"].returncode == 0 and out["extended"].returncode == 0, out["extended"].stderr[-3000:]
    assert "resumed runs/" in out["extended"].stdout
    a, b = (torch.load(next((out["dirs"][k] / "runs").iterdir()) / "checkpoint.pt", weights_only=False)
            for k in ("full", "extended"))
    assert a["global_step"] == b["global_step"] == 3000
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert _summary(out["dirs"]["full"]) == _summary(out["dirs"]["extended"])
    done = json.loads((next((out["dirs"]["extended"] / "runs").iterdir()) / "done.json").read_text())
    assert done["global_step"] == 3000 and done["args"]["total_steps"] == 3000


def test_resume_refuses_a_different_configuration(ckpt_runs, capsys):
    (run_dir,) = (ckpt_runs["rtu_nonlinear"]["dirs"]["full"] / "runs").iterdir()
    for argv, words in [(["--resume", str(run_dir), "--seed", "5"], "--seed 5 differs from the resumed run's 4"),
                        (["--resume", str(run_dir), "--total-steps", "1000"], "below the run's 3000 steps"),
                        (["--resume", str(run_dir.parent)], "no checkpoint.pt there")]:
        with pytest.raises(SystemExit) as e:
            tdl.main(tyro.cli(tdl.Args, args=argv))
        assert isinstance(e.value.code, str) and e.value.code.startswith("error:") and words in e.value.code
    assert tdl.main(tyro.cli(tdl.Args, args=["--resume", str(run_dir)])) is None  # finished: nothing to do
    assert "already finished after 3000 steps" in capsys.readouterr().out
