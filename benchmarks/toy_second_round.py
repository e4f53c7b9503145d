"""After a promotion, can anything raise the promoted student further? A second inner loop on TRUE stepping stones.

    python benchmarks/toy_second_round.py RUN_DIR [RUN_DIR ...] [--students 4]   # tiny-recipe run folders
    python benchmarks/toy_second_round.py base                                   # the same from the untrained student
    python benchmarks/toy_second_round.py RUN_DIR --set inner.lr=1e-3            # a gentler second inner loop
    python benchmarks/toy_second_round.py RUN_DIR --datasets teacher             # the run's own teacher's datasets

For each run folder, the promoted student (adapters/student) is loaded as the baseline; --students fresh copies of it
each train one inner loop of the tiny recipe on a dataset of 8 of the world's true stepping stones (levels 1-3, right
answers: the best dataset a teacher could write), and their gain in greedy accuracy on the hard train split is
printed: the same quantity as SOAR's reward. `base` runs it from the untrained student instead. It separates the two
reasons a SOAR run stalls after its first promotion (docs/toy-world.md): the teacher's questions, or the second inner
loop itself. `--datasets teacher` trains one student on each of g datasets the run's final teacher (adapters/teacher)
writes instead, in lockstep as an outer step does.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", help="run folders of the tiny recipe, or `base`")
    ap.add_argument("--set", nargs="*", default=[], help="recipe overrides for the second inner loop, e.g. inner.lr=1e-3")
    ap.add_argument("--students", type=int, default=4)
    ap.add_argument("--questions", type=int, default=8, help="stepping stones per dataset (the recipe's outer.n)")
    ap.add_argument("--datasets", choices=["stones", "teacher"], default="stones",
                    help="stones: --students datasets of true stepping stones; teacher: g datasets by the run's teacher")
    a = ap.parse_args(argv)

    from soarlite.inner import Student, accuracy, student_optimizer, train_students
    from soarlite.names import STUDENT, seed_for
    from soarlite.progress import Silent
    from soarlite.session import load_config, session
    from soarlite.tasks import QA
    from soarlite.toy import stepping_stones

    cfg = load_config("tiny", a.set, None)
    with session(cfg) as (world, engine, grader):
        hard = {p.problem for p in world.hard_train} | {p.problem for p in world.hard_test}
        for run in a.runs:
            if STUDENT in engine.adapters:
                engine.delete_adapter(STUDENT)
            if run == "base":
                engine.create_adapter(STUDENT)
            else:
                engine.load_adapter(STUDENT, str(Path(run) / "adapters" / STUDENT))
            before = accuracy(engine, grader, cfg, world, [STUDENT], world.hard_train)[0]
            if a.datasets == "teacher":
                if run == "base":
                    raise SystemExit("--datasets teacher needs a run folder (its adapters/teacher), not `base`")
                gains = teacher_gains(engine, grader, cfg, world, run, before)
                print(f"{run}: greedy accuracy on the hard train split {before:.3f}; gains after one inner loop on "
                      f"each of {len(gains)} datasets by the run's teacher: " + " ".join(f"{g:+.3f}" for g in gains)
                      + f" (mean {sum(gains) / len(gains):+.3f})", flush=True)
                continue
            gains = []
            for j in range(a.students):
                stones = [QA(p.question, str(p.answer))
                          for p in stepping_stones(100 + j, a.questions, (1, 2, 3), exclude=hard)]
                name = f"second_{j}"
                engine.create_adapter(name, student_optimizer(cfg, cfg.inner.lr, cfg.inner.steps), copy_from=STUDENT)
                order = list(range(len(stones)))
                random.Random(j).shuffle(order)
                train_students(engine, grader, cfg, world, [Student(name, 0, stones, order)], seed_for(7, j), Silent())
                gains.append(accuracy(engine, grader, cfg, world, [name], world.hard_train)[0] - before)
                engine.delete_adapter(name)
            print(f"{run}: greedy accuracy on the hard train split {before:.3f}; gains after one inner loop on "
                  f"{a.questions} true stepping stones: " + " ".join(f"{g:+.3f}" for g in gains)
                  + f" (mean {sum(gains) / len(gains):+.3f})", flush=True)


def teacher_gains(engine, grader, cfg, world, run: str, before: float) -> list[float]:
    """g datasets written by the run's final teacher, one student each trained from the baseline in lockstep (as an
    outer step trains them); each student's gain in greedy accuracy on the hard train split."""
    from soarlite import soar
    from soarlite.engine import OptimizerSpec
    from soarlite.inner import Student, accuracy, student_optimizer, train_students
    from soarlite.names import STUDENT, TEACHER, seed_for
    from soarlite.progress import Silent

    if TEACHER in engine.adapters:
        engine.delete_adapter(TEACHER)
    engine.load_adapter(TEACHER, str(Path(run) / "adapters" / TEACHER), OptimizerSpec(cfg.outer.lr, 10))
    pairs, _, _ = soar.sample_questions(engine, grader, cfg, world, seed_for(99, 1))
    o = cfg.outer
    students = []
    for k in range(o.g):
        name = f"teacher_data_{k}"
        engine.create_adapter(name, student_optimizer(cfg, cfg.inner.lr, cfg.inner.steps), copy_from=STUDENT)
        order = list(range(o.n))
        random.Random(k).shuffle(order)
        students.append(Student(name, k, pairs[k * o.n : (k + 1) * o.n], order))
    train_students(engine, grader, cfg, world, students, seed_for(5, 1), Silent())
    accs = accuracy(engine, grader, cfg, world, [s.name for s in students], world.hard_train)
    for s in students:
        engine.delete_adapter(s.name)
    return [acc - before for acc in accs]


if __name__ == "__main__":
    main()
