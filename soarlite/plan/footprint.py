"""Peak memory: the base's weights, the LoRA adapters and their AdamW state, a training micro-batch's activations,
the sampler's KV cache (or vLLM's share of the card), and the allocator's slack; `memory()` adds them up."""

from __future__ import annotations

from dataclasses import dataclass

from soarlite.config import Config
from soarlite.engine.common import max_model_len, vllm_max_num_seqs
from soarlite.hardware import GIB, Card
from soarlite.plan.shapes import Shape, prompt_tokens, students_in_flight

# Every figure below is an assumption, not a measurement: the one GPU session so far (an H200, 2026-11-26) ran out of
# time before benchmarks/gpu_check.py measured memory (see docs/performance.md). They are here, named, so a user can see what the estimate rests on and replace it.
CUDA_CONTEXT_GIB = 0.5  # CUDA context + kernels: held on the card, not counted by torch's allocator
ALLOCATOR_SLACK = 0.10  # torch's caching allocator reserves more than it hands out (fragmentation)
VLLM_SHARE = 0.45  # the default gpu_memory_utilization (config `gpu_memory_utilization`; vLLM takes this share)
VLLM_MAX_SEQS = 256  # vLLM's default max_num_seqs (soarlite passes its own: engine.common.vllm_max_num_seqs)
VLLM_BATCHED_TOKENS = 8192  # vLLM's profiling batch (max_num_batched_tokens) on cards < 70 GiB and A100s
# CUDA graphs: INSIDE vLLM's share in 0.33 (its profiler subtracts an estimate from the KV budget,
# VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS=1 by default since 0.21), not beside it.
VLLM_GRAPHS_GIB = 0.5
ADAMW8BIT_BYTES = 2 + 8 / 256  # bitsandbytes AdamW8bit: two uint8 moments + a float32 absmax per 256 values each
VLLM_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
NF4_BLOCK = 64  # bitsandbytes NF4 block: one float32 absmax per 64 weights (no double quantisation)


@dataclass
class Item:
    label: str
    bytes: float
    note: str = ""


def _act_bytes(dtype: str) -> int:
    return 4 if dtype == "float32" else 2



def _layer_units(shape: Shape) -> int:
    """Values per token one decoder layer keeps for its backward pass (in the compute dtype): RMSNorm inputs in
    float32 (2 units each), norm outputs, q/k/v and their rotated copies, the attention output, the residual, and
    gate, up, act(gate), act(gate)*up in the MLP. Flash/memory-efficient attention keeps no T x T matrix."""
    h, q, kv, i = shape.hidden, shape.q_dim, shape.kv_dim, shape.intermediate
    return 8 * h + 3 * q + 3 * kv + 4 * i


def _nograd_units(shape: Shape) -> int:
    """Values per token live at once in a forward pass without gradients (prefill): the MLP's three
    intermediate-sized tensors and two hidden-sized ones."""
    return 3 * shape.intermediate + 2 * shape.hidden


def train_activation_bytes(shape: Shape, micro_batch: int, seq: int, new: int, ab: int, checkpointing: bool) -> dict[str, float]:
    """Peak transient memory of one micro-batch of rloo.update (forward with gradients, KL reference forward,
    backward), split into the decoder layers and the logits.

    layers:  with checkpointing, each layer's input (B*T*hidden) is kept, and one layer at a time is recomputed
             with its full working set, which its backward roughly doubles; without, every layer's working set is kept.
    logits:  the engine scores with the full (B, T, vocab) logits in the compute dtype, and per sample keeps the
             float32 log-softmax of its completion rows for the backward: B*new*vocab*4 bytes; while those are held,
             the reference forward (or the backward's logits gradient) adds another B*T*vocab in the compute dtype,
             and two float32 (new, vocab) rows are live at a time."""
    tok = micro_batch * seq
    units = _layer_units(shape)
    if checkpointing:
        layers = shape.layers * tok * shape.hidden * ab + 2 * tok * units * ab
    else:
        layers = (shape.layers + 1) * tok * units * ab
    logits = micro_batch * new * shape.vocab * 4 + micro_batch * seq * shape.vocab * ab + 2 * new * shape.vocab * 4
    return {"layers": layers, "logits": logits}


