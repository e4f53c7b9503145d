"""The package's layers (pyproject.toml, [tool.importlinter]) hold, and the check does catch an upward import."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def lint_imports(package_root: Path) -> subprocess.CompletedProcess:
    """import-linter on the soarlite package found under `package_root`, with the repository's contracts."""
    pytest.importorskip("importlinter")
    env = {**os.environ, "PYTHONPATH": str(package_root)}
    code = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"
    return subprocess.run([sys.executable, "-c", code, "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
                          cwd=package_root, env=env, capture_output=True, text=True, timeout=300)


def test_the_layers_and_acyclic_contracts_hold():
    r = lint_imports(ROOT)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "Contracts: 2 kept, 0 broken." in r.stdout


@pytest.mark.parametrize("module,planted,culprit", [
    # the loop reaching up into evaluation (the cycle the Task interface removed)
    ("soar.py", "from soarlite.evaluation import summary  # noqa", "soarlite.soar is not allowed to import soarlite.evaluation"),
    # a bottom module reaching into the engine, lazily inside a function: lazy imports count too
    ("hardware.py", "def _f():\n    from soarlite import engine  # noqa", "soarlite.hardware is not allowed to import soarlite.engine"),
])
def test_an_upward_import_breaks_the_contract(tmp_path, module, planted, culprit):
    copy = tmp_path / "soarlite"
    shutil.copytree(ROOT / "soarlite", copy, ignore=shutil.ignore_patterns("__pycache__"))
    path = copy / module
    path.write_text(path.read_text() + "\n\n" + planted + "\n")
    r = lint_imports(tmp_path)
    assert r.returncode != 0
    assert culprit in " ".join(r.stdout.split()), r.stdout[-3000:]
