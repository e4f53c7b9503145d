"""Problems: rows with a problem and a reference answer, read from JSONL or JSONL.gz."""

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


def load_problems(path: str | Path, problem_field: str = "problem", answer_field: str = "answer") -> list[Problem]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    opener = gzip.open if path.suffix == ".gz" else open
    rows = []
    with opener(path, "rt", encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{lineno}: not JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}:{lineno}: a row must be a JSON object")
            for field in (problem_field, answer_field):
                value = row.get(field)
                if value is None or (isinstance(value, str) and not value.strip()):
                    raise DataError(f"{path}:{lineno}: field {field!r} is missing or empty")
            rows.append(Problem(str(row[problem_field]), str(row[answer_field])))
    if not rows:
        raise DataError(f"{path}: no rows")
    return rows
