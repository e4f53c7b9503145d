"""Hardware facts about one CUDA card: what card this is, which dtype it gets, fp16 loss scaling, out-of-memory facts
and messages, and the CPU fix for bitsandbytes' 4-bit gradients.

The bottom layer: nothing here imports anything of soarlite. Nothing here imports torch or bitsandbytes at module
level either: `soarlite plan` reads the card table without torch, and a CPU machine never imports anything
CUDA-only. Each function imports what it needs when called.

What is tested where (see docs/performance.md): the card table, dtype choice per compute capability (with a
monkeypatched capability), the loss scaler, the CPU fix for bitsandbytes' 4-bit gradients and the error messages run
on a CPU in tests/test_gpu_cpu.py; tests/test_gpu.py (marked `gpu`) needs a CUDA card.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

GIB = 2**30


# ------------------------------------------------------------------------------------------------ cards
@dataclass(frozen=True)
class Card:
    """A CUDA card as the planner sees it. Figures are vendor spec-sheet values (dense tensor-core FP16/BF16 peak,
    memory bandwidth), rounded; `mem_gib` is what nvidia-smi reports as total memory. They set the time estimates
    only through the utilisation assumptions in soarlite/plan/throughput.py, and are replaced by measurement with --measure."""

    name: str
    mem_gib: float
    tflops: float  # dense FP16/BF16 tensor-core peak
    bandwidth_gbs: float
    capability: tuple[int, int]

    @property
    def bf16(self) -> bool:
        return self.capability >= (8, 0)


CARDS: dict[str, Card] = {
    c.name: c
    for c in [
        Card("t4", 15.0, 65, 320, (7, 5)),  # Colab / Kaggle: 15360 MiB, no bf16
        Card("v100-16gb", 16.0, 125, 900, (7, 0)),
        Card("v100-32gb", 32.0, 125, 900, (7, 0)),
        Card("a10g", 22.5, 70, 600, (8, 6)),  # AWS: 23028 MiB
        Card("l4", 22.5, 121, 300, (8, 9)),  # 23034 MiB
        Card("rtx3090", 24.0, 71, 936, (8, 6)),
        Card("rtx4090", 24.0, 165, 1008, (8, 9)),
        Card("a6000", 48.0, 155, 768, (8, 6)),
        Card("l40s", 48.0, 362, 864, (8, 9)),
        Card("a100-40gb", 40.0, 312, 1555, (8, 0)),
        Card("a100-80gb", 80.0, 312, 2039, (8, 0)),
        Card("h100", 79.6, 989, 3350, (9, 0)),  # SXM 80 GB: 81559 MiB
        Card("h200", 139.8, 989, 4800, (9, 0)),
    ]
}

# substrings of nvidia-smi / torch device names -> card class
_NAME_HINTS = [
    ("t4", "t4"), ("v100", "v100-16gb"), ("a10g", "a10g"), ("l40s", "l40s"), ("l4", "l4"),
    ("3090", "rtx3090"), ("4090", "rtx4090"), ("a6000", "a6000"), ("a100", "a100-40gb"),
    ("h100", "h100"), ("h200", "h200"),
]


def card_class(device_name: str, mem_gib: float | None = None) -> Card | None:
    """The table's card for a device name such as 'Tesla T4' or 'NVIDIA GeForce RTX 4090' (None when unknown)."""
    low = device_name.lower()
    for hint, key in _NAME_HINTS:
        if re.search(rf"(^|[^a-z0-9]){re.escape(hint)}([^a-z0-9]|$)", low) or (hint.isdigit() and hint in low):
            card = CARDS[key]
            if key.startswith("a100") and mem_gib and mem_gib > 45:
                card = CARDS["a100-80gb"]
            if key.startswith("v100") and mem_gib and mem_gib > 20:
                card = CARDS["v100-32gb"]
            return card
    return None


def resolve_card(gpu: str | None = None, gpu_mem: float | None = None, detect: bool = True) -> Card | None:
    """The card to plan for: --gpu NAME (a table key, or a device name), --gpu-mem GB (GiB; alone it keeps the
    detected card's throughput or an unnamed card), else the card this machine has (None when it has none)."""
    card = None
    if gpu:
        card = CARDS.get(gpu.lower()) or card_class(gpu)
        if card is None:
            raise ValueError(f"--gpu: unknown card {gpu!r}; known: {', '.join(CARDS)}")
    elif detect:
        card = detect_card()
    if gpu_mem is not None:
        if gpu_mem <= 0:
            raise ValueError("--gpu-mem: must be > 0 (GiB)")
        base = card or Card("unnamed", gpu_mem, CARDS["rtx3090"].tflops, CARDS["rtx3090"].bandwidth_gbs, (8, 0))
        card = Card(base.name if card else "unnamed", gpu_mem, base.tflops, base.bandwidth_gbs, base.capability)
    return card


