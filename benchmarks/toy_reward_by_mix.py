"""What SOAR's reward pays for in the toy world: a dataset's reward as a function of how many of its questions are
stepping stones.

    python benchmarks/toy_reward_by_mix.py [--ks 0,1,2,4,8] [--reps 8] [--wrong 0.5] [--wrong-stones 0.2]
                                           [--from RUN_DIR] [--out FILE.json] [overrides...]

Each dataset has outer.n questions: k of the world's true stepping stones (levels 1-3, a share --wrong-stones of their
answers wrong) and n - k long chains (levels 6-8) whose answers are wrong with probability --wrong, as the untrained
teacher writes about half of them. A wrong answer overshoots by 1-3, the writer's own slip. For each k, --reps fresh students train one inner loop of the
recipe on such datasets (in lockstep, as in an outer step) from the untrained student, or from a run's promoted
student (--from RUN_DIR, its adapters/student), and their gain in greedy accuracy on the hard train split, SOAR's
reward (the paper's R_k with r = 1), is printed with its spread. The median gradient norm of their updates is printed
too: it is what `inner.max_grad_norm` bounds. A teacher can only learn to ask for stepping stones as far as this
curve rises with k (docs/toy-world.md, "What the reward pays for").
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("overrides", nargs="*", help="recipe overrides, as in `soarlite run`")
    ap.add_argument("--recipe", default="tiny")
    ap.add_argument("--ks", default="0,1,2,4,8", help="stepping stones per dataset, one wave of students each")
    ap.add_argument("--reps", type=int, default=8, help="students (datasets) per k")
    ap.add_argument("--wrong", type=float, default=0.5, help="share of the long chains whose answer is wrong")
    ap.add_argument("--wrong-stones", type=float, default=0.0, help="share of the stepping stones whose answer is wrong "
                    "(the untrained teacher gets about 1 in 5 of its short chains wrong)")
    ap.add_argument("--from", dest="run", help="a run folder: start from its promoted student")
    ap.add_argument("--out", type=Path, help="write the gains as JSON here")
    a = ap.parse_args(argv)

    import torch

    from soarlite.inner import Student, accuracy, student_optimizer, train_students
    from soarlite.names import STUDENT, seed_for
    from soarlite.progress import Silent
    from soarlite.session import load_config, session
    from soarlite.toy import stepping_stones

    cfg = load_config(a.recipe, a.overrides, None)
    n = cfg.outer.n
    ks = [int(k) for k in a.ks.split(",")]
    if any(not 0 <= k <= n for k in ks):
        raise SystemExit(f"--ks: each k must be between 0 and outer.n ({n})")
    results = {}
    with session(cfg) as (world, engine, grader):
        hard = {p.problem for p in world.hard_train} | {p.problem for p in world.hard_test}
        if a.run:
            engine.load_adapter(STUDENT, str(Path(a.run) / "adapters" / STUDENT))
        else:
            engine.create_adapter(STUDENT)
        before = accuracy(engine, grader, cfg, world, [STUDENT], world.hard_train)[0]
        print(f"baseline greedy accuracy on the hard train split: {before:.3f}", flush=True)

        norms: dict[str, list[float]] = {}
        step = engine.step

        def step_and_record(name: str) -> float:  # the gradient's norm before any clip, then the engine's own step
            grads = [p.grad for p in engine.optimizers[name][0].param_groups[0]["params"] if p.grad is not None]
            norms.setdefault(name, []).append(float(torch.stack([g.norm() for g in grads]).norm()) if grads else 0.0)
            return step(name)

        engine.step = step_and_record
        for k in ks:
            students = []
            for j in range(a.reps):
                rng = random.Random(f"mix/{k}/{j}")
                stones = stepping_stones(1000 + 37 * j + k, k, (1, 2, 3), exclude=hard) if k else []
                longs = stepping_stones(5000 + 37 * j + k, n - k, (6, 7, 8), exclude=hard) if k < n else []
                qa = [pair(p, a.wrong_stones, rng) for p in stones] + [pair(p, a.wrong, rng) for p in longs]
                rng.shuffle(qa)
                name = f"mix_{k}_{j}"
                engine.create_adapter(name, student_optimizer(cfg, cfg.inner.lr, cfg.inner.steps), copy_from=STUDENT)
                order = list(range(n))
                rng.shuffle(order)
                students.append(Student(name, j, qa, order))
            train_students(engine, grader, cfg, world, students, seed_for(11, k), Silent())
            accs = accuracy(engine, grader, cfg, world, [s.name for s in students], world.hard_train)
            gains = [acc - before for acc in accs]
            grad_norms = [x for s in students for x in norms.pop(s.name, [])]
            for s in students:
                engine.delete_adapter(s.name)
            mean, sd = statistics.mean(gains), statistics.stdev(gains) if len(gains) > 1 else 0.0
            results[k] = {"gains": gains, "mean": mean, "sd": sd, "grad_norm_median": statistics.median(grad_norms)}
            print(f"k={k}: gain {mean:+.3f} (sd {sd:.3f}, se {sd / len(gains) ** 0.5:.3f}, {len(gains)} students); "
                  f"median gradient norm {statistics.median(grad_norms):.2f}; "
                  + " ".join(f"{g:+.3f}" for g in gains), flush=True)
    if a.out:
        a.out.write_text(json.dumps({"baseline": before, "from": a.run, "wrong": a.wrong,
                                     "wrong_stones": a.wrong_stones, "overrides": a.overrides,
                                     "by_k": results}, indent=1) + "\n")


def pair(problem, wrong: float, rng: random.Random):
    """The problem as a question-answer pair whose answer overshoots by 1-3 (the writer's slip) with probability
    `wrong`."""
    from soarlite.tasks import QA

    return QA(problem.question, str(problem.answer + (rng.randint(1, 3) if rng.random() < wrong else 0)))


if __name__ == "__main__":
    main()
