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

__all__ = ["Completion", "Engine", "MissingExtra", "OptimizerSpec", "SamplingParams", "engine_mode", "make_engine",
           "require"]


def engine_mode(cfg: Config, cuda: bool) -> str:
    """Which engine a recipe gets: "shared" (unsloth's in-process vLLM on the training weights: one base copy on the
    card), "two-copies" (VLLMEngine: vLLM's own copy beside the trainer's, sleeping while adapters train), or
    "transformers" (HFEngine sampling with transformers + peft). On CUDA, `auto` is shared where unsloth and vllm
    are installed, else two copies where vllm is, else transformers. On a CPU, `auto` is transformers."""
    import importlib.util

    from soarlite.engine import unsloth as uns

    if not cuda:
        return "two-copies" if cfg.engine == "vllm" else "transformers"
    if cfg.engine == "vllm":
        return "two-copies"
    if uns.shared_mode(cfg, "cuda"):
        return "shared"
    if cfg.engine == "auto" and importlib.util.find_spec("vllm") is not None:
        return "two-copies"
    return "transformers"


def make_engine(cfg: Config, model_dir: str) -> Engine:
    """The engine a recipe asks for (see engine_mode). `auto`: one shared base on a GPU, transformers on a CPU
    (measured faster there)."""
    require("torch", "cpu")
    import torch

    cuda = torch.cuda.is_available() and cfg.device != "cpu"
    if engine_mode(cfg, cuda) == "two-copies":
        from soarlite.engine.vllm import VLLMEngine

        return VLLMEngine(cfg, model_dir)
    from soarlite.engine.hf import HFEngine

    return HFEngine(cfg, model_dir)  # shared mode: HFEngine with unsloth's sampler attached (engine.unsloth)
