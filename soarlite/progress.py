"""What a command shows while it works: a live panel on a terminal, plain lines in a log (with --quiet, or when the
output is not a terminal).

Every phase that can take more than a few seconds (the world, the model load, the pre-flight check, the outer steps,
the summary, the Hard-Only student) is announced with `phase(text)`; the panel shows it with its own clock and the
run's clock, which tick once a second even when nothing else changes. The log gets one line per phase, stamped with
the time since the start, and one line per finished outer step. Steps are shown 1-based ("step 1/12" is the first);
files (metrics.jsonl `step`) count from 0.
"""

from __future__ import annotations

import re
import time

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

REFRESH_PER_SECOND = 1  # the panel redraws once a second: the clocks tick, a log of the screen stays small
INNER_LOG_EVERY_S = 30.0  # in the plain log, an inner-loop line at most this often (and at its end)

# The loop's phase names (soarlite/soar.py) in words a newcomer reads; anything else is shown as it is.
_FRIENDLY = [
    (re.compile(r"^students s\d+_\d+\.\.s\d+_\d+ train$"), "students train on the teacher's questions"),
    (re.compile(r"^students answer the reward questions$"),
     "students and the current student answer hard problems (the teacher's reward)"),
    (re.compile(r"^teacher samples questions$"), "the teacher writes questions"),
    (re.compile(r"^teacher update$"), "the teacher learns from its reward"),
]


def friendly(text: str) -> str:
    for pattern, words in _FRIENDLY:
        if pattern.match(text):
            return words
    return text


def fmt_s(s: float | None) -> str:
    if s is None:
        return "?"
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


_fmt_s = fmt_s  # the name other modules used


class Silent:
    """A reporter that shows nothing: for an inner loop run inside another command's work (the pre-flight check, the
    toy probe, benchmarks), whose own output says what it is doing."""

    def phase(self, text: str) -> None:
        pass

    def inner(self, step: int, total: int) -> None:
        pass

    def line(self, text: str) -> None:
        pass


class Reporter:
    """The loop's and the runner's callbacks: outer_start, phase, inner, outer_end, line."""

    def __init__(self, quiet: bool = False, console: Console | None = None, clock=time.time):
        self.console = console or Console(stderr=False)
        self.live_mode = not quiet and self.console.is_terminal
        self.clock = clock
        self.start = clock()
        self.step = self.total = 0
        self.in_loop = False
        self.step_times: list[float] = []
        self.phase_text = ""
        self.phase_start = self.start
        self.inner_at = (0, 0)
        self.inner_logged = 0.0
        self.last: dict | None = None
        self.promotions = 0
        self.live = (Live(console=self.console, refresh_per_second=REFRESH_PER_SECOND, get_renderable=self._render,
                          transient=False) if self.live_mode else None)

    # ---------------------------------------------------------------------------------------- the callbacks
    def outer_start(self, t: int, total: int) -> None:
        self.step, self.total, self.in_loop = t, total, True
        self.phase_text = ""
        self.inner_at = (0, 0)

    def phase(self, text: str) -> None:
        """A new phase; before the first outer step (or after the last) it is a stage of the run, not of a step."""
        self.phase_text = friendly(text)
        self.phase_start = self.clock()
        self.inner_at = (0, 0)
        self.line(f"{self._where()}{self.phase_text}", stamp=True, panel=False)

    def stage(self, text: str) -> None:
        """A phase outside the outer loop (world, model load, summary)."""
        self.in_loop = False
        self.phase(text)

    def inner(self, step: int, total: int) -> None:
        self.inner_at = (step, total)
        if not self.live_mode and total:
            now = self.clock()
            if step == total or now - self.inner_logged >= INNER_LOG_EVERY_S:
                self.inner_logged = now
                self.line(f"{self._where()}  inner loop {step}/{total} RLOO steps", stamp=True, panel=False)

    def outer_end(self, row: dict, state) -> None:
        self.last = row
        self.step_times.append(row["wall_s"])
        self.promotions = len(state.promotions)
        rewards = " ".join(f"{r:+.3f}" for r in row["rewards"])
        ma = "-" if row["moving_avg"] is None else f"{row['moving_avg']:+.3f}"
        self.line(
            f"step {row['step'] + 1}/{self.total} done: teacher valid {row['teacher_valid_rate']:.0%}  rewards "
            f"[{rewards}]  mean {row['reward_mean']:+.3f}  moving avg {ma}  current student's accuracy "
            f"{row['baseline_acc']:.3f}{'  PROMOTED' if row['promoted'] else ''}  {fmt_s(row['wall_s'])}  "
            f"left {fmt_s(self.eta())}", stamp=True)
        if row["step"] + 1 >= self.total:
            self.in_loop = False

    def line(self, text: str, stamp: bool = False, panel: bool = True) -> None:
        """One line above the panel (or in the log). `panel=False`: only in the log, the panel shows it already."""
        if stamp:
            text = f"[{fmt_s(self.clock() - self.start)}] {text}"
        if self.live is not None:
            if panel:
                self.live.console.print(Text(text))  # Text: never read as rich markup
        else:
            print(text, flush=True)

    # ---------------------------------------------------------------------------------------- display
    def _where(self) -> str:
        return f"step {self.step + 1}/{self.total}: " if self.in_loop and self.total else ""

    def eta(self) -> float | None:
        """Seconds left in the outer loop, from the mean wall time of the steps this process finished (building the
        world or loading a model is not a step)."""
        if not self.step_times:
            return None
        return sum(self.step_times) / len(self.step_times) * max(0, self.total - self.step - 1)

    def _render(self) -> Table:
        now = self.clock()
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold")
        table.add_column()
        if self.in_loop and self.total:
            table.add_row("outer step", Text(f"{self.step + 1} of {self.total}"))
        table.add_row("now", Text(f"{self.phase_text or 'starting'}  ({fmt_s(now - self.phase_start)})"))
        i, n = self.inner_at
        if n:
            bar = "#" * int(20 * i / n)
            table.add_row("inner loop", Text(f"[{bar:<20}] {i}/{n} RLOO steps"))
        if self.last:
            r = self.last
            table.add_row("teacher valid", Text(f"{r['teacher_valid_rate']:.0%}"))
            table.add_row("rewards", Text(" ".join(f"{x:+.3f}" for x in r["rewards"])))
            ma = "-" if r["moving_avg"] is None else f"{r['moving_avg']:+.3f}"
            table.add_row("mean / moving avg", Text(f"{r['reward_mean']:+.3f} / {ma}"))
            table.add_row("promotions", Text(str(self.promotions)))
        clock = f"{fmt_s(now - self.start)}"
        if self.in_loop and self.total:
            clock += f"  (outer loop: {fmt_s(self.eta())} left)"
        table.add_row("elapsed", Text(clock))
        return table

    def close(self) -> None:
        """Stop the panel (idempotent): what is printed after this stays below it."""
        if self.live is not None and self.live.is_started:
            self.live.stop()

    def __enter__(self):
        if self.live is not None:
            self.live.start()
        return self

    def __exit__(self, *exc):
        self.close()
        return False
