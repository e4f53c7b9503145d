"""What the engines share: seeds, the learning-rate schedule, the LoRA config, install checks, and vLLM's sampling
parameters with the stop rules both vLLM samplers use. HFEngine, VLLMEngine and the unsloth sampler take these from
here, never from each other's private names."""

from __future__ import annotations

import hashlib
import importlib.util
import math

from soarlite.engine import OptimizerSpec, SamplingParams
from soarlite.extras import MissingExtra


def name_seed(seed: int, name: str) -> int:
    """The seed of an adapter's random initialisation: a function of the run seed and the adapter's name only."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{name}".encode()).digest()[:4], "little")


def request_seed(seed: int, index: int) -> int:
    """The seed of the index-th prompt of a call: a function of (seed, index) only, never of the batch around it."""
    return int.from_bytes(hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=4).digest(), "little") & 0x7FFFFFFF


def schedule(spec: OptimizerSpec):
    """The learning-rate factor per optimiser step: linear warm-up, then cosine decay to zero (LambdaLR's lambda)."""

    def factor(step: int) -> float:
        if step < spec.warmup_steps:
            return (step + 1) / spec.warmup_steps
        span = max(1, spec.total_steps - spec.warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - spec.warmup_steps) / span)))

    return factor


def lora_config(model_cfg):
    """peft's LoraConfig for the recipe's `model` section: every adapter of a run has this one."""
    from peft import LoraConfig

    m = model_cfg
    return LoraConfig(
        r=m.lora_rank,
        lora_alpha=m.lora_alpha,
        lora_dropout=m.lora_dropout,
        target_modules=list(m.target_modules),
        task_type="CAUSAL_LM",
    )


def require_bnb() -> None:
    if importlib.util.find_spec("bitsandbytes") is None:
        raise MissingExtra(
            "bitsandbytes is not installed (model.load_in_4bit: true needs it); install it with: "
            "pip install 'soarlite[bnb]' (or the whole CUDA set: 'soarlite[gpu]')"
        )


def vllm_sampling_params(params: SamplingParams, eos: int, seed: int, index: int, logprobs: bool = False):
    """vLLM's SamplingParams for the index-th prompt of a call: stop at the tokenizer's eos and nothing else, the eos
    kept in token_ids (ignore_eos + stop_token_ids), greedy at temperature 0, and at temperature > 0 a per-prompt
    seed that depends on (seed, index) only. With `logprobs`, vLLM's log-probability of each sampled token."""
    from vllm import SamplingParams as VSamplingParams

    return VSamplingParams(
        temperature=params.temperature, top_p=1.0, top_k=0, max_tokens=params.max_new_tokens,
        ignore_eos=True, stop_token_ids=[eos], detokenize=False, logprobs=0 if logprobs else None,
        seed=request_seed(seed, index) if params.temperature > 0 else None,
    )
