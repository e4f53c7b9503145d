"""The oracle probe: is this a world where SOAR's mechanism can work?

For the same student budget (steps x batch x group size of the recipe's inner loop), train a fresh student by RLOO on
  * hard_only: the hard train split (what SOAR's Hard-Only baseline does),
  * stones:    the world's true stepping stones (short chains, made by the world itself, not by a teacher),
  * none:      nothing (the untrained student),
then measure pass@1 and pass@32 (the unbiased estimator, 32 samples at the student temperature) on the hard test
split, with a 95% bootstrap interval over problems. A world is fair for SOAR when stones >> hard_only ~ none: the
hard problems give RLOO nothing to learn from, and easier problems the teacher could learn to write do.

Every arm uses the project's own machinery: the recipe's engine, the inner loop
(evaluation.summary.train_fresh_student -> soar.train_students -> rloo), the toy task's grader (grading.Grader),
scoring.sampled_counts and evaluation.passk.pass_at_k. It has its own layer just above evaluation (pyproject's import-linter
contract), not in soarlite.toy, which sits below the loop and must not import it.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

ARMS = ("none", "hard_only", "stones")


def summarise_counts(counts: list[int], samples: int, ks=(1, 32)) -> dict:
    from soarlite.evaluation.summary import bootstrap, per_problem

    out = {"solved": sum(c > 0 for c in counts), "problems": len(counts)}
    for k in ks:
        if k <= samples:
            per = per_problem(counts, samples, k)
            out[f"pass@{k}"] = sum(per) / len(per)
            out[f"pass@{k}_ci"] = bootstrap([per], seed=k)
    return out


def probe_config(world_dir: Path, overrides: list[str] = ()):
    """The tiny recipe's config pointed at a built world's model (its inner loop is what every arm runs)."""
    from soarlite.config import load_recipe

    world_dir = Path(world_dir)
    return load_recipe("tiny", [f"model.base={world_dir / 'model'}", f"data.hard_train={world_dir / 'hard_train.jsonl'}",
                                f"data.hard_test={world_dir / 'hard_test.jsonl'}", *overrides])


def run_probe(world_dir: Path, *, seeds=(0, 1, 2), steps: int = 18, samples: int = 32, arms=ARMS,
              overrides: list[str] = (), greedy_train: bool = True, log=print) -> dict:
    """Run the probe on a built world; returns {"settings", "runs": [{"arm", "seed", "counts", pass@k...}], "table"}.

    `steps` RLOO steps of the recipe's inner batch_size x group_size for every trained arm (18 = three inner loops of
    the tiny recipe, about what SOAR's final student and its Hard-Only baseline get)."""
    import torch

    from soarlite.data import load_problems
    from soarlite.engine import make_engine
    from soarlite.evaluation.summary import train_fresh_student
    from soarlite.names import seed_for
    from soarlite.progress import Silent
    from soarlite.scoring import sampled_counts
    from soarlite.session import make_grader
    from soarlite.soar import accuracy
    from soarlite.tasks import QA, World, load_task
    from soarlite.toy import stepping_stones

    world_dir = Path(world_dir)
    meta = json.loads((world_dir / "world.json").read_text())
    cfg = probe_config(world_dir, list(overrides))
    torch.use_deterministic_algorithms(True)
    task = load_task("toy", {})
    world = World(
        task=task,
        model_dir=str(world_dir / "model"),
        hard_train=load_problems(world_dir / "hard_train.jsonl"),
        hard_test=load_problems(world_dir / "hard_test.jsonl"),
        teacher_prompt=task.teacher_prompt,
        student_prompt=task.student_prompt,
    )
    engine = make_engine(cfg, world.model_dir)
    engine.create_adapter("probe_keep")  # the engine keeps one adapter at least; each arm's is deleted after it
    i = cfg.inner
    n_questions = steps * i.batch_size
    hard_questions = {p.problem for p in world.hard_train + world.hard_test}
    stone_levels = tuple(meta["settings"].get("stone_levels", (1, 2, 3)))
    runs = []
    t_all = time.time()
    with make_grader(cfg) as grader:
        for seed in seeds:
            eval_seed = seed_for("probe-eval", seed)  # the same sample stream for every arm of a seed
            for arm in arms:
                t0 = time.time()
                adapter = None
                if arm == "hard_only":
                    questions = [QA(p.problem, p.answer) for p in world.hard_train]
                elif arm == "stones":
                    questions = [QA(p.question, str(p.answer))
                                 for p in stepping_stones(seed, n_questions, stone_levels, exclude=hard_questions)]
                elif arm != "none":
                    raise ValueError(f"unknown probe arm {arm!r}; use {', '.join(ARMS)}")
                if arm != "none":
                    order = list(range(len(questions)))
                    random.Random(seed_for("probe-order", arm, seed)).shuffle(order)
                    adapter = train_fresh_student(engine, grader, cfg, world, f"probe_{arm}", questions, order, steps,
                                                  seed_for("probe-train", arm, seed), Silent())
                counts = sampled_counts(engine, grader, cfg, world, adapter, world.hard_test, samples, eval_seed)
                # what SOAR's teacher reward sees: greedy accuracy on the hard train split (Q_R is drawn from it)
                greedy = accuracy(engine, grader, cfg, world, [adapter], world.hard_train)[0] if greedy_train else None
                if adapter:
                    engine.delete_adapter(adapter)
                row = {"arm": arm, "seed": seed, "counts": counts, **summarise_counts(counts, samples),
                       "greedy_hard_train": greedy,
                       "seconds": round(time.time() - t0, 1)}
                runs.append(row)
                log(f"[probe] seed {seed} {arm:<9} pass@1 {row['pass@1']:.4f}  pass@32 {row.get('pass@32', float('nan')):.3f} "
                    f"{row.get('pass@32_ci')}  solved {row['solved']}/{row['problems']}  greedy(hard train) {greedy}  {row['seconds']}s")
    result = {
        "world": str(world_dir), "world_version": meta["version"], "world_seed": meta["seed"],
        "steps": steps, "batch_size": i.batch_size, "group_size": i.group_size, "optimizer": i.optimizer, "lr": i.lr,
        "kl_coef": i.kl_coef,
        "max_new_tokens": i.max_new_tokens, "samples": samples, "seeds": list(seeds), "stone_levels": list(stone_levels),
        "hard_train": len(world.hard_train), "hard_test": len(world.hard_test), "runs": runs,
        "seconds": round(time.time() - t_all, 1),
    }
    result["diffs"] = _diffs(runs, samples)
    result["table"] = table(result)
    return result


