"""Side-by-side speed of the algorithm scripts at their default configuration, and of two outside anchors.

Each (script, env) runs as its own process, one at a time, for `--iterations` iterations of 2048 env steps; the
first is warm-up and is dropped (its excess over a steady iteration is reported as "first-iteration overhead", with
a cold torch.compile cache). Steady time per iteration is the median gap between consecutive iterations' TensorBoard
events, so it counts everything a script does (rollout, update, logging, checkpoints); the rollout/update split comes
from the charts/rollout_time and charts/update_time scalars; peak RSS from the kernel (os.wait4).
`--rounds R` repeats the whole list R times, interleaved, and reports medians: on a noisy machine compare ratios
within one bench run. `--baseline REV` also runs the scripts of git revision REV in the same rounds (before/after).
Anchors, at the RTU paper's PPO configuration (1 env, 2048-step rollouts, 4 epochs x 32 minibatches):
`--official RTUS_GIT_DIR` times the official RTU code (JAX on Brax) with scripts/bench_official_rtus.sh, and
`--cleanrl CLEANRL_DIR` times CleanRL's ppo_continuous_action.py at 4 epochs on the fully observed HalfCheetah-v5.

    python scripts/bench_sps.py --rounds 3 --official <rtus git dir> --cleanrl <cleanrl dir> --out results/perf/sps.md
"""
import argparse
import glob
import os
import platform
import re
import shutil
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


def read_events(run_root):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (run_dir,) = glob.glob(os.path.join(run_root, "runs", "*"))
    acc = EventAccumulator(run_dir)
    acc.Reload()
    return {tag: acc.Scalars(tag) for tag in acc.Tags()["scalars"]}


def run(script_path, args, steps, threads, tag="charts/SPS"):
    """Run one training script to completion; returns dict(sps, rollout_us, update_ms, rss, first_s, wall)."""
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
                   TORCHINDUCTOR_CACHE_DIR=os.path.join(tmp, "inductor"))  # a cold compile cache, as a new user has
        cmd = [sys.executable, script_path, "--total-timesteps", str(steps), *args]
        start = time.time()
        proc = subprocess.Popen(cmd, cwd=tmp, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        _, status, rusage = os.wait4(proc.pid, 0)
        wall = time.time() - start
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr.read()[-2000:]}")
        events = read_events(tmp)
    times = np.array([e.wall_time for e in events[tag]])
    steps_per_iter = steps / len(times)
    steady = np.median(np.diff(times))
    out = dict(sps=steps_per_iter / steady, rss=rusage.ru_maxrss / 1024, wall=wall,
               first_s=times[0] - start - steady)  # the first iteration's excess (imports and env setup included)
    if "charts/rollout_time" in events:
        out["rollout_us"] = 1e6 * np.median([e.value for e in events["charts/rollout_time"][1:]]) / steps_per_iter
        out["update_ms"] = 1e3 * np.median([e.value for e in events["charts/update_time"][1:]])
    return out


def cleanrl_script(cleanrl_dir, tmp):
    """CleanRL's ppo_continuous_action.py, with the one change gymnasium 1.x needs (TransformObservation's space)."""
    src = os.path.join(cleanrl_dir, "cleanrl", "ppo_continuous_action.py")
    if os.path.isfile(src):
        code = open(src).read()
    else:  # a bare git mirror
        code = subprocess.run(["git", "--git-dir", cleanrl_dir, "show", "HEAD:cleanrl/ppo_continuous_action.py"],
                              capture_output=True, text=True, check=True).stdout
    code = code.replace("lambda obs: np.clip(obs, -10, 10))", "lambda obs: np.clip(obs, -10, 10), env.observation_space)")
    path = os.path.join(tmp, "ppo_continuous_action.py")
    open(path, "w").write(code)
    return path


def official(rtus_dir, rec_fn, iterations):
    """Steady SPS and JIT seconds of the official RTU code on cheetah_p (HalfCheetah-P in Brax)."""
    out = subprocess.run(["bash", os.path.join(ROOT, "scripts", "bench_official_rtus.sh"), rtus_dir, "cheetah_p", rec_fn,
                          str(iterations)], capture_output=True, text=True)
    m = re.search(r"steady SPS (\d+) .*JIT (-?\d+) s", out.stdout)
    if not m:
        raise RuntimeError(f"official run failed: {out.stdout[-1000:]} {out.stderr[-1000:]}")
    return dict(sps=float(m.group(1)), first_s=float(m.group(2)))


