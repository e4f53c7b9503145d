"""Sample answers and count the right ones: the one place every accuracy, pass@k and learnability is counted.

The loop's greedy accuracy on the reward questions, the end-of-run pass@1, `soarlite eval`'s pass@k, Intrinsic-T's
learnability and the fail@k filter all ask the same thing: m answers per problem from some adapters, in one engine
call, graded by the task. Keeping it in one function keeps their prompts, orders and seeds comparable.
"""

from __future__ import annotations

from collections.abc import Sequence

from soarlite.data import Problem
from soarlite.engine import SamplingParams


def correct_counts(engine, grader, world, adapters: Sequence[str | None], problems: Sequence[Problem], samples: int,
                   params: SamplingParams, seed: int) -> list[list[int]]:
    """For each adapter (None = the base), for each problem: how many of `samples` answers are right.
    Everything is sampled in one engine call, adapter-major, then problem, then sample."""
    prompts = [world.student_prompt(p.problem) for _ in adapters for p in problems for _ in range(samples)]
    names = [a for a in adapters for _ in problems for _ in range(samples)]
    refs = [p.answer for _ in adapters for p in problems for _ in range(samples)]
    outs = engine.generate(prompts, names, params, seed)
    right = grader.correct([(c.text, r) for c, r in zip(outs, refs)])
    per_adapter = len(problems) * samples
    return [[sum(right[a * per_adapter + i * samples : a * per_adapter + (i + 1) * samples]) for i in range(len(problems))]
            for a in range(len(adapters))]


def greedy_accuracy(engine, grader, world, adapters: Sequence[str | None], problems: Sequence[Problem],
                    max_new_tokens: int) -> list[float]:
    """Greedy accuracy of each adapter on `problems` (the share answered right), all in one engine call."""
    counts = correct_counts(engine, grader, world, adapters, problems, 1, SamplingParams(0.0, max_new_tokens), seed=0)
    return [sum(c) / len(problems) for c in counts]


def sampled_counts(engine, grader, cfg, world, adapter: str | None, problems: Sequence[Problem], samples: int,
                   seed: int) -> list[int]:
    """How many of `samples` answers per problem at the student temperature are right, one count per problem."""
    params = SamplingParams(cfg.inner.temperature, cfg.inner.max_new_tokens)
    return correct_counts(engine, grader, world, [adapter], problems, samples, params, seed)[0]
