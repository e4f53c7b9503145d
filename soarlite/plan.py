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
           that are ASSUMPTIONS (the constants below; no measurement on a GPU backs them yet). `--measure` replaces
           them with rates measured on this machine through the real engine.

Nothing here imports torch (only `measure()` does): planning a T4 run from a laptop is the point.
"""

from __future__ import annotations

import dataclasses
import glob
import importlib.util
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from soarlite.config import Config, RecipeError
from soarlite.hardware import GIB, Card, dtype_name


class PlanError(RecipeError):
    """The planner cannot work out a figure (an unknown model, say); the message says what to give it."""


class DoesNotFit(RecipeError):
    """`soarlite run` found a card the recipe does not fit; the message names the setting to lower."""


# ------------------------------------------------------------------------------------------------ model shapes
@dataclass(frozen=True)
class Shape:
    name: str
    vocab: int
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    tied: bool
    qkv_bias: bool = False

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    def modules(self) -> dict[str, tuple[int, int]]:
        """(in, out) of every linear layer of one decoder layer, by its name in Llama/Qwen2 checkpoints."""
        h, i = self.hidden, self.intermediate
        return {
            "q_proj": (h, self.q_dim), "k_proj": (h, self.kv_dim), "v_proj": (h, self.kv_dim), "o_proj": (self.q_dim, h),
            "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h),
        }

    @property
    def linear_params(self) -> int:
        return self.layers * sum(a * b for a, b in self.modules().values())

    @property
    def embed_params(self) -> int:
        return self.vocab * self.hidden * (1 if self.tied else 2)  # input embedding, and lm_head when not tied

    @property
    def other_params(self) -> int:
        """norms and q/k/v biases: kept in 16-bit like the embeddings."""
        bias = self.layers * (self.q_dim + 2 * self.kv_dim) if self.qkv_bias else 0
        return (2 * self.layers + 1) * self.hidden + bias

    @property
    def params(self) -> int:
        return self.linear_params + self.embed_params + self.other_params

    @property
    def flop_params(self) -> int:
        """Parameters a token's forward pass multiplies with: every linear layer and the lm_head (2 FLOPs each)."""
        return self.linear_params + self.vocab * self.hidden

    def lora_params(self, rank: int, targets: list[str]) -> int:
        mods = self.modules()
        return self.layers * sum(rank * (mods[t][0] + mods[t][1]) for t in targets if t in mods)

    def kv_bytes_per_token(self, act_bytes: int) -> int:
        return 2 * self.layers * self.kv_dim * act_bytes


# Shapes from the models' config.json files on the Hugging Face Hub (unreachable from here, so kept as a table).
KNOWN: dict[str, Shape] = {
    s.name.lower(): s
    for s in [
        Shape("Llama-3.2-1B-Instruct", 128256, 2048, 8192, 16, 32, 8, 64, True),
        Shape("Llama-3.2-3B-Instruct", 128256, 3072, 8192, 28, 24, 8, 128, True),
        Shape("Llama-3.1-8B-Instruct", 128256, 4096, 14336, 32, 32, 8, 128, False),
        Shape("Qwen2.5-0.5B-Instruct", 151936, 896, 4864, 24, 14, 2, 64, True, qkv_bias=True),
        Shape("Qwen2.5-1.5B-Instruct", 151936, 1536, 8960, 28, 12, 2, 128, True, qkv_bias=True),
        Shape("Qwen2.5-3B-Instruct", 151936, 2048, 11008, 36, 16, 2, 128, True, qkv_bias=True),
        Shape("Qwen2.5-7B-Instruct", 152064, 3584, 18944, 28, 28, 4, 128, False, qkv_bias=True),
    ]
}


