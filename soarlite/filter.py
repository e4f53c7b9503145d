"""fail@k: the problems the base model never solves, split 50/50 into the grounding set (train) and a test set.

    soarlite filter --recipe math --k 128            # hub:math (data.source) -> data/math_fail128/{train,test}.jsonl

k answers per problem at temperature 1 with the student prompt; a problem is kept when none of the k is right. On a
GPU this takes hours, so the job works in chunks of problems and appends each chunk's results to `results.jsonl`
(flushed and fsynced); a restart re-reads it and goes on from the first problem without a result. The job's identity
(source, k, seed, chunk size, early stopping, limit) is in `filter.json`; a restart with other settings is refused
rather than mixed in. The splits and `stats.json` are written whole at the end (temporary file, then rename).

Early stopping (default on): each chunk first draws `first_round(k)` samples per problem and the rest only for the
problems still at 0 right. A problem's fate is the same as with all k drawn at once (it is kept only if k samples
are all wrong); what changes is the cost (MATH's base model solves most problems within the first 16 samples) and
that `correct` counts only up to the round that found a right answer.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
from pathlib import Path

from soarlite import checkpoint, tasks
from soarlite.data import DataError, Problem
from soarlite.engine import SamplingParams
from soarlite.names import seed_for
from soarlite.progress import Reporter
from soarlite.scoring import correct_counts
from soarlite.session import session

RESULTS, META, STATS = "results.jsonl", "filter.json", "stats.json"


class FilterError(ValueError):
    """The output folder holds another filter job, or the settings are impossible."""


def first_round(k: int) -> int:
    return min(k, max(1, k // 8))


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def read_results(path: Path) -> list[dict]:
    """The results so far. A line torn by a kill (no newline at the end) is cut off the file: its chunk reruns."""
    if not path.exists():
        return []
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        with open(path, "r+b") as f:
            f.truncate(end)
    return [json.loads(line) for line in data[:end].decode().splitlines() if line.strip()]


def _append(path: Path, rows: list[dict]) -> None:
    with open(path, "a") as f:
        f.write(checkpoint.jsonl(rows))
        f.flush()
        os.fsync(f.fileno())


def sample_chunk(engine, grader, world, problems: list[Problem], k: int, temperature: float, max_new_tokens: int,
                 seed: int, early: bool) -> list[tuple[int, int]]:
    """(samples drawn, right) per problem: k answers each, or fewer where early stopping found a right one."""
    drawn = [0] * len(problems)
    right = [0] * len(problems)
    rounds = [first_round(k), k - first_round(k)] if early else [k]
    for r, size in enumerate(rounds):
        alive = [i for i in range(len(problems)) if right[i] == 0] if r else list(range(len(problems)))
        if not size or not alive:
            break
        counts = correct_counts(engine, grader, world, [None], [problems[i] for i in alive], size,
                                SamplingParams(temperature, max_new_tokens), seed_for(seed, "filter", r))[0]
        for i, c in zip(alive, counts):
            drawn[i] += size
            right[i] += c
    return list(zip(drawn, right))


def job(cfg, rows: list[dict], source: str, k: int, chunk: int, early: bool, seed: int) -> dict:
    """What identifies a filter job: a restart must match it exactly to reuse the results so far."""
    if k < 1 or chunk < 1:
        raise FilterError(f"--k and --chunk must be >= 1, got k={k}, chunk={chunk}")
    return {"source": source, "problems": len(rows), "k": k, "seed": seed, "chunk": chunk, "early_stop": early,
            "temperature": 1.0, "max_new_tokens": cfg.inner.max_new_tokens, "model": cfg.model.base,
            "first_problem": _digest(rows[0]["problem"])}


def claim(out: Path, meta: dict) -> None:
    """Start the job in `out`, or check that `out` holds this same job (before any model loads)."""
    if (out / META).exists():
        old = json.loads((out / META).read_text())
        diff = [key for key in meta if old.get(key) != meta[key]]
        if diff:
            raise FilterError(f"--out: {out} holds a filter job with {diff[0]}={old.get(diff[0])!r}, not "
                              f"{meta[diff[0]]!r}; pick another --out or remove it")
    else:
        out.mkdir(parents=True, exist_ok=True)
        checkpoint.write_json_atomic(out / META, meta)


def run(cfg, rows: list[dict], source: str, out: Path, k: int, engine, grader, world, report, *, chunk: int = 64,
        early: bool = True, seed: int | None = None) -> dict:
    """Filter `rows` (checked rows with `problem` and `answer`) into `out`; returns the statistics."""
    seed = cfg.seed if seed is None else seed
    meta = job(cfg, rows, source, k, chunk, early, seed)
    claim(out, meta)
    done = read_results(out / RESULTS)
    for r in done:  # the same problems in the same order: a changed source file must not be mixed in
        if r["i"] >= len(rows) or r["h"] != _digest(rows[r["i"]]["problem"]):
            raise FilterError(f"--out: {out}/{RESULTS} row {r['i']} is not about problem {r['i']} of {source}; "
                              f"the source changed since the job started")
    # chunks are recorded whole; only the last of the job may be short
    first, t0 = (len(done) if len(done) == len(rows) else len(done) - len(done) % chunk), time.time()
    if done:
        report.line(f"filter: resuming at problem {first} of {len(rows)}")
    if first < len(done):  # a chunk half-recorded by a kill reruns whole, so its samples are the unbroken run's
        done = done[:first]
        checkpoint.write_text_atomic(out / RESULTS, checkpoint.jsonl(done))
    problems = [Problem(r["problem"], r["answer"]) for r in rows]
    for i0 in range(first, len(rows), chunk):
        i1 = min(len(rows), i0 + chunk)
        res = sample_chunk(engine, grader, world, problems[i0:i1], k, 1.0, cfg.inner.max_new_tokens,
                           seed_for(seed, "chunk", i0), early)
        new = [{"i": i, "h": _digest(rows[i]["problem"]), "samples": n, "correct": c}
               for i, (n, c) in zip(range(i0, i1), res)]
        _append(out / RESULTS, new)
        done += new
        rate = (i1 - first) / max(time.time() - t0, 1e-9)
        left = (len(rows) - i1) / rate
        report.line(f"filter: {i1}/{len(rows)} problems, {sum(r['correct'] == 0 for r in done)} at 0/{k}, "
                    f"{rate:.2f} problems/s, about {left / 60:.0f} min left")

    kept = [i for i, r in enumerate(done) if r["correct"] == 0]
    random.Random(seed_for(seed, "split")).shuffle(kept)
    n_train = len(kept) // 2
    splits = {"train": sorted(kept[:n_train]), "test": sorted(kept[n_train:])}
    for name, idx in splits.items():
        checkpoint.write_text_atomic(out / f"{name}.jsonl", checkpoint.jsonl(
            {**rows[i], "source_index": i, "fail_k": k} for i in idx))
    stats = {
        **meta,
        "kept": len(kept),
        "fail_rate": len(kept) / len(rows),
        "train": len(splits["train"]),
        "test": len(splits["test"]),
        "samples_drawn": sum(r["samples"] for r in done),
        "samples_if_no_early_stop": k * len(rows),
    }
    checkpoint.write_json_atomic(out / STATS, stats)
    return stats


def default_out(cfg) -> Path | None:
    """The folder of the recipe's grounding set (math: data/math_fail128), where the splits belong."""
    d = cfg.data.hard_train
    return Path(d).parent if d else None


