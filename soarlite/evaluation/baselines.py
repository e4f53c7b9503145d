"""The paper's comparisons, like for like: every student here is trained by the inner loop (`soar.train_students`,
one RLOO implementation) for a counted number of steps, and evaluated by the same pass@k on the same test split.

    Hard-Only     RLOO straight on the hard train split
    PQ            a fresh student on the run's Promotion Questions plus the hard train split (curriculum or mixed)
    PS            the run's promoted student, evaluated as it is
    Base-T        a fresh student on questions written by the untrained teacher (the base model, teacher prompt)
    Grounded-T    the same, with the run's trained teacher
    Intrinsic-T   a SOAR run whose teacher is rewarded by learnability (`outer.reward: intrinsic`), then as Grounded-T

The student budget is the one `evaluate.hard_only_steps` gives SOAR's final student (inner.steps per promotion, at
least one inner loop, each a fresh optimiser at the rate that student's generation trained at: `inner.lr_decay`) unless
--steps says otherwise (one inner loop); every result records its steps and rollouts.
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

from soarlite import checkpoint
from soarlite.config import RecipeError
from soarlite.data import load_problems
from soarlite.evaluation import diversity
from soarlite.evaluation import passk as ev
from soarlite.evaluation.summary import hard_only_steps, train_fresh_student
from soarlite.names import TEACHER, seed_for
from soarlite.progress import Reporter
from soarlite.session import session
from soarlite.soar import sample_questions
from soarlite.tasks import QA

METHODS = ("hard-only", "pq", "ps", "base-teacher", "grounded-teacher", "intrinsic")
EVAL_SEED = 12345  # one sample stream for every adapter (as in the run summary): differences are the adapters'
EVAL = "eval_adapter"


# ------------------------------------------------------------------------------------------------ shared set-up
def adapter_path(value: str, run: str | None) -> Path:
    """An adapter folder: a path, or with --run a name under the run's adapters/ (student, teacher)."""
    p = Path(value)
    if run and len(p.parts) == 1 and (Path(run) / "adapters" / value).exists():  # a bare name: the run's adapter
        p = Path(run) / "adapters" / value
    if not (p / "adapter_model.safetensors").is_file():
        raise RecipeError(f"--adapter: {p} is not a PEFT adapter folder (no adapter_model.safetensors)")
    return p


def test_problems(cfg, world, data: str | None):
    if data:
        return load_problems(data, cfg.data.problem_field, cfg.data.answer_field)
    if not world.hard_test:
        raise RecipeError("data.hard_test: empty; give the test split with --data FILE")
    return world.hard_test


def slug(label: str) -> str:
    """A file name for a method's label: "PQ (curriculum)" -> "pq-curriculum"."""
    return "-".join("".join(c if c.isalnum() else " " for c in label.lower()).split())


def _run_state(run: str | None) -> tuple[int, list[dict]]:
    """(promotions, Promotion Questions) of a run folder; (0, []) without one."""
    if not run:
        return 0, []
    import json

    state = Path(run) / "state.json"
    if not state.is_file():
        raise RecipeError(f"--run: {run} holds no run (no state.json)")
    return len(json.loads(state.read_text())["promotions"]), checkpoint.read_jsonl(Path(run) / "pq.jsonl")


# ------------------------------------------------------------------------------------------------ eval
def eval_command(cfg, adapter: str | None, run: str | None, data: str | None, samples: int, ks: list[int],
                 out: str | None, label: str | None, quiet: bool) -> tuple[dict, Path]:
    """`soarlite eval`: pass@k of the base model or an adapter; writes the result JSON."""
    path = adapter_path(adapter, run) if adapter else None
    label = label or (path.name if path else "base")
    if out:
        dest = Path(out)
    elif run:
        dest = Path(run) / "eval" / f"{slug(label)}.json"
    else:
        dest = Path("runs") / "eval" / f"{cfg.name}-{slug(label)}.json"
    with Reporter(quiet=quiet) as report, session(cfg, with_data=data is None) as (world, engine, grader):
        problems = test_problems(cfg, world, data)
        if path:
            engine.load_adapter(EVAL, str(path))
        report.line(f"eval {label}: {len(problems)} problems x {samples} samples")
        result = ev.evaluate(engine, grader, cfg, world, EVAL if path else None, problems, samples, ks, EVAL_SEED, label)
    result.update(adapter=str(path) if path else None, data=data or cfg.data.hard_test or "toy")
    ev.write_result(dest, result)
    return result, dest


# ------------------------------------------------------------------------------------------------ the baselines
def _budget(cfg, run: str | None, steps: int | None) -> tuple[int, int]:
    """(steps, inner loops): --steps as one inner loop, or what the run's final student had (one loop per promotion)."""
    if steps:
        return steps, 1
    promotions = _run_state(run)[0]
    return hard_only_steps(cfg, promotions), max(1, promotions)


