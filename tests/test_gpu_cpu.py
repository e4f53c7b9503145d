"""The single-GPU path, the parts that run on a CPU: the 4-bit shared base (bitsandbytes NF4 quantizes here too),
dtype choice per compute capability, fp16 loss scaling, gradient checkpointing, lazy imports, the unsloth sampler's
adapter hand-over (with a stand-in for vLLM), and the messages and exits of run: too big, out of memory, --max-hours."""

import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from _tiny import ALL_MODULES, make_tiny_model, tiny_cfg

from soarlite import guard, hardware, rloo
from soarlite.config import load_recipe
from soarlite.engine import OptimizerSpec, SamplingParams
from soarlite.engine import unsloth as uns
from soarlite.engine.hf import HFEngine
from soarlite.extras import MissingExtra
from soarlite.hardware import pick_dtype

PROMPTS = ["12+30=", "7*8=", "hello "]
MODULES = ALL_MODULES


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    # hidden 64: every linear layer has >= 64 inputs, so bitsandbytes quantizes all of them (blocks of 64)
    return make_tiny_model(tmp_path_factory.mktemp("tiny4") / "model", hidden=64)


def _cfg(**model):
    return tiny_cfg("cpu", **model)


def _lora(engine, name, kind="lora_B"):
    return {n: p for n, p in engine._params(name).items() if kind in n}


# ------------------------------------------------------------------------------------------------ 4-bit shared base
def test_four_bit_base_trains_every_lora_module(model_dir):
    bnb = pytest.importorskip("bitsandbytes")
    torch.manual_seed(0)
    e = HFEngine(_cfg(load_in_4bit=True), str(model_dir))
    linears = [m for n, m in e.base.named_modules() if n.endswith(tuple(MODULES))]
    assert linears and all(isinstance(m, bnb.nn.Linear4bit) for m in linears)
    e.create_adapter("teacher", OptimizerSpec(1e-2, 10))
    e.create_adapter("s0", OptimizerSpec(1e-2, 10), copy_from="teacher")

    # generation with two adapters and the bare base in one call, then log-probs of what was sampled
    outs = e.generate(PROMPTS, ["teacher", "s0", None], SamplingParams(1.0, 8), seed=0)
    assert all(len(c.ids) > 0 for c in outs)
    lps = e.logprobs("s0", outs)
    assert all(torch.isfinite(lp).all() and (lp <= 0).all() for lp in lps)

    before = {n: p.detach().clone() for n, p in e._params("s0").items()}
    teacher_before = {n: p.detach().clone() for n, p in e._params("teacher").items()}
    lp = e.logprobs("s0", outs, grad=True)
    loss = -sum(x.sum() for x in lp) / sum(len(c.ids) for c in outs)
    assert torch.isfinite(loss)
    loss.backward()
    grads = {n: p.grad for n, p in _lora(e, "s0").items()}
    # LoRA B starts at zero, so the first gradient lands on B; it must reach every module of every layer, which
    # needs gradients to flow back through the 4-bit layers (see hardware.fix_bnb_cpu_gradients)
    assert len(grads) == 2 * len(MODULES)
    assert all(g is not None and g.abs().sum() > 0 for g in grads.values()), [n for n, g in grads.items() if not g.abs().sum()]
    e.step("s0")
    assert any(not torch.equal(before[n], p) for n, p in e._params("s0").items())
    assert all(torch.equal(teacher_before[n], p) for n, p in e._params("teacher").items())  # only its own adapter


def test_without_the_cpu_fix_gradients_stop_at_the_first_4bit_layer(model_dir, monkeypatch):
    """The bug the fix is for (bitsandbytes 0.50.2 on a CPU with AVX512-BF16): after a generation, q/k/v/gate/up get
    no gradient. Skipped where the CPU lacks the repacking path."""
    pytest.importorskip("bitsandbytes")
    monkeypatch.setattr(hardware, "fix_bnb_cpu_gradients", lambda model: 0)
    torch.manual_seed(0)
    e = HFEngine(_cfg(load_in_4bit=True), str(model_dir))
    if not any(getattr(m, "support_avx512bf16_for_cpu", False) for m in e.base.modules()):
        pytest.skip("this CPU takes bitsandbytes' autograd path anyway")
    e.create_adapter("a", OptimizerSpec(1e-2, 10))
    outs = e.generate(PROMPTS, ["a"] * 3, SamplingParams(1.0, 6), seed=0)
    sum(x.sum() for x in e.logprobs("a", outs, grad=True)).backward()
    zero = [n for n, p in _lora(e, "a").items() if p.grad.abs().sum() == 0]
    assert any("q_proj" in n for n in zero)


