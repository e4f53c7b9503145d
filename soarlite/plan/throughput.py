"""Time per outer step: tokens sampled and trained per phase, a roofline per phase from the card's spec-sheet peak
FLOP/s and bandwidth times assumed utilisation factors (RATES), or rates measured through the real engine
(`measure`, which replaces the assumptions)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from soarlite.config import Config
from soarlite.grading import resolve_workers
from soarlite.hardware import GIB, Card
from soarlite.plan.footprint import VLLM_MAX_SEQS
from soarlite.plan.shapes import Shape, model_shape, prompt_tokens, students_in_flight

# Every figure below is an assumption, not a measurement: no GPU has checked them in this project yet (see
# docs/performance.md). They are here, named, so a user can see what the estimate rests on and replace it.
# bitsandbytes' 4-bit matmul for more than one row dequantises the whole weight to 16-bit and multiplies: per call it
# reads 0.5 byte, writes 2 and reads 2 per parameter. So a batched decoding step moves ~4.5 bytes per 4-bit parameter.
BNB_DEQUANT_BYTES = 4.5
GRADES_PER_S = 150.0  # math_verify gradings per second per worker (measured on one core, ../shared/docs/environment.md)


@dataclass(frozen=True)
class Rates:
    """Fractions of the card's peak an engine reaches (assumed), and per-step overheads (assumed)."""

    train: float  # of peak FLOP/s, LoRA training on the (4-bit) base
    prefill: float  # of peak FLOP/s
    decode_compute: float  # of peak FLOP/s, batched decoding when compute-bound
    decode_bw: float  # of peak bandwidth, decoding when memory-bound
    step_overhead_s: float  # per decoding step, per layer: kernel launches and Python
    adapter_overhead_s: float  # per decoding step, per layer, per LoRA module, per adapter in a mixed batch (peft)


RATES = {
    "hf": Rates(0.25, 0.40, 0.30, 0.50, 0.4e-3, 0.06e-3),
    "vllm": Rates(0.25, 0.50, 0.50, 0.60, 0.1e-3, 0.0),  # training is still transformers+peft
    "unsloth": Rates(0.40, 0.50, 0.50, 0.60, 0.1e-3, 0.0),
    "cpu": Rates(0.30, 0.30, 0.30, 0.30, 0.2e-3, 0.03e-3),
}
CPU = Card("cpu", 0.0, 0.1, 20, (0, 0))  # a 2-core machine: ~0.1 TFLOP/s fp32 peak, 20 GB/s (assumed)


def tokens(cfg: Config, valid_rate: float) -> dict[str, dict[str, float]]:
    o, i = cfg.outer, cfg.inner
    teacher_samples = math.ceil(o.g * o.n / valid_rate)
    rollouts = o.g * o.r * i.steps * i.batch_size * i.group_size
    answers = (o.g * o.r + 1) * o.M
    return {
        "teacher": {"samples": teacher_samples, "generated": teacher_samples * o.max_new_tokens,
                    "trained": o.g * o.n * o.max_new_tokens},
        "students": {"samples": rollouts, "generated": rollouts * i.max_new_tokens, "trained": rollouts * i.max_new_tokens},
        "evaluation": {"samples": answers, "generated": answers * i.max_new_tokens, "trained": 0},
    }



