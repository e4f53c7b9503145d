"""unsloth: loading the base through it (4-bit, its patched kernels) and sampling with its in-process vLLM, which is
built on the same weights: one copy of the base on the card.

Nothing here imports unsloth or vLLM at module level. What is tested where: the setting (`use_unsloth`) and the
sampler's adapter hand-over (with a stand-in for vLLM) run on a CPU in tests/test_gpu_cpu.py. Loading through unsloth
and sampling with its in-process vLLM (`load_unsloth`, `UnslothSampler` with a real engine) have NOT run anywhere yet:
they need a CUDA card with unsloth and vllm installed (tests/test_gpu.py, marked `gpu`).
"""

from __future__ import annotations

import importlib.util

from soarlite.engine.common import LoraHandover, vllm_sampling_params
from soarlite.engine.interface import Completion
from soarlite.extras import MissingExtra


def use_unsloth(setting, device: str) -> bool:
    """model.use_unsloth: true (must be there), false, or auto (when installed and on CUDA)."""
    if setting is False or device != "cuda":
        if setting is True and device != "cuda":
            raise RuntimeError("model.use_unsloth: true needs a CUDA card; set it to auto or false on this machine")
        return False
    found = importlib.util.find_spec("unsloth") is not None
    if setting is True and not found:
        raise MissingExtra("unsloth is not installed (model.use_unsloth: true); install it with: pip install 'soarlite[gpu]'")
    return found


def load_unsloth(cfg, model_dir: str, dtype, fast_inference: bool, gpu_memory_utilization: float = 0.45):
    """UNTESTED HERE (no CUDA card in this project's CI): the base through unsloth, 4-bit, with its patched kernels,
    and with fast_inference its in-process vLLM (`model.vllm_engine`) built on the same weights: one copy of the base
    on the card. LoRA adapters are then added by peft as on the plain path (several named adapters; unsloth's own
    get_peft_model makes only the one named `default`). Returns (model, tokenizer)."""
    from unsloth import FastLanguageModel  # noqa: I001  (unsloth must be imported before transformers patches)

    kwargs = dict(
        model_name=model_dir,
        max_seq_length=cfg.model.max_seq_len,
        dtype=dtype,
        load_in_4bit=cfg.model.load_in_4bit,
        fast_inference=fast_inference,
    )
    if fast_inference:
        kwargs.update(max_lora_rank=cfg.model.lora_rank, gpu_memory_utilization=gpu_memory_utilization)
    return FastLanguageModel.from_pretrained(**kwargs)


class UnslothSampler(LoraHandover):
    """Sampling with unsloth's in-process vLLM (`model.vllm_engine`), adapters handed over through files.

    What is known of unsloth's own in-memory route (unsloth_zoo.vllm_utils.load_lora, read 2026-11): with
    load_tensors=True it takes every `.lora_A.`/`.lora_B.` tensor of the model's state_dict and strips `.default`
    from the names, so it expects exactly one adapter, named `default`; and it hands vLLM a new LoRARequest id on
    every call. With the teacher, the baseline student and the throwaway students all resident as named peft
    adapters, that route would mix every adapter's tensors into one request. So this sampler goes through files,
    as VLLMEngine does (soarlite.engine.common.LoraHandover): an adapter whose weights changed since vLLM last saw it
    (the engine's version counter) is written in PEFT format to a scratch folder and handed over under a NEW
    lora_int_id (vLLM caches adapters by id: a reused id would serve stale weights); the old id is removed from vLLM
    and its files deleted.
    The hand-over logic is tested on a CPU with a stand-in for vLLM (tests/test_gpu_cpu.py); the real engine is not.
    """

    def __init__(self, engine, llm):
        super().__init__(engine, llm, prefix="soarlite-unsloth-", tolerant=True)
        self.engine = engine  # the HFEngine: save_adapter, versions, tokenizer

    def generate(self, prompts, adapters, params, seed: int):
        """Completions in the engine's format. Base rows (adapter None) get no LoRARequest."""
        from vllm.inputs import TokensPrompt

        tok = self.engine.tokenizer
        eos = tok.eos_token_id
        ids = tok(list(prompts))["input_ids"]
        reqs = [self.request(a) if a is not None else None for a in adapters]
        # the same stop rules and per-prompt seeds as VLLMEngine (see its module docstring)
        sp = [vllm_sampling_params(params, eos, seed, j) for j in range(len(prompts))]
        outs = self.llm.generate([TokensPrompt(prompt_token_ids=x) for x in ids], sp, lora_request=reqs, use_tqdm=False)
        done = []
        for x, o in zip(ids, outs):
            gen = list(o.outputs[0].token_ids)
            done.append(Completion(list(x), gen, tok.decode(gen, skip_special_tokens=True)))
        return done

