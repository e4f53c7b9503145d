"""How far the teacher's question mix can move in a run, given a dataset-level reward of known quality.

    python benchmarks/toy_teacher_signal.py --lrs 1e-3,3e-3,1e-2 [--noise 0.3] [--steps 12] [overrides...]

The teacher of the tiny recipe (toy world) is updated exactly as in an outer step (soar.sample_questions, g datasets of
n pairs, soar.update_teacher), but with a reward we control instead of the students' gain: reward_k = -(mean difficulty of dataset k) / 8 + Gaussian noise of sd --noise. With noise 0 this is a
perfect signal toward short chains (the world's stepping stones); the noise sets its quality. After every update it
samples 128 fresh teacher outputs and prints the share of levels <= 3. No student is trained: a run takes a minute or
two. It answers one question: is outer.lr large enough for the mix to move within the recipe's outer steps, if the
reward pointed the right way? (docs/toy-world.md, "Why the teacher's mix does not move".)
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
    ap.add_argument("--steps", type=int, default=0, help="teacher updates (default: the recipe's outer.steps)")
    ap.add_argument("--measure", type=int, default=128, help="teacher samples per measurement of the mix")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)

    from soarlite import soar
    from soarlite.engine import OptimizerSpec, SamplingParams
    from soarlite.names import TEACHER, seed_for
    from soarlite.session import load_config, session

    cfg = load_config(a.recipe, a.overrides, None)
    o = cfg.outer
    steps = a.steps or o.steps
    with session(cfg) as (world, engine, grader):
        difficulty = world.task.difficulty

        def short_share(seed: int) -> float:
            outs = engine.generate([world.teacher_prompt] * a.measure, [TEACHER] * a.measure,
                                   SamplingParams(o.temperature, o.max_new_tokens), seed)
            levels = [difficulty(qa.question) for qa in grader.parse_teacher([c.text for c in outs]) if qa]
            return sum(1 for lv in levels if lv is not None and lv <= 3) / max(1, len(levels))

        for lr in (float(x) for x in a.lrs.split(",")):
            if TEACHER in engine.adapters:
                engine.delete_adapter(TEACHER)
            engine.create_adapter(TEACHER, OptimizerSpec(lr, total_steps=steps, warmup_steps=o.warmup_steps))
            rng = random.Random(a.seed)
            mix = [short_share(seed_for(a.seed, "measure", -1))]
            for t in range(steps):
                pairs, rollouts, _ = soar.sample_questions(engine, grader, cfg, world, seed_for(a.seed, t))
                datasets = [pairs[k * o.n : (k + 1) * o.n] for k in range(o.g)]
                rewards = [-statistics.mean(difficulty(qa.question) or 9 for qa in d) / 8 + rng.gauss(0, a.noise)
                           for d in datasets]
                soar.update_teacher(engine, cfg, rollouts, rewards)
                mix.append(short_share(seed_for(a.seed, "measure", t)))
            print(f"outer.lr {lr:g}, noise {a.noise:g}: share of levels <= 3 before and after each of {steps} updates: "
                  + " ".join(f"{x:.2f}" for x in mix), flush=True)


if __name__ == "__main__":
    main()
