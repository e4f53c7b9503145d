"""Answer checking and the student's reward, plus a grader that survives hostile completions.

`is_correct` is math_verify with a few fixes measured on `shared/data/graded_solutions_dev.jsonl`
(see benchmarks/grader_accuracy.py): grade the last `\\boxed{}` rather than whatever math_verify's
regexes pick first, accept a missing or extra percent sign, accept several boxed answers that together
give a multi-part reference, compare text answers case- and markup-insensitively, and drop thin-space
thousands separators (`1\\,000`) that math_verify reads as a product.

math_verify's own timeouts use signal.alarm, which cannot interrupt C code (a big-integer power, a
regex that backtracks) and works only in the main thread. `Grader` therefore runs the checks in worker
processes and kills a worker that overruns its per-item limit.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
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

from math_verify import parse, verify
from sympy import FiniteSet, Tuple

if TYPE_CHECKING:
    from typing_extensions import Self

    from soarlite.prompts import QA

# The paper's reward shaping for a student rollout (SOAR, inner loop).
REWARD_CORRECT = 120.0  # boxed and verifies against the reference
REWARD_CONTAINS_REFERENCE = 20.0  # boxed, does not verify, but contains the reference string
REWARD_WRONG = 10.0  # boxed and wrong: still better than not following the format
REWARD_NO_BOXED = 0.0

# Every checked text is cut to its last MAX_CHARS characters first. The answer sits at the end, a
# 1024-token rollout is about 5k characters (the longest graded row is 6k), and the cost of parsing
# grows with length: this is the cheap first guard, the worker timeout is the real one.
MAX_CHARS = 8192

_BOXED_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
_PERCENT_RE = re.compile(r"\\?%|\\text\{\s*percent\s*\}")
# `1\,000` and `1\text{,}000`: math_verify reads the first as a product 1*000 = 0.
_THIN_SPACE_THOUSANDS_RE = re.compile(r"(?<=\d)(?:\\[,!]|\\text\{,\}|\{,\})(?=\d{3}(?!\d))")
_TEXT_MACRO_RE = re.compile(r"\\(?:text|textbf|textit|mathrm|mathbf|mbox)\s*")


def _clip(text: str) -> str:
    return text[-MAX_CHARS:]


def last_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` (or `\\boxed {..}`, `\\fbox{..}`); None if absent or unbalanced."""
    matches = list(_BOXED_RE.finditer(text))
    if not matches:
        return None
    return _balanced(text, matches[-1].end())


def _balanced(text: str, start: int) -> str | None:
    """text[start:] opens just after a `{`: the content up to its matching `}`, or None."""
    depth, i = 1, start
    while i < len(text):
        c = text[i]
        if c == "\\":  # `\{` and `\}` are literal braces, not grouping
            i += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[start:i]
        i += 1
    return None


def _boxed_answers(text: str) -> list[str]:
    """Every balanced boxed content, in order (unbalanced ones are skipped)."""
    found = (_balanced(text, m.end()) for m in _BOXED_RE.finditer(text))
    return [b for b in found if b is not None]


def _normalise(latex: str) -> str:
    return _THIN_SPACE_THOUSANDS_RE.sub("", latex).strip()


def _parse_math(latex: str) -> list:
    return parse("$" + _normalise(latex) + "$")


def parses_as_math(answer: str) -> bool:
    """Whether math_verify turns `answer` (boxed content) into a sympy object, not just a fallback string."""
    return bool(parse("$" + _normalise(_clip(answer)) + "$", fallback_mode="no_fallback"))


def _plain_text(latex: str) -> str:
    """Text answers (`\\text{Evelyn}`, `\\text{A, C}`) compared as strings: no markup, case, spaces, end dot."""
    s = _TEXT_MACRO_RE.sub("", latex)
    return re.sub(r"[\s{}$]|\\[,;!: ]", "", s).rstrip(".").lower()


def _matches(gold_latex: str, pred_latex: str) -> bool:
    gold = _parse_math(gold_latex)
    if verify(gold, _parse_math(pred_latex)):
        return True
    # A missing or extra percent sign (17.5 vs 17.5\%): graders of MATH and OlympiadBench accept it.
    has_pct = _PERCENT_RE.search(gold_latex) or _PERCENT_RE.search(pred_latex)
    if has_pct and verify(_parse_math(_PERCENT_RE.sub("", gold_latex)), _parse_math(_PERCENT_RE.sub("", pred_latex))):
        return True
    # Words (`\\text{A, C}` vs `A, C`: math_verify makes a string of one and a set of the other). Anything
    # with a digit is left to sympy, where dropping spaces and markup could merge different numbers.
    plain = _plain_text(gold_latex)
    return bool(plain) and not any(ch.isdigit() for ch in plain) and plain == _plain_text(pred_latex)


def _parts(reference: str) -> int:
    """How many elements a multi-part reference (`1, 2`, `(3, 4)`) has; 1 for anything else."""
    gold = _parse_math(reference)
    if gold and isinstance(gold[0], (FiniteSet, Tuple)):
        return len(gold[0].args)
    return 1


