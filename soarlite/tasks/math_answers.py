"""Math answers: the correctness check and the paper's student reward (120/20/10/0) on top of math_verify.

`is_correct` is math_verify with a few fixes measured on `shared/data/graded_solutions_dev.jsonl`
(see benchmarks/grader_accuracy.py): grade the last `\\boxed{}` rather than whatever math_verify's
regexes pick first, accept a missing or extra percent sign, accept several boxed answers that together
give a multi-part reference, compare text answers case- and markup-insensitively, and drop thin-space
thousands separators (`1\\,000`) that math_verify reads as a product.

math_verify's own timeouts use signal.alarm, which cannot interrupt C code (a big-integer power, a
regex that backtracks) and works only in the main thread: the loop therefore calls these through
`soarlite.grading.Grader`, whose worker processes are killed when they overrun their per-item limit.
"""

from __future__ import annotations

import re
from fractions import Fraction

from math_verify import parse, verify
from sympy import FiniteSet, Tuple

# The paper's reward shaping for a student rollout (SOAR, inner loop).
REWARD_CORRECT = 120.0  # boxed and verifies against the reference
REWARD_CONTAINS_REFERENCE = 20.0  # boxed, does not verify, but contains the reference string
REWARD_WRONG = 10.0  # boxed and wrong: still better than not following the format
REWARD_NO_BOXED = 0.0

# Every checked text is cut to its last MAX_CHARS characters first. The answer sits at the end, a
# 1024-token rollout is about 5k characters (the longest graded row is 6k), and the cost of parsing
# grows with length: this is the cheap first guard, the worker timeout is the real one.
MAX_CHARS = 8192

_BOXED_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
_PERCENT_RE = re.compile(r"\\?%|\\text\{\s*percent\s*\}")
# `1\,000` and `1\text{,}000`: math_verify reads the first as a product 1*000 = 0.
_THIN_SPACE_THOUSANDS_RE = re.compile(r"(?<=\d)(?:\\[,!]|\\text\{,\}|\{,\})(?=\d{3}(?!\d))")
_TEXT_MACRO_RE = re.compile(r"\\(?:text|textbf|textit|mathrm|mathbf|mbox)\s*")


def _clip(text: str) -> str:
    return text[-MAX_CHARS:]