def filter_command(cfg, data: str | None, out: str | None, k: int, chunk: int, early: bool, limit: int,
                   quiet: bool) -> dict:
    source = data or cfg.data.source
    if not source:
        raise DataError("data.source: empty; name what to filter with --data FILE or data.source=hub:math")
    out_dir = Path(out) if out else default_out(cfg)
    if out_dir is None:
        raise FilterError("--out: name the folder for train.jsonl and test.jsonl")
    task = tasks.resolve(cfg)
    if not hasattr(task, "load_source"):
        raise FilterError(f"task: {cfg.task} brings its own hard split; there is nothing to filter")
    rows = task.load_source(source, cfg)
    if limit:
        rows = rows[:limit]
    claim(out_dir, job(cfg, rows, source, k, chunk, early, cfg.seed))
    with Reporter(quiet=quiet) as report, session(cfg, with_data=False) as (world, engine, grader):
        report.line(f"filter: {len(rows)} problems from {source}, {k} samples each, into {out_dir}")
        stats = run(cfg, rows, source, out_dir, k, engine, grader, world, report, chunk=chunk, early=early)
        report.line(f"filter: kept {stats['kept']} of {stats['problems']} at 0/{k} "
                    f"({stats['train']} train, {stats['test']} test); {out_dir}")
    return stats
