"""The end of a run: how the students do on the held-out hard test split, and against Hard-Only.

summary.json keeps the pass@1 fields it always had (baseline_hard_acc, final_hard_acc, hard_only_acc) and adds
`pass_at_k`: for the untrained, SOAR's final and the Hard-Only student, the per-problem counts of right answers, pass@k
for k = 1 and k = eval.samples (the unbiased estimator), a 95% bootstrap interval over problems, and the paired
bootstrap interval of SOAR - Hard-Only. Steps in summary.json (`promotion_steps`) count from 0, as metrics.jsonl's
`step` does (`step_numbering` says so); the screen and the tables count from 1.
"""

from __future__ import annotations

import dataclasses
import random

from soarlite import checkpoint
from soarlite.config import Config
from soarlite.evaluation.passk import pass_at_k
from soarlite.names import seed_for
from soarlite.scoring import sampled_counts
from soarlite.soar import Student, inner_lr, student_optimizer, train_students
from soarlite.tasks import QA

HARD_ONLY = "hard_only"


def pass_at_1(engine, grader, cfg: Config, world, adapter: str | None, problems, samples: int, seed: int) -> float:
    """Mean correctness of `samples` answers per problem at the student temperature (the unbiased pass@1)."""
    return sum(sampled_counts(engine, grader, cfg, world, adapter, problems, samples, seed)) / (len(problems) * samples)


def hard_only_steps(cfg: Config, promotions: int) -> int:
    """The student budget of SOAR's final baseline: one inner loop per promotion (at least one inner loop)."""
    return cfg.inner.steps * max(1, promotions)


def train_fresh_student(engine, grader, cfg: Config, world, name: str, questions: list[QA], order: list[int], steps: int,
                        seed: int, report, loops: int = 1) -> str:
    """A new student adapter (the base model) trained by the inner loop for `steps` RLOO steps on `questions`, taken in
    `order` (cycled). The one way every baseline trains, so that a step costs the same everywhere. With `loops` > 1
    the steps are split into that many inner loops, each with a fresh optimiser (inner.optimizer) at
    `inner_lr(cfg, loop)`: the schedule SOAR's final student had after loops - 1 promotions."""
    if loops > 1 and steps % loops:
        raise ValueError(f"{steps} steps do not split into {loops} inner loops")
    per = steps // loops
    budget = dataclasses.replace(cfg, inner=dataclasses.replace(cfg.inner, steps=per))
    previous = None
    for loop in range(loops):
        # each loop a copy of the last with a fresh optimiser, as a promoted student's copies get; the last is `name`
        current = name if loop == loops - 1 else f"{name}_{loop}"
        engine.create_adapter(current, student_optimizer(cfg, inner_lr(cfg, loop), per), copy_from=previous)
        if previous is not None:
            engine.delete_adapter(previous)
        previous = current
        turn = (loop * per * cfg.inner.batch_size) % max(1, len(order))  # go on through the order, not back to its start
        student = Student(current, 0, questions, order[turn:] + order[:turn])
        train_students(engine, grader, budget, world, [student], seed_for(seed, "loop", loop) if loop else seed, report)
    return name


def train_hard_only(engine, grader, cfg: Config, world, steps: int, report, loops: int = 1) -> str:
    """Hard-Only: RLOO straight on the hard train split, with the inner loop's settings, for `steps` steps in `loops`
    inner loops (train_fresh_student)."""
    questions = [QA(p.problem, p.answer) for p in world.hard_train]
    order = list(range(len(questions)))
    random.Random(seed_for(cfg.seed, "hard_only")).shuffle(order)
    return train_fresh_student(engine, grader, cfg, world, HARD_ONLY, questions, order, steps, seed_for(cfg.seed, "hard_only"), report,
                               loops)


EVAL_SEED = 12345  # the same samples stream for every adapter, so differences are the adapters'
BOOTSTRAP = {"resamples": 2000, "seed": 0, "level": 0.95}
STUDENTS = {"untrained": "untrained student", "soar": "SOAR's final student", "hard_only": "Hard-Only student"}
STEP_NUMBERING = "0-based in files (metrics.jsonl step, promotion_steps); the screen and tables show step + 1"


