#!/usr/bin/env bash
# The SST-2 section of docs/RESULTS.md (preset sst2-tiny): a tiny BERT (2 layers of width 64)
# trained from scratch on a fixed 4,000-sentence subset of the GLUE SST-2 training split (3,600
# training + 400 clean meta sentences), sequences of 64 tokens, 4 epochs, Adam 1e-3, evaluated
# on the 872 dev sentences; 3 seeds, without label noise and with 30% symmetric noise. Every
# (cell, seed, method) runs in a process of its own, one at a time (2 CPU cores); each cell is
# then merged into one summary.
#
# Usage: DATA=/path/to/glue_sst2 scripts/run_sst2.sh [cell...]
#   DATA: a directory holding sst2_train.jsonl and sst2_dev.jsonl (or 'sst2' for TFDS)
#   cell: sym30 clean (default: both; seeds run outer so every cell has seed 0 first)
#   SEEDS="0 1 2", METHODS="ce gce meta_loss" (default), EXTRA="sample_weighted" (run after
#   the others, 30% noise only); OUT=docs/figures/sst2 (default): OUT/<cell>/runs/<method>_s<seed>/
#   per run, OUT/<cell>/ the merged results.{json,md} and figures.
#   SNAP=$(scripts/snapshot.sh) runs a frozen copy of the package (edits do not disturb it).
# A run whose results.json exists is skipped; delete it to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
export TF_CPP_MIN_LOG_LEVEL=3
# The snapshot if given, else this working tree (not an installed tf_metaloss).
export PYTHONPATH=${SNAP:-$PWD}
DATA=${DATA:?set DATA=/path/to/the directory of sst2_train.jsonl and sst2_dev.jsonl}
OUT=${OUT:-docs/figures/sst2}
SEEDS=${SEEDS:-0 1 2}
METHODS=${METHODS:-ce gce meta_loss}
EXTRA=${EXTRA:-sample_weighted}
CELLS=${*:-sym30 clean}
noise_args() {
  case $1 in
    sym30) echo "--noise 0.3 --noise-kind symmetric" ;;
    clean) echo "--noise 0" ;;
    *) echo "unknown cell: $1" >&2; exit 2 ;;
  esac
}
run() {  # cell seed method
  local out=$OUT/$1/runs/${3}_s$2
  if [[ -f $out/results.json ]]; then echo "skip $out"; return; fi
  mkdir -p "$out"
  # shellcheck disable=SC2046
  # scripts/compare.py, not `python -m`: `-m` puts the working tree ahead of PYTHONPATH.
  python scripts/compare.py --preset sst2-tiny --dataset "$DATA" $(noise_args "$1") \
    --seeds "$2" --methods "$3" --no-figures --output-dir "$out" \
    2>&1 | grep --line-buffered -v -E "cuInit|absl::|oneDNN|cuda drivers|cpu_feature|AVX|^WARNING: All" \
    | tee "$out/console.txt"
}
for seed in $SEEDS; do
  for cell in $CELLS; do
    for method in $METHODS; do run "$cell" "$seed" "$method"; done
  done
done
for seed in $SEEDS; do
  for method in $EXTRA; do
    [[ " $CELLS " == *" sym30 "* ]] && run sym30 "$seed" "$method"
  done
done
for cell in $CELLS; do
  parts=("$OUT/$cell"/runs/*/results.json)
  python scripts/compare.py --merge "${parts[@]}" --output-dir "$OUT/$cell"
done
