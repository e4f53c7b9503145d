"""The engine: the one narrow interface the SOAR loop uses to touch a model.

One base model, many named LoRA adapters on it (the teacher, the baseline student, the throwaway students).
The loop asks an engine to
  * generate for a list of prompts, each with its own adapter (or None for the bare base), in one call;
  * score given completions: per-token log-probabilities under an adapter (None = the base with adapters off,
    which is also the KL reference: no second copy of the model);
  * create, copy, save, load and delete named adapters;
  * take one optimiser step on one adapter, after gradients were accumulated through `logprobs(..., grad=True)`.

Implementations: `hf.HFEngine` (transformers + peft; CPU and GPU; with unsloth's in-process vLLM as its sampler where
that runs, `unsloth.UnslothSampler`) and `vllm.VLLMEngine` (vLLM multi-LoRA sampling, with training on an HFEngine
that shares the same adapters through files). The types and the protocol are in `interface`, what the engines share
is in `common`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from soarlite.engine.interface import Completion, Engine, OptimizerSpec, SamplingParams

# compatibility: these live in soarlite.extras (import them from there)
from soarlite.extras import MissingExtra, require  # noqa: F401

if TYPE_CHECKING:
    from soarlite.config import Config

__all__ = ["Completion", "Engine", "MissingExtra", "OptimizerSpec", "SamplingParams", "make_engine", "require"]


def make_engine(cfg: Config, model_dir: str) -> Engine:
    """The engine a recipe asks for. `auto`: vLLM on a GPU, transformers on a CPU (measured faster there)."""
    require("torch", "cpu")
    import torch

    cuda = torch.cuda.is_available() and cfg.device != "cpu"
    kind = cfg.engine if cfg.engine != "auto" else ("vllm" if cuda else "hf")
    if kind == "vllm":
        from soarlite.engine.vllm import VLLMEngine

        return VLLMEngine(cfg, model_dir)
    from soarlite.engine.hf import HFEngine

    return HFEngine(cfg, model_dir)
