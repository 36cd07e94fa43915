"""Per-step cost of the exact-RTRL trace updates on CPU: reference path (backend="torch"), eager and torch.compile.

Sizes are the RTU paper's ~24k-parameter budget: RTU n=192 (non-linear; linear with full and with compact
traces), eLSTM N=188, D=64, B in {1, 8, 64}.
Bytes per step are analytic: traces and state read and written, params and x read, at the dtype size.
GB/s = bytes / time, compared with the copy bandwidth of this machine (dst.copy_(src), read + write bytes / time).

    python scripts/bench_trace_update.py --out results/perf/trace_update.md

--update: the PPO update side of algos/ppo_rtu_rtrl.py instead. (1) The torch.compile'd RTRL gradient
rtu_grads_from_carry(..., index) of --minibatch random rows of rollout buffers of --rows rows (non-linear RTU, linear
RTU, linear RTU with compact traces); GB/s = bytes of the minibatch's stored carries (state and traces) / time.
(2) With --agent, the whole update of one minibatch (the script's Agent built from its Args, random buffers, the
script's PPO loss, backward, gradient clipping, Adam step), in ms per minibatch and s per default iteration
(4 epochs x 32 minibatches). --baseline REV adds the same measurements with triton_kernels/rtu.py as of git
revision REV, in the same process, repeats interleaved: before/after ratios on a shared machine.

    OMP_NUM_THREADS=1 python scripts/bench_trace_update.py --update --agent --cpu-time --baseline REV
"""
import argparse
import datetime
import functools
import importlib
import inspect
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TORCHINDUCTOR_FORCE_DISABLE_CACHES", "1")  # report cold compile times
import torch  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from triton_kernels.elstm import elstm_init_params, elstm_step, elstm_zero_carry  # noqa: E402
from triton_kernels.rtu import rtu_init_params, rtu_step, rtu_zero_carry  # noqa: E402

MODELS = {  # name: (units, make(units, D, B) -> (step, params, state, traces))
    "rtu": (192, lambda n, D, B: (functools.partial(rtu_step, activation="relu", backend="torch"),
                                  rtu_init_params(n, D), *rtu_zero_carry(B, n, D))),
    "rtu_linear": (192, lambda n, D, B: (functools.partial(rtu_step, activation="linear", backend="torch"),
                                         rtu_init_params(n, D), *rtu_zero_carry(B, n, D))),
    "rtu_linear_compact": (192, lambda n, D, B: (functools.partial(rtu_step, activation="linear", backend="torch"),
                                                 rtu_init_params(n, D), *rtu_zero_carry(B, n, D, compact=True))),
    "elstm": (188, lambda n, D, B: (functools.partial(elstm_step, backend="torch"), elstm_init_params(n, D),
                                    *elstm_zero_carry(B, n, D))),
}


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 8, 64])
    p.add_argument("--D", type=int, default=64, help="input width of the recurrent layer")
    p.add_argument("--repeats", type=int, default=7, help="timed repeats per measurement (median reported)")
    p.add_argument("--min-time", type=float, default=0.05, help="seconds per repeat (steps per repeat adapt to it)")
    p.add_argument("--copy-mb", type=int, default=256, help="size of the float32 tensor of the copy-bandwidth probe")
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    p.add_argument("--out", type=str, default=None, help="also write command, machine, date and table to this markdown file")
    p.add_argument("--update", action="store_true", help="benchmark the PPO update side instead (see the docstring)")
    p.add_argument("--agent", action="store_true", help="--update: also time whole minibatch updates (script's Agent)")
    p.add_argument("--baseline", type=str, default=None, help="--update: also measure the kernels at this git revision")
    p.add_argument("--cpu-time", action="store_true",
                   help="time with the CPU time of this thread (1 thread: OMP_NUM_THREADS=1), not the wall clock: "
                        "on an oversubscribed machine the time slices of other processes are then not counted")
    p.add_argument("--rows", type=int, default=2048, help="--update: rows of the rollout buffers (num_steps)")
    p.add_argument("--minibatch", type=int, default=64, help="--update: rows per minibatch")
    return p.parse_args()


