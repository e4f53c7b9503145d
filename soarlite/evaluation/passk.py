"""pass@k: the unbiased estimator of Chen et al. 2021, and the result files `soarlite eval` writes.

The paper reports pass@k for k in {1, 4, 8, 16, 32} from 32 samples per hard test problem.
"""

from __future__ import annotations

import json
import math
import time
from fractions import Fraction
from pathlib import Path

from soarlite import checkpoint
from soarlite.scoring import sampled_counts

KS = (1, 4, 8, 16, 32)
EXACT_UP_TO = 4096  # n at most this: exact integer arithmetic (microseconds); above, the product form in floats


# ------------------------------------------------------------------------------------------------ pass@k
def pass_at_k(n: int, c: int, k: int) -> float:
    """P(at least one of k samples drawn without replacement from n, c of them right, is right):
    1 - C(n-c, k) / C(n, k)."""
    for name, v in (("n", n), ("c", c), ("k", k)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"pass_at_k: {name} must be an integer, got {v!r}")
    if not 0 <= c <= n:
        raise ValueError(f"pass_at_k: need 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"pass_at_k: need 1 <= k <= n, got n={n}, k={k}")
    if n - c < k:
        return 1.0  # every draw of k contains a right one
    if n <= EXACT_UP_TO:
        return float(1 - Fraction(math.comb(n - c, k), math.comb(n, k)))
    # C(n-c,k)/C(n,k) = prod_{i=n-c+1..n} (1 - k/i): summed as logs, and 1 - exp(s) as -expm1(s), so that neither a
    # tiny nor a near-one result loses its digits
    return -math.expm1(math.fsum(math.log1p(-k / i) for i in range(n - c + 1, n + 1)))


def mean_pass_at_k(counts: list[int], n: int, ks=KS) -> dict[int, float]:
    """pass@k averaged over problems, each with `n` samples of which counts[i] were right; k > n is left out."""
    if not counts:
        raise ValueError("mean_pass_at_k: no problems")
    return {k: sum(pass_at_k(n, c, k) for c in counts) / len(counts) for k in ks if k <= n}


def parse_ks(text: str) -> list[int]:
    try:
        ks = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise ValueError(f"--k: {text!r} is not a comma-separated list of integers, e.g. 1,4,8,16,32") from None
    if not ks or ks[0] < 1:
        raise ValueError(f"--k: {text!r}: every k must be >= 1")
    return ks


def evaluate(engine, grader, cfg, world, adapter: str | None, problems, samples: int, ks, seed: int,
             label: str) -> dict:
    """pass@k of `adapter` (None = the base model) on `problems`, from `samples` answers each at the student
    temperature. The result is what `soarlite eval` writes and `soarlite report` reads."""
    bad = [k for k in ks if k > samples]
    if bad:
        raise ValueError(f"--k: {bad[0]} is more than --samples {samples}; pass@k needs k <= samples")
    t0 = time.time()
    counts = sampled_counts(engine, grader, cfg, world, adapter, problems, samples, seed)
    return {
        "kind": "soarlite.eval",
        "label": label,
        "recipe": cfg.name,
        "samples": samples,
        "problems": len(problems),
        "pass_at_k": {str(k): v for k, v in mean_pass_at_k(counts, samples, ks).items()},
        "correct_counts": counts,
        "solved_any": sum(c > 0 for c in counts),
        "seed": seed,
        "wall_s": time.time() - t0,
    }


def write_result(path: Path, result: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint.write_json_atomic(path, result)


def read_results(folder: Path) -> list[dict]:
    """Every eval result (`soarlite eval`, `soarlite baseline`) in `folder/eval/`."""
    out = []
    for p in sorted((folder / "eval").glob("*.json")):
        try:
            r = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError):
            continue  # a foreign or half-copied file is not an eval result
        if isinstance(r, dict) and r.get("kind") == "soarlite.eval":
            out.append(r)
    return out


def table(result: dict) -> str:
    """The pass@k line of one result, for the screen."""
    cells = "  ".join(f"pass@{k} {v:.3f}" for k, v in result["pass_at_k"].items())
    return f"{result['label']}: {cells}  ({result['problems']} problems x {result['samples']} samples)"
