#!/usr/bin/env bash
# Shared machinery of the sweep scripts (scripts/trace_conditioning.sh, mujoco_pv.sh, popgym.sh, reacher_pomdp.sh,
# r2ac.sh). A sweep script only declares its grid: it sources this file, calls `sweep_init`, then `sweep_add` (or
# `ppo_sweep`) once per run, then `sweep_finish`.
#
# Options of every sweep (flags win over the environment variables in brackets):
#   -n, --dry-run        print the commands that would run (one per line) and exit; nothing is executed
#   -j, --workers N      run N commands in parallel on this machine                      [WORKERS, default 2]
#   --slurm FILE         write a SLURM array job FILE (+ FILE.commands, one command per line) instead of running
#   --seeds "1 2 3"      seeds                                                           [SEEDS, default: per sweep]
#   --steps N            env steps per run (--total-timesteps / --total-steps)           [STEPS, default: per sweep]
#   --runs-dir DIR       where finished runs go                                          [RUNS_DIR, default <repo>/runs]
#   --filter REGEX       only the runs whose key (ENV__SETTING__SEED) matches REGEX      [FILTER]
#   -- ARGS...           extra arguments appended to every command (e.g. -- --cuda False)
#   PYTHON=...           interpreter                                                     [default: python]
#
# Each run has a key ENV__SETTING__SEED (the run-directory name of CleanRL without the time stamp; SETTING is also
# passed as --exp-name, so TensorBoard and scripts/plot.py tell the settings apart). Resuming: a run that finished
# leaves the marker RUNS_DIR/.done/KEY, and every later invocation of the sweep skips it, so a sweep can be stopped
# (Ctrl-C) and restarted across sessions. A run executes in its own scratch directory RUNS_DIR/.work/KEY (its
# TensorBoard files are visible there while it runs); only on success its run directory is moved to RUNS_DIR and the
# marker is written, so interrupted runs never mix into the curves and are restarted from scratch next time.
# Output of a run: RUNS_DIR/.logs/KEY.log. Every command runs with OMP_NUM_THREADS=1 (and MKL_NUM_THREADS=1).
# Delete RUNS_DIR/.done/KEY to run KEY again. Do not run the same sweep twice at the same time on one RUNS_DIR.
set -euo pipefail

SWEEP_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SWEEP_LIB="$SWEEP_ROOT/scripts/sweep_lib.sh"
SWEEP_THREADS=(OMP_NUM_THREADS=1 MKL_NUM_THREADS=1)

# PPO settings shared by mujoco_pv.sh, popgym.sh and reacher_pomdp.sh: setting (= --exp-name) -> script and flags.
declare -A PPO_SETTINGS=(
  [ppo_rtu_rtrl_nonlinear]="ppo_rtu_rtrl --rtu-variant nonlinear"
  [ppo_rtu_rtrl_linear]="ppo_rtu_rtrl --rtu-variant linear"
  [ppo_lru_rtrl]="ppo_lru_rtrl"
  [ppo_gru_tbptt]="ppo_gru_tbptt"
  [ppo_lru_tbptt]="ppo_lru_tbptt"
  [ppo_mlp]="ppo_mlp"
)
# the five recurrent architectures of the RTU paper's comparison
PPO_RECURRENT="ppo_rtu_rtrl_nonlinear ppo_rtu_rtrl_linear ppo_lru_rtrl ppo_gru_tbptt ppo_lru_tbptt"

_sweep_die() { echo "error: $*" >&2; exit 2; }

_sweep_usage() {
  # the sweep's own header comment, then the common options (the header of this file)
  sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"
  echo
  sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$SWEEP_LIB" | sed -n '/^Options/,$p'
}