def shape_from_config(cfg: dict, name: str) -> Shape:
    try:
        heads = int(cfg["num_attention_heads"])
        hidden = int(cfg["hidden_size"])
        return Shape(
            name=name, vocab=int(cfg["vocab_size"]), hidden=hidden, intermediate=int(cfg["intermediate_size"]),
            layers=int(cfg["num_hidden_layers"]), heads=heads, kv_heads=int(cfg.get("num_key_value_heads") or heads),
            head_dim=int(cfg.get("head_dim") or hidden // heads), tied=bool(cfg.get("tie_word_embeddings", False)),
            qkv_bias=bool(cfg.get("attention_bias", cfg.get("model_type") == "qwen2")),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise PlanError(f"model.base: {name}: config.json lacks {e} (the planner knows Llama- and Qwen2-style models)") from None


def _hf_cache_config(repo_id: str) -> Path | None:
    home = Path(os.environ.get("HF_HUB_CACHE") or Path(os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface") / "hub")
    hits = sorted(glob.glob(str(home / f"models--{repo_id.replace('/', '--')}" / "snapshots" / "*" / "config.json")))
    return Path(hits[-1]) if hits else None


def model_shape(cfg: Config) -> Shape:
    """The recipe's model shape: the toy world's settings, a local folder's config.json, the Hub cache's, or the
    table of known models (by the last part of the Hub id)."""
    base = cfg.model.base
    if base == "toy":
        from soarlite import toy

        s, _ = toy.recipe_world(cfg.toy)
        h, heads = int(s["hidden"]), int(s["heads"])
        return Shape("toy", int(s["vocab_size"]), h, int(s["ffn"]), int(s["layers"]), heads, heads, h // heads, True)
    local = Path(base) / "config.json"
    path = local if local.is_file() else _hf_cache_config(base)
    if path is not None:
        return shape_from_config(json.loads(path.read_text()), base)
    known = KNOWN.get(base.rstrip("/").split("/")[-1].lower())
    if known is None:
        raise PlanError(
            f"model.base: {base}: no config.json there or in the Hugging Face cache, and not a model the planner "
            f"knows ({', '.join(s.name for s in KNOWN.values())}); give a local folder"
        )
    return known


# ------------------------------------------------------------------------------------------------ assumptions
# Every figure below is an assumption, not a measurement: no GPU has checked them in this project yet (see
# docs/performance.md). They are here, named, so a user can see what the estimate rests on and replace it.
CUDA_CONTEXT_GIB = 0.5  # CUDA context + kernels: held on the card, not counted by torch's allocator
ALLOCATOR_SLACK = 0.10  # torch's caching allocator reserves more than it hands out (fragmentation)
VLLM_SHARE = 0.45  # VLLMEngine's gpu_memory_utilization (its default; vLLM takes this share of the card)
VLLM_MAX_SEQS = 256  # vLLM's default max_num_seqs
VLLM_BATCHED_TOKENS = 8192  # vLLM's profiling batch (max_num_batched_tokens)
VLLM_GRAPHS_GIB = 0.5  # CUDA graphs vLLM captures
VLLM_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
NF4_BLOCK = 64  # bitsandbytes NF4 block: one float32 absmax per 64 weights (no double quantisation)
# bitsandbytes' 4-bit matmul for more than one row dequantises the whole weight to 16-bit and multiplies: per call it
# reads 0.5 byte, writes 2 and reads 2 per parameter. So a batched decoding step moves ~4.5 bytes per 4-bit parameter.
BNB_DEQUANT_BYTES = 4.5
CHARS_PER_TOKEN = 4.0  # English prompt text in a BPE vocabulary (the toy world's tokenizer is one char a token)
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


# ------------------------------------------------------------------------------------------------ the plan
@dataclass
class Item:
    label: str
    bytes: float
    note: str = ""


@dataclass
class Plan:
    cfg: Config
    shape: Shape
    card: Card | None
    mode: str  # hf | vllm | unsloth | cpu
    dtype: str
    valid_rate: float
    tokens: dict[str, dict[str, float]]  # per outer step: kind -> {generated, trained}
    memory: list[Item]
    allocated: float  # bytes torch's allocator will hand out at the peak (what metrics.jsonl's peak_mem_mb shows)
    needed: float  # bytes of card memory needed (allocated + slack + CUDA context + vLLM's reservation)
    fits: bool | None  # None: no card to check against
    knob: str  # what to lower when it does not fit
    suggestion: str
    time_s: dict[str, float]  # per outer step, by phase
    time_source: str
    notes: list[str] = field(default_factory=list)

    @property
    def step_s(self) -> float:
        return sum(self.time_s.values())

    @property
    def run_s(self) -> float:
        return self.step_s * self.cfg.outer.steps


def _act_bytes(dtype: str) -> int:
    return 4 if dtype == "float32" else 2


def _prompt_tokens(cfg: Config, shape: Shape) -> tuple[int, int]:
    """(teacher prompt, student prompt) tokens, estimated from the prompt texts: ~4 characters a token, one for the
    toy world's character tokenizer; a student prompt holds a question of about half the teacher's output limit."""
    from soarlite import prompts

    cpt = 1.0 if cfg.model.base == "toy" else CHARS_PER_TOKEN
    teacher = {"paper": prompts.TEACHER_PROMPT_PAPER}.get(cfg.prompts.teacher, cfg.prompts.teacher)
    student = {"paper": prompts.STUDENT_PROMPT_PAPER}.get(cfg.prompts.student, cfg.prompts.student)
    if "toy" in (cfg.prompts.teacher, cfg.prompts.student):
        from soarlite import toy

        teacher = toy.TEACHER_PROMPT if cfg.prompts.teacher == "toy" else teacher
        student = toy.STUDENT_PROMPT if cfg.prompts.student == "toy" else student
    question = min(200, cfg.outer.max_new_tokens // 2)
    return math.ceil(len(teacher) / cpt) + 1, math.ceil(len(student) / cpt) + question + 1


def resolve_mode(cfg: Config, card: Card | None, unsloth: bool | None = None) -> str:
    """Which engine the run will use on that card: cpu, hf (transformers sampling), vllm (VLLMEngine: a second copy
    of the base in vLLM) or unsloth (engine: hf with unsloth's in-process vLLM on the same weights)."""
    if card is None or cfg.device == "cpu":
        return "cpu"
    if unsloth is None:
        setting = cfg.model.use_unsloth
        unsloth = setting is True or (setting == "auto" and importlib.util.find_spec("unsloth") is not None)
    engine = cfg.engine if cfg.engine != "auto" else "vllm"
    if unsloth and engine == "hf":
        return "unsloth"
    return engine


def students_in_flight(cfg: Config) -> tuple[int, int]:
    """(students trained at once, datasets per wave): whole datasets per wave, as the loop does it."""
    o = cfg.outer
    wave = min(o.g, max(1, (cfg.inner.students_in_flight or o.g * o.r) // o.r))
    return wave * o.r, wave


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


def memory(cfg: Config, shape: Shape, card: Card | None, mode: str, dtype: str) -> dict:
    """The peak memory breakdown: items, allocated (bytes torch hands out at the peak), needed (card bytes), notes,
    and for vLLM the number of full-length sequences its KV cache holds at once (kv_seqs)."""
    m, o, i = cfg.model, cfg.outer, cfg.inner
    ab = _act_bytes(dtype)
    four = m.load_in_4bit
    ckpt = m.gradient_checkpointing and mode != "cpu"
    p_teacher, p_student = _prompt_tokens(cfg, shape)
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
    items.append(Item("AdamW state", with_opt * lora * 8, f"{with_opt} adapters x 2 float32 moments"))
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
        vllm_reserved = VLLM_SHARE * card.mem_gib * GIB
        fixed = w + slots + VLLM_BATCHED_TOKENS * _nograd_units(shape) * ab + VLLM_MAX_SEQS * shape.vocab * 4 * 2 \
            + VLLM_GRAPHS_GIB * GIB
        kv_room = vllm_reserved - fixed
        seqs_fit = kv_seqs = kv_room / (longest * kvb) if kv_room > 0 else 0.0
        notes.append(f"vLLM takes {VLLM_SHARE:.0%} of the card ({vllm_reserved / GIB:.1f} GiB): weights {w / GIB:.2f}, "
                     f"LoRA slots {slots / GIB:.2f} ({s_flight + 3} x rank {lora_rank}), profiling and graphs "
                     f"{(fixed - w - slots) / GIB:.2f}, KV cache {max(0, kv_room) / GIB:.2f} GiB = {seqs_fit:.0f} "
                     f"sequences of {longest} tokens at once")
        sample_items = [Item("vLLM's share of the card", vllm_reserved,
                             f"gpu_memory_utilization {VLLM_SHARE}: KV cache, LoRA slots and "
                             f"{'the one copy of the weights, shared with the trainer' if mode == 'unsloth' else 'its own copy of the weights'}")]
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
    if mode != "cpu":
        items.append(Item("allocator slack and CUDA context", allocated * ALLOCATOR_SLACK + CUDA_CONTEXT_GIB * GIB,
                          f"{ALLOCATOR_SLACK:.0%} of the allocated peak + {CUDA_CONTEXT_GIB} GiB"))
    if mode == "vllm":
        notes.append("engine vllm holds two copies of the base (transformers trainer + vLLM); engine: hf with unsloth "
                     "installed shares one")
    parts = {  # bytes, by what they are (benchmarks/plan_vs_torch.py compares these with torch)
        "base": w if trainer_weights else 0.0, "adapters": adapters * lora * 4, "adamw": with_opt * lora * 8,
        "student_train": student_peak, "teacher_train": teacher_peak, "sample": sample_sum, "vllm": vllm_reserved,
    }
    return {"items": items, "allocated": allocated, "needed": needed, "notes": notes, "kv_seqs": kv_seqs,
            "room": kv_seqs is None or kv_seqs >= 1, "parts": parts}


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
    p_t, p_s = _prompt_tokens(cfg, shape)
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
    t["grading"] = graded / (GRADES_PER_S * cfg.grader_workers)
    return t


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
                  f"{timing_card.bandwidth_gbs:g} GB/s, times the utilisation factors in soarlite/plan.py (RATES); "
                  "generated lengths at their limits; measure with --measure")
    if dtype == "float16":
        notes.append("no bf16 on this card: float16 compute with dynamic loss scaling")
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


# ------------------------------------------------------------------------------------------------ measured rates
def measured_step_time(cfg: Config, shape: Shape, valid_rate: float, rates: dict) -> dict[str, float]:
    """Per-phase seconds from measured rates: generated tokens / decode rate, trained tokens / training rate."""
    tk = tokens(cfg, valid_rate)
    dec, trn = rates["decode_tokens_per_s"], rates["train_tokens_per_s"]
    p_t, p_s = _prompt_tokens(cfg, shape)
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
        "grading": graded / (GRADES_PER_S * cfg.grader_workers),
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
    p_teacher, p_student = _prompt_tokens(cfg, shape)
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


# ------------------------------------------------------------------------------------------------ display
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


def render(plan: Plan, max_hours: float | None = None) -> str:
    c, s, o = plan.cfg, plan.shape, plan.cfg.outer
    card = plan.card
    lines = [
        f"recipe {c.name}: {s.name} ({s.params / 1e9:.2f}B params, {s.layers} layers, vocab {s.vocab}), "
        f"{'4-bit NF4' if c.model.load_in_4bit else plan.dtype} base, LoRA rank {c.model.lora_rank}",
        f"engine {plan.mode}{' (transformers + peft, CPU)' if plan.mode == 'cpu' else ''}, compute dtype {plan.dtype}, "
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
    lines.append(f"  {'total':<22} {_hours(plan.step_s):>8}   per run ({o.steps} steps): {_hours(plan.run_s)}; "
                 f"first promotion possible after {o.window} steps: {_hours(plan.step_s * o.window)}")
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
