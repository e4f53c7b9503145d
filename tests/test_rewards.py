import gc
import json
import logging
import os
import time
from pathlib import Path

import pytest
from math_verify import parse, verify

from soarlite.grading import Grader
from soarlite.tasks.math import parse_teacher_output
from soarlite.tasks.math_answers import (
    MAX_CHARS,
    REWARD_CONTAINS_REFERENCE,
    REWARD_CORRECT,
    REWARD_NO_BOXED,
    REWARD_WRONG,
    is_correct,
    last_boxed,
    math_reward,
)

GRADED = Path(__file__).parents[2] / "shared" / "data" / "graded_solutions_dev.jsonl"
TOWER = r"\boxed{9^{9^{9^{9^{9}}}}}"  # sympy tries to evaluate it: a full math_verify timeout in-process
DEEP_BRACES = r"\boxed{" + "{" * 4000 + "1" + "}" * 4000 + "}"
DEEP_FRACS = r"\boxed{" + r"\frac{1}{" * 600 + "2" + "}" * 600 + "}"


@pytest.fixture(scope="module")
def graded_rows():
    if not GRADED.exists():
        pytest.skip(f"{GRADED} is absent")
    return {r["id"]: r for r in map(json.loads, GRADED.read_text().splitlines())}


@pytest.fixture(autouse=True)
def _quiet_math_verify():
    logging.getLogger("math_verify").setLevel(logging.ERROR)


# --- last_boxed


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("no answer here", None),
        (r"so \boxed{12}.", "12"),
        (r"\boxed{1} then \boxed{2}", "2"),
        (r"\boxed{\frac{1}{\sqrt{2}}}", r"\frac{1}{\sqrt{2}}"),
        (r"\boxed {3}", "3"),
        (r"\fbox{4}", "4"),
        (r"\boxed{\{1, 2\}}", r"\{1, 2\}"),  # escaped braces are not grouping
        (r"\boxed{}", ""),
        (r"\boxed{1} and then \boxed{\frac{1}{2}", None),  # the last one is unclosed
        (r"\boxed 5", None),
        (r"\boxedx{5}", None),
        (r"\boxed{\boxed{7}}", "7"),
    ],
)
def test_last_boxed(text, expected):
    assert last_boxed(text) == expected


# --- math_reward


def test_reward_constants_are_the_papers():
    assert (REWARD_CORRECT, REWARD_CONTAINS_REFERENCE, REWARD_WRONG, REWARD_NO_BOXED) == (120.0, 20.0, 10.0, 0.0)


@pytest.mark.parametrize(
    ("completion", "reference", "expected"),
    [
        (r"6 * 2 = 12, so the answer is \boxed{12}.", "12", 120.0),
        (r"The answer is \boxed{\dfrac{2}{4}}", r"\frac{1}{2}", 120.0),
        (r"\boxed{x = 12 \text{ or } x = 13}", "12", 20.0),  # holds the reference, does not verify
        (r"\boxed{120}", "12", 20.0),  # the paper's rule is a plain substring test
        (r"\boxed{13}", "12", 10.0),
        ("the answer is 12", "12", 0.0),  # right, but not boxed
        (r"\boxed{12", "12", 0.0),  # unclosed box: no boxed answer
    ],
)
def test_math_reward(completion, reference, expected):
    assert math_reward(completion, reference) == expected


def test_only_the_last_boxed_answer_counts():
    assert math_reward(r"first \boxed{12}, no wait: \boxed{13}", "12") == 10.0
    assert math_reward(r"first \boxed{13}, no wait: \boxed{12}", "12") == 120.0


# --- is_correct


@pytest.mark.parametrize(
    ("completion", "reference", "expected"),
    [
        (r"\boxed{17.5}", r"17.5\%", True),  # a dropped percent sign
        (r"\boxed{17.5\%}", "17.5", True),
        (r"\boxed{18}", r"17.5\%", False),
        (r"\boxed{1\,000}", "1000", True),  # math_verify alone reads 1\,000 as 1*000
        (r"\boxed{3110400}", r"3,\!110,\!400", True),
        (r"\boxed{\text{Evelyn}}", r"\text{evelyn}", True),
        (r"\boxed{A, C}", r"\text{A, C}", True),
        (r"\boxed{\text{A, D}}", r"\text{A, C}", False),
        (r"the max is \boxed{2} and the min is \boxed{1}", "1, 2", True),  # two boxes, two-part reference
        (r"the max is \boxed{2}", "1, 2", False),
        (r"\boxed{30^\circ}", "30", True),
        (r"\boxed{-12+15i}.$ Final Answer: The final answer is -12+15i. I hope", "-12 + 15i", True),
        ("so x equals $\\frac{1}{2}$", "0.5", True),  # no box: math_verify reads the text
    ],
)
def test_is_correct(completion, reference, expected):
    assert is_correct(completion, reference) is expected


def test_long_text_is_clipped_to_its_end():
    padding = "x" * (2 * MAX_CHARS)
    assert is_correct(padding + r"\boxed{5}", "5")
    assert math_reward(r"\boxed{5}" + padding, "5") == REWARD_NO_BOXED  # the box was cut off