def test_missing_bitsandbytes_names_the_extra(model_dir, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else real(name, *a))
    with pytest.raises(MissingExtra, match=r"pip install 'soarlite\[bnb\]'"):
        HFEngine(_cfg(load_in_4bit=True), str(model_dir))


# ------------------------------------------------------------------------------------------------ dtype
@pytest.mark.parametrize("capability,expected", [
    ((6, 0), torch.float16), ((7, 0), torch.float16), ((7, 5), torch.float16),  # P100, V100, T4
    ((8, 0), torch.bfloat16), ((8, 6), torch.bfloat16), ((8, 9), torch.bfloat16), ((9, 0), torch.bfloat16),
])
def test_auto_dtype_per_compute_capability(monkeypatch, capability, expected):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: capability)
    assert pick_dtype("auto", "cuda") == expected
    assert pick_dtype("float32", "cuda") == torch.float32  # a named dtype wins
    assert pick_dtype("bfloat16", "cuda") == torch.bfloat16
    assert pick_dtype("auto", "cpu") == torch.float32


def test_dtype_name_without_torch():
    assert hardware.dtype_name("auto", "cuda", (7, 5)) == "float16"
    assert hardware.dtype_name("auto", "cuda", (8, 0)) == "bfloat16"
    assert hardware.dtype_name("auto", "cpu", None) == "float32"
    assert hardware.dtype_name("float16", "cpu", None) == "float16"


# ------------------------------------------------------------------------------------------------ fp16 loss scaling
def test_loss_scaler_scales_unscales_skips_and_grows():
    s = hardware.LossScaler(init_scale=8.0, growth_interval=2)
    w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    (s.scale_grad(w * 3, "a")).sum().backward()
    assert torch.equal(w.grad, torch.tensor([24.0, 24.0]))  # 3 x scale 8
    assert s.unscale_and_check("a", [w]) and torch.equal(w.grad, torch.tensor([3.0, 3.0]))
    w.grad = torch.tensor([float("inf"), 1.0])
    assert not s.unscale_and_check("a", [w]) and s.get("a") == 4.0 and s.skipped == 1  # skipped, halved
    for _ in range(2):
        w.grad = torch.ones(2)
        assert s.unscale_and_check("a", [w])
    assert s.get("a") == 8.0  # two good steps in a row: doubled
    assert s.get("b") == 8.0  # per adapter


def test_fp16_engine_trains_with_loss_scaling(model_dir):
    torch.manual_seed(0)
    e = HFEngine(_cfg(dtype="float16"), str(model_dir))
    assert e.dtype == torch.float16 and e.scaler is not None
    e.create_adapter("a", OptimizerSpec(1e-2, 10))
    before = {n: p.detach().clone() for n, p in e._params("a").items()}
    outs = e.generate(PROMPTS, ["a"] * 3, SamplingParams(1.0, 6), seed=0)
    rloo.update(e, "a", outs, [1.0, -1.0, 0.5], kl_coef=0.001, micro_batch=2)
    assert e.scaler.skipped == 0
    assert all(torch.isfinite(p).all() for p in e._params("a").values())
    assert any(not torch.equal(before[n], p) for n, p in e._params("a").items())
    assert all(p.dtype == torch.float32 for p in e._params("a").values())  # adapters stay float32


def test_bf16_and_fp32_engines_do_not_scale(model_dir):
    assert HFEngine(_cfg(), str(model_dir)).scaler is None


