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
#   --skip-exported DIR  skip the runs whose key has an exported run DIR/KEY__*.csv.gz    [SKIP_EXPORTED]
#                        (scripts/plot.py --export-runs: finished runs committed to a repository survive the loss
#                        of the runs directory, e.g. on a machine that is not kept; the key, not the command, decides)
#   -- ARGS...           extra arguments appended to every command (e.g. -- --hidden-dim 8, or -- --no-cuda)
#   PYTHON=...           interpreter                                                     [default: python]
#
# A run is identified by its full command: ID = ENV__SETTING__SEED__HASH, where HASH is the first 8 hex digits of the
# SHA-1 of the command (algos/SCRIPT.py and every argument, extra arguments included; the interpreter is not part of
# it, and RUNS_DIR inside an argument is written @RUNS_DIR@ so that a runs directory can be moved). SETTING is also
# passed as --exp-name, so TensorBoard and scripts/plot.py tell the settings apart; "@KEY@" in an argument becomes ID.
# - A run executes in RUNS_DIR/.work/ID (its TensorBoard files are visible there while it runs), output in
#   RUNS_DIR/.logs/ID.log. When it exits 0, its run directory moves to RUNS_DIR/ID/<run name> and the marker
#   RUNS_DIR/.done/ID is written ("command:", "base:" = the command with its length flag's value replaced by @TOTAL@,
#   "total:", "run dir:", "finished:", "ran:" lines). A run is skipped only if that marker's command equals its own, so
#   another --steps or other extra arguments make other runs.
# - An interrupted or failed run resumes from its checkpoint: if RUNS_DIR/.work/ID/runs/*/checkpoint.pt exists, the
#   same command runs again with `--resume runs/<run name>` (delete RUNS_DIR/.work/ID to start it over).
# - A longer run of a finished configuration (the same command but a larger --total-timesteps / --total-steps /
#   --max-updates) continues the longest such finished run: its run directory is copied into RUNS_DIR/.work/ID and
#   resumed there with the larger total, the shorter run stays as it was. Not if the shorter run anneals its learning
#   rate ("anneal_lr": true in its done.json) or left no checkpoint.pt and done.json: then the run starts from scratch.
# - Ctrl-C, SIGTERM or SIGHUP stops the sweep and every run it started; they resume next time. (A sweep started with
#   `&` by a non-interactive shell ignores SIGINT, as every such background job does: send it SIGTERM.)
# Every command runs with OMP_NUM_THREADS=1 (and MKL_NUM_THREADS=1). The workers are `xargs -P`. Delete
# RUNS_DIR/.done/ID to run ID again. Two sweeps on one RUNS_DIR share its runs: a run that one of them is executing
# (the lock RUNS_DIR/.work/ID.lock, with flock) is skipped by the other.
set -euo pipefail

SWEEP_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SWEEP_LIB="$SWEEP_ROOT/scripts/sweep_lib.sh"
SWEEP_THREADS=(OMP_NUM_THREADS=1 MKL_NUM_THREADS=1)
# the flags that set a run's length (the only ones --resume lets grow)
SWEEP_TOTAL_FLAGS=(--total-timesteps --total-steps --max-updates)

# PPO settings shared by mujoco_pv.sh, popgym.sh, reacher_pomdp.sh, stale_fresh.sh and step_size.sh: setting
# (= --exp-name) -> script and flags. With SELECTED=FILE (a CSV setting,learning_rate,... written by
# scripts/select_step_size.py), ppo_spec adds each setting's selected step size.
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
  SKIP_EXPORTED=${SKIP_EXPORTED:-}
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
      --skip-exported) SKIP_EXPORTED=${2:?"--skip-exported needs a directory"}; shift ;;
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
  if [[ -n $SKIP_EXPORTED ]]; then
    [[ -d $SKIP_EXPORTED ]] || _sweep_die "--skip-exported: no directory '$SKIP_EXPORTED'"
    SKIP_EXPORTED=$(realpath "$SKIP_EXPORTED")
  fi
  SWEEP_P_KEY=() SWEEP_P_SCRIPT=() SWEEP_P_CANON=() SWEEP_P_BASE=() SWEEP_P_TOTAL=() SWEEP_P_ARGS=()
  SWEEP_IDS=() SWEEP_CMDS=() SWEEP_LINES=() SWEEP_SKIPPED=0 SWEEP_RESUMES=0 SWEEP_EXTENDS=0 SWEEP_EXPORTED=0
  declare -gA SWEEP_SEEN=()
}

# The helpers below return through globals, not $(...): a sweep of a few hundred runs would otherwise spend seconds
# forking.

