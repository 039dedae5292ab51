#!/usr/bin/env bash
# The learned temperature of the prior (`class_adjusted_tau`: ClassAdjustedLoss(class_counts=...)
# meta-learned, then a fresh network retrained with tau frozen) against logit adjustment (tau=1),
# the cifar10-dev-imbalance preset with meta Adam 0.1 (chosen on the holdout by
# scripts/imbalance/screen.py, variants tau_rtavg_*), scored on cifar10_dev's balanced validation
# split, 3 seeds, imbalance ratios 100, 10, 50 and 1 (balanced: against cross-entropy).
# One process per ratio and seed, then merged per ratio.
# Usage: PYTHONPATH=. scripts/imbalance/run_validation_tau.sh [ratio ...]
set -euo pipefail
cd "$(dirname "$0")/../.."
export TF_CPP_MIN_LOG_LEVEL=3
DATA=${DATA:-/work/shared/data/cifar10_dev.npz}
OUT=docs/figures/imbalance/tau
RATIOS=("${@:-100 10 50 1}")
# shellcheck disable=SC2068
for ratio in ${RATIOS[@]}; do
  methods=logit_adjusted,class_adjusted_tau
  if [[ $ratio == 1 ]]; then methods=ce,class_adjusted_tau; fi
  for seed in 0 1 2; do
    dir=$OUT/r${ratio}/s${seed}
    if [[ -f $dir/results.json ]]; then echo "skip r$ratio s$seed"; continue; fi
    echo "== ratio $ratio seed $seed"
    python scripts/compare.py --preset cifar10-dev-imbalance --dataset "$DATA" \
      --imbalance "$ratio" --methods "$methods" --meta-learning-rate 0.1 \
      --seeds "$seed" --no-figures --quiet --output-dir "$dir"
  done
  python scripts/compare.py --merge "$OUT"/r"${ratio}"/s*/results.json --no-figures --quiet \
    --output-dir "$OUT/r${ratio}"
done