@pytest.mark.parametrize(
    ("row_id", "expected"),
    [
        ("math-504", True),  # 3110400 for 3,\!110,\!400
        ("math-4", False),  # 3104400 for 3,\!110,\!400
        ("math-981", True),  # 9 for "9 \text{ multiples}"
        ("math-403", False),  # \text{Saturday} for \text{Friday}
        ("math-558", True),  # a tuple written with \left( \right)
        ("math-927", True),  # no box
        ("olympiadbench-502", True),  # no box
        ("math-835", True),  # plain math_verify takes "final answer is -12+15i." over the box and fails
        ("olympiadbench-976", True),  # 17.5 for 17.5%
        ("olympiadbench-956", True),  # \boxed{2} ... \boxed{1} for "1,2"
        ("math-250", False),
        ("olympiadbench-499", False),
        ("olympiadbench-298", False),
    ],
)
def test_is_correct_on_graded_rows(graded_rows, row_id, expected):
    row = graded_rows[row_id]
    assert row["is_correct"] is expected
    assert is_correct(row["solution_text"], row["answer"]) is expected


def test_is_correct_at_least_as_accurate_as_plain_math_verify(graded_rows):
    rows = list(graded_rows.values())
    plain = sum(verify(parse("$" + r["answer"] + "$"), parse(r["solution_text"])) == r["is_correct"] for r in rows)
    ours = sum(is_correct(r["solution_text"], r["answer"]) == r["is_correct"] for r in rows)
    assert len(rows) == 505
    assert ours >= plain
    assert ours / len(rows) >= 0.985  # 498/505 with math-verify 0.9.0; plain math_verify gets 495


# --- Grader


def _alive(pid: int) -> bool:
    """Whether pid is a process that is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _children() -> list[int]:
    """Processes whose parent is this one, zombies included."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[1]) == os.getpid():
            out.append(int(stat.parent.name))
    return out


def test_grader_matches_in_process_functions(graded_rows):
    rows = list(graded_rows.values())[:40]
    pairs = [(r["solution_text"], r["answer"]) for r in rows]
    texts = [
        r"<question>What is $2+3$?</question><answer>\boxed{5}</answer>",
        r"<question>Q</question><answer>5</answer>",
        "no tags",
    ]
    with Grader(workers=2, timeout_s=10) as g:
        assert g.correct(pairs) == [is_correct(c, a) for c, a in pairs]
        assert g.rewards(pairs) == [math_reward(c, a) for c, a in pairs]
        assert g.parse_teacher(texts) == [parse_teacher_output(t) for t in texts]
        assert g.rewards([]) == []
        assert g.timeouts == 0


def test_grader_survives_hostile_completions():
    normal = [(r"\boxed{12}", "12"), (r"\boxed{13}", "12"), ("12", "12")]
    batch = [(TOWER, "3"), normal[0], (DEEP_BRACES, "1"), normal[1], (DEEP_FRACS, "2"), normal[2]]
    huge = [
        ("{" * 100_000, "1"),
        (r"\boxed{" + "7" * 100_000 + "}", "7" * 100_000),  # clipped: the box is cut off
        ("}" * 100_000 + r"\boxed{1}", "1"),
        (r"\boxed{" + "7" * 4000 + "}", "7" * 4000),  # a 4000-digit integer fits and grades
        # Past 4300 digits Python refuses int(str) (sys.int_info.default_max_str_digits) and math_verify
        # falls back to strings that do not verify; plain integers are compared by their digits, so it is right.
        (r"\boxed{" + "7" * 8000 + "}", "7" * 8000),
    ]
    with Grader(workers=1, timeout_s=1) as g:
        g.rewards(normal)  # wait until the worker is up
        t0 = time.monotonic()
        out = g.rewards(batch)
        elapsed = time.monotonic() - t0
        assert elapsed < 15
        assert out[1::2] == [120.0, 10.0, 0.0]  # the well-formed items grade as in-process
        assert out[0] == 0.0  # the tower timed out: counted as no reward
        assert set(out[2::2]) <= {0.0, 10.0}  # timed out (0.0) or, on a fast machine, graded wrong
        assert g.timeouts >= 1
        # Huge inputs are clipped to MAX_CHARS before they are sent, so they are cheap.
        t0 = time.monotonic()
        assert g.rewards(huge) == [0.0, 0.0, 120.0, 120.0, 120.0]
        assert time.monotonic() - t0 < 5
        # A hostile teacher answer cannot hang the parser either.
        qa = g.parse_teacher([rf"<question>Q</question><answer>{DEEP_BRACES}</answer>", "<question>Q</question>"])
        assert qa == [None, None]


def test_grader_replaces_a_dead_worker():
    with Grader(workers=1, timeout_s=5) as g:
        assert g.rewards([(r"\boxed{1}", "1")]) == [120.0]
        victim = g._workers[0].proc
        victim.kill()
        victim.wait()
        assert g.rewards([(r"\boxed{1}", "1"), (r"\boxed{2}", "1")]) == [120.0, 10.0]


def test_grader_leaves_no_processes_behind():
    g = Grader(workers=1, timeout_s=1)
    assert g.rewards([(TOWER, "1"), (r"\boxed{1}", "1")]) == [0.0, 120.0]  # the worker killed and replaced
    pids = [w.proc.pid for w in g._procs]
    assert all(_alive(p) for p in pids)
    g.close()
    assert not any(_alive(p) for p in pids)
    with pytest.raises(RuntimeError, match="closed"):
        g.rewards([(r"\boxed{1}", "1")])

    g = Grader(workers=1)
    pids = [w.proc.pid for w in g._procs]
    del g
    gc.collect()
    assert not any(_alive(p) for p in pids)
    assert not set(pids) & set(_children())  # reaped, not zombies
