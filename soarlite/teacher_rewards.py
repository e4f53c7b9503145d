"""The teacher's reward per dataset, a strategy the recipe chooses (`outer.reward`).

    grounded   SOAR: the mean gain of the dataset's students on the reward questions (hard problems), over the
               baseline student: R_k = mean_j [Acc(student_kj, Q_R) - Acc(baseline, Q_R)]
    intrinsic  the Intrinsic-T baseline: the learnability of the dataset's questions to the baseline student,
               mean over its questions of (1 - s if s > 0 else 0), s its success rate over inner.group_size samples
               graded against the teacher's own answer; it rewards questions the student sometimes solves, whether
               or not they help on the hard problems

Promotion always uses the grounded rewards (the paper's Intrinsic-T changes only what the teacher learns from).
A strategy takes what one outer step knows and returns one reward per dataset.
"""

from __future__ import annotations

from collections.abc import Callable

from soarlite.data import Problem
from soarlite.names import STUDENT, seed_for
from soarlite.scoring import sampled_counts
from soarlite.tasks import QA


def grounded(engine, grader, cfg, world, datasets: list[list[QA]], gains: list[list[float]], seed: int) -> list[float]:
    return [sum(gk) / len(gk) for gk in gains]


def intrinsic(engine, grader, cfg, world, datasets: list[list[QA]], gains: list[list[float]], seed: int) -> list[float]:
    m = cfg.inner.group_size
    questions = [Problem(qa.question, qa.answer) for d in datasets for qa in d]
    counts = sampled_counts(engine, grader, cfg, world, STUDENT, questions, m, seed_for(seed, "learnability"))
    r = [0.0 if c == 0 else 1.0 - c / m for c in counts]
    rewards, at = [], 0
    for d in datasets:
        rewards.append(sum(r[at : at + len(d)]) / len(d))
        at += len(d)
    return rewards


STRATEGIES: dict[str, Callable[..., list[float]]] = {"grounded": grounded, "intrinsic": intrinsic}
