#!/usr/bin/env bash
# A small loss search on CIFAR-10-dev with 40% symmetric label noise (about 15
# minutes on 2 CPU cores): 5,000 training images (4,000 noisy for training, 500
# clean meta images for the constant tuning, 500 clean holdout images for the
# fitness; the validation split is not touched), the small CNN, proxy runs of
# 15 epochs after 3 epochs of constant tuning, 8 candidates x 5 generations.
# Writes the log, report and fitness curve to docs/figures/symbolic/cifar10_dev_noise40
# (running it again resumes a killed search).
# Usage: scripts/search_cifar.sh [path to cifar10_dev.npz]
set -euo pipefail
cd "$(dirname "$0")/.."
export TF_CPP_MIN_LOG_LEVEL=3
DATA=${1:-../shared/data/cifar10_dev.npz}
OUT=docs/figures/symbolic/cifar10_dev_noise40
mkdir -p "$OUT"
start=$(date +%s)
python -m tf_metaloss search --dataset "$DATA" --noise 0.4 --train-subset 5000 \
  --model small_cnn --hidden-units 64 --batch-size 128 --learning-rate 0.05 \
  --epochs 15 --tune-epochs 3 --population 8 --generations 5 --seed 0 \
  --objective mae_classification --workers 1 --output "$OUT" | tee -a "$OUT/output.txt"
echo "wall time: $(( $(date +%s) - start )) s" | tee -a "$OUT/output.txt"
