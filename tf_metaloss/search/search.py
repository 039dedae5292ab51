"""The structure search: a genetic program over loss expressions.

`run_search(task, config, log_path)` evolves a population of expression
trees: the first generation holds the known losses written as expressions
(cross-entropy, generalized cross-entropy, MAE, focal), mutants of them and
random trees; each next generation keeps the `elite` best and fills the rest
with children of tournament-selected parents (subtree crossover, then
mutation). Every new candidate is scored by `fitness.evaluate_candidate` (its
constants tuned by the meta-gradient, then a proxy training run, scored on a
holdout); candidates equal up to argument order of `add`/`mul`/`min`/`max` and
constants rounded to 4 digits are scored once (the cache).

After every generation the JSON log at `log_path` is rewritten (atomically):
the configuration, every generation's candidates with their records, the
random generator's state and the next population. A search whose log exists
resumes from it: a killed search loses at most the generation it was in.
"""

import copy
import dataclasses
import json
import os
import random
import statistics
import time

from tf_metaloss import validation
from tf_metaloss.losses import expressions
from tf_metaloss.search import executors
from tf_metaloss.search import genetics

LOG_VERSION = 1


@dataclasses.dataclass
class SearchConfig:
    """How the population evolves.

    Attributes:
        population: candidates per generation (>= 4: the seeds fit in it).
        generations: generations to run (a resumed search runs up to this
            number in total).
        tournament: entrants per tournament selection.
        elite: best candidates copied unchanged into the next generation.
        crossover_rate: probability that a child is a subtree crossover of two
            parents (else a copy of one).
        mutation_rate: probability that a child is then mutated (a child equal
            to a scored tree is always mutated).
        max_depth, max_size: limits of a tree's depth and number of nodes.
        seed: seeds the random generator of the search.
    """

    population: int = 12
    generations: int = 5
    tournament: int = 3
    elite: int = 2
    crossover_rate: float = 0.6
    mutation_rate: float = 0.6
    max_depth: int = genetics.MAX_DEPTH
    max_size: int = genetics.MAX_SIZE
    seed: int = 0

    def __post_init__(self):
        validation.check_int("population", self.population, minimum=4)
        validation.check_positive_int("generations", self.generations)
        validation.check_positive_int("tournament", self.tournament)
        validation.check_int("elite", self.elite, minimum=0)
        if self.elite >= self.population:
            raise ValueError(
                "Invalid value for argument `elite`. Expected fewer elite candidates "
                f"than the population ({self.population}). Received: elite={self.elite}"
            )
        validation.check_fraction("crossover_rate", self.crossover_rate, True, True)
        validation.check_fraction("mutation_rate", self.mutation_rate, True, True)
        validation.check_int("max_depth", self.max_depth, minimum=2)
        validation.check_int("max_size", self.max_size, minimum=3)
        validation.check_int("seed", self.seed)

    def evolution(self):
        """The settings a resumed search must share (all but `generations`)."""
        settings = dataclasses.asdict(self)
        settings.pop("generations")
        return settings


def canonical(tree):
    """The cache key of a tree (see `Expression.canonical`)."""
    return expressions.Expression(tree).canonical()


def initial_population(rng, config):
    """The known losses, then mutants of them and random trees."""
    seeds = genetics.seed_trees()
    population = seeds[: config.population]
    while len(population) < config.population:
        if len(population) < 2 * len(seeds):
            tree = genetics.mutate(
                rng, rng.choice(seeds), max_depth=config.max_depth, max_size=config.max_size
            )
        else:
            tree = genetics.random_tree(rng, max_depth=min(4, config.max_depth))
        if genetics.valid(tree, max_depth=config.max_depth, max_size=config.max_size):
            population.append(tree)
    return population


def next_population(rng, config, trees, fitnesses, scored):
    """The next generation from this one's `trees` and `fitnesses`.

    Args:
        scored: the cache keys of every tree scored so far; a child equal to
            one of them is mutated (a few attempts) so that new trees are tried.
    """
    order = sorted(range(len(trees)), key=lambda i: fitnesses[i])
    children = [copy.deepcopy(trees[i]) for i in order[: config.elite]]
    limits = {"max_depth": config.max_depth, "max_size": config.max_size}
    keys = {canonical(t) for t in children}
    while len(children) < config.population:
        first = trees[genetics.tournament(rng, fitnesses, config.tournament)]
        if rng.random() < config.crossover_rate:
            second = trees[genetics.tournament(rng, fitnesses, config.tournament)]
            child = genetics.crossover(rng, first, second)
            if not genetics.valid(child, **limits):
                child = copy.deepcopy(first)
        else:
            child = copy.deepcopy(first)
        if rng.random() < config.mutation_rate:
            child = genetics.mutate(rng, child, **limits)
        for _ in range(5):
            key = canonical(child)
            if key not in scored and key not in keys:
                break
            child = genetics.mutate(rng, child, **limits)
        keys.add(canonical(child))
        children.append(child)
    return children


def _fitness_key(record):
    return record["fitness"] if record["status"] == "ok" else float("inf")


def _write_json(path, data):
    temporary = f"{path}.tmp"
    with open(temporary, "w") as file:
        json.dump(data, file, indent=1)
    os.replace(temporary, path)


def _rng_state(rng):
    version, state, gauss = rng.getstate()
    return [version, list(state), gauss]


