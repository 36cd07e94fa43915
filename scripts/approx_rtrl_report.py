"""Step-size selection and report of the approximate-RTRL comparison on trace conditioning (scripts/approx_rtrl.sh).

    python scripts/approx_rtrl_report.py select SUMMARIES... --runs-dir RUNS --out results/approx_rtrl
        From the selection runs (PHASE=select): for every learner (arch, T, budget) and ISI, the step size with the
        lowest mean MSRE over the selection seeds; a step size with a diverged seed (the run stopped on a non-finite
        TD error: no summary, "non-finite" in its log under RUNS/.logs) is not eligible. Writes selected_lr.csv
        (read by approx_rtrl.sh PHASE=report), selection_runs.csv (every selection run), selection.md and
        sensitivity_isi*.png (MSRE against the step size).
    python scripts/approx_rtrl_report.py report SUMMARIES... --out results/approx_rtrl [--selected CSV [--lr-budget B]]
        From the report runs (PHASE=report): checks that every run used its selected step size (with --lr-budget B:
        the one selected at budget B, for the runs of approx_rtrl.sh LR_BUDGET=B) and that all runs have
        the same length, then writes records.csv (one row per run, the columns of trace_records.csv from
        scripts/trace_conditioning_report.py, so scripts/results_md.py's trace() reads it), msre.md (the
        tables), msre_vs_flops_isi*.png, time_vs_flops_isi*.png, msre_vs_T_isi*.png (when a learner has a T) and
        msre_vs_params_isi*.png (when there is more than one budget), and splices the tables into README.md between
        the "approx-rtrl tables" markers. If every summary has its binned MSRE curve (msre_binned), also
        msre_curves_isi*.png and a table of the final-window MSRE and rank at a third, two thirds and the end of the
        run (does the ranking still move?).
    python scripts/approx_rtrl_report.py add-curves SUMMARIES... --runs-dir RUNS
        Adds msre_binned to summaries written before td_animal_learning.py put it there, from each run's TensorBoard
        file (charts/msre_binned, float32) under RUNS, the sweep's runs directory.

MSRE = mean over the run of (v_t - G_t)^2 (lower is better). Nothing is typed by hand: every number comes from the
per-run JSON summaries written by td_animal_learning.py.
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
from plot import bootstrap_mean_ci  # noqa: E402
from trace_conditioning_report import _window, load_trace_records  # noqa: E402

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402

FAMILY = {"rtu_nonlinear": "exact RTRL, restricted cell", "rtu_linear": "exact RTRL, restricted cell",
          "lru_rtrl": "exact RTRL, restricted cell", "gru_tbptt": "T-BPTT", "lru_tbptt": "T-BPTT",
          "rnn_rtrl": "exact RTRL, dense cell", "rnn_uoro": "approximate RTRL, general cell",
          "rnn_kfrtrl": "approximate RTRL, general cell", "rnn_snap1": "approximate RTRL, general cell",
          "gru_snap1": "approximate RTRL, general cell"}
FAMILIES = ["exact RTRL, restricted cell", "T-BPTT", "approximate RTRL, general cell", "exact RTRL, dense cell"]
FAMILY_COLOR = dict(zip(FAMILIES, ("tab:blue", "tab:orange", "tab:green", "tab:red")))
LABEL = {"rtu_nonlinear": "non-linear RTU", "rtu_linear": "linear RTU", "lru_rtrl": "online LRU",
         "gru_tbptt": "GRU, T-BPTT", "lru_tbptt": "LRU, T-BPTT", "rnn_rtrl": "dense RNN, exact RTRL",
         "rnn_uoro": "dense RNN, UORO", "rnn_kfrtrl": "dense RNN, KF-RTRL", "rnn_snap1": "dense RNN, SnAp-1",
         "gru_snap1": "GRU, SnAp-1"}
MARKER = {"rtu_nonlinear": "o", "rtu_linear": "s", "lru_rtrl": "D", "gru_tbptt": "^", "lru_tbptt": "v",
          "rnn_rtrl": "*", "rnn_uoro": "P", "rnn_kfrtrl": "X", "rnn_snap1": "h", "gru_snap1": "<"}
TABLE_BEGIN = "<!-- approx-rtrl tables: written by scripts/approx_rtrl_report.py report; do not edit by hand -->"
TABLE_END = "<!-- /approx-rtrl tables -->"
RECORD_COLUMNS = ["arch", "isi", "seed", "tbptt_len", "budget", "params", "hidden_size", "learning_rate", "steps",
                  "msre", "msre_last_bin", "flops_per_step", "sec_per_step", "gamma", "td_lambda", "num_distractors",
                  "family", "run_name"]


def budget_of(summary):
    """The budget of a run, from its exp name: approx_rtrl.sh puts _P<params> (--param-budget, returned as <params>) or
    _F<FLOPs> (--flops-budget, returned as F<FLOPs>) in it; "-" for the default."""
    m = re.search(r"__td_[A-Za-z0-9_]*?_([PF])(\d+)_lr", summary["run_name"])
    return "-" if not m else m.group(2) if m.group(1) == "P" else "F" + m.group(2)


def budget_tag(budget):
    """The inverse of budget_of: the part of the exp name that approx_rtrl.sh writes for a budget."""
    return "" if budget == "-" else f"_{budget}" if budget.startswith("F") else f"_P{budget}"


def load(paths):
    """The runs' JSON summaries (scripts/trace_conditioning_report.py's loader: one record per run, the step sizes and
    budgets of one learner kept apart), with T, budget and family added; all must have the same length."""
    recs = []
    for r in load_trace_records(paths, exts=("json",), extra_key=budget_of):
        r["T"] = "-" if r.get("tbptt_len") is None else str(r["tbptt_len"])
        r["budget"] = budget_of(r)
        r["family"] = FAMILY.get(r["arch"], "other")
        recs.append(r)
    if not recs:
        sys.exit(f"error: no td_animal_learning.py summaries in {', '.join(paths)}")
    lengths = {r["steps"] for r in recs}
    if len(lengths) > 1:
        sys.exit(f"error: runs of different lengths {sorted(lengths)}: their MSREs are not comparable")
    return recs


def lr_text(lr):
    """1e-4, 3e-4, ... (the spelling of approx_rtrl.sh's LRS and run names)."""
    mantissa, exponent = f"{lr:e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def config_key(r):
    return (r["isi"], r["arch"], r["T"], r["budget"])


def sort_key(key):
    isi, arch, T, budget = key
    order = list(LABEL)
    return (isi, budget if budget != "-" else "", order.index(arch) if arch in order else 99,
            -1 if T == "-" else int(T))


def name(arch, T):
    return LABEL.get(arch, arch) + ("" if T == "-" else f", T = {T}")


# ------------------------------------------------------------------------------------------------ curves
def add_curves(args):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    files = [f for p in args.summaries
             for f in (sorted(glob.glob(os.path.join(p, "*.json"))) if os.path.isdir(p) else [p])]
    added = 0
    for path in files:
        with open(path) as f:
            s = json.load(f)
        if "msre_binned" in s:
            continue
        want = list(range(s["msre_bin"], s["steps"], s["msre_bin"])) + [s["steps"]]
        curves = []  # a resumed run has several event files; an extended one also has its shorter run's curve
        for ev in sorted(glob.glob(os.path.join(args.runs_dir, "*", s["run_name"], "events.out.tfevents.*"))):
            acc = EventAccumulator(ev, size_guidance={"scalars": 0})
            acc.Reload()
            if "charts/msre_binned" in acc.Tags()["scalars"]:
                pts = acc.Scalars("charts/msre_binned")
                if [p.step for p in pts] == want:
                    curves.append([p.value for p in pts])
        if len(curves) != 1:
            sys.exit(f"error: {len(curves)} binned MSRE curves of {s['steps']} steps for {s['run_name']} under "
                     f"{args.runs_dir}")
        if not np.isclose(curves[0][-1], s["msre_last_bin"], rtol=1e-5):
            sys.exit(f"error: the curve of {s['run_name']} ends at {curves[0][-1]}, its summary says "
                     f"{s['msre_last_bin']}")
        s["msre_binned"] = curves[0]
        with open(path, "w") as f:
            json.dump(s, f, indent=2)
        added += 1
    print(f"added msre_binned to {added} of {len(files)} summaries")


def curve_marks(recs):
    """The steps at which the curves table reads the final window: a third, two thirds and the end of the run."""
    steps, b = recs[0]["steps"], recs[0]["msre_bin"]
    return sorted({min(steps, max(b, round(steps * k / 3 / b) * b)) for k in (1, 2)} | {steps})


def curve_table(recs, rows):
    """Final-window MSRE (mean over seeds of the bin that ends at each mark) and its rank among the learners."""
    marks, b = curve_marks(recs), recs[0]["msre_bin"]
    out = []
    for isi in sorted({r["isi"] for r in rows}):
        keys = [config_key(r) for r in rows if r["isi"] == isi]
        val = {k: [float(np.mean([r["msre_binned"][(m - 1) // b] for r in recs if config_key(r) == k]))
                   for m in marks] for k in keys}
        rank = {k: [1 + sum(val[o][i] < val[k][i] for o in keys) for i in range(len(marks))] for k in keys}
        out += [f"Final-window MSRE as the run goes on, ISI {isi} (mean over seeds of the {b:,}-step bin that ends at "
                "each step; rank in brackets; sorted by the last column):", "",
                "| learner | budget | " + " | ".join(f"{m:,} steps" for m in marks) + " |",
                "|-|-|" + "-|" * len(marks)]
        for k in sorted(keys, key=lambda k: val[k][-1]):
            out.append(f"| {name(k[1], k[2])} | {k[3]} | "
                       + " | ".join(f"{v:.4f} ({n})" for v, n in zip(val[k], rank[k])) + " |")
        out.append("")
    return out


def plot_curves(recs, out):
    """msre_curves_isi*.png: binned MSRE against steps (mean over seeds), one panel per budget."""
    budgets = sorted({r["budget"] for r in recs}, key=lambda b: (b != "-", b))
    learners = sorted({(r["arch"], r["T"]) for r in recs}, key=lambda a: sort_key((0, a[0], a[1], "-")))
    b = recs[0]["msre_bin"]
    for isi in sorted({r["isi"] for r in recs}):
        fig, axes = plt.subplots(1, len(budgets), figsize=(5.5 * len(budgets), 4.5), sharey=True, squeeze=False)
        for ax, budget in zip(axes[0], budgets):
            for i, (arch, T) in enumerate(learners):
                rs = [r for r in recs if (r["isi"], r["arch"], r["T"], r["budget"]) == (isi, arch, T, budget)]
                if not rs:
                    continue
                y = np.mean([r["msre_binned"] for r in rs], axis=0)
                x = np.minimum(np.arange(1, len(y) + 1) * b, rs[0]["steps"])
                ax.plot(x, y, color=f"C{i % 10}", ls="--" if FAMILY.get(arch) == "T-BPTT" else "-", lw=1.2,
                        label=f"{name(arch, T)} (n={len(rs)})")
            ax.set_yscale("log")
            ax.set_xlabel("step")
            size = "default size" if budget == "-" else f"budget {budget}"
            ax.set_title(f"ISI {isi}, {size}: MSRE of each {b:,}-step bin (mean over seeds)", fontsize=8)
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize=6)
        axes[0][0].set_ylabel("MSRE")
        fig.tight_layout()
        fig.savefig(os.path.join(out, f"msre_curves_isi{isi}.png"), dpi=120)
        plt.close(fig)


# ------------------------------------------------------------------------------------------------ select
def diverged(runs_dir, isi, r_setting, seed):
    """True if the sweep log of this selection run says it stopped on a non-finite value."""
    pattern = os.path.join(runs_dir, ".logs", f"TraceConditioning-ISI{isi}__{r_setting}__{seed}__*.log")
    for log in glob.glob(pattern):
        with open(log, errors="replace") as f:
            if "non-finite" in f.read():
                return True
    return False


def select(args):
    recs = load(args.summaries)
    lrs = [float(x) for x in args.lrs.split()]
    seeds = [int(s) for s in args.seeds.split()]
    groups = defaultdict(dict)  # config -> {(lr, seed): msre}
    for r in recs:
        groups[config_key(r)][(r["learning_rate"], r["seed"])] = r["msre"]
    rows, selected, missing = [], [], []
    for key in sorted(groups, key=sort_key):
        isi, arch, T, budget = key
        by_lr = {}
        for lr in lrs:
            vals = []
            for seed in seeds:
                v = groups[key].get((lr, seed))
                if v is None:
                    setting = f"td_{arch}" + ("" if T == "-" else f"_T{T}") + budget_tag(budget) + f"_lr{lr_text(lr)}"
                    if args.runs_dir and diverged(args.runs_dir, isi, setting, seed):
                        v = float("inf")
                    else:
                        missing.append(f"ISI {isi} {setting} seed {seed}")
                        continue
                vals.append(v)
                rows.append(dict(isi=isi, arch=arch, tbptt_len=T, budget=budget, learning_rate=lr_text(lr), seed=seed,
                                 msre="diverged" if v == float("inf") else repr(v)))
            by_lr[lr] = float(np.mean(vals)) if vals else None
        eligible = {lr: m for lr, m in by_lr.items() if m is not None and np.isfinite(m)}
        if not eligible:
            sys.exit(f"error: no eligible step size for {key}")
        best = min(eligible, key=eligible.get)
        selected.append(dict(isi=isi, arch=arch, tbptt_len=T, budget=budget, learning_rate=lr_text(best),
                             selection_msre=repr(eligible[best]), by_lr=by_lr))
    if missing:
        sys.exit("error: selection runs missing (neither a summary nor a divergence in the log):\n  " +
                 "\n  ".join(missing))
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "selected_lr.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, ["isi", "arch", "tbptt_len", "budget", "learning_rate", "selection_msre"],
                           extrasaction="ignore")
        w.writeheader()
        w.writerows(selected)
    with open(os.path.join(args.out, "selection_runs.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, ["isi", "arch", "tbptt_len", "budget", "learning_rate", "seed", "msre"])
        w.writeheader()
        w.writerows(rows)
    md = ["# Step-size selection", "",
          f"Mean MSRE over the selection seed(s) {', '.join(map(str, seeds))} for each Adam step size; **bold**: the "
          "selected one (lowest mean; a step size whose run diverged is not eligible). Generated by "
          "`scripts/approx_rtrl_report.py select` from `selection_runs.csv`.", ""]
    for isi in sorted({s["isi"] for s in selected}):
        md += [f"## ISI {isi}", "", "| learner | budget | " + " | ".join(lr_text(lr) for lr in lrs) + " |",
               "|-|-|" + "-|" * len(lrs)]
        for s in [s for s in selected if s["isi"] == isi]:
            cells = []
            for lr in lrs:
                m = s["by_lr"][lr]
                txt = "diverged" if m is not None and not np.isfinite(m) else ("n/a" if m is None else f"{m:.4g}")
                cells.append(f"**{txt}**" if lr_text(lr) == s["learning_rate"] else txt)
            md.append(f"| {name(s['arch'], s['tbptt_len'])} | {s['budget']} | " + " | ".join(cells) + " |")
        md.append("")
    with open(os.path.join(args.out, "selection.md"), "w") as f:
        f.write("\n".join(md))
    sensitivity_plots(selected, lrs, args.out)
    print("\n".join(md))


def sensitivity_plots(selected, lrs, out):
    """sensitivity_isi*.png: selection MSRE against the step size, one panel per budget and one line per learner
    (diverged and missing step sizes left out), the selected step size circled."""
    budgets = sorted({s["budget"] for s in selected}, key=lambda b: (b != "-", b))
    learners = sorted({(s["arch"], s["tbptt_len"]) for s in selected}, key=lambda a: sort_key((0, a[0], a[1], "-")))
    for isi in sorted({s["isi"] for s in selected}):
        fig, axes = plt.subplots(1, len(budgets), figsize=(5.5 * len(budgets), 4.5), sharey=True, squeeze=False)
        for ax, budget in zip(axes[0], budgets):
            for s in [s for s in selected if s["isi"] == isi and s["budget"] == budget]:
                color = f"C{learners.index((s['arch'], s['tbptt_len'])) % 10}"
                pts = [(lr, s["by_lr"][lr]) for lr in lrs if s["by_lr"][lr] is not None and np.isfinite(s["by_lr"][lr])]
                ax.plot(*zip(*pts), marker=MARKER.get(s["arch"], "o"), ms=5, color=color,
                        label=name(s["arch"], s["tbptt_len"]))
                ax.plot(float(s["learning_rate"]), s["by_lr"][float(s["learning_rate"])], "o", ms=12, mfc="none",
                        color=color)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("Adam step size")
            ax.set_title(f"ISI {isi}, budget {budget}: step-size sensitivity (circled: selected)", fontsize=8)
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize=6)
        axes[0][0].set_ylabel("MSRE of the selection run(s)")
        fig.tight_layout()
        fig.savefig(os.path.join(out, f"sensitivity_isi{isi}.png"), dpi=120)
        plt.close(fig)


# ------------------------------------------------------------------------------------------------ report
def summarise(recs, reps=2000):
    rows = []
    groups = defaultdict(list)
    for r in recs:
        groups[config_key(r)].append(r)
    for key in sorted(groups, key=sort_key):
        rs = sorted(groups[key], key=lambda r: r["seed"])
        isi, arch, T, budget = key
        for field in ("learning_rate", "params", "flops_per_step", "gamma", "td_lambda"):
            if len({r[field] for r in rs}) > 1:
                sys.exit(f"error: the seeds of {key} differ in {field}")
        v = np.array([r["msre"] for r in rs])
        m, lo, hi = bootstrap_mean_ci(v[:, None], reps=reps, seed=0)
        rows.append(dict(isi=isi, arch=arch, T=T, budget=budget, family=FAMILY.get(arch, "other"),
                         params=rs[0]["params"], flops=int(rs[0]["flops_per_step"]), lr=rs[0]["learning_rate"],
                         sec=float(np.median([r["sec_per_step"] for r in rs])), msre=float(m[0]),
                         last=float(np.mean([r["msre_last_bin"] for r in rs])),
                         std=float(v.std(ddof=1)) if len(v) > 1 else 0.0, lo=float(lo[0]), hi=float(hi[0]),
                         n=len(v), seeds=[r["seed"] for r in rs]))
    return rows


def pareto(rows):
    """The learners that no cheaper-or-equal learner beats: sorted by FLOPs, each with a lower MSRE than all before."""
    front, best = [], float("inf")
    for r in sorted(rows, key=lambda r: (r["flops"], r["msre"])):
        if r["msre"] < best:
            front.append(r)
            best = r["msre"]
    return front


def tables(rows, steps, window):
    out = []
    for isi in sorted({r["isi"] for r in rows}):
        rr = [r for r in rows if r["isi"] == isi]
        out += [f"**ISI {isi}** ({steps:,} steps; MSRE of the whole run: mean ± std over seeds [95% bootstrap CI], n "
                f"seeds; final window: mean over seeds of the MSRE of each run's last {window}; sec/step: median "
                "over seeds of the wall clock per step; sorted by MSRE)", "",
                "| learner | family | budget | recurrent params | FLOPs/step | sec/step | step size | MSRE "
                "| final window |",
                "|-|-|-|-|-|-|-|-|-|"]
        for r in sorted(rr, key=lambda r: r["msre"]):
            out.append(f"| {name(r['arch'], r['T'])} | {r['family']} | {r['budget']} | {r['params']:,} | "
                       f"{r['flops']:,} | {r['sec'] * 1e3:.2f} ms | {lr_text(r['lr'])} | {r['msre']:.4f} ± "
                       f"{r['std']:.4f} [{r['lo']:.4f}, {r['hi']:.4f}] (n={r['n']}) | {r['last']:.4f} |")
        out += ["", f"MSRE-vs-FLOPs Pareto front, ISI {isi} (each learner beats every cheaper one):", "",
                "| FLOPs/step | learner | family | MSRE |", "|-|-|-|-|"]
        for r in pareto(rr):
            out.append(f"| {r['flops']:,} | {name(r['arch'], r['T'])} | {r['family']} | {r['msre']:.4f} |")
        out += ["", f"Best of each family, ISI {isi}:", "",
                "| family | best learner | FLOPs/step | MSRE | cheapest learner of the family | FLOPs/step | MSRE |",
                "|-|-|-|-|-|-|-|"]
        for fam in FAMILIES:
            fr = [r for r in rr if r["family"] == fam]
            if not fr:
                continue
            b, c = min(fr, key=lambda r: r["msre"]), min(fr, key=lambda r: (r["flops"], r["msre"]))
            out.append(f"| {fam} | {name(b['arch'], b['T'])} | {b['flops']:,} | {b['msre']:.4f} | "
                       f"{name(c['arch'], c['T'])} | {c['flops']:,} | {c['msre']:.4f} |")
        out.append("")
    return out


def plots(rows, out):
    budgets = {r["budget"] for r in rows}
    for isi in sorted({r["isi"] for r in rows}):
        rr = [r for r in rows if r["isi"] == isi]
        specs = [("flops", "msre", "msre_vs_flops", "FLOPs per step (analytic)", "MSRE (mean over seeds, 95% CI)"),
                 ("flops", "sec", "time_vs_flops", "FLOPs per step (analytic)", "wall-clock seconds per step (loaded)")]
        if len(budgets) > 1:
            specs.append(("params", "msre", "msre_vs_params", "recurrent parameters", "MSRE (mean over seeds, 95% CI)"))
        for xkey, ykey, fname, xlabel, ylabel in specs:
            fig, ax = plt.subplots(figsize=(7.5, 4.8))
            seen = set()
            for r in sorted(rr, key=lambda r: (r["arch"], r["flops"])):
                lab = name(r["arch"], r["T"]) if len(budgets) == 1 else name(r["arch"], "-")
                kw = dict(color=FAMILY_COLOR.get(r["family"], "gray"), marker=MARKER.get(r["arch"], "o"), ms=7,
                          ls="none", label=None if lab in seen else lab)
                seen.add(lab)
                if ykey == "msre":
                    ax.errorbar(r[xkey], r["msre"], yerr=[[r["msre"] - r["lo"]], [r["hi"] - r["msre"]]], capsize=2,
                                **kw)
                else:
                    ax.plot(r[xkey], r[ykey], **kw)
                if r["T"] != "-":
                    ax.annotate(f"T={r['T']}", (r[xkey], r[ykey]), fontsize=6, xytext=(4, 3), textcoords="offset points")
            if ykey == "msre" and xkey == "flops":
                front = pareto(rr)
                ax.plot([r["flops"] for r in front], [r["msre"] for r in front], color="k", lw=0.8, ls=":",
                        label="Pareto front")
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(matplotlib.ticker.EngFormatter(sep=""))
            if ykey == "sec":
                ax.set_yscale("log")
            ax.set_xlabel(xlabel)
            ax.set_ylabel(ylabel)
            ax.set_title(f"Trace conditioning, ISI {isi}: colour = family "
                         "(blue exact RTRL restricted, orange T-BPTT, green approx. RTRL, red exact RTRL dense)",
                         fontsize=7)
            ax.grid(alpha=0.3, which="both")
            ax.legend(fontsize=6, ncol=2)
            fig.tight_layout()
            fig.savefig(os.path.join(out, f"{fname}_isi{isi}.png"), dpi=120)
            plt.close(fig)


def plot_vs_T(rows, out):
    """msre_vs_T_isi*.png: the T-BPTT learners' MSRE against the truncation length T, the learners without a T as
    horizontal lines; the whole run (left) and the final window (right)."""
    if all(r["T"] == "-" for r in rows):
        return
    budgets = sorted({r["budget"] for r in rows}, key=lambda b: (b != "-", b))
    for isi in sorted({r["isi"] for r in rows}):
        rr = [r for r in rows if r["isi"] == isi]
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
        for ax, ykey, title in ((axes[0], "msre", "whole run"), (axes[1], "last", "final window")):
            groups = defaultdict(list)
            for r in rr:
                groups[(r["arch"], r["budget"])].append(r)
            archs = sorted({a for a, _ in groups}, key=lambda a: sort_key((isi, a, "-", "-")))
            for (arch, budget), g in sorted(groups.items(), key=lambda kv: sort_key((isi, kv[0][0], "-", kv[0][1]))):
                label = LABEL.get(arch, arch) + ("" if len(budgets) == 1 else f" ({budget})")
                kw = dict(color=f"C{archs.index(arch) % 10}", ls=["-", "--", ":", "-."][budgets.index(budget) % 4])
                if g[0]["T"] == "-":
                    ax.axhline(g[0][ykey], lw=1, label=label, **kw)
                else:
                    g = sorted(g, key=lambda r: int(r["T"]))
                    ax.plot([int(r["T"]) for r in g], [r[ykey] for r in g], marker=MARKER.get(arch, "o"), label=label,
                            **kw)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel("truncation length T (T-BPTT)")
            ax.set_title(f"ISI {isi}, MSRE of the {title} (mean over seeds)", fontsize=8)
            ax.grid(alpha=0.3, which="both")
        axes[0].set_ylabel("MSRE")
        axes[1].legend(fontsize=6, ncol=2)
        fig.tight_layout()
        fig.savefig(os.path.join(out, f"msre_vs_T_isi{isi}.png"), dpi=120)
        plt.close(fig)


def report(args):
    recs = load(args.summaries)
    if args.selected:
        with open(args.selected, newline="") as f:
            sel = {(int(r["isi"]), r["arch"], r["tbptt_len"], r["budget"]): float(r["learning_rate"])
                   for r in csv.DictReader(f)}
        for r in recs:
            want = sel.get(config_key(r)[:3] + (args.lr_budget or r["budget"],))
            if want is None or not np.isclose(r["learning_rate"], want, rtol=1e-9):
                sys.exit(f"error: {r['run_name']} ran with step size {r['learning_rate']}, selected: {want}")
    seen = set()
    for r in recs:
        k = config_key(r) + (r["seed"],)
        if k in seen:
            sys.exit(f"error: two report runs of {k}")
        seen.add(k)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "records.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, RECORD_COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in sorted(recs, key=lambda r: sort_key(config_key(r)) + (r["seed"],)):
            w.writerow({**r, "tbptt_len": "" if r.get("tbptt_len") is None else r["tbptt_len"],
                        "msre": repr(r["msre"]), "msre_last_bin": repr(r["msre_last_bin"])})
    rows = summarise(recs, reps=args.reps)
    steps = recs[0]["steps"]
    body = tables(rows, steps, _window(recs))
    if all("msre_binned" in r for r in recs):
        body += curve_table(recs, rows)
        plot_curves(recs, args.out)
    with open(os.path.join(args.out, "msre.md"), "w") as f:
        f.write("\n".join(["# Trace conditioning: approximate RTRL against exact RTRL and T-BPTT", "",
                           "Generated by `scripts/approx_rtrl_report.py report` from `records.csv`.", ""] + body))
    plots(rows, args.out)
    plot_vs_T(rows, args.out)
    readme = os.path.join(args.out, "README.md")
    if os.path.exists(readme):
        with open(readme) as f:
            text = f.read()
        if TABLE_BEGIN in text and TABLE_END in text:
            head, rest = text.split(TABLE_BEGIN, 1)
            _, tail = rest.split(TABLE_END, 1)
            with open(readme, "w") as f:
                f.write(head + TABLE_BEGIN + "\n" + "\n".join(body) + "\n" + TABLE_END + tail)
            print(f"updated the tables in {readme}")
    print("\n".join(body))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("select", help="choose each learner's step size from the selection runs")
    s.add_argument("summaries", nargs="+")
    s.add_argument("--out", required=True)
    s.add_argument("--runs-dir", help="the sweep's runs directory: its .logs tell diverged runs from missing ones")
    s.add_argument("--lrs", default="1e-4 3e-4 1e-3 3e-3")
    s.add_argument("--seeds", default="101")
    r = sub.add_parser("report", help="tables and figures from the report runs")
    r.add_argument("summaries", nargs="+")
    r.add_argument("--out", required=True)
    r.add_argument("--selected", help="selected_lr.csv: check that every run used its selected step size")
    r.add_argument("--lr-budget", help="check every budget's runs against the step size selected at this budget (the "
                   "runs of approx_rtrl.sh LR_BUDGET=...)")
    r.add_argument("--reps", type=int, default=2000, help="bootstrap resamples")
    c = sub.add_parser("add-curves", help="add the binned MSRE curve to older summaries, from the TensorBoard files")
    c.add_argument("summaries", nargs="+")
    c.add_argument("--runs-dir", required=True)
    args = p.parse_args(argv)
    {"select": select, "report": report, "add-curves": add_curves}[args.cmd](args)


if __name__ == "__main__":
    main()
