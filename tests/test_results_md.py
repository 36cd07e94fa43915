"""scripts/results_md.py: the numbers in the results READMEs are generated (cog) from the committed data, and stay so."""
import glob
import importlib.util
import os
import re
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_script(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, "scripts", f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def results_md():
    return load_script("results_md")


SCORES = """env,exp,seed,final,mmer,episodes,last_step,entropy_first,entropy_last,run_dir
EnvA,archX,1,150.0,160.0,10,1000,0.69,0.1,r/a
EnvA,archX,2,250.0,260.0,10,1000,0.69,0.2,r/b
EnvA,archY,1,300.0,310.0,10,1000,0.69,0.6,r/c
EnvB,archX,1,0.5,0.7,10,2000,1.1,1.0,r/d
EnvB,archY,1,0.25,0.9,10,2000,1.1,0.4,r/e
"""


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "scores.csv").write_text(SCORES)
    (tmp_path / "base.md").write_text("# t\n\n| env | policy: x | final score |\n|-|-|-|\n| EnvA | 1 | -0.5 |\n"
                                      "\n| env | other | final score |\n|-|-|-|\n| EnvA | 2 | 9 |\n")
    (tmp_path / "aggregate.json").write_text('{"aggregate": {"final": {"archX": {"IQM": [0.8154, 0.66949, 0.9431]}}}}')
    (tmp_path / "trace_records.csv").write_text(
        "arch,isi,tbptt_len,params,seed,msre,flops_per_step\n"
        "gru_tbptt,10,4,1728,1,0.03,70000.0\ngru_tbptt,10,4,1728,2,0.05,70000.0\ngru_tbptt,10,16,1728,1,0.5,199113.0\n"
        "gru_tbptt,20,4,1728,1,0.7,70000.0\nrtu_linear,10,,1664,1,0.04211,54321.0\nrtu_linear,10,,832,1,0.9,27000.0\n")
    (tmp_path / "log.txt").write_text("step 1\nfinal: done updates=7 best=22.50%\n")
    return tmp_path


def test_each_function_hand_values(results_md, folder):
    results_md.at(str(folder / "README.md"))  # paths relative to the README's folder
    # archX on EnvA: 150, 250 -> mean 200.0, sample std 70.7; best first; 1 decimal from |mean| >= 100
    assert results_md.scores("scores.csv", "EnvA") == "archY 300.0 (n=1), archX 200.0 ± 70.7 (n=2)"
    assert results_md.scores("scores.csv", "EnvB") == "archX 0.500 (n=1), archY 0.250 (n=1)"
    assert results_md.scores("scores.csv", "EnvB", "mmer") == "archY 0.900 (n=1), archX 0.700 (n=1)"
    assert results_md.cell("scores.csv", "EnvA", "archX", "mmer") == "210.0 ± 70.7 (n=2)"
    assert results_md.seeds("scores.csv", "EnvA", "archX") == "150.0 / 250.0"
    assert results_md.order("scores.csv") == ("- `EnvA`, seed 1: archY > archX\n- `EnvA`, seed 2: archX\n"
                                              "- `EnvB`, seed 1: archX > archY")
    assert results_md.entropy("scores.csv") == ("| task | archX | archY |\n|-|-|-|\n"
                                                "| EnvA | 1: 0.690 -> 0.100, 2: 0.690 -> 0.200 | 1: 0.690 -> 0.600 |\n"
                                                "| EnvB | 1: 1.100 -> 1.000 | 1: 1.100 -> 0.400 |")
    assert results_md.entropy("scores.csv", "^EnvB").endswith("|-|-|-|\n| EnvB | 1: 1.100 -> 1.000 | 1: 1.100 -> 0.400 |")
    assert results_md.runs("scores.csv").splitlines()[3] == \
        "| EnvA | archX | 2 | 250.000 | 260.000 | 0.690 -> 0.200 | 1000 |"
    assert results_md.seed_table("EnvA", ["archX"], [("a", "scores.csv")]).splitlines()[2] == \
        "| archX | 150.0 / 250.0 | 200.0 ± 70.7 (n=2) |"
    assert results_md.mdcell("base.md", "EnvA", "final score") == "-0.5"  # the first table with that row
    assert results_md.md_columns("base.md", ["final score"]) == "| env | final score |\n|-|-|\n| EnvA | -0.5 |"
    assert results_md.iqm("aggregate.json", "archX") == "0.815 [0.669, 0.943]"
    assert results_md.logkey("log.txt", "best") == "22.50%"
    assert results_md.trace("trace_records.csv", 10, "gru_tbptt", 4, 1728) == "0.04"  # mean(.03, .05): not T=16, ISI 20
    assert results_md.trace("trace_records.csv", 10, "gru_tbptt", 16, 1728, "flops_per_step") == "199,113"
    assert results_md.trace("trace_records.csv", 10, "rtu_linear", None, 1664) == "0.0421"  # RTRL: no T; not 832 params
    assert results_md.table(["a", "b"], [["x|y", 1]]) == "| a | b |\n|-|-|\n| x\\|y | 1 |"  # | escaped in cells


