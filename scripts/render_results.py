"""Re-renders results.md and the figures of a `tf-metaloss compare` output
directory from its results.json (the summary is recomputed from the stored
per-run records; nothing is trained).

Usage: python scripts/render_results.py docs/figures/digits_noise40 [...]
"""

import json
import os
import sys

from tf_metaloss.evaluation import report
from tf_metaloss.evaluation import summary


def main(directories):
    for directory in directories:
        with open(os.path.join(directory, "results.json")) as f:
            results = json.load(f)
        results["summary"] = summary.summarize(
            results["runs"], results["config"].get("convergence_fraction", 0.9)
        )
        results.pop("checks", None)  # written by versions that evaluated the project's targets
        for path in report.write_results(results, directory).values():
            print("wrote", path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
