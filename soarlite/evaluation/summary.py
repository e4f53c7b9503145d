"""The end of a run: how the students do on the held-out hard test split, and against Hard-Only."""

from __future__ import annotations

import dataclasses
import random

from soarlite import checkpoint
from soarlite.config import Config
from soarlite.engine import OptimizerSpec
from soarlite.names import seed_for
from soarlite.scoring import sampled_counts
from soarlite.soar import Student, train_students
from soarlite.tasks import QA

HARD_ONLY = "hard_only"


def pass_at_1(engine, grader, cfg: Config, world, adapter: str | None, problems, samples: int, seed: int) -> float:
    """Mean correctness of `samples` answers per problem at the student temperature (the unbiased pass@1)."""
    return sum(sampled_counts(engine, grader, cfg, world, adapter, problems, samples, seed)) / (len(problems) * samples)


def hard_only_steps(cfg: Config, promotions: int) -> int:
    """The student budget of SOAR's final baseline: one inner loop per promotion (at least one inner loop)."""
    return cfg.inner.steps * max(1, promotions)


def train_fresh_student(engine, grader, cfg: Config, world, name: str, questions: list[QA], order: list[int], steps: int,
                        seed: int, report) -> str:
    """A new student adapter (the base model) trained by the inner loop for `steps` RLOO steps on `questions`, taken in
    `order` (cycled). The one way every baseline trains, so that a step costs the same everywhere."""
    engine.create_adapter(name, OptimizerSpec(cfg.inner.lr, total_steps=steps))
    budget = dataclasses.replace(cfg, inner=dataclasses.replace(cfg.inner, steps=steps))
    train_students(engine, grader, budget, world, [Student(name, 0, questions, order)], seed, report)
    return name


def train_hard_only(engine, grader, cfg: Config, world, steps: int, report) -> str:
    """Hard-Only: RLOO straight on the hard train split, with the inner loop's settings, for `steps` steps."""
    questions = [QA(p.problem, p.answer) for p in world.hard_train]
    order = list(range(len(questions)))
    random.Random(seed_for(cfg.seed, "hard_only")).shuffle(order)
    return train_fresh_student(engine, grader, cfg, world, HARD_ONLY, questions, order, steps, seed_for(cfg.seed, "hard_only"), report)


def summarise(cfg: Config, world, engine, grader, run_dir, state, report) -> dict:
    metrics = checkpoint.read_jsonl(run_dir / "metrics.jsonl")
    summary = {
        "recipe": cfg.name,
        "outer_steps": len(metrics),
        "promotions": len(state.promotions),
        "promotion_steps": state.promotions,
        "teacher_valid_rate_first": metrics[0]["teacher_valid_rate"] if metrics else None,
        "teacher_valid_rate_last": metrics[-1]["teacher_valid_rate"] if metrics else None,
        "reward_mean_last": metrics[-1]["reward_mean"] if metrics else None,
        "baseline_hard_acc": None,
        "final_hard_acc": None,
        "hard_only_acc": None,
        "hard_only_steps": None,
        "eval_samples": cfg.eval.samples,
        "hard_test_size": len(world.hard_test),
    }
    if world.hard_test and cfg.eval.samples:
        seed = 12345  # the same samples stream for every adapter, so differences are the adapters'
        report.phase("pass@1 on the hard test split")
        summary["baseline_hard_acc"] = pass_at_1(engine, grader, cfg, world, None, world.hard_test, cfg.eval.samples, seed)
        summary["final_hard_acc"] = pass_at_1(engine, grader, cfg, world, "student", world.hard_test, cfg.eval.samples, seed)
        if cfg.eval.hard_only:
            steps = hard_only_steps(cfg, len(state.promotions))
            report.phase(f"Hard-Only student, {steps} RLOO steps")
            name = train_hard_only(engine, grader, cfg, world, steps, report)
            summary["hard_only_acc"] = pass_at_1(engine, grader, cfg, world, name, world.hard_test, cfg.eval.samples, seed)
            summary["hard_only_steps"] = steps
            engine.delete_adapter(name)
    summary["wall_s"] = state.wall_s
    return summary


def summary_table(summary: dict) -> str:
    def f(x):
        return "-" if x is None else (f"{x:.3f}" if isinstance(x, float) else str(x))

    keys = ["outer_steps", "promotions", "teacher_valid_rate_first", "teacher_valid_rate_last",
            "baseline_hard_acc", "final_hard_acc", "hard_only_acc", "wall_s"]
    width = max(map(len, keys))
    return "\n".join(f"{k:<{width}}  {f(summary[k])}" for k in keys)
