"""Trace conditioning report: tables and plots of td_animal_learning.py runs (--summary-path files, or its logs with
FINAL_MSRE lines).

    python scripts/trace_conditioning_report.py runs/summaries/trace_conditioning --out results/trace_conditioning

writes msre.md (MSRE per ISI x architecture x truncation length x size, mean +- std and 95% bootstrap CI over
seeds), msre_vs_compute_isi<ISI>.png (MSRE against analytic FLOPs per step), msre_vs_params_isi<ISI>.png (against
recurrent parameters), msre_vs_T_isi<ISI>.png and time_vs_T_isi<ISI>.png (MSRE and seconds per step against the
truncation length T; RTRL learners, which have no T, as horizontal lines), and trace_records.csv.
"""
import argparse
import csv
import glob
import json
import os
import re
import sys
from collections import defaultdict

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from plot import bootstrap_mean_ci, colors_for  # noqa: E402

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402

# ---------------------------------------------------------------------------------------------------------------
_INT_FIELDS = ("isi", "isi_lo", "isi_hi", "seed", "steps", "params", "total_params", "hidden_size", "tbptt_len", "msre_bin",
               "num_distractors")
_FLOAT_FIELDS = ("msre", "msre_last_bin", "flops_per_step", "sec_per_step", "gamma", "learning_rate", "td_lambda")


def _typed(rec):
    out = dict(rec)
    for k in _INT_FIELDS + _FLOAT_FIELDS:
        if k not in out:
            continue
        v = out[k]
        if v is None or (isinstance(v, str) and v.strip() in ("", "None", "none", "null")):
            out[k] = None
        else:
            out[k] = int(float(v)) if k in _INT_FIELDS else float(v)
    return out


RECORD_EXTS = ("json", "csv", "log", "txt")
DEDUP_FIELDS = ("arch", "isi", "seed", "tbptt_len", "params", "steps")


def load_trace_records(paths, exts=RECORD_EXTS, extra_key=None):
    """Records of td_animal_learning.py runs from JSON / CSV summaries or logs with FINAL_MSRE lines (the files with
    one of `exts` under each directory in paths, and the files named in paths).

    One run read twice (its summary and its log, or two copies) is kept once: records are the same run if they agree
    on DEDUP_FIELDS and on the step size (learning_rate). A FINAL_MSRE line does not give the step size: a record
    without one is a copy of any record kept before it with the same DEDUP_FIELDS (summaries are read first).
    extra_key(record), if given, must agree too (e.g. the budget a sweep named the run for: two budgets can give the
    same network, and each budget keeps its run)."""
    files = []
    for p in paths:
        if os.path.isdir(p):
            for ext in exts:
                files += sorted(glob.glob(os.path.join(p, "**", f"*.{ext}"), recursive=True))
        elif os.path.exists(p):
            files.append(p)
        else:
            sys.exit(f"error: {p} does not exist")
    recs = []
    for fpath in files:
        if fpath.endswith(".json"):
            with open(fpath) as f:
                data = json.load(f)
            recs += [dict(d, _src=fpath) for d in (data if isinstance(data, list) else [data])]
        elif fpath.endswith(".csv"):
            with open(fpath, newline="") as f:
                recs += [dict(d, _src=fpath) for d in csv.DictReader(f)]
        else:
            with open(fpath, errors="replace") as f:
                for line in f:
                    if line.startswith("FINAL_MSRE"):
                        recs.append(dict(re.findall(r"(\w+)=(\S+)", line), _src=fpath))
    recs = [_typed(r) for r in recs if "msre" in r and "arch" in r]
    seen, seen_runs, out, dup = set(), set(), [], 0
    for r in sorted(recs, key=lambda r: not r["_src"].endswith((".json", ".csv"))):  # summaries before logs
        run = tuple(r.get(k) for k in DEDUP_FIELDS) + ((extra_key(r),) if extra_key else ())
        lr = r.get("learning_rate")
        if (run in seen_runs) if lr is None else ((run, lr) in seen):
            dup += 1
            continue
        seen.add((run, lr))
        seen_runs.add(run)
        out.append(r)
    if dup:
        print(f"note: {dup} duplicate trace records ignored (same arch, isi, seed, T, params, steps and step size)",
              file=sys.stderr)
    return out


def trace_groups(recs):
    """{(isi, arch, T, params): [records]}"""
    groups = defaultdict(list)
    for r in recs:
        groups[(r.get("isi"), r["arch"], r.get("tbptt_len"), r.get("params"))].append(r)
    return groups