def base_weight_bytes(shape: Shape, four_bit: bool, ab: int) -> float:
    if not four_bit:
        return shape.params * ab
    lin = shape.linear_params
    return lin * 0.5 + lin / NF4_BLOCK * 4 + (shape.embed_params + shape.other_params) * ab


def unsloth_standby_share(mem_gib: float) -> float:
    """unsloth's own gpu_memory_utilization under standby (vLLM >= 0.11; docs/gpu-facts.md §1, vllm_utils.py:4462-4497):
    a tier of a tenth of the card's GiB, times 0.95. T4 0.760, 24 GB cards 0.784, A100-40 0.855, 48/80 GB 0.879."""
    tenth = mem_gib * 0.1
    tier = next(u for lim, u in ((4.0, 0.925), (2.5, 0.9), (2.0, 0.825), (1.4, 0.8), (1.0, 0.775), (0.0, 0.75))
                if tenth >= lim)
    return tier * 0.95


def vllm_share(cfg: Config, card: Card, mode: str) -> float:
    """vLLM's share of the card: the recipe's gpu_memory_utilization; in shared mode with standby (the default:
    engine.unsloth.prepare_env) unsloth's tier replaces it (UNSLOTH_VLLM_STANDBY_UTIL_OVERRIDE=1 turns that off)."""
    import os

    if mode == "unsloth" and os.environ.get("UNSLOTH_VLLM_STANDBY", "1") == "1" \
            and os.environ.get("UNSLOTH_VLLM_STANDBY_UTIL_OVERRIDE") != "1":
        return unsloth_standby_share(card.mem_gib)
    return getattr(cfg, "gpu_memory_utilization", VLLM_SHARE)


def vllm_batch_defaults(cfg: Config, card: Card) -> tuple[int, int]:
    """(max_num_seqs, max_num_batched_tokens) vLLM profiles with: soarlite passes max_num_seqs
    (engine.common.vllm_max_num_seqs); max_num_batched_tokens is vLLM 0.33's per-card default (arg_utils.py:
    2940-3039): 16384 on cards of >= 70 GiB that are not A100s (H100, H200), else 8192."""
    big = card.mem_gib >= 70 and not card.name.lower().startswith("a100")
    return vllm_max_num_seqs(cfg), 16384 if big else 8192


