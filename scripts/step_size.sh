#!/usr/bin/env bash
# PPO step-size selection, the same for every architecture: each setting at each Adam step size of LRS on a declared
# subset of a benchmark family's tasks, at reduced length, on selection seeds disjoint from the reported ones (1 2 3).
#   FAMILY=mujoco   (default) tasks HalfCheetah-P-v5 Hopper-V-v5 (a position-only and a velocity-only task, two robots)
#   FAMILY=popgym   tasks popgym-RepeatPreviousEasy-v0 popgym-CountRecallEasy-v0
#   FAMILY=reacher  task  Reacher-POMDP-v5
#   ENVS="..."      other tasks;  ARCHS="..."  settings (default: the five recurrent ones and ppo_mlp)
#   LRS="3e-5 1e-4 3e-4 1e-3"
# Each run's setting (--exp-name) is SETTING_lrLR. Then select (criterion: scripts/select_step_size.py) and run the
# family's comparison at the selected step sizes:
#   FAMILY=mujoco scripts/step_size.sh -j 2 --runs-dir runs_lr
#   python scripts/select_step_size.py --runs runs_lr --envs '-[PV]-v5$' --out results/mujoco_pv/step_size
#   SELECTED=results/mujoco_pv/step_size/selected_lr.csv scripts/mujoco_pv.sh -j 2
# If select_step_size.py warns that a setting picked the grid's edge, run every setting at the next step size
# (e.g. LRS="3e-3") and select again: the same grid for every architecture.
source "$(dirname "${BASH_SOURCE[0]}")/sweep_lib.sh"
sweep_init step_size "101" 300000 "$@"
case ${FAMILY:-mujoco} in
  mujoco) default_envs="HalfCheetah-P-v5 Hopper-V-v5" ;;
  popgym) default_envs="popgym-RepeatPreviousEasy-v0 popgym-CountRecallEasy-v0" ;;
  reacher) default_envs="Reacher-POMDP-v5" ;;
  *) _sweep_die "FAMILY must be mujoco, popgym or reacher, got '${FAMILY:-}'" ;;
esac
[[ -z ${SELECTED:-} ]] || _sweep_die "SELECTED does not apply here: step-size selection runs every setting at every step size of LRS"
for setting in ${ARCHS:-$PPO_RECURRENT ppo_mlp}; do ppo_spec "$setting"; done
for seed in $SEEDS; do
  for env in ${ENVS:-$default_envs}; do
    for setting in ${ARCHS:-$PPO_RECURRENT ppo_mlp}; do
      for lr in ${LRS:-3e-5 1e-4 3e-4 1e-3}; do
        ppo_spec "$setting"
        sweep_add "$env" "${setting}_lr$lr" "$seed" "${SPEC[0]}" --env-id "$env" --seed "$seed" --total-timesteps \
          "$STEPS" --exp-name "${setting}_lr$lr" --learning-rate "$lr" "${SPEC[@]:1}"
      done
    done
  done
done
sweep_finish
