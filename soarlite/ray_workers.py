"""A Ray worker: one engine (the same code as a local run: `engine.make_engine`) on one GPU, or on CPUs, that trains
whole waves of students in lockstep and evaluates them on the reward questions.

Adapters travel as the files of a saved PEFT adapter (`adapter_model.safetensors` + `adapter_config.json`), as bytes
through Ray's object store: the baseline student in (once per outer step, shared by every worker), each dataset's
kept (median) student back. Nothing here imports ray: `executor.RayExecutor` wraps `StudentWorker` in `ray.remote`.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from pathlib import Path

from soarlite.config import Config
from soarlite.data import Problem
from soarlite.grading import Grader
from soarlite.inner import Student, run_wave
from soarlite.names import STUDENT
from soarlite.tasks import World, spec_for

__all__ = ["StudentWorker", "adapter_blob", "load_blob"]


def adapter_blob(engine, name: str) -> dict[str, bytes]:
    """The adapter `name` as its saved files' bytes (weights only, in their own dtype: exact)."""
    with tempfile.TemporaryDirectory(prefix="soarlite-adapter-") as d:
        engine.save_adapter(name, d)
        return {p.name: p.read_bytes() for p in sorted(Path(d).iterdir()) if p.is_file()}


def load_blob(engine, name: str, blob: dict[str, bytes]) -> None:
    """Load `blob` (adapter_blob's bytes) into the adapter `name`, creating it when it is not there."""
    with tempfile.TemporaryDirectory(prefix="soarlite-adapter-") as d:
        for file, data in blob.items():
            (Path(d) / file).write_bytes(data)
        engine.load_adapter(name, d)


class _Progress:
    """The reporter a worker's inner loop talks to: it remembers where the wave is, for `StudentWorker.progress`."""

    def __init__(self) -> None:
        self.phase_text, self.inner_at, self.waves = "", (0, 0), 0

    def phase(self, text: str) -> None:
        self.phase_text = text

    def inner(self, step: int, total: int) -> None:
        self.inner_at = (step, total)

    def line(self, text: str) -> None:
        pass


class StudentWorker:
    """Holds one engine (base model + the baseline student + the students of the wave in flight) and a grader."""

    def __init__(self, cfg: Config, world: World, grader_workers: int = 1) -> None:
        from soarlite.engine import make_engine

        self.cfg, self.world = cfg, world
        self.engine = make_engine(cfg, world.model_dir)
        self.grader = Grader(workers=cfg.grader_workers or grader_workers, timeout_s=cfg.grade_timeout_s,
                             task=spec_for(cfg.task), task_options=cfg.task_options)
        self.report = _Progress()
        self.lock = threading.Lock()  # one wave at a time (the actor also answers `progress` while it trains)

    def pid(self) -> int:
        return os.getpid()

    def progress(self) -> dict:
        """Where this worker is: its process, the waves it finished, the phase and inner step of the one in flight."""
        r = self.report
        return {"pid": os.getpid(), "waves": r.waves, "phase": r.phase_text, "inner": r.inner_at}

    def run_wave(self, student: dict[str, bytes], students: list[Student], seed: int, questions: list[Problem],
                 with_baseline: bool, keep) -> dict:
        """Train and evaluate one wave (inner.run_wave, as a local run does it) from the baseline student's bytes;
        `keep(accuracies of a dataset's students)` picks the student each dataset keeps, whose bytes come back."""
        with self.lock:
            self.report.inner_at = (0, 0)
            load_blob(self.engine, STUDENT, student)
            phase_s: dict[str, float] = {}
            try:
                accs = run_wave(self.engine, self.grader, self.cfg, self.world, students, seed, questions,
                                with_baseline, self.report, phase_s)
                baseline = accs.pop() if with_baseline else None
                kept = {}
                for k in sorted({s.k for s in students}):
                    mine = [(s, a) for s, a in zip(students, accs) if s.k == k]
                    chosen = mine[keep([a for _, a in mine])][0].name
                    kept[k] = (chosen, adapter_blob(self.engine, chosen))
            finally:
                for s in students:  # the next wave starts from an engine that holds the baseline student only
                    with contextlib.suppress(KeyError, ValueError):
                        self.engine.delete_adapter(s.name)
            self.report.waves += 1
            return {"accs": accs, "baseline": baseline, "kept": kept, "phase_s": phase_s, "pid": os.getpid()}

    def close(self) -> None:
        self.grader.close()
