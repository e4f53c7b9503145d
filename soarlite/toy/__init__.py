"""The offline toy world: arithmetic-chain problems, a tiny pretrained Llama, and a fail@k hard split.

Importing this package does not import torch; building does.
"""

from .build import (
    DEFAULT_SETTINGS,
    PRESETS,
    SMALL_SETTINGS,
    WORLD_VERSION,
    build,
    cache_dir,
    ensure_built,
    recipe_world,
    settings_hash,
)
from .world import STUDENT_PROMPT, TEACHER_PROMPT, Problem, check, last_boxed, parse_pair, problems, student_prompt

__all__ = [
    "DEFAULT_SETTINGS", "PRESETS", "SMALL_SETTINGS", "STUDENT_PROMPT", "TEACHER_PROMPT", "WORLD_VERSION", "Problem", "build",
    "cache_dir", "check", "ensure_built", "last_boxed", "parse_pair", "problems", "recipe_world", "settings_hash", "student_prompt",
]
