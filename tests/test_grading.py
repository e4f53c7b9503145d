"""The grader's per-batch keys and short-cuts (soarlite.grading, math_answers.grading_key / known_result): results
identical to grading each item alone, repeated items graded once, and the pool sized to the cores."""

import json
import logging
import os
import random
from pathlib import Path

import pytest

from soarlite.config import RecipeError, load_recipe
from soarlite.grading import Grader, auto_workers, resolve_workers
from soarlite.tasks import load_task
from soarlite.tasks.math import MathTask
from soarlite.tasks.math_answers import grading_key, is_correct, known_result, math_reward

GRADED = Path(__file__).parents[2] / "shared" / "data" / "graded_solutions_dev.jsonl"
TOWER = r"\boxed{9^{9^{9^{9^{9}}}}}"  # sympy tries to evaluate it: a full math_verify timeout in-process


@pytest.fixture(autouse=True)
def _quiet_math_verify():
    logging.getLogger("math_verify").setLevel(logging.ERROR)


@pytest.fixture(scope="module")
def grader():
    with Grader(workers=2, timeout_s=10) as g:
        yield g


# (completion, reference, key kind, known reward, known is_correct, reward, is_correct): the known values are what
# the key decides without math_verify (None: graded), the last two what grading the item alone gives.
CASES = [
    (r"so \boxed{12}.", "12", "one", 120.0, True, 120.0, True),
    (r"\boxed{ 012 }", "12", "one", 120.0, True, 120.0, True),  # the same integer
    (r"\boxed{13}", "12", "one", 10.0, False, 10.0, False),  # integers that differ: provably wrong
    (r"\boxed{\dfrac{2}{4}}", r"\frac{1}{2}", "one", 120.0, True, 120.0, True),  # the same rational
    (r"\boxed{-\frac{6}{3}}", "-2", "one", 120.0, True, 120.0, True),
    (r"\boxed{\frac{1}{3}}", "3", "one", 20.0, False, 20.0, False),  # rationals that differ
    (r"\boxed{\frac{3}{4}}", r"\frac{3}{5}", "one", 10.0, False, 10.0, False),
    (r"\boxed{123}", "12", "one", 20.0, False, 20.0, False),  # wrong, but contains the reference
    (r"\boxed{-5}", "5", "one", 20.0, False, 20.0, False),
    (r"\boxed{12}", " 12 ", "one", 120.0, True, 120.0, True),
    (r"\boxed{0.5}", "0.5", "one", 120.0, True, 120.0, True),  # the same literal, written alike
    (r"\boxed{\frac{1}{2}}", r"\frac{1}{2}", "one", 120.0, True, 120.0, True),
    (r"\boxed{2\sqrt{3}}", r"2\sqrt{3}", "one", 120.0, True, 120.0, True),
    (r"\boxed{0.5}", r"\frac{1}{2}", "one", None, None, 120.0, True),  # a decimal and a fraction: graded
    (r"\boxed{\frac12}", r"\frac{1}{2}", "one", None, None, 120.0, True),
    (r"\boxed{0.50}", "0.5", "one", None, None, 120.0, True),  # decimals are only short-cut when identical
    (r"\boxed{\frac{0}{0}}", r"\frac{0}{0}", "one", None, None, 120.0, True),  # nan: left to math_verify
    (r"\boxed{17.5\%}", "17.5", "one", None, None, 120.0, True),  # percent
    (r"\boxed{50}", r"50\%", "one", None, None, 120.0, True),
    (r"\boxed{\text{Evelyn}}", "Evelyn", "one", 120.0, True, 120.0, True),  # the same words
    (r"\boxed{\text{ A, C }}", "A, C", "one", 120.0, True, 120.0, True),
    (r"\boxed{\text{Bob}}", "Evelyn", "one", None, None, 10.0, False),
    (r"\boxed{2} and then \boxed{1}", "1, 2", "all", None, None, 120.0, True),  # multi-part: every box in the key
    (r"\boxed{3} and then \boxed{1}", "1, 2", "all", None, None, 10.0, False),
    (r"\boxed{7} and then \boxed{12}", "12", "all", None, None, 120.0, True),
    ("so the answer is 12", "12", "text", 0.0, None, 0.0, True),  # no box: math_verify reads the whole text
    (r"\boxed{1} then \boxed{12", "12", "text", 0.0, None, 0.0, False),  # the last box is unclosed
    ("no answer", "12", "text", 0.0, None, 0.0, False),
    (r"\boxed{" + "7" * 40 + "}", "7" * 40, "one", None, None, 120.0, True),  # too long for the integer rule
    # Past 4300 digits math_verify falls back to strings; is_correct compares plain integers by their digits.
    (r"\boxed{" + "7" * 5000 + "}", "7" * 5000, "one", None, None, 120.0, True),
    (r"\boxed{+007}", "7", "one", None, None, 120.0, True),
    (r"\boxed{-0}", "0", "one", 120.0, True, 120.0, True),
    (TOWER, "3", "one", None, None, 10.0, False),  # graded (and, in a worker, timed out: see below)
]


