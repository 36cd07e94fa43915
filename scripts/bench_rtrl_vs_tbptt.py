"""Seconds per online learning step: T-BPTT (GRU, LRU) at T in {1, 2, ..., 64} vs exact RTRL (RTU, online LRU).

The RTU paper's runtime figure, on this machine: fully online TD(lambda) on trace conditioning (ISI 10,
10 distractors, D = 12 inputs), batch 1, one update per environment step. A "step" is exactly the inner loop of
algos/td_animal_learning.py: environment step, learner step (forward + gradient of v), TD error, eligibility
trace update and fused Adam step. The learner classes are imported from that script, at equal recurrent-parameter
budgets (its default sizes: about 1,664 recurrent parameters). T-BPTT re-runs the cell over the last T inputs every
step, so its cost grows linearly in T; RTRL has no T (flat lines).

Each configuration is timed `--repeats` times over a number of steps chosen to last about `--target-sec` seconds,
the repeats interleaved round-robin over the configurations (so that load changes on a shared machine hit all of
them alike). The main table and the plot report the median CPU time of the process per step (time.process_time:
robust to other jobs on a shared machine), the full table the wall-clock median and minimum as well.
Run with OMP_NUM_THREADS=1.

    OMP_NUM_THREADS=1 python scripts/bench_rtrl_vs_tbptt.py --out results/perf/rtrl_vs_tbptt.md

The batch setting (PPO update iteration time, ppo_rtu_rtrl vs ppo_gru_tbptt at several T) is measured by
scripts/bench_sps.py (results/perf/sps.md), which runs the PPO scripts themselves.
"""
import argparse
import datetime
import importlib.util
import os
import platform
import statistics
import sys
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
_path = os.path.join(ROOT, "algos", "td_animal_learning.py")
_spec = importlib.util.spec_from_file_location("td_animal_learning", _path)
tdl = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tdl)

TBPTT_ARCHS = ("gru_tbptt", "lru_tbptt")
RTRL_ARCHS = ("rtu_nonlinear", "rtu_linear", "lru_rtrl")
LABELS = {"gru_tbptt": "GRU, T-BPTT", "lru_tbptt": "LRU, T-BPTT", "rtu_nonlinear": "non-linear RTU, RTRL",
          "rtu_linear": "linear RTU, RTRL", "lru_rtrl": "online LRU, RTRL"}


def make_setup(arch, T, seed=0):
    """The learner, optimizer and environment exactly as td_animal_learning.main builds them (default Args)."""
    args = tdl.Args(arch=arch, seed=seed, **({"tbptt_len": T} if T else {}))
    isi_interval, gamma = tdl.check_args(args)
    env = tdl.TraceConditioning(isi_interval, args.iti_interval, args.num_distractors, seed=seed)
    D = env.obs_dim
    size = tdl.default_hidden_size(arch, D)
    learner = tdl.make_learner(arch, D, size, args, torch.Generator().manual_seed(seed))
    params = learner.parameters()
    opt = torch.optim.Adam(params, lr=args.learning_rate, betas=(args.adam_beta1, args.adam_beta2),
                           eps=args.adam_eps, fused=True)
    state = dict(env=env, learner=learner, params=params, opt=opt, gamma=gamma, decay=gamma * args.td_lambda,
                 elig=[torch.zeros_like(p) for p in params])
    obs = env.reset()
    state["v"], state["grad"] = learner.step(torch.from_numpy(obs))
    n_rec = sum(p.numel() for p in learner.recurrent_parameters())
    flops = tdl.flops_per_step(arch, D, size, T if arch in TBPTT_ARCHS else 1)
    return state, dict(size=size, params=n_rec, flops=flops)