def per_problem(counts: list[int], n: int, k: int) -> list[float]:
    return [pass_at_k(n, c, k) for c in counts]


def _quantiles(values: list[float], level: float) -> list[float]:
    values = sorted(values)
    lo = int((1 - level) / 2 * (len(values) - 1) + 0.5)
    hi = int((1 + level) / 2 * (len(values) - 1) + 0.5)
    return [values[lo], values[hi]]


def bootstrap(columns: list[list[float]], resamples: int = BOOTSTRAP["resamples"], seed: int = BOOTSTRAP["seed"],
              level: float = BOOTSTRAP["level"]) -> list[float]:
    """Percentile bootstrap interval over problems of the mean of columns[0] (one value per problem), or, given two
    columns, of the paired difference mean(columns[0] - columns[1]): the same problems are drawn for both."""
    values = columns[0] if len(columns) == 1 else [a - b for a, b in zip(columns[0], columns[1])]
    n = len(values)
    if n == 0:
        return [0.0, 0.0]
    rng = random.Random(seed)
    means = [sum(values[rng.randrange(n)] for _ in range(n)) / n for _ in range(resamples)]
    return _quantiles(means, level)


def pass_at_k_block(counts: dict[str, list[int]], samples: int, problems: int) -> dict:
    """summary.json's `pass_at_k`: per student its counts, pass@k and interval, and SOAR - Hard-Only per k."""
    ks = sorted({1, samples})
    block = {"samples": samples, "problems": problems, "ks": ks, "eval_seed": EVAL_SEED, "bootstrap": dict(BOOTSTRAP),
             "students": {}, "soar_minus_hard_only": {}}
    for who, c in counts.items():
        entry = {"label": STUDENTS[who], "counts": c, "correct": sum(c), "solved": sum(x > 0 for x in c),
                 "pass_at_k": {}, "interval": {}}
        for k in ks:
            col = per_problem(c, samples, k)
            entry["pass_at_k"][str(k)] = sum(col) / len(col)
            entry["interval"][str(k)] = bootstrap([col])
        block["students"][who] = entry
    if "soar" in counts and "hard_only" in counts:
        for k in ks:
            a, b = per_problem(counts["soar"], samples, k), per_problem(counts["hard_only"], samples, k)
            block["soar_minus_hard_only"][str(k)] = {"difference": (sum(a) - sum(b)) / len(a),
                                                     "interval": bootstrap([a, b])}
    return block