def last_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` (or `\\boxed {..}`, `\\fbox{..}`); None if absent or unbalanced."""
    matches = list(_BOXED_RE.finditer(text))
    if not matches:
        return None
    return _balanced(text, matches[-1].end())


def _balanced(text: str, start: int) -> str | None:
    """text[start:] opens just after a `{`: the content up to its matching `}`, or None."""
    depth, i = 1, start
    while i < len(text):
        c = text[i]
        if c == "\\":  # `\{` and `\}` are literal braces, not grouping
            i += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return text[start:i]
        i += 1
    return None


def _boxed_answers(text: str) -> list[str]:
    """Every balanced boxed content, in order (unbalanced ones are skipped)."""
    found = (_balanced(text, m.end()) for m in _BOXED_RE.finditer(text))
    return [b for b in found if b is not None]


def _normalise(latex: str) -> str:
    return _THIN_SPACE_THOUSANDS_RE.sub("", latex).strip()


def _parse_math(latex: str) -> list:
    return parse("$" + _normalise(latex) + "$")


def parses_as_math(answer: str) -> bool:
    """Whether math_verify turns `answer` (boxed content) into a sympy object, not just a fallback string."""
    return bool(parse("$" + _normalise(_clip(answer)) + "$", fallback_mode="no_fallback"))


def _plain_text(latex: str) -> str:
    """Text answers (`\\text{Evelyn}`, `\\text{A, C}`) compared as strings: no markup, case, spaces, end dot."""
    s = _TEXT_MACRO_RE.sub("", latex)
    return re.sub(r"[\s{}$]|\\[,;!: ]", "", s).rstrip(".").lower()


_INT_RE = re.compile(r"\s*[-+]?\d+\s*")


def _int_text(latex: str) -> str | None:
    """The canonical digits of a plain integer (`+012` -> `12`, `-0` -> `0`), or None for anything else."""
    if not _INT_RE.fullmatch(latex):
        return None
    s = latex.strip()
    digits = s.lstrip("+-").lstrip("0") or "0"
    return ("-" if s.startswith("-") and digits != "0" else "") + digits


def _matches(gold_latex: str, pred_latex: str) -> bool:
    # Two plain integers are equal when their digits are: what math_verify decides, except past 4300 digits, where
    # Python refuses int(str) and math_verify falls back to strings that never verify.
    gold_int, pred_int = _int_text(gold_latex), _int_text(pred_latex)
    if gold_int is not None and pred_int is not None:
        return gold_int == pred_int
    gold = _parse_math(gold_latex)
    if verify(gold, _parse_math(pred_latex)):
        return True
    # A missing or extra percent sign (17.5 vs 17.5\%): graders of MATH and OlympiadBench accept it.
    has_pct = _PERCENT_RE.search(gold_latex) or _PERCENT_RE.search(pred_latex)
    if has_pct and verify(_parse_math(_PERCENT_RE.sub("", gold_latex)), _parse_math(_PERCENT_RE.sub("", pred_latex))):
        return True
    # Words (`\\text{A, C}` vs `A, C`: math_verify makes a string of one and a set of the other). Anything
    # with a digit is left to sympy, where dropping spaces and markup could merge different numbers.
    plain = _plain_text(gold_latex)
    return bool(plain) and not any(ch.isdigit() for ch in plain) and plain == _plain_text(pred_latex)


def _parts(reference: str) -> int:
    """How many elements a multi-part reference (`1, 2`, `(3, 4)`) has; 1 for anything else."""
    gold = _parse_math(reference)
    if gold and isinstance(gold[0], (FiniteSet, Tuple)):
        return len(gold[0].args)
    return 1


def is_correct(completion: str, reference: str) -> bool:
    """Whether the final answer of `completion` equals `reference` (LaTeX, without `$` or `\\boxed`).

    The answer is the last boxed one; with none (or an unclosed last one), math_verify searches the whole
    text. A reference of k parts (`1, 2`) also matches the last k boxed answers taken together
    (`\\boxed{2} ... \\boxed{1}`: OlympiadBench solutions box each part of a multi-part answer).
    """
    completion, reference = _clip(completion), _clip(reference)
    last = last_boxed(completion)
    if last is None:
        return verify(_parse_math(reference), parse(_normalise(completion)))
    if _matches(reference, last):
        return True
    boxed = _boxed_answers(completion)
    if len(boxed) < 2:  # 1 < k <= len(boxed) cannot hold: spare parsing the reference again
        return False
    k = _parts(reference)
    return 1 < k <= len(boxed) and _matches(reference, ", ".join(boxed[-k:]))


def math_reward(completion: str, reference: str) -> float:
    """The paper's student reward: 120 boxed and right, 20 boxed and containing the reference, 10 boxed, 0."""
    completion, reference = _clip(completion), _clip(reference)
    boxed = last_boxed(completion)
    if boxed is None:
        return REWARD_NO_BOXED
    if is_correct(completion, reference):
        return REWARD_CORRECT
    ref = re.sub(r"\s", "", reference)
    if ref and ref in re.sub(r"\s", "", boxed):
        return REWARD_CONTAINS_REFERENCE
    return REWARD_WRONG




# ------------------------------------------------------------------------------------------------ grading keys
# What lets the grader (soarlite.grading.Grader) grade the rollouts of a step cheaply: items with the same key have
# the same `is_correct` and the same `math_reward`, so each key is graded once per batch, and some keys are decided
# here without math_verify. Only string operations: these run in the trainer's process, with no time limit.

# Exact rationals: an integer or a fraction of integers with a non-zero denominator; sympy compares them exactly.
# At most 30 digits each: far below the 4300 past which Python refuses int(str) and math_verify falls back to strings.
_RATIONAL_RE = re.compile(r"(-?)(?:(\d{1,30})|\\[dt]?frac\{(\d{1,30})\}\{(0*[1-9]\d{0,29})\})")
# Literals that math_verify parses to one finite number, equal to itself: an integer or decimal, a fraction with a
# non-zero denominator (0/0 is nan: left to math_verify), a root of an integer.
_LITERAL_RE = re.compile(r"-?(?:\d{1,30}(?:\.\d{1,30})?|\\[dt]?frac\{\d{1,30}\}\{0*[1-9]\d{0,29}\}|\d{0,30}\\sqrt\{\d{1,30}\})")


def _rational(latex: str) -> Fraction | None:
    m = _RATIONAL_RE.fullmatch(latex)
    if m is None:
        return None
    sign, whole, num, den = m.groups()
    value = Fraction(int(whole)) if whole is not None else Fraction(int(num), int(den))
    return -value if sign else value


def grading_key(completion: str, reference: str) -> tuple:
    """A key such that every completion with this key has the same `is_correct` and `math_reward` against this
    reference.

    Without a complete last boxed answer, math_verify reads the whole text: the key is the whole (clipped) text, so
    only identical rollouts share it; their reward is 0 without grading (known_result).

    With one boxed answer, the key is its content stripped of surrounding whitespace (what `_normalise` strips; the
    percent and text rules and the reward's substring test ignore it too) with the reference. With several, the
    multi-part rule may read the last k of them, k known only after parsing the reference: the key is all of them,
    as written. The thin-space rule is not folded in: the percent and text comparisons read the raw content.
    """
    completion, reference = _clip(completion), _clip(reference)
    last = last_boxed(completion)
    if last is None:
        return ("text", reference, completion)
    boxed = _boxed_answers(completion)  # its last element is `last`
    if len(boxed) == 1:
        return ("one", reference, last.strip())
    return ("all", reference, tuple(boxed))


def known_result(method: str, key: tuple) -> float | bool | None:
    """The result of `is_correct` (method "is_correct") or `math_reward` ("reward") for every completion with this
    grading key, when it follows from the key without math_verify; None when the key must be graded.

    The reward of a rollout without a complete last boxed answer is 0. Otherwise decided here for a single boxed
    answer only (several make the multi-part rule possible):
    - right when the answer and the reference are the same simple literal written alike (`0.5`, `2\\sqrt{3}`):
      math_verify parses it to one finite number, equal to itself;
    - right when the text rule of `_matches` holds: the same non-empty plain text without a digit (`\\text{Evelyn}`
      and `evelyn`);
    - right or wrong when both are exact rationals (integers, `\\frac{3}{4}`, `-\\dfrac{6}{8}`): their values decide; the
      percent and text rules do not apply to them (no percent sign, digits), and sympy compares rationals exactly.
    """
    kind, reference, answer = key
    if kind == "text":  # no complete last boxed answer: no reward, and is_correct must read the text
        return REWARD_NO_BOXED if method == "reward" else None
    if kind != "one":
        return None
    ref = reference.strip()
    plain = _plain_text(reference)
    if (ref == answer and _LITERAL_RE.fullmatch(ref)) or (
        plain and not any(ch.isdigit() for ch in plain) and plain == _plain_text(answer)
    ):
        right = True
    elif (a := _rational(ref)) is not None and (b := _rational(answer)) is not None:
        right = a == b
    else:
        return None
    if method == "is_correct":
        return right
    if method != "reward":
        return None
    if right:
        return REWARD_CORRECT
    ref_chars = re.sub(r"\s", "", reference)
    return REWARD_CONTAINS_REFERENCE if ref_chars and ref_chars in re.sub(r"\s", "", answer) else REWARD_WRONG
