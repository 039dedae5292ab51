#!/usr/bin/env bash
# The learned temperature of the prior (`class_adjusted_tau`: ClassAdjustedLoss(class_counts=...)
# meta-learned, then a fresh network retrained with tau frozen) against logit adjustment (tau=1),
# the cifar10-dev-imbalance preset with meta Adam 0.1 (chosen on the holdout by
# scripts/imbalance/screen.py, variants tau_rtavg_*), scored on cifar10_dev's balanced validation
# split, 3 seeds, imbalance ratios 100, 10, 50 and 1 (balanced: against cross-entropy).
# run_validation.sh with these methods, settings and output directory.
# Usage: PYTHONPATH=. scripts/imbalance/run_validation_tau.sh [ratio ...]
set -euo pipefail
OUT=docs/figures/imbalance/tau \
  METHODS=logit_adjusted,class_adjusted_tau \
  BALANCED_METHODS=ce,class_adjusted_tau \
  EXTRA_ARGS="--meta-learning-rate 0.1" \
  exec "$(dirname "$0")/run_validation.sh" "${@:-100 10 50 1}"
