"""Offline learning curves, aggregate scores and tables from TensorBoard runs (no wandb needed).

RL runs (PPO scripts, r2ac_elstm.py, anything that writes CleanRL-style run directories):

    python scripts/plot.py --runs runs --out results/popgym --envs ^popgym- --exps ^ppo_ --popgym
    python scripts/plot.py --runs runs --out results/mujoco_pv --envs='-[PV]-v5$' --exps '^ppo_'
    python scripts/plot.py --runs runs --out results/copy_task --envs '^copy' --tag copy/val_seq_acc --xlabel sequences

Every directory under --runs that holds TensorBoard event files and is named `{env_id}__{exp_name}__{seed}__{time}`
is one run (directories whose name starts with '.' are skipped: the sweeps' scratch space). Runs are grouped into
tasks (env_id) and architectures (exp_name; the sweeps pass one --exp-name per setting). Only complete runs are used:
run directories with the done.json that the training scripts write when a run reaches its total steps, and exported
runs (--export-runs writes complete runs only). Incomplete ones are listed and left out (--include-incomplete uses
them). Two runs of one (env_id, exp_name, seed) are an error, not a silent choice; if their done.json args differ
(e.g. a short test run and the full run), --where NAME=VALUE keeps the runs whose args have NAME == VALUE (e.g.
--where total_timesteps=1000000). Outputs in --out:

- curves.png and curves/<env>.png: the --tag scalar (default charts/episodic_return) resampled onto a common grid of
  env steps (mean of the episodes that ended in each grid interval, carried forward over empty intervals), mean over
  seeds with a 95% bootstrap confidence interval over seeds, one line per architecture;
- scores.csv: one row per run: final score (mean of the last 10% of the episodes), MMER, and the first and last
  logged --entropy-tag value (default losses/entropy; empty if the run has none);
- aggregate_<score>.png, aggregate.json: IQM and mean over tasks x seeds of the per-run score, with 95% stratified
  bootstrap confidence intervals from rliable (runs resampled with replacement within each task). Scores are
  normalised per task to [0, 1] by the min and max over all runs of that task (all architectures) before they are
  pooled across tasks (--normalize none pools raw scores). Only the tasks that every aggregated architecture
  (--aggregate-exps, default all) ran are pooled, so that all of them are scored on the same tasks; summary.md lists
  the tasks left out;
- summary.md: per-task tables (mean +- std over seeds, 95% bootstrap CI, n seeds) and the aggregate table.

--export-runs DIR writes what the report reads of every run (--tag, --batch-tag, and the first and last
--entropy-tag value) to DIR/<run name>.csv.gz, 1-4% of the size of the event files. `--runs DIR` reads them like run
directories and reproduces the same scores.csv, tables and plots: results/ commits these files, not the event files.
scripts/results_md.py then fills the numbers quoted in the results READMEs from scores.csv.

MMER (--popgym, POPGym's metric): per run, the maximum over training of the mean episodic return of a batch
of episodes; a batch = the episodes that ended within one iteration of the algorithm (iterations are delimited by the
steps at which --batch-tag, default charts/SPS, is logged once per iteration), consecutive batches being merged until
they hold at least --mmer-min-episodes episodes; reported as mean +- std over seeds.

Trace conditioning runs (td_animal_learning.py): scripts/trace_conditioning_report.py.
"""
import argparse
import csv
import gzip
import io
import json
import math
import os
import re
import sys
import warnings
from collections import defaultdict

import numpy as np

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

EXPORT_SUFFIX = ".csv.gz"  # an exported run (--export-runs), read like a run directory
BOOKKEEPING_ARGS = {"resume"}  # done.json args that say how a run was executed, not what it computes


# ---------------------------------------------------------------------------------------------------------------
# Statistics (rliable)
# ---------------------------------------------------------------------------------------------------------------
def _rliable():
    from rliable import library, metrics  # imported on use: it takes seconds (arch, pandas, scipy)

    return library, metrics


STATS = {"IQM": lambda x: _rliable()[1].aggregate_iqm(x), "mean": lambda x: _rliable()[1].aggregate_mean(x)}


def _interval(scores, func, reps, conf, seed):
    """rliable's point estimate and percentile CI; its resampling draws from numpy's global generator, so seed it."""
    np.random.seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)  # all-NaN columns (curves past a run's end)
        point, ci = _rliable()[0].get_interval_estimates({"x": scores}, func, reps=reps, confidence_interval_size=conf)
    return point["x"], ci["x"][0], ci["x"][1]


