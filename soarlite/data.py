"""Problems: rows with a problem and a reference answer, from JSONL / JSONL.gz files.

Domain-free: a task (soarlite.tasks) decides which files hold its hard problems, and where else rows can come from
(the math task reads MATH, HARP and OlympiadBench from the Hugging Face Hub too).
"""

from __future__ import annotations

import gzip
import json
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
    for name in (problem_field, answer_field):
        value = row.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            raise DataError(f"{where}: field {name!r} is missing or empty")
    return {**row, "problem": str(row[problem_field]), "answer": str(row[answer_field])}


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
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise DataError(f"{path}:{lineno}: not JSON ({e.msg})") from None
                rows.append(check_row(row, f"{path}:{lineno}", problem_field, answer_field))
    except (OSError, EOFError, UnicodeDecodeError) as e:  # a truncated .gz or a binary file
        raise DataError(f"{path}: unreadable ({e})") from None
    if not rows:
        raise DataError(f"{path}: no rows")
    return rows


def load_problems(path: str | Path, problem_field: str = "problem", answer_field: str = "answer") -> list[Problem]:
    return [Problem(r["problem"], r["answer"]) for r in load_rows(path, problem_field, answer_field)]
