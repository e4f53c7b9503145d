"""The pre-flight check (soarlite/preflight.py) on a CPU: a random tiny Llama, a task whose right answer is "starts
with a lowercase letter" (about one sample in four at first; LoRA on lm_head too, for leverage on a near-uniform random model). One inner loop at a working
learning rate raises the fresh student's right answers on its training questions; at a tiny rate nothing moves
(same seed before and after: the same samples) and the check stops naming inner.lr."""

import pytest
from _tiny import make_tiny_model, tiny_cfg

from soarlite import preflight
from soarlite.engine.hf import HFEngine
from soarlite.tasks import QA


class World:
    teacher_prompt = "q: "

    def student_prompt(self, q):
        return f"{q}="


def _digit(text):
    return bool(text) and text[0] in "abcdefghijklmnopqrstuvwxyz"


class Grader:
    def parse_teacher(self, texts):
        return [QA(f"x{k}", "d") for k, _ in enumerate(texts)]

    def rewards(self, pairs):
        return [float(_digit(t)) for t, _ in pairs]

    def correct(self, pairs):
        return [_digit(t) for t, _ in pairs]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("pf") / "model", hidden=32)


def _cfg(lr):
    cfg = tiny_cfg("cpu")
    cfg.threads = 1
    cfg.model.target_modules = [*cfg.model.target_modules, "lm_head"]  # leverage on a near-uniform random model
    cfg.outer.n = 4
    cfg.outer.max_new_tokens = 4
    cfg.inner.lr = lr
    cfg.inner.steps = 6
    cfg.inner.batch_size = 4
    cfg.inner.group_size = 8
    cfg.inner.max_new_tokens = 2
    cfg.inner.micro_batch = 32
    cfg.inner.kl_coef = 0.0
    return cfg


def test_preflight_passes_at_a_working_lr_and_cleans_up(model_dir):
    cfg = _cfg(5e-2)
    e = HFEngine(cfg, str(model_dir))
    r = preflight.check(cfg, World(), e, Grader(), samples=8)
    assert r.questions == 4 and not r.skipped
    assert r.after > r.before, r.line()
    preflight.require(cfg, r)  # no raise
    assert e.adapters == [] and e.model is None  # the check's adapter is gone; the engine is as it was


def test_preflight_fails_at_a_tiny_lr_naming_the_settings(model_dir):
    cfg = _cfg(1e-9)
    e = HFEngine(cfg, str(model_dir))
    e.create_adapter("teacher")  # an engine that already holds adapters keeps them
    r = preflight.check(cfg, World(), e, Grader(), samples=8)
    assert r.after == r.before
    with pytest.raises(preflight.PreflightFailed, match=r"inner\.lr=1e-09.*raise inner\.lr .* or inner\.steps"):
        preflight.require(cfg, r)
    assert e.adapters == ["teacher"]
