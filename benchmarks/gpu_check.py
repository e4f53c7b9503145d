"""The first thing to run on a GPU machine: the real-model path at the real shapes, offline (it replaced
benchmarks/plan_vs_torch.py).

    python benchmarks/gpu_check.py [--settings math-t4,math-24gb] [--set KEY=VALUE ...] [--timings]
                                   [--out gpu_check.json] [--smoke]

Models with the real shapes of Llama-3.2-1B and 3B (benchmarks/configs/*.json, shipped here: random weights, a
tokenizer made on the spot, nothing downloaded) on the 4-bit NF4 base, loaded through HFEngine exactly as a run
loads it. For each recipe setting (math-t4 and math-24gb by default; both use the 1B shape), in this order, the JSON
(--out) rewritten after each part so that a run cut off by its time limit keeps what it had measured:
  memory     peak memory per part (base, adapters + AdamW, one inner step's sampling in ONE mixed-adapter call, one
             student's update, one teacher micro-batch), measured with torch.cuda.max_memory_allocated, beside the
             planner's figure; the mixed call and the student's update are timed too, beside the planner's time;
  preflight  the pre-flight check's mechanics (soarlite/preflight.py): its adapter made and removed, its time, and
             before/after counts on a stand-in task ("the first token's id is even": a random model cannot do math);
  timings    only with --timings, last (slow: it resamples every rollout): the same rollouts as one call per student
             (lockstep's gain with transformers + peft), and every student's update;
then prints a Markdown table for docs/performance.md naming the card.
--set overrides go to the planner and to the measurement alike (a random model never emits EOS, so every rollout runs
to max_new_tokens: `--set inner.max_new_tokens=128 outer.max_new_tokens=128` keeps a setting near 80 s on an H200).
Needs only torch, transformers, peft and bitsandbytes (vLLM and unsloth do not travel to every GPU machine). Without
a CUDA device it says so and exits 0; --smoke runs the code path on a CPU with the shapes shrunk (no memory figures).
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
CONFIGS = ROOT / "benchmarks" / "configs"
SETTINGS = {"math-24gb": "llama-3.2-1b", "math-t4": "llama-3.2-1b"}


def write_model(config_name: str, out: Path, device: str, smoke: bool) -> Path:
    """A random model with the shipped config, and a word-level tokenizer of its vocabulary size ("<id>" tokens)."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import AutoModelForCausalLM, GenerationConfig, LlamaConfig, PreTrainedTokenizerFast

    raw = json.loads((CONFIGS / f"{config_name}.json").read_text())
    if smoke:  # the code path only: a small model of the same kind
        raw.update(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2, head_dim=32, vocab_size=1024, bos_token_id=1, eos_token_id=[2, 3])
    raw.pop("architectures", None)
    raw.pop("model_type", None)
    config = LlamaConfig(**raw)
    vocab = {f"<{i}>": i for i in range(config.vocab_size)}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<4>"))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    eos = config.eos_token_id if isinstance(config.eos_token_id, list) else [config.eos_token_id]
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, bos_token=f"<{config.bos_token_id}>", eos_token=f"<{eos[-1]}>",
                                  pad_token="<0>", unk_token="<4>")
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.generation_config = GenerationConfig(bos_token_id=config.bos_token_id, eos_token_id=eos, pad_token_id=0)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    return out


class StandIn:
    """A world and grader for the pre-flight mechanics: right = the first generated token's id is even."""

    teacher_prompt = "<5> <6> <7>"

    def student_prompt(self, q):
        return q

    def parse_teacher(self, texts):
        from soarlite.tasks import QA

        return [QA(f"<{10 + k}> <{20 + k}>", "even") for k, _ in enumerate(texts)]

    @staticmethod
    def _even(text):
        first = text.split(" ", 1)[0] if text else ""
        return first.startswith("<") and first[1:-1].isdigit() and int(first[1:-1]) % 2 == 0

    def rewards(self, pairs):
        return [float(self._even(t)) for t, _ in pairs]

    def correct(self, pairs):
        return [self._even(t) for t, _ in pairs]


