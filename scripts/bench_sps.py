"""Side-by-side speed of every algorithm script at its default configuration (issue: performance).

Each (script, env) runs as its own process for `--iterations` PPO iterations (R2AC: the same number of env steps);
the first iteration is warm-up and is dropped. Steady-state numbers come from the per-iteration TensorBoard scalars
the scripts log (charts/rollout_time, charts/update_time), peak RSS from the kernel (os.wait4). Two more tables:
SPS of --scaling-script against --num-envs (num_envs x num_steps = 2048), and the batch setting of the RTU paper's
runtime figure (PPO update time per iteration of ppo_gru_tbptt / ppo_lru_tbptt at --tbptt-lens T vs the RTRL scripts).

    python scripts/bench_sps.py --out results/perf/sps.md
"""
import argparse
import glob
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = [  # (label, script, extra args)
    ("ppo_rtu_rtrl (non-linear)", "ppo_rtu_rtrl", []),
    ("ppo_rtu_rtrl (linear)", "ppo_rtu_rtrl", ["--rtu-variant", "linear"]),
    ("ppo_lru_rtrl", "ppo_lru_rtrl", []),
    ("ppo_gru_tbptt (T=16)", "ppo_gru_tbptt", []),
    ("ppo_lru_tbptt (T=16)", "ppo_lru_tbptt", []),
    ("ppo_mlp", "ppo_mlp", []),
    ("r2ac_elstm", "r2ac_elstm", []),
]
ENVS = ["HalfCheetah-P-v5", "popgym-RepeatFirstEasy-v0"]


