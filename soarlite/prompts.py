"""The paper's teacher and student prompts, and the parser of the teacher's question-answer pairs.

Templates keep their braces literal (`\\boxed{}` needs no escaping): the only slot is `{question}`, filled
by `student_prompt` with str.replace, never str.format.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from soarlite.rewards import MAX_CHARS, last_boxed, parses_as_math

# Our wording of the SOAR teacher prompt: no seed questions (the paper found the teacher copies them),
# the seven MATH subjects, a multi-step problem, and the tag format parse_teacher_output reads.
TEACHER_PROMPT_PAPER = (
    "You are writing practice problems for a strong math student.\n"
    "Write ONE new, original and challenging math problem. Solving it must take at least 2-3 steps of "
    "reasoning. It may come from any one of these subjects: Prealgebra, Algebra, Number Theory, "
    "Counting & Probability, Geometry, Intermediate Algebra, Precalculus. Do not copy a known problem.\n"
    "You may think and work out the solution first. Then give the problem and its final answer exactly "
    "in this format:\n"
    "<question>the full problem statement</question><answer>\\boxed{the final answer}</answer>\n"
    "The answer must be a single mathematical expression or value inside \\boxed{}."
)

# The paper's student prompt (also used to filter the fail@128 sets and to evaluate).
STUDENT_PROMPT_PAPER = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. "
    "The assistant first shows the complete reasoning process step by step, then provides the final "
    "answer in \\boxed{}. User: {question} Assistant:"
)

_SLOT = "{question}"
_QUESTION_RE = re.compile(r"<question>(.*?)</question>", re.DOTALL)
_ANSWER_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


def student_prompt(template: str, question: str) -> str:
    """`template` with its `{question}` slot filled; every other brace stays as written."""
    if _SLOT not in template:
        raise ValueError(f"student prompt template has no {_SLOT} slot: {template!r}")
    return template.replace(_SLOT, question.strip())


@dataclass(frozen=True)
class QA:
    question: str
    answer: str  # the content of the boxed answer, without `\boxed{}`


def parse_teacher_output(text: str) -> QA | None:
    """The teacher's pair, or None when it is not valid.

    Valid: a `<question>..</question>` with a non-empty question, then an `<answer>..</answer>` after it
    whose last `\\boxed{}` is complete, non-empty and parses as math (math_verify gives a sympy object).
    The last question block is used, with the first answer block after it: the teacher may draft or
    quote the tags while reasoning, and what it writes last is what it settled on. Only the last
    MAX_CHARS characters are read, as in the grader.
    """
    text = text[-MAX_CHARS:]
    questions = list(_QUESTION_RE.finditer(text))
    if not questions:
        return None
    q = questions[-1]
    a = _ANSWER_RE.search(text, q.end())
    question = q.group(1).strip()
    if a is None or not question:
        return None
    answer = last_boxed(a.group(1))
    if answer is None or not answer.strip() or not parses_as_math(answer):
        return None
    return QA(question=question, answer=answer.strip())