# _sweep_read_marker FILE  -- sets M_COMMAND, M_BASE, M_TOTAL and M_DIRS (the "run dir:" lines) from a marker
_sweep_read_marker() {
  M_COMMAND="" M_BASE="" M_TOTAL="" M_DIRS=()
  local line
  while IFS= read -r line || [[ -n $line ]]; do
    case $line in
      "command: "*) M_COMMAND=${line#command: } ;;
      "base: "*) M_BASE=${line#base: } ;;
      "total: "*) M_TOTAL=${line#total: } ;;
      "run dir: "*) M_DIRS+=("${line#run dir: }") ;;
    esac
  done <"$1"
}

# _sweep_is_done RUNS_DIR ID COMMAND  -- whether ID finished with exactly this command
_sweep_is_done() {
  [[ -f $1/.done/$2 ]] || return 1
  _sweep_read_marker "$1/.done/$2"
  [[ $M_COMMAND == "$3" ]]
}

# _sweep_checkpoint WORK  -- REPLY: the run directory (relative to WORK) of the newest WORK/runs/*/checkpoint.pt
_sweep_checkpoint() {
  local f best=""
  REPLY=""
  for f in "$1"/runs/*/checkpoint.pt; do
    [[ -f $f ]] || continue
    if [[ -z $best || $f -nt $best ]]; then best=$f; fi
  done
  [[ -n $best ]] || return 1
  best=${best%/checkpoint.pt}
  REPLY="runs/${best##*/}"
}

