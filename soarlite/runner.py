"""From a recipe to a finished run folder: resolve, check, load once, run the loop, summarise.

Everything that can be checked without a model is checked before one loads, so a wrong path or a run folder
that already holds a run costs a second, not a model load.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import yaml

from soarlite import checkpoint, executor, export, hardware, lock, plan, preflight, soar, tasks, tracking
from soarlite.config import Config, RecipeError, to_dict
from soarlite.engine import make_engine
from soarlite.evaluation import summary as summaries
from soarlite.evaluation.baselines import baseline_command
from soarlite.guard import BudgetReached, Interrupted, RunFailed, RunFinished, StepGuard, signals_raise
from soarlite.progress import Reporter
from soarlite.progress import fmt_s as progress_fmt
from soarlite.session import check_model_reachable, check_paths, load_config, make_grader, resolve_run, resume_changes


def refuse_if_too_big(cfg: Config) -> None:
    """Refuse, before anything loads, a recipe the planner says will not fit the CUDA card found (naming the knob)."""
    import importlib.util

    if cfg.device == "cpu" or importlib.util.find_spec("torch") is None:
        return
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


def require_extras(cfg: Config) -> None:
    """The packages a run needs, checked before anything slow (the toy world's build needs torch too): one line
    naming every missing one and the extra that brings it."""
    import importlib.util

    from soarlite.extras import MissingExtra

    engine_extra = "gpu" if cfg.device == "cuda" else ("vllm-cpu" if cfg.engine == "vllm" else "cpu")
    needed = [("torch", engine_extra), ("transformers", engine_extra), ("peft", engine_extra)]
    if cfg.engine == "vllm":
        needed.append(("vllm", engine_extra))
    if cfg.model.load_in_4bit:
        needed.append(("bitsandbytes", "bnb" if cfg.device != "cuda" else "gpu"))
    missing = [(m, e) for m, e in needed if importlib.util.find_spec(m) is None]
    if missing:
        extras = sorted({e for _, e in missing})
        raise MissingExtra(f"{', '.join(m for m, _ in missing)} {'is' if len(missing) == 1 else 'are'} not installed; "
                           f"install with: pip install " + " ".join(f"'soarlite[{e}]'" for e in extras))


def run(recipe: str | None, overrides: list[str], out: str | None, resume: str | None, quiet: bool,
        max_hours: float | None = None, check_fit: bool = True, started: float | None = None) -> Path:
    """`started`: when the process started (time.time()); --max-hours counts from it (default: now)."""
    cfg, run_dir = resolve_run(recipe, overrides, out, resume)
    require_extras(cfg)
    check_paths(cfg)
    if check_fit:
        refuse_if_too_big(cfg)
    try:
        hardware.require_cuda(cfg)  # a GPU recipe never falls back to a CPU silently
    except hardware.NoCuda as e:
        raise RecipeError(str(e)) from None
    check_model_reachable(cfg)  # a Hub model that cannot be loaded: one line now, not minutes of retries
    # Every check that needs no lock has passed: only now is anything written.
    run_dir.mkdir(parents=True, exist_ok=True)
    with lock.hold(run_dir):  # one process per run folder
        prepare_folder(cfg, run_dir, recipe if resume else None, bool(resume), max_hours)
        try:
            with signals_raise():
                return _run_locked(cfg, run_dir, quiet, max_hours, started)
        except (KeyboardInterrupt, Interrupted) as e:
            signum = getattr(e, "signum", signal.SIGINT)
            step = soar.load_state(run_dir).step if (run_dir / "state.json").exists() else 0
            raise Interrupted(signum, f"interrupted after step {step}; resume with "
                                      f"`soarlite run --resume {run_dir}`") from None
        except OSError as e:
            raise RunFailed(f"{checkpoint.os_error_line(e)}; every finished step is checkpointed in {run_dir}: "
                            f"fix that, then `soarlite run --resume {run_dir}`") from None


def prepare_folder(cfg: Config, run_dir: Path, recipe: str | None, resume: bool, max_hours: float | None) -> None:
    """Under the folder's lock: finish a half-moved checkpoint, check what a resume reads and what it changes (recorded
    in history.jsonl), then write config.yaml."""
    step = checkpoint.check_folder(run_dir)  # also finishes or drops a checkpoint that a killed run left half-moved
    if resume:
        changes = resume_changes(run_dir, cfg, step, recipe)
        if (run_dir / "summary.json").exists() and step >= cfg.outer.steps:
            raise RunFinished(f"{run_dir}: the run is finished ({step} outer steps, summary.json); extend it with "
                              f"outer.steps=N (N > {step}), or evaluate it with `soarlite eval --run {run_dir}`")
        entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "resumed_at_step": step, "max_hours": max_hours,
                 "changes": {k: [old, new] for k, (old, new) in changes.items()}}
        if "outer.steps" in changes:
            entry["schedule"] = (f"the teacher's cosine schedule is now over {cfg.outer.steps} steps, continued from "
                                 f"step {step}")
        with open(run_dir / "history.jsonl", "a") as f:
            f.write(json.dumps(entry) + "\n")
    elif (run_dir / "state.json").exists():  # a run that started after our first look
        raise RecipeError(f"--out: {run_dir} already holds a run; continue it with --resume {run_dir} or pick --out")
    checkpoint.write_text_atomic(run_dir / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False))


def world_phase(cfg: Config) -> str:
    if cfg.task == "toy":
        return "the toy world: its model and hard problems (the default ships with soarlite; other settings build once)"
    return f"the task's hard problems ({cfg.task})"


def _run_locked(cfg: Config, run_dir: Path, quiet: bool, max_hours: float | None, started: float | None = None) -> Path:
    t0 = time.time() if started is None else started  # --max-hours and the process time count from here
    screen = Reporter(quiet=quiet)
    summary = None
    with screen:
        screen.line(f"run folder {run_dir}  recipe {cfg.name}")
        report = tracking.track(screen, cfg, run_dir)  # TensorBoard / W&B views of each outer step's metrics
        report = guard = StepGuard(report, max_hours, t0)  # per-step peak memory, --max-hours, OOM context
        screen.stage(world_phase(cfg))
        world = tasks.resolve_world(cfg)
        screen.stage(f"loading the model ({world.model_dir}, {cfg.engine} engine)")
        engine = make_engine(cfg, world.model_dir)
        screen.stage("starting the grader's worker processes")
        with make_grader(cfg) as grader:
            try:
                if cfg.preflight and soar.load_state(run_dir).step == 0:
                    screen.stage("pre-flight check: one inner loop must raise a fresh student's accuracy")
                    report.line(preflight.require_line(cfg, preflight.check(cfg, world, engine, grader, report)))
                workers = executor.make_executor(cfg, world, engine, grader, report, run_dir)  # local, or Ray workers
                try:
                    state = soar.run(cfg, world, engine, grader, run_dir, report, workers)
                finally:
                    workers.close()
            except BudgetReached as stop:
                export.finish_adapters(run_dir, world.model_dir)
                screen.close()
                print(f"{stop}; every finished step is checkpointed in {run_dir}. Continue with:\n"
                      f"  soarlite run --resume {run_dir} --max-hours {max_hours:g}", flush=True)
                return run_dir
            except Exception as e:
                if hardware.is_oom(e):
                    raise hardware.OutOfMemory(hardware.oom_message(cfg, guard.phase_text, guard.step, run_dir,
                                                                    hardware.peak_gib())) from None
                raise
            screen.stage("summary: the students answer the hard test problems")
            summary = summaries.summarise(cfg, world, engine, grader, run_dir, state, report)
            checkpoint.write_json_atomic(run_dir / "summary.json", summary)
            screen.stage("the adapters' model cards and tokenizer files")
            export.finish_adapters(run_dir, world.model_dir, summary)
    # the table last, below the closed panel: it is what stays on the screen
    print("\n" + summaries.summary_table(summary, time.time() - t0), flush=True)
    print(f"\ndone in {progress_fmt(time.time() - t0)}: {run_dir} (summary.json, adapters/student, adapters/teacher; `soarlite report {run_dir}` "
          f"plots it, `soarlite generate --run {run_dir} \"QUESTION\"` tries the student)", flush=True)
    return run_dir


def intrinsic_baseline(cfg: Config, recipe: str | None, overrides: list[str], prior: str | None, out: str | None,
                       steps: int | None, questions: int, samples: int, ks: list[int], data: str | None,
                       quiet: bool) -> tuple[dict, Path]:
    """Intrinsic-T: a SOAR run whose teacher learns from learnability (continued where `prior`, a run folder, names
    one), then, as Grounded-T, a fresh student on questions from its trained teacher."""
    extra = ["outer.reward=intrinsic"]
    if prior and cfg.outer.reward != "intrinsic":
        raise RecipeError(f"--run: {prior} is a grounded SOAR run; Intrinsic-T makes its own run (leave out --run)")
    if prior:
        run_dir = run(None, overrides + extra, None, prior, quiet)
    else:
        run_dir = run(recipe, overrides + extra, out or str(Path("runs") / f"{cfg.name}-intrinsic"), None, quiet)
    cfg = load_config(None, overrides + extra, str(run_dir))
    return baseline_command("grounded-teacher", cfg, str(run_dir), None, steps, "mixed", questions, samples, ks, data,
                            quiet, relabel="Intrinsic-T")
