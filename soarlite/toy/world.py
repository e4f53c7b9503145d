"""The toy world's problems: left-to-right chains of one-digit operations on small numbers, written by a sloppy writer.

A level-L problem is a start value and L operations, written compactly: "12 *2 -9 +4" means ((12*2)-9)+4 = 19, left
to right. Every true value stays in 0..99 and no (operation, digit) pair repeats within a problem, so each step is
one of a few thousand arithmetic facts and the next operation is never ambiguous to find.

Why hard problems are hard: the pretraining text that shows worked solutions is *sloppy*. Each step's result is
written wrong with probability `noise` (an overshoot by 1 to 3), and the chain goes on from the written value, so
an early slip is never undone. A model
trained on it learns the right result as the mode of every step but also the writer's error rate, so at temperature
1 it is right about (1 - noise) per step and a chain of L steps is right about (1 - noise)^L of the time. Long chains
are in distribution (pretraining has every level up to the hard one); they fail because a skill the model has is
unreliable, and the errors compound. RL on short chains, where right answers are common, sharpens every step
(it raises the per-step accuracy p), which moves p^L on long chains a lot; RL on the long chains themselves sees
(almost) no right answer, so RLOO has zero advantage to learn from.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

# Both prompts are short on purpose: every token of them is paid for in every rollout of a SOAR run on a CPU.
TEACHER_PROMPT = "Write a new math problem and its answer.\n"
STUDENT_PROMPT = "Question: {question}\nAnswer:"

MAX_VALUE = 99  # keeps every true value at one or two digits
MAX_LEVEL = 12


def student_prompt(question: str) -> str:
    return STUDENT_PROMPT.format(question=question)


def _apply(v: int, op: str, d: int) -> int:
    return v + d if op == "+" else v - d if op == "-" else v * d


@dataclass(frozen=True)
class Problem:
    start: int
    ops: tuple[tuple[str, int], ...]  # ("+", 5), ("*", 3), ...

    @property
    def level(self) -> int:
        return len(self.ops)

    def values(self) -> list[int]:
        """The true running values: start, then the value after each operation."""
        vals = [self.start]
        for op, d in self.ops:
            vals.append(_apply(vals[-1], op, d))
        return vals

    @property
    def answer(self) -> int:
        return self.values()[-1]

    @property
    def question(self) -> str:
        return " ".join([str(self.start)] + [f"{op}{d}" for op, d in self.ops])

    def written_values(self, rng: random.Random | None = None, noise: float = 0.0, habit: float = 0.0,
                       habit_op: str = "*") -> list[int]:
        """The running values as a writer with per-step error rate `noise` writes them: a wrong step overshoots what
        the previous *written* value gives by 1 to 3, and the chain continues from it. Overshoots only add up (every
        operation keeps a positive offset positive), so a chain with a slip never comes back to the right answer:
        a writer's chain is right with probability exactly (1 - noise)^L. noise 0: the true values.

        `habit` > 0 gives the writer a habit on `habit_op` steps, in place of its random slips there: it writes the
        result plus exactly one with probability `habit`. Above 0.5 the wrong value is the step's mode, so a model
        of this writer gets those steps wrong even greedily."""
        vals = [self.start]
        for op, d in self.ops:
            w = _apply(vals[-1], op, d)
            if habit and op == habit_op:
                if rng.random() < habit:
                    w += 1
            elif noise and rng.random() < noise:
                w += rng.choice((1, 2, 3))
            vals.append(w)
        return vals

    def steps(self, rng: random.Random | None = None, noise: float = 0.0, habit: float = 0.0,
              habit_op: str = "*") -> tuple[str, int]:
        """The worked steps ("*2=24 -9=15") and the answer they end on."""
        vals = self.written_values(rng, noise, habit, habit_op)
        return " ".join(f"{op}{d}={w}" for (op, d), w in zip(self.ops, vals[1:])), vals[-1]

    def student_solution(self, rng: random.Random | None = None, noise: float = 0.0, habit: float = 0.0,
                         habit_op: str = "*") -> str:
        """What follows student_prompt(question): the worked steps, then the boxed answer (the written one)."""
        steps, ans = self.steps(rng, noise, habit, habit_op)
        return f" {steps} \\boxed{{{ans}}}"

    def teacher_text(self, rng: random.Random | None = None, noise: float = 0.0) -> str:
        """What follows TEACHER_PROMPT. The teacher works the chain out first, then states it as a question; the
        paper lets reasoning sit outside the tags, and working first is how a writer gets the answer right (when
        its steps are)."""
        steps, ans = self.steps(rng, noise)
        return f"{self.start} {steps}\n<question>{self.question}</question><answer>\\boxed{{{ans}}}</answer>"

    def row(self) -> dict:
        return {"problem": self.question, "answer": str(self.answer), "level": self.level}


def random_problem(rng: random.Random, level: int) -> Problem:
    """A uniformly random valid chain: pick an operation among those that keep the value in 0..MAX_VALUE with a
    digit not used yet in this chain, then such a digit (multiplication by 1 is left out: it teaches nothing)."""
    while True:
        v = rng.randint(2, 20)
        start, ops, used = v, [], set()
        for _ in range(level):
            choices = {
                "+": [d for d in range(1, 10) if v + d <= MAX_VALUE and ("+", d) not in used],
                "-": [d for d in range(1, 10) if v - d >= 0 and ("-", d) not in used],
                "*": [d for d in range(2, 10) if v * d <= MAX_VALUE and ("*", d) not in used],
            }
            avail = [o for o in "+-*" if choices[o]]
            if not avail:
                break
            op = rng.choice(avail)
            d = rng.choice(choices[op])
            v = _apply(v, op, d)
            ops.append((op, d))
            used.add((op, d))
        if len(ops) == level:
            return Problem(start, tuple(ops))


def problems(seed: int, level: int, n: int, exclude: set[str] = frozenset()) -> list[Problem]:
    """n distinct problems of one level, deterministic by (seed, level); questions in `exclude` are skipped."""
    rng = random.Random(f"toy/{seed}/{level}")
    out, seen = [], set(exclude)
    for _ in range(1000 * n):
        if len(out) == n:
            break
        p = random_problem(rng, level)
        if p.question not in seen:
            seen.add(p.question)
            out.append(p)
    if len(out) < n:
        raise ValueError(f"level {level} has fewer than {n} distinct problems outside the excluded ones")
    return out


def stepping_stones(seed: int, n: int, levels=(1, 2, 3), exclude: set[str] = frozenset()) -> list[Problem]:
    """The world's true stepping stones: n short chains (levels taken in turn), where a base student is right often
    enough for RLOO to learn from, and what it learns (a surer step) is what the long chains need."""
    per = [n // len(levels) + (i < n % len(levels)) for i in range(len(levels))]
    out = [p for lv, k in zip(levels, per) if k for p in problems(seed * 1000 + 77, lv, k, exclude)]
    random.Random(f"toy/stones/{seed}").shuffle(out)
    return out


_QUESTION = re.compile(r"(\d{1,3})((?: [+\-*]\d)+)")
_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")
_PAIR = re.compile(r"<question>(.+?)</question><answer>\\boxed\{([^{}]+)\}</answer>", re.S)


def parse_question(question: str) -> Problem | None:
    """The Problem a question states, if it is in the world's grammar (a start and at least one operation)."""
    m = _QUESTION.fullmatch(question.strip())
    if not m:
        return None
    ops = tuple((t[0], int(t[1])) for t in m.group(2).split())
    if len(ops) > MAX_LEVEL:
        return None
    return Problem(int(m.group(1)), ops)


def difficulty(question: str) -> int | None:
    """The world's difficulty measure of a question: its number of operations (the level), None when the question
    is not in the world's grammar. At temperature 1 a base student solves a level-L chain about p^L of the time."""
    p = parse_question(question)
    return None if p is None else p.level


def last_boxed(text: str) -> str | None:
    found = _BOXED.findall(text)
    return found[-1].strip() if found else None


def check(completion: str, answer: str | int) -> bool:
    """Whether the last \\boxed{} of a completion is the answer. Answers here are integers, for which an exact
    integer match is what math_verify decides, at a thousandth of its cost."""
    got = last_boxed(completion)
    try:
        return got is not None and int(got) == int(answer)
    except ValueError:
        return False


def parse_pair(text: str) -> tuple[str, str] | None:
    """(question, answer) of a teacher output, or None. Stricter than the paper's validity (any boxed answer that
    parses as math): the answer must be an integer, which is all this world's questions have."""
    m = _PAIR.search(text)
    if not m or not m.group(1).strip():
        return None
    try:
        int(m.group(2).strip())
    except ValueError:
        return None
    return m.group(1).strip(), m.group(2).strip()
