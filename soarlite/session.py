"""One command's set-up: the recipe (or a run folder's), its task and world, the engine (one model load) and the
grader. Shared by `run`, `eval`, `filter`, `baseline` and `plan --measure`, so that each resolves a recipe the same way.

Everything that can be checked without a model is checked before one loads.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import yaml

from soarlite import tasks
from soarlite.config import Config, RecipeError, from_dict, load_recipe, merge, parse_overrides
from soarlite.engine import make_engine
from soarlite.grading import Grader


def resolve_run(recipe: str | None, overrides: list[str], out: str | None, resume: str | None) -> tuple[Config, Path]:
    """The run's config and folder: a new run from a recipe, or the run in `resume` (its saved config, overridden)."""
    if resume:
        run_dir = Path(resume)
        if not (run_dir / "config.yaml").is_file():
            raise RecipeError(f"--resume: {run_dir} holds no run (no config.yaml)")
        saved = yaml.safe_load((run_dir / "config.yaml").read_text())
        cfg = from_dict(merge(saved, parse_overrides(overrides)))
        tasks.resolve(cfg)
        return cfg, run_dir
    if recipe is None:
        raise RecipeError("--recipe: name a recipe (see `soarlite recipes`) or give --resume DIR")
    cfg = load_config(recipe, overrides, None)
    run_dir = Path(out) if out else Path("runs") / cfg.name
    if (run_dir / "state.json").exists():
        raise RecipeError(f"--out: {run_dir} already holds a run; continue it with --resume {run_dir} or pick --out")
    return cfg, run_dir


def load_config(recipe: str | None, overrides: list[str], run: str | None) -> Config:
    """The recipe, or the run folder's resolved recipe, with overrides; its task checked (nothing loaded)."""
    if recipe is None and run is None:
        raise RecipeError("--recipe: name a recipe (see `soarlite recipes`) or give --run DIR")
    if recipe is None:
        return resolve_run(None, overrides, None, run)[0]
    cfg = load_recipe(recipe, overrides)
    tasks.resolve(cfg)
    return cfg


def check_paths(cfg: Config) -> None:
    """The recipe's data files are there (cheap: before anything is written or loaded)."""
    tasks.resolve(cfg, with_data=True)


def make_grader(cfg: Config) -> Grader:
    """A grader whose workers serve the recipe's task."""
    return Grader(workers=cfg.grader_workers, timeout_s=cfg.grade_timeout_s, task=tasks.spec_for(cfg.task),
                  task_options=cfg.task_options)


@contextmanager
def session(cfg: Config, with_data: bool = True):
    """The recipe's world, its engine (one model load) and a grader, for one command."""
    task = tasks.resolve(cfg, with_data=with_data)
    world = tasks.resolve_world(cfg, task, with_data)
    engine = make_engine(cfg, world.model_dir)
    with make_grader(cfg) as grader:
        yield world, engine, grader
