#!/usr/bin/env bash
# Online TD(lambda) prediction on trace conditioning: ISI 10 and 20; RTU (non-linear, linear) and the
# online LRU by RTRL, GRU and LRU by T-BPTT at several truncation lengths T; 5 seeds; STEPS online steps per run.
#   ISIS="10 20"  ARCHS="rtu_nonlinear rtu_linear lru_rtrl gru_tbptt lru_tbptt"  TBPTT_LENS="1 2 4 8 16 32"
#   BUDGETS="..."  size budgets (default "-": the script's default size): N, a recurrent-parameter budget
#                  (--param-budget) for the MSRE-vs-parameters study, or FN, a FLOPs-per-step budget (--flops-budget:
#                  each learner at the largest size that fits) for the equal-compute study, e.g. F56591 (a 64-unit
#                  non-linear RTU's)
#   SUMMARIES=DIR  per-run JSON summaries, named by run ID (default RUNS_DIR/summaries/trace_conditioning)
# Example: scripts/trace_conditioning.sh -j 2
#          python scripts/trace_conditioning_report.py runs/summaries/trace_conditioning --out results/trace_conditioning
source "$(dirname "${BASH_SOURCE[0]}")/sweep_lib.sh"
sweep_init trace_conditioning "1 2 3 4 5" 100000 "$@"
SUMMARIES=${SUMMARIES:-$RUNS_DIR/summaries/trace_conditioning}
for seed in $SEEDS; do
  for isi in ${ISIS:-10 20}; do
    for arch in ${ARCHS:-rtu_nonlinear rtu_linear lru_rtrl gru_tbptt lru_tbptt}; do
      lens=-; [[ $arch != *tbptt ]] || lens=${TBPTT_LENS:-1 2 4 8 16 32}
      for T in $lens; do
        for P in ${BUDGETS:--}; do
          setting=td_$arch opt=()
          [[ $T == - ]] || { setting+=_T$T; opt+=(--tbptt-len "$T"); }
          td_budget "$P"; setting+=$BUDGET_TAG; opt+=("${BUDGET_OPT[@]}")
          sweep_add "TraceConditioning-ISI$isi" "$setting" "$seed" td_animal_learning --isi "$isi" --arch "$arch" \
            --seed "$seed" --total-steps "$STEPS" --exp-name "$setting" --summary-path "$SUMMARIES/@KEY@.json" "${opt[@]}"
        done
      done
    done
  done
done
sweep_finish
