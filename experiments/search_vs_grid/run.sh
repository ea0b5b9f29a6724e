#!/usr/bin/env bash
# The whole experiment: the reference (30 random trials run to the end), then random search,
# TPE and TPE + ASHA with 12 trials each, three seeds, one trial at a time; then the table.
set -uo pipefail  # a search with a failed trial exits 1: the others still run
cd "$(dirname "$0")/../.."
RUNS=${RUNS:-runs/search_vs_grid}
space=(--config=experiments/search_vs_grid/config.py --sweep=experiments/search_vs_grid/config.py)
python -m launch.sweep "${space[@]}" --search=random --trials=30 --search_seed=100 \
    --workdir="$RUNS/reference"
for seed in 0 1 2; do
  python -m launch.sweep "${space[@]}" --search=random --trials=12 --search_seed=$seed \
      --workdir="$RUNS/random_$seed"
  python -m launch.sweep "${space[@]}" --search=tpe --trials=12 --search_seed=$seed \
      --workdir="$RUNS/tpe_$seed"
  python -m launch.sweep "${space[@]}" --search=tpe --pruner=asha --trials=12 \
      --search_seed=$seed --workdir="$RUNS/tpe_asha_$seed"
done
# TPE with 4 random trials before it models the results (Optuna's default is 10: with 12 trials
# that is random search but for the last 2).
for seed in 0 1 2; do
  python -m launch.sweep "${space[@]}" --search=tpe --startup_trials=4 --trials=12 \
      --search_seed=$seed --workdir="$RUNS/tpe4_$seed"
  python -m launch.sweep "${space[@]}" --search=tpe --startup_trials=4 --pruner=asha \
      --trials=12 --search_seed=$seed --workdir="$RUNS/tpe4_asha_$seed"
done
python experiments/search_vs_grid/analyze.py --runs="$RUNS" \
    --out=experiments/search_vs_grid/results.md
