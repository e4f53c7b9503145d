"""The planner's memory figures beside what torch allocates, for one inner step of a recipe on a CUDA card.

    python benchmarks/plan_vs_torch.py --recipe math-t4 [key=value ...] [--students 2] [--out plan_vs_torch.json]

A model with the recipe's shape (config.json from soarlite.plan: the table of known models) and RANDOM weights is
written to a temporary folder with a tokenizer whose vocabulary has the model's size, and loaded through HFEngine
exactly as a run loads it (4-bit NF4 when the recipe says so: bitsandbytes must be installed). Then, measured with
torch.cuda.memory_allocated / max_memory_allocated:
  persistent  the base, plus teacher, baseline and the students in flight with their AdamW state (each student takes
              one small step first, so its optimiser state exists);
  sample      one inner step's sampling call: every student's batch_size x group_size rollouts, mixed adapters, at
              most model.gen_batch at once, each running to inner.max_new_tokens (a random model almost never
              writes its end token, so lengths are at their limit, as the planner assumes);
  train       each student's RLOO update on its rollouts (micro-batches of inner.micro_batch, KL reference on);
  teacher     one teacher micro-batch of outer.micro_batch sequences at the teacher's lengths.
Only the transformers engine is measured (vLLM's share is whatever gpu_memory_utilization gives it).
It needs a CUDA card; nothing here runs on a CPU.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def write_random_model(shape, out: Path, seed: int = 0, device: str = "cuda") -> Path:
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import AutoModelForCausalLM, LlamaConfig, PreTrainedTokenizerFast, Qwen2Config

    vocab = {f"<{i}>": i for i in range(shape.vocab)}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<3>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token="<1>", eos_token="<2>", pad_token="<0>", unk_token="<3>")
    kw = dict(vocab_size=shape.vocab, hidden_size=shape.hidden, intermediate_size=shape.intermediate,
              num_hidden_layers=shape.layers, num_attention_heads=shape.heads, num_key_value_heads=shape.kv_heads,
              tie_word_embeddings=shape.tied, bos_token_id=1, eos_token_id=2, pad_token_id=0,
              max_position_embeddings=4096)
    config = Qwen2Config(**kw) if shape.qkv_bias else LlamaConfig(head_dim=shape.head_dim, **kw)
    torch.manual_seed(seed)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipe", default="math-t4")
    ap.add_argument("overrides", nargs="*")
    ap.add_argument("--students", type=int, default=0, help="students in flight (default: the recipe's)")
    ap.add_argument("--out", default="", help="write the figures as JSON here")
    ap.add_argument("--cpu-smoke", action="store_true", help="run the code path on a CPU (memory figures are 0): a check of this script")
    a = ap.parse_args()

    import torch

    from soarlite import hardware, plan, rloo
    from soarlite.config import load_recipe
    from soarlite.engine import Completion, OptimizerSpec, SamplingParams
    from soarlite.engine.hf import HFEngine

    cuda = not a.cpu_smoke
    if cuda and not torch.cuda.is_available():
        sys.exit("plan_vs_torch: needs a CUDA card (or --cpu-smoke)")

    def allocated() -> int:
        return allocated() if cuda else 0

    def peak() -> int:
        return peak() if cuda else 0

    def reset() -> None:
        if cuda:
            reset()

    over = list(a.overrides) + ["engine=hf", "model.use_unsloth=false"] + ([] if cuda else ["device=cpu"])
    if a.students:
        over.append(f"inner.students_in_flight={a.students}")
    cfg = load_recipe(a.recipe, over)
    shape = plan.model_shape(cfg)
    card = hardware.card_from_torch() if cuda else hardware.CARDS["t4"]
    mode = plan.resolve_mode(cfg, card, unsloth=False)
    mem = plan.memory(cfg, shape, card, mode, hardware.dtype_name(cfg.model.dtype, "cuda", card.capability))
    parts = mem["parts"]
    planned = {
        "base weights": parts["base"],
        "adapters + AdamW": parts["adapters"] + parts["adamw"],
        "sample (KV + prefill)": parts["sample"],
        "train (activations)": parts["student_train"],
        "teacher micro-batch": parts["teacher_train"],
        "allocated at the peak": mem["allocated"],
    }

    GIB = plan.GIB
    measured: dict[str, float] = {}
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = write_random_model(shape, Path(tmp) / "model", device="cuda" if cuda else "cpu")
        cfg.model.base = str(model_dir)
        reset()
        start = allocated()
        engine = HFEngine(cfg, str(model_dir))
        measured["base weights"] = allocated() - start

        i, o = cfg.inner, cfg.outer
        s_flight, _ = plan.students_in_flight(cfg)
        p_teacher, p_student = plan._prompt_tokens(cfg, shape)
        g = torch.Generator().manual_seed(0)

        def ids(n: int) -> list[int]:
            return torch.randint(4, shape.vocab, (n,), generator=g).tolist()

        engine.create_adapter("teacher", OptimizerSpec(o.lr, 10))
        engine.create_adapter("student")
        names = [f"s{k}" for k in range(s_flight)]
        short = [Completion(ids(8), ids(8), "") for _ in range(2)]
        before = allocated()
        for n in ["teacher", *names]:
            if n != "teacher":
                engine.create_adapter(n, OptimizerSpec(i.lr, 10), copy_from="student")
            rloo.update(engine, n, short, [1.0, -1.0], 0.0, 2)  # materialises its AdamW state
        # (the baseline student's adapter, a few MB, was made before `before`)
        measured["adapters + AdamW"] = allocated() - before
        persistent = allocated()

        # one inner step: sampling for every student in flight, then each student's update
        prompt = " ".join(f"<{t}>" for t in ids(p_student - 1))
        per_student = i.batch_size * i.group_size
        reset()
        outs = engine.generate([prompt] * (per_student * s_flight), [n for n in names for _ in range(per_student)],
                               SamplingParams(i.temperature, i.max_new_tokens), seed=0)
        measured["sample (KV + prefill)"] = peak() - persistent
        top = peak()
        mean_len = sum(len(c.ids) for c in outs) / len(outs)
        reset()
        for k, n in enumerate(names):
            batch = outs[k * per_student : (k + 1) * per_student]
            rloo.update(engine, n, batch, [1.0 if j % 2 else -1.0 for j in range(len(batch))], i.kl_coef, i.micro_batch)
        measured["train (activations)"] = peak() - persistent
        top = max(top, peak())

        # one teacher micro-batch at the teacher's lengths
        reset()
        teacher = [Completion(ids(p_teacher), ids(o.max_new_tokens), "") for _ in range(o.micro_batch)]
        rloo.update(engine, "teacher", teacher, [1.0 if j % 2 else -1.0 for j in range(o.micro_batch)], o.kl_coef,
                    o.micro_batch)
        measured["teacher micro-batch"] = peak() - persistent
        top = max(top, peak())
        measured["allocated at the peak"] = top

    device = torch.cuda.get_device_name(0) if cuda else "cpu (smoke test: no memory figures)"
    print(f"{a.recipe} on {device} ({card.mem_gib:g} GiB), random {shape.name} shape, "
          f"{'4-bit' if cfg.model.load_in_4bit else 'bf16/fp16'} base, {s_flight} students in flight, dtype {engine.dtype}, "
          f"mean rollout {mean_len:.0f} of {i.max_new_tokens} tokens, {time.time() - t0:.0f}s")
    print(f"{'part':<26}{'planner GiB':>12}{'torch GiB':>12}{'torch/planner':>15}")
    rows = []
    for k in ["base weights", "adapters + AdamW", "sample (KV + prefill)", "train (activations)", "teacher micro-batch",
              "allocated at the peak"]:
        pl, me = planned.get(k), measured.get(k)
        ratio = f"{me / pl:.2f}" if pl and me is not None else "-"
        print(f"{k:<26}{(pl or 0) / GIB:>12.2f}{(me or 0) / GIB:>12.2f}{ratio:>15}")
        rows.append({"part": k, "planner_gib": (pl or 0) / GIB, "torch_gib": (me or 0) / GIB})
    if a.out:
        Path(a.out).write_text(json.dumps({"recipe": a.recipe, "overrides": a.overrides, "device": device,
                                           "students": s_flight, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