def detect_card() -> Card | None:
    """This machine's first CUDA card, read from nvidia-smi (no torch import); None when there is none."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run(
            [exe, "--query-gpu=name,memory.total,compute_cap", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=20,
        ).stdout.strip().splitlines()
    except (OSError, subprocess.SubprocessError):
        return None
    if not out:
        return None
    parts = [p.strip() for p in out[0].split(",")]
    try:
        name, mem_gib = parts[0], float(parts[1]) / 1024
        cap = tuple(int(x) for x in parts[2].split(".")) if len(parts) > 2 else None
    except (ValueError, IndexError):
        return None
    known = card_class(name, mem_gib)
    if known is not None:
        return Card(known.name, round(mem_gib, 1), known.tflops, known.bandwidth_gbs, cap or known.capability)
    # an unknown card: its memory is real, its speed a mid-range guess
    return Card(name, round(mem_gib, 1), 71, 936, cap or (8, 0))


def card_from_torch() -> Card | None:
    """The card torch sees (used by `soarlite run`, which imports torch anyway)."""
    import torch

    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(0)
    mem_gib = props.total_memory / GIB
    known = card_class(props.name, mem_gib)
    cap = (props.major, props.minor)
    if known is not None:
        return Card(known.name, round(mem_gib, 1), known.tflops, known.bandwidth_gbs, cap)
    return Card(props.name, round(mem_gib, 1), 71, 936, cap)


class NoCuda(RuntimeError):
    """A recipe that needs a CUDA card, on a machine where torch sees none. The message is one line."""


def require_cuda(cfg) -> None:
    """Stop before anything loads when the recipe says `device: cuda` and torch sees no CUDA device: a 3B recipe
    must never fall back to a CPU silently. Raises NoCuda with one line naming the likely causes. A machine without
    torch at all is left to the engine's install message."""
    if getattr(cfg, "device", "auto") != "cuda":
        return
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return
    import torch

    if torch.cuda.is_available():
        return
    build = getattr(torch.version, "cuda", None)
    why = (f"this torch is a CUDA {build} build, so the NVIDIA driver may be too old for it (nvidia-smi shows the "
           "CUDA version the driver supports)" if build else
           f"this torch ({torch.__version__}) is a CPU-only build: install the CUDA set with pip install "
           "'soarlite[gpu]' (it needs Python >= 3.11)")
    raise NoCuda(f"{cfg.name}: device: cuda, but torch sees no CUDA device; {why}; "
                 "to run on the CPU anyway (slow) pass device=cpu")


# ------------------------------------------------------------------------------------------------ dtype
def dtype_name(requested: str, device: str, capability: tuple[int, int] | None) -> str:
    """auto: float32 on a CPU; bfloat16 on cards of compute capability 8.0 or more (Ampere and later); float16 below
    (T4 7.5, V100 7.0), where the engine then scales the loss. Anything else is taken as asked."""
    if requested != "auto":
        return requested
    if device != "cuda":
        return "float32"
    return "bfloat16" if capability is not None and capability >= (8, 0) else "float16"


def pick_dtype(name: str, device: str) -> torch.dtype:
    """The torch dtype for `dtype_name`: auto is fp32 on CPU; bf16 on cards that have it (compute capability >= 8);
    fp16 on older ones (T4), where the engine scales the loss (LossScaler). A named dtype is taken as asked."""
    import torch

    capability = tuple(torch.cuda.get_device_capability()) if device == "cuda" and name == "auto" else None
    return getattr(torch, dtype_name(name, device, capability))


# ------------------------------------------------------------------------------------------------ fp16 loss scaling
class LossScaler:
    """Dynamic loss scaling for fp16 compute (cards without bf16), per adapter, as torch.amp.GradScaler does it:
    gradients are made `scale` times larger on their way back (`scale_grad`, applied to the logits, the top of the
    graph, so every fp16 activation gradient below is scaled), unscaled before the optimiser step, and a step whose
    gradients hold inf/nan is skipped and halves the scale; `growth_interval` good steps in a row double it.
    The LoRA weights and their gradients are float32 (peft keeps adapters in float32), so unscaling is exact."""

    def __init__(self, init_scale: float = 2.0**16, growth_interval: int = 200, min_scale: float = 1.0):
        self.init_scale = init_scale
        self.growth_interval = growth_interval
        self.min_scale = min_scale
        self.scale: dict[str, float] = {}
        self.good: dict[str, int] = {}
        self.skipped = 0

    def get(self, name: str) -> float:
        return self.scale.setdefault(name, self.init_scale)

    def scale_grad(self, tensor, name: str):
        """`tensor` unchanged forward; its gradient times the adapter's scale backward."""
        return _ScaleGrad.apply(tensor, self.get(name))

    def unscale_and_check(self, name: str, params) -> bool:
        """Divide the gradients by the scale; True when they are finite (take the step), False to skip it."""
        import torch

        s = self.get(name)
        grads = [p.grad for p in params if p.grad is not None]
        finite = all(bool(torch.isfinite(g).all()) for g in grads)
        if not finite:
            self.scale[name] = max(self.min_scale, s / 2)
            self.good[name] = 0
            self.skipped += 1
            return False
        for g in grads:
            g.div_(s)
        self.good[name] = self.good.get(name, 0) + 1
        if self.good[name] >= self.growth_interval:
            self.scale[name] = s * 2
            self.good[name] = 0
        return True


