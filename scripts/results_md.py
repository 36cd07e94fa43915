"""The numbers in the results READMEs, generated with cog (cogapp): no number is typed by hand.

A generated part is a cog block hidden in HTML comments; its output is the lines up to the end marker:

    <!-- [[[cog out(table(["setting", "final score"], [[e, cell("scores.csv", "Hopper-P-v5", e)] for e in EXPS]))]]] -->
    | setting | final score |
    ...
    <!-- [[[end]]] -->

Every block runs after `from results_md import *` (and out = cog.outl), with paths relative to the README's folder. The functions below
read the committed outputs (CSV = a scores.csv written by scripts/plot.py); means, stds and values get 1 decimal when
|mean| >= 100, else 3; std is the sample std over seeds (none when n = 1). rl_run, copy_run and copy_best read one run's
exported scalars or curve with the script that reports that kind of run (ppo_report.py, copy_task_plot.py).

    python scripts/results_md.py            regenerate every README.md under results/
    python scripts/results_md.py --check    exit 1 if any is out of date (tests/test_results_md.py runs this)
"""
import argparse
import csv
import importlib
import json
import os
import re
import statistics
import sys
from collections import defaultdict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BASE = "."  # the folder of the README being generated (set by at())


def at(readme):
    global BASE
    BASE = os.path.dirname(os.path.abspath(readme))


def _read(path):
    with open(os.path.join(BASE, path), newline="") as f:
        return list(csv.DictReader(f)) if path.endswith(".csv") else f.read()


def table(header, rows):
    """A markdown table; a `|` inside a cell is escaped."""
    esc = [[str(c).replace("|", "\\|") for c in r] for r in [header] + list(rows)]
    return "\n".join(["| " + " | ".join(esc[0]) + " |", "|" + "-|" * len(header)]
                     + ["| " + " | ".join(r) + " |" for r in esc[1:]])


def decimals(values):
    return 1 if abs(statistics.mean(values)) >= 100 else 3


def mean_std(values):
    m, d = statistics.mean(values), decimals(values)
    return f"{m:.{d}f}" + (f" ± {statistics.stdev(values):.{d}f}" if len(values) > 1 else "") + f" (n={len(values)})"


def by_setting(path, env, col="final"):
    """{exp: [value of each seed, in seed order]} on env."""
    res = defaultdict(list)
    for r in sorted(_read(path), key=lambda r: int(r["seed"])):
        if r["env"] == env:
            res[r["exp"]].append(float(r[col]))
    if not res:
        raise ValueError(f"no runs of {env} in {path}")
    return res


def _values(path, env, exp, col):
    values = by_setting(path, env, col).get(exp)
    if not values:
        raise ValueError(f"no runs of {exp} on {env} in {path}")
    return values


def best_first(path, env, col="final"):
    """The settings that ran env, best mean first."""
    return sorted(by_setting(path, env, col).items(), key=lambda kv: -statistics.mean(kv[1]))


def scores(path, env, col="final"):
    """"exp mean ± std (n=seeds), ..." best first."""
    return ", ".join(f"{exp} {mean_std(v)}" for exp, v in best_first(path, env, col))


def cell(path, env, exp, col="final"):
    return mean_std(_values(path, env, exp, col))


def seeds(path, env, exp, col="final"):
    """Each seed's value in seed order: "v1 / v2 / v3"."""
    values = _values(path, env, exp, col)
    return " / ".join(f"{v:.{decimals(values)}f}" for v in values)


def order(path):
    """One line per (env, seed): the settings ordered by final score, best first."""
    runs = defaultdict(list)
    for r in _read(path):
        runs[(r["env"], int(r["seed"]))].append((-float(r["final"]), r["exp"]))
    return "\n".join(f"- `{env}`, seed {seed}: " + " > ".join(exp for _, exp in sorted(rows))
                     for (env, seed), rows in sorted(runs.items()))


def _entropy(r):
    if r["entropy_first"] == "":
        raise ValueError(f"run {r['run_dir']} has no logged entropy")
    return f"{float(r['entropy_first']):.3f} -> {float(r['entropy_last']):.3f}"


