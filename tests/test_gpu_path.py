"""Issue 10, the real-model path, the parts a CPU can check: which engine a machine gets, the arguments that reach
unsloth and vLLM (stand-ins record them), the in-memory adapter hand-over and standby, the refusal to sample mixed
adapters through unsloth's decode, stop tokens, hand-over space and dtype, and "no silent CPU"."""

import sys
from types import ModuleType, SimpleNamespace

import pytest
import torch
from _tiny import make_tiny_model, tiny_cfg

from soarlite import hardware
from soarlite.config import load_recipe
from soarlite.engine import OptimizerSpec, SamplingParams, common, engine_mode
from soarlite.engine import unsloth as uns
from soarlite.engine.hf import HFEngine


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("gp") / "model", hidden=32)


def _installed(monkeypatch, *names):
    import importlib.util

    real = importlib.util.find_spec
    fake = {"unsloth", "vllm"}
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda n, *a: (SimpleNamespace(name=n) if n in names else None) if n in fake else real(n, *a))


# ------------------------------------------------------------------------------------------------ routing
@pytest.mark.parametrize("installed, engine, cuda, mode", [
    (("unsloth", "vllm"), "auto", True, "shared"),
    (("unsloth", "vllm"), "hf", True, "shared"),
    (("unsloth", "vllm"), "vllm", True, "two-copies"),
    (("vllm",), "auto", True, "two-copies"),
    (("unsloth",), "auto", True, "transformers"),  # unsloth without vLLM: never its decode for mixed adapters
    ((), "auto", True, "transformers"),
    (("unsloth", "vllm"), "auto", False, "transformers"),
    (("vllm",), "vllm", False, "two-copies"),
])
def test_engine_mode(monkeypatch, installed, engine, cuda, mode):
    _installed(monkeypatch, *installed)
    cfg = load_recipe("math-24gb", [f"engine={engine}"])
    assert engine_mode(cfg, cuda) == mode
    assert uns.use_unsloth("auto", "cuda") is (installed == ("unsloth", "vllm"))


def test_unsloth_gets_every_argument_the_design_needs(monkeypatch):
    """from_pretrained of a stand-in unsloth: slots for a whole wave, a forced max_num_seqs (never 256), the exact
    model name, plain checkpointing, vLLM's rank, the context length, the run seed; standby set before import."""
    seen = {}

    class FastLanguageModel:
        @staticmethod
        def from_pretrained(**kw):
            seen.update(kw, standby=__import__("os").environ.get("UNSLOTH_VLLM_STANDBY"))
            return "model", "tok"

    monkeypatch.setitem(sys.modules, "unsloth", SimpleNamespace(FastLanguageModel=FastLanguageModel))
    monkeypatch.delenv("UNSLOTH_VLLM_STANDBY", raising=False)
    monkeypatch.delenv("UNSLOTH_VLLM_MERGED_ROLLOUT", raising=False)
    cfg = load_recipe("math-24gb", ["model.lora_rank=12", "seed=7", "gpu_memory_utilization=0.5"])
    assert uns.load_unsloth(cfg, "/m", "bf16", fast_inference=True) == ("model", "tok")
    g, r = cfg.outer.g, cfg.outer.r
    assert seen["max_loras"] == g * r + 3
    assert seen["max_num_seqs"] not in (None, 256) and seen["max_num_seqs"] >= g * r * cfg.inner.batch_size
    assert seen["use_exact_model_name"] is True
    assert seen["use_gradient_checkpointing"] is True  # not unsloth's "unsloth" (reentrant) default
    assert seen["max_lora_rank"] == 16 and seen["max_seq_length"] == 1024 and seen["random_state"] == 7
    assert seen["fast_inference"] is True and seen["load_in_4bit"] is True and seen["gpu_memory_utilization"] == 0.5
    assert seen["standby"] == "1"
    seen.clear()
    uns.load_unsloth(cfg, "/m", "bf16", fast_inference=False)  # no vLLM: its keys stay out
    assert "max_loras" not in seen and "max_num_seqs" not in seen and seen["use_exact_model_name"] is True


def test_max_num_seqs_is_never_256():
    assert common.vllm_max_num_seqs(load_recipe("math-24gb")) == 512  # 8 students x 8 questions x 8 rollouts
    cfg = load_recipe("math-24gb", ["outer.g=2", "outer.r=2", "inner.batch_size=8", "inner.group_size=8", "outer.M=8"])
    assert common.vllm_max_num_seqs(cfg) == 255


# ------------------------------------------------------------------------------------------------ unsloth sampler
class FakeRequest:
    __struct_fields__ = ("lora_name", "lora_int_id", "lora_path", "lora_tensors", "lora_config")

    def __init__(self, lora_name, lora_int_id, lora_path="", lora_tensors=None, lora_config=None):
        self.lora_name, self.lora_int_id, self.lora_path = lora_name, lora_int_id, lora_path
        self.lora_tensors, self.lora_config = lora_tensors, lora_config


