#!/usr/bin/env bash
# R2AC on popgym-RepeatPreviousEasy-v0 (name the card shown 4 steps ago): which part of the official learner's setup
# makes the eLSTM learn a short memory? 1M env steps, seeds 1 2, segments of M = 50 steps, each setting in full:
#   *_official     the defaults: segment-truncated encoder gradient, the clipped last reward as a core input
#   *_onestep      the encoder's one-step gradient and no reward input (the script before it matched the official learner)
#   *_rewnorm      the defaults with observations and rewards normalised (RepeatPreviousEasy's rewards are +-1/48 per step)
#   *_rewx51       the defaults with every reward multiplied by 51 (about +-1 per step, the scale of the paper's DMLab rewards)
#   *_eps1e-5      the defaults with RMSProp's eps at 1e-5 instead of 0.01 (POPGym's gradients are far below 0.01)
#   *_lr6e-3       the defaults with a 10x step size (1M steps are only 625 updates of 32 x 50 steps)
#   *_lr2e-2       the defaults with a 33x step size
#   *_lr6e-3_M5    both: the 10x step size and M = 5 (10x more updates)
#   *_fb2          the defaults with the forget-gate bias raised by 2 at init (official: 0, f ~ 0.5: the memory
#                  halves every step; +2: f ~ 0.88)
#   *_lr6e-3_fb2   both: the 10x step size and the forget bias +2
#   *_M5           segments of M = 5 steps: 10x more updates per env step (the later --segment-len wins)
#   *_rewx51_M5    both: rewards x51 and M = 5
#   rtrl_* / tbptt_*  exact RTRL or BPTT truncated at the segment start; every other setting is shared
# Example: scripts/r2ac_diagnostics.sh -j 2
#   plot: python scripts/plot.py --runs runs --out results/r2ac/diagnostics --exps . --popgym
source "$(dirname "${BASH_SOURCE[0]}")/sweep_lib.sh"
sweep_init r2ac_diagnostics "1 2" 1000000 "$@"
declare -A DIAGNOSTICS=(
  [rtrl_official]="--grad-method rtrl"
  [tbptt_official]="--grad-method tbptt"
  [rtrl_onestep]="--grad-method rtrl --encoder-grad one-step --no-reward-input"
  [rtrl_rewnorm]="--grad-method rtrl --normalize-env True"
  [tbptt_rewnorm]="--grad-method tbptt --normalize-env True"
  [rtrl_rewx51]="--grad-method rtrl --reward-scale 51"
  [tbptt_rewx51]="--grad-method tbptt --reward-scale 51"
  [rtrl_eps1e-5]="--grad-method rtrl --rmsprop-eps 1e-5"
  [tbptt_eps1e-5]="--grad-method tbptt --rmsprop-eps 1e-5"
  [rtrl_lr6e-3]="--grad-method rtrl --learning-rate 6e-3"
  [tbptt_lr6e-3]="--grad-method tbptt --learning-rate 6e-3"
  [rtrl_lr2e-2]="--grad-method rtrl --learning-rate 2e-2"
  [tbptt_lr2e-2]="--grad-method tbptt --learning-rate 2e-2"
  [rtrl_lr6e-3_M5]="--grad-method rtrl --learning-rate 6e-3 --segment-len 5"
  [tbptt_lr6e-3_M5]="--grad-method tbptt --learning-rate 6e-3 --segment-len 5"
  [rtrl_fb2]="--grad-method rtrl --forget-bias 2"
  [tbptt_fb2]="--grad-method tbptt --forget-bias 2"
  [rtrl_lr6e-3_fb2]="--grad-method rtrl --learning-rate 6e-3 --forget-bias 2"
  [tbptt_lr6e-3_fb2]="--grad-method tbptt --learning-rate 6e-3 --forget-bias 2"
  [rtrl_M5]="--grad-method rtrl --segment-len 5"
  [tbptt_M5]="--grad-method tbptt --segment-len 5"
  [rtrl_rewx51_M5]="--grad-method rtrl --reward-scale 51 --segment-len 5"
  [tbptt_rewx51_M5]="--grad-method tbptt --reward-scale 51 --segment-len 5"
)
ENV=popgym-RepeatPreviousEasy-v0
for seed in $SEEDS; do
  for setting in ${SETTINGS:-rtrl_official tbptt_official rtrl_onestep rtrl_rewnorm tbptt_rewnorm rtrl_rewx51 tbptt_rewx51 rtrl_eps1e-5 tbptt_eps1e-5 rtrl_lr6e-3 tbptt_lr6e-3 rtrl_lr2e-2 tbptt_lr2e-2 rtrl_lr6e-3_M5 tbptt_lr6e-3_M5 rtrl_fb2 tbptt_fb2 rtrl_lr6e-3_fb2 tbptt_lr6e-3_fb2 rtrl_M5 tbptt_M5 rtrl_rewx51_M5 tbptt_rewx51_M5}; do
    [[ -n ${DIAGNOSTICS[$setting]:-} ]] || _sweep_die "unknown setting '$setting' (known: ${!DIAGNOSTICS[*]})"
    sweep_add "$ENV" "r2ac_$setting" "$seed" r2ac_elstm --env-id "$ENV" --seed "$seed" --total-timesteps "$STEPS" \
      --segment-len 50 --exp-name "r2ac_$setting" ${DIAGNOSTICS[$setting]}
  done
done
sweep_finish
