#!/usr/bin/env bash
# Chooses the meta-learning settings on cifar10_dev WITHOUT its validation split:
# every run evaluates on a 20% holdout of the training subset (--eval-split holdout).
# Usage: SNAP=$(scripts/snapshot.sh) scripts/tune_cifar.sh [noise] [round]
set -euo pipefail
cd "$(dirname "$0")/.."
export TF_CPP_MIN_LOG_LEVEL=3
export PYTHONPATH=${SNAP:?set SNAP=\$(scripts/snapshot.sh)}
NOISE=${1:-0.4}
ROUND=${2:-1}
COMMON=(--dataset /work/shared/data/cifar10_dev.npz --noise "$NOISE" --eval-split holdout
        --epochs 20 --model small_cnn --hidden-units 64 --train-subset 5000
        --batch-size 128 --learning-rate 0.05 --no-figures --quiet)
run() {  # name, seeds, methods, extra args...
  local name=$1 seeds=$2 methods=$3; shift 3
  local out=docs/figures/tuning/cifar10_dev_n${NOISE}_${name}
  if [[ -f $out/.done ]]; then echo "skip $name"; return; fi
  echo "== $name: seeds $seeds $methods $*"
  # shellcheck disable=SC2086
  python scripts/compare.py "${COMMON[@]}" --seeds $seeds --methods "$methods" "$@" \
    --output-dir "$out"
  touch "$out/.done"
}
if [[ $NOISE == 0.4 && $ROUND == 1 ]]; then  # seed 0, one factor at a time
  run refs 0 ce,gce,sce,oracle
  run base 0 meta_loss,sample_weighted
  run mlr0.03 0 meta_loss,sample_weighted --meta-learning-rate 0.03
  run mlr0.003 0 meta_loss,sample_weighted --meta-learning-rate 0.003
  run every5 0 meta_loss,sample_weighted --meta-every 5
  run clip1 0 meta_loss,sample_weighted --meta-clipnorm 1
  run mbatch500 0 meta_loss,sample_weighted --meta-batch-size 500
  run objmae 0 meta_loss --meta-objective mae_classification
elif [[ $NOISE == 0.4 ]]; then  # round 2: the promising setting on more seeds
  run refs_s12 "1 2" ce,gce,sce,oracle
  run base_s12 "1 2" meta_loss
  run objmae_s12 "1 2" meta_loss,sample_weighted --meta-objective mae_classification
else
  run base 0 ce,meta_loss
  run objmae 0 meta_loss --meta-objective mae_classification
fi
