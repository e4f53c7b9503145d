"""Optional packages: one line naming the extra to install when one is missing. Imports nothing of soarlite."""

from __future__ import annotations

import importlib.util


class MissingExtra(ImportError):
    pass


def require(module: str, extra: str) -> None:
    """Fail with the install line when an optional package is missing."""
    if importlib.util.find_spec(module) is None:
        raise MissingExtra(f"{module} is not installed; install it with: pip install 'soarlite[{extra}]'")
