"""`soarlite`: the command line. Imports nothing heavy at module level, so `--help` answers at once."""

from __future__ import annotations

import functools
import sys

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help="SOAR on the hardware you have.")
toy_app = typer.Typer(add_completion=False, no_args_is_help=True, help="The offline toy world (the tiny recipe's).")
app.add_typer(toy_app, name="toy")


DEBUG = {"on": False}


@app.callback()
def _options(debug: bool = typer.Option(False, "--debug", help="show the full traceback of an error instead of one line")) -> None:
    DEBUG["on"] = debug


def _fail(msg: str, code: int) -> None:
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(code)


# ---------------------------------------------------------------------------------------------------- the error layer
def _user_errors():
    """The exceptions that mean "the user asked for something wrong" (exit 2), by lazy import."""
    from soarlite.checkpoint import RunFolderError
    from soarlite.config import RecipeError
    from soarlite.data import DataError
    from soarlite.evaluation.report import ReportError
    from soarlite.filter import FilterError
    from soarlite.lock import FolderBusy

    return (RecipeError, DataError, FilterError, ReportError, RunFolderError, FolderBusy)


def _runtime_errors():
    """Failures at run time that carry a message a user can act on (exit 1)."""
    from soarlite.extras import MissingExtra
    from soarlite.guard import RunFailed
    from soarlite.hardware import OutOfMemory
    from soarlite.preflight import PreflightFailed
    from soarlite.soar import TeacherStalled

    return (MissingExtra, OutOfMemory, TeacherStalled, RunFailed, PreflightFailed)


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def _report(e: BaseException) -> None:
    """Turn any error into one line on stderr and an exit status: 2 for what the user can fix in the command or its
    files, 1 for run-time failures, 130 / the signal's own status for an interrupt. --debug re-raises instead."""
    import errno
    import os
    import signal

    from soarlite.checkpoint import os_error_line
    from soarlite.guard import Interrupted, RunFinished

    if isinstance(e, RunFinished):
        typer.echo(_one_line(e))
        raise typer.Exit(0)
    if isinstance(e, (Interrupted, KeyboardInterrupt)):
        typer.echo(_one_line(e) if isinstance(e, Interrupted) else "interrupted", err=True)
        signum = getattr(e, "signum", signal.SIGINT)
        if signum != signal.SIGINT:  # the same exit status as an unhandled SIGTERM / SIGHUP
            sys.stderr.flush()
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
        raise typer.Exit(130)
    if DEBUG["on"]:
        raise e
    if isinstance(e, _user_errors()):
        _fail(_one_line(e), 2)
    if isinstance(e, _runtime_errors()):
        _fail(_one_line(e), 1)
    if isinstance(e, OSError):
        _fail(os_error_line(e), 1 if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO) else 2)
    if isinstance(e, MemoryError):
        _fail("out of memory (host RAM); lower the batch sizes", 1)
    _fail(f"{type(e).__name__}: {_one_line(e)} (soarlite --debug ... shows the traceback)", 1)


