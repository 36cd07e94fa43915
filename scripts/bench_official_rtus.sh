#!/usr/bin/env bash
# Measures the official RTU code (JAX/Flax on Brax, github esraaelelimy/rtus) at the paper's PPO config, so that
# our scripts can be timed beside it, back to back. It changes nothing of the official code but two
# timestamp prints in a scratch copy.
#
# usage: scripts/bench_official_rtus.sh RTUS_GIT_DIR [env_name] [rec_fn] [iterations]
#   RTUS_GIT_DIR  a git mirror of github esraaelelimy/rtus, or an exported tree of it
#   env_name      cheetah_p (default), ant_p, hopper_p, walker_p, cheetah_v, ...
#   rec_fn        non_linear_rtu (default) or linear_rtu
#   iterations    2048-step iterations to run (default 8; the first two are excluded: JIT)
# prints: one line "official <rec_fn> <env_name>: steady SPS <x> (<s> s per 2048-step iteration), JIT <j> s"
# The venv (jax 0.4.30 stack, ~3 GB) is cached at ${RTUS_VENV:-$HOME/.cache/rtus-jax-venv}.
# Our PPO and Brax differ in the simulator: compare speeds as ratios measured back to back, and say so.
set -euo pipefail
src=$1; env=${2:-cheetah_p}; rec=${3:-non_linear_rtu}; iters=${4:-8}
venv=${RTUS_VENV:-$HOME/.cache/rtus-jax-venv}
if [[ ! -x $venv/bin/python ]]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q jax==0.4.30 jaxlib==0.4.30 flax==0.8.5 optax==0.2.3 chex==0.1.86 distrax==0.1.5 \
    tensorflow-probability==0.24.0 brax==0.10.5 mujoco==3.1.6 mujoco-mjx==3.1.6 gymnax==0.0.8 "numpy<2" wandb pyyaml \
    >"$venv.log" 2>&1 || { echo "pip install failed (see $venv.log)"; rm -rf "$venv"; exit 1; }
fi
work=$(mktemp -d)
if [[ -d $src/src ]]; then cp -r "$src"/. "$work"; else git --git-dir="$src" archive HEAD | tar -x -C "$work"; fi
cd "$work"
python3 - "$env" "$rec" "$iters" <<'PYEOF'
import sys, re
env, rec, iters = sys.argv[1], sys.argv[2], int(sys.argv[3])
p = "src/algorithms/RealTimePPO.py"; s = open(p).read()
s = s.replace("def wandb_ppo_logging(info_and_loss):\n",
              "def wandb_ppo_logging(info_and_loss):\n    import time as _t; print('ITER_DONE', _t.perf_counter(), flush=True)\n", 1)
open(p, "w").write(s)
p = "src/experiments/rtrl_ppo_experiment.py"; s = open(p).read()
s = s.replace("    start = timer()\n", "    start = timer()\n    import time as _t; print('START', _t.perf_counter(), flush=True)\n", 1)
open(p, "w").write(s)
c = open("configs/pobrax_config_rtu_rtrl.yaml").read()
c = re.sub(r"env_name: *\S+", f"env_name: {env}", c, count=1)
c = re.sub(r"total_steps: *\d+", f"total_steps: {2048 * iters}", c, count=1)
c = re.sub(r"rec_fn: *\S+", f"rec_fn: {rec}", c, count=1)
open("configs/anchor.yaml", "w").write(c)
PYEOF
WANDB_MODE=disabled OMP_NUM_THREADS=1 XLA_FLAGS="--xla_cpu_multi_thread_eigen=false" \
  "$venv/bin/python" src/experiments/rtrl_ppo_experiment.py --config_file configs/anchor.yaml >out.txt 2>&1 \
  || { echo "official run failed: $(tail -2 out.txt)"; exit 1; }
python3 - "$env" "$rec" out.txt <<'PYEOF'
import re, sys, statistics
env, rec, f = sys.argv[1:4]; txt = open(f).read()
start = float(re.search(r"START ([\d.]+)", txt).group(1))
t = [float(x) for x in re.findall(r"ITER_DONE ([\d.]+)", txt)]
d = [b - a for a, b in zip(t, t[1:])][1:]
med = statistics.median(d)
print(f"official {rec} {env}: steady SPS {2048 / med:.0f} ({med:.2f} s per 2048-step iteration), JIT {t[0] - start - med:.0f} s")
PYEOF
rm -rf "$work"
