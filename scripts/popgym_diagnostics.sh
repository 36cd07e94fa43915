#!/usr/bin/env bash
# PPO on popgym-RepeatFirstEasy-v0: which input or normalisation lets a setting learn the first card's suit?
# 500k env steps, seeds 1 2. Each setting states its input and normalisation in full:
#   *_raw_pooled  the env's own observation only (the card), observations and rewards normalised as in the official
#                 RTU code (one mean/variance pooled over all features; rewards divided by the running std of the
#                 discounted return): the official configuration, and the scripts' POPGym default
#   *_pooled      the same normalisation, with POPGym baselines' input (the card, previous action, first-step flag)
#   the others    POPGym baselines' input, not normalised (the configuration of results/popgym)
#   *_copy        the observation plus a copy of it that is zero after the first step (the cue as its own input)
#   *_prevreward  the observation plus the previous reward (then a memoryless policy can repeat a rewarded action)
#   mlp           the memoryless MLP on the baselines input (can a policy without memory solve it?)
# Example: scripts/popgym_diagnostics.sh -j 2
#   plot: python scripts/plot.py --runs runs --out results/popgym/diagnostics --envs ^popgym-RepeatFirst --exps . --popgym
source "$(dirname "${BASH_SOURCE[0]}")/sweep_lib.sh"
sweep_init popgym_diagnostics "1 2" 500000 "$@"
declare -A DIAGNOSTICS=(
  [mlp]="ppo_mlp --popgym-obs baselines --no-normalize-env"
  [mlp_prevreward]="ppo_mlp --popgym-obs baselines --no-normalize-env --prev-reward"
  [rtu_nonlinear_copy]="ppo_rtu_rtrl --rtu-variant nonlinear --popgym-obs baselines --no-normalize-env --first-step-copy"
  [rtu_nonlinear_pooled]="ppo_rtu_rtrl --rtu-variant nonlinear --popgym-obs baselines --obs-norm pooled"
  [rtu_nonlinear_raw_pooled]="ppo_rtu_rtrl --rtu-variant nonlinear --popgym-obs raw --obs-norm pooled"
  [gru_raw_pooled]="ppo_gru_tbptt --popgym-obs raw --obs-norm pooled"
  [mlp_raw_pooled]="ppo_mlp --popgym-obs raw --obs-norm pooled"
  [rtu_nonlinear_raw_pooled_copy]="ppo_rtu_rtrl --rtu-variant nonlinear --popgym-obs raw --obs-norm pooled --first-step-copy"
)
ENV=popgym-RepeatFirstEasy-v0
for seed in $SEEDS; do
  for setting in ${SETTINGS:-mlp rtu_nonlinear_copy rtu_nonlinear_raw_pooled gru_raw_pooled mlp_raw_pooled rtu_nonlinear_raw_pooled_copy rtu_nonlinear_pooled mlp_prevreward}; do
    [[ -n ${DIAGNOSTICS[$setting]:-} ]] || _sweep_die "unknown setting '$setting' (known: ${!DIAGNOSTICS[*]})"
    spec=(${DIAGNOSTICS[$setting]})
    sweep_add "$ENV" "$setting" "$seed" "${spec[0]}" --env-id "$ENV" --seed "$seed" --total-timesteps "$STEPS" \
      --exp-name "$setting" "${spec[@]:1}"
  done
done
sweep_finish