def stratified_bootstrap(groups, stat, reps=2000, conf=0.95, seed=0):
    """stat (an rliable aggregate) of the pooled scores and its 95% CI under rliable's stratified bootstrap.

    groups: one 1-D array of run scores per task. rliable resamples the runs of every task separately; the tasks are
    passed as separate (runs x 1) arrays because their numbers of runs may differ.
    """
    groups = [np.asarray(g, dtype=float).reshape(-1, 1) for g in groups if len(g)]
    point, lo, hi = _interval(groups, lambda *g: np.array([stat(np.concatenate(g))]), reps, conf, seed)
    return float(point[0]), float(lo[0]), float(hi[0])


def score_matrices(groups_by_arch):
    """{arch: runs x tasks matrix}, rliable's layout, from {arch: [1-D run scores of each task]}: every task keeps its
    first n runs, n = the fewest runs of any (task, arch), so that all matrices are rectangular."""
    n = min(len(g) for groups in groups_by_arch.values() for g in groups)
    return {a: np.stack([np.asarray(g[:n], dtype=float) for g in groups], axis=1) for a, groups in groups_by_arch.items()}


def probability_of_improvement(mats, reps=2000, conf=0.95, seed=0):
    """{(a, b): (P(a > b), lo, hi)} for every ordered pair: rliable's probability that a run of a scores higher than a
    run of b on the same task (Mann-Whitney U / (n m) per task, averaged over tasks), stratified-bootstrap CI."""
    library, metrics = _rliable()
    pairs = {(a, b): (mats[a], mats[b]) for a in mats for b in mats if a != b}
    keys = {f"{a},{b}": (a, b) for a, b in pairs}
    np.random.seed(seed)
    point, ci = library.get_interval_estimates({k: pairs[ab] for k, ab in keys.items()},
                                               metrics.probability_of_improvement, reps=reps,
                                               confidence_interval_size=conf)
    return {ab: (float(np.squeeze(point[k])), *(float(np.squeeze(c)) for c in ci[k])) for k, ab in keys.items()}


