#!/usr/bin/env bash
# Trace conditioning (online TD(lambda) prediction): exact RTRL on restricted cells (RTU, online LRU) against T-BPTT
# (GRU, LRU) and against exact and approximate RTRL on general cells (dense tanh RNN: exact RTRL, UORO, KF-RTRL,
# SnAp-1; GRU: SnAp-1), with the Adam step size chosen the same way for every learner, in two phases:
#   PHASE=select  every learner at every step size of LRS, on the selection seeds (default: 101)
#   PHASE=report  every learner at its selected step size, read from SELECTED (a CSV written by
#                 `python scripts/approx_rtrl_report.py select`), on the report seeds (default: 1 2 3 4 5)
# Grid (environment variables):
#   ISIS="10 20"
#   LEARNERS="rtu_nonlinear rtu_linear lru_rtrl gru_tbptt:1 gru_tbptt:4 gru_tbptt:16 lru_tbptt:4 rnn_rtrl rnn_uoro
#             rnn_kfrtrl rnn_snap1 gru_snap1"   (ARCH or ARCH:T for the T-BPTT learners)
#   LRS="1e-4 3e-4 1e-3 3e-3"   (PHASE=select only)
#   BUDGETS="-"  size budgets: "-" the script's default (a 64-unit RTU's parameters), N a recurrent-parameter budget
#                (--param-budget), FN a FLOPs-per-step budget (--flops-budget: equal compute), e.g. BUDGETS="- F56591"
#   SELECTED=results/approx_rtrl/selected_lr.csv   (PHASE=report only)
#   LR_BUDGET=B  (PHASE=report only) every budget runs at the step size selected at budget B (e.g. "-"): a cheaper
#                protocol than a selection per budget; pass the same --lr-budget to approx_rtrl_report.py report
#   SUMMARIES=DIR  per-run JSON summaries, named by run ID (default RUNS_DIR/summaries/approx_rtrl_PHASE)
# Example: PHASE=select scripts/approx_rtrl.sh --steps 50000 -j 1
#          python scripts/approx_rtrl_report.py select RUNS/summaries/approx_rtrl_select --out results/approx_rtrl
#          PHASE=report scripts/approx_rtrl.sh --steps 50000 -j 1
#          python scripts/approx_rtrl_report.py report RUNS/summaries/approx_rtrl_report --out results/approx_rtrl
source "$(dirname "${BASH_SOURCE[0]}")/sweep_lib.sh"
PHASE=${PHASE:-select}
case $PHASE in
  select) default_seeds="101" ;;
  report) default_seeds="1 2 3 4 5" ;;
  *) echo "error: PHASE must be select or report, got '$PHASE'" >&2; exit 2 ;;
esac
sweep_init "approx_rtrl_$PHASE" "$default_seeds" 50000 "$@"
SUMMARIES=${SUMMARIES:-$RUNS_DIR/summaries/approx_rtrl_$PHASE}
LEARNERS=${LEARNERS:-rtu_nonlinear rtu_linear lru_rtrl gru_tbptt:1 gru_tbptt:4 gru_tbptt:16 lru_tbptt:4 rnn_rtrl \
rnn_uoro rnn_kfrtrl rnn_snap1 gru_snap1}
declare -A SELECTED_LR=()
if [[ $PHASE == report ]]; then
  SELECTED=${SELECTED:-$SWEEP_ROOT/results/approx_rtrl/selected_lr.csv}
  [[ -f $SELECTED ]] || { echo "error: no selected step sizes: $SELECTED (run approx_rtrl_report.py select)" >&2; exit 2; }
  # columns: isi,arch,tbptt_len,budget,learning_rate,... (tbptt_len and budget: "-" when not set)
  while IFS=, read -r isi arch T P lr _; do
    [[ $isi == isi ]] || SELECTED_LR[$isi/$arch/$T/$P]=$lr
  done <"$SELECTED"
fi
for seed in $SEEDS; do
  for isi in ${ISIS:-10 20}; do
    for learner in $LEARNERS; do
      arch=${learner%%:*} T=-
      [[ $learner != *:* ]] || T=${learner#*:}
      for P in ${BUDGETS:--}; do
        if [[ $PHASE == select ]]; then
          lrs=${LRS:-1e-4 3e-4 1e-3 3e-3}
        else
          lrs=${SELECTED_LR[$isi/$arch/$T/${LR_BUDGET:-$P}]:-}
          [[ -n $lrs ]] || { echo "error: no selected step size for ISI $isi, $arch, T $T, budget ${LR_BUDGET:-$P} in $SELECTED" >&2; exit 2; }
        fi
        for lr in $lrs; do
          setting=td_$arch opt=(--learning-rate "$lr")
          [[ $T == - ]] || { setting+=_T$T; opt+=(--tbptt-len "$T"); }
          td_budget "$P"; setting+=$BUDGET_TAG; opt+=("${BUDGET_OPT[@]}")
          setting+=_lr$lr
          sweep_add "TraceConditioning-ISI$isi" "$setting" "$seed" td_animal_learning --isi "$isi" --arch "$arch" \
            --seed "$seed" --total-steps "$STEPS" --exp-name "$setting" --summary-path "$SUMMARIES/@KEY@.json" "${opt[@]}"
        done
      done
    done
  done
done
sweep_finish
