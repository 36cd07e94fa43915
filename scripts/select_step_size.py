"""Choose each PPO setting's step size from the runs of scripts/step_size.sh (exp names SETTING_lrLR).

Criterion, the same for every setting: a run's score is its mean episodic return over the whole run (every
episode, so speed of learning counts as well as the final level). Each task's scores are min-max normalised over
all of that task's runs (every setting and step size), so that tasks weigh the same. A (setting, step size) scores
the mean over tasks and seeds; each setting takes its best step size. A step size that lacks a finished run for some
task and seed (for example one that diverged: the scripts stop on a non-finite loss) is not eligible.

    python scripts/select_step_size.py --runs runs_lr --envs '-[PV]-v5$' --out results/mujoco_pv/step_size
writes selected_lr.csv (setting,learning_rate,score: what SELECTED=... scripts/mujoco_pv.sh reads), scores.csv (one
row per run), summary.md and sensitivity.png (normalised score against step size, per task and their mean). A setting
whose selected step size is the largest or smallest it ran is flagged ("edge" in summary.md, a warning on stderr):
its best may lie outside the grid, so extend the grid (step_size.sh LRS=...) before running the comparison.
"""
import argparse
import csv
import os
import re
import sys
from collections import defaultdict

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from plot import colors_for, fmt, load_runs, normalize_per_task  # noqa: E402

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

EXP_RE = re.compile(r"^(?P<setting>.+)_lr(?P<lr>[0-9.]+(e[+-]?[0-9]+)?)$")


def select(runs):
    """runs: [{env, exp, seed, values}] -> (rows, table, selected). rows: one dict per run; table:
    {setting: {lr: mean normalised score or None if not eligible}}; selected: {setting: (lr, score)}."""
    raw = defaultdict(lambda: defaultdict(list))  # env -> (setting, lr) -> [(seed, score)]
    rows = []
    for r in runs:
        m = EXP_RE.match(r["exp"])
        if m is None:
            sys.exit(f"error: exp name '{r['exp']}' is not SETTING_lrLR (runs of scripts/step_size.sh)")
        key = (m["setting"], m["lr"])
        raw[r["env"]][key].append((r["seed"], float(np.mean(r["values"]))))
    if not raw:
        sys.exit("error: no finished runs matched")
    envs = sorted(raw)
    norm = normalize_per_task({e: {k: [s for _, s in v] for k, v in raw[e].items()} for e in envs})
    keys = sorted({k for e in envs for k in raw[e]}, key=lambda k: (k[0], float(k[1])))
    seeds = sorted({seed for e in envs for v in raw[e].values() for seed, _ in v})
    table = defaultdict(dict)
    for setting, lr in keys:
        complete = all(sorted(s for s, _ in raw[e].get((setting, lr), [])) == seeds for e in envs)
        table[setting][lr] = float(np.mean([norm[e][(setting, lr)] for e in envs])) if complete else None
        for e in envs:
            for (seed, score), n in zip(raw[e].get((setting, lr), []), norm[e].get((setting, lr), [])):
                rows.append(dict(setting=setting, learning_rate=lr, env=e, seed=seed, mean_return=score, normalised=n))
    selected = {}
    for setting, by_lr in table.items():
        eligible = {lr: v for lr, v in by_lr.items() if v is not None}
        if eligible:
            lr = max(eligible, key=lambda k: (eligible[k], -float(k)))  # ties: the smaller step size
            selected[setting] = (lr, eligible[lr])
    return rows, dict(table), selected, envs, seeds


def grid_edges(table, selected):
    """{setting: "largest" or "smallest"} for the settings whose selected step size is at the edge of the step sizes
    they ran (diverged ones included: a larger step size that diverged bounds the grid)."""
    edges = {}
    for setting, (lr, _) in selected.items():
        tested = sorted(table[setting], key=float)
        if len(tested) > 1 and lr in (tested[0], tested[-1]):
            edges[setting] = "largest" if lr == tested[-1] else "smallest"
    return edges


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", nargs="+", required=True, help="directories holding the runs of scripts/step_size.sh")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--envs", help="regex: only tasks (env ids) matching it")
    p.add_argument("--exps", help="regex: only exp names matching it")
    p.add_argument("--tag", default="charts/episodic_return", help="scalar tag of the episodic returns")
    args = p.parse_args(argv)
    runs, _, incomplete = load_runs(args.runs, args.tag, "charts/SPS", env_re=args.envs, exp_re=args.exps)
    rows, table, selected, envs, seeds = select(runs)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "scores.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    with open(os.path.join(args.out, "selected_lr.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["setting", "learning_rate", "score"])
        for setting in sorted(selected):
            w.writerow([setting, selected[setting][0], f"{selected[setting][1]:.6g}"])
    lrs = sorted({lr for by_lr in table.values() for lr in by_lr}, key=float)
    edges = grid_edges(table, selected)
    lines = [f"Tasks: {', '.join(envs)}; seeds: {' '.join(map(str, seeds))}. Mean normalised whole-run return "
             "(- : a run is missing); the selected step size in bold.", "",
             "| setting | " + " | ".join(lrs) + " | selected |", "|-" * (len(lrs) + 2) + "|"]
    for setting in sorted(table):
        cells = []
        for lr in lrs:
            v = table[setting].get(lr)
            cell = "-" if v is None else fmt(v)
            cells.append(f"**{cell}**" if setting in selected and selected[setting][0] == lr else cell)
        edge = " (edge: extend the grid)" if setting in edges else ""
        lines.append(f"| {setting} | " + " | ".join(cells) + f" | {selected.get(setting, ('none',))[0]}{edge} |")
    with open(os.path.join(args.out, "summary.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    colors = colors_for(sorted(table))
    fig, axes = plt.subplots(1, len(envs) + 1, figsize=(4 * (len(envs) + 1), 3.4), squeeze=False)
    for ax, env in zip(axes[0], envs + ["mean over tasks"]):
        for setting in sorted(table):
            xs, ys = [], []
            for lr in lrs:
                vals = [r["normalised"] for r in rows if r["setting"] == setting and r["learning_rate"] == lr
                        and (env == "mean over tasks" or r["env"] == env)]
                if vals and (env != "mean over tasks" or table[setting].get(lr) is not None):
                    xs.append(float(lr))
                    ys.append(np.mean(vals))
            ax.plot(xs, ys, "o-", color=colors[setting], label=setting)
            if env == "mean over tasks" and setting in selected:
                ax.plot(float(selected[setting][0]), selected[setting][1], "*", ms=14, color=colors[setting])
        ax.set_xscale("log")
        ax.set_title(env, fontsize=9)
        ax.set_xlabel("Adam step size")
    axes[0][0].set_ylabel("normalised whole-run return")
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "sensitivity.png"), dpi=110)
    print("\n".join(lines))
    if incomplete:
        print(f"{len(incomplete)} unfinished run(s) ignored")
    print(f"wrote {args.out}/selected_lr.csv, scores.csv, summary.md, sensitivity.png")
    for setting, which in sorted(edges.items()):
        print(f"warning: {setting} selected {selected[setting][0]}, the {which} step size it ran: its best may lie "
              "outside the grid", file=sys.stderr)


if __name__ == "__main__":
    main()