def _set_rng_state(rng, state):
    version, internal, gauss = state
    rng.setstate((version, tuple(internal), gauss))


def load_log(path):
    """Reads a search log (a dict; see `run_search`)."""
    with open(path) as file:
        log = json.load(file)
    if not isinstance(log, dict) or log.get("version") != LOG_VERSION:
        raise ValueError(
            f"Invalid value for argument `log_path`. Expected a search log (version "
            f"{LOG_VERSION}) written by tf_metaloss.search. Received: log_path={path!r}. "
            "Write the search to a new file."
        )
    return log


def run_search(task, config=None, log_path=None, executor=None, resume=True, progress=None):
    """Runs (or resumes) a structure search; returns the log.

    Args:
        task: a `fitness.ProxyTask` (the data and the proxy run).
        config: a `SearchConfig` (`None`: the defaults).
        log_path: the JSON log written after every generation (`None`: none).
        executor: where candidates train (`executors.get(...)`; `None`: this
            process).
        resume: continue the search of an existing log at `log_path` (its
            evolution settings must match `config`); `False` overwrites it.
        progress: optional callable `progress(generation_record)` called after
            each generation.

    Returns:
        The log, a dict: `config`, `task` (the recipe), `generations` (per
        generation: `candidates` with their records and whether they were
        `cached`, `best`, `seconds`, `evaluated`), `state` (the random
        generator and the next population).

    Example:

    >>> from tf_metaloss.search import fitness, search
    >>> data = tml.evaluation.load_digits()
    >>> task = fitness.ProxyTask(data.x_train[:200], data.y_train[:200],
    ...     data.x_train[200:250], data.y_train[200:250], data.x_train[250:300],
    ...     data.y_train[250:300], num_classes=10, hidden_units=8, epochs=1, tune_epochs=0)
    >>> log = search.run_search(task, search.SearchConfig(population=4, generations=1))
    >>> [c["record"]["status"] for c in log["generations"][0]["candidates"]]
    ['ok', 'ok', 'ok', 'ok']
    """
    config = config or SearchConfig()
    executor = executor or executors.SerialExecutor()
    rng = random.Random(config.seed)
    log = None
    if log_path is not None and resume and os.path.exists(log_path):
        log = load_log(log_path)
        if log["config"]["evolution"] != config.evolution():
            raise ValueError(
                "Invalid value for argument `config`. Expected the evolution settings "
                f"of the search being resumed, {log['config']['evolution']}. Received: "
                f"{config.evolution()}. Resume with the same settings or start a new log."
            )
        _set_rng_state(rng, log["state"]["rng"])
        population = log["state"]["next_population"]
    if log is None:
        log = {
            "version": LOG_VERSION,
            "config": {"evolution": config.evolution(), "generations": config.generations},
            "task": task.summary(),
            "generations": [],
            "state": None,
        }
        population = initial_population(rng, config)
    log["config"]["generations"] = config.generations
    cache = {}
    for generation in log["generations"]:
        for candidate in generation["candidates"]:
            cache.setdefault(candidate["key"], candidate["record"])
    with executor.start(task):
        for index in range(len(log["generations"]), config.generations):
            start = time.time()
            keys = [canonical(tree) for tree in population]
            new = {}
            for key, tree in zip(keys, population):
                if key not in cache and key not in new:
                    new[key] = tree
            records = executor.evaluate(list(new.values()))
            cache.update(zip(new, records))
            candidates = []
            seen = set()
            for key, tree in zip(keys, population):
                cached = key not in new or key in seen
                seen.add(key)
                candidates.append(
                    {"expression": tree, "key": key, "cached": cached, "record": cache[key]}
                )
            fitnesses = [_fitness_key(c["record"]) for c in candidates]
            best = min(range(len(candidates)), key=lambda i: fitnesses[i])
            population_next = next_population(rng, config, population, fitnesses, set(cache))
            generation = {
                "generation": index,
                "seconds": round(time.time() - start, 3),
                "evaluated": len(new),
                "candidates": candidates,
                "best": candidates[best],
            }
            log["generations"].append(generation)
            log["state"] = {"rng": _rng_state(rng), "next_population": population_next}
            if log_path is not None:
                _write_json(log_path, log)
            if progress is not None:
                progress(generation)
            population = population_next
    return log


def best_candidates(log, count=5):
    """The `count` best distinct scored candidates of a log, best first."""
    records = {}
    for generation in log["generations"]:
        for candidate in generation["candidates"]:
            record = candidate["record"]
            if record["status"] == "ok" and candidate["key"] not in records:
                records[candidate["key"]] = {**record, "generation": generation["generation"]}
    return sorted(records.values(), key=lambda r: r["fitness"])[:count]


def fitness_curves(log):
    """Per generation: the best fitness so far, the generation's best and
    median fitness over its scored candidates (`None` where none was)."""
    so_far, best, median = [], [], []
    lowest = float("inf")
    for generation in log["generations"]:
        values = [
            c["record"]["fitness"]
            for c in generation["candidates"]
            if c["record"]["status"] == "ok"
        ]
        best.append(min(values) if values else None)
        median.append(statistics.median(values) if values else None)
        lowest = min([lowest, *values])
        so_far.append(lowest if lowest < float("inf") else None)
    return {"best so far": so_far, "generation best": best, "generation median": median}
