"""RLOO (REINFORCE leave-one-out), the one implementation every loop uses.

Both of SOAR's loops are RLOO; they differ only in what a "group" is:
  * inner loop (student): the group is the `group_size` rollouts of one question; each rollout's reward is its own;
  * outer loop (teacher): the group is the g datasets of one step; every question-answer pair in dataset k gets
    dataset k's advantage R_k - mean_{j != k} R_j.
The baselines (Hard-Only, PQ) are the inner loop on other data.
"""

from __future__ import annotations

from collections.abc import Sequence


def advantages(rewards: Sequence[float]) -> list[float]:
    """A_i = r_i - mean_{j != i} r_j over one group. They sum to zero, which is why rejection-resampling the
    teacher's unparsable outputs leaves the expected gradient unchanged (the paper's argument)."""
    k = len(rewards)
    if k < 2:
        raise ValueError("RLOO needs at least two rewards in a group")
    total = sum(rewards)
    return [r - (total - r) / (k - 1) for r in rewards]


def update(engine, adapter: str, samples: Sequence, advs: Sequence[float], kl_coef: float, micro_batch: int) -> dict:
    """One policy-gradient step on `adapter`: loss = -A * log p(completion) + kl_coef * KL(policy || base), summed over
    completion tokens and divided by the number of tokens in the batch; gradients accumulate over micro-batches,
    then one optimiser step. No PPO ratio or clipping: each batch is sampled by the current policy and used once.

    KL is the k3 estimator exp(ref - logp) - (ref - logp) - 1 per token (non-negative, unbiased), against the base
    model with adapters disabled: the initial policy of both teacher and students, with no second model copy.
    """

    if len(samples) != len(advs):
        raise ValueError("one advantage per sample")
    n_tokens = max(1, sum(len(s.ids) for s in samples))
    pg_sum = kl_sum = 0.0
    for start in range(0, len(samples), micro_batch):
        batch = samples[start : start + micro_batch]
        adv = advs[start : start + micro_batch]
        if kl_coef == 0 and not any(adv):
            continue  # nothing to learn from a group whose rollouts all scored the same
        # the reference (no gradients) first: its logits are freed before the policy's forward keeps its own
        ref = engine.logprobs(None, batch) if kl_coef > 0 else None
        logp = engine.logprobs(adapter, batch, grad=True)  # list of (n_i,)
        loss = 0.0
        for i, lp in enumerate(logp):
            pg = -(adv[i] * lp).sum()
            loss = loss + pg
            pg_sum += pg.item()
            if ref is not None:
                delta = ref[i] - lp
                kl = (delta.exp() - delta - 1).sum()
                loss = loss + kl_coef * kl
                kl_sum += kl.item()
        (loss / n_tokens).backward()
    lr = engine.step(adapter)
    return {"pg_loss": pg_sum / n_tokens, "kl": kl_sum / n_tokens, "lr": lr, "tokens": n_tokens}
