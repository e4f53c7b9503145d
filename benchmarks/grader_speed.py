"""Grading speed on rollouts of question groups: the grader pool with its per-batch keys, against the same pool without
them and against grading one item at a time in this process; and a check that all three agree item by item.

    python benchmarks/grader_speed.py [--data ../shared/data/graded_solutions_dev.jsonl] [--groups 64]
                                      [--workers 0] [--out grader_speed.json]

The rollouts are built from the real model solutions of the graded file (505 rows, 469 problems): a group is one
problem's reference answer and 32 rollouts, as an RLOO group would have them. Its first rollouts are the problem's
own solutions as written; the others are real solution texts (drawn from the whole file: real lengths and LaTeX)
whose last boxed answer is replaced by one drawn from the group's answers: the reference as written (35%), the
problem's own model answer, right or wrong (15%), three wrong answers other models gave elsewhere (20%, 10%, 10%),
or no boxed answer at all, a truncated rollout (10%). So a group has a handful of distinct final answers, as a
student's 32 samples of one question do. The real rows as they are (505 distinct items) are timed too: the case
where the keys cannot help.

Every path grades the whole set in one `rewards` call (one call per inner step, as soarlite.soar does), after a
warm-up that waits for the workers. Results must be identical item by item to `math_reward` / `is_correct` run in
this process on each item alone; the script exits 1 if they are not.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from soarlite.grading import Grader, auto_workers
from soarlite.tasks.math_answers import _BOXED_RE, is_correct, last_boxed, math_reward

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "graded_solutions_dev.jsonl"
GROUP = 32  # rollouts per question (inner.group_size)


def _with_answer(text: str, answer: str | None) -> str:
    """`text` with its last boxed content replaced by `answer`; None: cut before the last box (a truncated rollout)."""
    matches = list(_BOXED_RE.finditer(text))
    if not matches:
        return text if answer is None else text + f"\n\nThe answer is $\\boxed{{{answer}}}$."
    m = matches[-1]
    if answer is None:
        return text[: m.start()]
    content = last_boxed(text)
    end = m.end() + len(content) if content is not None else len(text)
    return text[: m.end()] + answer + text[end:]


def build_groups(rows: list[dict], groups: int, seed: int = 0) -> list[tuple[str, str]]:
    rnd = random.Random(seed)
    by_problem: dict[str, list[dict]] = {}
    for r in rows:
        by_problem.setdefault(r["problem"], []).append(r)
    problems = rnd.sample(sorted(by_problem), groups)
    preds = sorted({r["pred_boxed"] for r in rows if r["pred_boxed"]})
    texts = [r["solution_text"] for r in rows]
    pairs = []
    for p in problems:
        own = by_problem[p]
        ref = own[0]["answer"]
        wrong = [a for a in rnd.sample(preds, 8) if a.strip() != ref.strip()][:3]
        choices = [ref, own[0]["pred_boxed"] or ref, *wrong, None]
        weights = [0.35, 0.15, 0.2, 0.1, 0.1, 0.1]
        group = [(r["solution_text"], ref) for r in own]
        while len(group) < GROUP:
            answer = rnd.choices(choices, weights)[0]
            group.append((_with_answer(rnd.choice(texts), answer), ref))
        pairs += group
    return pairs


def _cpu_s(grader: Grader | None) -> float:
    """CPU seconds used so far by this process and the grader's workers (user + system)."""
    total = time.process_time()
    for w in grader._procs if grader is not None else ():
        fields = Path(f"/proc/{w.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def timed(fn, pairs, grader: Grader | None = None) -> tuple[list, float, float]:
    """fn(pairs), its wall-clock seconds and the CPU seconds it cost (this process and the grader's workers)."""
    c0, t0 = _cpu_s(grader), time.perf_counter()
    out = fn(pairs)
    return out, time.perf_counter() - t0, _cpu_s(grader) - c0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--groups", type=int, default=64, help="question groups of 32 rollouts (64: 2,048 items)")
    ap.add_argument("--workers", type=int, default=0, help="grader processes; 0 = one per core")
    ap.add_argument("--out", type=Path, default=Path("grader_speed.json"))
    args = ap.parse_args()
    logging.getLogger("math_verify").setLevel(logging.ERROR)

    rows = [json.loads(line) for line in args.data.read_text().splitlines() if line.strip()]
    sets = {
        "rollouts of question groups": build_groups(rows, args.groups),
        "real rows as they are (all distinct)": [(r["solution_text"], r["answer"]) for r in rows],
    }
    workers = args.workers or auto_workers()
    load = os.getloadavg()
    report: dict = {"load average before": load, "machine": f"{platform.machine()}, {os.cpu_count()} CPUs visible, {auto_workers()} usable",
                    "python": platform.python_version(), "workers": workers, "sets": {}}
    ok = True
    with Grader(workers=workers, timeout_s=5.0, cache=False) as old, Grader(workers=workers, timeout_s=5.0) as new:
        # Workers up, the task built, and each worker past sympy's first-use costs (50-200 ms per kind of
        # expression), as they are after the first step of a run: a few kinds, none from the data.
        kinds = [r"x+{i}", r"\frac{{{i}}}{{7}}", r"\sqrt{{{i}}}", r"\left[{i}, 9\right)", r"({i}, 2)", r"{i}\%",
                 r"\text{{{i}}}", r"y^{i}-1"]
        warm = [(rf"so \boxed{{{k.format(i=i)}}}", k.format(i=i + 1)) for k in kinds for i in range(1, 5)]
        for g in (old, new):
            g.rewards(warm), g.correct(warm)
        for name, pairs in sets.items():
            alone, t_alone, c_alone = timed(lambda ps: [math_reward(c, r) for c, r in ps], pairs)
            got_old, t_old, c_old = timed(old.rewards, pairs, old)
            before = dict(new.stats)
            got_new, t_new, c_new = timed(new.rewards, pairs, new)
            graded = new.stats["graded"] - before["graded"]
            known = new.stats["known"] - before["known"]
            correct_alone = [is_correct(c, r) for c, r in pairs]
            correct_new = new.correct(pairs)
            same = got_new == alone and got_old == alone and correct_new == correct_alone
            same = same and all(type(a) is type(b) for a, b in zip(got_new + correct_new, alone + correct_alone))
            ok &= same
            n = len(pairs)
            answers = {(r, (last_boxed(c) or "").strip()) for c, r in pairs}
            report["sets"][name] = {
                "items": n,
                "distinct (reference, last boxed answer)": len(answers),
                "sent to workers": graded,
                "decided without math_verify": known,
                "in-process one by one items/s": n / t_alone,
                "pool without keys items/s": n / t_old,
                "pool with keys items/s": n / t_new,
                "CPU seconds: one by one, pool without keys, pool with keys": [c_alone, c_old, c_new],
                "pool with keys items per CPU second": n / c_new,
                "speed-up vs one by one": t_alone / t_new,
                "speed-up vs pool without keys": t_old / t_new,
                "identical to grading each alone": same,
                "right (is_correct)": sum(correct_alone),
            }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"{report['machine']}; pool of {workers} workers; load average before {load[0]:.1f}; {args.out}")
    print("| items | n | distinct answers | to workers | decided by key | one by one | pool, no keys | pool, keys "
          "| x one by one | x no keys | identical |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, s in report["sets"].items():
        print(f"| {name} | {s['items']} | {s['distinct (reference, last boxed answer)']} | {s['sent to workers']} "
              f"| {s['decided without math_verify']} | {s['in-process one by one items/s']:.0f}/s "
              f"| {s['pool without keys items/s']:.0f}/s | {s['pool with keys items/s']:.0f}/s "
              f"| {s['speed-up vs one by one']:.1f} | {s['speed-up vs pool without keys']:.1f} "
              f"| {'yes' if s['identical to grading each alone'] else 'NO'} |")
    print("\nCPU seconds (this process + workers): one by one / pool without keys / pool with keys")
    for name, s in report["sets"].items():
        cpu = s["CPU seconds: one by one, pool without keys, pool with keys"]
        print(f"  {name}: {cpu[0]:.2f} / {cpu[1]:.2f} / {cpu[2]:.2f}"
              f"  ({s['pool with keys items per CPU second']:.0f} items per CPU second with keys)")
    if not ok:
        sys.exit("results differ from grading each item alone")


if __name__ == "__main__":
    main()
