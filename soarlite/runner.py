"""From a recipe to a finished run folder: resolve, check, load once, run the loop, summarise.

Everything that can be checked without a model is checked before one loads, so a wrong path or a run folder
that already holds a run costs a second, not a model load.
"""

from __future__ import annotations

import time
from pathlib import Path

import yaml

from soarlite import checkpoint
from soarlite.config import Config, RecipeError, from_dict, load_recipe, merge, parse_overrides, to_dict
from soarlite.data import load_problems
from soarlite.progress import Reporter


def resolve_run(recipe: str | None, overrides: list[str], out: str | None, resume: str | None) -> tuple[Config, Path]:
    if resume:
        run_dir = Path(resume)
        if not (run_dir / "config.yaml").is_file():
            raise RecipeError(f"--resume: {run_dir} holds no run (no config.yaml)")
        saved = yaml.safe_load((run_dir / "config.yaml").read_text())
        cfg = from_dict(merge(saved, parse_overrides(overrides)))
        return cfg, run_dir
    if recipe is None:
        raise RecipeError("--recipe: name a recipe (see `soarlite recipes`) or give --resume DIR")
    cfg = load_recipe(recipe, overrides)
    run_dir = Path(out) if out else Path("runs") / cfg.name
    if (run_dir / "state.json").exists():
        raise RecipeError(f"--out: {run_dir} already holds a run; continue it with --resume {run_dir} or pick --out")
    return cfg, run_dir


def check_paths(cfg: Config) -> None:
    for key in ("hard_train", "hard_test"):
        value = getattr(cfg.data, key)
        if value and value != "toy" and not Path(value).is_file():
            raise RecipeError(f"data.{key}: no file {value} (make the fail@k split with `soarlite filter`)")


def resolve_world(cfg: Config, with_data: bool = True):
    """The recipe's model and prompts, and its hard splits unless `with_data` is False (`soarlite filter` makes them)."""
    from soarlite import prompts
    from soarlite.soar import World

    d = cfg.data
    if cfg.model.base == "toy":
        from soarlite import toy

        settings, seed = toy.recipe_world(cfg.toy)
        root = toy.ensure_built(settings, seed=seed)
        model_dir, hard_train, hard_test = root / "model", root / "hard_train.jsonl", root / "hard_test.jsonl"
    else:
        model_dir, hard_train, hard_test = cfg.model.base, d.hard_train, d.hard_test

    template = _prompt(cfg.prompts.student, prompts.STUDENT_PROMPT_PAPER, "STUDENT_PROMPT")
    return World(
        model_dir=str(model_dir),
        hard_train=load_problems(hard_train, d.problem_field, d.answer_field) if with_data else [],
        hard_test=load_problems(hard_test, d.problem_field, d.answer_field) if with_data and hard_test else [],
        teacher_prompt=_prompt(cfg.prompts.teacher, prompts.TEACHER_PROMPT_PAPER, "TEACHER_PROMPT"),
        student_prompt=lambda q: prompts.student_prompt(template, q),
    )


def _prompt(value: str, paper: str, toy_name: str) -> str:
    """A recipe's prompt: 'paper', 'toy' (the toy world's) or the literal text."""
    if value == "toy":
        from soarlite import toy

        return getattr(toy, toy_name)
    return paper if value == "paper" else value


def refuse_if_too_big(cfg: Config) -> None:
    """Refuse, before anything loads, a recipe the planner says will not fit the CUDA card found (naming the knob)."""
    import importlib.util

    if cfg.device == "cpu" or importlib.util.find_spec("torch") is None:
        return
    from soarlite import hardware, plan

    card = hardware.card_from_torch()
    if card is None:
        return
    try:
        p = plan.make_plan(cfg, card)
    except plan.PlanError:
        return  # a model the planner does not know: no check
    if p.fits is False:
        raise plan.DoesNotFit(
            f"{cfg.name} needs about {p.needed / 2**30:.1f} GiB, this {card.name} has {card.mem_gib:g} GiB: lower "
            f"{p.knob} ({p.suggestion}); `soarlite plan --recipe {cfg.name}` shows the parts; --force starts anyway"
        )


def run(recipe: str | None, overrides: list[str], out: str | None, resume: str | None, quiet: bool,
        max_hours: float | None = None, check_fit: bool = True) -> Path:
    cfg, run_dir = resolve_run(recipe, overrides, out, resume)
    check_paths(cfg)
    if check_fit:
        refuse_if_too_big(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    checkpoint.recover(run_dir)  # finish or drop a checkpoint that a killed run left half-moved
    checkpoint.write_text_atomic(run_dir / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))

    from soarlite import evaluate, hardware, soar, tracking
    from soarlite.engine import make_engine
    from soarlite.guard import BudgetReached, StepGuard
    from soarlite.rewards import Grader

    t0 = time.time()
    with Reporter(quiet=quiet) as report:
        report.line(f"run folder {run_dir}  recipe {cfg.name}")
        report = tracking.track(report, cfg, run_dir)  # TensorBoard / W&B views of each outer step's metrics
        report = guard = StepGuard(report, max_hours, t0)  # per-step peak memory, --max-hours, OOM context
        world = resolve_world(cfg)
        engine = make_engine(cfg, world.model_dir)
        with Grader(workers=cfg.grader_workers, timeout_s=cfg.grade_timeout_s) as grader:
            try:
                state = soar.run(cfg, world, engine, grader, run_dir, report)
            except BudgetReached as stop:
                report.line(f"{stop}; every finished step is checkpointed in {run_dir}. Continue with:\n"
                            f"  soarlite run --resume {run_dir} --max-hours {max_hours:g}")
                return run_dir
            except Exception as e:
                if hardware.is_oom(e):
                    raise hardware.OutOfMemory(hardware.oom_message(cfg, guard.phase_text, guard.step, run_dir, hardware.peak_gib())) from None
                raise
            report.phase("summary")
            summary = evaluate.summarise(cfg, world, engine, grader, run_dir, state, report)
            checkpoint.write_json_atomic(run_dir / "summary.json", summary)
            report.line(evaluate.summary_table(summary))
    report.line(f"done in {time.time() - t0:.0f}s: {run_dir}")
    return run_dir