def run_steps(s, n):
    """n online TD(lambda) steps: the inner loop of td_animal_learning.main (without its logging)."""
    env, learner, params, opt, elig = s["env"], s["learner"], s["params"], s["opt"], s["elig"]
    v, grad = s["v"], s["grad"]
    for _ in range(n):
        v_t = v.item()
        obs, c = env.step()
        v, grad_next = learner.step(torch.from_numpy(obs))
        delta = c + s["gamma"] * v.item() - v_t
        torch._foreach_mul_(elig, s["decay"])
        torch._foreach_add_(elig, grad)
        for p, g in zip(params, torch._foreach_mul(elig, -delta)):
            p.grad = g
        opt.step()
        grad = grad_next
    s["v"], s["grad"] = v, grad


def time_configs(configs, repeats, target_sec):
    """Time every (arch, T) configuration. Repeats are interleaved round-robin over the configurations, so that
    a change of the machine's load during the benchmark affects all of them alike."""
    setups = []
    for arch, T in configs:
        s, info = make_setup(arch, T)
        run_steps(s, max(20, (T or 0) + 10))  # fills the T-BPTT window, warms up the allocator
        t0 = time.perf_counter()
        run_steps(s, 5)
        n = int(min(2000, max(10, target_sec / ((time.perf_counter() - t0) / 5))))
        setups.append((s, dict(arch=arch, T=T, steps=n, wall=[], cpu=[], **info)))
    for r in range(repeats):
        for s, row in setups:
            t0, c0 = time.perf_counter(), time.process_time()
            run_steps(s, row["steps"])
            row["cpu"].append((time.process_time() - c0) / row["steps"])
            row["wall"].append((time.perf_counter() - t0) / row["steps"])
        print(f"repeat {r + 1}/{repeats} done", flush=True)
    rows = []
    for _, row in setups:
        wall, cpu = row.pop("wall"), row.pop("cpu")
        rows.append(dict(row, cpu=statistics.median(cpu), median=statistics.median(wall), min=min(wall)))
        T = f"T={row['T']}" if row["T"] else "RTRL"
        print(f"{row['arch']:14s} {T:5s} cpu {1e3 * rows[-1]['cpu']:.3f} ms/step, wall median "
              f"{1e3 * rows[-1]['median']:.3f} min {1e3 * rows[-1]['min']:.3f}", flush=True)
    return rows


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def loadavg():
    try:
        return open("/proc/loadavg").read().split()[:3]
    except OSError:
        return ["?"] * 3


def markdown(rows, Ts, meta):
    ms = lambda x: f"{1e3 * x:.3f}"  # noqa: E731
    out = ["# Seconds per online learning step: T-BPTT vs exact RTRL (trace conditioning, batch 1)", ""]
    out += [f"- Command: `{meta['command']}`", f"- Machine: {meta['cpu']} ({meta['nproc']} logical CPUs), "
            f"OMP_NUM_THREADS={meta['omp']}, torch {meta['torch']}, Python {meta['python']}",
            f"- Date: {meta['date']}; load average at start {meta['load_start']}, at end {meta['load_end']} "
            "(wall-clock times are inflated and noisy when other jobs share the cores, hence the CPU-time table)",
            f"- Setting: online TD(lambda) on trace conditioning (ISI 10, 10 distractors, D = 12 inputs), one update "
            "per step; a step = env step + learner step (forward, gradient of v) + eligibility trace + fused Adam, "
            "exactly the inner loop of `algos/td_animal_learning.py`, whose learner classes are used. Equal "
            "recurrent-parameter budget (value head not counted). Medians over "
            f"{meta['repeats']} repeats of about {meta['target_sec']} s each, interleaved over the configurations.", ""]
    out += ["## CPU milliseconds per step vs truncation length T", "",
            "CPU time of the (single-threaded) benchmark process per step, median over repeats: on a shared machine "
            "it excludes the time spent waiting for a core, so it is what the wall-clock time would be on an idle "
            "machine (up to cache effects). Wall-clock times are in the full table below.", ""]
    out += ["| learner | size | recurrent params | " + " | ".join(f"T={T}" for T in Ts) + " |",
            "|---|---|---|" + "---|" * len(Ts)]
    for arch in TBPTT_ARCHS:
        r = {x["T"]: x for x in rows if x["arch"] == arch}
        if not r:
            continue
        first = next(iter(r.values()))
        out.append(f"| {LABELS[arch]} | {first['size']} | {first['params']} | "
                   + " | ".join(ms(r[T]["cpu"]) if T in r else "-" for T in Ts) + " |")
    for x in rows:
        if x["arch"] in RTRL_ARCHS:
            out.append(f"| {LABELS[x['arch']]} (no T) | {x['size']} | {x['params']} | "
                       + " | ".join(ms(x["cpu"]) for _ in Ts) + " |")
    out += ["", "Sizes: RTU / LRU = number of complex units n (LRU readout width H = n), GRU = hidden size.", ""]
    out += ["## All measurements", "", "| learner | T | size | recurrent params | analytic FLOPs/step | steps timed | "
            "CPU ms/step (median) | wall ms/step (median) | wall ms/step (min) |", "|---" * 9 + "|"]
    for x in rows:
        out.append(f"| {LABELS[x['arch']]} | {x['T'] if x['T'] is not None else '-'} | {x['size']} | {x['params']} | "
                   f"{x['flops']:,} | {x['steps']} | {ms(x['cpu'])} | {ms(x['median'])} | {ms(x['min'])} |")
    out += ["", "## Batch setting (PPO update iteration time)", "",
            "Measured by `scripts/bench_sps.py`, which runs the PPO scripts themselves: see the batch-setting table "
            "of `results/perf/sps.md` (update time per iteration of `ppo_gru_tbptt.py` / `ppo_lru_tbptt.py` at "
            "several T vs `ppo_rtu_rtrl.py`).", ""]
    return "\n".join(out)


