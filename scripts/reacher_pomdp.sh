#!/usr/bin/env bash
# PPO on Reacher-POMDP-v5 (the target is shown at the first step only), 1M env steps, 3 seeds, the five
# recurrent architectures and the memoryless MLP (the floor).   ARCHS="..."  settings
# Example: scripts/reacher_pomdp.sh -j 2
#   plot: python scripts/plot.py --runs runs --out results/reacher_pomdp --envs ^Reacher-POMDP --exps ^ppo_
source "$(dirname "${BASH_SOURCE[0]}")/sweep_lib.sh"
sweep_init reacher_pomdp "1 2 3" 1000000 "$@"
ppo_sweep "${ENVS:-Reacher-POMDP-v5}" "${ARCHS:-$PPO_RECURRENT ppo_mlp}"
sweep_finish
