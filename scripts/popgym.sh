#!/usr/bin/env bash
# PPO on the RTU paper's POPGym set: CountRecall, RepeatFirst, Concentration, Autoencode and HigherLower
# (Easy), 1M env steps, 3 seeds, the five recurrent architectures and the memoryless MLP. Report MMER
# (scripts/plot.py --popgym).   ENVS="popgym-...-v0 ..."   env ids;  ARCHS="..."  settings
# Example: scripts/popgym.sh -j 2
#   plot: python scripts/plot.py --runs runs --out results/popgym --envs ^popgym- --exps ^ppo_ --popgym
source "$(dirname "${BASH_SOURCE[0]}")/sweep_lib.sh"
sweep_init popgym "1 2 3" 1000000 "$@"
ENVS=${ENVS:-"popgym-CountRecallEasy-v0 popgym-RepeatFirstEasy-v0 popgym-ConcentrationEasy-v0 popgym-AutoencodeEasy-v0 popgym-HigherLowerEasy-v0"}
ppo_sweep "$ENVS" "${ARCHS:-$PPO_RECURRENT ppo_mlp}"
sweep_finish
