"""Where a wave of students trains and is evaluated (`executor: local | ray`).

The loop builds the step's waves (whole datasets each; a dataset's r students always train together) and hands them
to an executor; it gets back every student's gain on Q_R, the baseline's accuracy, and each dataset's kept (median)
student as an adapter in the loop's engine, ready for a promotion.

  * `LocalExecutor` (the default): the waves one after another on the loop's own engine, as before the seam.
  * `RayExecutor`: one Ray actor per GPU (or per `ray.cpus_per_worker` CPUs), each with its own engine, trains
    whole waves, as many at once as there are workers. The teacher stays on the loop's engine. A worker lost in a wave
    (node lost, OOM kill) is started again and the wave retrained from the same seeds, so the step's result does not
    change; after `ray.retries` losses of one wave the run stops (`WorkersLost`) with the last whole checkpoint intact.

A wave's result depends only on the baseline student's weights, the wave's students (names, datasets, shuffles) and
its seed, never on which worker or how many run it: a Ray run equals a local run with the same waves, that is with
`inner.students_in_flight` = r * ceil(g / ray.workers) (what a Ray run with students_in_flight 0 uses).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from soarlite.config import Config
from soarlite.data import Problem
from soarlite.extras import require
from soarlite.guard import RunFailed
from soarlite.inner import Student, clock, run_wave
from soarlite.names import STUDENT
from soarlite.tasks import World

__all__ = ["LocalExecutor", "RayExecutor", "StepResult", "Wave", "WorkersLost", "make_executor", "placement"]


class WorkersLost(RunFailed):
    """A wave's Ray worker was lost more than `ray.retries` times; the step is not checkpointed."""


@dataclass
class Wave:
    students: list[Student]  # whole datasets: every one of a dataset's r students
    seed: int  # the wave's inner-loop seed


@dataclass
class StepResult:
    baseline_acc: float  # Acc(baseline student, Q_R)
    gains: list[list[float]]  # per dataset, its students' Acc - baseline_acc, in student order
    kept: dict[int, str]  # dataset -> the adapter (in the loop's engine) of its kept student
    phase_s: dict[str, float] = field(default_factory=dict)


class LocalExecutor:
    """The waves one after another, in this process, on the loop's engine."""

    workers = 1

    def __init__(self, cfg: Config, world: World, engine, grader, report) -> None:
        self.cfg, self.world, self.engine, self.grader, self.report = cfg, world, engine, grader, report

    def train_and_evaluate(self, waves: list[Wave], questions: list[Problem], keep, phase_s: dict[str, float]) -> StepResult:
        gains: list[list[float]] = [[] for _ in range(self.cfg.outer.g)]
        baseline_acc = None
        kept: dict[int, str] = {}
        for wave in waves:
            students = wave.students
            accs = run_wave(self.engine, self.grader, self.cfg, self.world, students, wave.seed, questions,
                            baseline_acc is None, self.report, phase_s)
            if baseline_acc is None:
                baseline_acc = accs.pop()
            for s, acc in zip(students, accs):
                gains[s.k].append(acc - baseline_acc)
            for k in {s.k for s in students}:
                mine = [s for s in students if s.k == k]
                name = mine[keep(gains[k])].name
                kept[k] = name
                for s in mine:
                    if s.name != name:
                        self.engine.delete_adapter(s.name)
        return StepResult(baseline_acc, gains, kept, phase_s)

    def close(self) -> None:
        pass


def make_executor(cfg: Config, world: World, engine, grader, report, run_dir: Path | None = None):
    """The recipe's executor (`executor: local | ray`); close it when the run ends."""
    if cfg.executor == "ray":
        return RayExecutor(cfg, world, engine, report, run_dir)
    return LocalExecutor(cfg, world, engine, grader, report)


def _lost_errors():
    import ray.exceptions as rex

    names = ("RayActorError", "ActorDiedError", "ActorUnavailableError", "WorkerCrashedError", "NodeDiedError",
             "OutOfMemoryError", "ObjectLostError", "OwnerDiedError")
    return tuple(getattr(rex, n) for n in names if hasattr(rex, n))


