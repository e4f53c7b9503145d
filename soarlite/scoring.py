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


def question_profiles(task, grader, datasets) -> tuple[dict | None, list[dict] | None]:
    """What the teacher asked this step, where the task can say: for all its pairs and for each dataset, how many
    questions fall at each value of the task's difficulty measure, and the share of its answers that are right
    (graded against the task's own answer to the question, in the grader's workers, in one call for the whole step).
    (None, None) when the task has no difficulty measure (`math`)."""
    difficulty = getattr(task, "difficulty", None)
    if difficulty is None:
        return None, None
    pairs = [qa for ds in datasets for qa in ds]
    levels = [difficulty(qa.question) for qa in pairs]
    solve = getattr(task, "reference_answer", None)
    truths = [solve(qa.question) for qa in pairs] if solve is not None else [None] * len(pairs)
    known = [k for k, t in enumerate(truths) if t is not None]
    graded = grader.correct([(f"\\boxed{{{pairs[k].answer}}}", truths[k]) for k in known]) if known else []
    right = dict(zip(known, graded))

    def profile(idx: range) -> dict:
        histogram: dict[str, int] = {}
        for k in idx:
            key = "other" if levels[k] is None else str(levels[k])
            histogram[key] = histogram.get(key, 0) + 1
        ordered = dict(sorted(histogram.items(), key=lambda kv: (kv[0] == "other", len(kv[0]), kv[0])))
        marks = [right[k] for k in idx if k in right]
        return {"difficulty": ordered, "answers_right": sum(marks) / len(marks) if marks else None}

    bounds = [0]
    for ds in datasets:
        bounds.append(bounds[-1] + len(ds))
    return profile(range(len(pairs))), [profile(range(lo, hi)) for lo, hi in zip(bounds, bounds[1:])]
