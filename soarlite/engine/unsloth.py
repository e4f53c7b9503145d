"""unsloth: loading the base through it (4-bit, its patched kernels) and sampling with its in-process vLLM, which is
built on the same weights: one copy of the base on the card (the "shared" mode, the default on CUDA).

Nothing here imports unsloth or vLLM at module level. What is tested where: the settings (`use_unsloth`,
`shared_mode`), the arguments that reach unsloth's from_pretrained (`load_unsloth`, with a stand-in `unsloth` module),
the sampler's adapter hand-over in memory and through files, and the sleep cycle (with stand-ins for vLLM) run on a
CPU in tests/test_gpu_cpu.py. Loading through unsloth and sampling with its in-process vLLM for real have NOT run
anywhere yet: they need a CUDA card with unsloth and vllm installed (tests/test_gpu.py, marked `gpu`).
The facts this follows (unsloth 2026.10.9, unsloth_zoo 2026.10.9, vLLM 0.33.0) are in docs/gpu-facts.md, by section.
"""

from __future__ import annotations

import importlib.util
import json
import os
import tempfile
from pathlib import Path

from soarlite.engine import common
from soarlite.engine.interface import Completion
from soarlite.extras import MissingExtra


def _found(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def use_unsloth(setting, device: str) -> bool:
    """model.use_unsloth: true (must be there), false, or auto (when unsloth AND vllm are installed, on CUDA)."""
    if setting is False or device != "cuda":
        if setting is True and device != "cuda":
            raise RuntimeError("model.use_unsloth: true needs a CUDA card; set it to auto or false on this machine")
        return False
    found = _found("unsloth")
    if setting is True and not found:
        raise MissingExtra("unsloth is not installed (model.use_unsloth: true); install it with: pip install 'soarlite[gpu]'")
    # auto: only together with vLLM. Without it unsloth's fast decode would sample, and that ignores per-row adapters
    # (docs/gpu-facts.md §3); the plain transformers + bitsandbytes path samples correctly instead.
    return found and (setting is True or _found("vllm"))


def shared_mode(cfg, device: str) -> bool:
    """One copy of the base on the card: unsloth loads it and its in-process vLLM samples on the same weights. On
    CUDA with unsloth and vllm installed, for engine auto (the default) and hf; engine vllm asks for two copies."""
    return (device == "cuda" and cfg.engine in ("auto", "hf") and use_unsloth(cfg.model.use_unsloth, device)
            and _found("vllm"))


def prepare_env() -> None:
    """Before unsloth is imported (it reads these at import, docs/gpu-facts.md §1 "Standby"): standby, so vLLM's KV cache
    is released while adapters train (unsloth's sleep patches), and no merged rollouts (they fold one LoRA into the
    base, which a multi-adapter batch cannot use). A value the user set wins."""
    os.environ.setdefault("UNSLOTH_VLLM_STANDBY", "1")
    os.environ.setdefault("UNSLOTH_VLLM_MERGED_ROLLOUT", "0")


def unsloth_kwargs(cfg, model_dir: str, dtype, fast_inference: bool) -> dict:
    """The arguments of FastLanguageModel.from_pretrained (docs/gpu-facts.md §1 and §2):
    * use_exact_model_name=True: else unsloth maps meta-llama/Llama-3.2-*-Instruct to its own pre-quantized
      `unsloth/...-unsloth-bnb-4bit` repo (other weights, another download);
    * use_gradient_checkpointing: True or False, never its default "unsloth" (that patches torch's checkpoint to the
      reentrant kind, which needs an input that requires grad: soarlite's backward would fail or lose the LoRA
      gradients);
    * random_state: the run seed (its default is 3407);
    * with fast_inference, vLLM's sizes, which from_pretrained passes on to unsloth_zoo's load_vllm through
      **kwargs (llama.py:4247-4282): max_loras (its default 1 serialises the students), max_num_seqs (never 256,
      see common.vllm_max_num_seqs), max_lora_rank rounded up to a rank vLLM accepts, max_seq_length = vLLM's
      max_model_len, gpu_memory_utilization (with standby unsloth replaces it by its own tier, 0.76-0.88 of the
      card). Without fast_inference these keys are left out (unsloth pops them with a notice)."""
    kwargs = dict(
        model_name=model_dir,
        max_seq_length=common.max_model_len(cfg),
        dtype=dtype,
        load_in_4bit=cfg.model.load_in_4bit,
        fast_inference=fast_inference,
        use_exact_model_name=True,
        use_gradient_checkpointing=bool(cfg.model.gradient_checkpointing),
        random_state=cfg.seed,
    )
    if fast_inference:
        kwargs.update(
            max_lora_rank=common.vllm_lora_rank(cfg.model.lora_rank),
            max_loras=common.adapters_in_flight(cfg),
            max_num_seqs=common.vllm_max_num_seqs(cfg),
            gpu_memory_utilization=cfg.gpu_memory_utilization,
            disable_log_stats=True,
        )
    return kwargs


def load_unsloth(cfg, model_dir: str, dtype, fast_inference: bool):
    """The base through unsloth, 4-bit, with its patched kernels, and with fast_inference its in-process vLLM
    (`model.vllm_engine`) built on the same weights. LoRA adapters are then added by peft as on the plain path
    (several named adapters; unsloth's own get_peft_model makes only the one named `default`). Returns
    (model, tokenizer). The real call is UNTESTED HERE (no CUDA card); the arguments are tested with a stand-in."""
    if fast_inference:
        prepare_env()
    from unsloth import FastLanguageModel  # noqa: I001  (unsloth must be imported before transformers patches)

    return FastLanguageModel.from_pretrained(**unsloth_kwargs(cfg, model_dir, dtype, fast_inference))


class UnslothSampler(common.LoraHandover):
    """Sampling with unsloth's in-process vLLM (`model.vllm_engine`), one LoRARequest per prompt in one call.

    Hand-over in memory where vLLM's LoRARequest is unsloth's patched struct with `lora_tensors` (docs/gpu-facts.md §2).
    unsloth's own `model.load_lora(load_tensors=True)` takes every `.lora_A.`/`.lora_B.` tensor of the model and
    strips `.default`, so it fits only a single adapter named `default`; with the teacher, the baseline student and
    the throwaway students resident as named peft adapters it would mix them. So this sampler builds the request
    itself: peft's state dict of ONE named adapter (keys without the adapter name), detached, cast to the compute
    dtype and cloned (the live parameters change in place at the next step), with the adapter's PEFT config as a
    dict, under a new lora_int_id and a name unique per weight version (`name@id`: requests compare by name).
    Where LoRARequest has no tensors field (plain vLLM), adapters go through files (common.LoraHandover). Either
    way an adapter whose weights changed since vLLM last saw it (the engine's version counter) is handed over again
    under a NEW id, and the old id is removed from vLLM.

    Standby: the first forward with gradients after sampling (`release`, called by HFEngine.logprobs) puts vLLM to
    sleep (level 1: KV cache and runtime pools freed; unsloth keeps the shared weights, docs/gpu-facts.md §1); unsloth's
    patched LLM.generate wakes it (untagged wake_up) before the next sampling call.
    """

    def __init__(self, engine, llm, in_memory: bool | None = None):
        super().__init__(engine, llm, prefix="soarlite-unsloth-", tolerant=True)
        self.engine = engine  # the HFEngine: save_adapter, versions, tokenizer, dtype, stop_ids
        self._in_memory = in_memory
        self._configs: dict[str, dict] = {}
        self.awake = True

    @property
    def in_memory(self) -> bool:
        if self._in_memory is None:
            cls = self._lora_request_cls()
            fields = set(getattr(cls, "__struct_fields__", ())) | set(getattr(cls, "__annotations__", {}))
            self._in_memory = "lora_tensors" in fields
        return self._in_memory

    def _lora_config(self, name: str) -> dict:
        """The adapter's PEFT config as the JSON dict save_pretrained writes (sets become lists)."""
        if name not in self._configs:
            with tempfile.TemporaryDirectory() as d:
                self.engine.model.peft_config[name].save_pretrained(d)
                self._configs[name] = json.loads((Path(d) / "adapter_config.json").read_text())
        return self._configs[name]

    def fresh_request(self, name: str):
        """In memory where unsloth's LoRARequest takes tensors (no files, no /dev/shm), else through files."""
        if not self.in_memory:
            return super().fresh_request(name)
        from peft import get_peft_model_state_dict

        self.next_id += 1
        state = get_peft_model_state_dict(self.engine.model, adapter_name=name)
        tensors = {k: v.detach().to(self.engine.dtype).clone() for k, v in state.items()}
        return self._lora_request_cls()(
            lora_name=f"{name}@{self.next_id}", lora_int_id=self.next_id, lora_tensors=tensors,
            lora_config=dict(self._lora_config(name)),  # a fresh dict: unsloth writes a key into it
        )

    def release(self) -> None:
        """Standby: free vLLM's KV cache while adapters train. unsloth's generate wakes it again."""
        if self.awake and os.environ.get("UNSLOTH_VLLM_STANDBY") == "1" and hasattr(self.llm, "sleep"):
            self.llm.sleep(1)
            self.awake = False

    def generate(self, prompts, adapters, params, seed: int):
        """Completions in the engine's format. Base rows (adapter None) get no LoRARequest."""
        from vllm.inputs import TokensPrompt

        tok = self.engine.tokenizer
        stops = self.engine.stop_ids
        ids = tok(list(prompts))["input_ids"]
        reqs = [self.request(a) if a is not None else None for a in adapters]
        # the same stop rules and per-prompt seeds as VLLMEngine (see its module docstring)
        sp = [common.vllm_sampling_params(params, stops, seed, j) for j in range(len(prompts))]
        outs = self.llm.generate([TokensPrompt(prompt_token_ids=x) for x in ids], sp, lora_request=reqs, use_tqdm=False)
        self.awake = True  # unsloth's patched generate woke it
        done = []
        for x, o in zip(ids, outs):
            gen = list(o.outputs[0].token_ids)
            done.append(Completion(list(x), gen, tok.decode(gen, skip_special_tokens=True)))
        return done