CLOCK = time.perf_counter  # --cpu-time: time.thread_time


def median_times(fns, repeats, min_time):
    """Median seconds per call of each fn, after warm-up. Repeats of the fns alternate, so that on a shared
    machine they all see the same background load."""
    inner = []
    for fn in fns:
        for _ in range(2):
            fn()
        t0 = CLOCK()
        fn()
        inner.append(max(1, int(min_time / max(CLOCK() - t0, 1e-9))))
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, k, ts in zip(fns, inner, times):
            t0 = CLOCK()
            for _ in range(k):
                fn()
            ts.append((CLOCK() - t0) / k)
    return [statistics.median(ts) for ts in times]


def copy_bandwidth(mb, repeats):
    src = torch.rand(mb * 2**20 // 4)
    dst = torch.empty_like(src)
    (seconds,) = median_times([lambda: dst.copy_(src)], repeats, 0.0)
    return 2 * src.numel() * src.element_size() / seconds / 1e9  # read + write


def chained(step, params, x, carry, reset):
    """A closure that runs one step, feeding the new state and traces back in (as a rollout does)."""
    def run():
        carry[:] = step(params, x, *carry, reset)
    return run


def load_rtu_at(rev):
    """triton_kernels/rtu.py (with its _common.py) as of git revision `rev`, imported as a separate package, so that
    the code before and after a change can be timed in one process."""
    pkg = "triton_kernels_at_" + re.sub(r"\W", "_", rev)
    folder = os.path.join(tempfile.mkdtemp(), pkg)
    os.makedirs(folder)
    for name in ("__init__.py", "_common.py", "rtu.py"):
        src = subprocess.run(["git", "-C", ROOT, "show", f"{rev}:triton_kernels/{name}"], capture_output=True,
                             text=True, check=True).stdout
        with open(os.path.join(folder, name), "w") as f:
            f.write(src.replace("triton_kernels.", pkg + "."))
    sys.path.insert(0, os.path.dirname(folder))
    return importlib.import_module(pkg + ".rtu")


def update_variants(args):
    """(label, rtu module, activation, compact) of every update measurement: the current code, then the baseline."""
    import triton_kernels.rtu as current
    codes = [("current", current)] + ([(f"at {args.baseline}", load_rtu_at(args.baseline))] if args.baseline else [])
    out = []
    for code, mod in codes:
        can_compact = "compact" in inspect.signature(mod.rtu_zero_carry).parameters
        for name, activation, compact in [("non-linear RTU (relu)", "relu", False), ("linear RTU", "linear", False),
                                          ("linear RTU, compact traces", "linear", True)]:
            if not compact or can_compact:
                out.append((f"{name}, {code}", mod, activation, compact))
    return out


def random_buffers(mod, rows, n, D, compact, seed=0):
    """Rollout buffers of `rows` stored carries (random, as the values do not matter for the time)."""
    g = torch.Generator().manual_seed(seed)
    _, zero = mod.rtu_zero_carry(1, n, D, **({"compact": True} if compact else {}))
    traces = mod.RTUTraces(*(0.1 * torch.randn((rows,) + t.shape[1:], generator=g) for t in zero))
    return torch.randn(rows, 2, n, generator=g), traces


def minibatches(rows, B, seed):
    """Endless minibatch indices, as in the script: every epoch shuffles the buffer rows and slices them."""
    g = torch.Generator().manual_seed(seed)
    while True:
        perm = torch.randperm(rows, generator=g)
        for start in range(0, rows - B + 1, B):
            yield perm[start:start + B]


def bench_grads_from_carry(args, variants, n, D):
    """Median seconds per call of the torch.compile'd rtu_grads_from_carry(..., index) of each variant, and the copy
    bandwidth measured interleaved with them (same background load)."""
    B, g = args.minibatch, torch.Generator().manual_seed(1)
    x, delta = torch.randn(B, D, generator=g), torch.randn(B, 2, n, generator=g)
    reset = (torch.rand(B, generator=g) < 0.05).float()
    src = torch.rand(args.copy_mb * 2**20 // 4)
    dst = torch.empty_like(src)
    fns, rows = [lambda: dst.copy_(src)], [dict(label="copy", bytes=2 * src.numel() * src.element_size())]
    for label, mod, activation, compact in variants:
        params = mod.rtu_init_params(n, D)
        b_state, b_traces = random_buffers(mod, args.rows, n, D, compact)
        new_state = mod.rtu_state_step(params, x, b_state[:B], reset, activation)
        grads = torch.compile(mod.rtu_grads_from_carry, dynamic=False)

        def run(grads=grads, inputs=(params, x, b_state, b_traces, reset, new_state, delta, activation),
                index=minibatches(args.rows, B, seed=3)):
            grads(*inputs, index=next(index))
        t0 = time.perf_counter()
        run()
        compile_s = time.perf_counter() - t0
        row_bytes = sum(t[0].numel() * t.element_size() for t in (b_state, *b_traces))
        fns.append(run)
        rows.append(dict(label=label, bytes=B * row_bytes, compile_s=compile_s))
        print(f"# compiled {label} ({compile_s:.0f} s)", file=sys.stderr)
    for row, t in zip(rows, median_times(fns, args.repeats, args.min_time)):
        row["seconds"] = t
    copy = rows.pop(0)
    return rows, copy["bytes"] / copy["seconds"] / 1e9


def bench_agent_update(args, variants, n, D):
    """Median seconds per minibatch update of algos/ppo_rtu_rtrl.py's Agent, for each variant's RTU code."""
    sys.path.insert(0, os.path.join(ROOT, "algos"))
    import gymnasium as gym
    import numpy as np
    import ppo_rtu_rtrl as script
    obs_dim, act_dim, B = 8, 6, args.minibatch  # HalfCheetah-P-v5
    envs = type("Envs", (), dict(single_observation_space=gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float64),
                                 single_action_space=gym.spaces.Box(-1, 1, (act_dim,), np.float32)))
    g = torch.Generator().manual_seed(2)
    b_obs, b_actions = torch.randn(args.rows, obs_dim, generator=g), torch.randn(args.rows, act_dim, generator=g)
    b_logprobs, b_advantages, b_returns, b_values = (torch.randn(args.rows, generator=g) for _ in range(4))
    b_dones = (torch.rand(args.rows, generator=g) < 0.01).float()
    fns, rows = [], []
    for label, mod, activation, compact in variants:
        s = script.Args(rtu_variant="linear" if activation == "linear" else "nonlinear", activation="relu",
                        hidden_dim=n, encoder_dim=D)
        torch.manual_seed(0)
        agent = script.Agent(envs, s)
        agent.state_step = torch.compile(mod.rtu_state_step, dynamic=False)  # this variant's RTU code
        agent.grads_from_carry = torch.compile(mod.rtu_grads_from_carry, dynamic=False)
        optimizer = torch.optim.Adam(agent.parameters(), lr=s.learning_rate, eps=1e-5, fused=True)
        b_states, b_traces = random_buffers(mod, args.rows, n, D, compact)

        def minibatch(agent=agent, optimizer=optimizer, b_states=b_states, b_traces=b_traces, s=s,
                      index=minibatches(args.rows, B, seed=3)):
            """One minibatch of the script's update loop (same loss, clipping and optimizer step)."""
            mb = next(index)
            new_state = agent.step_rtrl(b_obs[mb], b_states, b_traces, mb, b_dones[mb])
            _, newlogprob, entropy, newvalue = agent.get_action_and_value(new_state, b_actions[mb])
            logratio = newlogprob - b_logprobs[mb]
            ratio = logratio.exp()
            with torch.no_grad():  # the script's diagnostics (one host sync per minibatch)
                ((ratio - 1) - logratio).mean(), ((ratio - 1.0).abs() > s.clip_coef).float().mean().item()
            adv = (b_advantages[mb] - b_advantages[mb].mean()) / (b_advantages[mb].std() + 1e-8)
            pg_loss = torch.max(-adv * ratio, -adv * torch.clamp(ratio, 1 - s.clip_coef, 1 + s.clip_coef)).mean()
            newvalue = newvalue.view(-1)
            v_clipped = b_values[mb] + torch.clamp(newvalue - b_values[mb], -s.clip_coef, s.clip_coef)
            v_loss = 0.5 * torch.max((newvalue - b_returns[mb]) ** 2, (v_clipped - b_returns[mb]) ** 2).mean()
            loss = pg_loss - s.ent_coef * entropy.mean() + v_loss * s.vf_coef
            assert torch.isfinite(loss)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(agent.parameters(), s.max_grad_norm)
            optimizer.step()
        t0 = time.perf_counter()
        minibatch()
        compile_s = time.perf_counter() - t0
        fns.append(minibatch)
        rows.append(dict(label=label, compile_s=compile_s))
        print(f"# compiled the update of {label} ({compile_s:.0f} s)", file=sys.stderr)
    for row, t in zip(rows, median_times(fns, args.repeats, args.min_time)):
        row["seconds"] = t
    return rows


def update_main(args):
    n, D = MODELS["rtu"][0], args.D
    variants = update_variants(args)
    grads, copy_gbs = bench_grads_from_carry(args, variants, n, D)

    def ratio(rows, r):
        """time of row r over the baseline code's time of the same variant ("" if none)"""
        base = [b for b in rows if b["label"] == r["label"].replace(", current", f", at {args.baseline}")]
        return f"{r['seconds'] / base[0]['seconds']:.2f}" if args.baseline and "current" in r["label"] and base else ""
    lines = [f"Copy bandwidth (dst.copy_(src), {args.copy_mb} MB float32, read + write, measured interleaved with "
             f"the gradient calls): {copy_gbs:.2f} GB/s", "",
             f"rtu_grads_from_carry(..., index), torch.compile'd: {args.minibatch} random rows of buffers of "
             f"{args.rows} rows, n={n}, D={D}", "",
             "| variant | bytes read/call | ms/call | GB/s | % copy | time / baseline's |", "|---|---|---|---|---|---|"]
    for r in grads:
        gbs = r["bytes"] / r["seconds"] / 1e9
        lines.append(f"| {r['label']} | {r['bytes']:,} | {r['seconds'] * 1e3:.3f} | {gbs:.2f} | "
                     f"{100 * gbs / copy_gbs:.1f} | {ratio(grads, r)} |")
    if args.agent:
        agent = bench_agent_update(args, variants, n, D)
        per_iteration = 4 * args.rows // args.minibatch  # the script's default 4 epochs
        lines += ["", f"Whole minibatch update of algos/ppo_rtu_rtrl.py's Agent (forward, RTRL backward, clip, Adam), "
                      f"minibatch {args.minibatch}; s/iteration = {per_iteration} minibatches", "",
                  "| variant | ms/minibatch | s/iteration | time / baseline's |", "|---|---|---|---|"]
        for r in agent:
            lines.append(f"| {r['label']} | {r['seconds'] * 1e3:.2f} | {r['seconds'] * per_iteration:.2f} | "
                         f"{ratio(agent, r)} |")
    return "\n".join(lines)


def main():
    global CLOCK
    args = parse_args()
    if args.cpu_time:
        CLOCK = time.thread_time
    load = os.getloadavg()[0]  # the machine may be shared: record how busy it was
    if args.update:
        table = update_main(args)
        print(table)
        if args.out:
            clock = "CPU time of the benchmark thread" if args.cpu_time else "wall-clock time"
            notes = [f"Median of {args.repeats} repeats ({clock}), variants interleaved; time / baseline's: this row's "
                     "time over the same variant's with the --baseline code.", ""]
            write_markdown(args, load, "# PPO update side of ppo_rtu_rtrl.py: RTRL gradient from stored carries (CPU)",
                           notes, table)
        return
    copy_gbs = copy_bandwidth(args.copy_mb, args.repeats)
    if not args.no_compile:  # start inductor up once, so that compile times below are those of the step itself
        torch.compile(lambda a: a.sin() + 1)(torch.ones(3))
    rows = []
    for name in args.models:
        units, make = MODELS[name]
        compiled = None  # one torch.compile per model, shared across batch sizes (recompiles on new shapes)
        for B in args.batch_sizes:
            step, params, state, traces = make(units, args.D, B)
            x, reset = torch.randn(B, args.D), torch.zeros(B, dtype=torch.bool)
            numel = lambda ts: sum(t.numel() for t in ts)
            nbytes = x.element_size() * (numel(params) + x.numel() + 2 * (state.numel() + numel(traces)))
            fns = [chained(step, params, x, [state, traces], reset)]
            row = dict(model=name, units=units, B=B, bytes=nbytes, compiled=None, compile_s=None, note="")
            if not args.no_compile:
                try:
                    compiled = compiled or torch.compile(step)
                    t0 = time.perf_counter()
                    compiled(params, x, state, traces, reset)
                    row["compile_s"] = time.perf_counter() - t0
                    fns.append(chained(compiled, params, x, [state, traces], reset))
                except Exception as e:  # report, don't crash
                    row["note"] = f"compile failed: {type(e).__name__}: {str(e).splitlines()[0][:80]}"
            row["eager"], *compiled_time = median_times(fns, args.repeats, args.min_time)
            row["compiled"] = compiled_time[0] if compiled_time else None
            rows.append(row)
            print(f"# {name} B={B} done", file=sys.stderr)

    gbs = lambda r, t: r["bytes"] / t / 1e9
    lines = [
        f"Copy bandwidth (dst.copy_(src), {args.copy_mb} MB float32, read + write): {copy_gbs:.2f} GB/s",
        "",
        "| model | units | D | B | bytes/step | eager ms/step | eager GB/s | eager % copy | compiled ms/step | compiled GB/s | compiled % copy | compile s (first call) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = [r["model"], r["units"], args.D, r["B"], f"{r['bytes']:,}", f"{r['eager'] * 1e3:.3f}", f"{gbs(r, r['eager']):.2f}", f"{100 * gbs(r, r['eager']) / copy_gbs:.1f}"]
        if r["compiled"] is not None:
            cells += [f"{r['compiled'] * 1e3:.3f}", f"{gbs(r, r['compiled']):.2f}", f"{100 * gbs(r, r['compiled']) / copy_gbs:.1f}", f"{r['compile_s']:.1f}"]
        else:
            cells += [r["note"] or "skipped", "", "", ""]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    table = "\n".join(lines)
    print(table)

    if args.out:
        title = "# RTRL trace update: time per step on CPU (reference path, eager vs torch.compile)"
        write_markdown(args, load, title, [
            "RTU = non-linear RTU (ReLU), rtu_linear = linear RTU, rtu_linear_compact = linear RTU with compact traces "
            "(W2 traces not stored); units = n (state width 2n); eLSTM units = N. float32, no resets.",
            "bytes/step = (traces + state) read and written + params + x read; median of "
            f"{args.repeats} repeats (eager and compiled alternate); compile time = first call of torch.compile with caches disabled, inductor already started (the second B triggers a dynamic-shape recompile, later B reuse it).",
            "",
        ], table)


def write_markdown(args, load, title, notes, table):
    """Command, machine, date, notes and the table, to args.out."""
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "unknown CPU")
    header = [
        title,
        "",
        f"Command: `{shlex.join(['python', *sys.argv])}`",
        "",
        f"Machine: {cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads); 1-min load average {load:.2f} at start, {os.getloadavg()[0]:.2f} at end",
        "",
        f"Date: {datetime.datetime.now().isoformat(timespec='seconds')}",
        "",
        *notes,
    ]
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        f.write("\n".join(header) + table + "\n")


if __name__ == "__main__":
    main()