def is_correct(completion: str, reference: str) -> bool:
    """Whether the final answer of `completion` equals `reference` (LaTeX, without `$` or `\\boxed`).

    The answer is the last boxed one; with none (or an unclosed last one), math_verify searches the whole
    text. A reference of k parts (`1, 2`) also matches the last k boxed answers taken together
    (`\\boxed{2} ... \\boxed{1}`: OlympiadBench solutions box each part of a multi-part answer).
    """
    completion, reference = _clip(completion), _clip(reference)
    last = last_boxed(completion)
    if last is None:
        return verify(_parse_math(reference), parse(_normalise(completion)))
    if _matches(reference, last):
        return True
    k = _parts(reference)
    boxed = _boxed_answers(completion)
    return 1 < k <= len(boxed) and _matches(reference, ", ".join(boxed[-k:]))


def math_reward(completion: str, reference: str) -> float:
    """The paper's student reward: 120 boxed and right, 20 boxed and containing the reference, 10 boxed, 0."""
    completion, reference = _clip(completion), _clip(reference)
    boxed = last_boxed(completion)
    if boxed is None:
        return REWARD_NO_BOXED
    if is_correct(completion, reference):
        return REWARD_CORRECT
    ref = re.sub(r"\s", "", reference)
    if ref and ref in re.sub(r"\s", "", boxed):
        return REWARD_CONTAINS_REFERENCE
    return REWARD_WRONG


# ---------------------------------------------------------------------------------------------------------
# Grading in worker processes with a hard per-item time limit.

# Beyond timeout_s, what a worker may take to answer for an item before it is killed: pickling and the
# pipe, and math_verify's own alarms, which fire only on whole seconds.
SLACK_S = 0.5
# Most items sent to a worker at once: fewer round trips; the worker still reports after every item.
CHUNK = 16
# Address-space cap of a worker: sympy on a hostile answer (9^9^9...) can eat gigabytes in one C call
# before the timeout kills it; with the cap it gets a MemoryError, which math_verify turns into "wrong".
WORKER_MEMORY_BYTES = 4 << 30

# What a worker can run, by name: (module, function, value when the item times out or kills the worker).
_TASKS = {
    "reward": ("soarlite.rewards", "math_reward", REWARD_NO_BOXED),
    "correct": ("soarlite.rewards", "is_correct", False),
    "teacher": ("soarlite.prompts", "parse_teacher_output", None),
}
_READY = "ready"
_WORKER_CODE = "import sys; from soarlite.rewards import _worker_main; _worker_main(int(sys.argv[1]))"


def _worker_main(fd: int) -> None:
    conn = Connection(fd)
    # Ctrl-C reaches the whole process group: the parent handles it and stops the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_AS, (WORKER_MEMORY_BYTES, WORKER_MEMORY_BYTES))
    logging.getLogger("math_verify").setLevel(logging.ERROR)  # the parent counts timeouts itself
    funcs = {kind: getattr(importlib.import_module(mod), name) for kind, (mod, name, _) in _TASKS.items()}
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

    def __init__(self) -> None:
        parent, child = socket.socketpair()
        env = dict(os.environ)
        # The same soarlite as the parent's, installed or not.
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _WORKER_CODE, str(child.fileno())],
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


def _shutdown(workers: list[_Worker]) -> None:
    while workers:
        workers.pop().stop()


class Grader:
    """Runs math_reward / is_correct / parse_teacher_output in `workers` processes, at most about
    `timeout_s` per item: a worker that overruns is killed and replaced, and its item counts as wrong
    (reward 0.0, False, None). For well-behaved inputs the results equal the in-process functions'.

    One more process is kept started as a spare, so that a killed worker is replaced at once rather
    than after the second a new interpreter needs to import sympy. Use as a context manager or call
    close(); garbage collection and interpreter exit also stop the workers.
    """

    def __init__(self, workers: int = 1, timeout_s: float = 5.0) -> None:
        if workers < 1 or timeout_s <= 0:
            raise ValueError(f"need workers >= 1 and timeout_s > 0, got {workers}, {timeout_s}")
        self.timeout_s = timeout_s
        self.timeouts = 0  # items killed for overrunning, over the grader's life
        self._n = workers
        # All processes, the spare last. The finalizer holds this list, not self, so it runs when self is
        # collected; the list is changed in place only.
        self._procs: list[_Worker] = []
        self._finalizer = weakref.finalize(self, _shutdown, self._procs)
        self._procs.extend(_Worker() for _ in range(workers + 1))

    @property
    def _workers(self) -> list[_Worker]:
        return self._procs[: self._n]

    def rewards(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        """math_reward(completion, reference) for each pair."""
        return self._run("reward", pairs)

    def correct(self, pairs: Sequence[tuple[str, str]]) -> list[bool]:
        """is_correct(completion, reference) for each pair."""
        return self._run("correct", pairs)

    def parse_teacher(self, texts: Sequence[str]) -> list[QA | None]:
        """parse_teacher_output(text) for each text."""
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
        default = _TASKS[kind][2]
        # Clip here too (the functions clip again, idempotently) so that no huge string is pickled.
        todo = deque((i, tuple(_clip(a) for a in args)) for i, args in enumerate(items))
        results: list[Any] = [default] * len(items)
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
                self._procs[i] = _Worker()
            raise
        return results

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
            raise RuntimeError(f"{_TASKS[kind][1]} raised in a grader worker:\n{value}")
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
        self._procs.append(_Worker())  # and a new spare starts
