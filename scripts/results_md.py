"""Fill in the generated parts of the results READMEs from the files they summarise: no number is typed by hand.

A generated part sits between a comment that says what to generate and a closing comment (GitHub hides both):

    - `Hopper-P-v5`: <!--gen scores scores.csv Hopper-P-v5-->ppo_rtu_rtrl_linear 1079.4 ± 136.4 (n=2), ...<!--/gen-->

Paths are relative to the README's folder. What can be generated (CSV = a scores.csv written by scripts/plot.py):

    scores CSV ENV [COL]       the settings that ran ENV, best first: "exp mean ± std (n=seeds), ..." (COL: final)
    cell CSV ENV EXP [COL]     one setting: "mean ± std (n=seeds)"
    seeds CSV ENV EXP [COL]    one setting, each seed's value in seed order: "v1 / v2 / v3"
    order CSV                  list, one line per (env, seed): the settings ordered by final score, best first
    entropy CSV [ENV_REGEX]    table env x setting: "seed: first -> last" logged policy entropy of each run
    runs CSV                   table, one row per run: setting, seed, final, MMER, entropy first -> last, env steps
    iqm JSON EXP [SCORE]       aggregate IQM over tasks x seeds from plot.py's aggregate.json: "0.815 [0.669, 0.943]"
    mdcell MD ROW COLUMN       the cell under header COLUMN in the first markdown-table row whose first cell is ROW
    logkey LOG KEY             the value of KEY=value on the log's line that starts with "final:"
    trace CSV ISI ARCH T PARAMS [COL]
                               trace conditioning, from trace_conditioning_report.py's trace_records.csv: the mean over seeds of COL (msre)
                               of ARCH on ISI with truncation length T ("-" for the RTRL learners) and PARAMS recurrent
                               parameters; 3 significant digits, or a whole number with thousands separators if >= 1000

Means, stds and values get 1 decimal when |mean| >= 100, else 3; std is the sample std over seeds (none when n = 1).

    python scripts/results_md.py            rewrite the generated parts of every README.md under results/
    python scripts/results_md.py --check    exit 1 if any is out of date (tests/test_results_md.py runs this)
"""
import argparse
import csv
import json
import os
import re
import shlex
import statistics
import sys
from collections import defaultdict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GEN = re.compile(r"<!--gen (.*?)-->(.*?)<!--/gen-->", re.S)


