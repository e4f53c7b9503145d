"""The transformers + peft engine on a random tiny Llama: adapters, mixed batches, log-probs, training, files."""

import json

import pytest
import torch
from _tiny import make_tiny_model

from soarlite import rloo
from soarlite.config import Config
from soarlite.engine import OptimizerSpec, SamplingParams
from soarlite.engine.hf import HFEngine
from soarlite.hardware import pick_dtype

PROMPTS = ["12+30=", "7*8=", "hello "]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


def _engine(model_dir):
    cfg = Config()
    cfg.model.lora_rank = 4
    cfg.model.lora_alpha = 8
    cfg.model.target_modules = ["q_proj", "v_proj", "up_proj"]
    torch.manual_seed(0)
    return HFEngine(cfg, str(model_dir))


def _train(engine, name, steps=3):
    """A few steps that push `name` towards what it did not say: enough to change greedy outputs."""
    for s in range(steps):
        outs = engine.generate(PROMPTS, [name] * 3, SamplingParams(1.0, 6), seed=s)
        rloo.update(engine, name, outs, [1.0, -1.0, 0.5], kl_coef=0.0, micro_batch=2)


def test_new_adapter_is_the_base(model_dir):
    e = _engine(model_dir)
    e.create_adapter("teacher", OptimizerSpec(1e-2, 10))
    base = e.generate(PROMPTS, [None] * 3, SamplingParams(0.0, 8), seed=0)
    lora = e.generate(PROMPTS, ["teacher"] * 3, SamplingParams(0.0, 8), seed=0)
    assert [c.ids for c in base] == [c.ids for c in lora]
    for a, b in zip(e.logprobs(None, base), e.logprobs("teacher", base)):
        torch.testing.assert_close(a, b)


def test_training_changes_only_its_adapter_and_mixed_batches_match(model_dir):
    e = _engine(model_dir)
    e.create_adapter("one", OptimizerSpec(5e-2, 10))
    e.create_adapter("two", OptimizerSpec(5e-2, 10))
    before = e.generate(PROMPTS, ["two"] * 3, SamplingParams(0.0, 8), seed=0)
    _train(e, "one")
    after_b = e.generate(PROMPTS, ["two"] * 3, SamplingParams(0.0, 8), seed=0)
    assert [c.ids for c in before] == [c.ids for c in after_b]
    lp_a = e.logprobs("one", before)
    lp_b = e.logprobs("two", before)
    assert any(not torch.allclose(x, y) for x, y in zip(lp_a, lp_b))
    # one call with an adapter per prompt gives what a call per adapter gives
    names = ["one", "two", None]
    mixed = e.generate(PROMPTS, names, SamplingParams(0.0, 8), seed=0)
    single = [e.generate([p], [n], SamplingParams(0.0, 8), seed=0)[0] for p, n in zip(PROMPTS, names)]
    assert [c.ids for c in mixed] == [c.ids for c in single]


def test_logprobs_match_generation_scores(model_dir):
    """Scoring a sampled completion gives the log-probs the sampler used (same positions, same tokens)."""
    e = _engine(model_dir)
    e.create_adapter("one", OptimizerSpec(1e-2, 10))
    outs = e.generate(PROMPTS, ["one"] * 3, SamplingParams(0.0, 5), seed=0)
    lps = e.logprobs("one", outs)
    for c, lp in zip(outs, lps):
        assert lp.shape == (len(c.ids),)
        assert (lp <= 0).all()
        # greedy picks the argmax, so each chosen token's log-prob is the row maximum: check against a full forward
        ids = torch.tensor([c.prompt_ids + c.ids])
        e.model.set_adapter("one")
        with torch.no_grad():
            logits = e.model(input_ids=ids).logits[0, len(c.prompt_ids) - 1 : -1].log_softmax(-1)
        torch.testing.assert_close(lp, logits.max(-1).values)


def test_save_load_roundtrip_with_optimizer(model_dir, tmp_path):
    e = _engine(model_dir)
    e.create_adapter("one", OptimizerSpec(5e-2, 10, warmup_steps=2))
    _train(e, "one", steps=2)
    e.save_adapter("one", str(tmp_path / "one"), with_optimizer=True)
    assert sorted(p.name for p in (tmp_path / "one").iterdir()) == [
        "adapter_config.json", "adapter_model.safetensors", "optimizer.json", "optimizer.safetensors"]
    assert json.loads((tmp_path / "one" / "adapter_config.json").read_text())["r"] == 4
    e.load_adapter("three", str(tmp_path / "one"), OptimizerSpec(5e-2, 10, warmup_steps=2))
    outs = e.generate(PROMPTS, ["one"] * 3, SamplingParams(0.0, 8), seed=0)
    for x, y in zip(e.logprobs("one", outs), e.logprobs("three", outs)):
        torch.testing.assert_close(x, y)
    # the optimiser resumes where it was: the same next step from both
    assert e.optimizers["three"][0].param_groups[0]["lr"] == e.optimizers["one"][0].param_groups[0]["lr"]
    _train(e, "one", steps=1)
    _train(e, "three", steps=1)
    for x, y in zip(e.logprobs("one", outs), e.logprobs("three", outs)):
        torch.testing.assert_close(x, y)


