"""A run's guard: per-step peak memory, the --max-hours budget, and the context (outer step, phase) that the
out-of-memory message needs, as a wrapper around the run's progress reporter."""

from __future__ import annotations

from contextlib import contextmanager

from soarlite.hardware import reset_peak_memory


class BudgetReached(Exception):
    """--max-hours: the outer step that crossed the budget is finished and checkpointed; the run stops here."""

    def __init__(self, step: int, hours: float):
        super().__init__(f"stopped after outer step {step}: the --max-hours budget of {hours:g} h is spent")
        self.step, self.hours = step, hours


class StepGuard:
    """Wraps the run's reporter: remembers the outer step and phase (for the out-of-memory message), makes the
    CUDA peak-memory counter per step (metrics.jsonl's peak_mem_mb is read at the end of each step), and stops the
    run after the step that crosses --max-hours. It raises from outer_end, which the loop calls after the step's
    checkpoint is committed, so a stop never loses a step."""

    def __init__(self, report, max_hours: float | None, start: float | None = None):
        import time

        self._report = report
        self.max_hours = max_hours
        self.start = time.time() if start is None else start
        self.step: int | None = None
        self.phase_text = ""

    def __getattr__(self, name):
        return getattr(self._report, name)

    def outer_start(self, t: int, total: int) -> None:
        check_interrupted()
        self.step, self.phase_text = t, ""
        reset_peak_memory()
        self._report.outer_start(t, total)

    def phase(self, text: str) -> None:
        check_interrupted()
        self.phase_text = text
        self._report.phase(text)

    def outer_end(self, row: dict, state) -> None:
        import time

        self._report.outer_end(row, state)
        total = getattr(self._report, "total", None)
        more = total is None or state.step < total
        if self.max_hours is not None and more and time.time() - self.start >= self.max_hours * 3600:
            raise BudgetReached(state.step, self.max_hours)



class Interrupted(Exception):
    """SIGINT, SIGTERM or SIGHUP stopped the run; the message says how far it got and how to resume."""

    def __init__(self, signum: int, message: str = ""):
        super().__init__(message or f"interrupted by signal {signum}")
        self.signum = signum


class RunFinished(Exception):
    """`--resume` of a run that has nothing left to do; the message says so (exit status 0)."""


class RunFailed(RuntimeError):
    """The run stopped on something outside it (a full disk, a lost folder); every finished step is checkpointed."""


# Signals that arrived during the run. The exception a signal handler raises can be swallowed: raised inside a
# finalizer or a callback (the import system's module-lock callback is one), Python passes it to sys.unraisablehook,
# which would print an "Exception ignored" traceback, and goes on. signals_raise installs a hook that drops exactly
# those, and the run still stops: at the next phase (StepGuard) or when anything else ends the run, as an
# interruption, with its one line.
PENDING: list[int] = []


def check_interrupted() -> None:
    """Raise Interrupted if a signal arrived whose exception something swallowed."""
    if PENDING:
        raise Interrupted(PENDING[-1])


@contextmanager
def signals_raise():
    """SIGTERM and SIGHUP raise Interrupted, SIGINT KeyboardInterrupt, so the run unwinds: the grader's workers are
    stopped and the caller can say where the run stands. Each is also recorded in PENDING (see above). Only in the
    main thread (signals need it)."""
    import signal
    import sys
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        PENDING.append(signum)
        raise KeyboardInterrupt if signum == signal.SIGINT else Interrupted(signum)

    previous_hook = sys.unraisablehook

    def unraisable(args):
        if PENDING and isinstance(args.exc_value, (KeyboardInterrupt, Interrupted)):
            return  # a signal's own exception, swallowed where it landed: recorded in PENDING, acted on there
        previous_hook(args)

    wanted = [s for s in (signal.SIGINT, getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)) if s]
    PENDING.clear()
    old = {s: signal.signal(s, handler) for s in wanted}
    sys.unraisablehook = unraisable
    try:
        yield
    except BaseException as e:
        if PENDING and not isinstance(e, (KeyboardInterrupt, Interrupted)):
            raise Interrupted(PENDING[-1]) from e  # the signal's own exception was swallowed; this is why we stop
        raise
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        sys.unraisablehook = previous_hook
        PENDING.clear()
