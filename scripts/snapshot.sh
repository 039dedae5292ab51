#!/usr/bin/env bash
# Copies the current tf_metaloss package to a private directory, so long result
# runs are not disturbed by edits made to the working tree while they run.
# Prints the directory; use it as PYTHONPATH. Records the git commit and the
# state of the working tree in SOURCE.txt.
# Usage: SNAP=$(scripts/snapshot.sh) && PYTHONPATH=$SNAP python scripts/compare.py ...
set -euo pipefail
cd "$(dirname "$0")/.."
snap=${1:-/tmp/tf_metaloss_snapshot_$(date +%Y%m%d_%H%M%S)}
mkdir -p "$snap"
cp -r tf_metaloss "$snap/"
find "$snap" -name __pycache__ -prune -exec rm -rf {} +
{
  echo "commit: $(git rev-parse HEAD)"
  echo "working-tree changes to tf_metaloss/ at snapshot time:"
  git status --short -- tf_metaloss
  echo "sha256 of the copied sources:"
  (cd "$snap" && find tf_metaloss -name '*.py' | sort | xargs sha256sum)
} > "$snap/SOURCE.txt"
echo "$snap"
