#!/usr/bin/env bash
# Chooses the meta-learning settings on digits WITHOUT the validation split:
# every run here evaluates on a 20% holdout of the training split
# (--eval-split holdout). One factor at a time from the base settings.
# Usage: SNAP=$(scripts/snapshot.sh) scripts/tune_digits.sh [noise]
# (writes docs/figures/tuning/digits_n<noise>_<name>/results.{json,md})
set -euo pipefail
cd "$(dirname "$0")/.."
export TF_CPP_MIN_LOG_LEVEL=3
# Run from a snapshot of the package (other people edit the tree meanwhile).
export PYTHONPATH=${SNAP:?set SNAP=\$(scripts/snapshot.sh)}
NOISE=${1:-0.4}
COMMON=(--dataset digits --noise "$NOISE" --eval-split holdout --seeds 0 1 --epochs 60
        --no-figures --quiet)
run() {  # name, methods, extra args...
  local name=$1 methods=$2; shift 2
  local out=docs/figures/tuning/digits_n${NOISE}_${name}
  if [[ -f $out/.done ]]; then echo "skip $name"; return; fi
  echo "== $name: $methods $*"
  python scripts/compare.py "${COMMON[@]}" --methods "$methods" "$@" --output-dir "$out"
  touch "$out/.done"
}
if [[ $NOISE == 0.4 ]]; then
  run base ce,gce,learned
  run mlr0.003 ce,gce,learned --meta-learning-rate 0.003
  run mlr0.03 ce,gce,learned --meta-learning-rate 0.03
  run every5 ce,gce,learned --meta-every 5
  run clip1 ce,gce,learned --meta-clipnorm 1
  run reg0.01 ce,gce,learned --regularization 0.01
  run objmae learned --meta-objective mae_classification
  run schedule_gce schedule --schedule-final generalized_crossentropy=1
  run schedule_mae schedule --schedule-final mae_classification=1
else
  run base ce,focal,label_smoothing,learned
  run objmae learned --meta-objective mae_classification
fi
