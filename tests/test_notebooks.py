"""The notebooks in examples/: valid notebooks, and every `soarlite` command they run exists, with its options."""

import re
import shlex
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "examples").glob("*.ipynb"))
# a shell line of a code cell: `!soarlite ...`, also indented inside an if-block
COMMAND = re.compile(r"^\s*#?\s*!\s*soarlite\s+(.*)$")


def _commands():
    import typer.main

    from soarlite.cli import app

    return typer.main.get_command(app).commands


def _invocations(path: Path) -> list[list[str]]:
    nb = nbformat.read(path, as_version=4)
    out = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for line in cell.source.splitlines():
            m = COMMAND.match(line)
            if m:
                out.append(shlex.split(m.group(1)))
    return out


def test_both_notebooks_are_there():
    assert [p.name for p in NOTEBOOKS] == ["colab_math_t4.ipynb", "kaggle_math_t4.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_valid(path):
    nbformat.validate(nbformat.read(path, as_version=4))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_soarlite_command_exists(path):
    from soarlite.config import list_recipes

    commands = _commands()
    calls = _invocations(path)
    used = {c[0] for c in calls}
    assert {"plan", "run", "filter", "report"} <= used, used  # plan, data, run (and resume), plots
    assert any("--resume" in c for c in calls) and any("--max-hours" in c for c in calls)
    for call in calls:
        name, args = call[0], call[1:]
        if name in ("--help", "--version"):
            continue
        assert name in commands, f"{path.name}: `soarlite {name}` is not a command ({', '.join(commands)})"
        opts = {o for p in commands[name].params for o in getattr(p, "opts", []) + getattr(p, "secondary_opts", [])}
        for a in args:
            if a.startswith("--"):
                assert a.split("=")[0] in opts, f"{path.name}: `soarlite {name}` has no option {a}"
        if "--recipe" in args:
            assert args[args.index("--recipe") + 1] in list_recipes()
