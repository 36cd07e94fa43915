"""Per-step cost of the exact-RTRL trace updates on CPU: reference path (backend="torch"), eager and torch.compile.

Sizes are the paper's ~24k-parameter budget (SPEC 2.5): non-linear RTU n=192, eLSTM N=188, D=64, B in {1, 8, 64}.
Bytes per step are analytic: traces and state read and written, params and x read, at the dtype size.
GB/s = bytes / time, compared with the copy bandwidth of this machine (dst.copy_(src), read + write bytes / time).

    python scripts/bench_trace_update.py --out results/perf/trace_update.md
"""
import argparse
import datetime
import functools
import os
import shlex
import statistics
import sys
import time

os.environ.setdefault("TORCHINDUCTOR_FORCE_DISABLE_CACHES", "1")  # report cold compile times
import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from triton_kernels.elstm import elstm_init_params, elstm_step, elstm_zero_carry  # noqa: E402
from triton_kernels.rtu import rtu_init_params, rtu_step, rtu_zero_carry  # noqa: E402

MODELS = {  # name: (units, make(units, D, B) -> (step, params, state, traces))
    "rtu": (192, lambda n, D, B: (functools.partial(rtu_step, activation="relu", backend="torch"), rtu_init_params(n, D), *rtu_zero_carry(B, n, D))),
    "elstm": (188, lambda N, D, B: (functools.partial(elstm_step, backend="torch"), elstm_init_params(N, D), *elstm_zero_carry(B, N, D))),
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
    return p.parse_args()


def median_times(fns, repeats, min_time):
    """Median seconds per call of each fn, after warm-up. Repeats of the fns alternate, so that on a shared
    machine they all see the same background load."""
    inner = []
    for fn in fns:
        for _ in range(2):
            fn()
        t0 = time.perf_counter()
        fn()
        inner.append(max(1, int(min_time / max(time.perf_counter() - t0, 1e-9))))
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, k, ts in zip(fns, inner, times):
            t0 = time.perf_counter()
            for _ in range(k):
                fn()
            ts.append((time.perf_counter() - t0) / k)
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


def main():
    args = parse_args()
    load = os.getloadavg()[0]  # the machine may be shared: record how busy it was
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
        cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "unknown CPU")
        header = [
            "# RTRL trace update: time per step on CPU (reference path, eager vs torch.compile)",
            "",
            f"Command: `{shlex.join(['python', *sys.argv])}`",
            "",
            f"Machine: {cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads); 1-min load average {load:.2f} at start, {os.getloadavg()[0]:.2f} at end",
            "",
            f"Date: {datetime.datetime.now().isoformat(timespec='seconds')}",
            "",
            "RTU = non-linear RTU (ReLU), units = n (state width 2n); eLSTM units = N. float32, no resets.",
            "bytes/step = (traces + state) read and written + params + x read; median of "
            f"{args.repeats} repeats (eager and compiled alternate); compile time = first call of torch.compile with caches disabled, inductor already started (the second B triggers a dynamic-shape recompile, later B reuse it).",
            "",
        ]
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            f.write("\n".join(header) + table + "\n")


if __name__ == "__main__":
    main()
