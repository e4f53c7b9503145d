"""Problems: rows with a problem and a reference answer, from JSONL / JSONL.gz files or from the Hugging Face Hub.

A data source is a file path or `hub:NAME` with NAME one of `BENCHMARKS` (the paper's MATH, HARP, OlympiadBench, plus
MATH-500). Hub rows are mapped to the same `problem` / `answer` fields the project's local files use (see
`shared/data/README.md`: the answer is the source's LaTeX, only unwrapped from `\\boxed{}` or `$..$`), so a split
filtered from the Hub and one filtered from a local copy are the same rows.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path


class DataError(ValueError):
    """A data file is wrong; the message names the file, the line and the field."""


@dataclass(frozen=True)
class Problem:
    problem: str
    answer: str


def _check(row, where: str, problem_field: str, answer_field: str) -> dict:
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
                rows.append(_check(row, f"{path}:{lineno}", problem_field, answer_field))
    except (OSError, EOFError, UnicodeDecodeError) as e:  # a truncated .gz or a binary file
        raise DataError(f"{path}: unreadable ({e})") from None
    if not rows:
        raise DataError(f"{path}: no rows")
    return rows


def load_problems(path: str | Path, problem_field: str = "problem", answer_field: str = "answer") -> list[Problem]:
    return [Problem(r["problem"], r["answer"]) for r in load_rows(path, problem_field, answer_field)]


# ------------------------------------------------------------------------------------------------ the Hub
def _math_answer(row: dict) -> str | None:
    from soarlite.rewards import last_boxed  # imports math_verify: only when a MATH row is read

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
    # MATH (Hendrycks et al. 2021), the 5000-problem test split; the answer is the last \boxed{} of the solution
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
            rows.append(_check(mapped, f"{where} row {i}", "problem", "answer"))
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


def load_source(source: str, problem_field: str = "problem", answer_field: str = "answer") -> list[dict]:
    """Rows of a data source: `hub:NAME` or a JSONL(.gz) file (with the field mapping)."""
    if source.startswith("hub:"):
        return hub_rows(source[4:])
    return load_rows(source, problem_field, answer_field)