# sweep_init NAME DEFAULT_SEEDS DEFAULT_STEPS "$@"  -- parse the common options; sets SEEDS, STEPS, RUNS_DIR, ...
sweep_init() {
  SWEEP_NAME=$1 SEEDS=${SEEDS:-$2} STEPS=${STEPS:-$3}
  shift 3
  WORKERS=${WORKERS:-2} RUNS_DIR=${RUNS_DIR:-$SWEEP_ROOT/runs} FILTER=${FILTER:-} PYTHON=${PYTHON:-python}
  DRY_RUN=0 SLURM_OUT=""
  EXTRA_ARGS=()
  while (($#)); do
    case $1 in
      -n | --dry-run) DRY_RUN=1 ;;
      -j | --workers) WORKERS=${2:?"$1 needs a value"}; shift ;;
      -j[0-9]*) WORKERS=${1#-j} ;;
      --slurm) SLURM_OUT=${2:?"--slurm needs a file name"}; shift ;;
      --seeds) SEEDS=${2:?"--seeds needs a value"}; shift ;;
      --steps) STEPS=${2:?"--steps needs a value"}; shift ;;
      --runs-dir) RUNS_DIR=${2:?"--runs-dir needs a value"}; shift ;;
      --filter) FILTER=${2:?"--filter needs a value"}; shift ;;
      -h | --help) _sweep_usage; exit 0 ;;
      --) shift; EXTRA_ARGS=("$@"); break ;;
      *) _sweep_die "unknown option '$1' (see --help)" ;;
    esac
    shift
  done
  [[ $WORKERS =~ ^[1-9][0-9]*$ ]] || _sweep_die "--workers must be a positive integer, got '$WORKERS'"
  [[ $STEPS =~ ^[1-9][0-9]*$ ]] || _sweep_die "--steps must be a positive integer, got '$STEPS'"
  [[ -n ${SEEDS// /} ]] || _sweep_die "no seeds given"
  RUNS_DIR=$(realpath -m "$RUNS_DIR")
  SWEEP_KEYS=() SWEEP_CMDS=() SWEEP_LINES=() SWEEP_SKIPPED=0
  declare -gA SWEEP_SEEN=()
}

# sweep_add ENV SETTING SEED SCRIPT [ARGS...]  -- one run of algos/SCRIPT.py; the string @KEY@ in ARGS is replaced by
# the run's key ENV__SETTING__SEED (e.g. for per-run summary files). Skipped if RUNS_DIR/.done/KEY exists.
sweep_add() {
  local env=$1 setting=$2 seed=$3 script=$4
  shift 4
  local key="${env}__${setting}__${seed}"
  [[ $key =~ ^[A-Za-z0-9._=+-]+(__[A-Za-z0-9._=+-]+)*$ ]] || _sweep_die "bad run key '$key'"
  [[ -z ${SWEEP_SEEN[$key]:-} ]] || _sweep_die "run key '$key' declared twice"
  SWEEP_SEEN[$key]=1
  [[ -f $SWEEP_ROOT/algos/$script.py ]] || _sweep_die "no script algos/$script.py"
  if [[ -n $FILTER ]] && ! [[ $key =~ $FILTER ]]; then return 0; fi
  if [[ -e $RUNS_DIR/.done/$key ]]; then SWEEP_SKIPPED=$((SWEEP_SKIPPED + 1)); return 0; fi
  local words=("$PYTHON" "$SWEEP_ROOT/algos/$script.py") a
  for a in "$@" "${EXTRA_ARGS[@]}"; do words+=("${a//@KEY@/$key}"); done
  local quoted lib runs
  printf -v quoted '%q ' "${words[@]}"
  printf -v lib '%q' "$SWEEP_LIB"
  printf -v runs '%q' "$RUNS_DIR"
  SWEEP_KEYS+=("$key")
  SWEEP_CMDS+=("${SWEEP_THREADS[*]} ${quoted% }")  # what --dry-run prints: a plain, copy-pasteable command
  SWEEP_LINES+=("bash $lib --run-one $runs $key env ${SWEEP_THREADS[*]} ${quoted% }")
}

# ppo_sweep "ENV ..." "SETTING ..."  -- every PPO setting (keys of PPO_SETTINGS) x env x seed, STEPS env steps each
ppo_sweep() {
  local envs=$1 settings=$2 seed env setting spec
  for setting in $settings; do [[ -n ${PPO_SETTINGS[$setting]:-} ]] || _sweep_die "unknown PPO setting '$setting' (known: ${!PPO_SETTINGS[*]})"; done
  for seed in $SEEDS; do
    for env in $envs; do
      for setting in $settings; do
        spec=(${PPO_SETTINGS[$setting]})
        sweep_add "$env" "$setting" "$seed" "${spec[0]}" --env-id "$env" --seed "$seed" --total-timesteps "$STEPS" \
          --exp-name "$setting" "${spec[@]:1}"
      done
    done
  done
}

# sweep_finish  -- print (--dry-run), write the SLURM job (--slurm) or run the pending commands with WORKERS workers
sweep_finish() {
  local n=${#SWEEP_CMDS[@]}
  local note="# sweep $SWEEP_NAME: $n run(s) to do, $SWEEP_SKIPPED already done (markers in $RUNS_DIR/.done)"
  if ((DRY_RUN)); then
    echo "$note" >&2
    ((n == 0)) || printf '%s\n' "${SWEEP_CMDS[@]}"
    return 0
  fi
  if [[ -n $SLURM_OUT ]]; then
    _sweep_write_slurm "$note"
    return 0
  fi
  echo "$note; $WORKERS worker(s); logs in $RUNS_DIR/.logs" >&2
  ((n > 0)) || return 0
  local rc=0
  printf '%s\0' "${SWEEP_LINES[@]}" | xargs -0 -n 1 -P "$WORKERS" bash -c || rc=$?
  if ((rc != 0)); then
    echo "# sweep $SWEEP_NAME: some runs FAILED (see the messages above and $RUNS_DIR/.logs); run the sweep again to retry them" >&2
    return 1
  fi
  echo "# sweep $SWEEP_NAME: all $n run(s) finished" >&2
}

_sweep_write_slurm() {
  local note=$1 n=${#SWEEP_LINES[@]}
  local out cmds
  out=$(cd "$(dirname "$SLURM_OUT")" && pwd)/$(basename "$SLURM_OUT")
  cmds="$out.commands"
  if ((n == 0)); then echo "$note; nothing to submit" >&2; return 0; fi
  mkdir -p "$RUNS_DIR/.logs"
  printf '%s\n' "${SWEEP_LINES[@]}" >"$cmds"
  {
    echo "#!/bin/bash"
    echo "# SLURM array job of sweep $SWEEP_NAME: task i runs line i of $cmds (one run each; finished runs are skipped)."
    echo "#SBATCH --job-name=$SWEEP_NAME"
    echo "#SBATCH --array=1-$n${SLURM_MAX_PARALLEL:+%$SLURM_MAX_PARALLEL}"
    echo "#SBATCH --ntasks=1"
    echo "#SBATCH --cpus-per-task=${SLURM_CPUS:-1}"
    echo "#SBATCH --mem=${SLURM_MEM:-8G}"
    echo "#SBATCH --time=${SLURM_TIME:-72:00:00}"
    echo "#SBATCH --output=$RUNS_DIR/.logs/slurm-%A_%a.out"
    [[ -z ${SLURM_EXTRA:-} ]] || printf '%s\n' "$SLURM_EXTRA"
    echo "set -euo pipefail"
    echo "cd $(printf '%q' "$SWEEP_ROOT")"
    echo "line=\$(sed -n \"\${SLURM_ARRAY_TASK_ID}p\" $(printf '%q' "$cmds"))"
    echo "[ -n \"\$line\" ] || { echo \"no line \$SLURM_ARRAY_TASK_ID in $cmds\" >&2; exit 1; }"
    echo "exec bash -c \"\$line\""
  } >"$out"
  echo "$note" >&2
  echo "# wrote $out ($n array tasks) and $cmds; submit with: sbatch $out" >&2
  echo "# (options: SLURM_TIME, SLURM_MEM, SLURM_CPUS, SLURM_MAX_PARALLEL, SLURM_EXTRA='#SBATCH --partition=...'," >&2
  echo "#  or sbatch's own SBATCH_* environment variables)" >&2
}

# --run-one RUNS_DIR KEY CMD...  -- execute one run (used by the local workers and by the SLURM tasks)
_sweep_run_one() {
  local runs=$1 key=$2
  shift 2
  local marker="$runs/.done/$key" work="$runs/.work/$key" log="$runs/.logs/$key.log"
  if [[ -e $marker ]]; then echo "skip  $key (already done)"; return 0; fi
  mkdir -p "$runs/.done" "$runs/.logs"
  rm -rf "$work"  # leftovers of an interrupted attempt: the scripts do not checkpoint, so start again
  mkdir -p "$work"
  echo "start $key"
  local start=$SECONDS rc=0
  (cd "$work" && printf '# %s  %s\n' "$(date '+%F %T')" "$*" >"$log" && exec "$@" >>"$log" 2>&1) || rc=$?
  if ((rc != 0)); then
    echo "FAIL  $key (exit $rc after $((SECONDS - start)) s); log: $log" >&2
    return 1  # xargs: a failed command makes the sweep report failure but lets the other runs go on
  fi
  local d dest moved=()
  shopt -s nullglob
  for d in "$work"/runs/*; do
    dest="$runs/$(basename "$d")"
    [[ ! -e $dest ]] || dest="$dest.$$"
    mv "$d" "$dest"
    moved+=("$(basename "$dest")")
  done
  if [[ -d $work/videos ]]; then
    mkdir -p "$runs/../videos"
    for d in "$work"/videos/*; do mv "$d" "$runs/../videos/"; done
  fi
  {
    echo "finished: $(date '+%F %T') after $((SECONDS - start)) s"
    echo "command: $*"
    echo "run dirs: ${moved[*]:-}"
  } >"$marker"
  rm -rf "$work"
  echo "done  $key ($((SECONDS - start)) s) -> ${moved[*]:-no run dir}"
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  case ${1:-} in
    --run-one) shift; _sweep_run_one "$@" ;;
    *) echo "sweep_lib.sh is sourced by the sweep scripts (scripts/*.sh); see its header" >&2; exit 2 ;;
  esac
fi
