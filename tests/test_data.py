import gzip
import json
from pathlib import Path

import pytest

from soarlite.data import DataError, Problem, load_problems

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is not here")


@needs_shared
def test_real_files_load():
    math = load_problems(SHARED / "math_test.jsonl")
    assert len(math) == 5000 and all(p.problem and p.answer for p in math)
    assert len(load_problems(SHARED / "harp.jsonl.gz")) == 4780
    assert len(load_problems(SHARED / "olympiadbench_en_text_math.jsonl")) == 675
    graded = load_problems(SHARED / "graded_solutions_dev.jsonl", problem_field="solution_text")
    assert len(graded) == 505


def test_rows_and_gzip(tmp_path):
    rows = [{"problem": "1+1?", "answer": "2"}, {"problem": "x?", "answer": 3}]
    text = "".join(json.dumps(r) + "\n" for r in rows) + "\n"
    (tmp_path / "a.jsonl").write_text(text)
    with gzip.open(tmp_path / "a.jsonl.gz", "wt") as f:
        f.write(text)
    want = [Problem("1+1?", "2"), Problem("x?", "3")]
    assert load_problems(tmp_path / "a.jsonl") == want
    assert load_problems(tmp_path / "a.jsonl.gz") == want


@pytest.mark.parametrize("content,message", [
    ('{"problem": "a", "answer": "1"}\n{"problem": "b"}\n', ":2: field 'answer' is missing or empty"),
    ('{"problem": " ", "answer": "1"}\n', ":1: field 'problem' is missing or empty"),
    ('{"problem": "a", "answer": "1"}\n{oops\n', ":2: not JSON"),
    ('[1, 2]\n', ":1: a row must be a JSON object"),
    ("\n", ": no rows"),
])
def test_broken_files_name_file_line_and_field(tmp_path, content, message):
    p = tmp_path / "bad.jsonl"
    p.write_text(content)
    with pytest.raises(DataError) as e:
        load_problems(p)
    assert str(e.value).startswith(f"{p}{message}")


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_problems(tmp_path / "nope.jsonl")
