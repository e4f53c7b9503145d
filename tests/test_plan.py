"""The cost planner's arithmetic against figures worked out by hand (the working is in the comments), the CLI's exit
status, and the recipes' header figures against the planner."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from soarlite import plan
from soarlite.config import load_recipe
from soarlite.hardware import CARDS, GIB, Card, card_class

ROOT = Path(__file__).resolve().parents[1]
LLAMA3B = plan.KNOWN["llama-3.2-3b-instruct"]
LLAMA1B = plan.KNOWN["llama-3.2-1b-instruct"]
# a shape small enough to work through by hand: q_dim = 2*4 = 8, kv_dim = 1*4 = 4
SMALL = plan.Shape("small", vocab=100, hidden=8, intermediate=16, layers=2, heads=2, kv_heads=1, head_dim=4, tied=True)


def test_llama_3b_parameter_count():
    # embedding 128256 * 3072                                       =   394,002,432
    # per layer: q 3072*3072 = 9,437,184; k, v 3072*1024 = 3,145,728 each; o 9,437,184   -> 25,165,824
    #            gate, up, down 3 * 3072*8192                                            -> 75,497,472
    #            100,663,296 per layer x 28 layers                  = 2,818,572,288
    # norms (2*28 + 1) * 3072                                       =       175,104
    # total (lm_head tied to the embedding)                         = 3,212,749,824
    assert LLAMA3B.linear_params == 2_818_572_288
    assert LLAMA3B.params == 3_212_749_824


def test_other_known_models_match_their_published_sizes():
    # Llama-3.2-1B 1.24B, Llama-3.1-8B 8.03B, Qwen2.5 0.49B / 1.54B / 3.09B / 7.62B (model cards, rounded)
    sizes = {name: round(s.params / 1e9, 2) for name, s in plan.KNOWN.items()}
    assert sizes == {
        "llama-3.2-1b-instruct": 1.24, "llama-3.2-3b-instruct": 3.21, "llama-3.1-8b-instruct": 8.03,
        "qwen2.5-0.5b-instruct": 0.49, "qwen2.5-1.5b-instruct": 1.54, "qwen2.5-3b-instruct": 3.09,
        "qwen2.5-7b-instruct": 7.62,
    }


def test_lora_parameters():
    # rank 16, all seven modules, one Llama-3.2-3B layer:
    #   q 16*(3072+3072) = 98,304   k 16*(3072+1024) = 65,536   v 65,536   o 98,304
    #   gate, up, down 16*(3072+8192) = 180,224 each -> 540,672
    #   868,352 per layer x 28 = 24,313,856
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    assert LLAMA3B.lora_params(16, targets) == 24_313_856
    # q and v only, rank 8: (8*6144 + 8*4096) * 28 = (49,152 + 32,768) * 28 = 2,293,760
    assert LLAMA3B.lora_params(8, ["q_proj", "v_proj"]) == 2_293_760


def test_four_bit_base_bytes():
    # linear 2,818,572,288 params x 0.5 byte                 = 1,409,286,144
    # NF4 absmax: one float32 per 64 weights: /64 x 4         =   176,160,768
    # embedding + norms in bf16: (394,002,432 + 175,104) x 2  =   788,355,072
    #                                                          = 2,373,801,984 bytes (2.21 GiB)
    assert plan.base_weight_bytes(LLAMA3B, True, 2) == 2_373_801_984
    # unquantised bf16: 3,212,749,824 x 2
    assert plan.base_weight_bytes(LLAMA3B, False, 2) == 6_425_499_648


def test_kv_cache_bytes_per_token():
    # 2 (K and V) x 16 layers x 8 kv heads x 64 head_dim x 2 bytes = 32,768 (Llama-3.2-1B)
    assert LLAMA1B.kv_bytes_per_token(2) == 32_768
    # Llama-3.2-3B: 2 x 28 x 8 x 128 x 2 = 114,688
    assert LLAMA3B.kv_bytes_per_token(2) == 114_688


def test_train_activation_bytes_by_hand():
    # units per token and layer: 8*hidden + 3*q_dim + 3*kv_dim + 4*intermediate = 64 + 24 + 12 + 64 = 164
    # micro-batch 2 x 10 tokens = 20 tokens, 6 of them completion, 2-byte activations
    # checkpointing: layer inputs 2 layers x 20 x 8 x 2 = 640; one layer recomputed, doubled: 2 x 20 x 164 x 2 = 13,120
    # logits: saved log-softmax 2 x 6 x 100 x 4 = 4,800; full logits 2 x 10 x 100 x 2 = 4,000; two live rows
    #         2 x 6 x 100 x 4 = 4,800 -> 13,600
    got = plan.train_activation_bytes(SMALL, micro_batch=2, seq=10, new=6, ab=2, checkpointing=True)
    assert got == {"layers": 13_760, "logits": 13_600}
    # without checkpointing every layer keeps its working set, plus one in the backward: 3 x 20 x 164 x 2 = 19,680
    assert plan.train_activation_bytes(SMALL, 2, 10, 6, 2, False)["layers"] == 19_680


def test_tokens_of_the_papers_recipe():
    # teacher: ceil(4*64 / 0.5) = 512 samples x 512 tokens = 262,144 generated; 4*64 x 512 = 131,072 trained
    # students: 4*4 students x 10 steps x 8 questions x 32 rollouts = 40,960 rollouts x 1024 = 41,943,040
    # evaluation: (16 + 1) x 64 = 1,088 greedy answers x 1024 = 1,114,112
    t = plan.tokens(load_recipe("math"), valid_rate=0.5)
    assert t["teacher"] == {"samples": 512, "generated": 262_144, "trained": 131_072}
    assert t["students"] == {"samples": 40_960, "generated": 41_943_040, "trained": 41_943_040}
    assert t["evaluation"] == {"samples": 1_088, "generated": 1_114_112, "trained": 0}
    # an observed 80% valid rate: ceil(256 / 0.8) = 320 samples
    assert plan.tokens(load_recipe("math"), valid_rate=0.8)["teacher"]["samples"] == 320


def test_adapters_and_optimiser_state_of_the_students_in_flight():
    # Llama-3.2-1B rank 16, all seven modules: per layer q 16*4096 = 65,536, k and v 16*2560 = 40,960 each,
    # o 65,536, gate/up/down 16*10240 = 163,840 each -> 704,512 x 16 layers = 11,272,192 params per adapter
    cfg = load_recipe("math-t4")
    lora = 11_272_192
    assert LLAMA1B.lora_params(16, cfg.model.target_modules) == lora
    # all g*r = 8 students at once: teacher + baseline + 8 = 10 adapters x 4 bytes; AdamW: 8 students + teacher = 9 x 8
    mem = plan.memory(cfg, LLAMA1B, CARDS["t4"], "hf", "float16")
    items = {it.label: it.bytes for it in mem["items"]}
    assert items["LoRA adapters"] == 10 * lora * 4
    assert items["AdamW state"] == 9 * lora * 8
    # 4 in flight: waves of 2 datasets (2 x r=2 students); the 2 median students of the first wave are kept until
    # the step ends: 2 + 4 + 2 = 8 adapters, 4 + 2 + 1 = 7 with AdamW state
    cfg.inner.students_in_flight = 4
    items = {it.label: it.bytes for it in plan.memory(cfg, LLAMA1B, CARDS["t4"], "hf", "float16")["items"]}
    assert items["LoRA adapters"] == 8 * lora * 4
    assert items["AdamW state"] == 7 * lora * 8


def test_hf_sampling_kv_cache_and_totals():
    # math-t4: prompts estimated from the texts: teacher 627 chars / 4 -> 157 + 1 = 158 tokens; student 240 / 4 = 60
    # + a question of min(200, 384 // 2) = 192 + 1 = 253 tokens. The student call (8 students x 4 x 8 = 256
    # sequences, gen_batch 128 at once) has the largest cache: 128 x (253 + 384) x 32,768 = 2,671,771,648 bytes
    cfg = load_recipe("math-t4")
    assert plan._prompt_tokens(cfg, LLAMA1B) == (158, 253)
    mem = plan.memory(cfg, LLAMA1B, CARDS["t4"], "hf", "float16")
    items = {it.label: it.bytes for it in mem["items"]}
    assert items["KV cache (transformers generate)"] == 128 * (253 + 384) * 32_768
    # needed = allocated x 1.1 + 0.5 GiB (CUDA context); no vLLM in the hf engine
    assert mem["needed"] == pytest.approx(mem["allocated"] * 1.1 + 0.5 * GIB)


def test_vllm_share_and_kv_room():
    # engine vllm on a 24 GiB card: vLLM reserves 0.45 x 24 GiB = 10.8 GiB; the trainer's own parts come on top
    cfg = load_recipe("math-24gb")
    mem = plan.memory(cfg, LLAMA1B, CARDS["rtx4090"], "vllm", "bfloat16")
    items = {it.label: it.bytes for it in mem["items"]}
    assert items["vLLM's share of the card"] == pytest.approx(0.45 * 24 * GIB)
    # vLLM sleeps while adapters train: the peak is the sampling phase (trainer's persistent parts + vLLM's share) or
    # the training phase (the trainer's peak; in two-copy mode vLLM's weights went to CPU RAM), the larger
    train = max(mem["parts"]["student_train"], mem["parts"]["teacher_train"])
    persistent = mem["allocated"] - train
    sampling = persistent * 1.1 + 0.5 * GIB + 0.45 * 24 * GIB
    assert mem["needed"] == pytest.approx(max(sampling, mem["allocated"] * 1.1 + 0.5 * GIB))
    assert "base weights (trainer)" in items  # two copies: the trainer's and vLLM's
    # unsloth shares one copy: the trainer holds no weights of its own
    uns = plan.memory(cfg, LLAMA1B, CARDS["rtx4090"], "unsloth", "bfloat16")
    assert "base weights (trainer)" not in {it.label for it in uns["items"]}
    assert uns["kv_seqs"] > 1
    # shared mode with standby: unsloth's own share of a 24 GB card (0.825 x 0.95), and vLLM's start-up check
    assert {it.label: it.bytes for it in uns["items"]}["vLLM's share of the card"] == pytest.approx(0.78375 * 24 * GIB)
    assert any("start-up check passes: one max_model_len 1024" in n for n in uns["notes"])
    short = plan.memory(load_recipe("math-24gb", ["gpu_memory_utilization=0.06"]), LLAMA1B, CARDS["rtx4090"], "vllm",
                        "bfloat16")
    assert short["room"] is False and any("vLLM will refuse to start" in n for n in short["notes"])


def test_adamw8bit_state_in_the_plan():
    cfg = load_recipe("math-24gb")
    full = plan.memory(cfg, LLAMA1B, CARDS["rtx4090"], "unsloth", "bfloat16")["parts"]["adamw"]
    cfg.optimizer = "adamw8bit"
    eight = plan.memory(cfg, LLAMA1B, CARDS["rtx4090"], "unsloth", "bfloat16")["parts"]["adamw"]
    assert eight == pytest.approx(full * (2 + 8 / 256) / 8)


def test_plan_names_the_mode_and_the_copies():
    from soarlite.plan.display import render

    shared = render(plan.make_plan(load_recipe("math-24gb"), CARDS["rtx4090"], unsloth=True))
    assert "engine unsloth: shared" in shared and "1 base copy on the card" in shared
    two = render(plan.make_plan(load_recipe("math-24gb"), CARDS["rtx4090"], unsloth=False))
    assert "engine vllm: two copies" in two and "2 base copies on the card" in two


def test_training_time_by_hand():
    # SMALL: linear params per layer q 64 + k 32 + v 32 + o 64 + gate 128 + up 128 + down 128 = 576, x 2 layers
    # = 1,152, plus the lm_head 100 x 8 = 800 -> 1,952 FLOP-params. 10 sequences x 100 tokens x 2 FLOPs x 1,952 x
    # 4 passes (forward, backward, checkpoint recompute, KL reference) = 15,616,000 FLOPs; at 1e6 FLOP/s x 0.25
    # (the hf engine's assumed training utilisation) -> 62.464 s, plus the same FLOPs at the fitted card-independent
    # 37 TFLOP/s (4.2e-7 s)
    cfg = load_recipe("math-t4")
    card = Card("slow", 16, 1e-6, 1, (8, 0))
    assert SMALL.flop_params == 1_952
    assert plan._train_s(10, 100, "hf", card, SMALL, cfg, kl=True) == pytest.approx(62.464 + 15_616_000 / 37e12)
    # without the KL reference: 3 passes -> 46.848 s
    assert plan._train_s(10, 100, "hf", card, SMALL, cfg, kl=False) == pytest.approx(46.848 + 11_712_000 / 37e12)
    # plus the fixed cost of 3 micro-batches (fitted for transformers + peft): 3 x 0.08 s = 0.24 s
    assert plan._train_s(10, 100, "hf", card, SMALL, cfg, kl=False, micro_batches=3) == pytest.approx(
        46.848 + 11_712_000 / 37e12 + 0.24)
    # the per-token cost does not change with the card: on a card so fast that the roofline is nothing, 1,000
    # sequences x 1,000 tokens x 2 x 1,952 x 4 passes = 1.5616e10 FLOPs at 37e12 FLOP/s = 0.000422 s
    fast = Card("fast", 80, 1e9, 1e9, (9, 0))
    assert plan._train_s(1000, 1000, "hf", fast, SMALL, cfg, kl=True) == pytest.approx(1.5616e10 / 37e12, rel=1e-6)
    # unsloth's trainer has no fitted costs: the roofline alone
    assert plan._train_s(10, 100, "unsloth", card, SMALL, cfg, kl=True, micro_batches=3) == pytest.approx(
        15_616_000 / (1e6 * 0.40))


def test_decoding_charges_each_chunk_for_the_adapters_it_holds():
    # 256 rows of 8 adapters (32 each, contiguous), gen_batch 128: two chunks of 4 adapters each. On a card so fast
    # that only the overheads count, a step costs 16 layers x (0.44 ms + 7 modules x 4 x 0.30 ms) = 141.44 ms, and
    # the call 2 chunks x 10 steps x 141.44 ms = 2.8288 s (no prefill to speak of)
    cfg = load_recipe("math-t4")
    fast = Card("fast", 80, 1e9, 1e9, (9, 0))
    assert plan._decode_s(256, 1, 10, 8, "hf", fast, LLAMA1B, cfg, None) == pytest.approx(2.8288, rel=1e-4)
    # one adapter: 16 x (0.44 + 7 x 0.30) = 40.64 ms a step
    assert plan._decode_s(128, 1, 10, 1, "hf", fast, LLAMA1B, cfg, None) == pytest.approx(0.4064, rel=1e-4)


# Measured 2026-11-26 on an NVIDIA H200 (torch 2.11.0+cu130, transformers 5.17.0, peft 0.21.2, bitsandbytes 0.50.2)
# in two sessions: benchmarks/results/2026-11-26-h200/ (gpu_check_t4_128.log, gpu_check_t4.log) and
# 2026-11-26-h200-b/ (gpu_check_math-t4.json, gpu_check_math-t4_384.json, gpu_check_math-24gb.json):
# benchmarks/gpu_check.py on the Llama-3.2-1B shape (random weights, every rollout runs to its limit), 4-bit base,
# HFEngine, the recipes' shapes (8 students, gen_batch 128, micro-batch 4, KL on, checkpointing on). Seconds.
# Sampling, math-t4 (8 students x 32 rollouts): (new tokens, call, seconds); the first two are the fit's points.
# Not here: math-24gb's mixed call (512 rollouts), 54.0 s against the planner's 39.6 s (-27%, docs/performance.md).
H200_SAMPLING = [
    (128, "mixed", 37.4), (128, "per student", 44.4), (384, "mixed", 117.2),  # first session
    (128, "mixed", 45.1), (384, "mixed", 123.7),  # second session: the same calls (run-to-run spread ~20%)
]
# Training, RLOO updates: (recipe, new tokens, sequences, micro-batches, seconds); all four are the fit's points
H200_TRAINING = [
    ("math-t4", 128, 256, 64, 26.7),  # first session: the 8 students' updates
    ("math-t4", 128, 32, 8, 3.01),  # second session: one student's update
    ("math-24gb", 128, 64, 16, 6.00),
    ("math-t4", 384, 32, 8, 6.86),
]


def _h200_cfg(recipe: str, new: int):
    cfg = load_recipe(recipe, ["engine=hf", "model.use_unsloth=false", f"inner.max_new_tokens={new}",
                               f"outer.max_new_tokens={new}"])
    assert plan.students_in_flight(cfg)[0] == 8 and cfg.model.gen_batch == 128 and cfg.inner.micro_batch == 4
    return cfg, plan.prompt_tokens(cfg, LLAMA1B)[1]  # 125 at 128 new tokens, 253 at 384: what gpu_check used


@pytest.mark.parametrize("new,call,seconds", H200_SAMPLING)
def test_planner_reproduces_the_h200_sampling(new, call, seconds):
    """The hf engine's fitted decoding overheads (the CALIBRATION comment in soarlite/plan/throughput.py) give the
    measured times within 25%. The first session's 128-token figures are the fit's own points (this guards the
    arithmetic); the others were not used in the fit."""
    cfg, prompt = _h200_cfg("math-t4", new)
    h200 = CARDS["h200"]
    if call == "mixed":
        got = plan._decode_s(256, prompt, new, 8, "hf", h200, LLAMA1B, cfg, None)
    else:
        got = 8 * plan._decode_s(32, prompt, new, 1, "hf", h200, LLAMA1B, cfg, None)
    assert got == pytest.approx(seconds, rel=0.25)


@pytest.mark.parametrize("recipe,new,sequences,micro_batches,seconds", H200_TRAINING)
def test_planner_reproduces_the_h200_training(recipe, new, sequences, micro_batches, seconds):
    """The transformers + peft trainer's fitted costs (0.08 s per micro-batch, FLOPs at 37 TFLOP/s on top of the
    roofline: CALIBRATION) give the measured updates within 25% (-6% to +4%), at 128 and at 384 new tokens."""
    cfg, prompt = _h200_cfg(recipe, new)
    assert sequences == micro_batches * cfg.inner.micro_batch
    got = plan._train_s(sequences, prompt + new, "hf", CARDS["h200"], LLAMA1B, cfg, kl=True,
                        micro_batches=micro_batches)
    assert got == pytest.approx(seconds, rel=0.25)


def test_measured_rates_give_phase_times():
    # math-t4 with 1,000 decoded and 2,000 trained tokens/s: teacher sampling 49,152 / 1,000 = 49.152 s;
    # student training 1,280 rollouts x (253 + 384) tokens / 2,000 = 407.68 s; evaluation 110,592 / 1,000
    cfg = load_recipe("math-t4")
    t = plan.measured_step_time(cfg, LLAMA1B, 0.5, {"decode_tokens_per_s": 1000.0, "train_tokens_per_s": 2000.0})
    assert t["teacher sampling"] == pytest.approx(49.152)
    assert t["student training"] == pytest.approx(1280 * 637 / 2000)
    assert t["evaluation (greedy)"] == pytest.approx(110.592)
    # grading: 1,280 + 288 + 128 = 1,696 answers at 150 a second per worker, 2 workers
    assert t["grading"] == pytest.approx(1696 / 300)


def test_model_shape_sources(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({
        "model_type": "llama", "vocab_size": 100, "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 2,
        "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 4, "tie_word_embeddings": True}))
    cfg = load_recipe("math-t4", [f"model.base={tmp_path}"])
    assert plan.model_shape(cfg) == plan.Shape(str(tmp_path), 100, 8, 16, 2, 2, 1, 4, True)
    toy = plan.model_shape(load_recipe("tiny"))
    assert (toy.hidden, toy.layers, toy.heads, toy.intermediate) == (128, 2, 4, 384)
    with pytest.raises(plan.PlanError, match="not a model the planner knows"):
        plan.model_shape(load_recipe("math-t4", ["model.base=someone/Unknown-7B"]))


@pytest.mark.parametrize("name,key", [
    ("Tesla T4", "t4"), ("NVIDIA GeForce RTX 4090", "rtx4090"), ("NVIDIA GeForce RTX 3090", "rtx3090"),
    ("NVIDIA L4", "l4"), ("NVIDIA L40S", "l40s"), ("NVIDIA A10G", "a10g"), ("NVIDIA H100 80GB HBM3", "h100"),
    ("Tesla V100-SXM2-16GB", "v100-16gb"),
])
def test_card_names(name, key):
    assert card_class(name).name == key


def test_a100_size_from_memory():
    assert card_class("NVIDIA A100-SXM4-80GB", 79.2).name == "a100-80gb"
    assert card_class("NVIDIA A100-SXM4-40GB", 39.4).name == "a100-40gb"


def test_fit_and_suggestion():
    p = plan.make_plan(load_recipe("math"), CARDS["t4"], unsloth=False)
    assert p.fits is False and p.knob
    p = plan.make_plan(load_recipe("math", ["inner.micro_batch=64"]), CARDS["h100"], unsloth=False)
    # a micro-batch of 64 x 1,285 tokens keeps 52 GiB of logits alone; 32 fits an 80 GB card while vLLM sleeps
    # during training (the recipe takes 8)
    assert p.fits is False and p.knob == "inner.micro_batch" and p.suggestion.startswith("inner.micro_batch=32 fits")
    assert plan.make_plan(load_recipe("math"), CARDS["h100"], unsloth=False).fits is True
    assert plan.make_plan(load_recipe("math-t4"), CARDS["t4"], unsloth=False).fits is True
    assert plan.make_plan(load_recipe("tiny"), None).fits is None  # a CPU run: nothing to check


# the figures a recipe's header quotes: (recipe, card, "X of Y GiB", "~T per outer step")
HEADERS = [("math-24gb", "rtx4090"), ("math-24gb", "rtx3090"), ("math-24gb", "l4"), ("math-t4", "t4"), ("harp", "h100")]


@pytest.mark.parametrize("recipe,card", HEADERS)
def test_recipe_headers_quote_the_planner(recipe, card):
    p = plan.make_plan(load_recipe(recipe), CARDS[card], unsloth=False)
    assert p.fits is True
    header = "\n".join(line for line in (ROOT / "recipes" / f"{recipe}.yaml").read_text().splitlines() if line.startswith("#"))
    assert f"{p.needed / GIB:.1f} of {CARDS[card].mem_gib:g} GiB" in header
    assert re.search(rf"~{re.escape(plan._hours(p.step_s))} per (outer )?step", header), plan._hours(p.step_s)


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "soarlite", *args], capture_output=True, text=True, cwd=ROOT)


def test_cli_plan_exit_status():
    ok = _cli("plan", "--recipe", "math-t4", "--gpu", "t4", "model.use_unsloth=false")
    assert ok.returncode == 0, ok.stderr
    assert "fits: yes" in ok.stdout and "KV cache (transformers generate)" in ok.stdout
    too_big = _cli("plan", "--recipe", "math-t4", "--gpu-mem", "4", "model.use_unsloth=false")
    assert too_big.returncode == 1
    assert "fits: NO" in too_big.stdout and "lower " in too_big.stdout
    bad = _cli("plan", "--recipe", "math-t4", "--gpu", "gtx-nope")
    assert bad.returncode == 2 and "unknown card" in bad.stderr


def test_first_promotion_waits_for_the_window_and_promote_from():
    def first(*overrides):
        text = plan.render(plan.make_plan(load_recipe("math-t4", list(overrides)), CARDS["t4"]))
        return text.split("first promotion possible after ")[1].split(" steps")[0]

    assert first("outer.window=3") == "3"
    assert first("outer.window=3", "outer.promote_from=9") == "10"  # steps 0-8 hold back; step 9 is the tenth


def test_plan_imports_no_torch():
    code = ("import sys; from soarlite import plan; from soarlite.hardware import CARDS; from soarlite.config import load_recipe; "
            "plan.render(plan.make_plan(load_recipe('math-t4'), CARDS['t4'])); "
            "print('torch' in sys.modules, 'bitsandbytes' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.stdout.strip() == "False False", r.stderr


def test_measure_on_a_tiny_model(tmp_path):
    """--measure through the real engine on this CPU: rates come out positive and feed the times."""
    sys.path.insert(0, str(Path(__file__).parent))
    from _tiny import make_tiny_model

    model = make_tiny_model(tmp_path / "m", hidden=64)
    cfg = load_recipe("tiny", ["task=math", f"model.base={model}", "data.hard_train=x.jsonl", "inner.micro_batch=2"])
    rates = plan.measure(cfg, str(model), decode_batch=4, new_tokens=4, train_seq=24)
    assert rates["device"] == "cpu" and rates["decode_tokens_per_s"] > 0 and rates["train_tokens_per_s"] > 0
    p = plan.make_plan(cfg, None, measured=rates)
    assert p.time_source.startswith("measured") and p.step_s > 0


def test_auto_grader_workers_plan_with_this_machines_cores():
    """grader_workers: 0 (auto) is planned with as many workers as the grader will start, not divided by zero."""
    from soarlite.grading import resolve_workers

    auto = plan.make_plan(load_recipe("tiny", ["grader_workers=0"]), None)
    fixed = plan.make_plan(load_recipe("tiny", [f"grader_workers={resolve_workers(0)}"]), None)
    assert auto.step_s == fixed.step_s
