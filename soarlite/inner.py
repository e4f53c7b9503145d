"""The inner loop (step 3 of the SOAR algorithm box), below the loop so that an executor can run it: throwaway
students trained in lockstep with RLOO on a synthetic dataset, and their greedy accuracy on the reward questions.

`soar` re-exports `Student`, `train_students` and `accuracy` (they lived there before the executor seam).
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass

from soarlite import rloo
from soarlite.config import Config
from soarlite.data import Problem
from soarlite.engine import OptimizerSpec, SamplingParams
from soarlite.names import STUDENT, seed_for
from soarlite.scoring import greedy_accuracy
from soarlite.tasks import QA, World

__all__ = ["Student", "accuracy", "clock", "inner_lr", "run_wave", "student_optimizer", "train_students"]


@dataclass
class Student:
    name: str
    k: int  # the dataset it trains on
    questions: list[QA]
    order: list[int]  # its shuffle of the dataset
    lr: float | None = None  # its learning rate (None: inner.lr); the loop sets inner_lr(cfg, promotions so far)


def inner_lr(cfg: Config, generation: int) -> float:
    """The learning rate of a student copied from a baseline that has been promoted `generation` times (its inner
    loop is the generation+1-th the weights go through): inner.lr x inner.lr_decay^generation."""
    return cfg.inner.lr * cfg.inner.lr_decay**generation


def student_optimizer(cfg: Config, lr: float, steps: int) -> OptimizerSpec:
    """A student's optimiser for one inner loop of `steps` steps at `lr` (inner.optimizer, cosine decay)."""
    return OptimizerSpec(lr, total_steps=steps, algorithm=cfg.inner.optimizer,
                         max_grad_norm=cfg.inner.max_grad_norm or None)


def train_students(engine, grader, cfg: Config, world: World, students: list[Student], seed: int, report) -> None:
    """RLOO on each student's synthetic dataset, all students in lockstep."""
    i = cfg.inner
    params = SamplingParams(i.temperature, i.max_new_tokens)
    for step in range(i.steps):
        report.inner(step, i.steps)
        batches = []  # per student: the batch_size questions of this step, cycling through its shuffled dataset
        for s in students:
            batches.append([s.questions[s.order[(step * i.batch_size + j) % len(s.order)]] for j in range(i.batch_size)])
        prompts, adapters, refs = [], [], []
        for s, batch in zip(students, batches):
            for qa in batch:
                prompts += [world.student_prompt(qa.question)] * i.group_size
                adapters += [s.name] * i.group_size
                refs += [qa.answer] * i.group_size
        rollouts = engine.generate(prompts, adapters, params, seed_for(seed, "inner", step))  # one call, every student
        rewards = grader.rewards([(c.text, ref) for c, ref in zip(rollouts, refs)])
        per_student = i.batch_size * i.group_size
        for n, s in enumerate(students):
            lo = n * per_student
            advs = []
            for q in range(i.batch_size):  # an RLOO group is the group_size rollouts of one question
                g0 = lo + q * i.group_size
                advs += rloo.advantages(rewards[g0 : g0 + i.group_size])
            rloo.update(engine, s.name, rollouts[lo : lo + per_student], advs, i.kl_coef, i.micro_batch)
    report.inner(i.steps, i.steps)


def accuracy(engine, grader, cfg: Config, world: World, adapters: list[str], problems: list[Problem]) -> list[float]:
    """Acc(adapter, Q_R): greedy accuracy of each adapter on `problems`, all in one engine call."""
    return greedy_accuracy(engine, grader, world, adapters, problems, cfg.inner.max_new_tokens)


# ------------------------------------------------------------------------------------------------ one wave
@contextmanager
def clock(phase_s: dict[str, float], name: str):
    t0 = time.time()
    yield
    phase_s[name] = phase_s.get(name, 0.0) + time.time() - t0


def run_wave(engine, grader, cfg: Config, world: World, students: list[Student], seed: int, questions: list[Problem],
             with_baseline: bool, report, phase_s: dict[str, float]) -> list[float]:
    """One wave, wherever it runs (this process or a Ray worker): the students start as copies of the baseline
    student, train in lockstep, then answer the reward questions greedily, the baseline too when `with_baseline`
    (its accuracy is then the last one). Leaves the students' adapters in the engine."""
    i = cfg.inner
    for s in students:
        lr = i.lr if s.lr is None else s.lr
        engine.create_adapter(s.name, student_optimizer(cfg, lr, i.steps), copy_from=STUDENT)
    report.phase(f"students {students[0].name}..{students[-1].name} train")
    with clock(phase_s, "inner_loop"):
        train_students(engine, grader, cfg, world, students, seed, report)
    report.phase("students answer the reward questions")
    names = [s.name for s in students] + ([STUDENT] if with_baseline else [])
    with clock(phase_s, "reward_eval"):
        return accuracy(engine, grader, cfg, world, names, questions)
