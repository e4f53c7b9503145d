"""Data sources (local files with a field mapping, the Hub benchmarks' row mapping) and `soarlite filter`."""

import gzip
import importlib.util
import json
import shutil
from pathlib import Path

import pytest

from soarlite.data import DataError, load_rows
from soarlite.filter import first_round, read_results
from soarlite.tasks.math import BENCHMARKS, MathTask, hub_rows

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data is not here")


def _jsonl(path):
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt") as f:
        return [json.loads(line) for line in f]


# ------------------------------------------------------------------------------------------------ data sources
@needs_shared
def test_hub_mapping_reproduces_the_shared_files():
    """Each benchmark's raw Hub rows, rebuilt from the shared files' raw fields, map to the files' problem/answer."""
    math = _jsonl(SHARED / "math_test.jsonl")
    harp = _jsonl(SHARED / "harp.jsonl.gz")
    olympiad = _jsonl(SHARED / "olympiadbench_en_text_math.jsonl")
    raw = {
        "math": [{"problem": r["problem"], "solution": r["solution"], "level": r["level"], "type": r["type"]} for r in math],
        "harp": [{"problem": r["problem"], "answer": r["answer_raw"], "level": r["level"]} for r in harp],
        "olympiadbench": [{"question": r["problem"], "final_answer": r["final_answer_raw"]} for r in olympiad],
    }
    want = {"math": math, "harp": harp, "olympiadbench": olympiad}
    for name, rows in raw.items():
        b = BENCHMARKS[name]

        def fetch(path, config, split, data_files, rows=rows, b=b):
            assert (path, split, data_files) == (b.path, b.split, b.data_files)
            return rows if config == b.configs[0] else []  # every row under the first config is enough here

        got = hub_rows(name, fetch)
        assert [(r["problem"], r["answer"]) for r in got] == [(r["problem"], r["answer"]) for r in want[name]], name
    assert BENCHMARKS["math"].rows == len(math)


def test_hub_errors():
    with pytest.raises(DataError, match="hub:nope: unknown benchmark; known: hub:math"):
        MathTask().load_source("hub:nope", None)
    rows = [{"problem": "1+1?", "solution": "so \\boxed{2}"}, {"problem": "x?", "solution": "no box"}]
    with pytest.raises(DataError, match=r"hub:math \(EleutherAI/hendrycks_math/algebra, split test\) row 1: field 'answer'"):
        hub_rows("math", lambda *a: rows)
    if importlib.util.find_spec("datasets") is None:
        from soarlite.extras import MissingExtra

        with pytest.raises(MissingExtra, match=r"soarlite\[hub\]"):
            MathTask().load_source("hub:math", None)


def test_field_mapping_and_broken_files(tmp_path):
    good = tmp_path / "q.jsonl"
    good.write_text(json.dumps({"question": "Q1", "final": 3, "id": 7}) + "\n")
    assert load_rows(good, "question", "final") == [{"question": "Q1", "final": 3, "id": 7, "problem": "Q1", "answer": "3"}]
    with pytest.raises(DataError, match=r"q.jsonl:1: field 'problem' is missing or empty"):
        load_rows(good)
    broken = tmp_path / "b.jsonl.gz"
    broken.write_bytes(gzip.compress(b'{"problem": "a", "answer": "1"}\n' * 50)[:40])  # a gzip cut short
    with pytest.raises(DataError, match=r"b.jsonl.gz: unreadable"):
        load_rows(broken)


# ------------------------------------------------------------------------------------------------ resumable results
def test_first_round():
    assert [first_round(k) for k in (1, 4, 8, 16, 128)] == [1, 1, 1, 2, 16]


def test_torn_result_line_is_cut(tmp_path):
    p = tmp_path / "results.jsonl"
    p.write_text('{"i": 0}\n{"i": 1}\n{"i": 2, "h"')
    assert read_results(p) == [{"i": 0}, {"i": 1}]
    assert p.read_text() == '{"i": 0}\n{"i": 1}\n'


# ------------------------------------------------------------------------------------------------ end to end
@pytest.mark.slow
def test_filter_splits_resumes_and_refuses_another_job(tmp_path_factory, tmp_path):
    from tests._world import WORLD, soarlite, world_cache, world_dir

    cache = world_cache(tmp_path_factory)
    world = world_dir(cache)
    source = tmp_path / "candidates.jsonl"  # problems the toy model sometimes solves, and its hard ones
    source.write_text((world / "easy.jsonl").read_text() + (world / "hard_test.jsonl").read_text())
    n = len(source.read_text().splitlines())
    args = ["--recipe", "tiny", "--data", str(source), "--k", "4", "--chunk", "4", "-q", *WORLD, "threads=1",
            "inner.max_new_tokens=40"]

    whole = tmp_path / "whole"
    r = soarlite(cache, "filter", *args, "--out", str(whole))
    assert f"{n}/{n} problems" in r.stdout
    stats = json.loads((whole / "stats.json").read_text())
    results = read_results(whole / "results.jsonl")
    assert [x["i"] for x in results] == list(range(n))
    kept = {x["i"] for x in results if x["correct"] == 0}
    assert 0 < len(kept) < n, "the toy model should solve some candidates and fail others"
    train, test = _jsonl(whole / "train.jsonl"), _jsonl(whole / "test.jsonl")
    assert stats["kept"] == len(kept) and (stats["train"], stats["test"]) == (len(kept) // 2, len(kept) - len(kept) // 2)
    assert {x["source_index"] for x in train + test} == kept and len(train) + len(test) == len(kept)
    assert not {x["source_index"] for x in train} & {x["source_index"] for x in test}
    hard = {x["problem"] for x in _jsonl(world / "hard_test.jsonl")}
    assert hard <= {x["problem"] for x in train + test}  # fail@16 problems stay failed at k=4
    # a solved problem stopped early only if its first round found a right answer; kept ones drew all k samples
    assert all(x["samples"] == 4 for x in results if x["correct"] == 0)
    assert stats["samples_drawn"] == sum(x["samples"] for x in results) <= 4 * n

    # a kill mid-chunk: the results file holds a chunk and a half and a torn line; the rerun ends as the unbroken one
    resumed = tmp_path / "resumed"
    resumed.mkdir()
    shutil.copy(whole / "filter.json", resumed / "filter.json")
    lines = (whole / "results.jsonl").read_text().splitlines(keepends=True)
    (resumed / "results.jsonl").write_text("".join(lines[:6]) + lines[6][:10])
    r = soarlite(cache, "filter", *args, "--out", str(resumed))
    assert "resuming at problem 4" in r.stdout
    for name in ("results.jsonl", "train.jsonl", "test.jsonl"):
        assert (resumed / name).read_text() == (whole / name).read_text(), name

    r = soarlite(cache, "filter", *[a if a != "4" else "8" for a in args], "--out", str(whole), check=False)
    assert r.returncode == 2 and f"--out: {whole} holds a filter job with k=4, not 8" in r.stderr
    assert not list(whole.glob("*.tmp"))
