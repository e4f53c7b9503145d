"""One command's set-up: the recipe (or a run folder's), its task and world, the engine (one model load) and the
grader. Shared by `run`, `eval`, `filter`, `baseline` and `plan --measure`, so that each resolves a recipe the same way.

Everything that can be checked without a model is checked before one loads.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from soarlite import tasks
from soarlite.config import (
    Config,
    RecipeError,
    differences,
    from_dict,
    load_recipe,
    load_yaml,
    merge,
    parse_overrides,
    to_dict,
)
from soarlite.data import load_rows
from soarlite.engine import make_engine
from soarlite.grading import Grader


def resolve_run(recipe: str | None, overrides: list[str], out: str | None, resume: str | None) -> tuple[Config, Path]:
    """The run's config and folder: a new run from a recipe, or the run in `resume` (its saved config, overridden)."""
    if resume:
        run_dir = Path(resume)
        if not (run_dir / "config.yaml").is_file():
            raise RecipeError(f"--resume: {run_dir} holds no run (no config.yaml)")
        cfg = from_dict(merge(saved_config(run_dir), parse_overrides(overrides)))
        tasks.resolve(cfg)
        return cfg, run_dir
    if recipe is None:
        raise RecipeError("--recipe: name a recipe (see `soarlite recipes`) or give --resume DIR")
    cfg = load_config(recipe, overrides, None)
    run_dir = Path(out) if out else Path("runs") / cfg.name
    if (run_dir / "state.json").exists():
        raise RecipeError(f"--out: {run_dir} already holds a run; continue it with --resume {run_dir} or pick --out")
    return cfg, run_dir


def saved_config(run_dir: Path) -> dict:
    """A run folder's config.yaml, read strictly; RecipeError naming the file when it is unreadable or corrupt."""
    path = run_dir / "config.yaml"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise RecipeError(f"{path}: unreadable ({getattr(e, 'strerror', None) or e}); restore it from a copy") from None
    data = load_yaml(text, str(path))
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: not a run's config (a mapping of keys to values); restore it from a copy")
    try:
        from_dict(data)
    except RecipeError as e:
        raise RecipeError(f"{path}: {e}; restore it from a copy") from None
    return data


# What a resume may change, each recorded in the run's history.jsonl. outer.steps may only grow (to extend a run); the
# teacher's cosine schedule is then over the new total, from the step the run stands at (its learning rate goes up).
# Logging and grader parallelism change nothing the run computes. The memory knobs are the ones the out-of-memory
# message tells a user to lower before resuming: the micro-batches and in-flight students only regroup the same work
# (equal up to floating-point rounding); the max_new_tokens caps change what later steps sample, knowingly.
RESUME_SAFE = ("outer.steps", "eval.tensorboard", "eval.wandb", "grader_workers", "description",
               "inner.micro_batch", "outer.micro_batch", "inner.students_in_flight", "model.gen_batch",
               "inner.max_new_tokens", "outer.max_new_tokens",
               # where the students train: a run may move to Ray workers or a cluster and back; with
               # inner.students_in_flight 0 the waves follow the worker count, like a changed students_in_flight
               "executor", "ray.address", "ray.workers", "ray.gpus_per_worker", "ray.cpus_per_worker", "ray.retries",
               "ray.start_timeout_s")


def resume_changes(run_dir: Path, cfg: Config, step: int, recipe: str | None) -> dict[str, tuple]:
    """The changes a resume makes to the run's saved config ({key: (old, new)}), all of them safe; RecipeError
    naming the first key that would corrupt or silently alter the run."""
    saved = from_dict(saved_config(run_dir))
    if recipe is not None:
        named = load_recipe(recipe).name
        if named != saved.name:
            raise RecipeError(f"--recipe: {recipe} is not the recipe of the run in {run_dir} ({saved.name}); "
                              "leave out --recipe to resume it")
    changes = differences(to_dict(saved), to_dict(cfg))
    for key, (old, new) in changes.items():
        if key not in RESUME_SAFE:
            raise RecipeError(f"{key}: the run in {run_dir} has {old!r}; a resume cannot change it to {new!r} "
                              f"(only {', '.join(RESUME_SAFE)}); start a new run with --out for that")
    if cfg.outer.steps < step:
        raise RecipeError(f"outer.steps: the run in {run_dir} has done {step} steps; {cfg.outer.steps} would drop "
                          f"them; give outer.steps >= {step} to extend it")
    return changes


def check_model(cfg: Config) -> None:
    """model.base, when it names a local folder, is a model folder (before anything is written or loaded)."""
    base = cfg.model.base
    local = base.startswith(("/", ".", "~")) or base.count("/") > 1 or Path(base).exists()
    if not local:
        return  # a Hub id: the engine downloads it (check_model_reachable says whether it can)
    path = Path(base).expanduser()
    if not path.is_dir():
        raise RecipeError(f"model.base: {base} is not a folder; give a local model folder (with config.json) or "
                          "a Hub id such as meta-llama/Llama-3.2-1B-Instruct")
    if not (path / "config.json").is_file():
        raise RecipeError(f"model.base: {base} holds no config.json, so it is not a model folder")


def _offline() -> bool:
    import os

    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _in_hf_cache(repo: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    try:
        return isinstance(try_to_load_from_cache(repo, "config.json"), str)
    except Exception:  # noqa: BLE001 -- a malformed id: the engine's own error says more
        return False


def _hub_reachable(timeout: float = 3.0) -> bool:
    import os
    import socket
    from urllib.parse import urlparse

    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    try:
        with socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)), timeout):
            return True
    except OSError:
        return False


def self_contained(cfg: Config) -> bool:
    """Whether the recipe's task brings its own model and hard problems (the toy world), so that model.base and the
    data files are not the recipe's to check (the task's optional `self_contained` attribute)."""
    return bool(getattr(tasks.resolve(cfg), "self_contained", False))


def check_model_reachable(cfg: Config) -> None:
    """model.base, when it is a Hub id (and the task uses it), can be loaded."""
    base = cfg.model.base
    if self_contained(cfg) or Path(base).expanduser().exists() or base.startswith(("/", ".", "~")):
        return
    check_reachable(base)


def check_reachable(base: str) -> None:
    """A Hub id the engine could not load: not in the Hugging Face cache, and offline (HF_HUB_OFFLINE) or no
    network. One line, before anything slow, instead of minutes of retries and a traceback."""
    if _in_hf_cache(base):
        return
    if _offline():
        raise RecipeError(f"model.base: {base} is not a local folder and not in the Hugging Face cache, and "
                          "HF_HUB_OFFLINE is set: put the model in a folder and point model.base at it, or download "
                          f"it once (`hf download {base}`), or unset HF_HUB_OFFLINE")
    if not _hub_reachable():
        raise RecipeError(f"model.base: {base} is not a local folder and not in the Hugging Face cache, and the Hub "
                          "cannot be reached (no network): point model.base at a local model folder, or download it "
                          "where there is a network; set HF_HUB_OFFLINE=1 to work from the cache")


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
    """The recipe's data files (every row) and local model folder are good: cheap, before anything is written or
    loaded. `validate` and `run` both make these checks, so they accept the same recipes."""
    tasks.resolve(cfg, with_data=True)
    if self_contained(cfg):
        return
    check_model(cfg)
    for key in ("hard_train", "hard_test"):  # rows a task reads through the data section
        path = getattr(cfg.data, key)
        if path:
            load_rows(path, cfg.data.problem_field, cfg.data.answer_field)


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