def baseline_tree(rev, tmp):
    """algos/ and triton_kernels/ of git revision `rev`, exported into tmp."""
    os.makedirs(tmp)
    archive = subprocess.run(["git", "-C", ROOT, "archive", rev, "algos", "triton_kernels"], capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
    return tmp


def git_commit():
    out = subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True, text=True)
    dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--", "algos", "triton_kernels"], capture_output=True, text=True)
    return out.stdout.strip() + (" (with uncommitted changes in algos/ or triton_kernels/)" if dirty.stdout.strip() else "")


def machine_line():
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__}"



def public_argv(argv):
    """The command line as a reader can rerun it: the local paths of the two anchors become placeholders."""
    names = {"--official": "<git mirror of esraaelelimy/rtus>", "--cleanrl": "<git mirror of vwxyzjn/cleanrl>"}
    out = []
    for prev, arg in zip([None] + argv[:-1], argv):
        flag = arg.split("=", 1)[0]
        out.append(names[prev] if prev in names else f"{flag}={names[flag]}" if "=" in arg and flag in names else arg)
    return out

def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=4, help="iterations of 2048 env steps per run (first is warm-up)")
    parser.add_argument("--rounds", type=int, default=1, help="repeat every run this many times, interleaved; medians")
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of each run")
    parser.add_argument("--envs", nargs="*", default=ENVS, help="env ids of the main table")
    parser.add_argument("--only", nargs="*", help="run only these scripts")
    parser.add_argument("--baseline", help="also run the scripts of this git revision (before/after ratios)")
    parser.add_argument("--official", help="a git mirror (or tree) of github esraaelelimy/rtus: time the official code")
    parser.add_argument("--cleanrl", help="a checkout or git mirror of github vwxyzjn/cleanrl: time its PPO")
    parser.add_argument("--scaling-script", default="ppo_rtu_rtrl", help="script for the --num-envs scaling table")
    parser.add_argument("--no-scaling", action="store_true", help="skip the --num-envs scaling table")
    parser.add_argument("--tbptt-lens", type=int, nargs="*", default=[1, 2, 4, 8, 16, 32, 64],
                        help="T of the batch-setting table (PPO update time vs T on HalfCheetah-P-v5); none = skip it")
    parser.add_argument("--out", help="also write the report to this markdown file")
    opts = parser.parse_args()
    if opts.iterations < 2 or opts.rounds < 1:
        sys.exit("error: --iterations must be >= 2 (the first is warm-up) and --rounds >= 1")

    steps = 2048 * opts.iterations
    tmp = tempfile.mkdtemp()
    trees = {"": ROOT}
    if opts.baseline:
        trees[f" @{opts.baseline}"] = baseline_tree(opts.baseline, os.path.join(tmp, "baseline"))
    jobs = []  # (row label, env, callable)
    for env_id in opts.envs:
        for label, script, extra in CONFIGS:
            if opts.only and script not in opts.only:
                continue
            for suffix, tree in trees.items():
                path = os.path.join(tree, "algos", f"{script}.py")
                jobs.append((label + suffix, env_id, lambda p=path, a=["--env-id", env_id, *extra]: run(p, a, steps, opts.threads)))
    if opts.cleanrl:
        path = cleanrl_script(opts.cleanrl, tmp)
        jobs.append(("CleanRL ppo_continuous_action (4 epochs)", "HalfCheetah-v5",
                     lambda: run(path, ["--env-id", "HalfCheetah-v5", "--update-epochs", "4"], steps, opts.threads)))
    if opts.official:
        for rec_fn, label in (("non_linear_rtu", "official RTU, non-linear (JAX)"), ("linear_rtu", "official RTU, linear (JAX)")):
            jobs.append((label, "cheetah_p (Brax)", lambda r=rec_fn: official(opts.official, r, opts.iterations + 2)))
    samples = {}
    for round_ in range(opts.rounds):
        for label, env_id, job in jobs:
            samples.setdefault((label, env_id), []).append(job())
            print(f"round {round_ + 1}: {label} {env_id}: {samples[(label, env_id)][-1]}", flush=True)
    shutil.rmtree(tmp)
    med = {key: {k: float(np.median([r[k] for r in rs])) for k in rs[0]} for key, rs in samples.items()}

    lines = ["| script | env | steady SPS | rollout us/env-step | update ms/iter | peak RSS MiB | first-iteration overhead s |",
             "|-|-|-|-|-|-|-|"]
    for (label, env_id), r in med.items():
        cells = [f"{r['sps']:.0f}", f"{r['rollout_us']:.0f}" if "rollout_us" in r else "",
                 f"{r['update_ms']:.0f}" if "update_ms" in r else "", f"{r['rss']:.0f}" if "rss" in r else "",
                 f"{r['first_s']:.0f}"]
        lines.append(f"| {label} | {env_id} | " + " | ".join(cells) + " |")

    def ratio(a, b, target):
        if a in med and b in med:
            return [f"| {a[0]} / {b[0]} | {med[a]['sps'] / med[b]['sps']:.2f} | {target} |"]
        return []

    hc, ours = opts.envs[0], lambda label: (label, opts.envs[0])
    ratio_lines = ["| steady SPS ratio | measured | target |", "|-|-|-|",
                   *ratio(ours("ppo_rtu_rtrl (non-linear)"), ("official RTU, non-linear (JAX)", "cheetah_p (Brax)"), ">= 2"),
                   *ratio(ours("ppo_rtu_rtrl (linear)"), ("official RTU, linear (JAX)", "cheetah_p (Brax)"), ">= 2"),
                   *ratio(ours("ppo_rtu_rtrl (linear)"), ours("ppo_rtu_rtrl (non-linear)"), "> 1"),
                   *ratio(ours("ppo_rtu_rtrl (non-linear)"), ours("ppo_mlp"), ">= 0.75"),
                   *ratio(ours("ppo_mlp"), ("CleanRL ppo_continuous_action (4 epochs)", "HalfCheetah-v5"), ">= 2")]
    if opts.baseline:
        ratio_lines += [f"| {label} / {label} @{opts.baseline} ({env_id}) | {r['sps'] / med[(label + f' @{opts.baseline}', env_id)]['sps']:.2f} | |"
                        for (label, env_id), r in med.items() if (label + f" @{opts.baseline}", env_id) in med]

    scaling = []
    if not opts.no_scaling:
        scaling = ["| num_envs | num_steps | steady SPS | rollout us/env-step | update ms/iter | peak RSS MiB |", "|-|-|-|-|-|-|"]
        for num_envs in (1, 2, 4, 8, 16):
            args = ["--env-id", hc, "--num-envs", str(num_envs), "--num-steps", str(2048 // num_envs)]
            r = run(os.path.join(ROOT, "algos", f"{opts.scaling_script}.py"), args, steps, opts.threads)
            scaling.append(f"| {num_envs} | {2048 // num_envs} | {r['sps']:.0f} | {r['rollout_us']:.0f} | {r['update_ms']:.0f} | {r['rss']:.0f} |")
            print(scaling[-1], flush=True)

    # Batch setting of the RTU paper's runtime figure: PPO update time per iteration, T-BPTT at several T vs RTRL.
    by_T = []
    if opts.tbptt_lens:
        by_T = ["| script | " + " | ".join(f"T={T}" for T in opts.tbptt_lens) + " |", "|-|" + "-|" * len(opts.tbptt_lens)]
        for script in ("ppo_gru_tbptt", "ppo_lru_tbptt"):
            path = os.path.join(ROOT, "algos", f"{script}.py")
            cells = [run(path, ["--env-id", hc, "--tbptt-len", str(T)], steps, opts.threads)["update_ms"] for T in opts.tbptt_lens]
            by_T.append(f"| {script} | " + " | ".join(f"{c:.0f}" for c in cells) + " |")
            print(by_T[-1], flush=True)
        for label, script, _ in CONFIGS:  # RTRL has no T: its update time at the default config, from the table above
            if script.endswith("_rtrl") and ours(label) in med:
                by_T.append(f"| {label} (no T) | " + " | ".join(f"{med[ours(label)]['update_ms']:.0f}" for _ in opts.tbptt_lens) + " |")

    report = "\n".join([
        f"Command: `python scripts/bench_sps.py {' '.join(public_argv(sys.argv[1:]))}`",
        f"Machine: {machine_line()}; OMP_NUM_THREADS={opts.threads}; date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"Code: commit {git_commit()}",
        f"Each run: {opts.iterations} iterations of 2048 env steps at the script's defaults, one process at a time; the first",
        f"is warm-up. Medians over {opts.rounds} interleaved round(s). The official code simulates with Brax, ours and",
        "CleanRL with MuJoCo: compare them as ratios measured in the same bench run. The ratio table's \"target\" is the",
        "speed this implementation aims for against each anchor (e.g. twice the official code's).",
        "", *lines, "", *ratio_lines,
        *(["", f"Scaling of {opts.scaling_script} on {hc} with num_envs x num_steps = 2048:", "", *scaling] if scaling else []),
        *(["", f"Batch setting: PPO update time per iteration (ms; 2048 transitions, 4 epochs x 32 minibatches) on {hc},",
           "T-BPTT at window length T vs RTRL (which has no T):", "", *by_T] if by_T else []),
    ])
    print(report)
    if opts.out:
        with open(opts.out, "w") as f:
            f.write(report + "\n")


if __name__ == "__main__":
    main()
