"""Wall time of scoring the same loss candidates with 1 and 2 local workers.

Scores 8 candidates (the four seeds of the search and four fixed mutants) on
digits with 40% symmetric noise, once in this process (`--workers 1` of
`tf-metaloss search`) and once in 2 worker processes, and prints both times and
the speed-up. Worker start-up (spawn, importing TensorFlow) is included: it is
what a search pays once per run.

Usage: python scripts/search_speedup.py [--epochs 10]
"""

import argparse
import time

import tf_metaloss as tml
from tf_metaloss.search import executors

CANDIDATES = tml.search.genetics.seed_trees() + [
    ["neg", ["log", ["add", "p_true", 0.3]]],
    ["div", ["sub", 1.0, ["pow", "p_true", 0.5]], 0.5],
    ["mul", 2.0, ["sub", 1.0, ["tanh", "p_true"]]],
    ["neg", ["mul", ["pow", ["sub", 1.0, "p_true"], 1.0], "log_p_true"]],
]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    task = tml.search.make_task(
        tml.evaluation.load_digits(), noise=0.4, hidden_units=64, epochs=args.epochs, tune_epochs=2
    )
    times = {}
    for workers in (1, 2):
        start = time.time()
        with executors.get("local", workers=workers).start(task) as executor:
            records = executor.evaluate(CANDIDATES)
        times[workers] = time.time() - start
        ok = sum(r["status"] == "ok" for r in records)
        print(
            f"{workers} worker(s): {times[workers]:.1f} s for {len(CANDIDATES)} candidates "
            f"({ok} scored)",
            flush=True,
        )
    print(f"speed-up with 2 workers: {times[1] / times[2]:.2f}x")


if __name__ == "__main__":
    main()
