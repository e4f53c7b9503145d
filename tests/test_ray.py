"""Student trainings on Ray (issue 13), on a local CPU cluster: one per test session, 2 CPUs and 2 fake logical GPUs.

A Ray run equals a local run with the same waves (rewards, promotions, PQ, adapters: exactly), also when a worker
process is killed in the middle of a wave; when a wave's worker is lost more often than `ray.retries`, the run stops
with the last whole step checkpointed.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from tests._world import FAST, WORLD, world_cache

ray = pytest.importorskip("ray")

TIMING = {"phase_s", "wall_s", "peak_mem_mb"}
# two datasets of two students: a Ray run with two workers trains one dataset per wave; so does this local run
STEPS = ["outer.steps=2", "outer.tau=-1", "outer.window=1", *WORLD, *FAST]
LOCAL_SAME_WAVES = ["inner.students_in_flight=2"]
RAY2 = ["executor=ray", "ray.workers=2", "ray.cpus_per_worker=1"]


@pytest.fixture(scope="session")
def ray_cluster():
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return world_cache(tmp_path_factory)


def _run(cache: Path, out: Path, *overrides: str) -> Path:
    from soarlite import runner

    old = os.environ.get("SOARLITE_CACHE")
    os.environ["SOARLITE_CACHE"] = str(cache)
    try:
        return runner.run("tiny", [*STEPS, *overrides], str(out), None, quiet=True)
    finally:
        if old is None:
            os.environ.pop("SOARLITE_CACHE", None)
        else:
            os.environ["SOARLITE_CACHE"] = old


def _rows(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


def _weights(run: Path) -> dict:
    from safetensors.torch import load_file

    return {a: load_file(str(run / "adapters" / a / "adapter_model.safetensors")) for a in ("student", "teacher")}


def _assert_same_run(a: Path, b: Path) -> None:
    import torch

    assert _rows(a) == _rows(b)  # rewards, gains, baseline accuracy, promotions, the teacher's update
    assert (a / "pq.jsonl").read_text() == (b / "pq.jsonl").read_text()
    wa, wb = _weights(a), _weights(b)
    for name in wa:
        assert wa[name].keys() == wb[name].keys()
        assert all(torch.equal(wa[name][k], wb[name][k]) for k in wa[name]), name


@pytest.fixture(scope="module")
def local_run(cache, tmp_path_factory) -> Path:
    return _run(cache, tmp_path_factory.mktemp("ray") / "local", *LOCAL_SAME_WAVES)


def _capture_executor(monkeypatch) -> list:
    from soarlite import executor

    made: list = []
    make = executor.make_executor

    def capture(*args, **kwargs):
        made.append(make(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(executor, "make_executor", capture)
    return made


def _kill_mid_wave(made: list, worker: int, at_wave: int, done: list) -> None:
    """Kill `worker`'s process with SIGKILL once it is past the first inner step of its `at_wave`-th wave (counting
    from 0, the waves it finished)."""
    deadline = time.time() + 600
    while not made and time.time() < deadline:
        time.sleep(0.05)
    while time.time() < deadline:
        try:
            p = ray.get(made[0].actors[worker].progress.remote(), timeout=30)
        except Exception:  # noqa: BLE001 -- still starting
            time.sleep(0.1)
            continue
        if p["waves"] == at_wave and p["inner"][0] >= 1 and "train" in p["phase"]:
            os.kill(p["pid"], signal.SIGKILL)
            done.append(p)
            return
        time.sleep(0.05)


def test_ray_run_equals_local_run_with_the_same_waves(ray_cluster, cache, local_run, tmp_path_factory):
    """Two Ray workers (students_in_flight 0: a wave of r * ceil(g / 2) students each) against a local run with the
    same waves: the same metrics, PQ, teacher and promoted student, to the bit."""
    run = _run(cache, tmp_path_factory.mktemp("ray") / "ray", *RAY2)
    _assert_same_run(local_run, run)
    row = json.loads((run / "metrics.jsonl").read_text().splitlines()[0])
    assert row["phase_s"]["ray_waves"] > 0 and row["promoted"]


def test_killed_worker_mid_wave_leaves_the_step_unchanged(ray_cluster, cache, local_run, tmp_path_factory,
                                                          monkeypatch):
    made = _capture_executor(monkeypatch)
    killed: list = []
    killer = threading.Thread(target=_kill_mid_wave, args=(made, 1, 0, killed), daemon=True)
    killer.start()
    run = _run(cache, tmp_path_factory.mktemp("ray") / "killed", *RAY2)
    killer.join(timeout=5)
    assert killed, "the worker was never seen mid-wave"
    assert made[0].restarts == 1
    _assert_same_run(local_run, run)


def test_worker_lost_past_the_retries_stops_with_the_last_step_checkpointed(ray_cluster, cache, tmp_path_factory,
                                                                           monkeypatch):
    from soarlite.executor import WorkersLost

    made = _capture_executor(monkeypatch)
    killed: list = []
    killer = threading.Thread(target=_kill_mid_wave, args=(made, 0, 1, killed), daemon=True)  # in step 2
    killer.start()
    out = tmp_path_factory.mktemp("ray") / "lost"
    with pytest.raises(WorkersLost, match=r"lost 1 times .*ray.retries=0.*resume with `soarlite run --resume"):
        _run(cache, out, *RAY2, "ray.retries=0")
    killer.join(timeout=5)
    assert killed
    assert json.loads((out / "state.json").read_text())["step"] == 1  # step 1 whole, step 2 not written
    assert len(_rows(out)) == 1


def test_placement_one_worker_per_fake_gpu(ray_cluster):
    """On CUDA a worker is a bundle of one GPU (PACK on one node): two bundles on the two fake GPUs, each actor-sized
    task seeing its own GPU id; on a CPU run a worker takes ray.cpus_per_worker CPUs and no GPU."""
    from ray.util.placement_group import placement_group, remove_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    from soarlite.config import from_dict
    from soarlite.executor import placement

    have = ray.cluster_resources()
    cfg = from_dict({"executor": "ray"})
    n, bundle, strategy = placement(cfg, True, have, 1)
    assert (n, bundle, strategy) == (2, {"CPU": 1.0, "GPU": 1.0}, "PACK")
    assert placement(cfg, False, have, 3) == (2, {"CPU": 1.0}, "SPREAD")
    assert placement(from_dict({"ray": {"workers": 3, "cpus_per_worker": 2}}), False, have, 1)[:2] == (3, {"CPU": 2.0})

    pg = placement_group([bundle] * n, strategy=strategy)
    ray.get(pg.ready(), timeout=60)

    @ray.remote(num_cpus=0, num_gpus=1)
    def gpu_ids():
        return ray.get_gpu_ids()

    ids = ray.get([gpu_ids.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=i)).remote()
                   for i in range(n)])
    remove_placement_group(pg)
    assert sorted(i for got in ids for i in got) == [0, 1]

