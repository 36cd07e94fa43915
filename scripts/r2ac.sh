#!/usr/bin/env bash
# R2AC + eLSTM: exact RTRL vs truncated BPTT, segments of 5 and 50 steps, on three POPGym tasks and
# HalfCheetah-P, 1M env steps, 3 seeds; plus the copy task (L = 50) trained online by RTRL (and by BPTT).
#   ENVS="..." (empty: the copy task only)  METHODS="rtrl tbptt"  SEGMENT_LENS="5 50"  (settings: r2ac_<method>_M<M>)
#   COPY_METHODS="rtrl bptt" (empty: no copy task)  COPY_LEN=50  COPY_ARGS="--max-seconds 36000" (extra copy flags)
# Example: scripts/r2ac.sh -j 2      plot: python scripts/plot.py --runs runs --out results/r2ac --exps ^r2ac_ --popgym
#          python scripts/plot.py --runs runs --out results/copy_task --envs ^copy --tag copy/val_seq_acc --xlabel sequences
source "$(dirname "${BASH_SOURCE[0]}")/sweep_lib.sh"
sweep_init r2ac "1 2 3" 1000000 "$@"
for seed in $SEEDS; do
  for env in ${ENVS-popgym-RepeatFirstEasy-v0 popgym-CountRecallEasy-v0 popgym-AutoencodeEasy-v0 HalfCheetah-P-v5}; do
    for method in ${METHODS:-rtrl tbptt}; do
      for M in ${SEGMENT_LENS:-5 50}; do
        sweep_add "$env" "r2ac_${method}_M$M" "$seed" r2ac_elstm --env-id "$env" --seed "$seed" \
          --total-timesteps "$STEPS" --grad-method "$method" --segment-len "$M" --exp-name "r2ac_${method}_M$M"
      done
    done
  done
  for method in ${COPY_METHODS-rtrl bptt}; do
    sweep_add "copy${COPY_LEN:-50}" "copy_$method" "$seed" copy_task_elstm --seed "$seed" --grad-method "$method" \
      --max-len "${COPY_LEN:-50}" --exp-name "copy_$method" ${COPY_ARGS:-}
  done
done
sweep_finish
