#!/usr/bin/env bash
# PPO on partially observable MuJoCo: HalfCheetah and Hopper, -P (positions only) and -V (velocities
# only), 1M env steps, 3 seeds; the five recurrent architectures of the RTU paper plus the memoryless MLP.
#   BASES="HalfCheetah Hopper"  robots; EXTRA_BASES="Ant Walker2d" adds the optional ones
#   ENVS="..."                  explicit env ids (overrides BASES / EXTRA_BASES)
#   ARCHS="..."                 settings (default: ppo_rtu_rtrl_nonlinear ppo_rtu_rtrl_linear ppo_lru_rtrl
#                               ppo_gru_tbptt ppo_lru_tbptt ppo_mlp)
# Example: scripts/mujoco_pv.sh -j 2
#   plot: python scripts/plot.py --runs runs --out results/mujoco_pv --envs='-[PV]-v5$' --exps '^ppo_'
source "$(dirname "${BASH_SOURCE[0]}")/sweep_lib.sh"
sweep_init mujoco_pv "1 2 3" 1000000 "$@"
ENVS=${ENVS:-$(for b in ${BASES:-HalfCheetah Hopper} ${EXTRA_BASES:-}; do echo "$b-P-v5 $b-V-v5"; done)}
ppo_sweep "$ENVS" "${ARCHS:-$PPO_RECURRENT ppo_mlp}"
sweep_finish
