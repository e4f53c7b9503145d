"""Agreement of two answer graders with human-checked labels: plain math_verify vs soarlite.tasks.math_answers.is_correct.

    python benchmarks/grader_accuracy.py [--data ../shared/data/graded_solutions_dev.jsonl] [--show]

Each row of the data has a model's `solution_text`, the reference `answer` and the label `is_correct`
(ProcessBench's `final_answer_correct`). Prints both accuracies, how many rows the two graders disagree
on, and with --show each disagreement and each row is_correct gets wrong.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from math_verify import parse, verify

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from soarlite.tasks.math_answers import is_correct

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "graded_solutions_dev.jsonl"


def plain_math_verify(solution: str, answer: str) -> bool:
    return verify(parse("$" + answer + "$"), parse(solution))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--show", action="store_true", help="print the disagreements and is_correct's errors")
    args = ap.parse_args()
    logging.getLogger("math_verify").setLevel(logging.ERROR)  # its per-timeout warnings are noise here

    rows = [json.loads(line) for line in args.data.read_text().splitlines() if line.strip()]
    t0 = time.perf_counter()
    plain = [plain_math_verify(r["solution_text"], r["answer"]) for r in rows]
    t1 = time.perf_counter()
    ours = [is_correct(r["solution_text"], r["answer"]) for r in rows]
    t2 = time.perf_counter()

    labels = [bool(r["is_correct"]) for r in rows]
    n = len(rows)
    acc_plain = sum(p == y for p, y in zip(plain, labels)) / n
    acc_ours = sum(o == y for o, y in zip(ours, labels)) / n
    disagree = [i for i in range(n) if plain[i] != ours[i]]
    print(f"rows: {n} ({args.data})")
    print(f"plain math_verify: accuracy {acc_plain:.4f} ({round(acc_plain * n)}/{n}), {t1 - t0:.1f} s")
    print(f"is_correct:        accuracy {acc_ours:.4f} ({round(acc_ours * n)}/{n}), {t2 - t1:.1f} s")
    print(f"disagreements: {len(disagree)}")
    if args.show:
        for i in disagree:
            r = rows[i]
            print(f"  differ {r['id']}: label={labels[i]} plain={plain[i]} ours={ours[i]} answer={r['answer']!r}")
        for i in range(n):
            if ours[i] != labels[i]:
                r = rows[i]
                print(
                    f"  wrong  {r['id']}: label={labels[i]} ours={ours[i]} answer={r['answer']!r} "
                    f"tail={r['solution_text'][-120:]!r}"
                )


if __name__ == "__main__":
    main()