def read_scalars(run_root):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (run_dir,) = glob.glob(os.path.join(run_root, "runs", "*"))
    acc = EventAccumulator(run_dir)
    acc.Reload()
    return {tag: [e.value for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def run(script, args, steps, threads):
    """Run one script to completion; return (steady SPS, rollout us/step, update ms/iter, peak RSS MiB, wall s)."""
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        cmd = [sys.executable, os.path.join(ROOT, "algos", f"{script}.py"), "--total-timesteps", str(steps), *args]
        start = time.time()
        proc = subprocess.Popen(cmd, cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        _, status, rusage = os.wait4(proc.pid, 0)
        wall = time.time() - start
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr.read()[-2000:]}")
        s = read_scalars(tmp)
    rollout, update = np.array(s["charts/rollout_time"][1:]), np.array(s["charts/update_time"][1:])
    steps_per_iter = steps / len(s["charts/rollout_time"])
    sps = steps_per_iter / np.mean(rollout + update)
    return sps, 1e6 * np.mean(rollout) / steps_per_iter, 1e3 * np.mean(update), rusage.ru_maxrss / 1024, wall


def git_commit():
    out = subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--", "algos", "triton_kernels"], capture_output=True, text=True)
    return out.stdout.strip() + (" (with uncommitted changes in algos/ or triton_kernels/)" if dirty.stdout.strip() else "")


def machine_line():
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=4, help="iterations of 2048 env steps per run (first is warm-up)")
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of each run")
    parser.add_argument("--scaling-script", default="ppo_rtu_rtrl", help="script for the --num-envs scaling table")
    parser.add_argument("--no-scaling", action="store_true", help="skip the --num-envs scaling table")
    parser.add_argument("--tbptt-lens", type=int, nargs="*", default=[1, 2, 4, 8, 16, 32, 64],
                        help="T of the batch-setting table (PPO update time vs T on HalfCheetah-P-v5); none = skip it")
    parser.add_argument("--only", nargs="*", help="run only these scripts")
    parser.add_argument("--out", help="also write the report to this markdown file")
    opts = parser.parse_args()

    steps = 2048 * opts.iterations
    lines = ["| script | env | steady SPS | rollout us/env-step | update ms/iter | peak RSS MiB | wall s |",
             "|-|-|-|-|-|-|-|"]
    results = {}
    for env_id in ENVS:
        for label, script, extra in CONFIGS:
            if opts.only and script not in opts.only:
                continue
            sps, roll, upd, rss, wall = run(script, ["--env-id", env_id, *extra], steps, opts.threads)
            results[(label, env_id)] = (sps, upd)
            lines.append(f"| {label} | {env_id} | {sps:.0f} | {roll:.0f} | {upd:.0f} | {rss:.0f} | {wall:.0f} |")
            print(lines[-1], flush=True)

    ratio_lines = []
    for env_id in ENVS:
        rtu, mlp, gru = (results.get((k, env_id)) for k in ("ppo_rtu_rtrl (non-linear)", "ppo_mlp", "ppo_gru_tbptt (T=16)"))
        if rtu and mlp:
            ratio_lines.append(f"- {env_id}: SPS(ppo_rtu_rtrl) / SPS(ppo_mlp) = {rtu[0] / mlp[0]:.2f} (target >= 0.7)")
        if rtu and gru:
            ratio_lines.append(f"- {env_id}: update(ppo_rtu_rtrl) / update(ppo_gru_tbptt T=16) = {rtu[1] / gru[1]:.2f} (target <= 1)")

    scaling = []
    if not opts.no_scaling:
        scaling = ["| num_envs | num_steps | steady SPS | rollout us/env-step | update ms/iter | peak RSS MiB |", "|-|-|-|-|-|-|"]
        for num_envs in (1, 2, 4, 8, 16):
            args = ["--env-id", ENVS[0], "--num-envs", str(num_envs), "--num-steps", str(2048 // num_envs)]
            sps, roll, upd, rss, _ = run(opts.scaling_script, args, steps, opts.threads)
            scaling.append(f"| {num_envs} | {2048 // num_envs} | {sps:.0f} | {roll:.0f} | {upd:.0f} | {rss:.0f} |")
            print(scaling[-1], flush=True)

    # Batch setting of the RTU paper's runtime figure: PPO update time per iteration, T-BPTT at several T vs RTRL.
    by_T = []
    if opts.tbptt_lens:
        by_T = ["| script | " + " | ".join(f"T={T}" for T in opts.tbptt_lens) + " |", "|-|" + "-|" * len(opts.tbptt_lens)]
        for script in ("ppo_gru_tbptt", "ppo_lru_tbptt"):
            cells = [run(script, ["--env-id", ENVS[0], "--tbptt-len", str(T)], steps, opts.threads)[2] for T in opts.tbptt_lens]
            by_T.append(f"| {script} | " + " | ".join(f"{c:.0f}" for c in cells) + " |")
            print(by_T[-1], flush=True)
        for label, script, _ in CONFIGS:  # RTRL has no T: its update time at the default config, from the table above
            if script.endswith("_rtrl") and (label, ENVS[0]) in results:
                by_T.append(f"| {label} (no T) | " + " | ".join(f"{results[(label, ENVS[0])][1]:.0f}" for _ in opts.tbptt_lens) + " |")

    report = "\n".join([
        f"Command: `python scripts/bench_sps.py {' '.join(sys.argv[1:])}`",
        f"Machine: {machine_line()}; OMP_NUM_THREADS={opts.threads}; date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"Code: commit {git_commit()}",
        f"Each run: {opts.iterations} iterations of 2048 env steps at the script's defaults; the first iteration is",
        "warm-up and excluded. Steady SPS = 2048 / (rollout + update time) averaged over the remaining iterations.",
        "", *lines, "", "Targets:", *ratio_lines,
        *(["", f"Scaling of {opts.scaling_script} on {ENVS[0]} with num_envs x num_steps = 2048:", "", *scaling] if scaling else []),
        *(["", f"Batch setting: PPO update time per iteration (ms; 2048 transitions, 4 epochs x 32 minibatches) on {ENVS[0]},",
           "T-BPTT at window length T vs RTRL (which has no T):", "", *by_T] if by_T else []),
    ])
    print(report)
    if opts.out:
        with open(opts.out, "w") as f:
            f.write(report + "\n")


if __name__ == "__main__":
    main()
