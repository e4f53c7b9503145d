"""One process per run folder: a lock file in the folder (filelock), and who holds it next to it.

A second `soarlite run` (or `--resume`) on a folder another process is writing stops at once, naming that process's
pid and host. The lock is an OS lock (flock), so it is released when its process ends however it ends, and a stale
`.lock` file left by a killed run never blocks anyone.
"""

from __future__ import annotations

import json
import os
import socket
from contextlib import contextmanager
from pathlib import Path

LOCK = ".lock"
HOLDER = ".lock.holder"


class FolderBusy(RuntimeError):
    """Another process holds the run folder's lock. The message is one line naming its pid and host."""


def holder(run_dir: Path) -> str:
    try:
        info = json.loads((Path(run_dir) / HOLDER).read_text())
        return f"pid {int(info['pid'])} on {info['host']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


@contextmanager
def hold(run_dir: Path):
    """Hold the run folder for this process, or raise FolderBusy at once."""
    from filelock import FileLock, Timeout

    run_dir = Path(run_dir)
    lock = FileLock(str(run_dir / LOCK), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise FolderBusy(f"{run_dir}: in use by {holder(run_dir)} (its lock is {run_dir / LOCK}); wait for it to "
                         "finish or stop it, or pick another --out") from None
    try:
        tmp = run_dir / (HOLDER + ".tmp")
        tmp.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname()}))
        os.replace(tmp, run_dir / HOLDER)
        yield
    finally:
        lock.release()