# _sweep_shorter RUNS_DIR ID BASE TOTAL  -- REPLY: the run directory (relative to RUNS_DIR) of the finished run with the
# same key and base command and the largest total below TOTAL
_sweep_shorter() {
  local runs=$1 id=$2 base=$3 total=$4 m best="" best_total=0
  REPLY=""
  [[ $total =~ ^[0-9]+$ ]] || return 1
  for m in "$runs/.done/${id%__*}__"*; do
    [[ -f $m && $m != *.tmp ]] || continue
    _sweep_read_marker "$m"
    [[ $M_BASE == "$base" && $M_TOTAL =~ ^[0-9]+$ ]] && ((M_TOTAL < total && M_TOTAL > best_total)) || continue
    ((${#M_DIRS[@]} == 1)) || continue  # which directory to continue would be ambiguous
    best=${M_DIRS[0]} best_total=$M_TOTAL
  done
  [[ -n $best ]] || return 1
  REPLY=$best
}

# _sweep_cannot_extend DIR  -- REPLY: why DIR (a finished run directory) cannot be continued, empty if it can
_sweep_cannot_extend() {
  REPLY=""
  if [[ ! -f $1/checkpoint.pt || ! -f $1/done.json ]]; then
    REPLY="it lacks checkpoint.pt or done.json"
    return 0
  fi
  local json=""
  IFS= read -r -d '' json <"$1/done.json" || true
  if [[ $json =~ \"anneal_lr\":\ *true ]]; then REPLY="it anneals the learning rate"; fi
}

# sweep_add ENV SETTING SEED SCRIPT [ARGS...]  -- one run of algos/SCRIPT.py; the string @KEY@ in ARGS is replaced by
# the run's ID. Skipped if it finished with the same command (see the header).
sweep_add() {
  local env=$1 setting=$2 seed=$3 script=$4
  shift 4
  local key="${env}__${setting}__${seed}"
  [[ $key =~ ^[A-Za-z0-9._=+-]+(__[A-Za-z0-9._=+-]+)*$ ]] || _sweep_die "bad run key '$key'"
  [[ -z ${SWEEP_SEEN[$key]:-} ]] || _sweep_die "run key '$key' declared twice"
  SWEEP_SEEN[$key]=1
  [[ -f $SWEEP_ROOT/algos/$script.py ]] || _sweep_die "no script algos/$script.py"
  if [[ -n $FILTER ]] && ! [[ $key =~ $FILTER ]]; then return 0; fi
  # the run's identity: the script and its arguments, RUNS_DIR masked; base: the same with the length masked
  local canon=("algos/$script.py") base=("algos/$script.py") total="" a f is_total=0
  for a in "$@" "${EXTRA_ARGS[@]}"; do
    a=${a//"$RUNS_DIR"/@RUNS_DIR@}
    canon+=("$a")
    if ((is_total)); then total=$a a=@TOTAL@ is_total=0; fi
    for f in "${SWEEP_TOTAL_FLAGS[@]}"; do
      if [[ $a == "$f" ]]; then is_total=1; elif [[ $a == "$f="* ]]; then total=${a#*=} a="$f=@TOTAL@"; fi
    done
    base+=("$a")
  done
  local q
  SWEEP_P_KEY+=("$key") SWEEP_P_SCRIPT+=("$script") SWEEP_P_TOTAL+=("$total")
  printf -v q '%q ' "${canon[@]}"
  SWEEP_P_CANON+=("${q% }")
  printf -v q '%q ' "${base[@]}"
  SWEEP_P_BASE+=("${q% }")
  q=""
  (($# + ${#EXTRA_ARGS[@]} == 0)) || printf -v q '%q ' "$@" "${EXTRA_ARGS[@]}"
  SWEEP_P_ARGS+=("${q% }")
}

# _sweep_resolve  -- the declared runs' IDs (one sha1sum call for all), then the commands of those not done yet
_sweep_resolve() {
  local n=${#SWEEP_P_KEY[@]} i f tmp files=() hashes=() h
  ((n > 0)) || return 0
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/sweep-ids.XXXXXX")
  for ((i = 0; i < n; i++)); do
    printf -v f '%s/%06d' "$tmp" "$i"
    printf '%s' "${SWEEP_P_CANON[i]}" >"$f"
    files+=("$f")
  done
  local sha=sha1sum
  command -v sha1sum >/dev/null || sha="shasum -a 1"
  while read -r h _; do hashes+=("${h:0:8}"); done < <($sha "${files[@]}")
  rm -rf "$tmp"
  ((${#hashes[@]} == n)) || _sweep_die "could not hash the run commands with $sha"
  local id canon base total args=() words a quoted line
  for ((i = 0; i < n; i++)); do
    id="${SWEEP_P_KEY[i]}__${hashes[i]}" canon=${SWEEP_P_CANON[i]} base=${SWEEP_P_BASE[i]} total=${SWEEP_P_TOTAL[i]}
    if _sweep_is_done "$RUNS_DIR" "$id" "$canon"; then SWEEP_SKIPPED=$((SWEEP_SKIPPED + 1)); continue; fi
    if [[ -n $SKIP_EXPORTED ]] && compgen -G "$SKIP_EXPORTED/${SWEEP_P_KEY[i]}__*.csv.gz" >/dev/null; then
      SWEEP_EXPORTED=$((SWEEP_EXPORTED + 1))
      continue
    fi
    eval "args=(${SWEEP_P_ARGS[i]})"  # safe: printf %q wrote it
    words=("$PYTHON" "$SWEEP_ROOT/algos/${SWEEP_P_SCRIPT[i]}.py")
    for a in "${args[@]}"; do words+=("${a//@KEY@/$id}"); done
    if [[ -d $RUNS_DIR/.work/$id ]] && _sweep_checkpoint "$RUNS_DIR/.work/$id"; then
      SWEEP_RESUMES=$((SWEEP_RESUMES + 1))
      ((!DRY_RUN)) || echo "# $id resumes from $RUNS_DIR/.work/$id/$REPLY" >&2
    elif [[ -d $RUNS_DIR/.done ]] && _sweep_shorter "$RUNS_DIR" "$id" "$base" "$total"; then
      f=$REPLY
      _sweep_cannot_extend "$RUNS_DIR/$f"
      if [[ -z $REPLY ]]; then
        SWEEP_EXTENDS=$((SWEEP_EXTENDS + 1))
        ((!DRY_RUN)) || echo "# $id continues a copy of $RUNS_DIR/$f" >&2
      fi
    fi
    printf -v quoted '%q ' "${words[@]}"
    printf -v line '%q ' bash "$SWEEP_LIB" --run-one "$RUNS_DIR" "$id" "$canon" "$base" "$total" -- env \
      "${SWEEP_THREADS[@]}"
    SWEEP_IDS+=("$id")
    SWEEP_CMDS+=("${SWEEP_THREADS[*]} ${quoted% }")  # what --dry-run prints: a plain, copy-pasteable command
    SWEEP_LINES+=("$line${quoted% }")
  done
}

# td_budget B  -- BUDGET_TAG (exp-name suffix) and BUDGET_OPT (flags) of a td_animal_learning.py size budget: "-" the
# default size, N a recurrent-parameter budget (--param-budget N), FN a FLOPs-per-step budget (--flops-budget N)
td_budget() {
  case $1 in
    -) BUDGET_TAG="" BUDGET_OPT=() ;;
    F[1-9]*) BUDGET_TAG=_$1 BUDGET_OPT=(--flops-budget "${1#F}") ;;
    [1-9]*) BUDGET_TAG=_P$1 BUDGET_OPT=(--param-budget "$1") ;;
    *) _sweep_die "a budget is -, N (parameters) or FN (FLOPs per step), got '$1'" ;;
  esac
}

# ppo_spec SETTING  -- SPEC=(script flags...) of a PPO setting, plus --learning-rate LR when SELECTED=FILE is set
ppo_spec() {
  [[ -n ${PPO_SETTINGS[$1]:-} ]] || _sweep_die "unknown PPO setting '$1' (known: ${!PPO_SETTINGS[*]})"
  SPEC=(${PPO_SETTINGS[$1]})
  [[ -n ${SELECTED:-} ]] || return 0
  [[ -f $SELECTED ]] || _sweep_die "no selected step sizes: $SELECTED"
  local setting lr rest
  while IFS=, read -r setting lr rest; do
    [[ $setting != "$1" ]] || { SPEC+=(--learning-rate "$lr"); return 0; }
  done <"$SELECTED"
  _sweep_die "no step size for '$1' in $SELECTED"
}

# ppo_sweep "ENV ..." "SETTING ..."  -- every PPO setting (keys of PPO_SETTINGS) x env x seed, STEPS env steps each
ppo_sweep() {
  local envs=$1 settings=$2 seed env setting
  for setting in $settings; do ppo_spec "$setting"; done  # every error before the first run
  for seed in $SEEDS; do
    for env in $envs; do
      for setting in $settings; do
        ppo_spec "$setting"
        sweep_add "$env" "$setting" "$seed" "${SPEC[0]}" --env-id "$env" --seed "$seed" --total-timesteps "$STEPS" \
          --exp-name "$setting" "${SPEC[@]:1}"
      done
    done
  done
}

# sweep_finish  -- print (--dry-run), write the SLURM job (--slurm) or run the pending commands with WORKERS workers
sweep_finish() {
  _sweep_resolve
  local n=${#SWEEP_CMDS[@]}
  local note="# sweep $SWEEP_NAME: $n run(s) to do ($SWEEP_RESUMES resume from a checkpoint, $SWEEP_EXTENDS continue a"
  note+=" shorter finished run), $SWEEP_SKIPPED already done (markers in $RUNS_DIR/.done)"
  ((SWEEP_EXPORTED == 0)) || note+=", $SWEEP_EXPORTED exported in $SKIP_EXPORTED"
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
  SWEEP_JOBS=$(mktemp "${TMPDIR:-/tmp}/sweep-$SWEEP_NAME.XXXXXX")
  printf '%s\0' "${SWEEP_LINES[@]}" >"$SWEEP_JOBS"
  SWEEP_POOL=""
  trap '_sweep_stop INT 130' INT
  trap '_sweep_stop TERM 143' TERM
  trap '_sweep_stop HUP 129' HUP
  # the worker pool is xargs -P: in every Linux and BSD userland, unlike GNU parallel (clusters: --slurm).
  # Job control puts it in a process group of its own: one signal to the group stops every run, and Ctrl-C in a
  # terminal reaches only this script, which then stops them (a plain background xargs would keep them running).
  set -m
  xargs -0 -n 1 -P "$WORKERS" bash -c <"$SWEEP_JOBS" &
  SWEEP_POOL=$!
  set +m
  local rc=0
  wait "$SWEEP_POOL" || rc=$?
  trap - INT TERM HUP
  rm -f "$SWEEP_JOBS"
  if ((rc != 0)); then
    echo "# sweep $SWEEP_NAME: some runs FAILED (see the messages above and $RUNS_DIR/.logs); run the sweep again to retry them" >&2
    return 1
  fi
  echo "# sweep $SWEEP_NAME: all $n run(s) finished" >&2
}

# _sweep_group_alive PGID  -- whether a process of the group is still running (zombies do not count: an orphan's
# zombie is reaped by init, which may never happen in a container)
_sweep_group_alive() {
  ps -A -o pgid=,stat= | awk -v g="$1" '$1 == g && $2 !~ /^Z/ { found = 1 } END { exit !found }'
}

_sweep_stop() {
  trap - INT TERM HUP
  echo "# sweep $SWEEP_NAME: SIG$1, stopping its runs (run the sweep again to resume them)" >&2
  # a signal right after the pool started, before SWEEP_POOL was set: the job table knows its group
  [[ -n $SWEEP_POOL ]] || SWEEP_POOL=$(jobs -p | tail -n 1)
  if [[ -z $SWEEP_POOL ]]; then rm -f "$SWEEP_JOBS"; exit "$2"; fi
  kill -TERM -- "-$SWEEP_POOL" 2>/dev/null || true
  local i
  for ((i = 0; i < 100; i++)); do  # up to 10 s for the scripts to exit
    _sweep_group_alive "$SWEEP_POOL" || break
    sleep 0.1
  done
  kill -KILL -- "-$SWEEP_POOL" 2>/dev/null || true
  wait "$SWEEP_POOL" 2>/dev/null || true
  rm -f "$SWEEP_JOBS"
  exit "$2"
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
    echo "# SLURM array job of sweep $SWEEP_NAME: task i runs line i of $cmds (one run each; finished runs are skipped,"
    echo "# interrupted ones resume from their checkpoint)."
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

# --run-one RUNS_DIR ID COMMAND BASE TOTAL -- CMD...  -- execute one run (used by the local workers and by the SLURM
# tasks); COMMAND, BASE and TOTAL go into the marker (see the header)
_sweep_run_one() {
  local runs=$1 id=$2 canon=$3 base=$4 total=$5
  shift 5
  [[ ${1:-} == -- ]] && shift
  local marker="$runs/.done/$id" work="$runs/.work/$id" log="$runs/.logs/$id.log" lock
  mkdir -p "$runs/.done" "$runs/.logs" "$runs/.work"
  # one process per run: two processes in one work directory would write into the same event files. The lock is held
  # until this script exits (the training process inherits it), so a second sweep on RUNS_DIR, or a SLURM task
  # started twice, leaves the run to the first one.
  if command -v flock >/dev/null; then
    exec {lock}>"$work.lock"
    flock -n "$lock" || { echo "skip  $id (running in another process)"; return 0; }
  fi
  if _sweep_is_done "$runs" "$id" "$canon"; then echo "skip  $id (already done)"; return 0; fi
  local from="" how="start" detail="" d name
  if _sweep_checkpoint "$work"; then
    from=$REPLY how="resume" detail=" from $work/$REPLY"
    for d in "$work"/runs/*; do [[ runs/${d##*/} == "$from" ]] || rm -rf "$d"; done  # one run per work directory
  else
    rm -rf "$work"
    mkdir -p "$work"
    if _sweep_shorter "$runs" "$id" "$base" "$total"; then
      d=$REPLY
      _sweep_cannot_extend "$runs/$d"
      if [[ -z $REPLY ]]; then
        # copy first, then move: an interrupted copy never looks like a checkpoint to resume
        name=${d##*/}
        mkdir -p "$work/.copy" "$work/runs"
        cp -a "$runs/$d" "$work/.copy/$name"
        mv "$work/.copy/$name" "$work/runs/$name"
        rmdir "$work/.copy"
        from="runs/$name" how="extend" detail=" from a copy of $runs/$d"
      else
        detail=" from scratch, not continuing $runs/$d: $REPLY"
      fi
    fi
  fi
  local cmd=("$@")
  [[ -z $from ]] || cmd+=(--resume "$from")
  echo "$how $id$detail"
  local start=$SECONDS rc=0
  (cd "$work" && printf '# %s  %s\n' "$(date '+%F %T')" "${cmd[*]}" >>"$log" && exec "${cmd[@]}" >>"$log" 2>&1) || rc=$?
  if ((rc != 0)); then
    echo "FAIL  $id (exit $rc after $((SECONDS - start)) s); log: $log" >&2
    if _sweep_checkpoint "$work"; then
      echo "      it resumes from $work/$REPLY next time (delete $work to start it over)" >&2
    fi
    return 1  # xargs: a failed command makes the sweep report failure but lets the other runs go on
  fi
  local dest="$runs/$id" moved=()
  rm -rf "$dest"  # no marker, so nothing in it counts as finished
  mkdir -p "$dest"
  shopt -s nullglob
  for d in "$work"/runs/*; do
    mv "$d" "$dest/"
    moved+=("$id/${d##*/}")
  done
  if [[ -d $work/videos ]]; then
    mkdir -p "$runs/../videos"
    for d in "$work"/videos/*; do mv "$d" "$runs/../videos/"; done
  fi
  {
    echo "command: $canon"
    echo "base: $base"
    echo "total: $total"
    for d in "${moved[@]}"; do echo "run dir: $d"; done
    echo "finished: $(date -u '+%FT%TZ') after $((SECONDS - start)) s ($how)"
    echo "ran: ${cmd[*]}"
  } >"$marker.tmp"
  mv "$marker.tmp" "$marker"
  rm -rf "$work" "$work.lock"  # safe while locked: whoever opens the lock next finds the marker
  echo "done  $id ($((SECONDS - start)) s) -> ${moved[*]:-no run dir}"
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  case ${1:-} in
    --run-one) shift; _sweep_run_one "$@" ;;
    *) echo "sweep_lib.sh is sourced by the sweep scripts (scripts/*.sh); see its header" >&2; exit 2 ;;
  esac
fi