def _diffs(runs: list[dict], samples: int) -> list[dict]:
    """Per seed: stones - hard_only and hard_only - none in pass@32, with a paired bootstrap interval over problems."""
    from soarlite.evaluation.summary import bootstrap, per_problem

    k = min(32, samples)
    by = {(r["arm"], r["seed"]): per_problem(r["counts"], samples, k) for r in runs}
    out = []
    for seed in sorted({r["seed"] for r in runs}):
        for a, b in (("stones", "hard_only"), ("hard_only", "none"), ("stones", "none")):
            if (a, seed) in by and (b, seed) in by:
                x, y = by[(a, seed)], by[(b, seed)]
                out.append({"seed": seed, "diff": f"{a} - {b}", f"pass@{k}": sum(x) / len(x) - sum(y) / len(y),
                            "ci": bootstrap([x, y])})  # paired: the same problems drawn for both
    return out


def table(result: dict) -> str:
    lines = ["| arm | seed | pass@1 | pass@32 (95% CI) | solved | greedy acc, hard train |", "|---|---|---|---|---|---|"]
    for r in result["runs"]:
        ci = r.get("pass@32_ci")
        p32 = f"{r['pass@32']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "-"
        g = "-" if r.get("greedy_hard_train") is None else f"{r['greedy_hard_train']:.3f}"
        lines.append(f"| {r['arm']} | {r['seed']} | {r['pass@1']:.4f} | {p32} | {r['solved']}/{r['problems']} | {g} |")
    arms = sorted({r["arm"] for r in result["runs"]}, key=lambda a: ARMS.index(a) if a in ARMS else 9)
    for arm in arms:
        rs = [r for r in result["runs"] if r["arm"] == arm]
        if len(rs) > 1 and "pass@32" in rs[0]:
            lines.append(f"| {arm} | mean | {sum(r['pass@1'] for r in rs) / len(rs):.4f} | "
                         f"{sum(r['pass@32'] for r in rs) / len(rs):.3f} | | |")
    if result.get("diffs"):
        lines += ["", f"| seed | difference | pass@{min(32, result['samples'])} | paired 95% CI |", "|---|---|---|---|"]
        for d in result["diffs"]:
            key = next(k for k in d if k.startswith("pass@"))
            lines.append(f"| {d['seed']} | {d['diff']} | {d[key]:+.3f} | [{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}] |")
    return "\n".join(lines)
