"""Helpers for tests that run the single-file scripts in `algos/` end to end."""
import glob
import os
import signal
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ALGOS = os.path.join(ROOT, "algos")

# Small PPO settings for smoke runs: 2048 env steps in 4 iterations.
PPO_SMOKE_ARGS = ("--total-timesteps", "2048", "--num-steps", "512", "--num-minibatches", "4", "--update-epochs", "2")
# One id of each environment family the scripts accept, including popgym's Tuple observations and MultiDiscrete actions.
SMOKE_ENVS = ("HalfCheetah-P-v5", "Hopper-V-v5", "Reacher-POMDP-v5", "popgym-AutoencodeEasy-v0", "popgym-MineSweeperEasy-v0")


def run_script(script, *args, cwd, timeout=900):
    """Run `python algos/<script>.py args...` in `cwd` (where its runs/ folder goes) and return the process."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return subprocess.run([sys.executable, os.path.join(ALGOS, f"{script}.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def run_script_with_prelude(script, prelude, *args, cwd, timeout=900):
    """Like run_script, but execute the Python source `prelude` first (to patch a library) in the same process."""
    path = os.path.join(ALGOS, f"{script}.py")
    main = f"import runpy, sys; sys.argv = {[path, *args]!r}; runpy.run_path({path!r}, run_name='__main__')"
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-c", prelude + "\n" + main], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def read_scalars(cwd):
    """All TensorBoard scalars of the single run under cwd/runs, as {tag: [(step, value), ...]}."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (run_dir,) = glob.glob(os.path.join(cwd, "runs", "*"))
    acc = EventAccumulator(run_dir)
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def run_and_kill(script, args, cwd, after_iteration, timeout=300):
    """Start `algos/<script>.py args...` in cwd; SIGKILL it once its checkpoint.pt has reached `after_iteration` and
    TensorBoard has logged more after it (so that the resumed run has something to drop). Returns the exit code."""
    import time

    import torch

    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    with open(os.path.join(cwd, "killed.log"), "w") as log:
        proc = subprocess.Popen([sys.executable, os.path.join(ALGOS, f"{script}.py"), *args], cwd=cwd, env=env,
                                stdout=log, stderr=subprocess.STDOUT)
        deadline, logged = time.time() + timeout, None
        try:
            while proc.poll() is None and time.time() < deadline:
                if logged is None:
                    paths = glob.glob(os.path.join(cwd, "runs", "*", "checkpoint.pt"))
                    if paths and torch.load(paths[0], weights_only=False)["iteration"] >= after_iteration:
                        (events,) = glob.glob(os.path.join(cwd, "runs", "*", "events.out.tfevents.*"))
                        logged = os.path.getsize(events)  # at least what the checkpoint covers
                elif os.path.getsize(events) > logged:
                    proc.send_signal(signal.SIGKILL)
                    break
                time.sleep(0.01)
        finally:
            if proc.poll() is None and time.time() >= deadline:
                proc.kill()
            proc.wait()
    return proc.returncode


TIMING_TAGS = ("charts/SPS", "charts/rollout_time", "charts/update_time", "charts/sec_per_step")


def assert_same_run(cwd_a, cwd_b):
    """The single runs under cwd_a/runs and cwd_b/runs ended alike: same steps, parameters and optimizer state, the
    same scalars (timing tags: at the same steps), and both wrote done.json."""
    import torch

    (dir_a,), (dir_b,) = (glob.glob(os.path.join(cwd, "runs", "*")) for cwd in (cwd_a, cwd_b))
    a, b = (torch.load(os.path.join(d, "checkpoint.pt"), weights_only=False) for d in (dir_a, dir_b))
    assert (a["global_step"], a["iteration"]) == (b["global_step"], b["iteration"])
    assert a["model"].keys() == b["model"].keys()
    for name, p in a["model"].items():
        assert torch.equal(p, b["model"][name]), name
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert all(torch.equal(torch.as_tensor(sa[k]), torch.as_tensor(sb[k])) for k in sa)
    scalars_a, scalars_b = read_scalars(cwd_a), read_scalars(cwd_b)
    assert scalars_a.keys() == scalars_b.keys() and len(scalars_a) >= 3
    for tag in scalars_a:
        if tag in TIMING_TAGS:
            assert [s for s, _ in scalars_a[tag]] == [s for s, _ in scalars_b[tag]], tag
        else:
            assert scalars_a[tag] == scalars_b[tag], tag
    assert os.path.isfile(os.path.join(dir_a, "done.json")) and os.path.isfile(os.path.join(dir_b, "done.json"))
