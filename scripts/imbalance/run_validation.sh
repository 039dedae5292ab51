#!/usr/bin/env bash
# The "Imbalanced classes" results of docs/RESULTS.md: the cifar10-dev-imbalance preset
# (settings chosen by scripts/imbalance/screen.py on a holdout of the training split),
# scored on cifar10_dev's balanced validation split, 3 seeds, imbalance ratios 10, 50, 100
# (every imbalance method) and 1 (balanced: cross-entropy and the learned loss only).
# One process per ratio and seed (results land as they finish), then merged per ratio.
# Usage: PYTHONPATH=. scripts/imbalance/run_validation.sh [ratio ...]
# OUT, METHODS, BALANCED_METHODS (ratio 1) and EXTRA_ARGS (more compare options) override the
# output directory, the methods and the settings (see run_validation_tau.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
export TF_CPP_MIN_LOG_LEVEL=3
DATA=${DATA:-/work/shared/data/cifar10_dev.npz}
OUT=${OUT:-docs/figures/imbalance}
EXTRA_ARGS=${EXTRA_ARGS:-}
RATIOS=("${@:-10 50 100 1}")
# shellcheck disable=SC2068
for ratio in ${RATIOS[@]}; do
  methods=${METHODS:-imbalance}
  if [[ $ratio == 1 ]]; then methods=${BALANCED_METHODS:-ce,class_adjusted}; fi
  for seed in 0 1 2; do
    dir=$OUT/r${ratio}/s${seed}
    if [[ -f $dir/results.json ]]; then echo "skip r$ratio s$seed"; continue; fi
    echo "== ratio $ratio seed $seed"
    # shellcheck disable=SC2086  # EXTRA_ARGS: several options, split on purpose
    python scripts/compare.py --preset cifar10-dev-imbalance --dataset "$DATA" \
      --imbalance "$ratio" --methods "$methods" --seeds "$seed" --no-figures --quiet $EXTRA_ARGS \
      --output-dir "$dir"
  done
  python scripts/compare.py --merge "$OUT"/r"${ratio}"/s*/results.json --no-figures --quiet \
    --output-dir "$OUT/r${ratio}"
done
