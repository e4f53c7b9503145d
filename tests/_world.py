"""One small toy world and one finished tiny SOAR run per test session, shared by the modules that need them.

The world is built under pytest's session base folder as `<root>/toy/<hash>`, which is where the CLI looks when
SOARLITE_CACHE=<root>, so every command a test runs finds it instead of building it again.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# test_e2e's world: small, but pretrained long enough that the teacher writes valid pairs and easy problems get solved
SETTINGS = {"pretrain_steps": 600, "layers": 2, "noise": 0.25}  # a writer sloppy enough to leave RL something to fix
WORLD = ["task_options.preset=small"] + [f"task_options.{k}={v}" for k, v in SETTINGS.items()]
FAST = [
    "outer.g=2", "outer.n=4", "outer.r=2", "outer.M=4", "outer.max_new_tokens=40",
    "inner.steps=2", "inner.batch_size=2", "inner.group_size=4", "inner.max_new_tokens=40",
    "eval.samples=0", "eval.hard_only=false", "threads=1",
    "outer.promote_from=0",  # the recipe holds promotion back for 70 steps; tests run two or three
]


def own_model(world: Path, hard_train: str = "easy.jsonl", hard_test: str | None = None) -> list[str]:
    """Overrides that use a built world as a user's own model and data under the math task (the toy world's prompts
    as literal text), as someone with their own checkpoint and fail@k files would."""
    from soarlite import toy

    out = ["task=math", f"model.base={world / 'model'}", f"data.hard_train={world / hard_train}",
           f"prompts.teacher={toy.TEACHER_PROMPT}", f"prompts.student={toy.STUDENT_PROMPT}"]
    return out + ([f"data.hard_test={world / hard_test}"] if hard_test else [])


def world_cache(tmp_path_factory) -> Path:
    """SOARLITE_CACHE root holding the built world (built on first use in the session)."""
    from soarlite import toy

    # SOARLITE_TEST_CACHE keeps the world between sessions (for working on the tests); by default, one per session
    root = Path(os.environ.get("SOARLITE_TEST_CACHE") or tmp_path_factory.getbasetemp() / "soarlite-cache")
    toy.ensure_built({**toy.SMALL_SETTINGS, **SETTINGS}, seed=0, cache_root=root / "toy")
    return root


def world_dir(cache: Path) -> Path:
    from soarlite import toy

    return toy.cache_dir({**toy.SMALL_SETTINGS, **SETTINGS}, seed=0, cache_root=cache / "toy")


def soarlite(cache: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "SOARLITE_CACHE": str(cache)}
    r = subprocess.run([sys.executable, "-m", "soarlite", *args], env=env, capture_output=True, text=True, timeout=900)
    if check:
        assert r.returncode == 0, r.stderr[-3000:]
    return r


def finished_run(tmp_path_factory) -> Path:
    """A finished two-step tiny run that promoted at both steps (tau below any reward), so it has PQ and a student."""
    cache = world_cache(tmp_path_factory)
    run = tmp_path_factory.getbasetemp() / "finished-run"
    if not (run / "summary.json").exists():
        soarlite(cache, "run", "--recipe", "tiny", "--out", str(run), "--quiet", "outer.steps=2", "outer.tau=-1",
                 "outer.window=1", *WORLD, *FAST)
    return run


def invoke(cache: Path, *args: str, check: bool = True):
    """The CLI in this process (no interpreter and torch start-up per command): stdout, stderr and exit_code."""
    from typer.testing import CliRunner

    from soarlite.cli import app

    r = CliRunner().invoke(app, list(args), env={"SOARLITE_CACHE": str(cache)})
    if check:
        assert r.exit_code == 0, (r.stderr[-3000:], r.exception)
    return r