@pytest.mark.parametrize(("completion", "reference", "kind", "known_reward", "known_correct", "reward", "correct"),
                         [c for c in CASES if c[0] != TOWER])
def test_keys_and_short_cuts_on_edge_cases(completion, reference, kind, known_reward, known_correct, reward, correct):
    key = grading_key(completion, reference)
    assert key[0] == kind
    assert known_result("reward", key) == known_reward
    assert known_result("is_correct", key) is known_correct
    assert math_reward(completion, reference) == reward
    assert is_correct(completion, reference) is correct


def test_rational_short_cuts_equal_grading_alone():
    rnd = random.Random(0)
    forms = ["{a}", "-{a}", "0{a}", r"\frac{{{a}}}{{{b}}}", r"-\dfrac{{{a}}}{{{b}}}", r"\tfrac{{{a}}}{{0{b}}}"]
    values = [rnd.choice(forms).format(a=rnd.randint(0, 12), b=rnd.randint(1, 6)) for _ in range(120)]
    pairs = [(rf"so \boxed{{{rnd.choice(values)}}}", rnd.choice(values)) for _ in range(150)]
    pairs += [(rf"\boxed{{{v}}}", v) for v in values[:30]]
    decided = 0
    for completion, reference in pairs:
        key = grading_key(completion, reference)
        for method, alone in (("reward", math_reward), ("is_correct", is_correct)):
            value = known_result(method, key)
            assert value is not None  # every pair of exact rationals is decided by its key
            assert value == alone(completion, reference) and type(value) is type(alone(completion, reference))
            decided += 1
    assert decided == 360


def test_grader_with_keys_equals_grading_alone_on_edge_cases(grader):
    pairs = [(c, r) for c, r, *_ in CASES if c != TOWER] * 2
    assert grader.rewards(pairs) == [math_reward(c, r) for c, r in pairs]
    assert grader.correct(pairs) == [is_correct(c, r) for c, r in pairs]


def test_keys_on_graded_rows(graded_rows, grader):
    """Every real row: the key's known result equals grading alone, and the pool with keys equals grading alone."""
    pairs = [(r["solution_text"], r["answer"]) for r in graded_rows]
    keys = [grading_key(c, a) for c, a in pairs]
    assert [k[0] for k in keys].count("text") == 57  # no box: 57 rows
    assert [k[0] for k in keys].count("all") == 8  # several boxes
    rewards = [math_reward(c, a) for c, a in pairs]
    correct = [is_correct(c, a) for c, a in pairs]
    known_r = [known_result("reward", k) for k in keys]
    known_c = [known_result("is_correct", k) for k in keys]
    assert sum(v is not None for v in known_r) == 57 + 285  # no box: reward 0; one box: the rules above
    assert sum(v is not None for v in known_c) == 285
    assert all(k is None or k == v for k, v in zip(known_r, rewards))
    assert all(k is None or k is v for k, v in zip(known_c, correct))
    before = dict(grader.stats)
    assert grader.rewards(pairs) == rewards
    assert grader.stats["graded"] - before["graded"] == 162  # 163 rows to grade, one of them repeats a key
    assert grader.correct(pairs) == correct


@pytest.fixture(scope="module")
def graded_rows():
    if not GRADED.exists():
        pytest.skip(f"{GRADED} is absent")
    return [json.loads(line) for line in GRADED.read_text().splitlines()]