class RayExecutor:
    """Waves on Ray workers: one actor per bundle of a placement group (PACK on one node, SPREAD across several)."""

    def __init__(self, cfg: Config, world: World, engine, report, run_dir: Path | None = None) -> None:
        require("ray", "ray")
        import ray
        from ray.util.placement_group import placement_group

        from soarlite.ray_workers import StudentWorker

        self.cfg, self.engine, self.report, self.run_dir = cfg, engine, report, run_dir
        self.started = not ray.is_initialized()
        if self.started:
            ray.init(address=cfg.ray.address or None, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
        rc = cfg.ray
        self.cuda = _wants_cuda(cfg)
        have = ray.cluster_resources()
        nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
        n, self.bundle, self.strategy = placement(cfg, self.cuda, have, nodes)
        self.workers = n
        self.pg = placement_group([dict(self.bundle) for _ in range(n)], strategy=self.strategy)
        ready, _ = ray.wait([self.pg.ready()], timeout=rc.start_timeout_s)
        if not ready:
            ray.util.remove_placement_group(self.pg)
            raise RunFailed(f"ray.workers: the Ray cluster has no room for {n} workers of {self.bundle} within "
                            f"{rc.start_timeout_s:g}s (it has {dict(sorted(have.items()))}); lower ray.workers, "
                            f"ray.gpus_per_worker or ray.cpus_per_worker, or add nodes")
        self._remote = ray.remote(StudentWorker)
        self.world_ref = ray.put(world)
        self.actors = [self._start(i) for i in range(n)]
        self.restarts = 0
        report.line(f"Ray: {n} student worker{'s' if n > 1 else ''} of {self.bundle} ({self.strategy}, "
                    f"{nodes} node{'s' if nodes != 1 else ''})")

    def _start(self, i: int):
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        rc = self.cfg.ray
        return self._remote.options(
            num_cpus=rc.cpus_per_worker, num_gpus=rc.gpus_per_worker if self.cuda else 0,
            max_concurrency=2,  # one thread trains, the other answers `progress`
            max_restarts=0,  # the executor restarts a lost worker itself, and retrains its wave
            scheduling_strategy=PlacementGroupSchedulingStrategy(self.pg, placement_group_bundle_index=i),
        ).remote(self.cfg, self.world_ref, rc.cpus_per_worker)

    def train_and_evaluate(self, waves: list[Wave], questions: list[Problem], keep, phase_s: dict[str, float]) -> StepResult:
        import ray

        from soarlite.ray_workers import adapter_blob, load_blob

        lost = _lost_errors()
        with clock(phase_s, "ray_transfer"):
            student = ray.put(adapter_blob(self.engine, STUDENT))  # once per step, read by every worker
        todo, free = deque(range(len(waves))), deque(range(self.workers))
        running: dict = {}  # object ref -> (wave, worker)
        losses = [0] * len(waves)
        results: dict[int, dict] = {}
        self.report.phase(f"{sum(len(w.students) for w in waves)} students train in {len(waves)} wave"
                          f"{'s' if len(waves) > 1 else ''} on {self.workers} Ray worker{'s' if self.workers > 1 else ''}")
        self.report.inner(0, len(waves))
        with clock(phase_s, "ray_waves"):
            while todo or running:
                while todo and free:
                    w, a = todo.popleft(), free.popleft()
                    ref = self.actors[a].run_wave.remote(student, waves[w].students, waves[w].seed, questions, w == 0,
                                                         keep)
                    running[ref] = (w, a)
                done, _ = ray.wait(list(running), num_returns=1)
                for ref in done:
                    w, a = running.pop(ref)
                    try:
                        results[w] = ray.get(ref)
                    except lost as e:
                        losses[w] += 1
                        self._lost(w, a, waves[w], losses[w], e)
                        todo.appendleft(w)
                    free.append(a)
                    self.report.inner(len(results), len(waves))
        gains: list[list[float]] = [[] for _ in range(self.cfg.outer.g)]
        baseline_acc = results[0]["baseline"]
        kept: dict[int, str] = {}
        with clock(phase_s, "ray_transfer"):
            for w, wave in enumerate(waves):
                res = results[w]
                for s, acc in zip(wave.students, res["accs"]):
                    gains[s.k].append(acc - baseline_acc)
                for k, (name, blob) in res["kept"].items():
                    load_blob(self.engine, name, blob)
                    kept[k] = name
                for key, s in res["phase_s"].items():  # worker-seconds, summed over workers (they overlap)
                    phase_s[f"worker_{key}"] = phase_s.get(f"worker_{key}", 0.0) + s
        return StepResult(baseline_acc, gains, kept, phase_s)

    def _lost(self, w: int, a: int, wave: Wave, losses: int, error: Exception) -> None:
        import ray

        first, last = wave.students[0].name, wave.students[-1].name
        why = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        if losses > self.cfg.ray.retries:
            where = f" in {self.run_dir}" if self.run_dir else ""
            resume = f"`soarlite run --resume {self.run_dir}`" if self.run_dir else "`soarlite run --resume RUN`"
            raise WorkersLost(f"Ray worker {a} was lost {losses} times training students {first}..{last} "
                              f"(ray.retries={self.cfg.ray.retries}; last: {why}); the run stopped; every finished "
                              f"step is checkpointed{where}: resume with {resume}")
        self.restarts += 1
        self.report.line(f"Ray worker {a} lost while training students {first}..{last} ({why}); starting it again "
                         f"and retraining them from the same seeds (loss {losses} of at most {self.cfg.ray.retries})")
        ray.kill(self.actors[a], no_restart=True)
        self.actors[a] = self._start(a)

    def close(self) -> None:
        import ray

        if not ray.is_initialized():
            return
        for actor in self.actors:
            ray.kill(actor, no_restart=True)
        ray.util.remove_placement_group(self.pg)
        if self.started:
            ray.shutdown()


def placement(cfg: Config, cuda: bool, have: dict[str, float], nodes: int) -> tuple[int, dict[str, float], str]:
    """(workers, one worker's bundle, strategy) on a cluster with the resources `have` over `nodes` alive nodes:
    `ray.workers`, or as many as the GPUs (CPUs on a CPU run) allow; PACK on one node, SPREAD across several."""
    rc = cfg.ray
    if rc.workers:
        n = rc.workers
    elif cuda:
        n = max(1, int(have.get("GPU", 0) // rc.gpus_per_worker))
    else:
        n = max(1, int(have.get("CPU", 1) // rc.cpus_per_worker))
    bundle = {"CPU": float(rc.cpus_per_worker), **({"GPU": float(rc.gpus_per_worker)} if cuda else {})}
    return n, bundle, "PACK" if nodes <= 1 else "SPREAD"


def _wants_cuda(cfg: Config) -> bool:
    """Whether the workers run on GPUs: `device: cuda`, or `auto` where this machine has one."""
    if cfg.device != "auto":
        return cfg.device == "cuda"
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return torch.cuda.is_available()
