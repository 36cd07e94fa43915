"""scripts/plot.py (curves, IQM + stratified bootstrap from rliable, MMER, complete runs only),
scripts/trace_conditioning_report.py and the sweep scripts (dry runs, runs keyed by their full command, resuming and
continuing runs, stopping, local execution, SLURM array files). Fast: no training is run; sweeps execute a fake
python."""
import csv
import gzip
import importlib.util
import json
import os
import re
import signal
import subprocess
import time

from pathlib import Path

import matplotlib.axes
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = os.path.join(ROOT, "scripts")


def load_script(name):
    """scripts/NAME.py as a module."""
    spec = importlib.util.spec_from_file_location(f"{name}_script", os.path.join(SCRIPTS, f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def plot():
    return load_script("plot")


# ------------------------------------------------------------------------------------------------ statistics
def test_rliable_iqm_hand_values(plot):
    iqm = plot.STATS["IQM"]
    assert iqm(np.arange(1, 9)) == pytest.approx(4.5)  # n=8: drop 2 each end -> mean(3,4,5,6)
    assert iqm(np.array([100, 1, 3, 2, 4])) == pytest.approx(3.0)  # n=5: drop 1 each end -> mean(2,3,4)


def test_stratified_bootstrap_resamples_within_tasks(plot):
    mean, iqm = plot.STATS["mean"], plot.STATS["IQM"]
    # within each task all runs are equal: every stratified replicate is exactly the point estimate (a bootstrap over
    # the pooled runs would mix the tasks and give a wide interval)
    p, lo, hi = plot.stratified_bootstrap([[0.0, 0.0], [1.0, 1.0]], mean, reps=500)
    assert (p, lo, hi) == (0.5, 0.5, 0.5)
    # one task, runs {0, 1}: replicate means are 0, .5, 1 with probs 1/4, 1/2, 1/4 -> the 95% interval is [0, 1]
    p, lo, hi = plot.stratified_bootstrap([[0.0, 1.0]], mean, reps=4000)
    assert (p, lo, hi) == (0.5, 0.0, 1.0)
    rng = np.random.default_rng(1)
    groups = [rng.normal(size=5), rng.normal(3, 2, size=4), rng.normal(-1, size=6)]  # tasks with different run counts
    p, lo, hi = plot.stratified_bootstrap(groups, iqm, reps=2000)
    assert p == pytest.approx(iqm(np.concatenate(groups)))
    assert lo < p < hi and hi - lo < 3
    assert plot.stratified_bootstrap(groups, iqm, reps=300) == plot.stratified_bootstrap(groups, iqm, reps=300)


def test_mmer_and_final_score_hand_values(plot):
    steps = np.array([1, 2, 3, 4, 5, 6])
    rets = np.array([0.0, 1.0, 4.0, 6.0, 2.0, 2.0])
    # batches by boundaries: (..3] -> [0,1,4] mean 5/3; (3..6] -> [6,2,2] mean 10/3
    assert plot.mmer(steps, rets, boundaries=[3, 6]) == pytest.approx(10 / 3)
    # boundaries every 2 steps: means .5, 5, 2 -> 5
    assert plot.mmer(steps, rets, boundaries=[2, 4, 6]) == pytest.approx(5.0)
    # same with batches merged to >= 3 episodes: [0,1,4,6] (2.75) then [2,2] is too small -> merged into it (2.5)
    assert plot.mmer(steps, rets, boundaries=[2, 4, 6], min_episodes=3) == pytest.approx(2.5)
    # no boundaries: windows of 4 episodes, the last short window merged -> one batch of all 6 (mean 2.5)
    assert plot.mmer(steps, rets, window=4) == pytest.approx(2.5)
    assert plot.mmer(steps, rets, window=2) == pytest.approx(5.0)
    assert plot.final_score(np.arange(20.0)) == pytest.approx(18.5)  # last 10% = last 2
    assert plot.final_score([7.0, 1.0, 3.0], 0.1) == pytest.approx(3.0)  # at least one episode


def test_resample_and_run_names(plot):
    out = plot.resample([10, 20, 60], [1.0, 3.0, 5.0], np.array([25.0, 50, 75, 100]))
    assert out[:3] == pytest.approx([2.0, 2.0, 5.0]) and np.isnan(out[3])
    assert plot.parse_run_name("HalfCheetah-P-v5__ppo_rtu_rtrl_linear__3__1795332171") == \
        ("HalfCheetah-P-v5", "ppo_rtu_rtrl_linear", 3)
    assert plot.parse_run_name("TraceConditioning-ISI7-13__td_gru_tbptt_T8__gru_tbptt__2__17953.123") == \
        ("TraceConditioning-ISI7-13", "td_gru_tbptt_T8__gru_tbptt", 2)
    assert plot.parse_run_name("summaries") is None and plot.parse_run_name("a__b__c__d") is None


# ------------------------------------------------------------------------------------------------ RL report
# final scores (mean of the last 2 of 20 episodes): env A and B, arch X and Y, seeds 1-3
FINALS = {("EnvA-v0", "archX"): [0, 1, 2], ("EnvA-v0", "archY"): [3, 4, 10],
          ("EnvB-v0", "archX"): [0, 10, 20], ("EnvB-v0", "archY"): [30, 40, 100]}


def episode_returns(F):
    """20 episodes (steps 100..2000); 4 iterations of 5 episodes (SPS at 500..2000). Batch 2 has mean F+6, the
    others F-1 except the last two episodes (F): MMER with batches merged to >= 10 episodes = F + 2.5."""
    r = np.full(20, F - 1.0)
    r[5:10] = F + 6.0
    r[18:] = F
    return r


def write_run(root, name, returns, boundaries=(500, 1000, 1500, 2000), entropies=None, done=True):
    """A run directory like the training scripts write; done: its done.json (True: args of a 2000-step run)."""
    from torch.utils.tensorboard import SummaryWriter

    w = SummaryWriter(os.path.join(root, name))
    for i, v in enumerate(returns):
        w.add_scalar("charts/episodic_return", float(v), 100 * (i + 1))
    for b in boundaries:
        w.add_scalar("charts/SPS", 1000.0, b)
    for b, e in zip(boundaries, entropies or ()):
        w.add_scalar("losses/entropy", e, b)
    w.close()
    if done:
        env, exp, seed, _ = name.split("__")
        args = dict(env_id=env, exp_name=exp, seed=int(seed), total_timesteps=2000)
        args.update(done if isinstance(done, dict) else {})
        (Path(root) / name / "done.json").write_text(json.dumps(dict(script="fake.py", args=args, global_step=2000)))


@pytest.fixture(scope="module")
def rl_report(plot, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rl")
    runs = tmp / "runs"
    for (env, arch), finals in FINALS.items():
        for seed, F in zip((1, 2, 3), finals):
            write_run(runs, f"{env}__{arch}__{seed}__{1700000000 + seed}", episode_returns(F))
    # must be ignored: a newer run of (EnvA, archX, 1) that did not finish (no done.json) and a sweep's scratch run
    # under a hidden directory
    write_run(runs, "EnvA-v0__archX__1__1800000000", episode_returns(1000), done=False)
    write_run(runs / ".work" / "EnvA-v0__archX__1", "EnvA-v0__archX__1__1800000001", episode_returns(1000))
    out = tmp / "out"
    plot.main(["--runs", str(runs), "--out", str(out), "--popgym", "--reps", "1000"])
    return out


def test_find_runs_follows_symlinked_runs(plot, tmp_path):
    """A study may link another study's runs instead of copying them (results/popgym/diagnostics does)."""
    write_run(tmp_path / "shared", "EnvA-v0__archX__1__1700000001", episode_returns(0))
    (tmp_path / "study").mkdir()
    os.symlink(tmp_path / "shared" / "EnvA-v0__archX__1__1700000001", tmp_path / "study" / "EnvA-v0__archX__1__1700000001")
    found = plot.find_runs(str(tmp_path / "study"))
    assert [os.path.basename(d) for d in found] == ["EnvA-v0__archX__1__1700000001"]


def test_exported_runs_reproduce_the_report(plot, tmp_path):
    """--export-runs writes what results/ commits instead of event files: reading it back must give the same per-run
    scores (MMER included: the batch boundaries are exported too) and the same aggregate, and a second export must be
    byte-identical (clean git diffs)."""
    runs = tmp_path / "runs"
    for (env, arch), finals in FINALS.items():
        for seed, F in zip((1, 2, 3), finals):
            # + 0.1 / seed: values that float32 does not hold exactly, so a lossy round trip would change the scores
            write_run(runs, f"{env}__{arch}__{seed}__{1700000000 + seed}", episode_returns(F) + 0.1 / seed,
                      entropies=[0.7, 0.5, 0.4, 0.3 / seed])
    args = ["--popgym", "--reps", "200"]
    plot.main(["--runs", str(runs), "--out", str(tmp_path / "a"), "--export-runs", str(tmp_path / "exp"), *args])
    exported = sorted(os.listdir(tmp_path / "exp"))
    assert len(exported) == 12 and exported[0] == "EnvA-v0__archX__1__1700000001.csv.gz"
    first = {f: (tmp_path / "exp" / f).read_bytes() for f in exported}
    plot.main(["--runs", str(tmp_path / "exp"), "--out", str(tmp_path / "b"), "--export-runs", str(tmp_path / "exp"),
               *args])
    assert {f: (tmp_path / "exp" / f).read_bytes() for f in exported} == first

    def scores(out):
        with open(out / "scores.csv") as f:
            return [{k: v for k, v in r.items() if k != "run_dir"} for r in csv.DictReader(f)]

    a, b = scores(tmp_path / "a"), scores(tmp_path / "b")
    assert len(a) == 12 and a == b
    assert float(a[0]["final"]) == pytest.approx(0.1, rel=1e-6)  # EnvA archX seed 1: F = 0, + 0.1
    assert float(a[0]["mmer"]) == pytest.approx(2.6, rel=1e-6)
    assert (float(a[1]["entropy_first"]), float(a[1]["entropy_last"])) == pytest.approx((0.7, 0.15), rel=1e-6)
    with gzip.open(tmp_path / "exp" / exported[0], "rt") as f:  # of the entropy, only the two reported values
        assert [row for row in f if row.startswith("losses/entropy,")] == ["losses/entropy,500,0.7\n",
                                                                           "losses/entropy,2000,0.3\n"]
    assert (json.loads((tmp_path / "a" / "aggregate.json").read_text())
            == json.loads((tmp_path / "b" / "aggregate.json").read_text()))
    (tmp_path / "bad").mkdir()
    with gzip.open(tmp_path / "bad" / "EnvA-v0__archX__1__1700000001.csv.gz", "wt") as f:
        f.write("step,value\n100,1.0\n")
    with pytest.raises(SystemExit, match="not an exported run"):
        plot.main(["--runs", str(tmp_path / "bad"), "--out", str(tmp_path / "c")])


def test_plot_outputs_exist(rl_report):
    for f in ("curves.png", "curves/EnvA-v0.png", "curves/EnvB-v0.png", "aggregate_final.png", "aggregate_mmer.png",
              "summary.md", "scores.csv", "aggregate.json"):
        assert (rl_report / f).stat().st_size > 0, f
    md = (rl_report / "summary.md").read_text()
    assert "| archX |" in md and "| archY |" in md and "MMER" in md and "normalised per task" in md
    assert "| EnvA-v0 | 1.000 ± 1.000 [0.000, 2.000] (n=3) | 5.667 ± 3.786 [" in md  # archX, archY (sample std)


def test_plot_per_run_scores(rl_report):
    with open(rl_report / "scores.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 12  # the incomplete run and the hidden scratch run are not counted
    for r in rows:
        F = FINALS[(r["env"], r["exp"])][int(r["seed"]) - 1]
        assert float(r["final"]) == pytest.approx(F)
        assert float(r["mmer"]) == pytest.approx(F + 2.5)
        assert int(r["episodes"]) == 20
        assert r["entropy_first"] == r["entropy_last"] == ""  # these runs log no losses/entropy


def test_plot_aggregate_iqm(rl_report):
    agg = json.loads((rl_report / "aggregate.json").read_text())["aggregate"]["final"]
    # normalised per task by min/max over all its runs: X -> {0, .1, .2} twice, Y -> {.3, .4, 1} twice
    # IQM over 6 pooled runs drops one at each end: X mean(0,.1,.1,.2) = .1, Y mean(.3,.4,.4,1) = .525
    expected = {"archX": (0.1, 0.1), "archY": (0.525, 1.7 / 3)}
    for arch, (iqm_val, mean_val) in expected.items():
        p, lo, hi = agg[arch]["IQM"]
        assert p == pytest.approx(iqm_val) and lo <= p <= hi and lo < hi
        p, lo, hi = agg[arch]["mean"]
        assert p == pytest.approx(mean_val) and lo <= p <= hi
        assert agg[arch]["tasks"] == 2 and agg[arch]["runs"] == 6
    per_task = json.loads((rl_report / "aggregate.json").read_text())["per_task"]
    assert per_task["mmer"]["EnvB-v0"]["archY"]["mean"] == pytest.approx(np.mean([30, 40, 100]) + 2.5)


def test_plot_aggregate_pools_only_common_tasks(plot, tmp_path):
    """archZ ran EnvA only: the default aggregate pools EnvA alone for all three architectures; leaving archZ out
    (--aggregate-exps) pools both tasks for archX and archY, as in test_plot_aggregate_iqm."""
    runs = tmp_path / "runs"
    for (env, arch), finals in {**FINALS, ("EnvA-v0", "archZ"): [5, 5, 5]}.items():
        for seed, F in zip((1, 2, 3), finals):
            write_run(runs, f"{env}__{arch}__{seed}__{1700000000 + seed}", episode_returns(F))
    plot.main(["--runs", str(runs), "--out", str(tmp_path / "all"), "--reps", "200"])
    summary = json.loads((tmp_path / "all" / "aggregate.json").read_text())
    agg = summary["aggregate"]["final"]
    assert summary["aggregate_tasks"] == ["EnvA-v0"]
    # EnvA normalised by its min 0 and max 10 (archZ's 5 lies inside): X {0, .1, .2}, Y {.3, .4, 1}, Z {.5, .5, .5}
    for arch, value in {"archX": 0.1, "archY": 1.7 / 3, "archZ": 0.5}.items():
        assert agg[arch]["IQM"][0] == pytest.approx(value) and (agg[arch]["tasks"], agg[arch]["runs"]) == (1, 3)
    assert "Left out: EnvB-v0 (no runs of archZ)." in (tmp_path / "all" / "summary.md").read_text()

    plot.main(["--runs", str(runs), "--out", str(tmp_path / "xy"), "--reps", "200", "--aggregate-exps", "arch[XY]"])
    summary = json.loads((tmp_path / "xy" / "aggregate.json").read_text())
    agg = summary["aggregate"]["final"]
    assert summary["aggregate_tasks"] == ["EnvA-v0", "EnvB-v0"] and set(agg) == {"archX", "archY"}
    assert agg["archX"]["IQM"][0] == pytest.approx(0.1) and agg["archY"]["IQM"][0] == pytest.approx(0.525)
    assert "architecture archZ (not matched by --aggregate-exps)" in (tmp_path / "xy" / "summary.md").read_text()

    with pytest.raises(SystemExit, match="matches none"):
        plot.main(["--runs", str(runs), "--out", str(tmp_path / "none"), "--aggregate-exps", "nothing"])


def scores_of(out):
    with open(out / "scores.csv") as f:
        return [(r["env"], r["exp"], int(r["seed"]), float(r["final"])) for r in csv.DictReader(f)]


def test_plot_uses_complete_runs_only(plot, tmp_path, capsys):
    """Run directories without done.json (crashed, stopped or still running) are listed and left out, unless
    --include-incomplete; exported runs count as complete."""
    runs = tmp_path / "runs"
    write_run(runs, "EnvA-v0__archX__1__1700000001", episode_returns(0))
    write_run(runs, "EnvA-v0__archX__2__1700000002", episode_returns(10))
    write_run(runs, "EnvA-v0__archX__3__1700000003", episode_returns(500), done=False)
    plot.export_run(runs / "EnvA-v0__archX__4__1700000004.csv.gz",
                    {"charts/episodic_return": (np.arange(1, 21) * 100, episode_returns(20))})
    plot.main(["--runs", str(runs), "--out", str(tmp_path / "a"), "--reps", "100"])
    err = capsys.readouterr().err
    assert f"left out: {runs / 'EnvA-v0__archX__3__1700000003'} (incomplete: no done.json)" in err
    assert [(seed, final) for _, _, seed, final in scores_of(tmp_path / "a")] == [(1, 0.0), (2, 10.0), (4, 20.0)]
    assert "Incomplete runs included" not in (tmp_path / "a" / "summary.md").read_text()

    plot.main(["--runs", str(runs), "--out", str(tmp_path / "b"), "--reps", "100", "--include-incomplete"])
    assert [seed for _, _, seed, _ in scores_of(tmp_path / "b")] == [1, 2, 3, 4]
    assert "Incomplete runs included (--include-incomplete; no done.json): 1, EnvA-v0 archX seed 3." in \
        (tmp_path / "b" / "summary.md").read_text()

    only = tmp_path / "only"
    write_run(only, "EnvA-v0__archX__1__1700000001", episode_returns(0), done=False)
    with pytest.raises(SystemExit, match="no complete runs .*1 incomplete run.*--include-incomplete"):
        plot.main(["--runs", str(only), "--out", str(tmp_path / "c")])
    # an exported run is complete by construction, so incomplete runs are never exported
    with pytest.raises(SystemExit):
        plot.main(["--runs", str(runs), "--out", str(tmp_path / "d"), "--include-incomplete",
                   "--export-runs", str(tmp_path / "exp")])
    assert "--export-runs writes complete runs only" in capsys.readouterr().err


def test_plot_duplicate_runs_are_an_error(plot, tmp_path):
    """Two runs of one (env, exp, seed) stop the report with a one-line error; when their args differ, --where picks."""
    runs = tmp_path / "runs"
    write_run(runs / "a", "EnvA-v0__archX__1__1700000001", episode_returns(0))
    write_run(runs / "b", "EnvA-v0__archX__1__1700000002", episode_returns(5))
    write_run(runs / "a", "EnvA-v0__archX__2__1700000003", episode_returns(7))

    def error(*extra):
        with pytest.raises(SystemExit) as e:
            plot.main(["--runs", str(runs), "--out", str(tmp_path / "out"), "--reps", "100", *extra])
        assert "\n" not in str(e.value.code)
        return str(e.value.code)

    msg = error()
    assert msg.startswith("error: 2 runs of EnvA-v0 archX seed 1 with the same configuration (duplicates): ")
    assert str(runs / "a" / "EnvA-v0__archX__1__1700000001") in msg and "keep one of them" in msg
    # a run resumed after an interruption computes the same thing
    write_run(runs / "b", "EnvA-v0__archX__1__1700000002", episode_returns(5), done=dict(resume="runs/b"))
    assert "with the same configuration (duplicates)" in error()
    # the same configuration run longer (as a sweep with a larger --steps leaves it): the args differ
    write_run(runs / "b", "EnvA-v0__archX__1__1700000002", episode_returns(5), done=dict(total_timesteps=4000))
    msg = error()
    assert msg.startswith("error: 2 runs of EnvA-v0 archX seed 1 with different configurations "
                          "(total_timesteps: 2000, 4000): ") and "--where" in msg
    plot.main(["--runs", str(runs), "--out", str(tmp_path / "long"), "--reps", "100",
               "--where", "total_timesteps=4000"])
    assert scores_of(tmp_path / "long") == [("EnvA-v0", "archX", 1, 5.0)]
    plot.main(["--runs", str(runs), "--out", str(tmp_path / "short"), "--reps", "100",
               "--where", "total_timesteps=2000", "--where", "exp_name=archX"])
    assert [(seed, final) for _, _, seed, final in scores_of(tmp_path / "short")] == [(1, 0.0), (2, 7.0)]
    # an exported run records no args: beside a run of the same (env, exp, seed) it is a duplicate as well
    plot.export_run(runs / "EnvA-v0__archX__2__1700000003.csv.gz",
                    {"charts/episodic_return": (np.arange(1, 21) * 100, episode_returns(7))})
    plot.main(["--runs", str(runs), "--out", str(tmp_path / "where"), "--reps", "100",
               "--where", "total_timesteps=2000"])  # the export has no args to match: left out
    assert [(seed, final) for _, _, seed, final in scores_of(tmp_path / "where")] == [(1, 0.0), (2, 7.0)]
    (runs / "b" / "EnvA-v0__archX__1__1700000002" / "done.json").unlink()  # incomplete now: left out
    msg = error()
    assert msg.startswith("error: 2 runs of EnvA-v0 archX seed 2, not all with a recorded configuration")


# ------------------------------------------------------------------------------------------------ trace conditioning
def test_trace_conditioning_report(tmp_path):
    report = load_script("trace_conditioning_report")
    summ = tmp_path / "summaries"
    summ.mkdir()
    recs = []
    for seed in (1, 2, 3):
        recs.append(dict(arch="rtu_nonlinear", isi=10, seed=seed, steps=1000, msre=0.01 * seed, params=1664,
                         flops_per_step=50000, sec_per_step=0.002, tbptt_len=None))
        for T in (1, 4):
            recs.append(dict(arch="gru_tbptt", isi=10, seed=seed, steps=1000, msre=0.1 * seed / T, params=1728,
                             flops_per_step=20000 * T, sec_per_step=0.001 * T, tbptt_len=T,
                             msre_last_bin=0.01 * seed / T, msre_bin=500))
    for i, r in enumerate(recs):
        (summ / f"r{i}.json").write_text(json.dumps(r))
    # a log with the FINAL_MSRE line of a run already in the JSON files (ignored) and of one more seed (used)
    (summ / "td.log").write_text(
        "FINAL_MSRE arch=rtu_nonlinear isi=10 seed=1 msre=0.0100001 msre_last_bin=0.01 params=1664 "
        "flops_per_step=50000 sec_per_step=0.002 tbptt_len=None steps=1000\n"
        "FINAL_MSRE arch=rtu_nonlinear isi=10 seed=4 msre=0.04 msre_last_bin=0.01 params=1664 "
        "flops_per_step=50000 sec_per_step=0.002 tbptt_len=None steps=1000\n")
    out = tmp_path / "out"
    report.main([str(summ), "--out", str(out), "--reps", "500"])
    for f in ("msre.md", "trace_records.csv", "msre_vs_compute_isi10.png", "msre_vs_params_isi10.png",
              "msre_vs_T_isi10.png", "time_vs_T_isi10.png"):
        assert (out / f).stat().st_size > 0, f
    md = (out / "msre.md").read_text()
    assert "| rtu_nonlinear | - | 1664 | 50,000 | 0.002 | 1000 | 0.025 ± " in md and "(n=4) |" in md  # mean(.01,...,.04)
    assert "| gru_tbptt | 4 | 1728 | 80,000 | 0.004 | 1000 | 0.05 ± 0.025 " in md  # mean(.1,.2,.3)/4, std .1/4
    assert "| 0.005 ± 0.0025 (n=3) |" in md  # its final window: mean(.01,.02,.03)/4
    assert "(n=4) | 0.01 ± 0 (n=1) |" in md  # rtu: only the log line of seed 4 has a final window
    assert "last 500 steps" in md
    # runs of another length are not averaged in: a clear error instead
    (summ / "longer.json").write_text(json.dumps(dict(recs[0], seed=9, steps=2000)))
    with pytest.raises(SystemExit, match="different run lengths"):
        report.main([str(summ), "--out", str(tmp_path / "mixed")])
    (summ / "longer.json").write_text(json.dumps(dict(recs[0], seed=9, learning_rate=0.1)))
    with pytest.raises(SystemExit, match="differ in learning_rate"):
        report.main([str(summ), "--out", str(tmp_path / "mixed")])


# ------------------------------------------------------------------------------------------------ sweeps
SWEEP_COUNTS = {  # default grids
    "trace_conditioning": 2 * (3 + 2 * 6) * 5,  # ISI x (3 RTRL archs + 2 T-BPTT archs x 6 T) x 5 seeds
    "mujoco_pv": 8 * 6 * 3,  # {Ant, HalfCheetah, Hopper, Walker2d} x {P, V} x (5 recurrent + MLP) x 3 seeds
    "popgym": 5 * 6 * 3,  # tasks x (5 recurrent + MLP) x 3 seeds
    "reacher_pomdp": 1 * 6 * 3,
    "r2ac": (4 * 2 * 2 + 2) * 3,  # envs x {rtrl, tbptt} x {5, 50} + copy task {rtrl, bptt}, x 3 seeds
    "popgym_diagnostics": 8 * 2,  # settings x 2 seeds
    "r2ac_diagnostics": 23 * 2,  # settings x 2 seeds
    "stale_fresh": 4 * 3,  # {stale, fresh} carries x {stale, fresh} targets x 3 seeds
    "step_size": 2 * 6 * 4,  # 2 MuJoCo tasks x (5 recurrent + MLP) x 4 step sizes x 1 selection seed
}
KNOBS = ("SEEDS", "STEPS", "WORKERS", "RUNS_DIR", "FILTER", "PYTHON", "ENVS", "ARCHS", "BASES", "ISIS",
         "TBPTT_LENS", "BUDGETS", "SUMMARIES", "METHODS", "SEGMENT_LENS", "COPY_METHODS", "COPY_LEN", "COPY_ARGS", "SETTINGS",
         "FAMILY", "LRS", "SELECTED", "SETTING", "LEARNERS", "PHASE", "LR_BUDGET", "SKIP_EXPORTED")


def sweep(name, *args, runs, env=None, check=True):
    e = {k: v for k, v in os.environ.items() if k not in KNOBS and not k.startswith("SLURM")}
    e.update(RUNS_DIR=str(runs), **(env or {}))
    p = subprocess.run(["bash", os.path.join(SCRIPTS, f"{name}.sh"), *args], env=e, capture_output=True, text=True,
                       timeout=60, cwd=ROOT)
    if check:
        assert p.returncode == 0, p.stderr
    return p


@pytest.mark.parametrize("name", sorted(SWEEP_COUNTS))
def test_sweep_dry_run(name, tmp_path):
    lines = sweep(name, "--dry-run", runs=tmp_path / "runs").stdout.splitlines()
    assert len(lines) == SWEEP_COUNTS[name]
    assert len(set(lines)) == len(lines)
    assert all(line.startswith("OMP_NUM_THREADS=1 ") and " --exp-name " in line and " --seed " in line
               for line in lines)
    assert not (tmp_path / "runs").exists()  # a dry run writes nothing


def test_step_size_selection_and_selected_sweep(plot, tmp_path, capsys):
    """select_step_size.py on runs with a known answer, then a sweep at the selected step sizes."""
    sel = load_script("select_step_size")
    runs = tmp_path / "runs"
    runs.mkdir()
    # whole-run mean return = base[setting][lr] * task scale; ppo_mlp is best at 1e-3 except that one of its 1e-3
    # runs is missing (a diverged run), which leaves 3e-4 as its best eligible step size; ppo_lru_tbptt is best at
    # its largest step size, the edge of the grid
    base = {"ppo_gru_tbptt": {"1e-4": 1.0, "3e-4": 3.0, "1e-3": 2.0}, "ppo_mlp": {"1e-4": 0.5, "3e-4": 1.5, "1e-3": 9.0},
            "ppo_lru_tbptt": {"1e-4": 1.0, "3e-4": 2.0, "1e-3": 3.0}}
    for env, scale in (("EnvA-v0", 1.0), ("EnvB-v0", 100.0)):
        for setting, by_lr in base.items():
            for lr, v in by_lr.items():
                for seed in (101, 102):
                    if (env, setting, lr, seed) == ("EnvB-v0", "ppo_mlp", "1e-3", 102):
                        continue
                    plot.export_run(runs / f"{env}__{setting}_lr{lr}__{seed}__{1700000000 + seed}.csv.gz",
                                    {"charts/episodic_return": (np.arange(1, 4), np.full(3, v * scale + seed % 2))})
    sel.main(["--runs", str(runs), "--out", str(tmp_path / "sel")])
    with open(tmp_path / "sel" / "selected_lr.csv") as f:
        chosen = {r["setting"]: r["learning_rate"] for r in csv.DictReader(f)}
    assert chosen == {"ppo_gru_tbptt": "3e-4", "ppo_mlp": "3e-4", "ppo_lru_tbptt": "1e-3"}
    assert (tmp_path / "sel" / "sensitivity.png").exists()
    summary = (tmp_path / "sel" / "summary.md").read_text()
    assert "| ppo_mlp | " in summary and " | 1e-3 (edge: extend the grid) |" in summary
    assert summary.count("(edge") == 1  # ppo_mlp's diverged 1e-3 bounds its grid: 3e-4 is not an edge
    assert "warning: ppo_lru_tbptt selected 1e-3, the largest step size it ran" in capsys.readouterr().err
    env = dict(SELECTED=str(tmp_path / "sel" / "selected_lr.csv"), ARCHS="ppo_gru_tbptt ppo_mlp")
    lines = sweep("mujoco_pv", "-n", runs=runs, env=env).stdout.splitlines()
    assert len(lines) == 8 * 2 * 3 and all(line.endswith("--learning-rate 3e-4") for line in lines)
    p = sweep("mujoco_pv", "-n", runs=runs, env=dict(env, ARCHS="ppo_lru_rtrl"), check=False)
    assert p.returncode == 2 and "no step size for 'ppo_lru_rtrl'" in p.stderr
    p = sweep("stale_fresh", "-n", runs=runs, env=env, check=False)
    assert p.returncode == 2 and "no step size for 'ppo_rtu_rtrl_nonlinear'" in p.stderr
    (tmp_path / "rtu.csv").write_text("setting,learning_rate\nppo_rtu_rtrl_nonlinear,1e-3\n")
    lines = sweep("stale_fresh", "-n", runs=runs, env=dict(SELECTED=str(tmp_path / "rtu.csv"))).stdout.splitlines()
    assert len(lines) == 4 * 3 and all("--learning-rate 1e-3" in line for line in lines)
    p = sweep("step_size", "-n", runs=runs, env=env, check=False)  # it runs every step size: a SELECTED is a mistake
    assert p.returncode == 2 and "SELECTED does not apply" in p.stderr


def test_sweep_grid_contents(tmp_path):
    runs = tmp_path / "runs"
    mj = sweep("mujoco_pv", "-n", runs=runs).stdout.splitlines()
    assert sum("algos/ppo_mlp.py" in x for x in mj) == 24
    assert sum("--rtu-variant linear" in x and "--exp-name ppo_rtu_rtrl_linear" in x for x in mj) == 24
    assert all("--total-timesteps 1000000" in x for x in mj)
    assert {x.split("--env-id ")[1].split()[0] for x in mj} == {f"{b}-{v}-v5" for b in ("Ant", "HalfCheetah", "Hopper",
                                                                                     "Walker2d") for v in "PV"}
    mj = sweep("mujoco_pv", "-n", runs=runs, env=dict(BASES="HalfCheetah Hopper")).stdout.splitlines()
    assert {x.split("--env-id ")[1].split()[0] for x in mj} == {"HalfCheetah-P-v5", "HalfCheetah-V-v5",
                                                                "Hopper-P-v5", "Hopper-V-v5"}
    tc = sweep("trace_conditioning", "-n", runs=runs).stdout.splitlines()
    assert sum("--tbptt-len 32" in x for x in tc) == 2 * 2 * 5
    assert sum("--isi 20" in x for x in tc) == 75 and all("--summary-path" in x for x in tc)
    tc = sweep("trace_conditioning", "-n", runs=runs, env=dict(BUDGETS="F56591 800", ARCHS="gru_tbptt",
                                                                 TBPTT_LENS="16")).stdout
    assert tc.count("--flops-budget 56591") == 2 * 5 and "--exp-name td_gru_tbptt_T16_F56591 " in tc
    assert tc.count("--param-budget 800") == 2 * 5 and "--exp-name td_gru_tbptt_T16_P800 " in tc
    p = sweep("trace_conditioning", "-n", runs=runs, env=dict(BUDGETS="G5"), check=False)
    assert p.returncode == 2 and "a budget is -, N" in p.stderr
    r2 = sweep("r2ac", "-n", runs=runs).stdout.splitlines()
    assert sum("copy_task_elstm.py" in x for x in r2) == 6
    assert sum("--grad-method tbptt --segment-len 5 " in x for x in r2) == 12
    r2 = sweep("r2ac", "-n", runs=runs, env=dict(ENVS="", COPY_ARGS="--max-seconds 7200")).stdout.splitlines()
    assert len(r2) == 6 and all("copy_task_elstm.py" in x and x.endswith("--max-seconds 7200") for x in r2)
    # knobs: flags and environment variables
    out = sweep("reacher_pomdp", "-n", "--steps", "5000", runs=runs, env=dict(SEEDS="7")).stdout.splitlines()
    assert len(out) == 6 and all("--total-timesteps 5000" in x and "--seed 7 " in x for x in out)
    out = sweep("popgym", "-n", "--seeds", "1 2", "--filter", "RepeatFirst.*gru", runs=runs).stdout.splitlines()
    assert len(out) == 2 and all("popgym-RepeatFirstEasy-v0" in x and "ppo_gru_tbptt.py" in x for x in out)
    out = sweep("reacher_pomdp", "-n", "--seeds", "1", "--", "--num-envs", "2", runs=runs).stdout.splitlines()
    assert all(x.endswith("--num-envs 2") for x in out)
    assert sweep("popgym", "--bogus", runs=runs, check=False).returncode != 0


def test_sweep_skips_exported_runs(tmp_path):
    """--skip-exported DIR: a run whose key has an exported run in DIR is skipped (its runs directory may be gone)."""
    runs, exported = tmp_path / "runs", tmp_path / "exported"
    exported.mkdir()
    (exported / "Reacher-POMDP-v5__ppo_mlp__1__1796340185.csv.gz").write_bytes(b"")
    (exported / "Reacher-POMDP-v5__ppo_mlp__10__1796340185.csv.gz").write_bytes(b"")  # seed 10: not seed 1's key
    all_runs = sweep("reacher_pomdp", "-n", runs=runs).stdout.splitlines()
    p = sweep("reacher_pomdp", "-n", "--skip-exported", str(exported), runs=runs)
    left = p.stdout.splitlines()
    assert len(left) == len(all_runs) - 1 and "1 exported in" in p.stderr
    assert [x for x in all_runs if x not in left] == [
        next(x for x in all_runs if "ppo_mlp.py" in x and " --seed 1 " in x)]
    assert sweep("reacher_pomdp", "-n", runs=runs, env=dict(SKIP_EXPORTED=str(exported))).stdout.splitlines() == left
    p = sweep("reacher_pomdp", "-n", "--skip-exported", str(tmp_path / "nowhere"), runs=runs, check=False)
    assert p.returncode == 2 and p.stderr.strip().startswith("error: --skip-exported: no directory")


FAKE_PYTHON = r"""#!/bin/bash
# fake interpreter, like the algos scripts: writes runs/<run name>/ in its working directory (or continues the
# --resume directory) with checkpoint.pt, and done.json when it finishes
script=$(basename "$1" .py); shift
echo "$script $*" >>"${FAKE_ARGV:-/dev/null}"
args=("$@"); declare -A a=()
for ((i = 0; i + 1 < ${#args[@]}; i++)); do [[ ${args[i]} != --* ]] || a[${args[i]#--}]=${args[i + 1]}; done
[[ ${a[seed]} != "${FAKE_CRASH_SEED:-}" ]] || { echo "simulated crash" >&2; exit 3; }
dir=${a[resume]:-runs/${a[env-id]}__${a[exp-name]}__${a[seed]}__123}
mkdir -p "$dir"
echo "OMP_NUM_THREADS=$OMP_NUM_THREADS $script $*" >"$dir/args.txt"
echo "${a[total-timesteps]}" >>"$dir/totals.txt"
echo checkpoint >"$dir/checkpoint.pt"
rm -f "$dir/done.json"
[[ -z ${FAKE_STOP:-} ]] || exit 4  # fails after a checkpoint
[[ -z ${FAKE_SLEEP:-} ]] || { echo $$ >"$FAKE_PIDFILE"; exec sleep "$FAKE_SLEEP"; }
total=${a[total-timesteps]} anneal=${FAKE_ANNEAL:-false}
echo "{\"script\": \"$script.py\", \"args\": {\"total_timesteps\": $total, \"anneal_lr\": $anneal}}" >"$dir/done.json"
"""
RUN = "Reacher-POMDP-v5__ppo_mlp__1__123"  # the fake's run directory of ppo_mlp, seed 1


@pytest.fixture
def fake(tmp_path):
    """Environment for a sweep that runs the fake python; its command lines go to tmp_path/argv."""
    f = tmp_path / "fakepy"
    f.write_text(FAKE_PYTHON)
    f.chmod(0o755)
    return dict(PYTHON=str(f), FAKE_ARGV=str(tmp_path / "argv"), ARCHS="ppo_mlp")


def keys(runs):
    """The finished runs' keys ENV__SETTING__SEED (their markers' names without the hash)."""
    return sorted(m.rsplit("__", 1)[0] for m in os.listdir(runs / ".done"))


def test_sweep_done_only_for_the_same_command(tmp_path, fake):
    """A finished run is skipped only by the same command: another --steps or another extra flag is another run."""
    runs = tmp_path / "runs"
    env = dict(fake, ARCHS="ppo_gru_tbptt ppo_mlp")
    sweep("reacher_pomdp", "--seeds", "1", "--steps", "4096", runs=runs, env=env)
    assert keys(runs) == ["Reacher-POMDP-v5__ppo_gru_tbptt__1", "Reacher-POMDP-v5__ppo_mlp__1"]
    (mlp,) = [m for m in os.listdir(runs / ".done") if "ppo_mlp" in m]
    marker = runs / ".done" / mlp
    text = marker.read_text()
    assert "command: algos/ppo_mlp.py --env-id Reacher-POMDP-v5 --seed 1 --total-timesteps 4096 --exp-name ppo_mlp\n" \
        in text
    assert (runs / mlp / RUN / "done.json").exists()  # finished runs go to RUNS_DIR/<ID>/<run name>

    def todo(*args):
        p = sweep("reacher_pomdp", "-n", "--seeds", "1", *args, runs=runs, env=env)
        return p.stdout.splitlines(), p.stderr

    lines, err = todo("--steps", "4096")
    assert lines == [] and "0 run(s) to do" in err and "2 already done" in err
    lines, _ = todo("--steps", "1000000")
    assert len(lines) == 2 and all("--total-timesteps 1000000 " in x for x in lines)
    lines, _ = todo("--steps", "4096", "--", "--hidden-dim", "8")
    assert len(lines) == 2 and all("--total-timesteps 4096 " in x and x.endswith(" --hidden-dim 8") for x in lines)
    # the marker's command decides, not its file name
    marker.write_text(text.replace("--total-timesteps 4096", "--total-timesteps 4097"))
    lines, _ = todo("--steps", "4096")
    assert len(lines) == 1 and "algos/ppo_mlp.py" in lines[0]


def test_sweep_resumes_an_interrupted_run(tmp_path, fake):
    """A run that stopped after a checkpoint is run again with --resume on its run directory, not from scratch."""
    runs = tmp_path / "runs"
    p = sweep("reacher_pomdp", "--seeds", "1", "--steps", "4096", runs=runs, env=dict(fake, FAKE_STOP="1"), check=False)
    assert p.returncode != 0 and "it resumes from" in p.stderr
    (work,) = [d for d in (runs / ".work").iterdir() if d.is_dir()]
    assert (work / "runs" / RUN / "checkpoint.pt").exists() and keys(runs) == []
    assert "(1 resume from a checkpoint," in sweep("reacher_pomdp", "-n", "--seeds", "1", "--steps", "4096",
                                                     runs=runs, env=fake).stderr
    p = sweep("reacher_pomdp", "--seeds", "1", "--steps", "4096", runs=runs, env=fake)
    first, second = (tmp_path / "argv").read_text().splitlines()
    assert first == "ppo_mlp --env-id Reacher-POMDP-v5 --seed 1 --total-timesteps 4096 --exp-name ppo_mlp"
    assert second == f"{first} --resume runs/{RUN}"
    assert keys(runs) == ["Reacher-POMDP-v5__ppo_mlp__1"] and not work.exists()
    assert (runs / work.name / RUN / "totals.txt").read_text() == "4096\n4096\n"  # the same run directory, continued


def test_sweep_longer_run_continues_a_copy(tmp_path, fake):
    """The same command with a larger --total-timesteps continues the finished shorter run (a copy of it: the short
    run stays as it was), unless that run anneals its learning rate: then it starts from scratch."""
    runs = tmp_path / "runs"
    sweep("reacher_pomdp", "--seeds", "1", "--steps", "4096", runs=runs, env=fake)
    sweep("reacher_pomdp", "--seeds", "2", "--steps", "4096", runs=runs, env=dict(fake, FAKE_ANNEAL="true"))
    p = sweep("reacher_pomdp", "-n", "--seeds", "1 2", "--steps", "8192", runs=runs, env=fake)
    assert "(0 resume from a checkpoint, 1 continue a shorter finished run)" in p.stderr
    p = sweep("reacher_pomdp", "--seeds", "1 2", "--steps", "8192", runs=runs, env=fake)
    assert "it anneals the learning rate" in p.stdout
    argv = (tmp_path / "argv").read_text().splitlines()
    base = "ppo_mlp --env-id Reacher-POMDP-v5 --seed {} --total-timesteps 8192 --exp-name ppo_mlp"
    assert base.format(1) + f" --resume runs/{RUN}" in argv and base.format(2) in argv
    for seed, longer in ((1, "4096\n8192\n"), (2, "8192\n")):
        dirs = runs.glob(f"Reacher-POMDP-v5__ppo_mlp__{seed}__*/Reacher-POMDP-v5__ppo_mlp__{seed}__123")
        assert sorted((d / "totals.txt").read_text() for d in dirs) == ["4096\n", longer]
    short = [d for d in runs.glob(f"*/{RUN}") if (d / "totals.txt").read_text() == "4096\n"]
    assert json.loads((short[0] / "done.json").read_text())["args"]["total_timesteps"] == 4096
    assert "0 run(s) to do" in sweep("reacher_pomdp", "-n", "--seeds", "1 2", "--steps", "8192", runs=runs,
                                     env=fake).stderr


def alive(pid):
    """Whether pid runs (a zombie has exited: nobody may reap an orphan in a container)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def start_sleeping_sweep(tmp_path, fake):
    """Start reacher_pomdp.sh, seed 1, as the leader of a new process group, its one run sleeping in the fake python
    (runs directory tmp_path/runs); return the sweep's Popen and the training process's pid once that runs."""
    pidfile = tmp_path / "pid"
    e = {k: v for k, v in os.environ.items() if k not in KNOBS}
    e.update(fake, RUNS_DIR=str(tmp_path / "runs"), FAKE_SLEEP="120", FAKE_PIDFILE=str(pidfile))
    # SIGINT at its default: a shell started in the background ignores SIGINT, and bash cannot trap an ignored signal
    p = subprocess.Popen(["bash", os.path.join(SCRIPTS, "reacher_pomdp.sh"), "--seeds", "1"], env=e, cwd=ROOT,
                         start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.time() + 30
        while not (pidfile.exists() and pidfile.read_text().strip()):
            assert p.poll() is None and time.time() < deadline, p.communicate()
            time.sleep(0.05)
        return p, int(pidfile.read_text())
    except BaseException:
        os.killpg(p.pid, signal.SIGKILL)
        raise


@pytest.mark.parametrize("target,sig", [("group", signal.SIGINT), ("sweep", signal.SIGINT),
                                        ("sweep", signal.SIGTERM)])
def test_sweep_signal_stops_its_runs(tmp_path, fake, target, sig):
    """Ctrl-C (SIGINT to the terminal's process group), or SIGINT / SIGTERM to the sweep alone, stops the training
    processes too; they resume from their checkpoints next time."""
    runs = tmp_path / "runs"
    p, child = start_sleeping_sweep(tmp_path, fake)
    try:
        assert alive(child)
        start = time.time()
        (os.killpg if target == "group" else os.kill)(p.pid, sig)
        _, err = p.communicate(timeout=15)
        assert p.returncode == 128 + sig and "stopping its runs" in err
        assert not alive(child)
        assert time.time() - start < 8  # SIGTERM ended it, not the SIGKILL after the 10 s grace
        (work,) = [d for d in (runs / ".work").iterdir() if d.is_dir()]
        assert (work / "runs" / RUN / "checkpoint.pt").exists()
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
        if alive(child):
            os.kill(child, signal.SIGKILL)


def test_second_sweep_skips_a_run_that_is_executing(tmp_path, fake):
    """Two sweeps on one runs directory: the second leaves a run the first is executing alone (two training processes
    in one work directory would write into the same event files), and runs the rest."""
    runs = tmp_path / "runs"
    first, _ = start_sleeping_sweep(tmp_path, fake)
    try:
        second = sweep("reacher_pomdp", "--seeds", "1 2", runs=runs, env=fake)
        assert "skip  Reacher-POMDP-v5__ppo_mlp__1__" in second.stdout and "(running in another process)" in second.stdout
        assert keys(runs) == ["Reacher-POMDP-v5__ppo_mlp__2"]
        assert [line.split(" --seed ")[1][0] for line in (tmp_path / "argv").read_text().splitlines()] == ["1", "2"]
        assert first.poll() is None  # the first run was left alone
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()


def test_sweep_local_execution_and_failures(tmp_path, fake):
    runs = tmp_path / "runs"
    env = dict(fake, ARCHS="ppo_gru_tbptt ppo_mlp", FAKE_CRASH_SEED="2")
    p = sweep("reacher_pomdp", "--seeds", "1 2", "-j", "2", runs=runs, env=env, check=False)
    assert p.returncode != 0 and "FAIL" in p.stderr  # the seed-2 runs crash
    assert keys(runs) == ["Reacher-POMDP-v5__ppo_gru_tbptt__1", "Reacher-POMDP-v5__ppo_mlp__1"]
    (run_dir,) = runs.glob(f"Reacher-POMDP-v5__ppo_mlp__1__*/{RUN}")  # moved out of the scratch directory
    assert (run_dir / "args.txt").read_text().startswith("OMP_NUM_THREADS=1 ppo_mlp --env-id Reacher-POMDP-v5")
    assert not list((runs / ".work").glob("Reacher-POMDP-v5__ppo_mlp__1__*"))
    (log,) = (runs / ".logs").glob("Reacher-POMDP-v5__ppo_mlp__2__*.log")
    assert "simulated crash" in log.read_text()
    assert not list(runs.glob("*__2__*"))  # failed runs never reach the runs directory
    # only the failed runs are left, from scratch: they crashed before a checkpoint
    p = sweep("reacher_pomdp", "--seeds", "1 2", "-n", runs=runs, env=env)
    assert len(p.stdout.splitlines()) == 2 and all("--seed 2 " in x for x in p.stdout.splitlines())
    assert "2 run(s) to do (0 resume from a checkpoint" in p.stderr


def test_sweep_slurm_array(tmp_path, fake):
    runs = tmp_path / "runs"
    out = tmp_path / "job.sbatch"
    p = sweep("popgym", "--slurm", str(out), runs=runs)
    text = out.read_text()
    assert "#SBATCH --array=1-90" in text and "SLURM_ARRAY_TASK_ID" in text
    cmds = (tmp_path / "job.sbatch.commands").read_text().splitlines()
    assert len(cmds) == 90 and all("OMP_NUM_THREADS=1" in c and "--run-one" in c for c in cmds)
    assert "sbatch" in p.stderr
    # one array task, run locally with the fake interpreter, completes its run and leaves the marker
    sweep("reacher_pomdp", "--seeds", "1", "--slurm", str(out), runs=runs,
          env={k: v for k, v in fake.items() if k != "ARCHS"})
    e = dict(os.environ, SLURM_ARRAY_TASK_ID="3")
    subprocess.run(["bash", str(out)], env=e, check=True, capture_output=True, timeout=60)
    assert keys(runs) == ["Reacher-POMDP-v5__ppo_lru_rtrl__1"]


def test_sweep_flags_exist_in_scripts(tmp_path):
    """Every --flag a sweep passes is a field of the target script's Args (catches renamed CLI options)."""
    checked = set()
    for name in SWEEP_COUNTS:
        for line in sweep(name, "-n", runs=tmp_path / "runs", env=dict(BUDGETS="1000")).stdout.splitlines():
            script = re.search(r"algos/(\w+)\.py", line).group(1)
            fields = set(re.findall(r"^    (\w+): ", open(os.path.join(ROOT, "algos", f"{script}.py")).read(), re.M))
            for flag in re.findall(r" --([a-z][\w-]*)", line):
                field = flag.replace("-", "_")
                field = field[3:] if field.startswith("no_") and field not in fields else field  # --no-X: bool X
                assert field in fields, f"{name}: algos/{script}.py has no --{flag}"
                checked.add((script, flag))
    assert len({s for s, _ in checked}) == 8  # all eight scripts are driven by some sweep


def test_plot_compare_probability_of_improvement(plot, tmp_path, rl_report):
    """--compare: rliable's probability of improvement and performance profiles. On the fixture every archY run beats
    every archX run on both tasks, so P(archY > archX) = 1 and P(archX > archY) = 0 in every bootstrap sample."""
    out = tmp_path / "cmp"
    plot.main(["--runs", str(rl_report.parent / "runs"), "--out", str(out), "--reps", "50", "--compare"])
    poi = json.loads((out / "aggregate.json").read_text())["probability_of_improvement"]["final"]
    assert poi["archY > archX"] == pytest.approx([1.0, 1.0, 1.0])
    assert poi["archX > archY"] == pytest.approx([0.0, 0.0, 0.0])
    assert "## Probability of improvement" in (out / "summary.md").read_text()
    assert (out / "profiles_final.png").stat().st_size > 0


def test_plot_ylim(plot, tmp_path, rl_report, monkeypatch):
    """--ylim sets the range of every curve axis (per task and combined); a range with LO >= HI is an error."""
    ranges = []
    monkeypatch.setattr(matplotlib.axes.Axes, "set_ylim", lambda self, *a, **k: ranges.append(a))
    plot.main(["--runs", str(rl_report.parent / "runs"), "--out", str(tmp_path / "y"), "--reps", "20",
               "--ylim", "-2", "5"])
    assert ranges.count((-2.0, 5.0)) == 4  # 2 tasks x (own figure, combined figure)
    with pytest.raises(SystemExit):
        plot.parse_args(["--runs", "r", "--out", "o", "--ylim", "5", "5"])


def test_approx_rtrl_sweep_budgets(tmp_path):
    env = dict(LEARNERS="gru_tbptt:16 rnn_uoro", BUDGETS="- 800 F56591", LRS="1e-3", ISIS="10")
    out = sweep("approx_rtrl", "-n", runs=tmp_path / "runs", env=env).stdout.splitlines()
    assert len(out) == 2 * 3 and len(set(out)) == 6
    assert sum("--flops-budget 56591" in x and "_F56591_lr1e-3 " in x for x in out) == 2
    assert sum("--param-budget 800" in x and "_P800_lr1e-3 " in x for x in out) == 2


def test_approx_rtrl_report_phase_step_size_from_another_budget(tmp_path):
    """PHASE=report reads each learner's step size at its own budget, or at LR_BUDGET's; a missing one is an error."""
    sel = tmp_path / "sel.csv"
    sel.write_text("isi,arch,tbptt_len,budget,learning_rate,selection_msre\n10,rnn_uoro,-,-,3e-4,0.1\n")
    env = dict(LEARNERS="rnn_uoro", BUDGETS="- 800", ISIS="10", PHASE="report", SELECTED=str(sel))
    p = sweep("approx_rtrl", "-n", "--seeds", "1", runs=tmp_path / "runs", env=env, check=False)
    assert p.returncode != 0 and "no selected step size for ISI 10, rnn_uoro, T -, budget 800" in p.stderr
    out = sweep("approx_rtrl", "-n", "--seeds", "1", runs=tmp_path / "runs", env=dict(env, LR_BUDGET="-")).stdout
    assert sorted(re.findall(r"--exp-name (\S+)", out)) == ["td_rnn_uoro_P800_lr3e-4", "td_rnn_uoro_lr3e-4"]


def test_bench_command_line_hides_local_paths():
    bench = load_script("bench_sps")
    argv = ["--rounds", "3", "--official", "/home/me/rtus.git", "--cleanrl=/home/me/cleanrl", "--out", "x.md"]
    assert bench.public_argv(argv) == ["--rounds", "3", "--official", "<git mirror of esraaelelimy/rtus>",
                                       "--cleanrl=<git mirror of vwxyzjn/cleanrl>", "--out", "x.md"]


def test_copy_task_plot_against_updates(tmp_path):
    """scripts/copy_task_plot.py: accuracy against sequences, updates (log axis, the evaluation at 0 updates left out)
    and wall time; fails if the updates panel is missing or plots the 0."""
    mod = load_script("copy_task_plot")
    run = tmp_path / "copy50__copy_task_elstm__bptt__1__9"
    run.mkdir()
    (run / "curve.csv").write_text("sequences,updates,tokens,wall_time,train_loss,val_loss,val_token_acc,val_seq_acc\n"
                                   "0,0,0,0.5,0.7,0.7,0.5,0.01\n128,1,900,60,0.6,0.6,0.6,0.2\n"
                                   "256,2,1800,120,0.5,0.5,0.7,0.15\n")
    fig = mod.main(str(tmp_path / "copy.png"), [str(run)])
    assert (tmp_path / "copy.png").exists()
    seqs, updates, wall = fig.axes
    assert [ax.get_xlabel() for ax in fig.axes] == ["training sequences", "updates", "wall time (min)"]
    assert updates.get_xscale() == "log"
    assert list(updates.lines[0].get_xdata()) == [1, 2] and list(updates.lines[0].get_ydata()) == [20.0, 15.0]
    assert list(seqs.lines[0].get_xdata()) == [0, 128, 256] and list(wall.lines[1].get_xdata()) == [0.5 / 60, 1, 2]
