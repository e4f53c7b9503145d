"""End to end: `soarlite run --recipe tiny` on a small toy world, for a couple of outer steps, killed and resumed."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _world import FAST as _FAST
from _world import WORLD, world_cache, world_dir
from _world import own_model as own_model_overrides

pytestmark = pytest.mark.slow

FAST = [a for a in _FAST if not a.startswith(("eval.samples", "eval.hard_only"))] + ["eval.samples=2"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    root = world_cache(tmp_path_factory)
    assert json.loads((world_dir(root) / "world.json").read_text())["stats"]["teacher_valid_rate"] >= 0.3
    return root


@pytest.fixture(scope="module")
def own_model(cache):
    """The same world used as a user's own model and data: the easy split stands in for the grounding set, so
    students' accuracies on it move and the teacher gets a non-zero reward to learn from."""
    world = world_dir(cache)
    return own_model_overrides(world, hard_test="hard_test.jsonl") + ["outer.M=8"]


def teacher_moved(run: Path) -> bool:
    """A fresh LoRA has B = 0; any step with unequal rewards moves it."""
    from safetensors.torch import load_file

    teacher = load_file(str(run / "adapters" / "teacher" / "adapter_model.safetensors"))
    return any(k.endswith("lora_B.weight") and v.abs().sum() > 0 for k, v in teacher.items())


def soarlite(cache, *args, wait=True):
    env = {**os.environ, "SOARLITE_CACHE": str(cache)}
    cmd = [sys.executable, "-m", "soarlite", *args]
    if not wait:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def metrics(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def test_tiny_run_is_complete_and_changes_the_teacher(cache, tmp_path):
    run = tmp_path / "run"
    r = soarlite(cache, "run", "--recipe", "tiny", "--out", str(run), "--quiet", "outer.steps=2", "eval.hard_only=true",
                 *WORLD, *FAST)
    assert "promotions" in r.stdout and "Hard-Only student" in r.stdout and "k of N" in r.stdout
    names = {p.name for p in run.iterdir()}
    assert {"config.yaml", "state.json", "metrics.jsonl", "pq.jsonl", "adapters", "summary.json"} <= names
    assert not {".next", ".trash"} & names
    rows = metrics(run)
    assert [m["step"] for m in rows] == [0, 1]
    for m in rows:
        assert {"step", "teacher_valid_rate", "rewards", "reward_mean", "moving_avg", "promoted", "baseline_acc",
                "wall_s", "peak_mem_mb"} <= set(m)
        assert len(m["rewards"]) == 2 and 0 < m["teacher_valid_rate"] <= 1
        assert m["reward_mean"] == pytest.approx(sum(m["rewards"]) / 2)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["outer_steps"] == 2 and summary["hard_only_steps"] == 2 * max(1, summary["promotions"])
    assert lr_follows_promotions(rows, 0.03, 1.0)  # the recipe's constant rate: lr_decay 1.0
    for key in ("baseline_hard_acc", "final_hard_acc", "hard_only_acc"):
        assert 0.0 <= summary[key] <= 1.0

    # the teacher learns exactly when the datasets' rewards differ (RLOO advantages are zero otherwise)
    assert teacher_moved(run) == any(len(set(m["rewards"])) > 1 for m in rows)
    for name in ("teacher", "student"):
        cfg = json.loads((run / "adapters" / name / "adapter_config.json").read_text())
        assert cfg["peft_type"] == "LORA" and cfg["r"] == 8
    # the saved config is the resolved recipe, overrides included
    import yaml

    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["outer"]["steps"] == 2 and saved["inner"]["group_size"] == 4


def lr_follows_promotions(rows: list[dict], lr: float, decay: float) -> bool:
    """inner.lr_decay: each step's students train at lr x decay^(promotions before that step)."""
    promoted = [sum(m["promoted"] for m in rows[:t]) for t in range(len(rows))]
    return [m["inner_lr"] for m in rows] == pytest.approx([lr * decay**p for p in promoted])


def test_promotion_waits_for_promote_from(cache, tmp_path):
    # tau below any reward and a window of one: without outer.promote_from every step would promote
    run = tmp_path / "run"
    r = soarlite(cache, "run", "--recipe", "tiny", "--out", str(run), "--quiet", "outer.steps=2", "outer.tau=-1.0",
                 "outer.window=1", *WORLD, *FAST, "eval.samples=0", "outer.promote_from=1")
    assert "promotion held back until outer step 2" in r.stdout
    rows = metrics(run)
    assert [m["promoted"] for m in rows] == [False, True]
    assert rows[0]["moving_avg"] is not None  # the held-back step's reward still counts
    pq = [json.loads(x) for x in (run / "pq.jsonl").read_text().splitlines()]
    assert len(pq) == 4 and {q["step"] for q in pq} == {1}  # the best dataset of step 1 (n=4 under FAST)
    assert json.loads((run / "state.json").read_text())["promotions"] == [1]


def test_killed_run_resumes_where_it_stopped(cache, own_model, tmp_path):
    # lr_decay: a resumed run must go on at the rate its promotions so far give (state.json's promotions)
    # AdamW at 3e-3: two tiny steps of SGD barely move a student, and the rewards must differ for the teacher to move
    args = ["--quiet", "outer.steps=3", *FAST, "eval.samples=0", *own_model, "inner.optimizer=adamw", "inner.lr=3e-3",
            "inner.lr_decay=0.5", "outer.tau=-1.0", "outer.window=1"]  # tau below any reward: every step promotes
    straight = tmp_path / "straight"
    soarlite(cache, "run", "--recipe", "tiny", "--out", str(straight), *args)
    assert any(len(set(m["rewards"])) > 1 for m in metrics(straight)) and teacher_moved(straight)
    assert [m["promoted"] for m in metrics(straight)] == [True, True, True]
    assert [m["inner_lr"] for m in metrics(straight)] == pytest.approx([3e-3, 1.5e-3, 7.5e-4])

    run = tmp_path / "killed"
    p = soarlite(cache, "run", "--recipe", "tiny", "--out", str(run), *args, wait=False)
    deadline = time.time() + 600
    while not (run / "state.json").exists():  # wait for the first checkpoint, then kill inside the second step
        assert p.poll() is None and time.time() < deadline, p.stderr.read()[-2000:]
        time.sleep(0.2)
    time.sleep(1.0)
    p.send_signal(signal.SIGKILL)
    p.wait()
    before = metrics(run)
    assert len(before) in (1, 2)

    r = soarlite(cache, "run", "--resume", str(run), "--quiet")
    assert "done in" in r.stdout
    after = metrics(run)
    assert [m["step"] for m in after] == [0, 1, 2]
    # nothing before the kill was lost, and the resumed steps are the ones an unbroken run makes
    drop = ("wall_s", "peak_mem_mb", "phase_s")  # timings and memory are the machine's, not the run's
    strip = lambda rows: [{k: v for k, v in m.items() if k not in drop} for m in rows]  # noqa: E731
    assert strip(after[: len(before)]) == strip(before)
    assert strip(after) == strip(metrics(straight))


def test_out_folder_with_a_run_is_refused(cache, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "state.json").write_text("{}")
    env = {**os.environ, "SOARLITE_CACHE": str(cache)}
    r = subprocess.run([sys.executable, "-m", "soarlite", "run", "--recipe", "tiny", "--out", str(run)],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 2
    assert r.stderr.strip() == f"error: --out: {run} already holds a run; continue it with --resume {run} or pick --out"
    assert (run / "state.json").read_text() == "{}"
