import dataclasses

import pytest

from soarlite.tasks import QA
from soarlite.tasks.math import (
    STUDENT_PROMPT_PAPER,
    TEACHER_PROMPT_PAPER,
    parse_teacher_output,
    student_prompt,
)
from soarlite.tasks.math_answers import MAX_CHARS


def test_student_prompt_fills_the_slot_and_keeps_other_braces():
    q = r"What is $\frac{1}{2} + \frac{1}{2}$? Write {it} simply."
    assert student_prompt(STUDENT_PROMPT_PAPER, "  " + q + "\n") == (
        "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. "
        "The assistant first shows the complete reasoning process step by step, then provides the final "
        "answer in \\boxed{}. User: " + q + " Assistant:"
    )


def test_student_prompt_needs_a_slot():
    with pytest.raises(ValueError, match="slot"):
        student_prompt("Solve: ", "1+1")


def test_teacher_prompt_asks_for_the_papers_format():
    for subject in [
        "Prealgebra",
        "Algebra",
        "Number Theory",
        "Counting & Probability",
        "Geometry",
        "Intermediate Algebra",
        "Precalculus",
    ]:
        assert subject in TEACHER_PROMPT_PAPER
    assert r"<question>the full problem statement</question><answer>\boxed{the final answer}</answer>" in (
        TEACHER_PROMPT_PAPER
    )
    assert "{question}" not in TEACHER_PROMPT_PAPER


def test_qa_is_frozen():
    qa = QA(question="Q", answer="1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        qa.answer = "2"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            r"<question>Find $x$ if $2x + 3 = 11$.</question><answer>\boxed{4}</answer>",
            QA(r"Find $x$ if $2x + 3 = 11$.", "4"),
        ),
        (  # reasoning around the tags, whitespace inside them
            (
                "Let me think: a problem about primes.\n<question>\n How many primes are below 20? \n</question>\n"
                "<answer> There are \\boxed{8} </answer>\nDone."
            ),
            QA("How many primes are below 20?", "8"),
        ),
        (  # nested braces in the answer
            r"<question>Simplify $\sqrt{1/2}$.</question><answer>\boxed{\frac{1}{\sqrt{2}}}</answer>",
            QA(r"Simplify $\sqrt{1/2}$.", r"\frac{1}{\sqrt{2}}"),
        ),
        (  # a draft first: the last question wins, with the first answer after it
            (
                r"<question>draft</question><answer>\boxed{1}</answer> better: "
                r"<question>final</question><answer>\boxed{2}</answer><answer>\boxed{3}</answer>"
            ),
            QA("final", "2"),
        ),
        (  # a text answer is a sympy symbol, so it parses
            r"<question>Which day?</question><answer>\boxed{\text{Friday}}</answer>",
            QA("Which day?", r"\text{Friday}"),
        ),
        (  # the answer's last box is the answer
            r"<question>Q</question><answer>\boxed{1}, rather \boxed{x^2}</answer>",
            QA("Q", "x^2"),
        ),
    ],
)
def test_parse_valid(text, expected):
    assert parse_teacher_output(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        r"What is 2+2? \boxed{4}",  # no tags
        r"<question>What is 2+2?</question> \boxed{4}",  # no answer tags
        r"<question>What is 2+2?<answer>\boxed{4}</answer>",  # question tag not closed
        r"<answer>\boxed{4}</answer><question>What is 2+2?</question>",  # answer only before the question
        r"<question>  </question><answer>\boxed{4}</answer>",  # empty question
        r"<question>What is 2+2?</question><answer>4</answer>",  # no boxed
        r"<question>What is 2+2?</question><answer>\boxed{}</answer>",  # empty boxed
        r"<question>What is 2+2?</question><answer>\boxed{4</answer>",  # unclosed boxed
        r"<question>What is 2+2?</question><answer>\boxed{???}</answer>",  # does not parse as math
        r"<question>What is 2+2?</question><answer>\boxed{\frac{}{}}</answer>",
        r"<question>What is 2+2?</question><answer>\boxed{x+}</answer>",
        r"<question>Big?</question><answer>\boxed{9^{9^{9^{9}}}}</answer>",  # a tower of powers
        r"<question>Big?</question><answer>\boxed{2^{3^4}}</answer>",
        r"<question>Big?</question><answer>\boxed{9^9^9}</answer>",
    ],
)
def test_parse_invalid(text):
    assert parse_teacher_output(text) is None


def test_powers_that_are_not_towers_are_valid():
    for answer in ["x^2 + y^2 + z^2", "2^{10}", r"\frac{3^{2}}{2^{3}}", "e^{i\\pi}"]:
        text = f"<question>Q</question><answer>\\boxed{{{answer}}}</answer>"
        assert parse_teacher_output(text) == QA("Q", answer), answer


def test_parse_reads_only_the_end_of_a_long_output():
    pair = r"<question>Q</question><answer>\boxed{1}</answer>"
    assert parse_teacher_output("x" * MAX_CHARS + pair) == QA("Q", "1")
    assert parse_teacher_output(pair + "x" * MAX_CHARS) is None
