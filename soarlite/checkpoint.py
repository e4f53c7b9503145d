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

import errno
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


# ------------------------------------------------------------------------------------------------ checking a folder
class RunFolderError(ValueError):
    """A run folder's file is unreadable or corrupt. The message is one line naming the file and what to do."""


def _broken(path: Path, what: str) -> RunFolderError:
    return RunFolderError(f"{path}: {what}; the run folder is damaged: restore the file from a copy, or start a new "
                          "run with another --out")


def _json_file(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _broken(path, f"not valid JSON ({getattr(e, 'msg', None) or e.reason})") from None


def _jsonl_file(path: Path) -> list[dict]:
    rows = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise _broken(path, f"line {lineno} is not valid JSON ({e.msg})") from None
        if not isinstance(row, dict):
            raise _broken(path, f"line {lineno} is not a JSON object")
        rows.append(row)
    return rows


def _safetensors_file(path: Path) -> None:
    """The header parses and the data it describes is all there (no torch needed)."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        n = int.from_bytes(head, "little") if len(head) == 8 else -1
        if n < 2 or 8 + n > size:
            raise _broken(path, "not a safetensors file (truncated or corrupt)")
        try:
            header = json.loads(f.read(n))
            end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
        except (ValueError, KeyError, TypeError, IndexError):
            raise _broken(path, "not a safetensors file (corrupt header)") from None
    if 8 + n + end > size:
        raise _broken(path, f"truncated ({size} bytes, its header needs {8 + n + end})")


def check_folder(run_dir: Path, adapters: tuple[str, ...] = ("teacher", "student")) -> int:
    """What a resume reads, checked before a model loads: state.json, metrics.jsonl, pq.jsonl and, past step 0,
    each adapter (and its optimiser state). Returns the step the run stands at."""
    recover(run_dir)
    path = run_dir / "state.json"
    if not path.exists():
        return 0
    state = _json_file(path)
    step = state.get("step") if isinstance(state, dict) else None
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise _broken(path, "has no valid 'step'")
    for name in ("metrics.jsonl", "pq.jsonl"):
        if (run_dir / name).exists():
            rows = _jsonl_file(run_dir / name)
            if name == "metrics.jsonl" and len(rows) < step:
                raise _broken(run_dir / name, f"holds {len(rows)} steps, state.json says {step}")
    if step == 0:
        return step
    for name in adapters:
        folder = run_dir / "adapters" / name
        for file in ("adapter_config.json", "adapter_model.safetensors"):
            if not (folder / file).is_file():
                raise _broken(folder / file, "is missing")
        if not isinstance(_json_file(folder / "adapter_config.json"), dict):
            raise _broken(folder / "adapter_config.json", "is not a JSON object")
        _safetensors_file(folder / "adapter_model.safetensors")
        if (folder / "optimizer.safetensors").exists():
            _safetensors_file(folder / "optimizer.safetensors")
        if (folder / "optimizer.json").exists() and not isinstance(_json_file(folder / "optimizer.json"), dict):
            raise _broken(folder / "optimizer.json", "is not a JSON object")
    return step


_OS_FIXES = {
    errno.ENOSPC: "the disk is full: free space",
    errno.EDQUOT: "the disk quota is spent: free space",
    errno.EACCES: "no permission: fix the permissions or pick another --out",
    errno.EPERM: "not permitted: fix the permissions or pick another --out",
    errno.EROFS: "the file system is read-only: pick another --out",
    errno.ENOTDIR: "a file stands where a folder is needed: pick another --out",
    errno.EISDIR: "a folder stands where a file is needed: move it away",
    errno.ENOENT: "no such file or folder: check the path",
    errno.EEXIST: "something is already there: move it away or pick another --out",
}


def os_error_line(e: OSError) -> str:
    """One line for an OS error: the file, what went wrong, what to do."""
    where = e.filename if e.filename is not None else "(file)"
    what = e.strerror or type(e).__name__
    fix = _OS_FIXES.get(e.errno, "check the path and the disk")
    return f"{where}: {what} ({fix})"
