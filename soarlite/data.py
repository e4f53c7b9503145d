"""Problems: rows with a problem and a reference answer, from JSONL / JSONL.gz files.

Domain-free: a task (soarlite.tasks) decides which files hold its hard problems, and where else rows can come from
(the math task reads MATH, HARP and OlympiadBench from the Hugging Face Hub too).
"""

from __future__ import annotations

import gzip
import json
import math
from dataclasses import dataclass
from pathlib import Path


class DataError(ValueError):
    """A data file is wrong; the message names the file, the line and the field."""


@dataclass(frozen=True)
class Problem:
    problem: str
    answer: str


def check_row(row, where: str, problem_field: str, answer_field: str) -> dict:
    """The row with `problem` and `answer` set from the mapped fields; every other field kept as it was."""
    if not isinstance(row, dict):
        raise DataError(f"{where}: a row must be a JSON object")
    texts = [_text(row.get(name), where, name) for name in (problem_field, answer_field)]
    return {**row, "problem": texts[0], "answer": texts[1]}


def _text(value, where: str, name: str) -> str:
    """A field as text: a string, or a finite number written out (`2`, `0.5`); anything else is refused."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise DataError(f"{where}: field {name!r} is missing or empty")
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DataError(f"{where}: field {name!r} must be a string or a number, not {type(value).__name__} "
                        f"({json.dumps(value)[:40]})")
    if not math.isfinite(value):
        raise DataError(f"{where}: field {name!r} is {value!r}, not a finite number; write the answer as a string")
    return str(value)


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def load_rows(path: str | Path, problem_field: str = "problem", answer_field: str = "answer") -> list[dict]:
    """Every row of a JSONL(.gz) file, checked, with `problem` and `answer` mapped from the given fields."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    opener = gzip.open if path.suffix == ".gz" else open
    rows = []
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line, parse_constant=_no_constant)
                except (json.JSONDecodeError, ValueError) as e:
                    raise DataError(f"{path}:{lineno}: not JSON ({getattr(e, 'msg', e)})") from None
                rows.append(check_row(row, f"{path}:{lineno}", problem_field, answer_field))
    except (OSError, EOFError, UnicodeDecodeError) as e:  # a truncated .gz or a binary file
        raise DataError(f"{path}: unreadable ({e})") from None
    if not rows:
        raise DataError(f"{path}: no rows")
    return rows


def load_problems(path: str | Path, problem_field: str = "problem", answer_field: str = "answer") -> list[Problem]:
    return [Problem(r["problem"], r["answer"]) for r in load_rows(path, problem_field, answer_field)]
