"""A task of your own, in one file: the sum of a number's digits, with answers checked by a Python function.

Use it from any recipe without touching soarlite:

    soarlite run --recipe tiny task=examples/digit_sum_task.py:DigitSumTask model.base=PATH/TO/MODEL

The hard problems are made here from a seed (a real task would read its fail@k split from files, as `math` does).
Everything a grader worker calls (parse_teacher, reward, is_correct) is plain Python on strings: the worker builds
the task from the same `file.py:Class` string, so keep the constructor cheap.
"""

from __future__ import annotations

import random
import re

from soarlite.config import RecipeError
from soarlite.data import Problem
from soarlite.tasks import QA

_PAIR = re.compile(r"<question>(.+?)</question>\s*<answer>\\boxed\{\s*(-?\d+)\s*\}</answer>", re.S)
_BOXED = re.compile(r"\\boxed\{\s*(-?\d+)\s*\}")


class DigitSumTask:
    name = "digit-sum"
    teacher_prompt = (
        "Write a question that asks for the sum of the digits of a whole number, then its answer, exactly as\n"
        "<question>the question</question><answer>\\boxed{the number}</answer>\n"
    )

    def __init__(self, options: dict) -> None:
        unknown = sorted(set(options) - {"digits", "problems", "seed"})
        if unknown:
            raise ValueError(f"unknown option {unknown[0]!r}; allowed: digits, problems, seed")
        self.digits = int(options.get("digits", 12))  # long numbers: the hard problems
        self.problems = int(options.get("problems", 64))
        self.seed = int(options.get("seed", 0))

    def student_prompt(self, question: str) -> str:
        return f"Question: {question.strip()}\nAnswer:"

    def parse_teacher(self, text: str) -> QA | None:
        m = _PAIR.search(text)
        if m is None or not m.group(1).strip():
            return None
        return QA(m.group(1).strip(), m.group(2))

    def is_correct(self, completion: str, reference: str) -> bool:
        found = _BOXED.findall(completion)
        return bool(found) and int(found[-1]) == int(reference)

    def reward(self, completion: str, reference: str) -> float:
        return 1.0 if self.is_correct(completion, reference) else 0.0

    def check(self, cfg, with_data: bool) -> None:
        if self.digits < 1 or self.problems < 2:
            raise RecipeError("task_options: digits must be >= 1 and problems >= 2")

    def model_dir(self, cfg) -> str:
        return cfg.model.base

    def hard_problems(self, cfg, split: str) -> list[Problem]:
        rng = random.Random(f"digit-sum/{self.seed}/{split}")
        numbers = [rng.randrange(10 ** (self.digits - 1), 10**self.digits) for _ in range(self.problems // 2)]
        return [Problem(f"What is the sum of the digits of {n}?", str(sum(map(int, str(n))))) for n in numbers]