# ------------------------------------------------------------------------------------------------ checkpointing
def test_gradient_checkpointing_recomputes_and_gives_the_same_gradients(model_dir):
    """On CUDA the engine turns it on by itself; here it is switched on by hand to test the mechanism: the decoder
    layers run twice (forward, then recompute in the backward) and the LoRA gradients are the same."""
    grads = {}
    for ckpt in (False, True):
        torch.manual_seed(0)
        e = HFEngine(_cfg(), str(model_dir))
        if ckpt:
            e.base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            e.checkpointing = True
        e.create_adapter("a", OptimizerSpec(1e-2, 10))
        with torch.no_grad():
            for p in _lora(e, "a").values():
                p.normal_(0, 0.1)  # non-zero B, so gradients reach A and the lower layers too
        outs = e.generate(PROMPTS, ["a"] * 3, SamplingParams(0.0, 6), seed=0)
        calls = []
        layer = e.base.model.layers[0]
        # a pre-hook: the recompute stops as soon as the last saved tensor is rebuilt, before the MLP returns
        hook = layer.mlp.register_forward_pre_hook(lambda *a, calls=calls: calls.append(1))
        sum(x.sum() for x in e.logprobs("a", outs, grad=True)).backward()
        hook.remove()
        assert len(calls) == (2 if ckpt else 1)
        assert not layer.training and not layer.mlp.training  # back in eval mode
        grads[ckpt] = {n: p.grad.clone() for n, p in e._params("a").items()}
    for n, g in grads[False].items():
        torch.testing.assert_close(grads[True][n], g)


# ------------------------------------------------------------------------------------------------ lazy imports
def test_nothing_cuda_only_is_imported():
    code = ("import sys; import soarlite.hardware, soarlite.guard, soarlite.extras, soarlite.engine.unsloth, soarlite.plan, soarlite.cli, soarlite.runner, soarlite.engine; "
            "print(sorted(m for m in ('torch', 'bitsandbytes', 'unsloth', 'vllm') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.stdout.strip() == "[]", r.stderr


def test_unsloth_setting(monkeypatch):
    import importlib.util

    assert uns.use_unsloth("auto", "cpu") is False
    assert uns.use_unsloth(False, "cuda") is False
    with pytest.raises(RuntimeError, match="needs a CUDA card"):
        uns.use_unsloth(True, "cpu")
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "unsloth" else real(name, *a))
    assert uns.use_unsloth("auto", "cuda") is False
    with pytest.raises(MissingExtra, match="unsloth is not installed"):
        uns.use_unsloth(True, "cuda")


def test_use_unsloth_values_are_checked():
    from soarlite.config import RecipeError

    assert load_recipe("math-t4", ["model.use_unsloth=true"]).model.use_unsloth is True
    assert load_recipe("math-t4", ["model.use_unsloth=auto"]).model.use_unsloth == "auto"
    with pytest.raises(RecipeError, match="model.use_unsloth: 1 is not allowed"):
        load_recipe("math-t4", ["model.use_unsloth=1"])


# ------------------------------------------------------------------------------------------------ unsloth hand-over
class FakeLLM:
    """Stands in for vLLM's LLM: records which LoRA ids were removed."""

    def __init__(self):
        self.removed = []
        self.llm_engine = SimpleNamespace(remove_lora=self.removed.append)