def entropy(path, env_regex=""):
    """Table env x setting: "seed: first -> last" logged policy entropy of each run."""
    rows = [r for r in _read(path) if re.search(env_regex, r["env"])]
    envs, exps = sorted({r["env"] for r in rows}), sorted({r["exp"] for r in rows})
    runs = defaultdict(list)
    for r in sorted(rows, key=lambda r: int(r["seed"])):
        runs[(r["env"], r["exp"])].append(f"{r['seed']}: {_entropy(r)}")
    return table(["task", *exps], [[env] + [", ".join(runs[(env, e)]) or "-" for e in exps] for env in envs])


def runs(path):
    """Table, one row per run: setting, seed, final, MMER, entropy first -> last, env steps."""
    rows = sorted(_read(path), key=lambda r: (r["env"], r["exp"], int(r["seed"])))
    return table(["task", "setting", "seed", "final score", "MMER", "policy entropy, first -> last logged",
                  "env steps"], [[r["env"], r["exp"], r["seed"], f"{float(r['final']):.3f}", f"{float(r['mmer']):.3f}",
                                  _entropy(r), r["last_step"]] for r in rows])


def seed_table(env, exps, sources):
    """Table, one row per setting: each source's seeds in seed order and their mean ± std; sources: [(label, CSV)]."""
    header = ["setting"] + [h for label, _ in sources for h in (f"{label}: seeds 1 / 2 / 3", f"{label}: mean ± std")]
    return table(header, [[e] + [x for _, p in sources for x in (seeds(p, env, e), cell(p, env, e))] for e in exps])


def md_columns(path, columns):
    """The first markdown table in path, cut to its first column and the given columns."""
    lines = [line.strip() for line in _read(path).splitlines()]
    start = next((i for i, line in enumerate(lines) if line.startswith("|") and i + 1 < len(lines)
                  and lines[i + 1].startswith("|-")), None)
    if start is None:
        raise ValueError(f"no markdown table in {path}")
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        if not line.startswith("|-"):
            rows.append([c.strip() for c in line.strip("|").split("|")])
    missing = [c for c in columns if c not in rows[0]]
    if missing:
        raise ValueError(f"no column {missing[0]!r} in the first table of {path}")
    keep = [0] + [rows[0].index(c) for c in columns]
    return table([rows[0][k] for k in keep], [[r[k] for k in keep] for r in rows[1:]])


def iqm(path, exp, score="final"):
    """Aggregate IQM over tasks x seeds from plot.py's aggregate.json: "0.815 [0.669, 0.943]"."""
    agg = json.loads(_read(path))["aggregate"].get(score, {})
    if exp not in agg:
        raise ValueError(f"no {score!r} aggregate of {exp} in {path}")
    point, lo, hi = agg[exp]["IQM"]
    return f"{point:.3f} [{lo:.3f}, {hi:.3f}]"


def mdcell(path, row, column):
    """The cell under header column in the first markdown-table row whose first cell is row."""
    header = None
    lines = [line.strip() for line in _read(path).splitlines()]
    for i, line in enumerate(lines):
        cells = [c.strip() for c in line.strip("|").split("|")] if line.startswith("|") else None
        if cells is None:
            header = None
        elif i + 1 < len(lines) and lines[i + 1].startswith("|-"):
            header = cells
        elif header and cells[0] == row and column in header:
            return cells[header.index(column)]
    raise ValueError(f"no table row {row!r} with a column {column!r} in {path}")


def logkey(path, key):
    """The value of KEY=value on the log's last line that starts with "final:"."""
    final = [line for line in _read(path).splitlines() if line.startswith("final:")]
    values = dict(w.split("=", 1) for w in (final[-1].split() if final else []) if "=" in w)
    if key not in values:
        raise ValueError(f"no '{key}=' on a 'final:' line of {path}")
    return values[key]


def trace(path, isi, arch, T, params, col="msre"):
    """Trace conditioning (trace_records.csv): the mean over seeds of col for arch on isi with truncation length T
    (None for the RTRL learners) and params recurrent parameters; 3 significant digits, or a whole number with
    thousands separators if >= 1000."""
    key = (str(isi), arch, "-" if T is None else str(T), str(params))
    rows = [r for r in _read(path) if (r["isi"], r["arch"], r["tbptt_len"] or "-", r["params"]) == key]
    if not rows:
        raise ValueError(f"no trace records of {arch} on ISI {isi} with T={T} and {params} params in {path}")
    m = statistics.mean(float(r[col]) for r in rows)
    return f"{m:,.0f}" if abs(m) >= 1000 else f"{m:.3g}"