def sanity_run(folder):
    """A made-up exported RL run: iterations end at steps 100, 200, 300; episodes end at 50 | 150, 160 | 250, 300."""
    export = folder / "EnvA__archX__2__7.csv.gz"
    load_script("plot").export_run(export, {
        "charts/SPS": (np.array([100, 200, 300]), np.array([10.0, 10.0, 10.0])),
        "charts/episodic_return": (np.array([50, 150, 160, 250, 300]), np.array([1.0, 2.0, 4.0, 8.0, 16.0])),
        "losses/entropy": (np.array([100, 300]), np.array([1.0, 0.5]))})
    return export


def test_run_numbers_hand_values(results_md, folder):
    """rl_run (scripts/ppo_report.py's summary), copy_run (scripts/copy_task_plot.py's), copy_best and lastword on made-up
    runs."""
    results_md.at(str(folder / "README.md"))
    sanity_run(folder)
    # first iteration: episode 1; final score: the last ceil(10% of 5) = 1 episode; MMER: max(1, (2+4)/2, (8+16)/2)
    assert results_md.rl_run("EnvA__archX__2__7.csv.gz") == dict(
        seed="2", steps="300", episodes="5", first="1.000", final="16.000", mmer="12.000", entropy="1.000 -> 0.500")
    run = folder / "copy50__copy_task_elstm__rtrl__3__9"
    run.mkdir()
    (run / "curve.csv").write_text("sequences,updates,tokens,wall_time,train_loss,val_loss,val_token_acc,val_seq_acc\n"
                                   "0,0,0,0.5,0.7,0.7,0.5,0.01\n100,40,900,12.3,0.6,0.6,0.6,0.2\n"
                                   "200,80,1800,24.6,0.5,0.5,0.7,0.15\n")
    assert results_md.copy_run(run.name) == dict(seed="3", sequences="200", updates="80", wall_time="25 s",
                                                 best="20.00%", seq_acc="15.00%", token_acc="70.00%")
    # evaluations at 0.5 s, 12.3 s, 24.6 s: the window [12.3, 30) holds the last two, [1, 12) none
    assert results_md.copy_best(run.name, 12.3, 30) == "20.00%" and results_md.copy_best(run.name, 20, 30) == "15.00%"
    with pytest.raises(ValueError):
        results_md.copy_best(run.name, 1, 12)
    (folder / "out.txt").write_text("delay 1\nit 0 env steps 10 accuracy 0.5 entropy 1.3\n"
                                    "it 1 env steps 20 accuracy 0.7\n")
    assert [results_md.lastword("out.txt", w) for w in ("env steps", "accuracy", "entropy")] == ["20", "0.7", "1.3"]


def test_ppo_report_writes_command_commit_steps_seed(tmp_path):
    """scripts/ppo_report.py: the figure always; the markdown with --command and --commit: command, commit, env
    steps and seed, and no date or machine line."""
    export = sanity_run(tmp_path)
    script = os.path.join(ROOT, "scripts", "ppo_report.py")

    def run(*args):
        return subprocess.run([sys.executable, script, "--run", str(export), *args], capture_output=True, text=True)

    p = run("--out", str(tmp_path / "fig"))
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "fig.png").exists() and not (tmp_path / "fig.md").exists()
    assert "| final score (mean return of the last 10% of episodes) | 16.0000 |" in p.stdout
    p = run("--out", str(tmp_path / "rep"), "--command", "python algos/x.py --seed 2", "--commit", "abc1234")
    assert p.returncode == 0, p.stderr
    md = (tmp_path / "rep.md").read_text()
    assert ("- command: `python algos/x.py --seed 2`\n- commit: abc1234\n"
            "- env steps: 300 (3 iterations of 100); seed 2\n") in md
    assert "date" not in md and "machine" not in md
    assert run("--out", str(tmp_path / "x"), "--commit", "abc1234").returncode != 0  # --command and --commit together


