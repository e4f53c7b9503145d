"""The engine interface: what the loop hands an engine and gets back (SamplingParams, Completion, OptimizerSpec) and
the Engine protocol itself. Every engine module imports these from here; soarlite.engine re-exports them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # torch is an extra; nothing here may import it at module level
    import torch


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
    """AdamW (or plain SGD) with linear warm-up then cosine decay to zero over `total_steps` (the paper's schedule)."""

    lr: float
    total_steps: int
    warmup_steps: int = 0
    weight_decay: float = 0.0
    algorithm: str = "adamw"  # "adamw" (the recipe's `optimizer` picks its form) or "sgd" (inner.optimizer)
    max_grad_norm: float | None = None  # clip the adapter's gradient to this L2 norm before each step (None: no clip)


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
