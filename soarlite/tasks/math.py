"""The `math` task: the paper's prompts, the teacher-output parser, the 120/20/10/0 reward with Math-Verify, and the
loaders of MATH, HARP and OlympiadBench (local JSONL files, or the Hugging Face Hub for `soarlite filter`).

Templates keep their braces literal (`\\boxed{}` needs no escaping): the only slot is `{question}`, filled
by `student_prompt` with str.replace, never str.format.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from soarlite.config import RecipeError
from soarlite.data import DataError, Problem, check_row, load_problems, load_rows
from soarlite.tasks import QA, fill_prompt
from soarlite.tasks.math_answers import (
    MAX_CHARS,
    grading_key,
    is_correct,
    known_result,
    last_boxed,
    math_reward,
    parses_as_math,
)

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

# A power whose exponent holds a power (`9^{9^{9}}`, `9^9^9`): as a reference, sympy would try to evaluate it against
# every student rollout, each costing the grader's whole time limit. No MATH answer is one; refusing it costs nothing.
_NESTED_POWER_RE = re.compile(r"\^\s*\{[^{}]*\^|\^\s*[\w.]+\s*\^")
_QUESTION_RE = re.compile(r"<question>(.*?)</question>", re.DOTALL)
_ANSWER_RE = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)


student_prompt = fill_prompt  # the paper's student prompt is a template with a {question} slot


def parse_teacher_output(text: str) -> QA | None:
    """The teacher's pair, or None when it is not valid.

    Valid: a `<question>..</question>` with a non-empty question, then an `<answer>..</answer>` after it
    whose last `\\boxed{}` is complete, non-empty, not a tower of powers, and parses as math (math_verify gives a
    sympy object).
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
    if answer is None or not answer.strip() or _NESTED_POWER_RE.search(answer) or not parses_as_math(answer):
        return None
    return QA(question=question, answer=answer.strip())


# ------------------------------------------------------------------------------------------------ the task
class MathTask:
    """Competition math: the paper's prompts, Math-Verify grading, fail@k splits from JSONL files (data.hard_train,
    data.hard_test) made by `soarlite filter` from a data source (data.source: a file or hub:NAME)."""

    name = "math"
    teacher_prompt = TEACHER_PROMPT_PAPER
    student_template = STUDENT_PROMPT_PAPER

    def __init__(self, options: dict | None = None) -> None:
        if options:
            raise ValueError(f"the {self.name} task takes no options, got {sorted(options)}")

    def student_prompt(self, question: str) -> str:
        return fill_prompt(self.student_template, question)

    def parse_teacher(self, text: str) -> QA | None:
        return parse_teacher_output(text)

    def reward(self, completion: str, reference: str) -> float:
        return math_reward(completion, reference)

    def is_correct(self, completion: str, reference: str) -> bool:
        return is_correct(completion, reference)

    def grading_key(self, completion: str, reference: str) -> tuple | None:
        """The grader's key (soarlite.tasks.math_answers.grading_key); None in a subclass that grades its own way."""
        cls = type(self)
        if cls.reward is not MathTask.reward or cls.is_correct is not MathTask.is_correct:
            return None
        return grading_key(completion, reference)

    def known_result(self, method: str, key: tuple) -> float | bool | None:
        """What `method` gives for every item with this key, when the key decides it (math_answers.known_result)."""
        return known_result(method, key)

    def check(self, cfg, with_data: bool) -> None:
        if cfg.outer.steps > 0 and not cfg.data.hard_train:
            raise RecipeError("data.hard_train: empty; name the grounding set (a JSONL file made by `soarlite filter`)")
        if with_data:
            for key in ("hard_train", "hard_test"):
                value = getattr(cfg.data, key)
                if value and not Path(value).is_file():
                    raise RecipeError(f"data.{key}: no file {value} (make the fail@k split with `soarlite filter`)")

    def model_dir(self, cfg) -> str:
        return cfg.model.base

    def hard_problems(self, cfg, split: str) -> list[Problem]:
        path = cfg.data.hard_train if split == "train" else cfg.data.hard_test
        return load_problems(path, cfg.data.problem_field, cfg.data.answer_field) if path else []

    def load_source(self, source: str, cfg) -> list[dict]:
        """Rows of a data source for `soarlite filter`: `hub:NAME` or a JSONL(.gz) file (with the field mapping)."""
        if source.startswith("hub:"):
            return hub_rows(source[4:])
        return load_rows(source, cfg.data.problem_field, cfg.data.answer_field)


