"""The `toy` task: the offline arithmetic world of `soarlite.toy` (a tiny Llama pretrained on it, and its fail@128
hard split), built on first use and cached. Its answers are integers in `\\boxed{}`, graded like the math task's.

Options (`task_options`): `preset` (default or small), `seed`, and any world setting of soarlite.toy.DEFAULT_SETTINGS.
"""

from __future__ import annotations

from pathlib import Path

from soarlite.config import RecipeError
from soarlite.data import Problem, load_problems
from soarlite.tasks.math import MathTask


class ToyTask(MathTask):
    name = "toy"

    def __init__(self, options: dict | None = None) -> None:
        from soarlite import toy  # plain data and text: no torch until the world is built

        self.options = dict(options or {})
        self.teacher_prompt = toy.TEACHER_PROMPT
        self._root: Path | None = None

    def student_prompt(self, question: str) -> str:
        from soarlite import toy

        return toy.student_prompt(question)

    def check(self, cfg, with_data: bool) -> None:
        from soarlite import toy

        preset = self.options.get("preset", "default")
        if preset not in toy.PRESETS:
            raise RecipeError(f"task_options.preset: {preset!r} is not allowed; use one of {', '.join(map(repr, toy.PRESETS))}")
        allowed = ["preset", "seed", *toy.DEFAULT_SETTINGS]
        unknown = sorted(set(self.options) - set(allowed))
        if unknown:
            raise RecipeError(f"task_options.{unknown[0]}: unknown key; allowed here: {', '.join(allowed)}")

    def world_dir(self) -> Path:
        """The built world (built now, once, if it is not in the cache)."""
        if self._root is None:
            from soarlite import toy

            settings, seed = toy.recipe_world(self.options)
            self._root = toy.ensure_built(settings, seed=seed)
        return self._root

    def model_dir(self, cfg) -> str:
        return str(self.world_dir() / "model")

    def hard_problems(self, cfg, split: str) -> list[Problem]:
        return load_problems(self.world_dir() / f"hard_{split}.jsonl")

    def difficulty(self, question: str) -> int | None:
        """The world's difficulty measure of a question (None when it is not in the world's grammar)."""
        from soarlite import toy

        measure = getattr(toy, "difficulty", None)
        return measure(question) if measure else None