def errors(fn):
    """Every command's error layer: nothing but one line (or the traceback, with --debug) leaves a command."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except BaseException as e:  # noqa: BLE001 -- this is the one place every error is turned into a line
            import click

            if isinstance(e, click.exceptions.ClickException):
                raise
            _report(e)

    return wrapper


@app.command()
@errors
def run(
    recipe: str | None = typer.Option(None, "--recipe", "-r", help="recipe name (see `soarlite recipes`) or a YAML file"),
    overrides: list[str] | None = typer.Argument(None, help="dotted overrides, e.g. inner.steps=5 outer.steps=2"),
    out: str | None = typer.Option(None, "--out", help="run folder (default runs/<name>)"),
    resume: str | None = typer.Option(None, "--resume", help="continue the run in this folder from its last step"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="plain log lines, no live display"),
    max_hours: float | None = typer.Option(None, "--max-hours", min=0.0, help="stop cleanly after the outer step that crosses H hours (this session), checkpointed; prints the resume command"),
    force: bool = typer.Option(False, "--force", help="start even when the planner says the recipe does not fit the card"),
) -> None:
    """Run SOAR: the teacher learns to write questions that make the student improve on hard problems."""
    from soarlite import runner

    runner.run(recipe, overrides or [], out, resume, quiet, max_hours=max_hours, check_fit=not force)


@app.command()
@errors
def recipes() -> None:
    """The recipes, with a line each."""
    from rich.console import Console
    from rich.table import Table

    from soarlite.config import describe, list_recipes

    table = Table("recipe", "description", box=None)
    for name, path in list_recipes().items():
        table.add_row(name, describe(path))
    Console().print(table)


@app.command()
@errors
def validate(
    recipe: str = typer.Option(..., "--recipe", "-r", help="recipe name or YAML file"),
    overrides: list[str] | None = typer.Argument(None, help="dotted overrides"),
) -> None:
    """Check a recipe (and overrides) against the schema and its task without loading anything."""
    from soarlite.session import check_paths, load_config

    cfg = load_config(recipe, overrides or [], None)
    check_paths(cfg)  # the same checks `run` makes before it writes anything: data rows, the model folder
    typer.echo(f"{recipe}: valid ({cfg.name})")


@toy_app.command("build")
@errors
def toy_build(
    settings: list[str] | None = typer.Argument(None, help="world settings as key=value (see soarlite.toy)"),
    seed: int = typer.Option(0, help="seed of the world"),
    small: bool = typer.Option(False, help="the small world of the test suite"),
    out: str | None = typer.Option(None, help="build into this folder instead of the cache"),
) -> None:
    """Build (or find in the cache) the toy world: a tiny pretrained model, its tokenizer, and fail@128 splits."""
    from pathlib import Path

    from soarlite import toy
    from soarlite.config import RecipeError, merge, parse_overrides

    try:
        extra = parse_overrides(settings or [])
    except RecipeError as e:
        _fail(str(e), 2)
    chosen = merge(toy.SMALL_SETTINGS if small else toy.DEFAULT_SETTINGS, extra)
    try:
        path = toy.build(Path(out), seed=seed, **chosen) if out else toy.ensure_built(chosen, seed=seed)
    except ValueError as e:
        _fail(str(e), 2)
    typer.echo(str(path))


# ---------------------------------------------------------------------------------- evaluation, data, baselines, report
def _guarded(fn):
    return fn()  # the command's @errors turns what it raises into one line


def _ks(text: str) -> list[int]:
    from soarlite.evaluation.passk import parse_ks

    try:
        return parse_ks(text)
    except ValueError as e:
        _fail(str(e), 2)


@app.command("eval")
@errors
def eval_(
    recipe: str | None = typer.Option(None, "--recipe", "-r", help="recipe name or YAML file (or give --run)"),
    overrides: list[str] | None = typer.Argument(None, help="dotted overrides, e.g. task_options.preset=small"),
    run: str | None = typer.Option(None, "--run", help="a run folder: its recipe, and where the result goes (eval/)"),
    adapter: str | None = typer.Option(None, "--adapter", help="PEFT adapter folder (with --run: student or teacher); default: the base model"),
    data: str | None = typer.Option(None, "--data", help="JSONL(.gz) problems to evaluate on; default: the recipe's hard test split"),
    samples: int = typer.Option(32, "--samples", min=1, help="answers per problem, at the student temperature"),
    k: str = typer.Option("1,4,8,16,32", "--k", help="the k of pass@k, comma-separated, each <= --samples"),
    label: str | None = typer.Option(None, "--label", help="the method's name in tables and plots"),
    out: str | None = typer.Option(None, "--out", help="result JSON (default RUN/eval/LABEL.json, else runs/eval/RECIPE-LABEL.json)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="plain log lines"),
) -> None:
    """pass@k of the base model or an adapter on the hard test split (Chen et al.'s unbiased estimator)."""
    ks = _ks(k)

    def go():
        from soarlite.evaluation import baselines
        from soarlite.evaluation import passk as ev
        from soarlite.session import load_config

        if max(ks) > samples:
            _fail(f"--k: {max(ks)} is more than --samples {samples}; pass@k needs k <= samples", 2)
        cfg = load_config(recipe, overrides or [], run)
        result, dest = baselines.eval_command(cfg, adapter, run, data, samples, ks, out, label, quiet)
        typer.echo(ev.table(result))
        typer.echo(f"wrote {dest}")

    _guarded(go)


@app.command("filter")
@errors
def filter_(
    recipe: str = typer.Option(..., "--recipe", "-r", help="recipe name or YAML file: its model, prompt and data.source"),
    overrides: list[str] | None = typer.Argument(None, help="dotted overrides"),
    k: int = typer.Option(128, "--k", min=1, help="samples per problem; a problem is kept when none of them is right"),
    data: str | None = typer.Option(None, "--data", help="JSONL(.gz) file or hub:math / hub:harp / hub:olympiadbench (default data.source)"),
    out: str | None = typer.Option(None, "--out", help="folder for train.jsonl, test.jsonl, stats.json (default: the folder of data.hard_train)"),
    chunk: int = typer.Option(64, "--chunk", min=1, help="problems per resumable chunk"),
    early_stop: bool = typer.Option(True, "--early-stop/--no-early-stop", help="stop sampling a problem once one answer is right"),
    limit: int = typer.Option(0, "--limit", min=0, help="only the first N problems (0 = all)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="plain log lines"),
) -> None:
    """Make the fail@k splits: keep the problems the base model gets 0 of k right, split 50/50 into train and test.
    Resumes where it stopped when run again with the same settings."""

    def go():
        from soarlite import filter
        from soarlite.session import load_config

        cfg = load_config(recipe, overrides or [], None)
        filter.filter_command(cfg, data, out, k, chunk, early_stop, limit, quiet)

    _guarded(go)


@app.command()
@errors
def baseline(
    method: str = typer.Argument(..., help="hard-only | pq | ps | base-teacher | grounded-teacher | intrinsic"),
    overrides: list[str] | None = typer.Argument(None, help="dotted overrides"),
    recipe: str | None = typer.Option(None, "--recipe", "-r", help="recipe name or YAML file (or give --run)"),
    run: str | None = typer.Option(None, "--run", help="the SOAR run to compare with (its recipe, PQ, student, teacher; results go to RUN/eval)"),
    out: str | None = typer.Option(None, "--out", help="folder for results without --run (default runs/RECIPE-baselines)"),
    steps: int = typer.Option(0, "--steps", min=0, help="student RLOO steps; 0 = SOAR's budget (inner.steps per promotion, at least one inner loop)"),
    order: str = typer.Option("curriculum", "--order", help="pq: curriculum (promotion questions first) or mixed"),
    questions: int = typer.Option(128, "--questions", min=1, help="base-teacher / grounded-teacher / intrinsic: teacher questions to train on"),
    data: str | None = typer.Option(None, "--data", help="test problems (default: the recipe's hard test split)"),
    samples: int = typer.Option(32, "--samples", min=1, help="answers per test problem"),
    k: str = typer.Option("1,4,8,16,32", "--k", help="the k of pass@k"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="plain log lines"),
) -> None:
    """Train and evaluate a baseline with the same RLOO and budget as SOAR: Hard-Only, PQ, PS, Base-T, Grounded-T,
    Intrinsic-T (a SOAR run with the learnability reward)."""
    ks = _ks(k)
    if order not in ("curriculum", "mixed"):
        _fail(f"--order: {order!r} is not allowed; use curriculum or mixed", 2)

    def go():
        from soarlite import runner
        from soarlite.evaluation import baselines
        from soarlite.evaluation import passk as ev
        from soarlite.session import load_config

        if max(ks) > samples:
            _fail(f"--k: {max(ks)} is more than --samples {samples}; pass@k needs k <= samples", 2)
        cfg = load_config(recipe, overrides or [], run)
        if method == "intrinsic":
            result, dest = runner.intrinsic_baseline(cfg, recipe, overrides or [], run, out, steps or None, questions,
                                                     samples, ks, data, quiet)
        else:
            result, dest = baselines.baseline_command(method, cfg, run, out, steps or None, order, questions, samples,
                                                      ks, data, quiet)
        typer.echo(ev.table(result))
        typer.echo(f"wrote {dest}")

    _guarded(go)


@app.command()
@errors
def report(
    runs: list[str] = typer.Argument(..., help="run folders"),
    out: str | None = typer.Option(None, "--out", help="folder for report.md and the PNGs (default RUN/report, or ./report for several runs)"),
) -> None:
    """A Markdown report with plots: reward and its moving average with promotions, teacher valid rate, peak memory,
    and the pass@k curves of every evaluated method."""

    def go():
        from soarlite.evaluation import report as rep

        folder = rep.build(runs, out)
        typer.echo(f"wrote {folder / 'report.md'}")

    _guarded(go)


@app.command()
@errors
def plan(
    recipe: str = typer.Option(..., "--recipe", "-r", help="recipe name or YAML file"),
    overrides: list[str] | None = typer.Argument(None, help="dotted overrides, e.g. inner.micro_batch=2"),
    gpu: str | None = typer.Option(None, "--gpu", help="the card to plan for: t4, rtx3090, rtx4090, a10g, l4, a100-80gb, h100, ... (default: this machine's)"),
    gpu_mem: float | None = typer.Option(None, "--gpu-mem", help="the card's memory in GiB (with or without --gpu)"),
    measure: bool = typer.Option(False, "--measure", help="measure sampling and training rates on this machine through the real engine (loads the model)"),
    valid_rate: float = typer.Option(0.5, "--valid-rate", help="share of the teacher's samples that parse (a run's metrics.jsonl has it as teacher_valid_rate)"),
    max_hours: float | None = typer.Option(None, "--max-hours", help="also say how many outer steps fit in H hours"),
) -> None:
    """What a recipe will cost, before anything loads: tokens per step and run, peak GPU memory by part, whether it
    fits the card (exit status 1 when it does not), and the time per step and run."""
    from soarlite import plan as planner
    from soarlite import tasks
    from soarlite.config import RecipeError
    from soarlite.extras import MissingExtra
    from soarlite.session import load_config

    try:
        cfg = load_config(recipe, overrides or [], None)
        card = planner_card(gpu, gpu_mem, measure)
        measured = None
        if measure:
            measured = planner.measure(cfg, tasks.resolve_world(cfg, with_data=False).model_dir)
        result = planner.make_plan(cfg, card, valid_rate, measured=measured)
    except (RecipeError, ValueError) as e:
        _fail(str(e), 2)
    except MissingExtra as e:
        _fail(str(e), 1)
    typer.echo(planner.render(result, max_hours))
    if measured and "peak_allocated_gib" in measured:
        typer.echo(f"measured: peak allocated {measured['peak_allocated_gib']:.2f} GiB in the measurement "
                   f"(one sampling call of {measured['decode_batch']} sequences, one training micro-batch)")
    if measure:  # the pre-flight check (soarlite/preflight.py): does one inner loop move a fresh student?
        from soarlite import preflight

        check = preflight.standalone(cfg)
        typer.echo(check.line())
        if not check.passed:
            try:
                preflight.require(cfg, check)
            except preflight.PreflightFailed as e:
                _fail(str(e), 1)
    if result.fits is False:
        raise typer.Exit(1)


def planner_card(gpu: str | None, gpu_mem: float | None, measure: bool):
    """--gpu / --gpu-mem, else this machine's card (nvidia-smi; torch's when --measure loads it anyway)."""
    from soarlite import hardware

    if gpu is None and gpu_mem is None and measure:
        return hardware.card_from_torch()
    return hardware.resolve_card(gpu, gpu_mem)


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