# ------------------------------------------------------------------------------------------------ the Hub
# Hub rows are mapped to the same `problem` / `answer` fields the project's local files use (see
# `shared/data/README.md`: the answer is the source's LaTeX, only unwrapped from `\\boxed{}` or `$..$`), so a split
# filtered from the Hub and one filtered from a local copy are the same rows.
def _math_answer(row: dict) -> str | None:
    return last_boxed(row.get("solution") or "")


def _unwrap_dollars(text: str) -> str:
    """`$x$` -> `x`; a text with more than one pair of `$` stays as written (HARP's authors' convention)."""
    t = text.strip()
    return t[1:-1].strip() if len(t) >= 2 and t[0] == t[-1] == "$" and "$" not in t[1:-1] else t


@dataclass(frozen=True)
class Benchmark:
    path: str  # the Hub dataset id, or "json" with `data_files`
    configs: tuple[str | None, ...]  # each config's split is read and concatenated
    split: str
    problem: str  # field of the problem statement
    answer: Callable[[dict], str | None]  # the reference answer from a raw row
    data_files: str | None = None
    rows: int = 0  # how many rows the paper's version has (a check, and what `soarlite filter` shows)


_MATH_SUBJECTS = ("algebra", "counting_and_probability", "geometry", "intermediate_algebra", "number_theory",
                  "prealgebra", "precalculus")

BENCHMARKS: dict[str, Benchmark] = {
    # MATH (Hendrycks et al. 2021), the 5000-problem test split; the answer is the last \\boxed{} of the solution
    "math": Benchmark("EleutherAI/hendrycks_math", _MATH_SUBJECTS, "test", "problem", _math_answer, rows=5000),
    "math500": Benchmark("HuggingFaceH4/MATH-500", (None,), "test", "problem", lambda r: r.get("answer"), rows=500),
    # HARP is published by its authors as a zipped JSONL, not as a Hub dataset; `datasets` reads it the same way
    "harp": Benchmark("json", (None,), "train", "problem", lambda r: _unwrap_dollars(r.get("answer") or ""),
                      data_files="https://github.com/aadityasingh/HARP/raw/refs/heads/main/HARP.jsonl.zip", rows=4780),
    # OlympiadBench, English, text-only, open-ended math; the first final answer, without `$`
    "olympiadbench": Benchmark("Hothan/OlympiadBench", ("OE_TO_maths_en_COMP",), "train", "question",
                               lambda r: (r.get("final_answer") or [""])[0].replace("$", "").strip(), rows=674),
}


def hub_rows(name: str, fetch: Callable[..., Iterable[dict]] | None = None) -> list[dict]:
    """The rows of benchmark `name` from the Hub, mapped to `problem` / `answer` (the raw fields are kept).
    `fetch(path, config, split, data_files)` yields raw rows; by default `datasets.load_dataset`."""
    if name not in BENCHMARKS:
        raise DataError(f"hub:{name}: unknown benchmark; known: {', '.join('hub:' + b for b in BENCHMARKS)}")
    b = BENCHMARKS[name]
    fetch = fetch or _load_dataset
    rows = []
    for config in b.configs:
        where = f"hub:{name} ({b.path}{'/' + config if config else ''}, split {b.split})"
        for i, raw in enumerate(fetch(b.path, config, b.split, b.data_files)):
            raw = dict(raw)
            mapped = {**raw, "problem": raw.get(b.problem), "answer": b.answer(raw)}
            rows.append(check_row(mapped, f"{where} row {i}", "problem", "answer"))
    if not rows:
        raise DataError(f"hub:{name}: no rows")
    return rows


def _load_dataset(path: str, config: str | None, split: str, data_files: str | None) -> Iterable[dict]:
    from soarlite.extras import require

    require("datasets", "hub")
    import datasets

    try:
        return datasets.load_dataset(path, config, split=split, data_files=data_files)
    except Exception as e:  # no network, a renamed dataset: one line a user can act on, not a traceback
        raise DataError(f"{path}: could not load from the Hugging Face Hub ({type(e).__name__}: {e})") from None