def test_saved_adapter_loads_in_plain_peft(model_dir, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    e = _engine(model_dir)
    e.create_adapter("one", OptimizerSpec(5e-2, 10))
    _train(e, "one", steps=2)
    e.save_adapter("one", str(tmp_path / "one"))
    outs = e.generate(PROMPTS, ["one"] * 3, SamplingParams(0.0, 8), seed=0)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model_dir), str(tmp_path / "one")).eval()
    for c in outs:
        ids = torch.tensor([c.prompt_ids])
        with torch.no_grad():
            got = model.generate(input_ids=ids, max_new_tokens=8, do_sample=False, pad_token_id=0, eos_token_id=2)
        assert got[0, len(c.prompt_ids):].tolist()[: len(c.ids)] == c.ids


def test_dtype_choice_on_cpu():
    assert pick_dtype("auto", "cpu") == torch.float32
    assert pick_dtype("bfloat16", "cpu") == torch.bfloat16


@pytest.mark.parametrize("algorithm", ["sgd", "adamw"])
def test_sgd_steps_in_proportion_to_the_signal(model_dir, algorithm):
    """inner.optimizer sgd: twice the advantages move a student twice as far; AdamW's normalised step moves it the
    same distance either way (why a rare right answer moves an AdamW student as much as many do)."""
    e = _engine(model_dir)
    e.create_adapter("one", OptimizerSpec(0.1, 10, algorithm=algorithm))
    e.create_adapter("two", OptimizerSpec(0.1, 10, algorithm=algorithm), copy_from="one")
    before = {k: v.clone() for k, v in e._params("one").items()}
    outs = e.generate(PROMPTS, ["one"] * 3, SamplingParams(1.0, 6), seed=0)
    rloo.update(e, "one", outs, [1.0, -1.0, 0.5], kl_coef=0.0, micro_batch=2)
    rloo.update(e, "two", outs, [2.0, -2.0, 1.0], kl_coef=0.0, micro_batch=2)
    one = torch.cat([(e._params("one")[k] - v).flatten() for k, v in before.items()])
    two = torch.cat([(e._params("two")[k.replace(".one.", ".two.")] - v).flatten() for k, v in before.items()])
    assert one.abs().max() > 0
    if algorithm == "sgd":
        torch.testing.assert_close(two, 2.0 * one, rtol=1e-3, atol=1e-7)
    else:  # the same step, but for coordinates whose gradient is near AdamW's eps
        assert 0.97 < (two.norm() / one.norm()).item() < 1.03
    assert isinstance(e.optimizers["one"][0], torch.optim.SGD if algorithm == "sgd" else torch.optim.AdamW)


def test_max_grad_norm_bounds_the_step_and_leaves_a_small_gradient_alone(model_dir):
    """inner.max_grad_norm with SGD: a gradient longer than the bound steps exactly lr x bound along its direction;
    a shorter one steps exactly as without a bound."""
    e = _engine(model_dir)
    lr = 0.1
    e.create_adapter("free", OptimizerSpec(lr, 10, algorithm="sgd"))
    before = {k: v.clone() for k, v in e._params("free").items()}
    outs = e.generate(PROMPTS, ["free"] * 3, SamplingParams(1.0, 6), seed=0)
    advs = [1.0, -1.0, 0.5]

    def step_of(name):
        return torch.cat([(e._params(name)[k.replace(".free.", f".{name}.")] - v).flatten() for k, v in before.items()])

    def fresh(name, bound):  # the same starting weights as "free" had
        e.create_adapter(name, OptimizerSpec(lr, 10, algorithm="sgd", max_grad_norm=bound))
        with torch.no_grad():
            for k, v in before.items():
                e._params(name)[k.replace(".free.", f".{name}.")].copy_(v)

    rloo.update(e, "free", outs, advs, kl_coef=0.0, micro_batch=2)
    free = step_of("free")
    grad_norm = (free.norm() / lr).item()
    assert grad_norm > 0
    fresh("tight", grad_norm / 4)
    fresh("loose", grad_norm * 4)
    rloo.update(e, "tight", outs, advs, kl_coef=0.0, micro_batch=2)
    rloo.update(e, "loose", outs, advs, kl_coef=0.0, micro_batch=2)
    torch.testing.assert_close(step_of("tight"), free / 4, rtol=1e-3, atol=1e-7)
    torch.testing.assert_close(step_of("loose"), free, rtol=1e-4, atol=1e-8)
