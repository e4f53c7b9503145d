"""Run folders, written whole or not at all.

A run folder (`runs/<name>/`) holds what a user reads and what a resume needs:

    config.yaml        the resolved recipe
    state.json         where the run stands: the next outer step, the reward history, the promotions
    metrics.jsonl      one object per finished outer step
    pq.jsonl           the Promotion Questions (question, answer, step)
    adapters/teacher/  PEFT folder (+ optimiser state, safetensors)
    adapters/student/  the baseline student, PEFT folder
    summary.json       written at the end of a run

A checkpoint replaces several of these at once, so it goes through a roll-forward journal: everything new is
written under `.next/`, then `.next/COMPLETE` is written, then each entry is moved into place. A run killed
before COMPLETE leaves the previous checkpoint untouched (`.next/` is discarded on resume); a run killed after
it is finished by `recover()` on resume. Single files are written to a temporary name and renamed. Only
safetensors, JSON and YAML are written: nothing a user is handed is a pickle.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

NEXT = ".next"
TRASH = ".trash"


def write_text_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json_atomic(path: Path, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=1) + "\n")


def jsonl(rows) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def begin(run_dir: Path) -> Path:
    """A clean staging folder for the next checkpoint."""
    staging = run_dir / NEXT
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    return staging


def _fsync_tree(root: Path) -> None:
    for p in root.rglob("*"):
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())


def commit(run_dir: Path) -> None:
    """Seal the staging folder, then move its entries into the run folder."""
    staging = run_dir / NEXT
    _fsync_tree(staging)
    write_text_atomic(staging / "COMPLETE", "")
    recover(run_dir)


def recover(run_dir: Path) -> None:
    """Finish a sealed checkpoint; drop an unsealed one. Idempotent: safe to call after a crash at any point."""
    staging = run_dir / NEXT
    if not staging.exists():
        return
    if not (staging / "COMPLETE").exists():
        shutil.rmtree(staging)
        return
    trash = run_dir / TRASH
    trash.mkdir(exist_ok=True)
    # state.json last: it is what a resume trusts, so it must not point past what is already in place.
    entries = sorted((p for p in staging.iterdir() if p.name != "COMPLETE"), key=lambda p: p.name == "state.json")
    for src in entries:
        dst = run_dir / src.name
        if dst.exists():
            old = trash / src.name
            if old.exists():
                shutil.rmtree(old) if old.is_dir() else old.unlink()
            os.replace(dst, old)
        os.replace(src, dst)
    shutil.rmtree(staging)
    shutil.rmtree(trash, ignore_errors=True)