def test_repeated_answers_are_graded_once(grader):
    # One question group: 32 rollouts, 4 distinct final answers (two decided by the key), 2 truncated rollouts.
    group = ([(rf"First $x=3$, so \boxed{{\dfrac{{1}}{{2}}}}.{i}", r"\frac{1}{2}") for i in range(12)]
             + [(rf"Try {i}: \boxed{{0.5}}", r"\frac{1}{2}") for i in range(10)]
             + [(r"\boxed{\frac{1}{2}}", r"\frac{1}{2}")] * 5
             + [(r"\boxed{7}", r"\frac{1}{2}")] * 3
             + [("cut off before the", r"\frac{1}{2}")] * 2)
    before = dict(grader.stats)
    assert grader.rewards(group) == [120.0] * 27 + [10.0] * 3 + [0.0] * 2
    assert grader.stats["items"] - before["items"] == 32
    assert grader.stats["known"] - before["known"] == 4  # \dfrac{1}{2}, \frac{1}{2}, 7 and the truncated rollouts' 0
    assert grader.stats["graded"] - before["graded"] == 1  # 0.5: a decimal against a fraction
    before = dict(grader.stats)
    assert grader.correct(group) == [True] * 27 + [False] * 5
    # is_correct of a truncated rollout reads the text: graded, once for the two identical ones
    assert grader.stats["graded"] - before["graded"] == 2


def test_without_keys_every_item_is_graded():
    pairs = [(r"\boxed{12}", "12")] * 5
    with Grader(workers=1, timeout_s=5, cache=False) as g:
        assert g.rewards(pairs) == [120.0] * 5
        assert g.stats == {"items": 5, "graded": 5, "known": 0}


def test_hostile_items_still_time_out_and_count_as_wrong():
    normal = [(r"\boxed{12}", "12"), (r"\boxed{\dfrac{1}{2}}", r"\frac{1}{2}")]
    with Grader(workers=1, timeout_s=1) as g:
        g.rewards(normal)  # wait until the worker is up
        out = g.rewards([(TOWER, "3"), normal[0], (TOWER, "3"), normal[1], ("so " + TOWER, "3")])
        assert out == [0.0, 120.0, 0.0, 120.0, 0.0]  # timed out: no reward, the copy too
        assert g.timeouts == 1  # the three towers share one key: graded (and killed) once
        assert g.correct([(TOWER, "3")] * 3) == [False] * 3
        assert g.timeouts == 2


class _OwnReward(MathTask):
    """A task that reuses the math prompts but grades its own way: the math keys must not apply."""

    def reward(self, completion: str, reference: str) -> float:
        return 1.0


def test_a_subclass_with_its_own_grading_gets_no_math_keys():
    assert MathTask().grading_key(r"\boxed{1}", "1") == ("one", "1", "1")
    assert _OwnReward().grading_key(r"\boxed{1}", "1") is None


def test_keys_follow_the_tasks_grading():
    assert load_task("toy", {}).grading_key(r"\boxed{1}", "1") == ("one", "1", "1")  # the toy task grades as math
    example = load_task(str(Path(__file__).parents[1] / "examples" / "digit_sum_task.py") + ":DigitSumTask",
                        {"digits": 4})
    assert not hasattr(example, "grading_key")  # a task of one's own without keys: every item graded


def test_pool_sized_to_the_cores():
    cores = len(os.sched_getaffinity(0))
    assert auto_workers() == cores
    assert resolve_workers(0) == cores
    assert resolve_workers(3) == 3
    with pytest.raises(ValueError, match="workers >= 0"):
        resolve_workers(-1)
    with Grader(timeout_s=5) as g:  # the default: one per core, plus the spare
        assert g.workers == cores
        assert len(g._procs) == cores + 1
        assert g.rewards([(r"\boxed{1}", "1"), (r"\boxed{\dfrac{1}{2}}", "0.5")]) == [120.0, 120.0]
    with Grader(workers=1, timeout_s=5) as g:
        assert g.workers == 1


def test_config_grader_workers_zero_is_auto():
    assert load_recipe("tiny", ["grader_workers=0"]).grader_workers == 0
    assert load_recipe("tiny", ["grader_workers=3"]).grader_workers == 3
    with pytest.raises(RecipeError, match="grader_workers"):
        load_recipe("tiny", ["grader_workers=-1"])
    from soarlite.config import Config

    assert Config().grader_workers == 0