def _scale_grad_fn():
    import torch

    class ScaleGrad(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, scale):
            ctx.scale = scale
            return x.view_as(x)

        @staticmethod
        def backward(ctx, grad):
            return grad * ctx.scale, None

    return ScaleGrad


class _LazyScaleGrad:
    _fn = None

    def apply(self, x, scale):
        if self._fn is None:
            type(self)._fn = _scale_grad_fn()
        return self._fn.apply(x, scale)


_ScaleGrad = _LazyScaleGrad()


# ------------------------------------------------------------------------------------------------ 4-bit (bitsandbytes)
def fix_bnb_cpu_gradients(model) -> int:
    """bitsandbytes 0.50 on a CPU with AVX512-BF16 repacks a Linear4bit's weight for its inference kernel the first
    time the layer runs in eval mode on an input that needs no gradient (generation does), and from then on every
    call takes that kernel, which has no backward: the gradient stops at the first 4-bit layer it meets, so only
    the LoRA of o_proj/down_proj (which feed the residual stream directly) learned. Measured on the tiny model:
    q/k/v/gate/up LoRA-B gradients exactly 0. Turning the repacking off keeps the autograd path. Returns the number
    of layers changed. Harmless on CUDA (the flag is read only for CPU inputs)."""
    n = 0
    for m in model.modules():
        if getattr(m, "support_avx512bf16_for_cpu", False):
            m.support_avx512bf16_for_cpu = False
            n += 1
    return n


# ------------------------------------------------------------------------------------------------ out of memory
class OutOfMemory(RuntimeError):
    """A step ran out of GPU memory; the message names the settings to lower."""


def oom_message(cfg, phase: str, step: int | None, run_dir, peak_gib: float | None = None) -> str:
    """One paragraph a user can act on: where it happened, that the run folder is intact, which knobs to lower."""
    i, o, m = cfg.inner, cfg.outer, cfg.model
    in_flight = i.students_in_flight or o.g * o.r
    knobs = {
        "train": [f"inner.micro_batch (now {i.micro_batch})",
                  f"inner.students_in_flight (now {i.students_in_flight}{' = all ' + str(in_flight) if not i.students_in_flight else ''})",
                  f"inner.max_new_tokens (now {i.max_new_tokens})"],
        "teacher update": [f"outer.micro_batch (now {o.micro_batch})", f"outer.max_new_tokens (now {o.max_new_tokens})"],
        "sample": [f"model.gen_batch (now {m.gen_batch})", f"inner.max_new_tokens (now {i.max_new_tokens})",
                   f"inner.students_in_flight (now {i.students_in_flight})"],
    }
    p = phase.lower()
    if "teacher update" in p:
        order = knobs["teacher update"] + knobs["train"][:1]
    elif "train" in p:
        order = knobs["train"] + knobs["sample"][:1]
    else:  # sampling phases: the teacher writing questions, students answering the reward questions
        order = knobs["sample"] + knobs["train"][:1]
    where = f"outer step {step + 1}" if step is not None else "the run"
    peak = f" (peak {peak_gib:.1f} GiB allocated)" if peak_gib else ""
    return (
        f"out of GPU memory in {where}, phase '{phase or 'start'}'{peak}. The run folder {run_dir} holds every "
        f"finished step (checkpoints are atomic); continue with --resume {run_dir} after lowering "
        f"{', '.join(order[:-1])} or {order[-1]}. `soarlite plan --recipe {cfg.name}` shows what each costs."
    )


def reset_peak_memory() -> None:
    import sys

    torch = sys.modules.get("torch")  # never import torch for this
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.reset_peak_memory_stats()


def is_oom(error: BaseException) -> bool:
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and isinstance(error, torch.cuda.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower() and "cuda" in str(error).lower()


def peak_gib() -> float | None:
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        return torch.cuda.max_memory_allocated() / GIB
    return None
