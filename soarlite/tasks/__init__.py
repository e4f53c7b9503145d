"""Tasks: what SOAR needs from a domain, in one small interface.

The loop is domain-blind. It asks a task for the teacher's prompt and how to read what the teacher wrote, for the
student's prompt, for the student's reward and the correctness check, and for the model and hard problems a recipe
names. `math` (MATH, HARP, OlympiadBench with the paper's prompts and 120/20/10/0 reward) and `toy` (the offline
arithmetic world) are the two built in; a recipe picks one with `task: NAME`.

A task of your own is one file (see docs/architecture.md for a complete example):

    # my_task.py
    from soarlite.tasks.math import MathTask     # or write every method of `Task` yourself
    class ParityTask(MathTask):
        name = "parity"
        teacher_prompt = "Write a question about the parity of a number, then its answer...\\n"
        ...

and a recipe that says `task: my_task.py:ParityTask` (or `my_package.tasks:ParityTask`, or a name registered under
the `soarlite.tasks` entry-point group of an installed package). The grader's worker processes build the task from
the same string, so a task's `parse_teacher`, `reward` and `is_correct` run there under the grader's time limit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

from soarlite.config import RecipeError
from soarlite.data import Problem
from soarlite.plugins import PluginError, load_object

if TYPE_CHECKING:
    from soarlite.config import Config

# The built-in tasks, by name: where the grader's workers (and everyone else) find them.
BUILTIN = {
    "math": "soarlite.tasks.math:MathTask",
    "toy": "soarlite.tasks.toy:ToyTask",
}
ENTRY_POINT_GROUP = "soarlite.tasks"

Split = Literal["train", "test"]


@dataclass(frozen=True)
class QA:
    """A teacher's synthetic question and its answer (the reference the students are graded against)."""

    question: str
    answer: str  # the content of the boxed answer, without `\boxed{}`


@runtime_checkable
class Task(Protocol):
    """What SOAR needs from a domain. A task is built as `TaskClass(options)`, options being the recipe's
    `task_options` mapping; building must be cheap and import nothing heavy (it happens in every grader worker).

    Two optional methods make grading a step's rollouts cheap (soarlite.grading.Grader; the math task has both):

    - `grading_key(completion, reference) -> Hashable | None`: items with equal keys must have equal `reward` and
      equal `is_correct`, so the grader grades one item per key per batch; None (no short-cut) grades the item on its
      own. It runs in the trainer's process with no time limit: string operations only, never the checker itself.
    - `known_result(method, key) -> value | None`: what `method` ("reward" or "is_correct") gives for every item with
      this key when the key alone decides it (no item then goes to a worker); None when it must be graded.
    """

    name: str
    teacher_prompt: str  # the teacher's whole prompt (the paper's: no seed questions)

    def student_prompt(self, question: str) -> str:
        """The student's whole prompt for one question."""
        ...

    def parse_teacher(self, text: str) -> QA | None:
        """The question-answer pair a teacher output states, or None when it is not valid (then it is resampled)."""
        ...

    def reward(self, completion: str, reference: str) -> float:
        """The student's RL reward for one rollout."""
        ...

    def is_correct(self, completion: str, reference: str) -> bool:
        """Whether a completion's final answer is the reference: what every accuracy and pass@k counts."""
        ...

    def check(self, cfg: Config, with_data: bool) -> None:
        """Raise RecipeError (one line naming the key) for settings this task cannot run; with `with_data`, also for
        data files that are not there. Loads nothing."""
        ...

    def model_dir(self, cfg: Config) -> str:
        """The base model: a Hub id or a folder."""
        ...

    def hard_problems(self, cfg: Config, split: Split) -> list[Problem]:
        """The fail@k problems: `train` is the grounding set (the reward questions), `test` the held-out split
        (may be empty)."""
        ...

    # Optional (the loop and the grader look for them with getattr):
    #   difficulty(question) -> int | None        the task's difficulty measure of a question: the loop records a
    #                                             per-step histogram of what the teacher asks (metrics.jsonl,
    #                                             teacher_questions), which `soarlite report` plots
    #   reference_answer(question) -> str | None  the task's own answer to a question, where it can compute one: the
    #                                             share of the teacher's answers that are right
    #   self_contained: bool                      True when the task brings its own model and hard problems (the
    #                                             toy world): the recipe's model.base and data files go unchecked


@dataclass
class World:
    """A task resolved for one recipe: the model, the hard problems, and the prompts (a recipe may override them)."""

    task: Task
    model_dir: str
    hard_train: list[Problem]
    hard_test: list[Problem]
    teacher_prompt: str
    student_prompt: Callable[[str], str]


SLOT = "{question}"


def fill_prompt(template: str, question: str) -> str:
    """`template` with its `{question}` slot filled; every other brace stays as written (`\\boxed{}` needs no
    escaping: str.replace, never str.format)."""
    if SLOT not in template:
        raise ValueError(f"student prompt template has no {SLOT} slot: {template!r}")
    return template.replace(SLOT, question.strip())


def spec_for(name: str) -> str:
    """The `module:attr` string of a task name: built in, an installed plug-in, or already a `module:attr` / `file.py:attr`."""
    if name in BUILTIN:
        return BUILTIN[name]
    if ":" in name:
        return name
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            return ep.value
    raise RecipeError(f"task: {name!r} is not a task; use one of {', '.join(map(repr, BUILTIN))}, an installed "
                      f"plug-in's name, or 'module:Class' / 'file.py:Class'")


def load_task(name: str, options: dict | None = None) -> Task:
    """Build the task a recipe names, with its options."""
    spec = spec_for(name)
    try:
        factory = load_object(spec)
        task = factory(dict(options or {}))
    except PluginError as e:
        raise RecipeError(f"task: {e}") from None
    except (TypeError, ValueError) as e:
        raise RecipeError(f"task_options: {e}") from None
    missing = [m for m in ("teacher_prompt", "student_prompt", "parse_teacher", "reward", "is_correct", "check",
                           "model_dir", "hard_problems") if not hasattr(task, m)]
    if missing:
        raise RecipeError(f"task: {spec} is not a Task (it has no {missing[0]}; see soarlite.tasks.Task)")
    return task


def resolve(cfg: Config, with_data: bool = False) -> Task:
    """The recipe's task, checked against the recipe (and its data files, with `with_data`)."""
    task = load_task(cfg.task, cfg.task_options)
    task.check(cfg, with_data)
    return task


def resolve_world(cfg: Config, task: Task | None = None, with_data: bool = True) -> World:
    """The recipe's model, prompts and hard splits (the splits unless `with_data` is False: `soarlite filter` makes
    them). The prompts are the task's unless the recipe gives its own text."""
    task = task or resolve(cfg)
    teacher = cfg.prompts.teacher if cfg.prompts.teacher != "task" else task.teacher_prompt
    template = cfg.prompts.student
    return World(
        task=task,
        model_dir=str(task.model_dir(cfg)),
        hard_train=task.hard_problems(cfg, "train") if with_data else [],
        hard_test=task.hard_problems(cfg, "test") if with_data else [],
        teacher_prompt=teacher,
        student_prompt=task.student_prompt if template == "task" else (lambda q: fill_prompt(template, q)),
    )


__all__ = ["BUILTIN", "QA", "Problem", "Split", "Task", "World", "fill_prompt", "load_task", "resolve", "resolve_world", "spec_for"]