def _script(name):
    """scripts/<name>.py, imported: the script that computes a kind of run's numbers also gives them here."""
    here = os.path.dirname(os.path.abspath(__file__))
    if here not in sys.path:
        sys.path.insert(0, here)
    return importlib.import_module(name)


def _number(v):
    return f"{v:.{decimals([v])}f}"


def rl_run(path):
    """An RL run's numbers as text, from its run directory or csv.gz export (scripts/ppo_report.py's summary): seed,
    steps (env steps), episodes, first (mean return of the first iteration's episodes), final (final score: mean
    return of the last 10% of the episodes), mmer, entropy ("first -> last" logged policy entropy, or "-")."""
    s = _script("ppo_report").summary(os.path.join(BASE, path))
    entropy = "-" if s["entropy"] is None else f"{s['entropy'][0]:.3f} -> {s['entropy'][1]:.3f}"
    return dict(seed=str(s["seed"]), steps=str(s["steps"]), episodes=str(s["episodes"]), first=_number(s["first"]),
                final=_number(s["final"]), mmer=_number(s["mmer"]), entropy=entropy)


def copy_run(path):
    """A copy-task run's numbers as text, from the curve.csv in its run folder (scripts/copy_task_plot.py's summary):
    seed, sequences, updates, wall_time ("950 s"), best (best validation sequence accuracy, "11.50%"), seq_acc and
    token_acc (the last evaluation's validation sequence and bit accuracy)."""
    s = _script("copy_task_plot").summary(os.path.join(BASE, path))
    parsed = _script("plot").parse_run_name(os.path.basename(os.path.normpath(path)))
    return dict(seed=str(parsed[2]) if parsed else "-", sequences=str(s["sequences"]), updates=str(s["updates"]),
                wall_time=f"{s['wall_time']:.0f} s", best=f"{s['best_val_seq_acc']:.2f}%",
                seq_acc=f"{s['val_seq_acc']:.2f}%", token_acc=f"{s['val_token_acc']:.2f}%")


def copy_best(path, t0, t1):
    """The best validation sequence accuracy ("24.60%") of a copy-task run's evaluations at wall time t0 <= t < t1 (s),
    from the curve.csv in its run folder."""
    accs = [100 * float(r["val_seq_acc"]) for r in _script("copy_task_plot").curve(os.path.join(BASE, path))
            if t0 <= float(r["wall_time"]) < t1]
    if not accs:
        raise ValueError(f"no evaluation of {path} at wall time in [{t0}, {t1}) s")
    return f"{max(accs):.2f}%"

def lastword(path, name):
    """The word after `name` on the last line of the file that has `name` followed by a word:
    lastword("out.txt", "accuracy") on a last line "... accuracy 0.263 entropy 1.382" is "0.263"."""
    pattern = re.compile(re.escape(name) + r"\s+(\S+)")
    found = [m.group(1) for line in _read(path).splitlines() for m in [pattern.search(line)] if m]
    if not found:
        raise ValueError(f"no '{name}' followed by a value in {path}")
    return found[-1]


def readmes(root):
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in ("runs", "run_scalars") and not d.startswith("."))
        if "README.md" in filenames:
            yield os.path.join(dirpath, "README.md")


def main(argv=None):
    from cogapp import Cog

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("root", nargs="?", default=os.path.join(ROOT, "results"), help="folder searched for README.md")
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if a generated part is out of date")
    args = p.parse_args(argv)
    files = [f for f in readmes(args.root) if "[[[cog" in open(f).read()]
    cog_args = ["cog", "--check" if args.check else "-r", "-I", os.path.dirname(os.path.abspath(__file__)),
                "-p", "from results_md import *; at(cog.inFile); out = cog.outl", *files]
    return 1 if files and Cog().main(cog_args) else 0


if __name__ == "__main__":
    sys.exit(main())