def _train_and_eval(engine, grader, cfg, world, label: str, questions: list[QA], order: list[int],
                    budget: tuple[int, int], problems, samples: int, ks, out: Path, report) -> dict:
    steps, loops = budget
    name = slug(label).replace("-", "_")
    report.line(f"{label}: fresh student, {steps} RLOO steps on {len(questions)} questions")
    train_fresh_student(engine, grader, cfg, world, name, questions, order, steps, seed_for(cfg.seed, name), report,
                        loops)
    engine.save_adapter(name, str(out / "baselines" / slug(label)))
    result = ev.evaluate(engine, grader, cfg, world, name, problems, samples, ks, EVAL_SEED, label)
    result.update(student_steps=steps, student_rollouts=steps * cfg.inner.batch_size * cfg.inner.group_size,
                  student_questions=len(questions), adapter=str(out / "baselines" / slug(label)))
    return result


def teacher_questions(engine, grader, cfg, world, teacher: Path | None, count: int, seed: int) -> tuple[list[QA], float]:
    """`count` valid pairs from the teacher (the untrained one when `teacher` is None), rejection-sampled exactly as
    the loop samples them. Returns the pairs and the valid-output rate."""
    if teacher is None:
        engine.create_adapter(TEACHER)  # a fresh LoRA has B = 0: the base model, which is the untrained teacher
    else:
        engine.load_adapter(TEACHER, str(teacher))
    one = dataclasses.replace(cfg, outer=dataclasses.replace(cfg.outer, g=1, n=count))
    pairs, _, valid = sample_questions(engine, grader, one, world, seed)
    return pairs, valid


def baseline_command(method: str, cfg, run: str | None, out: str | None, steps: int | None, order: str,
                     questions: int, samples: int, ks: list[int], data: str | None, quiet: bool,
                     relabel: str | None = None) -> tuple[dict, Path]:
    """`soarlite baseline METHOD`: train and evaluate one baseline; returns the result and its file."""
    if method not in METHODS:
        raise RecipeError(f"baseline: {method!r} is not a baseline; use one of {', '.join(METHODS)}")
    if method == "intrinsic":  # a SOAR run of its own, then Grounded-T on its teacher: soarlite.runner.intrinsic_baseline
        raise RecipeError("baseline intrinsic: run it with `soarlite baseline intrinsic` (a SOAR run of its own)")
    if method in ("pq", "ps", "grounded-teacher") and not run:
        raise RecipeError(f"baseline {method}: --run DIR: name the SOAR run it comes from")
    if method == "ps":
        return eval_command(cfg, "student", run, data, samples, ks, None, "PS", quiet)
    folder = Path(run) if run else Path(out or Path("runs") / f"{cfg.name}-baselines")
    budget = _budget(cfg, run, steps)
    promotions, pq = _run_state(run)
    if method == "pq" and not pq:
        raise RecipeError(f"baseline pq: {run} has no Promotion Questions ({promotions} promotions)")
    with Reporter(quiet=quiet) as report, session(cfg, with_data=True) as (world, engine, grader):
        problems = test_problems(cfg, world, data)
        hard = [QA(p.problem, p.answer) for p in world.hard_train]
        rng = random.Random(seed_for(cfg.seed, method, order))
        extra = {}
        if method == "hard-only":
            label, qs = "Hard-Only", hard
            idx = list(range(len(qs)))
            rng.shuffle(idx)
        elif method == "pq":
            label = f"PQ ({order})"
            qs = [QA(r["question"], r["answer"]) for r in pq] + hard
            if order == "curriculum":  # the promotion questions first, in the order they were promoted, then the rest
                rest = list(range(len(pq), len(qs)))
                rng.shuffle(rest)
                idx = list(range(len(pq))) + rest
            else:
                idx = list(range(len(qs)))
                rng.shuffle(idx)
            extra["pq_questions"] = len(pq)
        else:  # base-teacher, grounded-teacher
            label = "Base-T" if method == "base-teacher" else "Grounded-T"
            teacher = None if method == "base-teacher" else Path(run) / "adapters" / "teacher"
            qs, valid = teacher_questions(engine, grader, cfg, world, teacher, questions, seed_for(cfg.seed, method))
            idx = list(range(len(qs)))
            rng.shuffle(idx)
            label = relabel or label
            extra = {"teacher_valid_rate": valid, "diversity": diversity.diversity([q.question for q in qs])}
            (folder / "baselines").mkdir(parents=True, exist_ok=True)
            checkpoint.write_text_atomic(folder / "baselines" / f"{slug(label)}-questions.jsonl",
                                         checkpoint.jsonl(dataclasses.asdict(q) for q in qs))
        result = _train_and_eval(engine, grader, cfg, world, label, qs, idx, budget, problems, samples, ks, folder,
                                 report)
    result.update(extra, data=data or cfg.data.hard_test or "toy", run=run, promotions=promotions)
    dest = folder / "eval" / f"{slug(label)}.json"
    ev.write_result(dest, result)
    return result, dest
