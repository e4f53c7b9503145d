"""Ray workers on one machine's CPUs (issue 13): the same SOAR step with one and with two Ray workers (the speed-up),
and the executor's overhead with one worker against the local executor (goal: under 10% of the step).

All three runs use the same waves (inner.students_in_flight = r, so g waves of one dataset each) and the same seed,
so they compute the same step (the script checks that their metrics agree); they differ only in where the waves run.
Each run is `soarlite run` on the small toy world (tests/_world.py's WORLD and FAST, a few knobs larger so that the
students dominate), one torch thread per engine; steps after the first are timed (the first starts the workers).

    SOARLITE_CACHE=/tmp/soarlite-cache python benchmarks/ray_scaling.py [--steps 4] [--out /tmp/ray-bench]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests._world import FAST, WORLD  # noqa: E402

TIMING = {"phase_s", "wall_s", "peak_mem_mb"}
WORK = ["outer.g=2", "outer.r=2", "outer.n=8", "inner.steps=4", "inner.batch_size=4", "inner.group_size=8",
        "inner.students_in_flight=2",
        "preflight=false", "outer.tau=-1", "outer.window=1"]
RUNS = {
    "local": [],
    "ray, 1 worker": ["executor=ray", "ray.workers=1"],
    "ray, 2 workers": ["executor=ray", "ray.workers=2"],
}


def run(name: str, extra: list[str], steps: int, out: Path) -> list[dict]:
    folder = out / name.replace(", ", "-").replace(" ", "")
    shutil.rmtree(folder, ignore_errors=True)
    cmd = [sys.executable, "-m", "soarlite", "run", "--recipe", "tiny", "--out", str(folder), "--quiet",
           f"outer.steps={steps}", *WORLD, *FAST, *WORK, *extra]
    t0 = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if r.returncode:
        sys.exit(f"{name}: {r.stderr[-2000:]}")
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    print(f"{name}: {time.time() - t0:.0f}s in all", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--out", default="/tmp/soarlite-ray-bench")
    a = ap.parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = {name: run(name, extra, a.steps, out) for name, extra in RUNS.items()}
    same = [{k: v for k, v in r.items() if k not in TIMING} for r in rows["local"]]
    for name, rs in rows.items():
        if [{k: v for k, v in r.items() if k not in TIMING} for r in rs] != same:
            print(f"WARNING: {name} computed a different step than local")

    def med(name: str, key) -> float:
        return statistics.median(key(r) for r in rows[name][1:])

    step = {n: med(n, lambda r: r["wall_s"]) for n in rows}
    students = {"local": med("local", lambda r: r["phase_s"].get("inner_loop", 0) + r["phase_s"].get("reward_eval", 0))}
    for n in rows:
        if n != "local":
            students[n] = med(n, lambda r: r["phase_s"]["ray_waves"] + r["phase_s"].get("ray_transfer", 0))
    print(f"\nmedian over outer steps 2..{a.steps} (seconds):")
    print(f"{'executor':<16} {'step':>7} {'students (train + eval + transfers)':>36}")
    for n in rows:
        print(f"{n:<16} {step[n]:>7.1f} {students[n]:>36.1f}")
    print(f"\ntwo workers vs one: step {step['ray, 1 worker'] / step['ray, 2 workers']:.2f}x, "
          f"students {students['ray, 1 worker'] / students['ray, 2 workers']:.2f}x")
    over = step["ray, 1 worker"] - step["local"]
    print(f"executor overhead, one Ray worker vs local: {over:+.1f}s per step = {over / step['local']:+.1%} of the "
          f"local step")
    print(json.dumps({"step_s": step, "students_s": students}))


if __name__ == "__main__":
    main()