def check_setting(recipe: str, cuda: bool, smoke: bool, tmp: Path, pf_steps: int = 1, pf_tokens: int = 32,
                  extra: tuple[str, ...] = (), timings: bool = False, save=lambda result: None) -> dict:
    """One recipe setting, cheapest and most wanted first: the memory parts (each row written out by `save` as soon as
    it is measured, so a run cut off by its time limit keeps what it had), the pre-flight mechanics, and last, with
    `timings`, the slow comparison (one sampling call per student, every student's update)."""
    import torch

    from soarlite import hardware, plan, preflight, rloo
    from soarlite.config import load_recipe
    from soarlite.engine import Completion, OptimizerSpec, SamplingParams
    from soarlite.engine.hf import HFEngine

    def allocated() -> int:
        return torch.cuda.memory_allocated() if cuda else 0

    def peak() -> int:
        return torch.cuda.max_memory_allocated() if cuda else 0

    t_start = time.time()

    def say(what: str) -> None:  # progress on stderr: a device call cut off by its limit still shows where it was
        print(f"[{time.time() - t_start:6.1f}s] {recipe}: {what}", file=sys.stderr, flush=True)

    def reset() -> None:
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()

    def clock() -> float:
        if cuda:
            torch.cuda.synchronize()
        return time.time()

    over = ["engine=hf", "model.use_unsloth=false"] + ([] if cuda else ["device=cpu"])
    if smoke:
        pf_tokens = min(pf_tokens, 8)
        over += ["outer.g=2", "outer.r=2", "outer.n=4", "outer.M=4", "outer.max_new_tokens=8", "outer.micro_batch=2",
                 "inner.batch_size=2", "inner.group_size=2", "inner.max_new_tokens=8", "inner.micro_batch=4",
                 "inner.steps=2", "model.max_seq_len=256"]
    over += extra
    cfg = load_recipe(recipe, over)
    shape = plan.model_shape(cfg)
    card = (hardware.card_from_torch() if cuda else None) or hardware.CARDS["t4"]
    mode = plan.resolve_mode(cfg, card, unsloth=False)
    mem = plan.memory(cfg, shape, card, mode, hardware.dtype_name(cfg.model.dtype, "cuda", card.capability))
    parts = mem["parts"]
    planned = {"base weights": parts["base"], "adapters + AdamW": parts["adapters"] + parts["adamw"],
               "sample (KV + prefill)": parts["sample"], "train (activations)": parts["student_train"],
               "teacher micro-batch": parts["teacher_train"], "allocated at the peak": mem["allocated"]}
    i, o = cfg.inner, cfg.outer
    s_flight, _ = plan.students_in_flight(cfg)
    p_teacher, p_student = plan.prompt_tokens(cfg, shape) if not smoke else (16, 16)
    per_student = i.batch_size * i.group_size
    mbs = -(-per_student // i.micro_batch)  # micro-batches of one student's update
    seq = p_student + i.max_new_tokens
    kl = i.kl_coef > 0
    # the planner's time for each timed call, same shapes and card (the hf engine's overheads are fitted: CALIBRATION
    # in soarlite/plan/throughput.py)
    planner_s = {
        "mixed_call": plan._decode_s(per_student * s_flight, p_student, i.max_new_tokens, s_flight, mode, card, shape,
                                     cfg, None),
        "one_call_per_student": s_flight * plan._decode_s(per_student, p_student, i.max_new_tokens, 1, mode, card,
                                                          shape, cfg, None),
        "one_student_update": plan._train_s(per_student, seq, mode, card, shape, cfg, kl, mbs),
        "all_students_updates": plan._train_s(per_student * s_flight, seq, mode, card, shape, cfg, kl, mbs * s_flight),
    }
    measured: dict[str, float] = {}
    result = {
        "recipe": recipe, "shape": SETTINGS[recipe], "overrides": list(extra), "students": s_flight,
        "rollouts": per_student * s_flight, "gen_batch": cfg.model.gen_batch, "prompt_tokens": p_student,
        "new_tokens": i.max_new_tokens, "micro_batch": i.micro_batch, "card_class": card.name, "planner_mode": mode,
        "rows": [], "times_s": {}, "planner_s": planner_s, "done": [],
    }

    def record(part: str) -> None:
        """One more memory row (or none for a part that has no row), then the JSON on disk."""
        if part in planned:
            m = measured[part]
            result["rows"].append({"part": part, "planner_gib": planned[part] / plan.GIB, "torch_gib": m / plan.GIB,
                                   "error": (planned[part] - m) / m if m else None})
        result["done"].append(part)
        save(result)

    say("writing the random model")
    model_dir = write_model(SETTINGS[recipe], tmp / recipe, "cuda" if cuda else "cpu", smoke)
    cfg.model.base = str(model_dir)
    reset()
    start = allocated()
    say("loading it through HFEngine")
    engine = HFEngine(cfg, str(model_dir))
    result["dtype"] = str(engine.dtype)
    measured["base weights"] = allocated() - start
    record("base weights")
    g = torch.Generator().manual_seed(0)

    def ids(n: int) -> list[int]:
        return torch.randint(8, len(engine.tokenizer), (n,), generator=g).tolist()

    engine.create_adapter("teacher", OptimizerSpec(o.lr, 10))
    engine.create_adapter("student")
    names = [f"s{k}" for k in range(s_flight)]
    short = [Completion(ids(8), ids(8), "") for _ in range(2)]
    before = allocated()
    for n in ["teacher", *names]:
        if n != "teacher":
            engine.create_adapter(n, OptimizerSpec(i.lr, 10), copy_from="student")
        rloo.update(engine, n, short, [1.0, -1.0], 0.0, 2)  # materialises its optimiser state
    measured["adapters + AdamW"] = allocated() - before
    record("adapters + AdamW")
    persistent = allocated()

    prompt = " ".join(f"<{t}>" for t in ids(p_student - 1))
    params = SamplingParams(i.temperature, i.max_new_tokens)
    say(f"sampling {per_student * s_flight} rollouts in one mixed-adapter call "
        f"(the planner: {planner_s['mixed_call']:.0f}s)")
    reset()
    t0 = clock()
    outs = engine.generate([prompt] * (per_student * s_flight), [n for n in names for _ in range(per_student)], params,
                           seed=0)
    result["times_s"]["mixed_call"] = clock() - t0
    result["mean_len"] = sum(len(c.ids) for c in outs) / len(outs)
    measured["sample (KV + prefill)"] = peak() - persistent
    top = peak()
    record("sample (KV + prefill)")

    def update(k: int, n: str) -> None:
        batch = outs[k * per_student : (k + 1) * per_student]
        rloo.update(engine, n, batch, [1.0 if j % 2 else -1.0 for j in range(len(batch))], i.kl_coef, i.micro_batch)

    # one student's update gives the training peak (one adapter's gradients at a time; every student's micro-batches
    # are the same size), and its time the per-micro-batch and per-token costs; --timings times all of them
    say(f"one student's update, {mbs} micro-batches ({result['times_s']['mixed_call']:.1f}s for the mixed call; "
        f"the planner: {planner_s['one_student_update']:.1f}s)")
    reset()
    t0 = clock()
    update(0, names[0])
    result["times_s"]["one_student_update"] = clock() - t0
    measured["train (activations)"] = peak() - persistent
    top = max(top, peak())
    record("train (activations)")
    say("a teacher micro-batch")
    reset()
    teacher = [Completion(ids(p_teacher), ids(o.max_new_tokens), "") for _ in range(o.micro_batch)]
    rloo.update(engine, "teacher", teacher, [1.0 if j % 2 else -1.0 for j in range(o.micro_batch)], o.kl_coef,
                o.micro_batch)
    measured["teacher micro-batch"] = peak() - persistent
    record("teacher micro-batch")
    measured["allocated at the peak"] = max(top, peak())
    record("allocated at the peak")

    say("the pre-flight check")
    adapters_before = list(engine.adapters)
    # The pre-flight row checks mechanics (adapter made, trained, counted, removed), not speed: a short inner loop keeps
    # the whole check inside one device call (a random model never stops, so every rollout runs to max_new_tokens).
    pf_cfg = load_recipe(recipe, over + [f"inner.steps={pf_steps}", f"inner.max_new_tokens={pf_tokens}",
                                         f"outer.max_new_tokens={pf_tokens}"])
    pf_cfg.model.base = str(model_dir)
    pf = preflight.check(pf_cfg, StandIn(), engine, StandIn(), samples=2, questions=min(o.n, 8))
    result["preflight"] = {"inner_steps": pf_steps, "max_new_tokens": pf_tokens, "seconds": pf.seconds,
                           "before": pf.before, "after": pf.after, "questions": pf.questions, "samples": pf.samples,
                           "skipped": pf.skipped, "adapters_restored": list(engine.adapters) == adapters_before}
    record("preflight")

    if timings:
        say(f"timings: the same rollouts, one call per student (the planner: {planner_s['one_call_per_student']:.0f}s)")
        t0 = clock()
        for n in names:
            engine.generate([prompt] * per_student, [n] * per_student, params, seed=0)
        result["times_s"]["one_call_per_student"] = clock() - t0
        record("one call per student")
        say(f"timings: every student's update (the planner: {planner_s['all_students_updates']:.0f}s)")
        t0 = clock()
        for k, n in enumerate(names):
            update(k, n)
        result["times_s"]["all_students_updates"] = clock() - t0
        record("all students' updates")
    say("done")
    return result


def table(card: str, results: list[dict]) -> str:
    lines = [f"GPU check on {card} (benchmarks/gpu_check.py; random weights, real shapes, 4-bit base)", "",
             "| setting | part | planner GiB | torch GiB | planner error |", "|---|---|---:|---:|---:|"]
    for r in results:
        for row in r["rows"]:
            err = f"{row['error']:+.0%}" if row["error"] is not None else "-"
            lines.append(f"| {r['recipe']} ({r['shape']}) | {row['part']} | {row['planner_gib']:.2f} | "
                         f"{row['torch_gib']:.2f} | {err} |")
    lines += ["", "| setting | call | measured s | planner s |", "|---|---|---:|---:|"]
    for r in results:
        what = (f"{r['rollouts']} rollouts x {r['new_tokens']} new tokens, prompt {r['prompt_tokens']}, "
                f"micro-batch {r['micro_batch']}")
        for k, v in r["times_s"].items():
            lines.append(f"| {r['recipe']} ({what}) | {k.replace('_', ' ')} | {v:.1f} | {r['planner_s'][k]:.1f} |")
        pf = r.get("preflight")
        if pf:
            lines.append(f"| {r['recipe']} | pre-flight ({pf['inner_steps']} inner step(s), {pf['max_new_tokens']} "
                         f"tokens; {pf['before']} -> {pf['after']} right, adapters restored: "
                         f"{pf['adapters_restored']}) | {pf['seconds']:.1f} | - |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--settings", default="math-t4,math-24gb")
    ap.add_argument("--out", default="gpu_check.json")
    ap.add_argument("--smoke", action="store_true", help="the code path on a CPU, shapes shrunk, no memory figures")
    ap.add_argument("--timings", action="store_true",
                    help="last, the slow comparison: one sampling call per student, and every student's update")
    ap.add_argument("--preflight-steps", type=int, default=1, help="inner steps of the pre-flight row (mechanics only)")
    ap.add_argument("--preflight-tokens", type=int, default=32, help="max_new_tokens of the pre-flight row")
    ap.add_argument("--set", nargs="*", default=[], help="recipe overrides for every setting (planner and measure)")
    a = ap.parse_args()
    try:
        import torch
    except ImportError:
        print("gpu_check: torch is not installed; nothing measured")
        return 0
    cuda = torch.cuda.is_available() and not a.smoke
    if a.smoke:  # one thread: on a shared CPU, spinning OpenMP threads made the same call 10-100x slower
        torch.set_num_threads(1)
    if not cuda and not a.smoke:
        print(f"gpu_check: torch {torch.__version__} sees no CUDA device; nothing measured (a GPU machine is needed; "
              "--smoke checks the code path on a CPU)")
        return 0
    card = f"{torch.cuda.get_device_name(0)} ({torch.cuda.get_device_properties(0).total_memory / 2**30:.1f} GiB)" \
        if cuda else "cpu (smoke: no memory figures)"
    results: list[dict] = []
    out = Path(a.out)

    def save(partial: dict | None = None) -> None:  # the whole file each time: what is measured so far
        done = results + ([partial] if partial is not None else [])
        out.write_text(json.dumps({"card": card, "torch": torch.__version__, "overrides": a.set,
                                   "timings": a.timings, "results": done}, indent=1))

    with tempfile.TemporaryDirectory() as tmp:
        for recipe in a.settings.split(","):
            results.append(check_setting(recipe.strip(), cuda, a.smoke, Path(tmp), a.preflight_steps,
                                         a.preflight_tokens, tuple(a.set), a.timings, save))
            save()
            if cuda:
                torch.cuda.empty_cache()
    print(table(card, results))
    print(f"\nwrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