def _sort_key(key):
    return tuple((0, x, "") if isinstance(x, (int, float)) else (1, 0, str(x)) for x in key)


def _window(recs):
    """The final window's length in words: the runs' MSRE bin (td_animal_learning.py --msre-bin, 10k by default)."""
    bins = {r.get("msre_bin") for r in recs if r.get("msre_last_bin") is not None} - {None}  # None: not recorded
    if not bins:
        return "MSRE bin (10k steps unless --msre-bin was set)"
    if len(bins) > 1:
        return "MSRE bin (the runs differ in --msre-bin)"
    return f"{int(bins.pop()):,} steps"


def trace_report(args):
    recs = load_trace_records(args.summaries)
    if not recs:
        sys.exit(f"error: no trace-conditioning records found in {', '.join(args.summaries)}")
    # MSRE is a mean over the whole run, so runs of different lengths (or settings) must not be averaged together
    run_lengths = sorted({r.get("steps") for r in recs}, key=str)
    if len(run_lengths) > 1:
        sys.exit(f"error: trace records with different run lengths (steps {run_lengths}); their MSREs are not "
                 "comparable, so give the runs of one length per --out")
    groups = trace_groups(recs)
    for key, rs in groups.items():
        for field in ("gamma", "td_lambda", "learning_rate", "num_distractors"):
            if len({r.get(field) for r in rs}) > 1:
                sys.exit(f"error: the seeds of (isi, arch, T, params) = {key} differ in {field}: "
                         f"{sorted({r.get(field) for r in rs}, key=str)}")
    os.makedirs(args.out, exist_ok=True)
    rows = []
    for (isi, arch, T, params), rs in sorted(groups.items(), key=lambda kv: _sort_key(kv[0])):
        v = np.array([r["msre"] for r in rs], dtype=float)
        m, lo, hi = bootstrap_mean_ci(v[:, None], reps=args.reps, seed=args.seed)
        secs = [r["sec_per_step"] for r in rs if r.get("sec_per_step") is not None]
        last = [r["msre_last_bin"] for r in rs if r.get("msre_last_bin") is not None]
        rows.append(dict(isi=isi, arch=arch, T=T, params=params, flops=rs[0].get("flops_per_step"),
                         sec=float(np.mean(secs)) if secs else None, msre=float(m[0]),
                         last=(float(np.mean(last)), float(np.std(last, ddof=1)) if len(last) > 1 else 0.0, len(last))
                         if last else None,
                         std=float(v.std(ddof=1)) if len(v) > 1 else 0.0, lo=float(lo[0]), hi=float(hi[0]),
                         n=len(v), steps=rs[0].get("steps")))
    archs = sorted({r["arch"] for r in rows})
    colors = colors_for(archs)
    md = ["# Trace conditioning: MSRE", "",
          "MSRE = mean over the run of (v_t - G_t)^2; mean ± std over seeds [95% bootstrap CI over seeds] "
          "(n = number of seeds). "
          "T = truncation length of the T-BPTT learners (RTRL learners: -). FLOPs/step counted analytically. "
          "Final window: the MSRE of the run's last " + _window(recs) + ", mean ± std over seeds (n).", ""]
    for isi in sorted({r["isi"] for r in rows}, key=str):
        rr = [r for r in rows if r["isi"] == isi]
        md += [f"## ISI {isi}", "", "| architecture | T | recurrent params | FLOPs/step | sec/step | steps | MSRE | "
               "final window |", "|-|-|-|-|-|-|-|-|"]
        for r in rr:
            flops = "n/a" if r["flops"] is None else f"{r['flops']:,.0f}"
            sec = "n/a" if r["sec"] is None else f"{r['sec']:.3g}"
            T = "-" if r["T"] is None else r["T"]
            md.append(f"| {r['arch']} | {T} | {r['params']} | {flops} | {sec} | {r['steps']} | "
                      f"{r['msre']:.3g} ± {r['std']:.2g} [{r['lo']:.3g}, {r['hi']:.3g}] (n={r['n']}) | "
                      + ("n/a" if r["last"] is None else f"{r['last'][0]:.3g} ± {r['last'][1]:.2g} (n={r['last'][2]})")
                      + " |")
        md.append("")
        _trace_plots(rr, isi, archs, colors, args.out)
    with open(os.path.join(args.out, "msre.md"), "w") as f:
        f.write("\n".join(md))
    keys = sorted({k for r in recs for k in r if not k.startswith("_") and k != "msre_binned"})  # one value per cell
    with open(os.path.join(args.out, "trace_records.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, keys, extrasaction="ignore")
        w.writeheader()
        w.writerows(recs)
    print("\n".join(md))
    print(f"wrote {args.out}/msre.md, trace_records.csv and msre_vs_*/time_vs_T_*.png")


def _errbar(ax, xs, rs, color, label, marker="o"):
    y = np.array([r["msre"] for r in rs])
    yerr = np.array([[r["msre"] - r["lo"] for r in rs], [r["hi"] - r["msre"] for r in rs]])
    ax.errorbar(xs, y, yerr=yerr, color=color, marker=marker, ms=4, capsize=2, lw=1.2, label=label)


def _trace_plots(rows, isi, archs, colors, out):
    # MSRE vs compute and vs parameters: one series per (arch, T) across sizes; T-BPTT archs also join their T values
    for xkey, fname, xlabel in (("flops", "msre_vs_compute", "FLOPs per step (analytic)"),
                                ("params", "msre_vs_params", "recurrent parameters")):
        fig, ax = plt.subplots(figsize=(6.5, 4.2))
        annotated = set()
        for arch in archs:
            ar = [r for r in rows if r["arch"] == arch and r[xkey] is not None]
            if not ar:
                continue
            if xkey == "flops":  # compute grows with T and with the size: one line through all points by compute
                ar = sorted(ar, key=lambda r: r["flops"])
                _errbar(ax, [r["flops"] for r in ar], ar, colors[arch], arch)
                for r in ar:
                    if r["T"] is not None and (r["flops"], r["T"]) not in annotated:
                        annotated.add((r["flops"], r["T"]))
                        ax.annotate(f"T={r['T']}", (r["flops"], r["msre"]), fontsize=6, xytext=(3, 3),
                                    textcoords="offset points")
            else:
                for j, T in enumerate(sorted({r["T"] for r in ar}, key=lambda t: -1 if t is None else t)):
                    tr = sorted([r for r in ar if r["T"] == T], key=lambda r: r["params"])
                    _errbar(ax, [r["params"] for r in tr], tr, colors[arch],
                            arch if T is None else f"{arch} T={T}", marker="os^vD<>ph*"[j % 10])
        xs = [r[xkey] for r in rows if r[xkey] is not None]
        if xs and max(xs) > 3 * min(xs) > 0:
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(base=10, subs=(1, 2, 5)))
            ax.xaxis.set_major_formatter(matplotlib.ticker.EngFormatter(sep=""))
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel(xlabel)
        ax.set_ylabel("MSRE (mean over seeds, 95% CI)")
        ax.set_title(f"Trace conditioning, ISI {isi}")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=6)
        fig.tight_layout()
        fig.savefig(os.path.join(out, f"{fname}_isi{isi}.png"), dpi=120)
        plt.close(fig)
    # MSRE and time per step vs T (RTRL learners: horizontal lines)
    Ts = sorted({r["T"] for r in rows if r["T"] is not None})
    for ykey, fname, ylabel in (("msre", "msre_vs_T", "MSRE"), ("sec", "time_vs_T", "seconds per step")):
        fig, ax = plt.subplots(figsize=(6.5, 4.2))
        for arch in archs:
            ar = [r for r in rows if r["arch"] == arch and r[ykey] is not None]
            for params in sorted({r["params"] for r in ar}, key=lambda p: -1 if p is None else p):
                pr = [r for r in ar if r["params"] == params]
                lab = arch if len({r["params"] for r in ar}) == 1 else f"{arch} ({params} params)"
                tr = sorted([r for r in pr if r["T"] is not None], key=lambda r: r["T"])
                if tr:
                    if ykey == "msre":
                        _errbar(ax, [r["T"] for r in tr], tr, colors[arch], lab)
                    else:
                        ax.plot([r["T"] for r in tr], [r["sec"] for r in tr], "o-", color=colors[arch], label=lab)
                for r in [r for r in pr if r["T"] is None]:
                    ax.axhline(r[ykey], color=colors[arch], ls="--", lw=1.2, label=f"{lab} (RTRL)")
        if Ts:
            ax.set_xscale("log", base=2)
            ax.set_xticks(Ts, [str(t) for t in Ts])
        ax.set_xlabel("truncation length T (T-BPTT)")
        ax.set_ylabel(ylabel)
        ax.set_title(f"Trace conditioning, ISI {isi}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
        fig.tight_layout()
        fig.savefig(os.path.join(out, f"{fname}_isi{isi}.png"), dpi=120)
        plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("summaries", nargs="+", help="JSON/CSV summaries, logs, or directories holding them")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--reps", type=int, default=2000, help="bootstrap replicates")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    trace_report(p.parse_args(argv))


if __name__ == "__main__":
    main()
