#!/usr/bin/env bash
# The stale-vs-fresh ablation of PPO with RTRL (Elelimy et al. 2024) on Ant-P, 1M env steps, 3 seeds: the four
# combinations of stale or fresh carries (--fresh-carries: the stored states and traces replayed with the current
# parameters after each epoch) and stale or fresh targets (--fresh-targets: values, advantages, returns recomputed).
#   ENVS="Ant-P-v5"  SETTING=ppo_rtu_rtrl_nonlinear (any RTRL setting of PPO_SETTINGS)
#   SELECTED=FILE    the step size of SETTING, as chosen by scripts/select_step_size.py (default: the script's)
# Example: SELECTED=results/mujoco_pv/step_size/selected_lr.csv scripts/stale_fresh.sh -j 2
#   plot: python scripts/plot.py --runs runs --out results/stale_fresh --envs ^Ant-P --exps '_(stale|fresh)_carries_'
source "$(dirname "${BASH_SOURCE[0]}")/sweep_lib.sh"
sweep_init stale_fresh "1 2 3" 1000000 "$@"
SETTING=${SETTING:-ppo_rtu_rtrl_nonlinear}
[[ $SETTING == *rtrl* && -n ${PPO_SETTINGS[$SETTING]:-} ]] || _sweep_die "SETTING must be an RTRL PPO setting, got '$SETTING'"
ppo_spec "$SETTING"
declare -A CONDITIONS=(
  [stale_carries_stale_targets]=""
  [fresh_carries_stale_targets]="--fresh-carries"
  [stale_carries_fresh_targets]="--fresh-targets"
  [fresh_carries_fresh_targets]="--fresh-carries --fresh-targets"
)
for seed in $SEEDS; do
  for env in ${ENVS:-Ant-P-v5}; do
    for cond in stale_carries_stale_targets fresh_carries_stale_targets stale_carries_fresh_targets fresh_carries_fresh_targets; do
      sweep_add "$env" "${SETTING}_$cond" "$seed" "${SPEC[0]}" --env-id "$env" --seed "$seed" --total-timesteps "$STEPS" \
        --exp-name "${SETTING}_$cond" "${SPEC[@]:1}" ${CONDITIONS[$cond]}
    done
  done
done
sweep_finish
