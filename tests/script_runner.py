"""Helpers for tests that run the single-file scripts in `algos/` end to end."""
import glob
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ALGOS = os.path.join(ROOT, "algos")

# Small PPO settings for smoke runs: 2048 env steps in 4 iterations.
PPO_SMOKE_ARGS = ("--total-timesteps", "2048", "--num-steps", "512", "--num-minibatches", "4", "--update-epochs", "2")
# One id of each environment family (SPEC 7), including popgym's Tuple observations and MultiDiscrete actions.
SMOKE_ENVS = ("HalfCheetah-P-v5", "Hopper-V-v5", "Reacher-POMDP-v5", "popgym-AutoencodeEasy-v0", "popgym-MineSweeperEasy-v0")


def run_script(script, *args, cwd, timeout=900):
    """Run `python algos/<script>.py args...` in `cwd` (where its runs/ folder goes) and return the process."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return subprocess.run([sys.executable, os.path.join(ALGOS, f"{script}.py"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def read_scalars(cwd):
    """All TensorBoard scalars of the single run under cwd/runs, as {tag: [(step, value), ...]}."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (run_dir,) = glob.glob(os.path.join(cwd, "runs", "*"))
    acc = EventAccumulator(run_dir)
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
