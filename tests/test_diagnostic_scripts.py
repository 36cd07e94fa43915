"""Diagnostic scripts run end to end: scripts/supervised_recall.py (and its summary), scripts/r2ac_delayed_bandit.py."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "supervised_recall.py")


def run(*args, cwd):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, SCRIPT, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize("script,flags", [("ppo_rtu_rtrl", ["--first-step-copy"]), ("ppo_gru_tbptt", [])])
def test_supervised_recall_runs_and_summarizes(script, flags, tmp_path):
    out = tmp_path / f"{script}.json"
    proc = run("--script", script, "--iterations", "2", "--out", str(out), "--", "--num-steps", "128",
               "--num-minibatches", "2", "--update-epochs", "1", *flags, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = json.loads(out.read_text())
    assert record["script"] == script and record["flags"] == ["--num-steps", "128", "--num-minibatches", "2",
                                                             "--update-epochs", "1", *flags]
    assert [c[0] for c in record["curve"]] == [128, 256] and all(0 <= c[1] <= 1 for c in record["curve"])
    proc = run("--summarize", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"| {script}.json | {script} |" in (tmp_path / "summary.md").read_text()
    assert (tmp_path / "accuracy.png").exists()


def test_supervised_recall_rejects_a_task_without_a_known_answer(tmp_path):
    proc = run("--script", "ppo_gru_tbptt", "--env-id", "popgym-HigherLowerEasy-v0", "--iterations", "1", "--",
               "--num-steps", "64", "--num-minibatches", "1", cwd=tmp_path)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1].startswith("error: no known answer for HigherLower")


@pytest.mark.parametrize("grad_method", ["rtrl", "tbptt"])
def test_r2ac_delayed_bandit_runs(grad_method, tmp_path):
    """The bandit drives r2ac_elstm.py's agent and loss directly, so it must follow that script's API."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "r2ac_delayed_bandit.py"), "--delay", "2",
                           "--grad-method", grad_method, "--iterations", "2", "--num-envs", "3", "--segment-len", "5"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1].startswith("iteration     1 env steps       30 accuracy")
