"""The plan as text: the table `soarlite plan` prints, and the line a recipe's header carries."""

from __future__ import annotations

import math

from soarlite.hardware import GIB
from soarlite.plan.result import Plan


def _gib(b: float) -> str:
    return f"{b / GIB:6.2f} GiB"


def _hours(s: float) -> str:
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


def _num(x: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= div:
            return f"{x / div:.2f}{unit}"
    return f"{x:.0f}"


MODE_WORDS = {  # what `soarlite plan` calls each mode, and the copies of the base on the card
    "unsloth": ("shared (unsloth's in-process vLLM on the training weights)", 1),
    "vllm": ("two copies (vLLM's own beside the trainer's; vLLM sleeps while adapters train)", 2),
    "hf": ("transformers (transformers + peft sampling)", 1),
    "cpu": ("transformers + peft, CPU", 0),
}


def _mode_words(mode: str) -> str:
    words, copies = MODE_WORDS.get(mode, (mode, 1))
    return f"{words}; {copies} base cop{'y' if copies == 1 else 'ies'} on the card" if mode != "cpu" else words


def render(plan: Plan, max_hours: float | None = None) -> str:
    c, s, o = plan.cfg, plan.shape, plan.cfg.outer
    card = plan.card
    lines = [
        f"recipe {c.name}: {s.name} ({s.params / 1e9:.2f}B params, {s.layers} layers, vocab {s.vocab}), "
        f"{'4-bit NF4' if c.model.load_in_4bit else plan.dtype} base, LoRA rank {c.model.lora_rank}",
        f"engine {plan.mode}: {_mode_words(plan.mode)}, compute dtype {plan.dtype}, "
        f"card {f'{card.name} ({card.mem_gib:g} GiB)' if card else 'none (give --gpu or --gpu-mem to check the fit)'}",
        "",
        f"tokens per outer step (upper bounds: every sample at its limit; teacher valid rate {plan.valid_rate:.0%}"
        f"{' assumed' if plan.valid_rate == 0.5 else ''}):",
    ]
    for kind, d in plan.tokens.items():
        lines.append(f"  {kind:<11} {_num(d['samples']):>8} samples  {_num(d['generated']):>8} generated  "
                     f"{_num(d['trained']):>8} trained")
    gen = sum(d["generated"] for d in plan.tokens.values())
    trn = sum(d["trained"] for d in plan.tokens.values())
    lines.append(f"  per run ({o.steps} steps): {_num(gen * o.steps)} generated, {_num(trn * o.steps)} trained")
    lines += ["", "peak GPU memory:" if plan.mode != "cpu" else "peak memory (RAM of a CPU run; no GPU in the plan):"]
    for it in plan.memory:
        lines.append(f"  {it.label:<42} {_gib(it.bytes) if it.bytes else ' ' * 10}  {it.note}")
    lines.append(f"  {'allocated by torch at the peak':<42} {_gib(plan.allocated)}  (compare metrics.jsonl peak_mem_mb)")
    if plan.mode != "cpu":
        lines.append(f"  {'card memory needed':<42} {_gib(plan.needed)}")
    lines += [f"  note: {n}" for n in plan.notes]
    if plan.fits is True:
        lines.append(f"fits: yes, {plan.needed / GIB:.1f} of {card.mem_gib:g} GiB")
    elif plan.fits is False:
        lines.append(f"fits: NO, needs {plan.needed / GIB:.1f} of {card.mem_gib:g} GiB; lower {plan.knob}: {plan.suggestion}")
    lines += ["", f"time per outer step ({plan.time_source}):"]
    for k, v in plan.time_s.items():
        lines.append(f"  {k:<22} {_hours(v):>8}")
    first = max(o.window, o.promote_from + 1)  # a full window of rewards, and not before outer.promote_from
    lines.append(f"  {'total':<22} {_hours(plan.step_s):>8}   per run ({o.steps} steps): {_hours(plan.run_s)}; "
                 f"first promotion possible after {first} steps: {_hours(plan.step_s * first)}")
    if max_hours:
        k = max(0, math.floor(max_hours * 3600 / plan.step_s)) if plan.step_s else o.steps
        lines.append(f"  in {max_hours:g} h: about {min(k, o.steps)} outer steps "
                     f"(soarlite run --recipe {c.name} --max-hours {max_hours:g}, then --resume)")
    return "\n".join(lines)


def header_comment(plan: Plan) -> str:
    """The lines a recipe's header carries (for recipes/*.yaml; regenerate with `soarlite plan`)."""
    o = plan.cfg.outer
    gen = sum(d["generated"] for d in plan.tokens.values())
    return (f"# plan ({plan.card.name if plan.card else 'cpu'}, engine {plan.mode}): {plan.needed / GIB:.1f} GiB needed"
            f"{f' of {plan.card.mem_gib:g}' if plan.card else ''}; <= {_num(gen)} tokens generated per outer step; "
            f"~{_hours(plan.step_s)} per step, ~{_hours(plan.run_s)} for {o.steps} steps (assumed throughput)")
