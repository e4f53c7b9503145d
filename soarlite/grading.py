"""Grading that survives hostile completions: a task's checks run in worker processes with a hard time limit.

A task's `reward`, `is_correct` and `parse_teacher` may call into C code that no Python timeout can interrupt (sympy
on `9^9^9^9`, a regex that backtracks), so the grader runs them in fresh interpreters and kills one that overruns
its per-item limit; the item then counts as wrong. The workers build the task from the same `module:attr` string
the recipe resolves to (soarlite.tasks), so a user's task is graded the same way as the built-in ones.

A step grades thousands of rollouts of a few questions, many with the same final answer. A task that has the optional
`grading_key(completion, reference)` (see soarlite.tasks.Task) lets the grader grade each key once per batch, in the
parent, before anything is sent to a worker; its optional `known_result(method, key)` decides some keys without
grading at all (the math task: the same integer, the same plain text). The pool itself knows nothing of the domain.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import signal
import socket
import subprocess
import sys
import time
import traceback
import weakref
from collections import deque
from collections.abc import Sequence
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import TYPE_CHECKING, Any

from soarlite.plugins import load_object

if TYPE_CHECKING:
    from typing_extensions import Self

# The task the grader serves when none is named: the paper's math (what `soarlite.tasks.BUILTIN["math"]` says).
MATH_TASK = "soarlite.tasks.math:MathTask"

# Clip every text to its last MAX_CHARS characters before it is pickled to a worker: answers sit at the end, and
# parsing cost grows with length (the math task clips to the same bound again).
MAX_CHARS = 8192

# Beyond timeout_s, what a worker may take to answer for an item before it is killed: pickling and the
# pipe, and math_verify's own alarms, which fire only on whole seconds.
SLACK_S = 0.5
# Most items sent to a worker at once: fewer round trips; the worker still reports after every item.
CHUNK = 16
# Address-space cap of a worker: sympy on a hostile answer (9^9^9...) can eat gigabytes in one C call
# before the timeout kills it; with the cap it gets a MemoryError, which math_verify turns into "wrong".
WORKER_MEMORY_BYTES = 4 << 30

# What a worker can run: kind -> (the task's method, value when the item times out or kills the worker).
_KINDS = {
    "reward": ("reward", 0.0),
    "correct": ("is_correct", False),
    "teacher": ("parse_teacher", None),
}
# The kinds whose items a task's grading key may merge (parse_teacher reads each text on its own).
_KEYED = ("reward", "correct")
_READY = "ready"
_WORKER_CODE = "import sys; from soarlite.grading import _worker_main; _worker_main(int(sys.argv[1]), sys.argv[2])"


def _worker_main(fd: int, task_json: str) -> None:
    conn = Connection(fd)
    # Ctrl-C reaches the whole process group: the parent handles it and stops the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_AS, (WORKER_MEMORY_BYTES, WORKER_MEMORY_BYTES))
    logging.getLogger("math_verify").setLevel(logging.ERROR)  # the parent counts timeouts itself
    spec, options = json.loads(task_json)
    task = load_object(spec)(options)
    funcs = {kind: getattr(task, method) for kind, (method, _) in _KINDS.items()}
    conn.send(_READY)
    while True:
        try:
            msg = conn.recv()
        except EOFError:  # the parent closed the pipe or is gone
            return
        kind, chunk = msg
        for index, args in chunk:
            try:
                conn.send((index, True, funcs[kind](*args)))
            except Exception:  # noqa: BLE001 - not handled here: the parent re-raises it with this traceback
                conn.send((index, False, traceback.format_exc()))


class _Worker:
    """One worker process, its pipe, and the items it holds, the first being the one it works on now.

    A fresh interpreter (fork + exec), not a multiprocessing.Process: it inherits neither the parent's
    threads (torch) nor, as spawn and forkserver children do, a re-import of the parent's __main__, so it
    needs no `if __name__ == "__main__"` guard and starts in about a second whatever the script imports.
    """

    def __init__(self, task_json: str) -> None:
        parent, child = socket.socketpair()
        env = dict(os.environ)
        # The same soarlite as the parent's, installed or not.
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _WORKER_CODE, str(child.fileno()), task_json],
            pass_fds=(child.fileno(),),
            stdin=subprocess.DEVNULL,
            env=env,
        )
        child.close()
        self.conn = Connection(parent.detach())
        self.ready = False
        self.items: deque[tuple[int, tuple]] = deque()
        self.deadline = float("inf")

    def stop(self) -> None:
        # A worker keeps no state worth a graceful exit, and one that is busy or still starting would
        # make a polite request wait: kill it, and wait() so that it leaves no zombie.
        self.proc.kill()
        self.proc.wait()
        self.conn.close()


_PACKAGE_ROOT = str(Path(__file__).resolve().parents[1])


def auto_workers() -> int:
    """The CPU cores this process may run on (its affinity, else the machine's count): the pool's size for 0."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # no sched_getaffinity (macOS)
        return max(1, os.cpu_count() or 1)


def resolve_workers(workers: int) -> int:
    """`workers` as a process count: 0 means one per core this process may use (auto_workers)."""
    if workers < 0:
        raise ValueError(f"need workers >= 0 (0 = one per core), got {workers}")
    return workers or auto_workers()


def _shutdown(workers: list[_Worker]) -> None:
    while workers:
        workers.pop().stop()


class Grader:
    """Runs a task's reward / is_correct / parse_teacher in `workers` processes (0: one per core, auto_workers), at
    most about `timeout_s` per item: a worker that overruns is killed and replaced, and its item counts as wrong
    (reward 0.0, False, None). For well-behaved inputs the results equal the in-process methods'.
    `task` is the task's `module:attr` string and `task_options` its options (soarlite.tasks.spec_for).

    With `cache` (the default) and a task that has `grading_key`, `rewards` and `correct` grade each key once per
    call: the first item with a key is graded (or decided by the task's `known_result`), the others copy its result,
    a time-out included. The task is then also built in this process, lazily, to compute the keys. `stats` counts,
    over the grader's life, the items asked for, those sent to workers and those decided by `known_result`.

    One more process is kept started as a spare, so that a killed worker is replaced at once rather
    than after the second a new interpreter needs to import sympy. Use as a context manager or call
    close(); garbage collection and interpreter exit also stop the workers.
    """

    def __init__(self, workers: int = 0, timeout_s: float = 5.0, task: str = MATH_TASK,
                 task_options: dict | None = None, cache: bool = True) -> None:
        if timeout_s <= 0:
            raise ValueError(f"need timeout_s > 0, got {timeout_s}")
        workers = resolve_workers(workers)
        self._task_json = json.dumps([task, task_options or {}])
        self._task_spec = (task, dict(task_options or {}))
        self._task: Any = None  # built on the first keyed batch
        self.cache = cache
        self.stats = {"items": 0, "graded": 0, "known": 0}
        self.timeout_s = timeout_s
        self.timeouts = 0  # items killed for overrunning, over the grader's life
        self._n = workers
        # All processes, the spare last. The finalizer holds this list, not self, so it runs when self is
        # collected; the list is changed in place only.
        self._procs: list[_Worker] = []
        self._finalizer = weakref.finalize(self, _shutdown, self._procs)
        self._procs.extend(_Worker(self._task_json) for _ in range(workers + 1))

    @property
    def workers(self) -> int:
        """How many processes grade (the spare not counted)."""
        return self._n

    @property
    def _workers(self) -> list[_Worker]:
        return self._procs[: self._n]

    def rewards(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        """task.reward(completion, reference) for each pair."""
        return self._run("reward", pairs)

    def correct(self, pairs: Sequence[tuple[str, str]]) -> list[bool]:
        """task.is_correct(completion, reference) for each pair."""
        return self._run("correct", pairs)

    def parse_teacher(self, texts: Sequence[str]) -> list:
        """task.parse_teacher(text) for each text: a QA or None."""
        return self._run("teacher", [(t,) for t in texts])

    def close(self) -> None:
        self._finalizer()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _run(self, kind: str, items: Sequence[tuple]) -> list[Any]:
        if not self._finalizer.alive:
            raise RuntimeError("Grader is closed")
        default = _KINDS[kind][1]
        # Clip here too (the functions clip again, idempotently) so that no huge string is pickled.
        clipped = [tuple(a[-MAX_CHARS:] for a in args) for args in items]
        results: list[Any] = [default] * len(items)
        copies: list[tuple[int, int]] = []
        if self.cache and kind in _KEYED and clipped:
            todo = self._dedup(kind, clipped, results, copies)
        else:
            todo = deque(enumerate(clipped))
        self.stats["items"] += len(items)
        self.stats["graded"] += len(todo)
        self._grade(kind, todo, results)
        for i, first in copies:
            results[i] = results[first]
        return results

    def _dedup(self, kind: str, items: list[tuple], results: list[Any], copies: list[tuple[int, int]]) -> deque:
        """The items to send to workers: one per grading key (or every item, without one). Fills `results` for the
        keys the task decides itself and `copies` with (item, the item whose result it takes)."""
        if self._task is None:
            spec, options = self._task_spec
            self._task = load_object(spec)(options)
        key_of = getattr(self._task, "grading_key", None)
        if key_of is None:
            return deque(enumerate(items))
        known = getattr(self._task, "known_result", None)
        method = _KINDS[kind][0]
        first: dict[Any, int] = {}
        todo: deque[tuple[int, tuple]] = deque()
        for i, args in enumerate(items):
            key = key_of(*args)
            if key is None:
                todo.append((i, args))
                continue
            j = first.setdefault(key, i)
            if j != i:
                copies.append((i, j))
                continue
            value = known(method, key) if known is not None else None
            if value is None:
                todo.append((i, args))
            else:
                results[i] = value
                self.stats["known"] += 1
        return todo

    def _grade(self, kind: str, todo: deque, results: list[Any]) -> None:
        """Grade the (index, args) items of `todo` in the workers, into results[index]."""
        try:
            while todo or any(w.items for w in self._workers):
                now = time.monotonic()
                for w in self._workers:
                    if w.ready and not w.items and todo:
                        # Split a small batch evenly rather than give it all to the first free worker.
                        size = min(CHUNK, -(-len(todo) // self._n))
                        w.items.extend(todo.popleft() for _ in range(size))
                        try:
                            w.conn.send((kind, list(w.items)))
                        except OSError:  # it died while idle: its items go back, the spare takes over
                            self._replace(w, todo)
                            continue
                        w.deadline = now + self.timeout_s + SLACK_S
                # Wait for messages, or for the first deadline; a starting worker has no deadline yet.
                deadline = min((w.deadline for w in self._workers if w.items), default=None)
                ready = wait([w.conn for w in self._procs], None if deadline is None else max(0.0, deadline - now))
                for w in list(self._procs):
                    if w.conn in ready:
                        self._receive(w, kind, results, todo)
                    elif w.items and time.monotonic() > w.deadline:
                        self.timeouts += 1
                        w.items.popleft()  # counts as wrong: results keeps the default
                        self._replace(w, todo)
        except BaseException:
            # Interrupted, or a grading function raised: the workers hold half-done chunks, start afresh.
            for i, w in enumerate(self._procs):
                w.stop()
                self._procs[i] = _Worker(self._task_json)
            raise

    def _receive(self, w: _Worker, kind: str, results: list[Any], todo: deque) -> None:
        try:
            msg = w.conn.recv()
        except EOFError:  # the worker died (the OS killed it, a crash in C): its current item is wrong
            if not w.ready:
                raise RuntimeError(f"a grader worker died while starting, exit code {w.proc.wait()}") from None
            if w.items:
                w.items.popleft()
            self._replace(w, todo)
            return
        if msg == _READY:
            w.ready = True
            return
        index, ok, value = msg
        if not ok:
            raise RuntimeError(f"the task's {_KINDS[kind][0]} raised in a grader worker:\n{value}")
        assert w.items and w.items[0][0] == index, (index, w.items)
        w.items.popleft()
        results[index] = value
        w.deadline = time.monotonic() + self.timeout_s + SLACK_S

    def _replace(self, w: _Worker, todo: deque) -> None:
        """Kill w, put back the items it had not started, and let the spare take its place."""
        todo.extendleft(reversed(w.items))
        w.stop()
        self._procs.remove(w)
        self._procs.insert(self._n - 1, self._procs.pop())  # the spare becomes a worker
        self._procs.append(_Worker(self._task_json))  # and a new spare starts
