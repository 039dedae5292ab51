#!/usr/bin/env bash
# Produces the tables and figures of docs/RESULTS.md (reported on the validation
# splits). The meta-learning settings were chosen beforehand on holdouts of the
# training splits (scripts/tune_digits.sh, scripts/tune_cifar.sh).
# Usage: SNAP=$(scripts/snapshot.sh) nohup scripts/run_results.sh [which...] &
#   which: digits0 digits40 cifar0 cifar40 (default: all four, in this order)
# Each run writes docs/figures/<name>/{results.json,results.md,learning_curves.png,phi.png}
# and its console output to docs/figures/<name>/console.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
export TF_CPP_MIN_LOG_LEVEL=3
export PYTHONPATH=${SNAP:?set SNAP=\$(scripts/snapshot.sh)}
# The methods of those tables ("all" at the time; the two-stage baselines came later).
METHODS=ce,focal,label_smoothing,poly1,gce,sce,meta_loss,blend,polynomial,neural,sample_weighted,frozen,schedule,oracle
# Chosen on the holdouts (see docs/RESULTS.md, "How the settings were chosen").
META=(--meta-learning-rate 0.01 --meta-every 1 --meta-objective mae_classification
      --schedule-final mae_classification=1)
DIGITS=(--dataset digits --epochs 60 --batch-size 64 --learning-rate 0.05
        --model mlp --hidden-units 128)
CIFAR=(--dataset /work/shared/data/cifar10_dev.npz --epochs 20 --batch-size 128
       --learning-rate 0.05 --model small_cnn --hidden-units 64 --train-subset 5000)
run() {  # name, args...
  local name=$1; shift
  local out=docs/figures/$name
  if [[ -f $out/.done ]]; then echo "skip $name"; return; fi
  mkdir -p "$out"
  cp "$SNAP/SOURCE.txt" "$out/SOURCE.txt"
  python scripts/compare.py "$@" --seeds 0 1 2 --methods "$METHODS" "${META[@]}" \
    --output-dir "$out" 2>&1 | grep --line-buffered -v -E "cuInit|absl::|oneDNN|cuda drivers|cpu_feature|AVX|^WARNING: All" \
    | tee "$out/console.txt"
  touch "$out/.done"
}
for which in "${@:-digits0 digits40 cifar0 cifar40}"; do
  for w in $which; do
    case $w in
      digits0) run digits_noise0 "${DIGITS[@]}" --noise 0 ;;
      digits40) run digits_noise40 "${DIGITS[@]}" --noise 0.4 ;;
      cifar0) run cifar10_dev_noise0 "${CIFAR[@]}" --noise 0 ;;
      cifar40) run cifar10_dev_noise40 "${CIFAR[@]}" --noise 0.4 ;;
      *) echo "unknown: $w" >&2; exit 2 ;;
    esac
  done
done
