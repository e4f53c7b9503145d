"""Optional packages: the error that names the extra to install, and the check that raises it.

Imports nothing of soarlite, so any module that needs an install hint (data, report, tracking, eval, cli, the
engines) can take it from here without pulling in anything else.
"""

from __future__ import annotations

import importlib.util


class MissingExtra(ImportError):
    pass


def require(module: str, extra: str) -> None:
    """Fail with the install line when an optional package is missing."""
    if importlib.util.find_spec(module) is None:
        raise MissingExtra(f"{module} is not installed; install it with: pip install 'soarlite[{extra}]'")