def memory(cfg: Config, shape: Shape, card: Card | None, mode: str, dtype: str) -> dict:
    """The peak memory breakdown: items, allocated (bytes torch hands out at the peak), needed (card bytes), notes,
    and for vLLM the number of full-length sequences its KV cache holds at once (kv_seqs)."""
    m, o, i = cfg.model, cfg.outer, cfg.inner
    ab = _act_bytes(dtype)
    four = m.load_in_4bit
    ckpt = m.gradient_checkpointing and mode != "cpu"
    p_teacher, p_student = prompt_tokens(cfg, shape)
    items: list[Item] = []
    notes: list[str] = []

    w = base_weight_bytes(shape, four, ab)
    wdesc = (f"{shape.linear_params / 1e9:.2f}B linear params x 0.5 byte + NF4 absmax (1 float32 per {NF4_BLOCK}); "
             f"{(shape.embed_params + shape.other_params) / 1e9:.2f}B embedding/lm_head/norm params x {ab} bytes") if four else \
        f"{shape.params / 1e9:.2f}B params x {ab} bytes"
    trainer_weights = mode in ("hf", "vllm", "cpu")  # unsloth: the weights live inside vLLM's share
    if trainer_weights:
        items.append(Item("base weights (trainer)", w, wdesc))

    lora = shape.lora_params(m.lora_rank, m.target_modules)
    s_flight, wave = students_in_flight(cfg)
    candidates = max(0, o.g - wave)  # median students of earlier waves, kept (with their optimiser) until the step ends
    with_opt = s_flight + candidates + 1  # students and the teacher hold AdamW state
    adapters = 2 + s_flight + candidates
    items.append(Item("LoRA adapters", adapters * lora * 4,
                      f"{adapters} x {lora / 1e6:.1f}M params x 4 bytes (teacher, baseline, {s_flight} students in flight"
                      f"{f', {candidates} kept median students' if candidates else ''})"))
    eight = getattr(cfg, "optimizer", "adamw") == "adamw8bit"
    opt_bytes = ADAMW8BIT_BYTES if eight else 8
    items.append(Item("AdamW state", with_opt * lora * opt_bytes,
                      f"{with_opt} adapters x " + ("2 uint8 moments + absmax (adamw8bit)" if eight else "2 float32 moments")))
    items.append(Item("gradients (one adapter at a time)", lora * 4, "float32, freed after each step"))

    seq_s = min(m.max_seq_len, p_student + i.max_new_tokens)
    seq_t = min(m.max_seq_len, p_teacher + o.max_new_tokens)
    st = train_activation_bytes(shape, i.micro_batch, seq_s, max(1, seq_s - p_student), ab, ckpt)
    te = train_activation_bytes(shape, o.micro_batch, seq_t, max(1, seq_t - p_teacher), ab, ckpt)
    student_peak, teacher_peak = sum(st.values()), sum(te.values())
    train = st if student_peak >= teacher_peak else te
    who = (f"student micro-batch {i.micro_batch} x {seq_s} tokens" if train is st
           else f"teacher micro-batch {o.micro_batch} x {seq_t} tokens")
    train_items = [
        Item("activations, decoder layers", train["layers"], f"{who}, checkpointing {'on' if ckpt else 'off'}"),
        Item("activations, logits", train["logits"], f"{who}, vocab {shape.vocab}"),
    ]

    persistent = sum(it.bytes for it in items)
    sample_items: list[Item] = []
    vllm_reserved = 0.0
    kv_seqs = None
    kv_room = one_seq = 0.0
    kvb = shape.kv_bytes_per_token(ab)
    longest = max(seq_s, seq_t)
    if mode in ("hf", "cpu"):
        calls = [  # (sequences in the call, prompt tokens, new tokens)
            (o.g * o.n, p_teacher, o.max_new_tokens),
            (s_flight * i.batch_size * i.group_size, p_student, i.max_new_tokens),
            ((s_flight + 1) * o.M, p_student, i.max_new_tokens),
        ]
        best = (0.0, 0.0, 0.0, 0)
        for seqs, p, n in calls:
            b = min(m.gen_batch, seqs)
            kv = b * (p + n) * kvb
            # the prompts' prefill without gradients: the MLP's gate, up and act(gate) of one layer and two
            # hidden-sized tensors live at a time, then the last-token logits
            prefill = b * p * _nograd_units(shape) * ab + b * shape.vocab * 4
            logits = 2 * b * shape.vocab * 4  # float32 logits and the processed scores of one decoding step
            if kv + max(prefill, logits) > best[0] + max(best[1], best[2]):
                best = (kv, prefill, logits, b)
        kv, prefill, logits, b = best
        sample_items = [
            Item("KV cache (transformers generate)", kv, f"model.gen_batch {m.gen_batch} -> {b} sequences at once, "
                 f"{kvb // 1024} KiB per token"),
            Item("prefill and sampling buffers", max(prefill, logits), "one layer's working set for the prompts, logits"),
        ]
    else:
        lora_rank = next((r for r in VLLM_RANKS if r >= m.lora_rank), m.lora_rank)
        slots = (s_flight + 3) * shape.lora_params(lora_rank, m.target_modules) * ab
        share = vllm_share(cfg, card, mode)
        vllm_reserved = share * card.mem_gib * GIB
        max_seqs, batched = vllm_batch_defaults(cfg, card)
        fixed = w + slots + batched * _nograd_units(shape) * ab + max_seqs * shape.vocab * 4 * 2 + VLLM_GRAPHS_GIB * GIB
        kv_room = vllm_reserved - fixed
        seqs_fit = kv_seqs = kv_room / (longest * kvb) if kv_room > 0 else 0.0
        # vLLM's start-up check (v1/core/kv_cache_planning.py): the KV cache must hold ONE sequence of max_model_len
        # (in 16-token blocks) plus the null block, else it refuses to start
        mml = max_model_len(cfg)
        one_seq = (-(-mml // 16) * 16 + 16) * kvb
        notes.append(f"vLLM takes {share:.1%} of the card ({vllm_reserved / GIB:.1f} GiB): weights {w / GIB:.2f}, "
                     f"LoRA slots {slots / GIB:.2f} ({s_flight + 3} x rank {lora_rank}), profiling ({max_seqs} seqs, "
                     f"{batched} tokens) and CUDA graphs (inside the share in vLLM 0.33) {(fixed - w - slots) / GIB:.2f}, "
                     f"KV cache {max(0, kv_room) / GIB:.2f} GiB = {seqs_fit:.0f} sequences of {longest} tokens at once")
        if kv_room < one_seq:
            notes.append(f"vLLM will refuse to start: its KV cache ({max(0, kv_room) / GIB:.2f} GiB) cannot hold one "
                         f"sequence of max_model_len {mml} ({one_seq / GIB:.2f} GiB); raise gpu_memory_utilization or "
                         "lower model.max_seq_len")
        else:
            notes.append(f"vLLM's start-up check passes: one max_model_len {mml} sequence needs {one_seq / GIB:.2f} GiB "
                         "of KV cache")
        if longest > mml:
            notes.append(f"the longest prompt + max_new_tokens (about {longest}) exceeds model.max_seq_len {mml}: vLLM "
                         "cuts such completions at max_model_len")
        what = ("the one copy of the weights, shared with the trainer" if mode == "unsloth"
                else "its own copy of the weights")
        sample_items = [Item("vLLM's share of the card", vllm_reserved,
                             f"gpu_memory_utilization {share:.3f}: KV cache, LoRA slots and {what}")]
        if seqs_fit < 1:
            notes.append("vLLM's share leaves no room for the KV cache of one sequence")

    train_sum = sum(it.bytes for it in train_items)
    sample_sum = sum(it.bytes for it in sample_items) if mode in ("hf", "cpu") else 0.0
    allocated = persistent + max(train_sum, sample_sum)
    if mode in ("hf", "cpu"):
        peak_items = train_items if train_sum >= sample_sum else sample_items
        other = sample_items if peak_items is train_items else train_items
        items += peak_items + [Item(f"({it.label})", 0.0, f"{it.bytes / GIB:.2f} GiB, not at the same time as the peak")
                               for it in other]
    else:
        items += train_items + sample_items
    needed = allocated * (1 + ALLOCATOR_SLACK) + CUDA_CONTEXT_GIB * GIB + vllm_reserved
    if mode in ("unsloth", "vllm") and card is not None:
        # vLLM sleeps while adapters train (standby / sleep mode): its KV cache, LoRA slots and graph pools are
        # released; in shared mode the weights (inside its share) stay. Peak = the larger of the two phases.
        sampling = persistent * (1 + ALLOCATOR_SLACK) + CUDA_CONTEXT_GIB * GIB + vllm_reserved
        training = allocated * (1 + ALLOCATOR_SLACK) + CUDA_CONTEXT_GIB * GIB + (w if mode == "unsloth" else 0.0)
        needed = max(sampling, training)
        notes.append(f"vLLM sleeps while adapters train: sampling phase {sampling / GIB:.1f} GiB, training phase "
                     f"{training / GIB:.1f} GiB")
    if mode != "cpu":
        items.append(Item("allocator slack and CUDA context", allocated * ALLOCATOR_SLACK + CUDA_CONTEXT_GIB * GIB,
                          f"{ALLOCATOR_SLACK:.0%} of the allocated peak + {CUDA_CONTEXT_GIB} GiB"))
    if mode == "vllm":
        notes.append("two copies of the base (transformers trainer + vLLM; vLLM's sleeps to CPU RAM while adapters "
                     "train); with unsloth installed, engine auto shares one")
    parts = {  # bytes, by what they are (benchmarks/gpu_check.py compares these with torch)
        "base": w if trainer_weights else 0.0, "adapters": adapters * lora * 4, "adamw": with_opt * lora * opt_bytes,
        "student_train": student_peak, "teacher_train": teacher_peak, "sample": sample_sum, "vllm": vllm_reserved,
    }
    return {"items": items, "allocated": allocated, "needed": needed, "notes": notes, "kv_seqs": kv_seqs,
            "room": kv_seqs is None or (kv_seqs >= 1 and kv_room >= one_seq), "parts": parts}