def plot_profiles(mats, colors, path, title, reps=2000, seed=0):
    """rliable's performance profiles (fraction of runs scoring above tau, with 95% stratified-bootstrap bands)."""
    library, _ = _rliable()
    taus = np.linspace(min(m.min() for m in mats.values()), max(m.max() for m in mats.values()), 81)
    np.random.seed(seed)
    profiles, cis = library.create_performance_profile(mats, taus, reps=reps)
    fig, ax = plt.subplots(figsize=(6, 4))
    for a in mats:
        ax.plot(taus, profiles[a], color=colors[a], label=a)
        ax.fill_between(taus, cis[a][0], cis[a][1], color=colors[a], alpha=0.2)
    ax.set_xlabel("normalised score tau")
    ax.set_ylabel("fraction of runs with score > tau")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def bootstrap_mean_ci(y, reps=1000, conf=0.95, seed=0):
    """Mean over axis 0 (seeds) of y (seeds x points, NaN = missing) and its bootstrap CI over seeds (rliable, one
    task: each point's seeds resampled)."""
    y = np.asarray(y, dtype=float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        m = np.nanmean(y, axis=0)
    if y.shape[0] < 2:
        return m, m.copy(), m.copy()
    return _interval(y[:, None, :], lambda s: np.nanmean(s[:, 0, :], axis=0), reps, conf, seed)


def final_score(values, last_frac=0.1):
    """Mean of the last `last_frac` of the values (at least one): the final return of a run."""
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return float("nan")
    k = max(1, int(math.ceil(last_frac * len(values))))
    return float(values[-k:].mean())


def mmer(steps, returns, boundaries=None, min_episodes=1, window=100):
    """Max over training of the mean episodic return of a batch of episodes (POPGym's MMER).

    boundaries: sorted env steps that end the iterations (e.g. the steps of charts/SPS); the batch of iteration i
    holds the episodes with boundaries[i-1] < step <= boundaries[i] (episodes after the last boundary form one more
    batch). Consecutive non-empty batches are merged until a batch holds at least `min_episodes` episodes (a trailing
    batch with fewer is merged into the previous one). Without boundaries: consecutive windows of `window` episodes
    (the last, shorter window is merged into the previous one).
    """
    steps, returns = np.asarray(steps), np.asarray(returns, dtype=float)
    if len(returns) == 0:
        return float("nan")
    if boundaries is not None and len(boundaries):
        ids = np.searchsorted(np.asarray(boundaries), steps, side="left")
        batches = [returns[ids == i] for i in np.unique(ids)]
    else:
        batches = [returns[i: i + window] for i in range(0, len(returns), window)]
        min_episodes = max(min_episodes, window)
    merged, cur = [], np.empty(0)
    for b in batches:
        cur = np.concatenate([cur, b])
        if len(cur) >= min_episodes:
            merged.append(cur)
            cur = np.empty(0)
    if len(cur):
        if merged:
            merged[-1] = np.concatenate([merged[-1], cur])
        else:
            merged.append(cur)
    return float(max(b.mean() for b in merged))


def normalize_per_task(scores, how="minmax"):
    """scores: {task: {arch: array of run scores}} -> same structure, min-max normalised over all runs of a task."""
    if how == "none":
        return {t: {a: np.asarray(v, dtype=float) for a, v in d.items()} for t, d in scores.items()}
    out = {}
    for task, d in scores.items():
        allv = np.concatenate([np.asarray(v, dtype=float) for v in d.values()])
        lo, hi = np.nanmin(allv), np.nanmax(allv)
        scale = hi - lo if hi > lo else 1.0
        out[task] = {a: (np.asarray(v, dtype=float) - lo) / scale for a, v in d.items()}
    return out


# ---------------------------------------------------------------------------------------------------------------
# TensorBoard runs
# ---------------------------------------------------------------------------------------------------------------
def parse_run_name(name):
    """`{env_id}__{exp_name}__{seed}__{time}` -> (env_id, exp_name, seed), or None if the name does not fit."""
    parts = name.split("__")
    if len(parts) < 4 or not re.fullmatch(r"\d+(\.\d+)?", parts[-1]) or not re.fullmatch(r"-?\d+", parts[-2]):
        return None
    return parts[0], "__".join(parts[1:-2]), int(parts[-2])


def find_runs(root):
    """Runs under root: directories holding TensorBoard event files, and exported runs `<run name>.csv.gz`
    (--export-runs). Hidden directories are skipped; symlinked run directories are followed, so a study can reuse
    another's runs without copying them."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        if any(f.startswith("events.out.tfevents") for f in filenames):
            found.append(dirpath)
        found += [os.path.join(dirpath, f) for f in sorted(filenames) if f.endswith(EXPORT_SUFFIX)]
    return found


def run_name(path):
    """The run's name `{env_id}__{exp_name}__{seed}__{time}`: its directory's, or its exported file's minus suffix."""
    name = os.path.basename(os.path.normpath(path))
    return name[: -len(EXPORT_SUFFIX)] if name.endswith(EXPORT_SUFFIX) else name


def load_scalars(run, tags=None):
    """{tag: (steps, values)} for the tags present in the run (tags=None: every tag; all events: no reservoir
    down-sampling)."""
    if run.endswith(EXPORT_SUFFIX):
        rows = defaultdict(list)
        with gzip.open(run, "rt", newline="") as f:
            reader = csv.reader(f)
            if next(reader, None) != ["tag", "step", "value"]:
                sys.exit(f"error: {run} is not an exported run (its header is not tag,step,value)")
            for tag, step, value in reader:
                rows[tag].append((int(step), value))
        # TensorBoard stores float32: reading the shortest float32 repr back through float32 restores the exact value
        raw = {tag: (np.array([s for s, _ in r], dtype=np.int64), np.array([v for _, v in r], dtype=np.float32)
                     .astype(float)) for tag, r in rows.items()}
    else:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        acc = EventAccumulator(run, size_guidance={"scalars": 0})
        acc.Reload()
        raw = {}
        for tag in acc.Tags().get("scalars", []):
            if tags is None or tag in tags:
                ev = acc.Scalars(tag)
                raw[tag] = (np.array([e.step for e in ev], dtype=np.int64), np.array([e.value for e in ev], dtype=float))
    out = {}
    for tag in raw if tags is None else tags:
        if tag in raw:
            steps, vals = raw[tag]
            order = np.argsort(steps, kind="stable")
            out[tag] = (steps[order], vals[order])
    return out


def export_run(path, scalars):
    """Write {tag: (steps, values)} as a gzipped CSV (tag, step, value): 1-4% of the event files' size, and
    byte-identical when written twice (no timestamp, no file name in the gzip header), so it diffs cleanly in git."""
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz, \
            io.TextIOWrapper(gz, newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["tag", "step", "value"])
        for tag, (steps, values) in scalars.items():
            w.writerows((tag, int(s), str(np.float32(v))) for s, v in zip(steps, values))


def read_done(path):
    """A run directory's completion marker done.json (written by the training scripts when the run reached its total
    steps) as a dict, or None if there is none."""
    f = os.path.join(path, "done.json")
    if not os.path.isfile(f):
        return None
    try:
        with open(f) as fh:
            done = json.load(fh)
    except (OSError, ValueError) as e:
        sys.exit(f"error: {f} is not a readable completion marker ({e})")
    if not isinstance(done, dict):
        sys.exit(f"error: {f} is not a completion marker (not a JSON object)")
    return done


def _arg_matches(config, name, value):
    """--where NAME=VALUE: VALUE is read as JSON if it parses (1000000, true, 0.5), else as a string."""
    if name not in config:
        return False
    try:
        parsed = json.loads(value)
    except ValueError:
        parsed = value
    return config[name] == parsed or str(config[name]) == value


def _duplicate_error(env, exp, seed, runs):
    """The one-line error for several runs of one (env, exp, seed): runs = [(path, args or None)]."""
    what = f"{len(runs)} runs of {env} {exp} seed {seed}"
    paths = ", ".join(d for d, _ in runs)
    configs = [c for _, c in runs]
    if any(c is None for c in configs):
        return (f"error: {what}, not all with a recorded configuration (exported or incomplete runs): {paths}; "
                "keep one of them")
    differ = [k for k in sorted(set().union(*configs) - BOOKKEEPING_ARGS)
              if len({json.dumps(c.get(k), sort_keys=True) for c in configs}) > 1]
    if not differ:
        return f"error: {what} with the same configuration (duplicates): {paths}; keep one of them"
    shown = "; ".join(f"{k}: {', '.join(json.dumps(c.get(k)) for c in configs)}" for k in differ[:3])
    return (f"error: {what} with different configurations ({shown}{'; ...' if len(differ) > 3 else ''}): {paths}; "
            "select one with --where NAME=VALUE or give them separate --runs folders")


def load_runs(roots, tag, batch_tag, env_re=None, exp_re=None, entropy_tag=None, include_incomplete=False,
              where=()):
    """[{env, exp, seed, dir, steps, values, boundaries, entropy, scalars, complete}] (entropy: (first, last) logged
    value of entropy_tag or None; scalars: what --export-runs writes), the runs skipped (with why) and the incomplete
    runs found. Only complete runs (done.json, or exported) unless include_incomplete; where: [(NAME, VALUE)] that
    the runs' done.json args must match. Several runs of one (env, exp, seed) exit with an error."""
    found, skipped, incomplete = defaultdict(list), [], []
    for root in roots:
        if not os.path.isdir(root):
            sys.exit(f"error: --runs {root} is not a directory")
        for d in find_runs(root):
            parsed = parse_run_name(run_name(d))
            if parsed is None:
                skipped.append(f"{d} (name is not env__exp__seed__time)")
                continue
            env, exp, seed = parsed
            if (env_re and not re.search(env_re, env)) or (exp_re and not re.search(exp_re, exp)):
                continue
            config, complete = None, True  # exported runs: complete, their args not recorded
            if not d.endswith(EXPORT_SUFFIX):
                done = read_done(d)
                complete = done is not None
                config = done.get("args") if complete else None
            if where and not (isinstance(config, dict) and all(_arg_matches(config, k, v) for k, v in where)):
                why = "no recorded args to match" if config is None else "args do not match"
                skipped.append(f"{d} ({why} --where)")
                continue
            if not complete:
                incomplete.append(d)
                if not include_incomplete:
                    continue
            found[parsed].append((d, config, complete))
    runs = []
    for (env, exp, seed), cands in sorted(found.items()):
        if len(cands) > 1:
            sys.exit(_duplicate_error(env, exp, seed, [(d, c) for d, c, _ in cands]))
        d, _, complete = cands[0]
        sc = load_scalars(d, [tag, batch_tag] + ([entropy_tag] if entropy_tag else []))
        if tag not in sc or len(sc[tag][0]) == 0:
            skipped.append(f"{d} (no '{tag}' scalars)")
            continue
        steps, values = sc[tag]
        entropy = None
        if entropy_tag in sc and len(sc[entropy_tag][0]):
            # only the first and last values are reported, so only they are kept (R2AC logs one per update)
            e_steps, e_values = sc[entropy_tag]
            sc[entropy_tag] = (e_steps[[0, -1]], e_values[[0, -1]])
            entropy = (float(e_values[0]), float(e_values[-1]))
        runs.append(dict(env=env, exp=exp, seed=seed, dir=d, steps=steps, values=values,
                         boundaries=sc[batch_tag][0] if batch_tag in sc else None, entropy=entropy, scalars=sc,
                         complete=complete))
    return runs, skipped, incomplete


def resample(steps, values, grid):
    """Mean of the values logged in each grid interval (grid[i-1], grid[i]] (the first one includes step 0),
    carried forward over empty intervals; NaN before the first value and after the run's last logged step."""
    steps, values = np.asarray(steps), np.asarray(values, dtype=float)
    ids = np.searchsorted(grid, steps, side="left")  # interval index of each value
    keep = ids < len(grid)
    sums = np.bincount(ids[keep], weights=values[keep], minlength=len(grid))
    counts = np.bincount(ids[keep], minlength=len(grid))
    out = np.full(len(grid), np.nan)
    last = np.nan
    last_id = ids[keep].max() if keep.any() else -1
    for i in range(len(grid)):
        if counts[i]:
            last = sums[i] / counts[i]
        out[i] = last if i <= last_id else np.nan
    return out


# ---------------------------------------------------------------------------------------------------------------
# RL report
# ---------------------------------------------------------------------------------------------------------------
def fmt(x, digits=3):
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "n/a"
    ax = abs(x)
    if ax != 0 and (ax >= 1e5 or ax < 1e-3):
        return f"{x:.{digits}g}"
    return f"{x:.{digits}f}" if ax < 100 else f"{x:.1f}"


def colors_for(names):
    cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    return {n: cmap(i % cmap.N) for i, n in enumerate(names)}


def plot_curves(runs, tasks, archs, colors, args):
    os.makedirs(os.path.join(args.out, "curves"), exist_ok=True)
    ncol = min(3, len(tasks))
    nrow = int(math.ceil(len(tasks) / ncol))
    big, axes = plt.subplots(nrow, ncol, figsize=(5.2 * ncol, 3.6 * nrow), squeeze=False)
    for k, task in enumerate(tasks):
        trs = [r for r in runs if r["env"] == task]
        grid = np.linspace(0, max(int(r["steps"].max()) for r in trs), args.points + 1)[1:]
        fig, ax = plt.subplots(figsize=(6, 4))
        for target in (ax, axes[k // ncol][k % ncol]):
            for arch in archs:
                ar = [r for r in trs if r["exp"] == arch]
                if not ar:
                    continue
                y = np.stack([resample(r["steps"], r["values"], grid) for r in ar])
                m, lo, hi = bootstrap_mean_ci(y, reps=args.reps, seed=args.seed)
                target.plot(grid, m, color=colors[arch], label=f"{arch} (n={len(ar)})", lw=1.5)
                target.fill_between(grid, lo, hi, color=colors[arch], alpha=0.2, lw=0)
            target.set_title(task, fontsize=10)
            target.set_xlabel(args.xlabel)
            target.set_ylabel(args.tag.split("/")[-1].replace("_", " "))
            target.grid(alpha=0.3)
            if args.ylim:
                target.set_ylim(*args.ylim)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(os.path.join(args.out, "curves", f"{task}.png"), dpi=120)
        plt.close(fig)
    for k in range(len(tasks), nrow * ncol):
        axes[k // ncol][k % ncol].axis("off")
    handles = {}
    for a in axes.flat:
        for h, lab in zip(*a.get_legend_handles_labels()):
            handles.setdefault(lab.split(" (n=")[0], h)
    legend_cols = min(len(handles), 4 if max(map(len, handles), default=0) <= 24 else 2)  # long names: 2 columns
    big.legend(handles.values(), handles.keys(), loc="lower center", ncol=legend_cols, fontsize=8,
               bbox_to_anchor=(0.5, 0.0))
    big.suptitle(f"{args.tag}: mean over seeds, 95% bootstrap CI", fontsize=11)
    big.tight_layout(rect=(0, 0.04 + 0.03 * math.ceil(len(handles) / max(legend_cols, 1)), 1, 0.97))
    big.savefig(os.path.join(args.out, "curves.png"), dpi=120, bbox_inches="tight")  # a wide legend is not clipped
    plt.close(big)


def aggregate(scores_norm, archs, tasks, args):
    """{arch: {metric: (point, lo, hi), tasks, runs}} pooled over tasks, which every arch in archs ran."""
    res = {}
    for arch in archs if tasks else ():
        groups = [scores_norm[t][arch] for t in tasks]
        entry = {"tasks": len(groups), "runs": int(sum(len(g) for g in groups))}
        for name, stat in STATS.items():
            entry[name] = stratified_bootstrap(groups, stat, reps=args.reps, seed=args.seed)
        res[arch] = entry
    return res


def plot_aggregate(agg, colors, path, title):
    archs = list(agg)
    fig, axes = plt.subplots(1, 2, figsize=(9, 0.5 * len(archs) + 1.6), sharey=True)
    for ax, metric in zip(axes, ("IQM", "mean")):
        for i, arch in enumerate(archs):
            p, lo, hi = agg[arch][metric]
            ax.barh(i, hi - lo, left=lo, height=0.6, color=colors[arch], alpha=0.6)
            ax.plot([p, p], [i - 0.3, i + 0.3], color="k", lw=2)
        ax.set_yticks(range(len(archs)), archs)
        ax.set_title(metric)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def rl_report(args):
    runs, skipped, incomplete = load_runs(args.runs, args.tag, args.batch_tag, args.envs, args.exps,
                                          args.entropy_tag, args.include_incomplete, args.where or ())
    for s in skipped:
        print(f"skipped {s}", file=sys.stderr)
    for d in incomplete:
        print(f"{'included' if args.include_incomplete else 'left out'}: {d} (incomplete: no done.json)",
              file=sys.stderr)
    if not runs:
        hint = (f"; {len(incomplete)} incomplete run(s) listed above, --include-incomplete uses them"
                if incomplete and not args.include_incomplete else "")
        sys.exit(f"error: no complete runs with '{args.tag}' scalars under {', '.join(args.runs)}{hint}")
    os.makedirs(args.out, exist_ok=True)
    tasks = sorted({r["env"] for r in runs})
    archs = sorted({r["exp"] for r in runs})
    colors = colors_for(archs)
    agg_archs = [a for a in archs if not args.aggregate_exps or re.search(args.aggregate_exps, a)]
    if not agg_archs:
        sys.exit(f"error: --aggregate-exps {args.aggregate_exps!r} matches none of {', '.join(archs)}")
    # rliable pools one task set for all architectures: the tasks every aggregated architecture ran
    ran = {(r["env"], r["exp"]) for r in runs}
    pooled = [t for t in tasks if all((t, a) in ran for a in agg_archs)]
    left_out = [f"{t} (no runs of {', '.join(a for a in agg_archs if (t, a) not in ran)})"
                for t in tasks if t not in pooled]
    left_out += [f"architecture {a} (not matched by --aggregate-exps)" for a in archs if a not in agg_archs]
    for r in runs:
        r["final"] = final_score(r["values"], args.last_frac)
        r["mmer"] = mmer(r["steps"], r["values"], r["boundaries"], args.mmer_min_episodes, args.mmer_window)
    print(f"{len(runs)} runs, {len(tasks)} tasks, {len(archs)} architectures")
    if args.export_runs:
        os.makedirs(args.export_runs, exist_ok=True)
        for r in runs:
            export_run(os.path.join(args.export_runs, run_name(r["dir"]) + EXPORT_SUFFIX), r["scalars"])

    with open(os.path.join(args.out, "scores.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["env", "exp", "seed", "final", "mmer", "episodes", "last_step", "entropy_first", "entropy_last",
                    "run_dir"])
        for r in runs:
            w.writerow([r["env"], r["exp"], r["seed"], r["final"], r["mmer"], len(r["values"]), int(r["steps"].max()),
                        *(r["entropy"] or ("", "")), os.path.relpath(r["dir"])])

    plot_curves(runs, tasks, archs, colors, args)

    score_names = ["final", "mmer"] if args.popgym else ["final"]
    label = {"final": f"final score (mean {args.tag} over the last {args.last_frac:.0%} of episodes)",
             "mmer": "MMER (max over training of the mean episodic return of a batch)"}
    short = {"final": f"final {args.tag.split('/')[-1].replace('_', ' ')} (last {args.last_frac:.0%} of episodes)",
             "mmer": "MMER"}
    norm_note = ("scores normalised per task to [0, 1] by the min and max over all runs of that task (all "
                 "architectures) before pooling across tasks" if args.normalize == "minmax"
                 else "raw (unnormalised) scores pooled across tasks")
    md = [f"# Results: {args.tag}", "",
          f"Runs: {len(runs)} ({len(tasks)} tasks x {len(archs)} architectures) from {', '.join(args.runs)}. "
          f"Per-run final score = mean of the last {args.last_frac:.0%} of the episodes.", ""]
    partial = [r for r in runs if not r["complete"]]
    if partial:
        md += [f"Incomplete runs included (--include-incomplete; no done.json): {len(partial)}, "
               + ", ".join(f"{r['env']} {r['exp']} seed {r['seed']}" for r in partial) + ".", ""]
    summary = {"tag": args.tag, "normalization": args.normalize, "last_frac": args.last_frac, "reps": args.reps,
               "per_task": {}, "aggregate": {}, "aggregate_tasks": pooled}
    for sname in score_names:
        md += [f"## Per task: {label[sname]}", "",
               "Mean ± std over seeds [95% bootstrap CI over seeds] (n = number of seeds).", "",
               "| task | " + " | ".join(archs) + " |", "|-|" + "-|" * len(archs)]
        table = defaultdict(dict)
        for task in tasks:
            cells = []
            for arch in archs:
                v = np.array([r[sname] for r in runs if r["env"] == task and r["exp"] == arch])
                if len(v) == 0:
                    cells.append("-")
                    continue
                m, lo, hi = bootstrap_mean_ci(v[:, None], reps=args.reps, seed=args.seed)
                sd = float(v.std(ddof=1)) if len(v) > 1 else 0.0
                cells.append(f"{fmt(float(m[0]))} ± {fmt(sd)} [{fmt(float(lo[0]))}, {fmt(float(hi[0]))}] (n={len(v)})")
                table[task][arch] = {"mean": float(m[0]), "std": sd, "ci": [float(lo[0]), float(hi[0])], "n": len(v),
                                     "values": v.tolist()}
            md.append(f"| {task} | " + " | ".join(cells) + " |")
        md.append("")
        summary["per_task"][sname] = table

        raw = {t: {a: np.array([r[sname] for r in runs if r["env"] == t and r["exp"] == a]) for a in archs} for t in tasks}
        raw = {t: {a: v for a, v in d.items() if len(v)} for t, d in raw.items()}
        norm = normalize_per_task(raw, args.normalize)
        agg = aggregate(norm, agg_archs, pooled, args)
        summary["aggregate"][sname] = {a: {"IQM": list(e["IQM"]), "mean": list(e["mean"]), "tasks": e["tasks"],
                                           "runs": e["runs"]} for a, e in agg.items()}
        md += [f"## Aggregate over tasks x seeds: {label[sname]}", "",
               f"IQM and mean with 95% stratified-bootstrap CIs ({args.reps} replicates; runs resampled within each "
               f"task). Normalisation: {norm_note}. Pooled: the {len(pooled)} task(s) every aggregated architecture "
               f"ran ({', '.join(pooled) or 'none: no aggregate'}). Left out: {'; '.join(left_out) or 'nothing'}.", "",
               "| architecture | IQM [95% CI] | mean [95% CI] | tasks | runs |", "|-|-|-|-|-|"]
        for a, e in agg.items():
            md.append(f"| {a} | {fmt(e['IQM'][0])} [{fmt(e['IQM'][1])}, {fmt(e['IQM'][2])}] | "
                      f"{fmt(e['mean'][0])} [{fmt(e['mean'][1])}, {fmt(e['mean'][2])}] | {e['tasks']} | {e['runs']} |")
        md.append("")
        if args.compare and len(agg) > 1:
            mats = score_matrices({a: [norm[t][a] for t in pooled] for a in agg})
            poi = probability_of_improvement(mats, reps=args.reps, seed=args.seed)
            summary.setdefault("probability_of_improvement", {})[sname] = {f"{a} > {b}": list(v) for (a, b), v in poi.items()}
            md += [f"## Probability of improvement: {label[sname]}", "",
                   f"P(row > column): the probability that a run of the row's architecture scores higher than a run of "
                   f"the column's on the same task, averaged over the {len(pooled)} pooled task(s), with 95% "
                   f"stratified-bootstrap CIs (rliable); {mats[agg_archs[0]].shape[0]} run(s) per task and "
                   "architecture (the fewest any of them has).", "",
                   "| P(row > column) | " + " | ".join(agg) + " |", "|-|" + "-|" * len(agg)]
            for a in agg:
                md.append(f"| {a} | " + " | ".join("-" if a == b else f"{fmt(poi[a, b][0])} [{fmt(poi[a, b][1])}, "
                                                   f"{fmt(poi[a, b][2])}]" for b in agg) + " |")
            md.append("")
            plot_profiles(mats, colors, os.path.join(args.out, f"profiles_{sname}.png"),
                          f"performance profiles: {short[sname]}, {len(pooled)} tasks", args.reps, args.seed)
        agg_png = os.path.join(args.out, f"aggregate_{sname}.png")
        if not agg:  # no task that all aggregated architectures ran: no figure (and none left from an earlier call)
            if os.path.exists(agg_png):
                os.remove(agg_png)
            continue
        plot_aggregate(agg, colors, agg_png,
                       f"{short[sname]} over {len(pooled)} tasks x seeds"
                       f"{', min-max normalised per task' if args.normalize == 'minmax' else ''}; "
                       "95% stratified bootstrap CI")
    if args.popgym:
        md += ["MMER batches: the episodes that ended within one iteration (delimited by the steps of "
               f"'{args.batch_tag}'), merged until a batch holds >= {args.mmer_min_episodes} episodes.", ""]
    with open(os.path.join(args.out, "summary.md"), "w") as f:
        f.write("\n".join(md))
    with open(os.path.join(args.out, "aggregate.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print("\n".join(md))
    print(f"wrote {args.out}/summary.md, scores.csv, aggregate.json, curves.png, curves/*.png, aggregate_*.png")


# ---------------------------------------------------------------------------------------------------------------
def _name_value(text):
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--runs", nargs="+", required=True, help="directories holding CleanRL-style TensorBoard run directories "
                   "(or runs exported by --export-runs)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--tag", default="charts/episodic_return", help="scalar tag of the curves and scores")
    p.add_argument("--xlabel", default="environment steps", help="x-axis label of the curves (the TensorBoard step)")
    p.add_argument("--ylim", type=float, nargs=2, metavar=("LO", "HI"), help="y-axis range of the curves (default: "
                   "fit to the data; a diverged run can squash the others)")
    p.add_argument("--popgym", action="store_true", help="also report MMER (POPGym's metric)")
    p.add_argument("--envs", help="regex: only tasks (env ids) matching it")
    p.add_argument("--exps", help="regex: only architectures (exp names) matching it")
    p.add_argument("--points", type=int, default=100, help="points of the common step grid of the curves")
    p.add_argument("--last-frac", type=float, default=0.1, help="final score = mean of this last fraction of episodes")
    p.add_argument("--normalize", choices=("minmax", "none"), default="minmax",
                   help="per-task normalisation of the scores before pooling across tasks")
    p.add_argument("--aggregate-exps", help="regex: only these architectures in the aggregate (default: all); the "
                   "aggregate pools the tasks that all of them ran")
    p.add_argument("--batch-tag", default="charts/SPS", help="scalar logged once per iteration: MMER batch boundaries")
    p.add_argument("--mmer-min-episodes", type=int, default=10, help="MMER: merge batches until they hold this many")
    p.add_argument("--mmer-window", type=int, default=100, help="MMER without --batch-tag: episodes per batch")
    p.add_argument("--reps", type=int, default=2000, help="bootstrap replicates")
    p.add_argument("--compare", action="store_true", help="also the probability of improvement between every two "
                   "aggregated architectures and their performance profiles (rliable; profiles_*.png)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    p.add_argument("--entropy-tag", default="losses/entropy", help="scalar whose first and last logged values go "
                   "into scores.csv (entropy_first, entropy_last: did the policy stay uniform or collapse?)")
    p.add_argument("--export-runs", help="also write each run's --tag and --batch-tag scalars and the first and last "
                   "--entropy-tag value to DIR/<run name>.csv.gz; --runs DIR then gives the same scores, tables and "
                   "plots without the event files")
    p.add_argument("--include-incomplete", action="store_true", help="also use run directories without done.json "
                   "(crashed, stopped or still running runs; they are listed either way)")
    p.add_argument("--where", action="append", type=_name_value, metavar="NAME=VALUE",
                   help="only runs whose done.json args have NAME == VALUE (VALUE read as JSON if it parses, e.g. "
                   "total_timesteps=1000000); repeatable")
    args = p.parse_args(argv)
    if args.export_runs and args.include_incomplete:
        p.error("--export-runs writes complete runs only (an exported run counts as complete): "
                "drop --include-incomplete")
    if args.entropy_tag in (args.tag, args.batch_tag):
        p.error("--entropy-tag must differ from --tag and --batch-tag (only its first and last values are kept)")
    if args.ylim and not args.ylim[0] < args.ylim[1]:
        p.error("--ylim LO HI needs LO < HI")
    if not 0 < args.last_frac <= 1:
        p.error("--last-frac must be in (0, 1]")
    return args


def main(argv=None):
    rl_report(parse_args(argv))


if __name__ == "__main__":
    main()
