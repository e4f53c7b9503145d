"""What a run shows while it works: a live rich panel on a terminal, plain lines in a log (quiet or not a TTY)."""

from __future__ import annotations

import time

from rich.console import Console
from rich.live import Live
from rich.table import Table


def _fmt_s(s: float | None) -> str:
    if s is None:
        return "?"
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class Reporter:
    def __init__(self, quiet: bool = False, console: Console | None = None):
        self.console = console or Console(stderr=False)
        self.live_mode = not quiet and self.console.is_terminal
        self.start = time.time()
        self.step = self.total = 0
        self.step_times: list[float] = []
        self.phase_text = ""
        self.inner_at = (0, 0)
        self.last: dict | None = None
        self.promotions = 0
        self.live = Live(self._render(), console=self.console, refresh_per_second=4) if self.live_mode else None

    # the loop's callbacks
    def outer_start(self, t: int, total: int) -> None:
        self.step, self.total = t, total
        self.phase_text = ""
        self._update()

    def phase(self, text: str) -> None:
        self.phase_text = text
        if not self.live_mode:
            self.line(f"step {self.step + 1}/{self.total}: {text}")
        self._update()

    def inner(self, step: int, total: int) -> None:
        self.inner_at = (step, total)
        self._update()

    def outer_end(self, row: dict, state) -> None:
        self.last = row
        self.step_times.append(row["wall_s"])
        self.promotions = len(state.promotions)
        rewards = " ".join(f"{r:+.3f}" for r in row["rewards"])
        ma = "-" if row["moving_avg"] is None else f"{row['moving_avg']:+.3f}"
        self.line(
            f"step {row['step'] + 1}/{self.total}  valid {row['teacher_valid_rate']:.0%}  rewards [{rewards}]  "
            f"mean {row['reward_mean']:+.3f}  moving {ma}  baseline acc {row['baseline_acc']:.3f}"
            f"{'  PROMOTED' if row['promoted'] else ''}  {row['wall_s']:.0f}s  eta {_fmt_s(self.eta())}"
        )
        self._update()

    def line(self, text: str) -> None:
        if self.live is not None:
            self.live.console.print(text)
        else:
            print(text, flush=True)

    # display
    def eta(self) -> float | None:
        """Seconds left, from the mean wall time of the steps this process finished (not from the start: building
        the toy world or loading a model is not a step)."""
        if not self.step_times:
            return None
        return sum(self.step_times) / len(self.step_times) * (self.total - self.step - 1)

    def _render(self) -> Table:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold")
        table.add_column()
        table.add_row("outer step", f"{self.step + 1}/{self.total}  {self.phase_text}")
        i, n = self.inner_at
        if n:
            bar = "#" * int(20 * i / n)
            table.add_row("inner loop", f"[{bar:<20}] {i}/{n}")
        if self.last:
            r = self.last
            table.add_row("teacher valid", f"{r['teacher_valid_rate']:.0%}")
            table.add_row("rewards", " ".join(f"{x:+.3f}" for x in r["rewards"]))
            ma = "-" if r["moving_avg"] is None else f"{r['moving_avg']:+.3f}"
            table.add_row("mean / moving", f"{r['reward_mean']:+.3f} / {ma}")
        table.add_row("promotions", str(self.promotions))
        table.add_row("elapsed / left", f"{_fmt_s(time.time() - self.start)} / {_fmt_s(self.eta())}")
        return table

    def _update(self) -> None:
        if self.live is not None:
            self.live.update(self._render())

    def __enter__(self):
        if self.live is not None:
            self.live.start()
        return self

    def __exit__(self, *exc):
        if self.live is not None:
            self.live.stop()
        return False

