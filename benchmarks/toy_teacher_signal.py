"""How far the teacher's question mix can move in a run, given a dataset-level reward of known quality.

    python benchmarks/toy_teacher_signal.py --lrs 1e-3,3e-3,1e-2 [--noise 0.3] [--steps 12] [overrides...]

The teacher of the tiny recipe (toy world) is updated exactly as in an outer step (soar.sample_questions, g datasets of
n pairs, soar.update_teacher), but with a reward we control instead of the students' gain:
reward_k = -signal * (mean difficulty of dataset k) / 8 + right * (share of its answers that are right) + Gaussian noise
of sd --noise. With noise 0 this is a perfect signal toward short chains (the world's stepping stones); the noise sets
its quality, and --signal 0 leaves pure noise (how far noisy updates alone carry the teacher). After every update it
samples 128 fresh teacher outputs and prints the share of levels <= 3 and the share of their answers that are right.
No student is trained: a run takes a minute or two. It answers two questions: is outer.lr large enough for the mix to
move within the recipe's outer steps, if the reward pointed the right way; and does the teacher still write right
answers after those steps? (docs/toy-world.md, "Why the teacher's mix does not move" and "A fragile teacher".)
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("overrides", nargs="*", help="recipe overrides, as in `soarlite run`")
    ap.add_argument("--recipe", default="tiny")
    ap.add_argument("--lrs", default="1e-3,3e-3,1e-2", help="teacher learning rates to try, one fresh teacher each")
    ap.add_argument("--noise", type=float, default=0.0, help="sd of the Gaussian noise added to each dataset's reward")
    ap.add_argument("--signal", type=float, default=1.0, help="weight of the difficulty term (0: a reward of noise)")
    ap.add_argument("--right", type=float, default=0.0, help="weight of a term for the share of the dataset's answers "
                    "that are right (0: the reward does not see correctness)")
    ap.add_argument("--steps", type=int, default=0, help="teacher updates (default: the recipe's outer.steps)")
    ap.add_argument("--measure", type=int, default=128, help="teacher samples per measurement of the mix")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sgd", action="store_true", help="plain SGD for the teacher instead of AdamW")
    a = ap.parse_args(argv)

    from soarlite import scoring, soar
    from soarlite.engine import OptimizerSpec, SamplingParams
    from soarlite.names import TEACHER, seed_for
    from soarlite.session import load_config, session

    cfg = load_config(a.recipe, a.overrides, None)
    o = cfg.outer
    steps = a.steps or o.steps
    with session(cfg) as (world, engine, grader):
        difficulty = world.task.difficulty

        def mix_and_right(seed: int) -> tuple[float, float]:
            outs = engine.generate([world.teacher_prompt] * a.measure, [TEACHER] * a.measure,
                                   SamplingParams(o.temperature, o.max_new_tokens), seed)
            pairs = [qa for qa in grader.parse_teacher([c.text for c in outs]) if qa]
            profile, _ = scoring.question_profiles(world.task, grader, [pairs])
            histogram = profile["difficulty"]  # by level, and "other" for questions outside the grammar
            short = sum(n for level, n in histogram.items() if level != "other" and int(level) <= 3)
            return short / max(1, sum(histogram.values())), profile["answers_right"] or 0.0

        for lr in (float(x) for x in a.lrs.split(",")):
            if TEACHER in engine.adapters:
                engine.delete_adapter(TEACHER)
            engine.create_adapter(TEACHER, OptimizerSpec(lr, total_steps=steps, warmup_steps=o.warmup_steps,
                                                            algorithm="sgd" if a.sgd else "adamw"))
            rng = random.Random(a.seed)
            mix = [mix_and_right(seed_for(a.seed, "measure", -1))]
            for t in range(steps):
                pairs, rollouts, _ = soar.sample_questions(engine, grader, cfg, world, seed_for(a.seed, t))
                datasets = [pairs[k * o.n : (k + 1) * o.n] for k in range(o.g)]
                right = ([p["answers_right"] or 0.0 for p in scoring.question_profiles(world.task, grader, datasets)[1]]
                         if a.right else [0.0] * len(datasets))
                rewards = [-a.signal * statistics.mean(difficulty(qa.question) or 9 for qa in d) / 8 + a.right * r
                           + rng.gauss(0, a.noise) for d, r in zip(datasets, right)]
                soar.update_teacher(engine, cfg, rollouts, rewards)
                mix.append(mix_and_right(seed_for(a.seed, "measure", t)))
                print(f"  update {t + 1}: levels <= 3 {mix[-1][0]:.2f}, answers right {mix[-1][1]:.2f}", flush=True)
            print(f"outer.lr {lr:g}, outer.kl_coef {o.kl_coef:g}, signal {a.signal:g}, right {a.right:g}, "
                  f"noise {a.noise:g}: before and after each of {steps} updates, share of levels <= 3: "
                  + " ".join(f"{x:.2f}" for x, _ in mix) + " | answers right: " + " ".join(f"{y:.2f}" for _, y in mix),
                  flush=True)


if __name__ == "__main__":
    main()