BLOCK = """- `EnvA`:
<!-- [[[cog out(scores("scores.csv", "EnvA"))]]] -->
old
<!-- [[[end]]] -->
"""


def test_check_finds_a_hand_edited_number(results_md, folder):
    readme = folder / "README.md"
    readme.write_text(BLOCK)
    assert results_md.main([str(folder), "--check"]) == 1 and "old" in readme.read_text()  # --check changes nothing
    assert results_md.main([str(folder)]) == 0
    assert readme.read_text() == BLOCK.replace("old", "archY 300.0 (n=1), archX 200.0 ± 70.7 (n=2)")
    assert results_md.main([str(folder), "--check"]) == 0
    readme.write_text(readme.read_text().replace("300.0", "310.0"))  # a number typed over the generated one
    assert results_md.main([str(folder), "--check"]) == 1


@pytest.mark.parametrize("call", ['scores("scores.csv", "EnvC")', 'cell("scores.csv", "EnvA")', 'logkey("log.txt", "no")',
                                  'iqm("aggregate.json", "archX", "mmer")', 'trace("trace_records.csv", 10, "gru_tbptt", 8, 1728)',
                                  'md_columns("base.md", ["nothing"])', 'lastword("log.txt", "nothing")'])
def test_bad_calls_are_errors(results_md, folder, call, capsys):
    (folder / "README.md").write_text(f"<!-- [[[cog out({call})]]] -->\n<!-- [[[end]]] -->\n")
    assert results_md.main([str(folder)]) == 1


def test_committed_results_readmes_are_up_to_date(results_md):
    """Every number in a generated part of results/**/README.md is what the committed data give."""
    assert results_md.main(["--check"]) == 0


WINDOWS = os.path.join(ROOT, "scripts", "windows.py")


def run_windows(*args):
    return subprocess.run([sys.executable, WINDOWS, *map(str, args)], cwd=ROOT, capture_output=True, text=True)


def test_windows_hand_values(tmp_path):
    """scripts/windows.py: window means on made-up runs; a window is (a, a + W], so step 500 is in the first."""
    export_run = load_script("plot").export_run
    (tmp_path / "run_scalars").mkdir()
    tag = "charts/episodic_return"
    export_run(tmp_path / "run_scalars" / "EnvA__archX__1__7.csv.gz",
               {tag: (np.array([100, 400, 600, 1200]), np.array([1.0, 3.0, 5.0, 7.0]))})
    export_run(tmp_path / "run_scalars" / "EnvA__archX__2__7.csv.gz", {tag: (np.array([500, 1500]), np.array([2.0, 4.0]))})
    assert run_windows(tmp_path, "--window", 500).returncode == 0
    rows = (tmp_path / "windows.md").read_text().splitlines()
    assert "| run | 0-0.0005M | 0.0005M-0.001M | 0.001M-0.0015M |" in rows
    assert "| archX seed 1 | 2.000 | 5.000 | 7.000 |" in rows
    assert "| archX seed 2 | 2.000 |  | 4.000 |" in rows
    assert "| archX mean (n=2) | 2.000 |  | 5.500 |" in rows  # no mean where a seed has no episode
    assert run_windows(tmp_path, "--window", 500, "--check").returncode == 0
    table = tmp_path / "windows.md"
    table.write_text(table.read_text().replace("5.500", "5.600"))  # a number typed over
    assert run_windows(tmp_path, "--window", 500, "--check").returncode == 1
    assert run_windows(tmp_path, "--window", 0).returncode == 1
    assert "no exported runs" in run_windows(tmp_path / "run_scalars").stderr


def test_committed_windows_tables_are_up_to_date():
    """Every results/**/windows.md is what windows.py writes from the committed runs, with the window it names."""
    tables = sorted(glob.glob(os.path.join(ROOT, "results", "**", "windows.md"), recursive=True))
    assert tables
    for table in tables:
        with open(table) as f:
            window = re.search(r"--window (\d+)`", f.read()).group(1)
        check = run_windows(os.path.relpath(os.path.dirname(table), ROOT), "--window", window, "--check")
        assert check.returncode == 0, check.stdout + check.stderr