def test_unsloth_sampler_hands_over_changed_adapters_under_new_ids(model_dir, monkeypatch):
    """The file route of engine.unsloth.UnslothSampler: an unchanged adapter keeps its LoRARequest; a changed one (a step, a
    copy into it, a load) is written again and gets a new, never reused id, the stale one is removed from vLLM and
    its files deleted; the files hold the adapter's current weights."""
    from safetensors.torch import load_file

    e = HFEngine(_cfg(), str(model_dir))
    e.create_adapter("teacher", OptimizerSpec(1e-2, 10))
    e.create_adapter("s0", OptimizerSpec(1e-2, 10))
    llm = FakeLLM()
    sampler = uns.UnslothSampler(e, llm)
    monkeypatch.setattr(sampler, "_lora_request_cls",
                        lambda: lambda name, i, path: SimpleNamespace(lora_name=name, lora_int_id=i, lora_path=path))
    r1 = sampler.request("teacher")
    assert sampler.request("teacher") is r1 and r1.lora_int_id == 1
    r2 = sampler.request("s0")
    assert r2.lora_int_id == 2

    outs = e.generate(PROMPTS, ["teacher"] * 3, SamplingParams(1.0, 6), seed=0)
    rloo.update(e, "teacher", outs, [1.0, -1.0, 0.5], kl_coef=0.0, micro_batch=3)  # a step: new weights
    r3 = sampler.request("teacher")
    assert r3.lora_int_id == 3 and llm.removed == [1]
    assert not __import__("os").path.exists(r1.lora_path)
    saved = load_file(f"{r3.lora_path}/adapter_model.safetensors")
    from peft import get_peft_model_state_dict

    current = get_peft_model_state_dict(e.model, adapter_name="teacher")
    assert saved.keys() == current.keys() and all(torch.equal(saved[k], current[k]) for k in saved)
    assert any(not torch.equal(saved[k], v) for k, v in load_file(f"{r2.lora_path}/adapter_model.safetensors").items()
               if "lora_B" in k)  # s0 is still the zero adapter, the teacher moved

    e.copy_adapter("teacher", "s0")  # a copy changes s0
    assert sampler.request("s0").lora_int_id == 4 and llm.removed == [1, 2]
    e.sampler = sampler
    e.delete_adapter("s0")  # deleting forgets it in vLLM too
    assert llm.removed == [1, 2, 4]
    with pytest.raises(KeyError):
        sampler.request("s0")


# ------------------------------------------------------------------------------------------------ messages and exits
def test_oom_message_names_the_knobs():
    cfg = load_recipe("math-t4")
    msg = hardware.oom_message(cfg, "students s0_0..s3_1 train", 4, "runs/x", 13.2)
    assert msg.startswith("out of GPU memory in outer step 5, phase 'students s0_0..s3_1 train' (peak 13.2 GiB")
    assert "inner.micro_batch (now 4)" in msg and "inner.students_in_flight (now 0 = all 8)" in msg
    assert "inner.max_new_tokens (now 384)" in msg and "--resume runs/x" in msg and "\n" not in msg
    assert msg.index("inner.micro_batch") < msg.index("inner.max_new_tokens")
    sample = hardware.oom_message(cfg, "teacher samples questions", 0, "runs/x")
    assert sample.index("model.gen_batch (now 128)") < sample.index("inner.micro_batch")
    assert "outer.micro_batch (now 4)" in hardware.oom_message(cfg, "teacher update", 0, "runs/x")


def test_is_oom():
    assert hardware.is_oom(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert hardware.is_oom(RuntimeError("CUDA error: out of memory"))
    assert not hardware.is_oom(RuntimeError("shape mismatch"))


def _fake_world(monkeypatch, soar_run):
    """runner.run with everything heavy replaced: the loop is `soar_run`."""
    import soarlite.session
    import soarlite.tasks
    from soarlite import runner, soar

    class Grader:
        def __init__(self, **kw):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *a):
            return False

    monkeypatch.setattr(soarlite.tasks, "resolve_world", lambda cfg, *a, **kw: SimpleNamespace(model_dir="m"))
    monkeypatch.setattr(runner, "make_engine", lambda cfg, d: object())
    monkeypatch.setattr(soarlite.session, "Grader", Grader)
    monkeypatch.setattr(soar, "run", soar_run)
    return runner


def test_out_of_memory_ends_the_run_with_the_knobs(monkeypatch, tmp_path):
    def boom(cfg, world, engine, grader, run_dir, report, executor=None):
        report.outer_start(2, cfg.outer.steps)
        report.phase("students s0_0..s0_1 train")
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB")

    runner = _fake_world(monkeypatch, boom)
    with pytest.raises(hardware.OutOfMemory) as e:
        runner.run("tiny", [], str(tmp_path / "run"), None, True, check_fit=False)
    assert "outer step 3, phase 'students s0_0..s0_1 train'" in str(e.value)
    assert "inner.micro_batch (now 64)" in str(e.value) and f"--resume {tmp_path / 'run'}" in str(e.value)


