"""Time per outer step: tokens sampled and trained per phase, a roofline per phase from the card's spec-sheet peak
FLOP/s and bandwidth times utilisation factors and overheads (RATES: assumed, apart from the transformers + peft
costs fitted to two sessions on one H200, CALIBRATION), or rates measured through the real engine (`measure`, which
replaces them)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from soarlite.config import Config
from soarlite.grading import resolve_workers
from soarlite.hardware import GIB, Card
from soarlite.plan.footprint import VLLM_MAX_SEQS
from soarlite.plan.shapes import Shape, model_shape, prompt_tokens, ray_workers, students_in_flight

# Most figures below are assumptions (see docs/performance.md). The exception: the hf engine's decoding overheads and
# the per-micro-batch and per-token training costs of the transformers + peft trainer (engines hf and vllm), fitted
# to ONE card's measurements (below, CALIBRATION). They are here, named, so a user can see what the estimate rests
# on and replace it.
# bitsandbytes' 4-bit matmul for more than one row dequantises the whole weight to 16-bit and multiplies: per call it
# reads 0.5 byte, writes 2 and reads 2 per parameter. So a batched decoding step moves ~4.5 bytes per 4-bit parameter.
BNB_DEQUANT_BYTES = 4.5
GRADES_PER_S = 150.0  # math_verify gradings per second per worker (measured on one core, ../shared/docs/environment.md)


@dataclass(frozen=True)
class Rates:
    """Fractions of the card's peak an engine reaches (assumed), per-step overheads, and a fixed cost per training
    micro-batch and a per-token training cost (fitted for hf/vllm, see CALIBRATION; assumed elsewhere)."""

    train: float  # of peak FLOP/s, LoRA training on the (4-bit) base
    prefill: float  # of peak FLOP/s
    decode_compute: float  # of peak FLOP/s, batched decoding when compute-bound
    decode_bw: float  # of peak bandwidth, decoding when memory-bound
    step_overhead_s: float  # per decoding step, per layer: kernel launches and Python
    adapter_overhead_s: float  # per decoding step, per layer, per LoRA module, per adapter in a chunk (peft)
    train_mb_overhead_s: float = 0.0  # per training micro-batch: launches, Python, syncs (on top of the FLOPs)
    # the trainer's cost per token beyond the roofline, as a FLOP rate that is the same on every card: training FLOPs /
    # (this x 1e12) seconds more (fitted for hf/vllm, see CALIBRATION; 0: none)
    train_token_tflops: float = 0.0


# CALIBRATION: the hf engine's overheads and the transformers + peft trainer's costs.
# Measured 2026-11-26 on ONE card, an NVIDIA H200 (143771 MiB, driver 580.159.04; python 3.12.3, torch 2.11.0+cu130,
# CUDA 13.0, transformers 5.17.0, peft 0.21.2, bitsandbytes 0.50.2), in two sessions, by
#   python3 benchmarks/gpu_check.py --settings math-t4 --set inner.max_new_tokens=128 outer.max_new_tokens=128
# (benchmarks/results/2026-11-26-h200/gpu_check_t4_128.log; the second session: 2026-11-26-h200-b/, also math-24gb
# and 384 new tokens): Llama-3.2-1B shape (random weights, so every rollout runs to max_new_tokens), 4-bit NF4 base,
# HFEngine, 8 students x 32 rollouts = 256, model.gen_batch 128, student prompt 125 tokens (the planner's estimate at
# outer.max_new_tokens=128), 128 new tokens:
#   M  one mixed-adapter call, 2 chunks of 128 rows (4 adapters in each) x 128 steps       37.4 s
#   S  one call per student: 8 calls of 32 rows (one adapter) x 128 steps                   44.4 s
# The roofline parts at the assumed utilisations (H200 989 TFLOP/s, 4800 GB/s; 4.904e9 bytes of weight traffic per
# step, 32,768 KV bytes per token, mean context 125 + 64 = 189): a step of 128 rows 2.37 ms, of 32 rows 2.13 ms;
# prefill 0.200 s for 256 prompts, 0.025 s for 32. What is left is overhead per decoding step:
#   M: (37.4 - 256 x 2.37e-3 - 0.200) / 256  = 142.9 ms = 16 layers x (step + 7 modules x 4 adapters x adapter)
#   S: (44.4 - 1024 x 2.13e-3 - 8 x 0.025) / 1024 = 41.0 ms = 16 layers x (step + 7 modules x 1 adapter x adapter)
#   => 21 x adapter = (142.9 - 41.0) / 16 ms -> adapter = 0.303 ms; step = 41.0 / 16 - 7 x 0.303 = 0.442 ms.
# The two points differ in batch (128 against 32 rows) as well as in adapters, and the fit puts all the difference on
# the adapters (the roofline says the batch adds 0.24 ms a step). Rounded: M 37.0 s, S 44.0 s. Not used in the fit:
# the mixed call at 384 new tokens (prompt 253), 117.2 s and 123.7 s in the two sessions: 111.2 s (-5%, -10%); M again
# in the second session, 45.1 s (-18%: the same call, 20% slower than in the first); math-24gb's mixed call (512
# rollouts, 4 chunks of 2 adapters), 54.0 s: 39.6 s (-27%, docs/performance.md).
# Training, RLOO updates with the KL reference and gradient checkpointing (4 passes), micro-batches of 4 sequences:
#   T1 the 8 students' updates, 256 x 253 tokens = 64 micro-batches (first session)       26.7 s  0.417 s a micro-batch
#   T2 one math-t4 student, 32 x 253 = 8 micro-batches (second session)                   3.01 s  0.376
#   T3 one math-24gb student, 64 x 253 = 16 micro-batches (second session)                6.00 s  0.375
#   T4 one math-t4 student at 384 new tokens, 32 x 637 = 8 micro-batches (second session)  6.86 s  0.857
# A micro-batch of 4 x 253 = 1,012 tokens is 1,012 x 2 x 1.236e9 FLOP-params x 4 passes = 1.000e13 FLOPs, 0.0405 s at
# 25% of peak; of 4 x 637 tokens 2.519e13 FLOPs, 0.1019 s. The first fit (from T1 alone) charged the rest, 0.377 s, to
# a fixed cost per micro-batch; T4 shows the time grows with the tokens almost in proportion, so the rest is
# overhead + FLOPs / R, with R a rate the roofline does not have: at 253 tokens (mean of T1-T3, 0.389) 0.349 s, at 637
# 0.755 s => 1/R = (0.755 - 0.349) / (2.519e13 - 1.000e13) -> R = 37.4e12 FLOP/s; overhead = 0.349 - 1.000e13 / R =
# 0.081 s. Rounded to 37 TFLOP/s and 0.08 s, the planner gives T1 25.0 s (-6%), T2 3.13 (+4%), T3 6.25 (+4%), T4 6.90
# (+1%). On the H200 the path trains at ~3% of the bf16 peak. R is taken as the same on every card (a per-token cost
# of the eager transformers + peft + bitsandbytes path, on top of the roofline, which scales with the card); read as a
# lower utilisation instead (3.3% of peak), the H200 points come out the same but a slower card trains slower in
# proportion: math-t4's student training on a T4 63 min a step instead of 12. One card cannot tell the two apart
# (docs/performance.md).
# These are one card's figures (eager transformers: the decoding overheads are mostly kernel launches and Python, so
# the host CPU matters too); on other cards they are the best figure there is, not a measurement (tests/test_plan.py
# holds them).
HF_STEP_OVERHEAD_S = 0.44e-3
HF_ADAPTER_OVERHEAD_S = 0.30e-3
PEFT_TRAIN_MB_OVERHEAD_S = 0.08
PEFT_TRAIN_TOKEN_TFLOPS = 37.0

RATES = {
    "hf": Rates(0.25, 0.40, 0.30, 0.50, HF_STEP_OVERHEAD_S, HF_ADAPTER_OVERHEAD_S, PEFT_TRAIN_MB_OVERHEAD_S,
                PEFT_TRAIN_TOKEN_TFLOPS),
    # vLLM samples (its overheads assumed, not measured); training is still transformers + peft (fitted)
    "vllm": Rates(0.25, 0.50, 0.50, 0.60, 0.1e-3, 0.0, PEFT_TRAIN_MB_OVERHEAD_S, PEFT_TRAIN_TOKEN_TFLOPS),
    # unsloth's patched trainer: its costs per micro-batch and per token are not measured (0 here, so its training
    # time is a lower bound; the transformers + peft figures above say the real ones are not 0)
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
    """Seconds to sample `seqs` sequences of `new` tokens after `prompt` tokens, `adapters` adapters with equal
    contiguous shares of the rows (as the inner loop and the evaluation order them): a roofline plus overheads."""
    r = RATES[mode]
    peak = card.tflops * 1e12
    bw = card.bandwidth_gbs * 1e9
    ab = 4 if mode == "cpu" else 2
    kvb = shape.kv_bytes_per_token(ab)
    lin_bytes = shape.linear_params * (BNB_DEQUANT_BYTES if cfg.model.load_in_4bit else ab)
    weight_traffic = lin_bytes + shape.vocab * shape.hidden * ab
    flops_tok = 2 * shape.flop_params
    n_lora = len(cfg.model.target_modules)

    def step_s(batch: float, ctx: float, in_batch: int) -> float:
        compute = batch * flops_tok / (peak * r.decode_compute)
        mem = (weight_traffic + batch * ctx * kvb) / (bw * r.decode_bw)
        overhead = shape.layers * (r.step_overhead_s + n_lora * in_batch * r.adapter_overhead_s)
        return max(compute, mem) + overhead

    prefill = seqs * prompt * flops_tok / (peak * r.prefill)
    if mode in ("hf", "cpu"):  # chunks of gen_batch, each runs to its longest sequence
        # peft runs each adapter of a chunk on its own rows: a chunk pays for the adapters whose rows it holds
        total, start = 0.0, 0
        per = seqs / max(1, adapters)
        while start < seqs:
            b = min(cfg.model.gen_batch, seqs - start)
            in_chunk = min(adapters, math.floor((start + b - 1) / per) - math.floor(start / per) + 1)
            total += new * step_s(b, prompt + new / 2, in_chunk)
            start += b
        return total + prefill
    conc = max(1.0, min(seqs, VLLM_MAX_SEQS, kv_seqs or VLLM_MAX_SEQS))
    return seqs * new / conc * step_s(conc, prompt + new / 2, adapters) + prefill


def _train_s(sequences: int, seq: int, mode: str, card: Card, shape: Shape, cfg: Config, kl: bool,
             micro_batches: int = 0) -> float:
    """Forward with gradients (2 FLOPs/param/token), backward through the frozen base to the LoRA weights (2 more),
    the recompute of checkpointing (2), and the KL reference forward (2) when kl_coef > 0, at a share of the card's
    peak; plus the same FLOPs at the engine's card-independent rate (RATES[mode].train_token_tflops, when set) and its
    fixed cost per micro-batch (RATES[mode].train_mb_overhead_s) times `micro_batches`."""
    r = RATES[mode]
    passes = 2 + (1 if cfg.model.gradient_checkpointing and mode != "cpu" else 0) + (1 if kl else 0)
    flops = sequences * seq * 2 * shape.flop_params * passes
    per_token = flops / (r.train_token_tflops * 1e12) if r.train_token_tflops else 0.0
    return flops / (card.tflops * 1e12 * r.train) + per_token + micro_batches * r.train_mb_overhead_s


def step_time(cfg: Config, shape: Shape, card: Card, mode: str, valid_rate: float, kv_seqs: float | None = None) -> dict[str, float]:
    o, i = cfg.outer, cfg.inner
    p_t, p_s = prompt_tokens(cfg, shape)
    s_flight, wave = students_in_flight(cfg)
    waves = math.ceil(o.g / wave)
    seq_s = min(cfg.model.max_seq_len, p_s + i.max_new_tokens)
    seq_t = min(cfg.model.max_seq_len, p_t + o.max_new_tokens)
    t = {"teacher sampling": _decode_s(math.ceil(o.g * o.n / valid_rate), p_t, o.max_new_tokens, 1, mode, card, shape, cfg, kv_seqs)}
    # executor: ray: the waves spread over the workers (wave w on worker w mod N), each with its own engine; a phase
    # takes as long as the busiest worker's share of it (adapter transfers, a few MB per wave, are left out)
    workers = ray_workers(cfg)
    sample, train, evals = [0.0] * workers, [0.0] * workers, [0.0] * workers
    for w in range(waves):
        k = min(wave, o.g - w * wave) * o.r
        sample[w % workers] += i.steps * _decode_s(k * i.batch_size * i.group_size, p_s, i.max_new_tokens, k, mode, card, shape, cfg, kv_seqs)
        per_student = i.batch_size * i.group_size  # each student's update: its own micro-batches
        train[w % workers] += i.steps * _train_s(k * per_student, seq_s, mode, card, shape, cfg, i.kl_coef > 0,
                                                 k * math.ceil(per_student / i.micro_batch))
        n_eval = k + (1 if w == 0 else 0)
        evals[w % workers] += _decode_s(n_eval * o.M, p_s, i.max_new_tokens, n_eval, mode, card, shape, cfg, kv_seqs)
    t["student sampling"] = max(sample)
    t["student training"] = max(train)
    t["evaluation (greedy)"] = max(evals)
    t["teacher update"] = _train_s(o.g * o.n, seq_t, mode, card, shape, cfg, o.kl_coef > 0,
                                   math.ceil(o.g * o.n / o.micro_batch))
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
    waves = math.ceil(o.g / students_in_flight(cfg)[1])
    share = math.ceil(waves / ray_workers(cfg)) / waves  # executor: ray: the busiest worker's share of the waves
    return {
        "teacher sampling": tk["teacher"]["generated"] / dec,
        "student sampling": share * tk["students"]["generated"] / dec,
        "student training": share * rollouts * seq_s / trn,
        "evaluation (greedy)": share * tk["evaluation"]["generated"] / dec,
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