def _decode_s(seqs: int, prompt: int, new: int, adapters: int, mode: str, card: Card, shape: Shape, cfg: Config,
              kv_seqs: float | None) -> float:
    """Seconds to sample `seqs` sequences of `new` tokens after `prompt` tokens (a roofline with assumed rates)."""
    r = RATES[mode]
    peak = card.tflops * 1e12
    bw = card.bandwidth_gbs * 1e9
    ab = 4 if mode == "cpu" else 2
    kvb = shape.kv_bytes_per_token(ab)
    lin_bytes = shape.linear_params * (BNB_DEQUANT_BYTES if cfg.model.load_in_4bit else ab)
    weight_traffic = lin_bytes + shape.vocab * shape.hidden * ab
    flops_tok = 2 * shape.flop_params
    n_lora = len(cfg.model.target_modules)

    def step_s(batch: float, ctx: float) -> float:
        compute = batch * flops_tok / (peak * r.decode_compute)
        mem = (weight_traffic + batch * ctx * kvb) / (bw * r.decode_bw)
        overhead = shape.layers * (r.step_overhead_s + n_lora * adapters * r.adapter_overhead_s)
        return max(compute, mem) + overhead

    prefill = seqs * prompt * flops_tok / (peak * r.prefill)
    if mode in ("hf", "cpu"):  # chunks of gen_batch, each runs to its longest sequence
        total, left = 0.0, seqs
        while left > 0:
            b = min(cfg.model.gen_batch, left)
            total += new * step_s(b, prompt + new / 2)
            left -= b
        return total + prefill
    conc = max(1.0, min(seqs, VLLM_MAX_SEQS, kv_seqs or VLLM_MAX_SEQS))
    return seqs * new / conc * step_s(conc, prompt + new / 2) + prefill


def _train_s(sequences: int, seq: int, mode: str, card: Card, shape: Shape, cfg: Config, kl: bool) -> float:
    """Forward with gradients (2 FLOPs/param/token), backward through the frozen base to the LoRA weights (2 more),
    the recompute of checkpointing (2), and the KL reference forward (2) when kl_coef > 0."""
    passes = 2 + (1 if cfg.model.gradient_checkpointing and mode != "cpu" else 0) + (1 if kl else 0)
    return sequences * seq * 2 * shape.flop_params * passes / (card.tflops * 1e12 * RATES[mode].train)


def step_time(cfg: Config, shape: Shape, card: Card, mode: str, valid_rate: float, kv_seqs: float | None = None) -> dict[str, float]:
    o, i = cfg.outer, cfg.inner
    p_t, p_s = prompt_tokens(cfg, shape)
    s_flight, wave = students_in_flight(cfg)
    waves = math.ceil(o.g / wave)
    seq_s = min(cfg.model.max_seq_len, p_s + i.max_new_tokens)
    seq_t = min(cfg.model.max_seq_len, p_t + o.max_new_tokens)
    t = {"teacher sampling": _decode_s(math.ceil(o.g * o.n / valid_rate), p_t, o.max_new_tokens, 1, mode, card, shape, cfg, kv_seqs)}
    sample = train = evals = 0.0
    for w in range(waves):
        k = min(wave, o.g - w * wave) * o.r
        sample += i.steps * _decode_s(k * i.batch_size * i.group_size, p_s, i.max_new_tokens, k, mode, card, shape, cfg, kv_seqs)
        train += i.steps * _train_s(k * i.batch_size * i.group_size, seq_s, mode, card, shape, cfg, i.kl_coef > 0)
        n_eval = k + (1 if w == 0 else 0)
        evals += _decode_s(n_eval * o.M, p_s, i.max_new_tokens, n_eval, mode, card, shape, cfg, kv_seqs)
    t["student sampling"] = sample
    t["student training"] = train
    t["evaluation (greedy)"] = evals
    t["teacher update"] = _train_s(o.g * o.n, seq_t, mode, card, shape, cfg, o.kl_coef > 0)
    graded = o.g * o.r * i.steps * i.batch_size * i.group_size + (o.g * o.r + 1) * o.M + math.ceil(o.g * o.n / valid_rate)
    t["grading"] = graded / (GRADES_PER_S * resolve_workers(cfg.grader_workers))
    return t



