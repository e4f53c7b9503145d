"""What the planner counts with: the model's shape (from config.json, the Hub cache or a table of known models), the
prompts' lengths, and how many students train at once."""

from __future__ import annotations

import glob
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

from soarlite.config import Config
from soarlite.plan.errors import PlanError

CHARS_PER_TOKEN = 4.0  # English prompt text in a BPE vocabulary (the toy world's tokenizer is one char a token)


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
    if cfg.task == "toy":
        from soarlite import toy

        s, _ = toy.recipe_world(cfg.task_options)
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


def prompt_tokens(cfg: Config, shape: Shape) -> tuple[int, int]:
    """(teacher prompt, student prompt) tokens, estimated from the prompt texts: ~4 characters a token, one for the
    toy world's character tokenizer; a student prompt holds a question of about half the teacher's output limit."""
    from soarlite import tasks

    task = tasks.load_task(cfg.task, cfg.task_options)
    cpt = 1.0 if cfg.task == "toy" else CHARS_PER_TOKEN
    teacher = task.teacher_prompt if cfg.prompts.teacher == "task" else cfg.prompts.teacher
    student = task.student_prompt("{question}") if cfg.prompts.student == "task" else cfg.prompts.student
    question = min(200, cfg.outer.max_new_tokens // 2)
    return math.ceil(len(teacher) / cpt) + 1, math.ceil(len(student) / cpt) + question + 1


def students_in_flight(cfg: Config) -> tuple[int, int]:
    """(students trained at once, datasets per wave): whole datasets per wave, as the loop does it."""
    o = cfg.outer
    wave = min(o.g, max(1, (cfg.inner.students_in_flight or o.g * o.r) // o.r))
    return wave * o.r, wave
