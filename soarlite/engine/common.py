"""What the engines share: seeds, the learning-rate schedule, the LoRA config, install checks, vLLM's sampling
parameters with the stop rules both vLLM samplers use, and the hand-over of adapters to an in-process vLLM. HFEngine, VLLMEngine and the unsloth sampler take these from
here, never from each other's private names."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import math
import os
import shutil
import tempfile
import weakref
from pathlib import Path

from soarlite.engine.interface import OptimizerSpec, SamplingParams
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


class LoraHandover:
    """Adapters handed to an in-process vLLM through files, for VLLMEngine and the unsloth sampler.

    Every change to an adapter (a step, a copy into it, a load) bumps its version in the trainer (an HFEngine:
    `versions`, `save_adapter`); before the next generation an adapter whose version moved is written in PEFT
    format to a scratch folder (tmpfs where present) and handed to vLLM under a fresh `lora_int_id`: vLLM caches
    adapters by id, so a reused id would serve the stale weights. The stale id is removed from vLLM and its files
    deleted, so a long run does not grow memory. `tolerant`: ignore errors of vLLM's remove_lora (an engine that
    already evicted the adapter)."""

    def __init__(self, trainer, llm, prefix: str, tolerant: bool = False):
        self.trainer = trainer
        self.llm = llm
        self.tolerant = tolerant
        self.scratch = tempfile.mkdtemp(prefix=prefix, dir="/dev/shm" if os.path.isdir("/dev/shm") else None)
        self._cleanup = weakref.finalize(self, shutil.rmtree, self.scratch, True)
        self.loaded: dict[str, tuple[int, object]] = {}  # adapter -> (version handed over, LoRARequest)
        self.next_id = 0  # the last lora_int_id handed out; ids are never reused

    def _lora_request_cls(self):
        from vllm.lora.request import LoRARequest

        return LoRARequest

    def new_request(self, name: str, path: Path):
        """A LoRARequest for the folder `path` under the next, never used id."""
        self.next_id += 1
        return self._lora_request_cls()(name, self.next_id, str(path))

    def request(self, name: str):
        """The LoRARequest for `name`'s current weights, writing them out under a fresh id if they changed."""
        version = self.trainer.versions.get(name)
        if version is None:
            raise KeyError(f"no adapter {name!r}")
        have = self.loaded.get(name)
        if have is None or have[0] != version:
            self.forget(name)
            req = self.new_request(name, Path(self.scratch) / f"{name}-{self.next_id + 1}")
            self.trainer.save_adapter(name, req.lora_path)
            have = self.loaded[name] = (version, req)
        return have[1]

    def forget(self, name: str) -> None:
        """Drop vLLM's copy of `name` (its weights are stale or gone) and the files it was loaded from."""
        _, old = self.loaded.pop(name, (None, None))
        if old is not None:
            with contextlib.suppress(Exception) if self.tolerant else contextlib.nullcontext():
                self.llm.llm_engine.remove_lora(old.lora_int_id)  # False when vLLM never loaded or evicted it
            shutil.rmtree(old.lora_path, ignore_errors=True)

    def close(self) -> None:
        """Delete the scratch folder (also done when this object is collected)."""
        self._cleanup()
