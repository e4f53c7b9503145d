"""transformers + peft engine: one base model, many named LoRA adapters, mixed-adapter generation.

Generation with a different adapter per prompt goes through peft's `adapter_names=` batches, so all students of an
outer step sample in one call. The KL reference is the same model with its adapters disabled.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path

import torch

from soarlite import hardware
from soarlite.engine.common import cut_at_stop, lora_config, name_seed, require_bnb, schedule, stop_ids
from soarlite.engine.interface import Completion, OptimizerSpec, SamplingParams
from soarlite.extras import require

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # the grader's worker processes would warn otherwise

BASE = "__base__"  # peft's name for "no adapter" inside a mixed batch


class HFEngine:
    def __init__(self, cfg, model_dir: str, gen_batch: int | None = None):
        require("transformers", "cpu")
        require("peft", "cpu")
        from soarlite.engine import unsloth as uns

        self.cfg = cfg
        self.device = "cuda" if (cfg.device != "cpu" and torch.cuda.is_available()) else "cpu"
        unsloth = uns.use_unsloth(cfg.model.use_unsloth, self.device)
        if cfg.model.load_in_4bit:
            require_bnb()
        if unsloth:
            if uns.shared_mode(cfg, self.device):
                uns.prepare_env()  # standby etc.: read when unsloth is imported
            import unsloth as _unsloth  # noqa: F401  (first: it patches transformers and peft before they load)
        # bitsandbytes (when installed, transformers imports it) tries to fetch an optional CPU kernel from a hub at
        # import and warns when it cannot, which is every offline run; the fallback it takes is correct.
        logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # a progress bar per load would drown the run's own display

        if cfg.threads and self.device == "cpu":
            torch.set_num_threads(cfg.threads)
        self.dtype = hardware.pick_dtype(cfg.model.dtype, self.device)
        self.sampler = None  # unsloth's in-process vLLM, when it samples (see soarlite.engine.unsloth.UnslothSampler)
        self.unsloth = bool(unsloth)  # base loaded through unsloth: its fast decode ignores per-row adapters
        if unsloth:  # UNTESTED HERE (needs CUDA + unsloth): one 4-bit copy shared by training and its vLLM
            fast = uns.shared_mode(cfg, self.device)
            self.base, self.tokenizer = uns.load_unsloth(cfg, model_dir, self.dtype, fast_inference=fast)
            if fast:
                self.sampler = uns.UnslothSampler(self, self.base.vllm_engine)
        else:
            kwargs = {"dtype": self.dtype}
            if cfg.model.load_in_4bit:
                from transformers import BitsAndBytesConfig

                kwargs["quantization_config"] = BitsAndBytesConfig(
                    load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=self.dtype
                )
            kwargs["device_map"] = self.device
            self.base = AutoModelForCausalLM.from_pretrained(model_dir, **kwargs)
            self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.base.requires_grad_(False)
        if cfg.model.load_in_4bit and self.device == "cpu":
            hardware.fix_bnb_cpu_gradients(self.base)  # else gradients stop at the first 4-bit layer (see there)
        # Gradient checkpointing (CUDA): transformers checkpoints a decoder layer only while that layer is in
        # training mode; the model stays in eval mode (no dropout), so logprobs(grad=True) flips just those layers.
        self.checkpointing = bool(cfg.model.gradient_checkpointing and self.device == "cuda")
        if self.checkpointing:
            self.base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        # fp16 compute (cards without bf16): dynamic loss scaling, per adapter
        self.scaler = hardware.LossScaler() if self.dtype == torch.float16 else None
        self.versions: dict[str, int] = {}  # bumped whenever an adapter's weights change (samplers cache by it)
        # every end-of-sequence id: the generation_config's list and the tokenizer's (see common.stop_ids)
        self.stop_ids = stop_ids(getattr(self.base, "generation_config", None), self.tokenizer)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.gen_batch = gen_batch or cfg.model.gen_batch
        self.model = None  # the PeftModel, made with the first adapter
        self.optimizers: dict[str, tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR, OptimizerSpec]] = {}

    # ---------------------------------------------------------------------------------------------------- adapters
    def _lora_config(self):
        return lora_config(self.cfg.model)

    @property
    def adapters(self) -> list[str]:
        return [] if self.model is None else list(self.model.peft_config)

    def _params(self, name: str) -> dict[str, torch.nn.Parameter]:
        key = f".{name}."
        return {n: p for n, p in self.model.named_parameters() if "lora_" in n and key in n}

    def create_adapter(self, name: str, optimizer: OptimizerSpec | None = None, copy_from: str | None = None) -> None:
        from peft import get_peft_model

        if name in self.adapters:
            raise ValueError(f"adapter {name!r} exists already")
        # LoRA's A matrices start random: draw them from a stream fixed by the run seed and the adapter's name, so
        # that a run is repeatable whatever else touched torch's global generator before.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(name_seed(self.cfg.seed, name))
            if self.model is None:
                self.model = get_peft_model(self.base, self._lora_config(), adapter_name=name)
                self.model.eval()  # no dropout in rollouts or scoring; gradients flow in eval mode too
            else:
                self.model.add_adapter(name, self._lora_config())
        self._touch(name)
        if copy_from is not None:
            self.copy_adapter(copy_from, name)
        if optimizer is not None:
            self._make_optimizer(name, optimizer)

    def _touch(self, name: str) -> None:
        self.versions[name] = self.versions.get(name, 0) + 1

    def adapter_bytes(self) -> int:
        """Bytes of one adapter in the compute dtype (what a hand-over copy takes), from the base's target layers."""
        targets = tuple(self.cfg.model.target_modules)
        n = 0
        for name, m in self.base.named_modules():
            if name.endswith(targets) and hasattr(m, "in_features") and hasattr(m, "out_features"):
                n += (m.in_features + m.out_features) * self.cfg.model.lora_rank
        return n * torch.empty((), dtype=self.dtype).element_size()

    def _make_optimizer(self, name: str, spec: OptimizerSpec) -> None:
        params = list(self._params(name).values())
        for p in params:
            p.requires_grad_(True)
        if spec.algorithm == "sgd":  # a step in proportion to the gradient (inner.optimizer); no state to keep
            opt = torch.optim.SGD(params, lr=spec.lr, weight_decay=spec.weight_decay)
        elif getattr(self.cfg, "optimizer", "adamw") == "adamw8bit":
            require_bnb()
            import bitsandbytes as bnb

            # bnb's default weight_decay is 1e-2: pass ours; state: 2 uint8 moments + float32 absmax per 256 values
            # (docs/gpu-facts.md §6). Its state is not saved with checkpoints (resume restarts the moments).
            opt = bnb.optim.AdamW8bit(params, lr=spec.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=spec.weight_decay)
        else:
            opt = torch.optim.AdamW(params, lr=spec.lr, weight_decay=spec.weight_decay)
        self.optimizers[name] = (opt, torch.optim.lr_scheduler.LambdaLR(opt, schedule(spec)), spec)

    def copy_adapter(self, src: str, dst: str) -> None:
        src_params = self._params(src)
        dst_params = self._params(dst)
        with torch.no_grad():
            for n, p in dst_params.items():
                p.copy_(src_params[n.replace(f".{dst}.", f".{src}.")])
        self._touch(dst)

    def delete_adapter(self, name: str) -> None:
        self.optimizers.pop(name, None)
        if self.adapters == [name]:  # peft's model needs one adapter: take the LoRA layers out instead
            self.base = self.model.unload()
            self.model = None
            self.versions.pop(name, None)
            if self.sampler is not None:
                self.sampler.forget(name)
            return
        if name in self.model.active_adapters:  # hand the active slot over first, else peft warns at every deletion
            self.model.set_adapter(next(a for a in self.adapters if a != name))
        self.model.delete_adapter(name)
        self.versions.pop(name, None)
        if self.sampler is not None:
            self.sampler.forget(name)

    def save_adapter(self, name: str, path: str, with_optimizer: bool = False, dtype=None) -> None:
        """Standard PEFT folder (adapter_config.json + adapter_model.safetensors), loadable by peft and vLLM.
        `dtype`: cast the tensors (hand-over copies go in the compute dtype; checkpoints keep float32)."""
        from peft import get_peft_model_state_dict
        from safetensors.torch import save_file

        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        state = get_peft_model_state_dict(self.model, adapter_name=name)
        save_file({k: v.detach().to("cpu", dtype=dtype or v.dtype).contiguous() for k, v in state.items()},
                  out / "adapter_model.safetensors")
        self.model.peft_config[name].save_pretrained(str(out))
        if with_optimizer and name in self.optimizers:
            self._save_optimizer(name, out)

    def load_adapter(self, name: str, path: str, optimizer: OptimizerSpec | None = None) -> None:
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        if name not in self.adapters:
            self.create_adapter(name)
        state = load_file(str(Path(path) / "adapter_model.safetensors"), device=self.device)
        result = set_peft_model_state_dict(self.model, state, adapter_name=name)
        missing = [k for k in getattr(result, "missing_keys", []) if "lora_" in k and f".{name}." in k]
        if missing:
            raise ValueError(f"{path}: adapter does not fit this model (missing {missing[0]})")
        self._touch(name)
        if optimizer is not None:
            self._make_optimizer(name, optimizer)
            if (Path(path) / "optimizer.safetensors").exists():
                self._load_optimizer(name, Path(path))

    def _save_optimizer(self, name: str, out: Path) -> None:
        from safetensors.torch import save_file

        opt, sched, _ = self.optimizers[name]
        tensors, meta = {}, {"scheduler_last_epoch": sched.last_epoch, "steps": {}}
        for i, p in enumerate(opt.param_groups[0]["params"]):
            st = opt.state.get(p)
            if st and "exp_avg" in st:  # torch AdamW; adamw8bit's quantized state is not checkpointed
                tensors[f"{i}.exp_avg"] = st["exp_avg"].detach().cpu().contiguous()
                tensors[f"{i}.exp_avg_sq"] = st["exp_avg_sq"].detach().cpu().contiguous()
                meta["steps"][str(i)] = float(st["step"])
        if tensors:
            save_file(tensors, out / "optimizer.safetensors")
        (out / "optimizer.json").write_text(json.dumps(meta))

    def _load_optimizer(self, name: str, src: Path) -> None:
        from safetensors.torch import load_file

        opt, sched, _ = self.optimizers[name]
        meta = json.loads((src / "optimizer.json").read_text())
        tensors = load_file(str(src / "optimizer.safetensors"), device=self.device)
        for i, p in enumerate(opt.param_groups[0]["params"]):
            if str(i) in meta["steps"]:
                opt.state[p] = {
                    "step": torch.tensor(meta["steps"][str(i)]),
                    "exp_avg": tensors[f"{i}.exp_avg"],
                    "exp_avg_sq": tensors[f"{i}.exp_avg_sq"],
                }
        # Put the schedule where it was without stepping it (stepping before an optimiser step warns and skips).
        sched.last_epoch = meta["scheduler_last_epoch"]
        opt.param_groups[0]["lr"] = sched.base_lrs[0] * sched.lr_lambdas[0](sched.last_epoch)

    # ---------------------------------------------------------------------------------------------------- sampling
    @torch.no_grad()
    def generate(
        self, prompts: Sequence[str], adapters: Sequence[str | None], params: SamplingParams, seed: int
    ) -> list[Completion]:
        if len(prompts) != len(adapters):
            raise ValueError("one adapter (or None) per prompt")
        if self.sampler is not None:
            return self.sampler.generate(prompts, adapters, params, seed)
        if self.unsloth and len(set(adapters)) > 1:
            raise RuntimeError(
                "this base was loaded through unsloth, whose fast decode uses the active adapter for every row, and no "
                "vLLM samples for it: mixed-adapter generation would be silently wrong; install vllm (soarlite[gpu]) "
                "for unsloth's shared vLLM, or set model.use_unsloth=false")
        tok = self.tokenizer
        eos = self.stop_ids
        out: list[Completion] = []
        for start in range(0, len(prompts), self.gen_batch):
            chunk = list(prompts[start : start + self.gen_batch])
            names = [a or BASE for a in adapters[start : start + self.gen_batch]]
            enc = tok(chunk, return_tensors="pt", padding=True).to(self.device)
            kwargs = dict(
                max_new_tokens=params.max_new_tokens,
                do_sample=params.temperature > 0,
                pad_token_id=tok.pad_token_id,
                eos_token_id=eos,
            )
            if params.temperature > 0:
                kwargs.update(temperature=params.temperature, top_k=0, top_p=1.0)
            torch.manual_seed(seed + start)  # each chunk its own stream, so results do not depend on batching above
            if self.model is None or set(names) == {BASE}:
                ctx = self.model.disable_adapter() if self.model is not None else nullcontext()
                with ctx:
                    seqs = (self.model or self.base).generate(**enc, **kwargs)
            elif len(set(names)) == 1:
                self.model.set_adapter(names[0])
                seqs = self.model.generate(**enc, **kwargs)
            else:
                seqs = self.model.generate(**enc, adapter_names=names, **kwargs)
            width = enc["input_ids"].shape[1]
            for row, mask, seq in zip(enc["input_ids"], enc["attention_mask"], seqs):
                prompt_ids = row[mask.bool()].tolist()
                ids = seq[width:].tolist()
                ids = cut_at_stop(ids, eos)
                out.append(Completion(prompt_ids, ids, tok.decode(ids, skip_special_tokens=True)))
        return out

    # ---------------------------------------------------------------------------------------------------- scoring
    def logprobs(self, adapter: str | None, samples: Sequence[Completion], grad: bool = False) -> list[torch.Tensor]:
        if not samples:
            return []
        pad = self.tokenizer.pad_token_id
        seqs = [s.prompt_ids + s.ids for s in samples]
        width = max(map(len, seqs))
        ids = torch.full((len(seqs), width), pad, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):  # right padding: positions are then the same as at generation
            ids[i, : len(s)] = torch.tensor(s)
            mask[i, : len(s)] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        if grad and self.sampler is not None:
            self.sampler.release()  # standby: vLLM's KV cache is freed while adapters train
        with torch.set_grad_enabled(grad), self._checkpointed(grad):
            if adapter is None:
                ctx = self.model.disable_adapter() if self.model is not None else nullcontext()
                with ctx:
                    logits = (self.model or self.base)(input_ids=ids, attention_mask=mask, use_cache=False).logits
            else:
                self.model.set_adapter(adapter)
                logits = self.model(input_ids=ids, attention_mask=mask, use_cache=False).logits  # (B, T, V)
                if grad and self.scaler is not None:
                    logits = self.scaler.scale_grad(logits, adapter)  # fp16: the loss scale, applied at the top
            out = []
            for i, s in enumerate(samples):
                p, n = len(s.prompt_ids), len(s.ids)
                # log-softmax one row at a time: a (B, T, V) float32 copy is gigabytes with a 128k vocabulary
                rows = logits[i, p - 1 : p - 1 + n].float().log_softmax(-1)  # (n, V)
                out.append(rows.gather(-1, ids[i, p : p + n, None]).squeeze(-1))  # (n,)
        return out

    def _checkpointed(self, grad: bool):
        """Decoder layers in training mode for one forward with gradients, so transformers checkpoints them."""
        from contextlib import contextmanager

        @contextmanager
        def flip():
            from transformers.modeling_layers import GradientCheckpointingLayer

            layers = [m for m in self.base.modules() if isinstance(m, GradientCheckpointingLayer)]
            for m in layers:
                m.training = True  # this module only: dropout and LoRA dropout below it stay in eval mode
            try:
                yield
            finally:
                for m in layers:
                    m.training = False

        return flip() if grad and self.checkpointing else nullcontext()

    def step(self, name: str) -> float:
        opt, sched, spec = self.optimizers[name]
        lr = opt.param_groups[0]["lr"]
        params = opt.param_groups[0]["params"]
        if self.scaler is None or self.scaler.unscale_and_check(name, params):
            if spec.max_grad_norm is not None:  # after unscaling: the bound is on the true gradient
                torch.nn.utils.clip_grad_norm_(params, spec.max_grad_norm)
            opt.step()
        sched.step()  # a skipped fp16 step (inf/nan gradients) still moves the schedule: it counts steps
        opt.zero_grad(set_to_none=True)
        self._touch(name)
        return lr