def test_cli_exits_1_on_out_of_memory(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from soarlite.cli import app

    def boom(cfg, world, engine, grader, run_dir, report, executor=None):
        report.outer_start(0, cfg.outer.steps)
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    _fake_world(monkeypatch, boom)
    r = CliRunner().invoke(app, ["run", "--recipe", "tiny", "--out", str(tmp_path / "run"), "--quiet"])
    assert r.exit_code == 1 and "error: out of GPU memory in outer step 1" in r.output


def test_max_hours_stops_after_the_step_that_crosses_it(monkeypatch, tmp_path, capsys):
    steps = []

    def loop(cfg, world, engine, grader, run_dir, report, executor=None):
        for t in range(cfg.outer.steps):
            report.outer_start(t, cfg.outer.steps)
            steps.append(t)
            row = {"step": t, "teacher_valid_rate": 1.0, "rewards": [0.0], "reward_mean": 0.0, "moving_avg": None,
                   "baseline_acc": 0.0, "promoted": False, "wall_s": 0.0}
            report.outer_end(row, SimpleNamespace(step=t + 1, promotions=[]))
        raise AssertionError("the budget should have stopped the loop")

    runner = _fake_world(monkeypatch, loop)
    out = runner.run("tiny", [], str(tmp_path / "run"), None, True, max_hours=0.0, check_fit=False)
    assert steps == [0] and out == tmp_path / "run"
    text = capsys.readouterr().out
    assert "stopped after outer step 1: the --max-hours budget of 0 h is spent" in text
    assert f"soarlite run --resume {tmp_path / 'run'} --max-hours 0" in text
    assert not (tmp_path / "run" / "summary.json").exists()


def test_step_guard_lets_the_last_step_finish():
    class Rep:
        total = 2

        def outer_end(self, row, state):
            pass

    g = guard.StepGuard(Rep(), max_hours=0.0)
    g.outer_end({}, SimpleNamespace(step=2))  # the run's last step: no stop, the run ends normally
    with pytest.raises(guard.BudgetReached):
        g.outer_end({}, SimpleNamespace(step=1))
    guard.StepGuard(Rep(), max_hours=None).outer_end({}, SimpleNamespace(step=1))  # no budget


def test_run_refuses_a_recipe_too_big_for_the_card(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    from soarlite.cli import app

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data" / "math_fail128").mkdir(parents=True)
    for f in ("train", "test"):
        (tmp_path / "data" / "math_fail128" / f"{f}.jsonl").write_text('{"problem": "1+1", "answer": "2"}\n')
    monkeypatch.setattr(hardware, "card_from_torch", lambda: hardware.CARDS["t4"])
    r = CliRunner().invoke(app, ["run", "--recipe", "math", "--out", "run"])
    assert r.exit_code == 2
    assert r.output.startswith("error: math needs about ") and "this t4 has 15 GiB: lower " in r.output
    assert "--force starts anyway" in r.output
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_memory_stays_flat_over_outer_steps(model_dir):
    """Throwaway students and their optimiser state are freed: after each round of create, train, delete the engine
    holds the same parameters, optimisers and sampler bookkeeping as after the first."""
    e = HFEngine(_cfg(load_in_4bit=True), str(model_dir))
    e.create_adapter("teacher", OptimizerSpec(1e-2, 10))
    e.create_adapter("student")
    sizes = []
    for step in range(3):
        names = [f"s{k}" for k in range(4)]
        for n in names:
            e.create_adapter(n, OptimizerSpec(1e-2, 10), copy_from="student")
        outs = e.generate(PROMPTS * 4, [n for n in names for _ in range(3)], SamplingParams(1.0, 4), seed=step)
        for k, n in enumerate(names):
            rloo.update(e, n, outs[3 * k : 3 * k + 3], [1.0, -1.0, 0.5], kl_coef=0.001, micro_batch=3)
        for n in names:
            e.delete_adapter(n)
        params = list(e.model.parameters())
        sizes.append((len(params), sum(p.numel() for p in params), sorted(e.optimizers), sorted(e.versions),
                      sum(len(st) for opt, _, _ in e.optimizers.values() for st in opt.state.values())))
    assert sizes[0] == sizes[1] == sizes[2]
    assert sizes[0][2] == ["teacher"] and sizes[0][3] == ["student", "teacher"]
