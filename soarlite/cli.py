"""`soarlite`: the command line. Imports nothing heavy at module level, so `--help` answers at once."""

from __future__ import annotations

import sys

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help="SOAR on the hardware you have.")
toy_app = typer.Typer(add_completion=False, no_args_is_help=True, help="The offline toy world (the tiny recipe's).")
app.add_typer(toy_app, name="toy")


def _fail(msg: str, code: int) -> None:
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(code)


@app.command()
def run(
    recipe: str | None = typer.Option(None, "--recipe", "-r", help="recipe name (see `soarlite recipes`) or a YAML file"),
    overrides: list[str] | None = typer.Argument(None, help="dotted overrides, e.g. inner.steps=5 outer.steps=2"),
    out: str | None = typer.Option(None, "--out", help="run folder (default runs/<name>)"),
    resume: str | None = typer.Option(None, "--resume", help="continue the run in this folder from its last step"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="plain log lines, no live display"),
) -> None:
    """Run SOAR: the teacher learns to write questions that make the student improve on hard problems."""
    from soarlite.config import RecipeError
    from soarlite.data import DataError
    from soarlite.engine import MissingExtra

    try:
        from soarlite import runner

        runner.run(recipe, overrides or [], out, resume, quiet)
    except (RecipeError, DataError) as e:
        _fail(str(e), 2)
    except MissingExtra as e:
        _fail(str(e), 1)
    except Exception as e:  # the loop's own loud failures carry a message a user can act on
        from soarlite.soar import TeacherStalled

        if isinstance(e, TeacherStalled):
            _fail(str(e), 1)
        raise


@app.command()
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
def validate(
    recipe: str = typer.Option(..., "--recipe", "-r", help="recipe name or YAML file"),
    overrides: list[str] | None = typer.Argument(None, help="dotted overrides"),
) -> None:
    """Check a recipe (and overrides) against the schema without loading anything."""
    from soarlite.config import RecipeError, load_recipe

    try:
        cfg = load_recipe(recipe, overrides or [])
    except RecipeError as e:
        _fail(str(e), 2)
    typer.echo(f"{recipe}: valid ({cfg.name})")


@toy_app.command("build")
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


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())
