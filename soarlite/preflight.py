"""The pre-flight check: does one inner loop move a student at this recipe's learning rate?

A LoRA's B matrix starts at zero, so at a full-fine-tuning learning rate (the paper's 1e-5) ten RLOO steps barely
move it, and every student gain the teacher is rewarded with is noise: a run of days would learn nothing, silently.
Before step 0 of a run (config `preflight: true`, the default; `soarlite plan --measure` runs it too) this module
trains ONE fresh student with the real inner loop (`soar.train_students`) on the teacher's first questions (the
teacher at step 0 is the base model: its LoRA starts at zero too) and counts its right answers on those same
questions before and after (`scoring.correct_counts`, the same seed both times). If the count does not rise, the
run stops with a message naming inner.lr and inner.steps. The check's adapter is deleted afterwards.

What it does not show: that the student generalises (the loop measures that on the hard problems); only that the
update reaches the weights and points the right way on what it was trained on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from soarlite import soar
from soarlite.config import Config
from soarlite.data import Problem
from soarlite.engine import SamplingParams
from soarlite.names import seed_for
from soarlite.progress import Silent
from soarlite.scoring import correct_counts

NAME = "__preflight__"


class PreflightFailed(RuntimeError):
    """One inner loop did not raise a fresh student's accuracy on its own training questions."""


@dataclass
class Result:
    questions: int
    samples: int
    before: int  # right answers of the fresh student, out of questions * samples
    after: int  # ... after one inner loop
    seconds: float
    skipped: str = ""  # why nothing could be measured (then the check passes)

    @property
    def passed(self) -> bool:
        return bool(self.skipped) or self.after > self.before

    def line(self) -> str:
        total = self.questions * self.samples
        if self.skipped:
            return f"pre-flight: {self.skipped}"
        return (f"pre-flight: one inner loop took a fresh student from {self.before}/{total} to {self.after}/{total} "
                f"right answers on its {self.questions} training questions ({self.seconds:.0f}s)")


def teacher_questions(engine, grader, cfg: Config, world, seed: int, count: int) -> list:
    """`count` valid question-answer pairs from the step-0 teacher (the base: its LoRA is still zero), by rejection
    sampling as the loop does; fewer when the rounds run out."""
    o = cfg.outer
    pairs: list = []
    for round_ in range(o.max_sample_rounds):
        want = 2 * (count - len(pairs))
        outs = engine.generate([world.teacher_prompt] * want, [None] * want,
                               SamplingParams(o.temperature, o.max_new_tokens), seed_for(seed, "preflight-teacher", round_))
        pairs += [qa for qa in grader.parse_teacher([c.text for c in outs]) if qa is not None]
        if len(pairs) >= count:
            break
    return pairs[:count]


def check(cfg: Config, world, engine, grader, report=None, samples: int = 4, questions: int | None = None) -> Result:
    """Train one fresh student for one inner loop (inner.steps RLOO steps at inner.lr) on the teacher's first
    `questions` (default outer.n, one dataset) and count its right answers on them, `samples` each, before and
    after. Returns the Result; `require` raises when it did not rise."""
    t0 = time.time()
    i = cfg.inner
    seed = seed_for(cfg.seed, "preflight")
    n = questions or cfg.outer.n
    pairs = teacher_questions(engine, grader, cfg, world, seed, n)
    if not pairs:
        return Result(0, samples, 0, 0, time.time() - t0, "skipped: the step-0 teacher wrote no valid question")
    problems = [Problem(qa.question, qa.answer) for qa in pairs]
    params = SamplingParams(i.temperature, i.max_new_tokens)
    engine.create_adapter(NAME, soar.student_optimizer(cfg, i.lr, i.steps))
    try:
        before = sum(correct_counts(engine, grader, world, [NAME], problems, samples, params, seed)[0])
        if before == len(problems) * samples:
            return Result(len(problems), samples, before, before, time.time() - t0,
                          "skipped: the fresh student already answers all of the teacher's first questions")
        student = soar.Student(NAME, 0, pairs, list(range(len(pairs))))
        soar.train_students(engine, grader, cfg, world, [student], seed, report or Silent())
        after = sum(correct_counts(engine, grader, world, [NAME], problems, samples, params, seed)[0])
    finally:
        engine.delete_adapter(NAME)
    return Result(len(problems), samples, before, after, time.time() - t0)


def require(cfg: Config, result: Result) -> None:
    """Stop (PreflightFailed, one line) when the check did not pass."""
    if result.passed:
        return
    total = result.questions * result.samples
    raise PreflightFailed(
        f"pre-flight check failed: one inner loop ({cfg.inner.steps} {cfg.inner.optimizer} steps at "
        f"inner.lr={cfg.inner.lr:g}) took a fresh student from {result.before}/{total} to {result.after}/{total} right answers on its own training questions, "
        f"so students would not learn and the teacher's reward would be noise; raise inner.lr ({_lr_hint(cfg)}) or "
        f"inner.steps, or turn the check off with preflight=false")


def _lr_hint(cfg: Config) -> str:
    """What scale of rate to try, by optimiser: AdamW's step does not grow with the gradient, SGD's does."""
    if cfg.inner.optimizer == "sgd":
        return "plain SGD's rate is on another scale than AdamW's: the tiny recipe's LoRA students train at 0.03"
    return "with AdamW, LoRA wants about 10x a full fine-tuning rate"


def require_line(cfg: Config, result: Result) -> str:
    """`require`, then the line that says what was measured (for the run's display)."""
    require(cfg, result)
    return result.line()


def standalone(cfg: Config) -> Result:
    """The check on its own (`soarlite plan --measure`): loads the task's world and data, an engine and a grader."""
    from soarlite.session import session

    with session(cfg) as (world, engine, grader):
        return check(cfg, world, engine, grader)