class FakeLLM:
    def __init__(self):
        self.removed, self.slept = [], []
        self.llm_engine = SimpleNamespace(remove_lora=self.removed.append)

    def sleep(self, level):
        self.slept.append(level)


def test_unsloth_sampler_hands_adapters_over_in_memory(model_dir, monkeypatch):
    from peft import get_peft_model_state_dict

    monkeypatch.setenv("UNSLOTH_VLLM_STANDBY", "1")
    e = HFEngine(tiny_cfg("cpu"), str(model_dir))
    e.create_adapter("teacher", OptimizerSpec(1e-2, 10))
    e.create_adapter("s0", OptimizerSpec(1e-2, 10))
    e.dtype = torch.bfloat16  # as on a card: the copies go in the compute dtype
    llm = FakeLLM()
    s = uns.UnslothSampler(e, llm)
    monkeypatch.setattr(s, "_lora_request_cls", lambda: FakeRequest)
    assert s.in_memory
    r1 = s.request("teacher")
    live = get_peft_model_state_dict(e.model, adapter_name="teacher")
    assert r1.lora_name == "teacher@1" and r1.lora_int_id == 1 and r1.lora_path == ""
    assert r1.lora_tensors.keys() == live.keys() and all(".teacher." not in k for k in r1.lora_tensors)
    assert all(v.dtype == torch.bfloat16 for v in r1.lora_tensors.values())
    assert all(v.data_ptr() != live[k].data_ptr() for k, v in r1.lora_tensors.items())  # copies, not views
    assert r1.lora_config["r"] == 4 and isinstance(r1.lora_config["target_modules"], list)
    assert s.request("teacher") is r1 and s.request("s0").lora_int_id == 2
    e.copy_adapter("s0", "teacher")  # new weights: a new id, the old one removed from vLLM
    assert s.request("teacher").lora_int_id == 3 and llm.removed == [1]
    # standby: the first forward with gradients after sampling puts vLLM to sleep, once
    e.sampler = s
    s.release()
    s.release()
    assert llm.slept == [1]


def test_mixed_adapters_through_unsloth_without_vllm_are_refused(model_dir):
    e = HFEngine(tiny_cfg("cpu"), str(model_dir))
    e.create_adapter("a")
    e.create_adapter("b")
    e.unsloth = True  # as if loaded through unsloth, and no vLLM sampler attached
    e.generate(["1+1="], ["a"], SamplingParams(0.0, 2), seed=0)  # one adapter: fine
    with pytest.raises(RuntimeError, match="silently wrong; install vllm"):
        e.generate(["1+1=", "2+2="], ["a", "b"], SamplingParams(0.0, 2), seed=0)


# ------------------------------------------------------------------------------------------------ stop tokens
def test_generation_stops_at_every_eos_id(tmp_path):
    from transformers import GenerationConfig

    d = make_tiny_model(tmp_path / "m", hidden=32)
    e0 = HFEngine(tiny_cfg("cpu"), str(d))
    extra = e0.tokenizer.convert_tokens_to_ids("a")
    GenerationConfig(bos_token_id=1, eos_token_id=[2, extra], pad_token_id=0).save_pretrained(d)
    e = HFEngine(tiny_cfg("cpu"), str(d))
    assert e.stop_ids == [2, extra]
    outs = e.generate(["x="] * 48, [None] * 48, SamplingParams(1.0, 40), seed=0)
    assert all(t not in (2, extra) for c in outs for t in c.ids[:-1])  # cut at the first stop id, kept
    assert any(c.ids[-1] == extra for c in outs)  # the generation_config's second eos stops too


def test_stop_ids_and_cut():
    tok = SimpleNamespace(eos_token_id=128009)
    assert common.stop_ids(SimpleNamespace(eos_token_id=[128001, 128008, 128009]), tok) == [128001, 128008, 128009]
    assert common.stop_ids(SimpleNamespace(eos_token_id=None), tok) == [128009]
    assert common.cut_at_stop([5, 128008, 0, 0], [128009, 128008]) == [5, 128008]


# ------------------------------------------------------------------------------------------------ hand-over space
def test_handover_falls_back_to_disk_when_shm_is_short(monkeypatch):
    import shutil

    monkeypatch.setattr(shutil, "disk_usage", lambda p: SimpleNamespace(free=64 * 2**20))
    d = common.scratch_dir("soarlite-test-", need_bytes=200 * 2**20)
    try:
        assert not d.startswith("/dev/shm")
    finally:
        shutil.rmtree(d)


def test_handover_files_are_in_the_compute_dtype(model_dir):
    from safetensors.torch import load_file

    e = HFEngine(tiny_cfg("cpu"), str(model_dir))
    e.create_adapter("t")
    assert e.adapter_bytes() > 0
    e.dtype = torch.bfloat16
    h = common.LoraHandover(e, FakeLLM(), prefix="soarlite-test-")
    h._lora_request_cls = lambda: lambda n, i, p: SimpleNamespace(lora_name=n, lora_int_id=i, lora_path=p)
    r = h.request("t")
    assert all(v.dtype == torch.bfloat16 for v in load_file(f"{r.lora_path}/adapter_model.safetensors").values())
    h.close()