def summarise(cfg: Config, world, engine, grader, run_dir, state, report) -> dict:
    metrics = checkpoint.read_jsonl(run_dir / "metrics.jsonl")
    summary = {
        "recipe": cfg.name,
        "outer_steps": len(metrics),
        "promotions": len(state.promotions),
        "promotion_steps": state.promotions,
        "step_numbering": STEP_NUMBERING,
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
        n, m = cfg.eval.samples, len(world.hard_test)
        counts: dict[str, list[int]] = {}
        report.phase(f"untrained student answers the hard test problems ({m} problems x {n} samples)")
        counts["untrained"] = sampled_counts(engine, grader, cfg, world, None, world.hard_test, n, EVAL_SEED)
        report.phase(f"SOAR's final student answers the hard test problems ({m} x {n})")
        counts["soar"] = sampled_counts(engine, grader, cfg, world, "student", world.hard_test, n, EVAL_SEED)
        if cfg.eval.hard_only:
            steps = hard_only_steps(cfg, len(state.promotions))
            report.phase(f"Hard-Only student trains on the hard train problems ({steps} RLOO steps, the same budget)")
            name = train_hard_only(engine, grader, cfg, world, steps, report, max(1, len(state.promotions)))
            report.phase(f"Hard-Only student answers the hard test problems ({m} x {n})")
            counts["hard_only"] = sampled_counts(engine, grader, cfg, world, name, world.hard_test, n, EVAL_SEED)
            summary["hard_only_steps"] = steps
            engine.delete_adapter(name)
        report.phase("bootstrap intervals")
        for who, key in (("untrained", "baseline_hard_acc"), ("soar", "final_hard_acc"), ("hard_only", "hard_only_acc")):
            if who in counts:
                summary[key] = sum(counts[who]) / (m * n)
        summary["pass_at_k"] = pass_at_k_block(counts, n, m)
    summary["wall_s"] = state.wall_s  # the outer steps' own time, summed over every session of the run
    summary["wall_s_means"] = "the outer steps' time, summed over sessions (no world build, model load or summary)"
    return summary


# ------------------------------------------------------------------------------------------------ the table
def _p(x: float) -> str:
    """A probability with four decimals (0.0039, 0.1875), next to its count; exactly 0 as 0."""
    return "0" if x == 0 else f"{x:.4f}"


def _signed(x: float) -> str:
    return "+" + _p(x) if x > 0 else ("-" + _p(-x) if x < 0 else "0")


def _interval(iv, signed: bool = False) -> str:
    f = _signed if signed else _p
    return f"[{f(iv[0])}, {f(iv[1])}]"


def _secs(s: float | None) -> str:
    if s is None:
        return "-"
    s = int(round(s))
    return f"{s // 3600}h {s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m {s % 60:02d}s"


def summary_rows(summary: dict, process_s: float | None = None) -> list[tuple[str, str, str, str]]:
    """The end-of-run table, as the README shows it: (what, value, k of N, 95% interval). Steps count from 1."""
    rows: list[tuple[str, str, str, str]] = []
    first, last = summary.get("teacher_valid_rate_first"), summary.get("teacher_valid_rate_last")
    if first is not None:
        rows.append(("teacher valid outputs, first / last step", f"{first:.2f} / {last:.2f}", "", ""))
    steps = summary.get("promotion_steps") or []
    where = f" (outer steps {', '.join(str(t + 1) for t in steps)})" if steps else ""
    rows.append(("promotions", f"{summary.get('promotions', 0)}{where}", f"of {summary.get('outer_steps', 0)} steps", ""))
    block = summary.get("pass_at_k")
    if block:
        n, m = block["samples"], block["problems"]
        hard_only = f" ({summary.get('hard_only_steps')} RLOO steps, SOAR's budget)"
        for k in block["ks"]:
            for who, entry in block["students"].items():
                what = f"pass@{k} on hard test, {entry['label']}"
                if who == "hard_only":
                    what += hard_only
                if k == 1:
                    of = f"{entry['correct']} of {m * n} ({m} problems x {n} samples)"
                else:
                    of = f"{entry['solved']} of {m} problems solved in {n} tries"
                rows.append((what, _p(entry["pass_at_k"][str(k)]), of, _interval(entry["interval"][str(k)])))
            diff = block["soar_minus_hard_only"].get(str(k))
            if diff:
                rows.append((f"pass@{k}: SOAR - Hard-Only (paired)", _signed(diff["difference"]), "",
                             _interval(diff["interval"], signed=True)))
    elif summary.get("final_hard_acc") is not None:  # a summary from before pass_at_k
        for key, what in (("baseline_hard_acc", "untrained student"), ("final_hard_acc", "SOAR's final student"),
                          ("hard_only_acc", "Hard-Only student")):
            if summary.get(key) is not None:
                rows.append((f"pass@1 on the hard test split, {what}", _p(summary[key]), "", ""))
    rows.append(("time in outer steps (all sessions)", _secs(summary.get("wall_s")), "", ""))
    if process_s is not None:
        rows.append(("time of this process (all phases)", _secs(process_s), "", ""))
    return rows


def summary_table(summary: dict, process_s: float | None = None) -> str:
    """The end-of-run table as aligned plain text (a terminal, a log file and a copy-paste all read it)."""
    rows = [("what", "value", "k of N", "95% interval")] + summary_rows(summary, process_s)
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def summary_markdown(summary: dict) -> str:
    """The same table in Markdown (report.md, the model card)."""
    out = ["| what | value | k of N | 95% interval |", "|---|---|---|---|"]
    out += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in summary_rows(summary)]
    return "\n".join(out)
