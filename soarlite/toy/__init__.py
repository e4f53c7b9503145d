"""The offline toy world: arithmetic chains a sloppy writer taught a tiny Llama, and a fail@k hard split.

Importing this package does not import torch; building does.
"""

from .build import (
    DEFAULT_SETTINGS,
    PRESETS,
    PROBABILITY_SETTINGS,
    SMALL_SETTINGS,
    WORLD_VERSION,
    build,
    cache_dir,
    ensure_built,
    recipe_world,
    settings_hash,
)
from .world import (
    STUDENT_PROMPT,
    TEACHER_PROMPT,
    Problem,
    check,
    difficulty,
    last_boxed,
    parse_pair,
    parse_question,
    problems,
    stepping_stones,
    student_prompt,
)

__all__ = [
    "DEFAULT_SETTINGS", "PRESETS", "PROBABILITY_SETTINGS", "SMALL_SETTINGS", "STUDENT_PROMPT", "TEACHER_PROMPT", "WORLD_VERSION", "Problem", "build",
    "cache_dir", "check", "difficulty", "ensure_built", "last_boxed", "parse_pair", "parse_question", "problems", "recipe_world",
    "settings_hash", "stepping_stones", "student_prompt",
]
