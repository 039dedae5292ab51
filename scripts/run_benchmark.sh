#!/usr/bin/env bash
# The full-length benchmark of docs/RESULTS.md (preset cifar10-dev-full): the whole cifar10_dev
# training split (9,000 training + 1,000 clean meta images), conv32-64-128, 30 epochs, 3 seeds,
# under symmetric 40%, asymmetric 40% and no label noise. Every (noise, seed, method) runs in a
# process of its own, so runs can be spread over machines or resumed; each noise setting is then
# merged into one summary.
#
# Usage: DATA=/path/cifar10_dev.npz scripts/run_benchmark.sh [cell...]
#   cell: sym40 asym40 clean (default: all three)
#   SEEDS="0 1 2" and METHODS="ce gce ..." (default: the preset's methods) narrow the runs;
#   OUT=docs/figures/full (default) is where they go: OUT/<cell>/runs/<method>_s<seed>/ per run,
#   OUT/<cell>/ the merged results.{json,md} and figures.
# A run whose results.json exists is skipped; delete it to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
export TF_CPP_MIN_LOG_LEVEL=3
DATA=${DATA:?set DATA=/path/to/cifar10_dev.npz}
OUT=${OUT:-docs/figures/full}
SEEDS=${SEEDS:-0 1 2}
METHODS=${METHODS:-$(python -c '
from tf_metaloss.evaluation.config import FULL_BENCHMARK_METHODS
print(" ".join(FULL_BENCHMARK_METHODS))')}
for cell in "${@:-sym40 asym40 clean}"; do
  for c in $cell; do
    case $c in
      sym40) NOISE=(--noise 0.4 --noise-kind symmetric) ;;
      asym40) NOISE=(--noise 0.4 --noise-kind asymmetric) ;;
      clean) NOISE=(--noise 0) ;;
      *) echo "unknown cell: $c" >&2; exit 2 ;;
    esac
    parts=()
    for seed in $SEEDS; do
      for method in $METHODS; do
        # Without noise the oracle is cross-entropy itself.
        [[ $c == clean && $method == oracle ]] && continue
        run=$OUT/$c/runs/${method}_s$seed
        parts+=("$run/results.json")
        if [[ -f $run/results.json ]]; then echo "skip $run"; continue; fi
        mkdir -p "$run"
        python -m tf_metaloss compare --preset cifar10-dev-full --dataset "$DATA" "${NOISE[@]}" \
          --seeds "$seed" --methods "$method" --no-figures --output-dir "$run" \
          2>&1 | tee "$run/console.txt"
      done
    done
    python -m tf_metaloss compare --merge "${parts[@]}" --output-dir "$OUT/$c"
  done
done
