#!/usr/bin/env bash
# PPO on partially observable MuJoCo, the RTU paper's eight tasks: Ant, HalfCheetah, Hopper and Walker2d, each -P
# (positions only) and -V (velocities only), 1M env steps, 3 seeds; the five recurrent architectures of the RTU paper
# plus the memoryless MLP.
#   BASES="Ant HalfCheetah Hopper Walker2d"  robots (e.g. BASES="HalfCheetah Hopper" for four of the tasks)
#   ENVS="..."                  explicit env ids (overrides BASES)
#   ARCHS="..."                 settings (default: ppo_rtu_rtrl_nonlinear ppo_rtu_rtrl_linear ppo_lru_rtrl
#                               ppo_gru_tbptt ppo_lru_tbptt ppo_mlp)
#   SELECTED=FILE               each setting's step size, as chosen by scripts/select_step_size.py
# Example: SELECTED=results/mujoco_pv/step_size/selected_lr.csv scripts/mujoco_pv.sh -j 2
#   plot: python scripts/plot.py --runs runs --out results/mujoco_pv --envs='-[PV]-v5$' --exps '^ppo_'
source "$(dirname "${BASH_SOURCE[0]}")/sweep_lib.sh"
sweep_init mujoco_pv "1 2 3" 1000000 "$@"
ENVS=${ENVS:-$(for b in ${BASES:-Ant HalfCheetah Hopper Walker2d}; do echo "$b-P-v5 $b-V-v5"; done)}
ppo_sweep "$ENVS" "${ARCHS:-$PPO_RECURRENT ppo_mlp}"
sweep_finish