def measured_step_time(cfg: Config, shape: Shape, valid_rate: float, rates: dict) -> dict[str, float]:
    """Per-phase seconds from measured rates: generated tokens / decode rate, trained tokens / training rate."""
    tk = tokens(cfg, valid_rate)
    dec, trn = rates["decode_tokens_per_s"], rates["train_tokens_per_s"]
    p_t, p_s = prompt_tokens(cfg, shape)
    o, i = cfg.outer, cfg.inner
    seq_s = min(cfg.model.max_seq_len, p_s + i.max_new_tokens)
    seq_t = min(cfg.model.max_seq_len, p_t + o.max_new_tokens)
    rollouts = tk["students"]["samples"]
    graded = rollouts + tk["evaluation"]["samples"] + tk["teacher"]["samples"]
    return {
        "teacher sampling": tk["teacher"]["generated"] / dec,
        "student sampling": tk["students"]["generated"] / dec,
        "student training": rollouts * seq_s / trn,
        "evaluation (greedy)": tk["evaluation"]["generated"] / dec,
        "teacher update": o.g * o.n * seq_t / trn,
        "grading": graded / (GRADES_PER_S * resolve_workers(cfg.grader_workers)),
    }


def measure(cfg: Config, model_dir: str, decode_batch: int | None = None, new_tokens: int | None = None,
            train_seq: int | None = None) -> dict:
    """Rates measured through the real engine on this machine.

    decoding: one mixed-adapter sampling call of `decode_batch` sequences (default: the students' call, at most
    model.gen_batch and 256) of `new_tokens` (default: inner.max_new_tokens, at most 64); the rate counts every
    sequence up to the longest one (the engine decodes the batch until its longest sequence ends), which is the
    upper-bound convention of the token counts it is applied to.
    training: one RLOO micro-batch of inner.micro_batch sequences of `train_seq` tokens (default: the students'
    prompt + completion, at most 512) with the KL reference. Returns tokens/s, and on CUDA the peak allocated."""
    import time

    import torch

    from soarlite import rloo
    from soarlite.engine import Completion, OptimizerSpec, SamplingParams, make_engine

    shape = model_shape(cfg)
    p_teacher, p_student = prompt_tokens(cfg, shape)
    s_flight, _ = students_in_flight(cfg)
    i = cfg.inner
    decode_batch = decode_batch or min(cfg.model.gen_batch, s_flight * i.batch_size * i.group_size, 256)
    new_tokens = new_tokens or min(i.max_new_tokens, 64)
    train_seq = train_seq or min(cfg.model.max_seq_len, p_student + i.max_new_tokens, 512)
    engine = make_engine(cfg, model_dir)
    cuda = torch.cuda.is_available() and cfg.device != "cpu"
    engine.create_adapter("m0", OptimizerSpec(1e-5, 10))
    engine.create_adapter("m1", OptimizerSpec(1e-5, 10))
    prompts = ["Solve: 12 + 30 = ?"] * decode_batch
    names = ["m0", "m1"] * (decode_batch // 2) + ["m0"] * (decode_batch % 2)
    engine.generate(prompts[:2], names[:2], SamplingParams(1.0, 4), seed=0)  # warm-up
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    outs = engine.generate(prompts, names, SamplingParams(1.0, new_tokens), seed=1)
    if cuda:
        torch.cuda.synchronize()
    dec_s = time.perf_counter() - t0
    slots = decode_batch * max(1, max(len(c.ids) for c in outs))
    vocab = len(engine.tokenizer)
    g = torch.Generator().manual_seed(0)
    mb = i.micro_batch
    head = min(16, train_seq // 2)
    fake = [Completion(torch.randint(3, vocab, (head,), generator=g).tolist(),
                       torch.randint(3, vocab, (train_seq - head,), generator=g).tolist(), "") for _ in range(mb)]
    t0 = time.perf_counter()
    rloo.update(engine, "m0", fake, [1.0 if j % 2 else -1.0 for j in range(mb)], i.kl_coef, mb)
    if cuda:
        torch.cuda.synchronize()
    train_s = time.perf_counter() - t0
    out = {
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "decode_tokens_per_s": slots / dec_s,
        "train_tokens_per_s": mb * train_seq / train_s,
        "decode_batch": decode_batch,
    }
    if cuda:
        out["peak_allocated_gib"] = torch.cuda.max_memory_allocated() / GIB
    return out
