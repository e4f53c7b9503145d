"""The `toy` task: the offline arithmetic world of `soarlite.toy` (a tiny Llama pretrained on it, and its fail@128
hard split); the default world ships with the package, other settings are built once and cached. Its answers are
integers in `\\boxed{}`, graded like the math task's.

Options (`task_options`): `preset` (default or small), `seed`, and any world setting of soarlite.toy.DEFAULT_SETTINGS.
"""

from __future__ import annotations

from pathlib import Path

from soarlite.config import RecipeError
from soarlite.data import Problem, load_problems
from soarlite.tasks.math import MathTask


class ToyTask(MathTask):
    name = "toy"
    self_contained = True  # its own model and hard split: the recipe's model.base and data files are not used

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
        for key, value in self.options.items():
            if key == "preset":
                continue
            want = 0 if key == "seed" else toy.DEFAULT_SETTINGS[key]
            _check_setting(f"task_options.{key}", value, want)

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

        measure = getattr(toy, "difficulty", None)  # worlds before version 3 had none
        return measure(question) if measure else None

    def reference_answer(self, question: str) -> str | None:
        """The world's own answer to a question in its grammar (None otherwise): how often the teacher is right."""
        from soarlite import toy

        parse = getattr(toy, "parse_question", None)
        problem = parse(question) if parse else None
        return None if problem is None else str(problem.answer)


ZERO_ALLOWED = {"task_options.seed", "task_options.level_probe"}  # whole-number settings for which 0 means something


def _check_setting(key: str, value, default) -> None:
    """A world setting has its default's type (an integer stays an integer; true is not a number), and sizes and
    counts are at least 1, so a bad value is one line here rather than a traceback from the build."""
    def is_int(v):
        return isinstance(v, int) and not isinstance(v, bool)

    from soarlite import toy

    # probabilities, for which 0 means something too (no slips, a careful teacher, no habit: the world before "h")
    if key.removeprefix("task_options.") in toy.PROBABILITY_SETTINGS:
        if not ((is_int(value) or isinstance(value, float)) and 0 <= value <= 1):
            raise RecipeError(f"{key}: {value!r} is not allowed; expected a probability from 0 to 1")
        return
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = is_int(value) and (value >= 1 or key in ZERO_ALLOWED and value >= 0)
    elif isinstance(default, float):
        ok = (is_int(value) or isinstance(value, float)) and value == value and 0 < value < float("inf")
    elif isinstance(default, dict):
        ok = isinstance(value, dict) and bool(value) and all(
            (is_int(v) or isinstance(v, float)) and v == v and 0 <= v < float("inf") for v in value.values())
    elif isinstance(default, list):
        ok = isinstance(value, list) and bool(value) and all(is_int(v) and v >= 1 for v in value)
    else:
        ok = isinstance(value, type(default))
    if not ok:
        kind = {bool: "true or false", int: "a whole number >= 1", float: "a positive number",
                dict: "a non-empty mapping of non-negative numbers", list: "a non-empty list of whole numbers >= 1"}
        raise RecipeError(f"{key}: {value!r} is not allowed; expected {kind.get(type(default), type(default).__name__)}"
                          + (" (or 0)" if key in ZERO_ALLOWED else ""))
