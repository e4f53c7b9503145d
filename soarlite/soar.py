"""The SOAR loop (Sundaram et al., arXiv 2601.18778), top to bottom.

    for each outer step t:
        1. the teacher samples g*n question-answer pairs; unparsable outputs are rejected and resampled
        2. split them into g datasets X_1..X_g
        3. for each X_k, r students (copies of the baseline student) train on X_k with RLOO      (inner loop)
        4. R_k = mean over X_k's students of Acc(student, Q_R) - Acc(baseline, Q_R), Q_R = M fresh hard problems
        5. the teacher takes one RLOO step; every pair in X_k has advantage R_k - mean_{j != k} R_j
        6. if the moving average of mean_k R_k exceeds tau: the median student of the best dataset becomes the
           baseline student, and X_k* joins the Promotion Questions (PQ)

The inner loop runs in lockstep: every student of the step (or of a wave, `inner.students_in_flight`) samples its
rollouts in one engine call, with an adapter per prompt, then each takes its optimiser step; the greedy evaluation
of all students and the baseline on Q_R is one call too. Where the students train is the executor's business
(`executor: local`, this process; `executor: ray`, Ray workers: soarlite/executor.py): the loop hands it the waves and
gets back the gains and each dataset's median student.

Where the paper is silent, this implementation chooses (each is a one-line change):
  * promotion needs a full window of rewards, and the history restarts after a promotion, because rewards measured
    against the old baseline say nothing about the new one;
  * the "median" student of r, sorted by its own gain, is the upper median (index r // 2) by default
    (`outer.promote`): for odd r it is the median; for even r the lower median would promote the worse of two
    students at r = 2 (the 24 GB and T4 recipes), which makes promotion a step back by construction;
  * `outer.promote_from` can hold promotion back for the first outer steps (default 0: the paper's loop). A teacher
    that needs many updates to learn what to ask learns it best against one student: after each promotion the
    reward measures gains over a new baseline (docs/toy-world.md);
  * the teacher's KL reference is the base model with adapters off (the teacher starts as a zero LoRA, so this is
    the initial model); the students' is the same base, not the current baseline student.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import random
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path

from soarlite import checkpoint, rloo, teacher_rewards
from soarlite.config import Config
from soarlite.engine import Completion, OptimizerSpec, SamplingParams
from soarlite.executor import LocalExecutor, Wave
from soarlite.inner import Student, accuracy, clock, inner_lr, student_optimizer, train_students
from soarlite.names import STUDENT, TEACHER, seed_for
from soarlite.scoring import question_profiles
from soarlite.tasks import QA, World

__all__ = ["STUDENT", "TEACHER", "State", "Student", "TeacherStalled", "World", "accuracy", "inner_lr", "run",
           "seed_for", "student_optimizer", "train_students"]


class TeacherStalled(RuntimeError):
    """The teacher did not write g*n valid pairs within outer.max_sample_rounds rounds."""


@dataclass
class State:
    """Everything a resume needs besides the adapters (JSON in state.json)."""

    step: int = 0  # the next outer step to run
    history: list[float] = field(default_factory=list)  # mean rewards since the last promotion
    promotions: list[int] = field(default_factory=list)  # outer steps that promoted
    wall_s: float = 0.0


# ------------------------------------------------------------------------------------------------ outer loop, step 1
def sample_questions(engine, grader, cfg: Config, world: World, seed: int) -> tuple[list[QA], list[Completion], float]:
    """g*n valid pairs from the teacher, by rejection sampling. Returns the pairs, the teacher's completions that
    wrote them (the teacher's RLOO rollouts), and the valid-output rate over everything sampled."""
    o = cfg.outer
    need = o.g * o.n
    pairs: list[QA] = []
    rollouts: list[Completion] = []
    sampled = valid = 0
    for round_ in range(o.max_sample_rounds):
        missing = need - len(pairs)
        rate = len(pairs) / sampled if sampled else 1.0
        # ask for what the observed valid rate says is enough, so a 50%-valid teacher needs about two rounds, not ten
        count = min(4 * need, max(missing, round(missing / max(rate, 0.1))))
        outs = engine.generate(
            [world.teacher_prompt] * count, [TEACHER] * count,
            SamplingParams(o.temperature, o.max_new_tokens), seed_for(seed, "teacher", round_),
        )
        sampled += count
        for qa, c in zip(grader.parse_teacher([c.text for c in outs]), outs):
            valid += qa is not None
            if qa is not None and len(pairs) < need:
                pairs.append(qa)
                rollouts.append(c)
        if len(pairs) == need:
            return pairs, rollouts, valid / sampled
    raise TeacherStalled(
        f"the teacher wrote {len(pairs)} valid question-answer pairs of the {need} needed in {sampled} samples "
        f"({o.max_sample_rounds} rounds); check the teacher prompt, or raise outer.max_sample_rounds"
    )


# ------------------------------------------------------------------------------------------------ inner loop, step 3
# Student, train_students and accuracy are in soarlite.inner (re-exported here); soarlite.executor runs the waves.


# ------------------------------------------------------------------------------------------------ teacher, step 5
def update_teacher(engine, cfg: Config, rollouts: list[Completion], rewards: list[float]) -> dict:
    """One teacher RLOO step: each dataset's advantage (its reward against the other datasets') is shared by every
    pair of the dataset; `rollouts` are the teacher's completions, dataset after dataset (g x n)."""
    o = cfg.outer
    dataset_adv = rloo.advantages(rewards)
    advs = [dataset_adv[k] for k in range(o.g) for _ in range(o.n)]
    return rloo.update(engine, TEACHER, rollouts, advs, o.kl_coef, o.micro_batch)


# ------------------------------------------------------------------------------------------------ promotion, step 6
def moving_average(history: list[float], window: int) -> float | None:
    """Mean of the last `window` values; None until there are that many."""
    if len(history) < window:
        return None
    return sum(history[-window:]) / window


def held_back_note(o, start: int) -> str | None:
    """What to tell a run (or a resumed run from outer step `start`) whose promotions `outer.promote_from` holds."""
    if start >= o.promote_from:
        return None
    if o.promote_from >= o.steps:
        return f"no promotion in this run: outer.promote_from ({o.promote_from}) >= outer.steps ({o.steps})"
    return (f"promotion held back until outer step {o.promote_from + 1} (outer.promote_from): the teacher first "
            "learns against the untrained student")


def median_student(gains: list[float], upper: bool = True) -> int:
    """Index of the median student by its own gain: the upper median of an even count (or the lower one)."""
    order = sorted(range(len(gains)), key=lambda j: (gains[j], j))
    return order[len(gains) // 2 if upper else (len(gains) - 1) // 2]


# ------------------------------------------------------------------------------------------------ the run
def run(cfg: Config, world: World, engine, grader, run_dir: Path, report, executor=None) -> State:
    o, i = cfg.outer, cfg.inner
    executor = executor or LocalExecutor(cfg, world, engine, grader, report)  # where the waves train (executor.py)
    state = load_state(run_dir)
    teacher_opt = OptimizerSpec(o.lr, total_steps=o.steps, warmup_steps=o.warmup_steps)
    if state.step == 0:
        engine.create_adapter(TEACHER, teacher_opt)
        engine.create_adapter(STUDENT)  # the baseline student starts as the base model (a zero LoRA)
    else:
        engine.load_adapter(TEACHER, str(run_dir / "adapters" / TEACHER), teacher_opt)
        engine.load_adapter(STUDENT, str(run_dir / "adapters" / STUDENT))
    metrics = checkpoint.read_jsonl(run_dir / "metrics.jsonl")[: state.step]
    pq = [r for r in checkpoint.read_jsonl(run_dir / "pq.jsonl") if r["step"] < state.step]
    # datasets per wave: a dataset's r students train together; by default every student at once on each worker
    wave = max(1, (i.students_in_flight or o.r * -(-o.g // executor.workers)) // o.r)

    if note := held_back_note(o, state.step):  # else a user watching the moving average pass tau would wonder
        report.line(note)
    for t in range(state.step, o.steps):
        t0 = time.time()
        seed = seed_for(cfg.seed, t)
        report.outer_start(t, o.steps)

        # 1-2. the teacher writes g*n pairs; split into g datasets
        phase_s: dict[str, float] = {}  # where this step's time went
        report.phase("teacher samples questions")
        with clock(phase_s, "teacher_sample"):
            pairs, teacher_rollouts, valid_rate = sample_questions(engine, grader, cfg, world, seed)
        datasets = [pairs[k * o.n : (k + 1) * o.n] for k in range(o.g)]
        # what the teacher asks, where the task can measure it: the whole step, and each dataset (beside its reward
        # it shows what the teacher's RLOO can learn from)
        asked, asked_k = question_profiles(world.task, grader, datasets)

        # 4 (first half). Q_R: M problems from the hard training set, fresh each step
        rng = random.Random(seed)
        reward_questions = rng.sample(world.hard_train, min(o.M, len(world.hard_train)))

        # 3. r students per dataset, trained in lockstep (in waves of whole datasets), then evaluated on Q_R, by the
        #    executor (here, or on Ray workers); each dataset keeps its median student for a possible promotion
        lr = inner_lr(cfg, len(state.promotions))  # lower after promotions when inner.lr_decay < 1
        waves = []
        for w0 in range(0, o.g, wave):
            students = []
            for k in range(w0, min(o.g, w0 + wave)):
                for j in range(o.r):
                    order = list(range(len(datasets[k])))
                    random.Random(seed_for(seed, "order", k, j)).shuffle(order)
                    students.append(Student(f"s{k}_{j}", k, datasets[k], order, lr))
            waves.append(Wave(students, seed_for(seed, "wave", w0)))
        keep = functools.partial(median_student, upper=o.promote == "upper_median")
        out = executor.train_and_evaluate(waves, reward_questions, keep, phase_s)
        baseline_acc, gains, candidates = out.baseline_acc, out.gains, out.kept  # candidates: dataset -> its median

        # 4 (second half). the grounded reward of each dataset, and the teacher's (the same, unless the recipe
        # chooses another strategy: Intrinsic-T's learnability); promotion always uses the grounded one
        rewards = teacher_rewards.grounded(engine, grader, cfg, world, datasets, gains, seed)
        t_rewards = teacher_rewards.STRATEGIES[o.reward](engine, grader, cfg, world, datasets, gains, seed)

        # 5. teacher RLOO step: dataset-level advantages shared by every pair of the dataset
        report.phase("teacher update")
        with clock(phase_s, "teacher_update"):
            upd = update_teacher(engine, cfg, teacher_rollouts, t_rewards)

        # 6. promotion on the moving average of the mean reward
        reward_mean = sum(rewards) / o.g
        state.history.append(reward_mean)
        moving = moving_average(state.history, o.window)
        promoted = moving is not None and moving > o.tau and t >= o.promote_from
        if promoted:
            best = max(range(o.g), key=lambda k: rewards[k])
            engine.copy_adapter(candidates[best], STUDENT)
            pq += [{"question": qa.question, "answer": qa.answer, "step": t} for qa in datasets[best]]
            state.promotions.append(t)
            state.history = []
        for name in candidates.values():
            engine.delete_adapter(name)

        # checkpoint: the whole step or nothing
        state.step = t + 1
        state.wall_s += time.time() - t0
        row = {
            "step": t,
            "teacher_valid_rate": valid_rate,
            "teacher_questions": asked,
            "teacher_questions_by_dataset": asked_k,
            "rewards": rewards,
            "teacher_rewards": t_rewards,
            "reward_mean": reward_mean,
            "moving_avg": moving,
            "promoted": promoted,
            "promoted_from": best if promoted else None,
            "baseline_acc": baseline_acc,
            "student_gains": gains,
            "inner_lr": lr,
            "teacher_pg_loss": upd["pg_loss"],
            "teacher_kl": upd["kl"],
            "teacher_lr": upd["lr"],
            "peak_mem_mb": peak_memory_mb(),
            "phase_s": phase_s,
            "wall_s": time.time() - t0,
        }
        metrics.append(row)
        save_checkpoint(run_dir, engine, state, metrics, pq)
        report.outer_end(row, state)
    return state


# ------------------------------------------------------------------------------------------------ run folder
def load_state(run_dir: Path) -> State:
    path = run_dir / "state.json"
    if not path.exists():
        return State()
    return State(**json.loads(path.read_text()))


def save_checkpoint(run_dir: Path, engine, state: State, metrics: list[dict], pq: list[dict]) -> None:
    staging = checkpoint.begin(run_dir)
    engine.save_adapter(TEACHER, str(staging / "adapters" / TEACHER), with_optimizer=True)
    engine.save_adapter(STUDENT, str(staging / "adapters" / STUDENT))
    (staging / "metrics.jsonl").write_text(checkpoint.jsonl(metrics))
    (staging / "pq.jsonl").write_text(checkpoint.jsonl(pq))
    (staging / "state.json").write_text(json.dumps(dataclasses.asdict(state), indent=1))
    checkpoint.commit(run_dir)


def peak_memory_mb() -> float:
    """Peak GPU memory allocated where there is a GPU, else the process's peak resident memory."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