def read_scores(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def decimals(values):
    return 1 if abs(statistics.mean(values)) >= 100 else 3


def mean_std(values):
    m, d = statistics.mean(values), decimals(values)
    return f"{m:.{d}f}" + (f" ± {statistics.stdev(values):.{d}f}" if len(values) > 1 else "") + f" (n={len(values)})"


def by_setting(rows, env, col):
    """{exp: [value of each seed, in seed order]} on env."""
    out = defaultdict(list)
    for r in sorted(rows, key=lambda r: int(r["seed"])):
        if r["env"] == env:
            out[r["exp"]].append(float(r[col]))
    return out


def setting_values(path, env, exp, col):
    values = by_setting(read_scores(path), env, col).get(exp)
    if not values:
        raise ValueError(f"no runs of {exp} on {env} in {path}")
    return values


def gen_scores(path, env, col="final"):
    settings = by_setting(read_scores(path), env, col)
    if not settings:
        raise ValueError(f"no runs of {env} in {path}")
    best_first = sorted(settings.items(), key=lambda kv: -statistics.mean(kv[1]))
    return ", ".join(f"{exp} {mean_std(v)}" for exp, v in best_first)


def gen_cell(path, env, exp, col="final"):
    return mean_std(setting_values(path, env, exp, col))


def gen_seeds(path, env, exp, col="final"):
    values = setting_values(path, env, exp, col)
    return " / ".join(f"{v:.{decimals(values)}f}" for v in values)


def gen_order(path):
    seeds = defaultdict(list)
    for r in read_scores(path):
        seeds[(r["env"], int(r["seed"]))].append((-float(r["final"]), r["exp"]))
    return "\n".join(f"- `{env}`, seed {seed}: " + " > ".join(exp for _, exp in sorted(rows))
                     for (env, seed), rows in sorted(seeds.items()))


def _entropy(r):
    if r["entropy_first"] == "":
        raise ValueError(f"run {r['run_dir']} has no logged entropy")
    return f"{float(r['entropy_first']):.3f} -> {float(r['entropy_last']):.3f}"


def gen_entropy(path, env_regex=""):
    rows = [r for r in read_scores(path) if re.search(env_regex, r["env"])]
    envs, exps = sorted({r["env"] for r in rows}), sorted({r["exp"] for r in rows})
    cell = defaultdict(list)
    for r in sorted(rows, key=lambda r: int(r["seed"])):
        cell[(r["env"], r["exp"])].append(f"{r['seed']}: {_entropy(r)}")
    table = [f"| {env} | " + " | ".join(", ".join(cell[(env, e)]) or "-" for e in exps) + " |" for env in envs]
    return "\n".join([f"| task | {' | '.join(exps)} |", "|-|" + "-|" * len(exps)] + table)


def gen_runs(path):
    rows = sorted(read_scores(path), key=lambda r: (r["env"], r["exp"], int(r["seed"])))
    header = ["| task | setting | seed | final score | MMER | policy entropy, first -> last logged | env steps |",
              "|-|-|-|-|-|-|-|"]
    return "\n".join(header + [f"| {r['env']} | {r['exp']} | {r['seed']} | {float(r['final']):.3f} | "
                               f"{float(r['mmer']):.3f} | {_entropy(r)} | {r['last_step']} |" for r in rows])


def gen_iqm(path, exp, score="final"):
    with open(path) as f:
        agg = json.load(f)["aggregate"].get(score, {})
    if exp not in agg:
        raise ValueError(f"no {score!r} aggregate of {exp} in {path}")
    point, lo, hi = agg[exp]["IQM"]
    return f"{point:.3f} [{lo:.3f}, {hi:.3f}]"


def gen_mdcell(path, row, column):
    header = None
    with open(path) as f:
        lines = [line.strip() for line in f]
    for i, line in enumerate(lines):
        cells = [c.strip() for c in line.strip("|").split("|")] if line.startswith("|") else None
        if cells is None:
            header = None
        elif i + 1 < len(lines) and lines[i + 1].startswith("|-"):
            header = cells
        elif header and cells[0] == row and column in header:
            return cells[header.index(column)]
    raise ValueError(f"no table row {row!r} with a column {column!r} in {path}")


def gen_logkey(path, key):
    with open(path) as f:
        final = [line for line in f if line.startswith("final:")]
    values = dict(w.split("=", 1) for w in (final[-1].split() if final else []) if "=" in w)
    if key not in values:
        raise ValueError(f"no '{key}=' on a 'final:' line of {path}")
    return values[key]


def gen_trace(path, isi, arch, T, params, col="msre"):
    rows = [r for r in read_scores(path) if (r["isi"], r["arch"], r["tbptt_len"] or "-", r["params"]) ==
            (isi, arch, T, params)]
    if not rows:
        raise ValueError(f"no trace records of {arch} on ISI {isi} with T={T} and {params} params in {path}")
    m = statistics.mean(float(r[col]) for r in rows)
    return f"{m:,.0f}" if abs(m) >= 1000 else f"{m:.3g}"


# name: (function, whether its output is a block of lines: a list or a table)
DIRECTIVES = {"scores": (gen_scores, False), "cell": (gen_cell, False), "seeds": (gen_seeds, False),
              "order": (gen_order, True), "entropy": (gen_entropy, True), "runs": (gen_runs, True),
              "iqm": (gen_iqm, False), "mdcell": (gen_mdcell, False), "logkey": (gen_logkey, False),
              "trace": (gen_trace, False)}


def fill(text, folder):
    """text with every generated part regenerated (paths relative to folder)."""
    if text.count("<!--gen ") != len(GEN.findall(text)):
        raise ValueError("a '<!--gen ...-->' has no matching '<!--/gen-->'")

    def one(m):
        name, *args = shlex.split(m.group(1))
        if name not in DIRECTIVES:
            raise ValueError(f"unknown directive {name!r} (known: {', '.join(DIRECTIVES)})")
        func, block = DIRECTIVES[name]
        args[0] = os.path.join(folder, args[0])
        try:
            out = func(*args)
        except TypeError:
            raise ValueError(f"wrong arguments for {name}: {m.group(1)!r} (see scripts/results_md.py)") from None
        return f"<!--gen {m.group(1)}-->" + (f"\n{out}\n" if block else out) + "<!--/gen-->"

    return GEN.sub(one, text)


def readmes(root):
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in ("runs", "run_scalars") and not d.startswith("."))
        if "README.md" in filenames:
            yield os.path.join(dirpath, "README.md")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("root", nargs="?", default=os.path.join(ROOT, "results"), help="folder searched for README.md")
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if a generated part is out of date")
    args = p.parse_args(argv)
    stale = []
    for path in readmes(args.root):
        with open(path) as f:
            text = f.read()
        try:
            new = fill(text, os.path.dirname(path))
        except (ValueError, OSError, KeyError) as e:
            sys.exit(f"error: {path}: {e}")
        if new != text:
            stale.append(path)
            if not args.check:
                with open(path, "w") as f:
                    f.write(new)
    verb = "out of date" if args.check else "rewritten"
    print("\n".join(f"{verb}: {os.path.relpath(s)}" for s in stale) or "all generated parts are up to date")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
