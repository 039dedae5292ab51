"""Re-renders results.md and the figures of a `tf-metaloss compare` output
directory from its results.json (the summary and target checks are recomputed
from the stored per-run records; nothing is trained).

Usage: python scripts/render_results.py docs/figures/digits_noise40 [...]
"""

import json
import os
import sys

from tf_metaloss.evaluation import compare


def main(directories):
    for directory in directories:
        with open(os.path.join(directory, "results.json")) as f:
            results = json.load(f)
        results["summary"] = compare.summarize(
            results["runs"], results["config"].get("convergence_fraction", 0.9)
        )
        results["checks"] = compare.target_checks(results)
        for path in compare.write_results(results, directory).values():
            print("wrote", path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
