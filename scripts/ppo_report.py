"""Figure and numbers of a sanity run of an RL script, read from its TensorBoard event files or its csv.gz export (no
hand-written numbers).

Usage: python scripts/ppo_report.py --run RUN --out PREFIX [--random-return R]
                                    [--command "CMD" --commit SHA [--script-sha256 SHA] [--note TEXT ...]]
Writes PREFIX.png (episodic return: every episode, and the mean per iteration) and prints the numbers below; with
--command and --commit also PREFIX.md: the command, commit, env steps, seed and the numbers.

summary(RUN) returns the numbers (scripts/results_md.py puts them in results/sanity/README.md). It reads any run that
logs charts/episodic_return and, once per iteration at the iteration's last env step, charts/SPS: the PPO scripts
(algos/ppo_*.py) and algos/r2ac_elstm.py.

Numbers: env steps (the last iteration's), episodes; the mean return of the episodes that ended in the first
iteration that has any; the final score and the MMER as scripts/plot.py computes them (the mean return of the last
10% of the episodes; POPGym's metric, the max over iterations of the mean return of the episodes that ended in the
iteration); the first and last logged policy entropy (losses/entropy); steady SPS (env steps per second of rollout +
update, averaged over iterations after the first) and the mean rollout/update time per iteration; the largest
debug/first_minibatch_ratio_error where the script logs it (must be ~0: the first minibatch re-runs the rollout's
parameters).
"""
import argparse
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from plot import final_score, load_scalars, mmer, parse_run_name, run_name  # noqa: E402


def summary(run):
    """The numbers of one run (a run directory or its export; named env__exp__seed__time) as a dict."""
    scalar = load_scalars(run)
    parsed = parse_run_name(run_name(run))
    if parsed is None or "charts/episodic_return" not in scalar or "charts/SPS" not in scalar:
        sys.exit(f"error: {run} is not a run named env__exp__seed__time with charts/episodic_return and charts/SPS")
    ep_steps, ep_returns = scalar["charts/episodic_return"]
    iter_steps = scalar["charts/SPS"][0]  # logged once per iteration, at the iteration's last env step
    iteration = np.searchsorted(iter_steps, ep_steps)  # the iteration in which each episode ended
    rollout, update = (scalar[t][1] if t in scalar else None for t in ("charts/rollout_time", "charts/update_time"))
    entropy = scalar.get("losses/entropy")
    ratio = scalar.get("debug/first_minibatch_ratio_error")
    env, exp, seed = parsed
    return dict(
        env=env, exp=exp, seed=seed, steps=int(iter_steps[-1]), iterations=len(iter_steps),
        steps_per_iteration=int(iter_steps[0]), episodes=len(ep_returns), episode_steps=ep_steps,
        episode_returns=ep_returns, iteration_steps=iter_steps,
        first=float(ep_returns[iteration == iteration[0]].mean()), final=final_score(ep_returns),
        mmer=mmer(ep_steps, ep_returns, iter_steps),
        entropy=(float(entropy[1][0]), float(entropy[1][-1])) if entropy is not None else None,
        sps=(float(iter_steps[0] / np.mean(rollout[1:] + update[1:])) if rollout is not None and update is not None
             and len(rollout) > 1 else None),
        rollout_time=float(rollout[1:].mean()) if rollout is not None and len(rollout) > 1 else None,
        update_time=float(update[1:].mean()) if update is not None and len(update) > 1 else None,
        ratio_error=float(ratio[1].max()) if ratio is not None else None)


def table(s):
    """The numbers of summary() as the rows of a markdown table."""
    rows = [("episodes", s["episodes"]), ("mean return, first iteration with episodes", f"{s['first']:.4f}"),
            ("final score (mean return of the last 10% of episodes)", f"{s['final']:.4f}"),
            ("MMER (max over iterations of the mean return of the episodes ended in the iteration)",
             f"{s['mmer']:.4f}")]
    if s["entropy"] is not None:
        rows.append(("policy entropy, first -> last logged", f"{s['entropy'][0]:.3f} -> {s['entropy'][1]:.3f}"))
    if s["sps"] is not None:
        rows += [("steady SPS (rollout + update, iterations 2..)", f"{s['sps']:.0f}"),
                 ("mean rollout time per iteration (s)", f"{s['rollout_time']:.2f}"),
                 ("mean update time per iteration (s)", f"{s['update_time']:.2f}")]
    if s["ratio_error"] is not None:
        rows.append(("max debug/first_minibatch_ratio_error", f"{s['ratio_error']:.2e}"))
    return ["| metric | value |", "|-|-|"] + [f"| {k} | {v} |" for k, v in rows]


def figure(s, path, random_return=None):
    steps, returns, iters = s["episode_steps"], s["episode_returns"], s["iteration_steps"]
    iteration = np.searchsorted(iters, steps)
    ids = np.unique(iteration)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, returns, ".", ms=2, alpha=0.3, color="C0", label="episodes")
    ax.plot(iters[np.minimum(ids, len(iters) - 1)], [returns[iteration == i].mean() for i in ids], color="C1",
            label="mean per iteration")
    if random_return is not None:
        ax.axhline(random_return, color="gray", linestyle="--", label=f"random policy ({random_return:g})")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("episodic return")
    ax.set_title(f"SANITY RUN: {s['exp']} on {s['env']}, seed {s['seed']}", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True, help="a run directory or its csv.gz export")
    p.add_argument("--out", required=True, help="PREFIX: writes PREFIX.png (and PREFIX.md with --command, --commit)")
    p.add_argument("--command", help="the command that made the run")
    p.add_argument("--commit", help="the git commit the run ran at")
    p.add_argument("--script-sha256", help="sha256 of the script when it was not committed at --commit")
    p.add_argument("--random-return", type=float, help="a uniform random policy's return: a line in the figure")
    p.add_argument("--note", action="append", default=[], help="extra bullet line(s) for the markdown")
    opts = p.parse_args(argv)
    if (opts.command is None) != (opts.commit is None):
        p.error("--command and --commit go together")
    s = summary(opts.run)
    figure(s, opts.out + ".png", opts.random_return)
    lines = table(s)
    if opts.command is not None:
        lines = [
            f"# Sanity run: {s['exp']} on {s['env']}, seed {s['seed']}",
            "",
            f"- command: `{opts.command}`",
            f"- commit: {opts.commit}"
            + (f" ({s['exp']}.py was uncommitted; its sha256: {opts.script_sha256})" if opts.script_sha256 else ""),
            f"- env steps: {s['steps']} ({s['iterations']} iterations of {s['steps_per_iteration']}); seed {s['seed']}",
            *([f"- random-policy return: {opts.random_return:g}"] if opts.random_return is not None else []),
            *[f"- {note}" for note in opts.note],
            "",
            *lines,
            "",
            f"![episodic return]({os.path.basename(opts.out)}.png)",
        ]
        with open(opts.out + ".md", "w") as f:
            f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