def plot(rows, Ts, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for arch, style in zip(TBPTT_ARCHS, ("o-", "s-")):
        r = sorted((x for x in rows if x["arch"] == arch), key=lambda x: x["T"])
        if r:
            ax.plot([x["T"] for x in r], [1e3 * x["cpu"] for x in r], style,
                    label=f"{LABELS[arch]} ({r[0]['params']} params)")
    for x, color in zip([x for x in rows if x["arch"] in RTRL_ARCHS], ("C2", "C3", "C4")):
        ax.axhline(1e3 * x["cpu"], color=color, linestyle="--", label=f"{LABELS[x['arch']]} ({x['params']} params)")
    ax.set_xscale("log", base=2)
    ax.set_xticks(Ts)
    ax.set_xticklabels([str(T) for T in Ts])
    ax.set_xlabel("truncation length T")
    ax.set_ylabel("CPU milliseconds per online learning step")
    ax.set_title("Online TD(lambda), trace conditioning, batch 1 (CPU)")
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--Ts", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64], help="truncation lengths")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per configuration")
    parser.add_argument("--target-sec", type=float, default=1.0, help="approximate duration of one repeat")
    parser.add_argument("--out", default=None, help="markdown output path (the PNG goes next to it)")
    a = parser.parse_args()
    torch.manual_seed(0)
    np.random.seed(0)
    argv = " ".join([os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:])
    meta = dict(command=f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')} python {argv}",
                cpu=cpu_model(), nproc=os.cpu_count(), omp=os.environ.get("OMP_NUM_THREADS", "unset"),
                torch=torch.__version__, python=platform.python_version(),
                date=datetime.datetime.now().strftime("%Y-%m-%d %H:%M"), load_start=" ".join(loadavg()),
                repeats=a.repeats, target_sec=a.target_sec)
    configs = [(arch, None) for arch in RTRL_ARCHS] + [(arch, T) for arch in TBPTT_ARCHS for T in a.Ts]
    rows = time_configs(configs, a.repeats, a.target_sec)
    meta["load_end"] = " ".join(loadavg())
    md = markdown(rows, a.Ts, meta)
    print(md)
    if a.out:
        os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
        with open(a.out, "w") as f:
            f.write(md)
        png = os.path.splitext(a.out)[0] + ".png"
        plot(rows, a.Ts, png)
        print(f"wrote {a.out} and {png}")


if __name__ == "__main__":
    main()
