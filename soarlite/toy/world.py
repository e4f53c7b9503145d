"""The toy world's problems: left-to-right chains of small-number operations, and the two text formats.

A level-L problem is a start value and L operations ("Start with 7. Add 5. Multiply by 3."). Every value stays in
0..99, so each step is one of a few thousand arithmetic facts a tiny model can learn; difficulty comes from the
length of the chain, which is what a small transformer generalises worst. The hard split is the longest level, seen
rarely or never in pretraining; the levels below it are the stepping stones a teacher can learn to write.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

# Both prompts are short on purpose: every token of them is paid for in every rollout of a SOAR run on a CPU.
TEACHER_PROMPT = "Write a new math problem and its answer.\n"
STUDENT_PROMPT = "Question: {question}\nAnswer:"

MAX_VALUE = 99  # keeps every number at one or two digits

_WORD = {"+": "Add {d}.", "-": "Subtract {d}.", "*": "Multiply by {d}."}


def student_prompt(question: str) -> str:
    return STUDENT_PROMPT.format(question=question)


@dataclass(frozen=True)
class Problem:
    start: int
    ops: tuple[tuple[str, int], ...]  # ("+", 5), ("*", 3), ...

    @property
    def level(self) -> int:
        return len(self.ops)

    def values(self) -> list[int]:
        """The running values: start, then the value after each operation."""
        vals = [self.start]
        for op, d in self.ops:
            v = vals[-1]
            vals.append(v + d if op == "+" else v - d if op == "-" else v * d)
        return vals

    @property
    def answer(self) -> int:
        return self.values()[-1]

    @property
    def question(self) -> str:
        return " ".join([f"Start with {self.start}."] + [_WORD[op].format(d=d) for op, d in self.ops])

    def steps(self) -> str:
        vals = self.values()
        return " ".join(f"{v} {op} {d} = {w}." for v, (op, d), w in zip(vals, self.ops, vals[1:]))

    def student_solution(self) -> str:
        """What follows student_prompt(question): the worked steps, then the boxed answer."""
        return f" {self.steps()} \\boxed{{{self.answer}}}"

    def teacher_text(self) -> str:
        """What follows TEACHER_PROMPT. The teacher works the chain out first, then states it as a question; the
        paper lets reasoning sit outside the tags, and working first is how a writer gets the answer right."""
        return f"{self.steps()}\n<question>{self.question}</question><answer>\\boxed{{{self.answer}}}</answer>"

    def row(self) -> dict:
        return {"problem": self.question, "answer": str(self.answer), "level": self.level}


def random_problem(rng: random.Random, level: int) -> Problem:
    """A uniformly random valid chain: pick an operation among those that keep the value in 0..MAX_VALUE, then a
    digit among those that do (multiplication by 1 is left out: it is a step that teaches nothing)."""
    v = rng.randint(2, 20)
    start, ops = v, []
    for _ in range(level):
        choices = {
            "+": [d for d in range(1, 10) if v + d <= MAX_VALUE],
            "-": [d for d in range(1, 10) if v - d >= 0],
            "*": [d for d in range(2, 10) if v * d <= MAX_VALUE],
        }
        op = rng.choice([o for o in "+-*" if choices[o]])
        d = rng.choice(choices[op])
        v = v + d if op == "+" else v - d if op == "-" else v * d
        ops.append((op, d))
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


_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")
_PAIR = re.compile(r"<question>(.+?)</question><answer>\\boxed\{([^{}]+)\}</answer>", re.S)


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
