"""Load an object named by a string: `package.module:attr`, or `path/to/file.py:attr` for a user's own file.

A bottom module (it imports nothing of soarlite), because the grader's worker processes resolve a task from the same
string the recipe gives: they are fresh interpreters and can only be told where to find it, not handed the object.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path


class PluginError(ValueError):
    """A plug-in string that does not name a loadable object; the message is one line naming it."""


def load_object(spec: str):
    """The object `spec` names: `module:attr` (importable) or `file.py:attr` (loaded from that file)."""
    module_name, sep, attr = spec.rpartition(":")
    if not sep or not module_name or not attr:
        raise PluginError(f"{spec!r}: expected 'package.module:Name' or 'path/to/file.py:Name'")
    if module_name.endswith(".py"):
        path = Path(module_name).expanduser().resolve()
        if not path.is_file():
            raise PluginError(f"{spec!r}: no file {path}")
        # one module per file, named by its path, so that two files called task.py do not collide
        name = f"soarlite_plugin_{path.stem}_{hashlib.sha256(str(path).encode()).hexdigest()[:8]}"
        module = sys.modules.get(name)
        if module is None:
            loader_spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(loader_spec)
            sys.modules[name] = module
            try:
                loader_spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[name]
                raise
    else:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            raise PluginError(f"{spec!r}: cannot import {module_name} ({e})") from None
    try:
        return getattr(module, attr)
    except AttributeError:
        raise PluginError(f"{spec!r}: {module_name} has no {attr}") from None
