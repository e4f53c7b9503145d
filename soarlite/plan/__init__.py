"""What a recipe will cost, before anything loads: tokens, peak GPU memory, whether it fits, and time.

`soarlite plan --recipe NAME [key=value ...] [--gpu NAME] [--gpu-mem GB]` reads the model's shape (config.json in a
local folder or the Hugging Face cache, else a built-in table of known models) and counts, per outer step and per run:

  tokens   teacher: ceil(g*n / valid_rate) samples x outer.max_new_tokens generated, g*n trained;
           students: g*r * inner.steps * batch_size * group_size rollouts x inner.max_new_tokens, generated and trained;
           evaluations: (g*r + 1) * M greedy answers x inner.max_new_tokens (every student and the baseline).
           Counts of generated tokens are upper bounds (every sample runs to its limit).
  memory   see `memory()`: the 4-bit base, LoRA adapters and AdamW state of the students in flight, activations of a
           training micro-batch (with gradient checkpointing, and the vocabulary-sized logits, which dominate with
           a 128k vocabulary), and the sampler's KV cache (transformers: model.gen_batch sequences at once;
           vLLM: what its share of the card leaves after weights and LoRA slots).
  time     a roofline per phase from the card's spec-sheet peak FLOP/s and bandwidth, times utilisation factors
           that are ASSUMPTIONS (the constants in throughput.py; no measurement on a GPU backs them yet). `--measure` replaces
           them with rates measured on this machine through the real engine.

Nothing here imports torch (only `measure()` does): planning a T4 run from a laptop is the point.

The package, by concern: `shapes` (the model's shape, prompt lengths, students in flight), `footprint` (peak memory),
`throughput` (tokens and time per step, measured rates), `result` (the Plan), `display` (the text), and here what puts them
together (`make_plan`) and the setting to lower when it does not fit (`suggest`). The names below are re-exported,
so `from soarlite import plan; plan.make_plan(...)` works as before. The planner never imports the loop.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math

from soarlite.config import Config
from soarlite.hardware import GIB, Card, dtype_name
from soarlite.plan.display import _gib, _hours, _num, header_comment, render
from soarlite.plan.errors import DoesNotFit, PlanError
from soarlite.plan.footprint import (
    ALLOCATOR_SLACK,
    CUDA_CONTEXT_GIB,
    NF4_BLOCK,
    VLLM_BATCHED_TOKENS,
    VLLM_GRAPHS_GIB,
    VLLM_MAX_SEQS,
    VLLM_RANKS,
    VLLM_SHARE,
    Item,
    _act_bytes,
    _layer_units,
    _nograd_units,
    base_weight_bytes,
    memory,
    train_activation_bytes,
)
from soarlite.plan.result import Plan
from soarlite.plan.shapes import (
    CHARS_PER_TOKEN,
    KNOWN,
    Shape,
    model_shape,
    prompt_tokens,
    ray_workers,
    shape_from_config,
    students_in_flight,
)
from soarlite.plan.throughput import (
    BNB_DEQUANT_BYTES,
    CPU,
    GRADES_PER_S,
    RATES,
    Rates,
    _decode_s,
    _train_s,
    measure,
    measured_step_time,
    step_time,
    tokens,
)

_prompt_tokens = prompt_tokens  # the name tests and benchmarks know

__all__ = [
    "ALLOCATOR_SLACK", "BNB_DEQUANT_BYTES", "CHARS_PER_TOKEN", "CPU", "CUDA_CONTEXT_GIB", "GIB", "GRADES_PER_S",
    "KNOWN", "NF4_BLOCK", "RATES", "VLLM_BATCHED_TOKENS", "VLLM_GRAPHS_GIB", "VLLM_MAX_SEQS", "VLLM_RANKS",
    "VLLM_SHARE", "Card", "DoesNotFit", "Item", "Plan", "PlanError", "Rates", "Shape", "_act_bytes", "_decode_s",
    "_gib", "_hours", "_layer_units", "_nograd_units", "_num", "_prompt_tokens", "_train_s", "base_weight_bytes",
    "header_comment", "make_plan", "measure", "measured_step_time", "memory", "model_shape", "prompt_tokens",
    "render", "resolve_mode", "shape_from_config", "step_time", "students_in_flight", "suggest", "tokens",
    "train_activation_bytes",
]


def resolve_mode(cfg: Config, card: Card | None, unsloth: bool | None = None) -> str:
    """Which engine the run will use on that card (soarlite.engine.engine_mode): cpu; unsloth = "shared" (engine
    auto or hf with unsloth and vllm installed: unsloth's in-process vLLM on the training weights, one base copy);
    vllm = "two copies" (VLLMEngine: vLLM's own copy beside the trainer's; engine vllm, or auto without unsloth);
    hf = "transformers" (engine hf without unsloth). `unsloth`: assume unsloth (and vllm) are there or not."""
    if card is None or cfg.device == "cpu":
        return "cpu"
    if unsloth is None:
        setting = cfg.model.use_unsloth
        found = importlib.util.find_spec("unsloth") is not None and importlib.util.find_spec("vllm") is not None
        unsloth = setting is True or (setting == "auto" and found)
    if cfg.engine == "vllm":
        return "vllm"
    if unsloth:
        return "unsloth"
    return "vllm" if cfg.engine == "auto" else "hf"


def make_plan(cfg: Config, card: Card | None, valid_rate: float = 0.5, unsloth: bool | None = None,
              measured: dict | None = None, _suggest: bool = True) -> Plan:
    if not 0 < valid_rate <= 1:
        raise PlanError("--valid-rate: must be in (0, 1]")
    shape = model_shape(cfg)
    mode = resolve_mode(cfg, card, unsloth)
    dtype = dtype_name(cfg.model.dtype, "cpu" if mode == "cpu" else "cuda", card.capability if card else None)
    mem = memory(cfg, shape, card, mode, dtype)
    items, allocated, needed, notes = mem["items"], mem["allocated"], mem["needed"], mem["notes"]
    fits = None if mode == "cpu" or card is None else (needed <= card.mem_gib * GIB and mem["room"])
    knob, suggestion = ("", "")
    if fits is False and _suggest:
        knob, suggestion = suggest(cfg, card, valid_rate, unsloth, items)
    timing_card = card if mode != "cpu" else CPU
    if measured:
        times = measured_step_time(cfg, shape, valid_rate, measured)
        source = (f"measured on this machine ({measured.get('device', '?')}): decoding "
                  f"{measured['decode_tokens_per_s']:,.0f} tokens/s at {measured.get('decode_batch', '?')} sequences "
                  f"at once, training {measured['train_tokens_per_s']:,.0f} tokens/s")
    else:
        times = step_time(cfg, shape, timing_card, mode, valid_rate, mem["kv_seqs"])
        source = (f"ASSUMED: {timing_card.name} spec-sheet peak {timing_card.tflops:g} TFLOP/s, "
                  f"{timing_card.bandwidth_gbs:g} GB/s, times the utilisation factors in soarlite/plan/throughput.py (RATES; "
                  "transformers + peft costs fitted on one H200); generated lengths at their limits; measure with "
                  "--measure")
    if dtype == "float16":
        notes.append("no bf16 on this card: float16 compute with dynamic loss scaling")
    if cfg.executor == "ray":
        w = ray_workers(cfg)
        waves = math.ceil(cfg.outer.g / students_in_flight(cfg)[1])
        notes.append(f"executor ray: {w} worker{'s' if w > 1 else ''}{' (ray.workers=0: give ray.workers=N to plan for N)' if not cfg.ray.workers else ''}, "
                     f"each with its own base copy and the memory above; {waves} wave{'s' if waves > 1 else ''} of whole "
                     f"datasets per step, so at most {waves} busy (more need more datasets, outer.g, or smaller waves)")
    return Plan(cfg, shape, card, mode, dtype, valid_rate, tokens(cfg, valid_rate), items, allocated, needed, fits,
                knob, suggestion, times, source, notes)


def suggest(cfg: Config, card: Card, valid_rate: float, unsloth: bool | None, items: list[Item]) -> tuple[str, str]:
    """The setting to lower, and a value that fits when one single change does it."""
    # the largest part a setting can shrink (vLLM's share is fixed; the slack follows the rest)
    biggest = max((it for it in items if "share" not in it.label and "slack" not in it.label), key=lambda it: it.bytes)
    m, i, o = cfg.model, cfg.inner, cfg.outer
    candidates: list[tuple[str, list]] = []
    if not m.load_in_4bit:
        candidates.append(("model.load_in_4bit", [True]))
    half = lambda v: [v // 2**k for k in range(1, 12) if v // 2**k >= 1]  # noqa: E731
    by_label = {
        "activations": [("inner.micro_batch", half(i.micro_batch)), ("outer.micro_batch", half(o.micro_batch))],
        "KV cache": [("model.gen_batch", half(m.gen_batch))],
        "vLLM": [("inner.max_new_tokens", half(i.max_new_tokens)), ("inner.students_in_flight", half(o.g * o.r))],
        "LoRA": [("inner.students_in_flight", [r * o.r for r in half(o.g)] or [o.r])],
        "AdamW": [("inner.students_in_flight", [r * o.r for r in half(o.g)] or [o.r])],
        "base weights": [("model.load_in_4bit", [True])],
    }
    for key, cands in by_label.items():
        if key in biggest.label:
            candidates = cands + candidates
    candidates += [("inner.micro_batch", half(i.micro_batch)), ("outer.micro_batch", half(o.micro_batch)),
                   ("model.gen_batch", half(m.gen_batch)), ("inner.students_in_flight", [r * o.r for r in half(o.g)]),
                   ("inner.max_new_tokens", half(i.max_new_tokens))]
    first = candidates[0][0] if candidates else "model.base (a smaller model)"
    for key, values in candidates:
        for v in values:
            sec, name = key.split(".")
            trial = dataclasses.replace(cfg, **{sec: dataclasses.replace(getattr(cfg, sec), **{name: v})})
            try:
                p = make_plan(trial, card, valid_rate, unsloth, _suggest=False)
            except PlanError:
                continue
            if p.fits:
                return key, f"{key}={str(v).lower() if isinstance(v, bool) else v} fits ({p.needed / GIB:.1f} of {card.mem_gib:g} GiB)"
    return first, "no single setting makes it fit: use a smaller model.base or a larger card"
