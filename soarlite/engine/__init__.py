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
that shares the same adapters through files). What they share is in `common`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

# compatibility: these live in soarlite.extras (import them from there)
from soarlite.extras import MissingExtra, require  # noqa: F401

if TYPE_CHECKING:  # torch is an extra; nothing here may import it at module level
    import torch

    from soarlite.config import Config


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 1.0  # 0 = greedy
    max_new_tokens: int = 256


@dataclass
class Completion:
    prompt_ids: list[int]
    ids: list[int]  # generated tokens, the end-of-sequence token included when one was produced
    text: str  # decoded `ids`, special tokens skipped


@dataclass(frozen=True)
class OptimizerSpec:
    """AdamW with linear warm-up then cosine decay to zero over `total_steps` (the paper's schedule)."""

    lr: float
    total_steps: int
    warmup_steps: int = 0
    weight_decay: float = 0.0


class Engine(Protocol):
    tokenizer: object

    def generate(
        self, prompts: Sequence[str], adapters: Sequence[str | None], params: SamplingParams, seed: int
    ) -> list[Completion]: ...

    def logprobs(self, adapter: str | None, samples: Sequence[Completion], grad: bool = False) -> list[torch.Tensor]:
        """One 1-D tensor per sample: log p(ids[t] | prompt, ids[:t]) under `adapter`."""
        ...

    def create_adapter(self, name: str, optimizer: OptimizerSpec | None = None, copy_from: str | None = None) -> None:
        """A new adapter: fresh LoRA (B = 0, so it starts as the base) or a copy of `copy_from`'s weights."""
        ...

    def copy_adapter(self, src: str, dst: str) -> None:
        """Overwrite `dst`'s weights with `src`'s (optimiser state of `dst` is kept)."""
        ...

    def save_adapter(self, name: str, path: str, with_optimizer: bool = False) -> None: ...

    def load_adapter(self, name: str, path: str, optimizer: OptimizerSpec | None = None) -> None: ...

    def delete_adapter(self, name: str) -> None: ...

    def step(self, name: str) -> float:
        """One optimiser step on `name` with its accumulated gradients; zeroes them; returns the lr used."""
        ...


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
