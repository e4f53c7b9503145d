"""What the engines share: seeds, the learning-rate schedule, the LoRA config, install checks, the stop ids, vLLM's
sizes (context length, LoRA slots and rank, sequences at once), vLLM's sampling parameters with the stop rules both
vLLM samplers use, and the hand-over of adapters to an in-process vLLM. HFEngine, VLLMEngine and the unsloth sampler take these from
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


def stop_ids(generation_config, tokenizer) -> list[int]:
    """Every end-of-sequence id: the model's generation_config `eos_token_id` (an int or a list; Llama-3.2-Instruct
    lists 128001, 128008, 128009) and the tokenizer's. transformers' generate(eos_token_id=...) REPLACES the
    generation_config's list (docs/gpu-facts.md §5), so the union is what every engine passes and cuts at."""
    ids: set[int] = set()
    for src in (getattr(generation_config, "eos_token_id", None), getattr(tokenizer, "eos_token_id", None)):
        if src is None:
            continue
        ids.update(int(x) for x in (src if isinstance(src, (list, tuple)) else [src]))
    return sorted(ids)


def cut_at_stop(ids: list[int], stops) -> list[int]:
    """`ids` up to and including the first stop id (finished rows of a batch are padded after it)."""
    stops = set(stops)
    for k, t in enumerate(ids):
        if t in stops:
            return ids[: k + 1]
    return ids


RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # the max_lora_rank values vLLM accepts (vllm/config/lora.py:27)


def vllm_lora_rank(rank: int) -> int:
    """The smallest rank vLLM accepts that holds `rank` (its max_lora_rank is a Literal of RANKS)."""
    r = next((x for x in RANKS if x >= rank), None)
    if r is None:
        raise ValueError(f"model.lora_rank: {rank} is above vLLM's largest LoRA rank {RANKS[-1]}")
    return r


def adapters_in_flight(cfg) -> int:
    """vLLM LoRA slots: every student of a wave, the baseline student, the teacher and one spare (VLLMEngine's CPU
    zero adapter). vLLM admits at most max_loras distinct adapters per step; fewer would serialise the students."""
    return (cfg.inner.students_in_flight or cfg.outer.g * cfg.outer.r) + 3


def max_model_len(cfg, model_limit: int | None = None) -> int:
    """vLLM's context length: the recipe's bound on prompt + completion (model.max_seq_len), rounded up to vLLM's
    16-token KV block. Without it vLLM sizes for the model's 131,072 tokens and a 3B model cannot start in 45% of
    24 GB (docs/gpu-facts.md §4). `soarlite plan` checks that the KV cache holds one sequence of this length, as vLLM
    does at start-up, and that the estimated longest prompt + max_new_tokens fits in it."""
    n = -(-cfg.model.max_seq_len // 16) * 16
    return min(n, model_limit) if model_limit else n  # `model_limit`: the model's max_position_embeddings


def vllm_max_num_seqs(cfg) -> int:
    """Sequences vLLM may run at once: the largest sampling call of the loop (a wave's rollouts, the reward
    questions of every student of a wave, the teacher's first round), at most 512 (the sampler's profiling run
    holds max_num_seqs x vocab float32 logits). Never exactly 256: unsloth's load_vllm ignores 256 as "unset" and
    picks from its own memory table (docs/gpu-facts.md §1, vllm_utils.py:4819)."""
    o, i = cfg.outer, cfg.inner
    wave = i.students_in_flight or o.g * o.r
    n = min(512, max(wave * i.batch_size * i.group_size, (wave + 1) * o.M, o.g * o.n, 8))
    return 255 if n == 256 else n


def vllm_sampling_params(params: SamplingParams, stops, seed: int, index: int, logprobs: bool = False):
    """vLLM's SamplingParams for the index-th prompt of a call: stop at any of `stops` (the model's generation_config
    eos ids and the tokenizer's: `stop_ids`) and nothing else, the stop token kept in token_ids (ignore_eos +
    stop_token_ids + detokenize=False), greedy at temperature 0, and at temperature > 0 a per-prompt seed that
    depends on (seed, index) only. With `logprobs`, vLLM's log-probability of each sampled token."""
    from vllm import SamplingParams as VSamplingParams

    stops = [stops] if isinstance(stops, int) else list(stops)
    return VSamplingParams(
        temperature=params.temperature, top_p=1.0, top_k=0, max_tokens=params.max_new_tokens,
        ignore_eos=True, stop_token_ids=stops, detokenize=False, logprobs=0 if logprobs else None,
        seed=request_seed(seed, index) if params.temperature > 0 else None,
    )


SHM = "/dev/shm"


def scratch_dir(prefix: str, need_bytes: float) -> str:
    """A scratch folder for adapter hand-over files: tmpfs (/dev/shm) when it has room for `need_bytes` (checked
    with shutil.disk_usage; Docker gives /dev/shm 64 MB, less than one 3B adapter), else a temporary folder on
    disk. Where /dev/shm is short, a line says so."""
    import sys

    if os.path.isdir(SHM):
        try:
            free = shutil.disk_usage(SHM).free
        except OSError:
            free = 0
        if free >= need_bytes:
            return tempfile.mkdtemp(prefix=prefix, dir=SHM)
        print(f"soarlite: {SHM} has {free / 2**20:.0f} MB free, adapter hand-over needs about "
              f"{need_bytes / 2**20:.0f} MB: using a folder on disk instead", file=sys.stderr)
    return tempfile.mkdtemp(prefix=prefix)


def handover_bytes(trainer) -> float:
    """What the hand-over files of all the trainer's adapters may take: every adapter the run keeps at once (the
    recipe's slots), at the size of one adapter in the compute dtype (`trainer.adapter_bytes()` where the trainer
    knows it; 0 before the first adapter exists)."""
    cfg = getattr(trainer, "cfg", None)
    per = trainer.adapter_bytes() if hasattr(trainer, "adapter_bytes") else 0
    return per * (adapters_in_flight(cfg) if cfg is not None else 1)


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
        # room for two versions of every adapter in flight (a new one is written before the old one is deleted)
        self.scratch = scratch_dir(prefix, 2 * handover_bytes(trainer) + 2**20)
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
            have = self.loaded[name] = (version, self.fresh_request(name))
        return have[1]

    def fresh_request(self, name: str):
        """A LoRARequest for `name`'s weights as they are now, under a new id: written to the scratch folder."""
        req = self.new_request(name, Path(self.scratch) / f"{name}-{self.next_id + 1}")
        # in the compute dtype (bf16/fp16 on a card): half the bytes of peft's float32 adapters
        self.trainer.save_adapter(name, req.lora_path, dtype=getattr(self.trainer, "dtype", None))
        return req

    def forget(self, name: str) -> None:
        """Drop vLLM's copy of `name` (its weights are stale or gone) and the files it was loaded from."""
        _, old = self.loaded.pop(name, (None, None))
        if old is not None:
            with contextlib.suppress(Exception) if self.tolerant else contextlib.nullcontext():
                self.llm.llm_engine.remove_lora(old.lora_int_id)  # False when vLLM never loaded or evicted it
            if getattr(old, "lora_path", ""):
                shutil.rmtree(old.lora_path, ignore_errors=True)

    def close(self) -> None:
        """Delete the scratch folder (also done when this object is collected)."""
        self._cleanup()