# ------------------------------------------------------------------------------------------------ VLLMEngine (two copies)
def test_two_copy_engine_sets_context_length_and_sleeps(monkeypatch):
    import soarlite.engine.hf as hfmod
    from soarlite.engine import vllm as vmod

    made = {}

    class LLM:
        def __init__(self, **kw):
            made.update(kw)
            self.calls = []

        def sleep(self, level):
            self.calls.append(("sleep", level))

        def wake_up(self):
            self.calls.append(("wake",))

    class FakeHF:
        def __init__(self, cfg, model_dir):
            self.device, self.dtype, self.cfg = "cuda", torch.bfloat16, cfg
            self.tokenizer, self.base = None, SimpleNamespace(config=SimpleNamespace(max_position_embeddings=131072))
            self.versions = {}

        def logprobs(self, *a):
            return []

    vllm = ModuleType("vllm")
    vllm.LLM = LLM
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    monkeypatch.setattr(vmod, "_require_vllm", lambda: None)
    monkeypatch.setattr(hfmod, "HFEngine", FakeHF)
    cfg = load_recipe("math-24gb", ["gpu_memory_utilization=0.6"])
    e = vmod.VLLMEngine(cfg, "/m")
    assert made["max_model_len"] == 1024 and made["enable_sleep_mode"] is True
    assert made["gpu_memory_utilization"] == 0.6 and made["max_loras"] == 11 and made["max_lora_rank"] == 16
    assert made["max_num_seqs"] != 256 and made["quantization"] == "bitsandbytes"
    e.logprobs("s0", [], grad=True)
    e.logprobs("s0", [], grad=True)
    e._wake()
    assert e.llm.calls == [("sleep", 1), ("wake",)]
    e.close()


# ------------------------------------------------------------------------------------------------ no silent CPU
def test_a_gpu_recipe_without_cuda_stops_with_one_line(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from soarlite.cli import app

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(hardware.NoCuda, match="torch sees no CUDA device"):
        hardware.require_cuda(load_recipe("math-t4"))
    hardware.require_cuda(load_recipe("tiny"))  # a CPU recipe: nothing to say
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data" / "math-llama1b_fail128").mkdir(parents=True)
    for f in ("train", "test"):
        (tmp_path / "data" / "math-llama1b_fail128" / f"{f}.jsonl").write_text('{"problem": "1+1", "answer": "2"}\n')
    monkeypatch.setattr(hardware, "card_from_torch", lambda: None)
    r = CliRunner().invoke(app, ["run", "--recipe", "math-24gb", "--out", "run"])
    assert r.exit_code == 2, r.output
    assert r.output.startswith("error: math-24gb: device: cuda, but torch sees no CUDA device") and r.output.count("\n") == 1
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------------------------ adamw8bit, runner
def test_adamw8bit_optimizer_steps(model_dir):
    pytest.importorskip("bitsandbytes")
    cfg = tiny_cfg("cpu")
    cfg.optimizer = "adamw8bit"
    e = HFEngine(cfg, str(model_dir))
    e.create_adapter("s", OptimizerSpec(1e-2, 10))
    opt = e.optimizers["s"][0]
    assert type(opt).__name__ == "AdamW8bit" and opt.param_groups[0]["weight_decay"] == 0.0
    outs = e.generate(["1+1="] * 2, ["s"] * 2, SamplingParams(1.0, 4), seed=0)
    from soarlite import rloo

    rloo.update(e, "s", outs, [1.0, -1.0], 0.0, 2)
    assert any(p.abs().sum() > 0 for n, p in e._params("s").items() if "lora_B" in n)


def test_run_stops_when_the_preflight_check_fails(monkeypatch, tmp_path):
    from test_gpu_cpu import _fake_world
    from typer.testing import CliRunner

    from soarlite import preflight
    from soarlite.cli import app

    ran = []
    _fake_world(monkeypatch, lambda *a, **k: ran.append(1))
    monkeypatch.setattr(preflight, "check", lambda *a, **k: preflight.Result(4, 2, 3, 3, 1.0))
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(app, ["run", "--recipe", "tiny", "preflight=true", "--out", "run"])
    assert r.exit_code == 1 and "pre-flight check failed" in r.output and "6 sgd steps at inner.lr=0.03)" in r.output
    assert "plain SGD's rate is on another scale" in " ".join(r.output.split())  # the hint fits the optimiser
    assert not ran  # the loop never started
    r = CliRunner().invoke(app, ["run", "--recipe", "tiny", "preflight=true", "inner.optimizer=adamw", "--out", "run2"])
    assert r.exit_code == 1 and "LoRA wants about 10x a full fine-tuning rate" in " ".join(r.output.split())
