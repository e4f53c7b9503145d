"""Many LoRA adapters on one base, on each engine: one table of ratios, every pair measured in the same run.

    python benchmarks/bench_engines.py [--engines hf,vllm] [--device auto|cpu|cuda] [--threads 1] [--layers 2]
        [--hidden 128] [--adapters 16] [--prompts 4] [--samples 4] [--new-tokens 64] [--g 4] [--r 2] [--inner-steps 4]
        [--repeats 3]

Per engine (vllm only where it is installed):
  * sampling: tokens per second of (a) one generate call over all adapters, an adapter per prompt, against (b) a call
    per adapter; `adapters` x `prompts` x `samples` sequences of up to `new-tokens` tokens at temperature 1;
  * outer step: wall time of the students' part of one outer step of the tiny recipe (g*r students, each trained by
    the recipe's inner RLOO steps, then greedy accuracy of all of them and the baseline on M reward questions), in
    lockstep (one `train_students` call for all) against one student at a time (a call per student). The teacher's
    part of a step is the same either way and is left out.
The model is a random tiny Llama (tests/_tiny.py; 2 heads, so head_dim = hidden / 2 >= 32 for vLLM's CPU kernel),
and rewards are a fixed pseudo-random bit per completion (no grader processes): a random model is right by chance
only, and what is measured is the engine. Each pair is timed in turns, and each time is the best of `repeats`.
"""

from __future__ import annotations

import argparse
import atexit
import importlib.util
import os
import shutil
import sys
import tempfile
import time
import warnings
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from _tiny import make_tiny_model  # noqa: E402

from soarlite.config import load_recipe  # noqa: E402
from soarlite.data import Problem  # noqa: E402
from soarlite.engine import SamplingParams  # noqa: E402
from soarlite.progress import Silent  # noqa: E402
from soarlite.soar import STUDENT, Student, World, accuracy, seed_for, student_optimizer, train_students  # noqa: E402
from soarlite.tasks import QA  # noqa: E402


class HashGrader:
    """A fixed pseudo-random 0/1 per completion: RLOO gets signal to train on, with no grader processes to time."""

    def rewards(self, pairs):
        return [float(zlib.crc32(text.encode()) & 1) for text, _ in pairs]

    def correct(self, pairs):
        return [r > 0 for r in self.rewards(pairs)]


def pair(fa, fb, repeats):
    """Fastest wall times of fa and fb, and their results, over `repeats` runs taken in turns (a, b, a, b...): on a
    shared machine both then see the same background load, and the best of several drops the worst of it."""
    ta, tb, out = [], [], [None, None]
    for _ in range(repeats):
        for times, k, fn in ((ta, 0, fa), (tb, 1, fb)):
            t0 = time.perf_counter()
            out[k] = fn()
            times.append(time.perf_counter() - t0)
    return min(ta), min(tb), out


def bench_sampling(engine, args, tmp: Path) -> tuple[float, float]:
    """tokens/s of one call over all adapters, and of a call per adapter."""
    trainer = getattr(engine, "hf", engine)  # the HFEngine that holds the weights
    engine.create_adapter("rand")
    for name, p in trainer._params("rand").items():  # B = 0 would make every adapter the base; give them weights
        if "lora_B" in name:
            p.data.normal_(0, 0.05)
    engine.save_adapter("rand", str(tmp / "rand"))
    names = [f"a{j}" for j in range(args.adapters)]
    for name in names:
        engine.load_adapter(name, str(tmp / "rand"))
    per_adapter = [f"{j}+{k}=" for j in range(args.prompts) for k in range(args.samples)]
    params = SamplingParams(1.0, args.new_tokens)

    def one_call():
        outs = engine.generate(per_adapter * len(names), [n for n in names for _ in per_adapter], params, seed=1)
        return sum(len(c.ids) for c in outs)

    def per_call():
        return sum(len(c.ids) for n in names for c in engine.generate(per_adapter, [n] * len(per_adapter), params, 2))

    one_call()  # warm-up: first use of each adapter (vLLM loads it) and of each batch shape
    t_one, t_per, (n_one, n_per) = pair(one_call, per_call, args.repeats)
    for name in names + ["rand"]:
        engine.delete_adapter(name)
    return n_one / t_one, n_per / t_per


def bench_outer(engine, cfg, args) -> tuple[float, float]:
    """Wall time of the students' part of one outer step: lockstep, and one student at a time."""
    o, i = cfg.outer, cfg.inner
    world = World(
        task=None, model_dir="", hard_train=[Problem(f"{a}*{a + 3}=", str(a * (a + 3))) for a in range(o.M)], hard_test=[],
        teacher_prompt="", student_prompt=lambda q: q,
    )
    datasets = [[QA(f"{k}+{j}=", str(k + j)) for j in range(o.n)] for k in range(o.g)]
    grader, report = HashGrader(), Silent()

    def students_phase(lockstep: bool):
        students = [Student(f"s{k}_{j}", k, datasets[k], list(range(o.n))) for k in range(o.g) for j in range(o.r)]
        baseline = [STUDENT]  # the baseline is evaluated once per step either way
        for group in [students] if lockstep else [[s] for s in students]:
            for s in group:
                engine.create_adapter(s.name, student_optimizer(cfg, i.lr, i.steps), copy_from=STUDENT)
            train_students(engine, grader, cfg, world, group, seed_for(0, "wave"), report)
            accuracy(engine, grader, cfg, world, [s.name for s in group] + baseline, world.hard_train)
            baseline = []
            for s in group:
                engine.delete_adapter(s.name)

    students_phase(True)  # warm-up
    t_lock, t_one, _ = pair(lambda: students_phase(True), lambda: students_phase(False), args.repeats)
    return t_lock, t_one


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    have_vllm = importlib.util.find_spec("vllm") is not None
    ap.add_argument("--engines", default="hf,vllm" if have_vllm else "hf")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    # One thread by default: on a CPU shared with other work, two OpenMP threads spin-waiting on each other made the
    # same call 10-100x slower from one run to the next (measured here); one thread gives repeatable ratios.
    ap.add_argument("--threads", type=int, default=1, help="torch threads on a CPU; 0 = torch's default")
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--adapters", type=int, default=16)
    ap.add_argument("--prompts", type=int, default=4, help="prompts per adapter")
    ap.add_argument("--samples", type=int, default=4, help="samples per prompt")
    ap.add_argument("--new-tokens", type=int, default=64)
    ap.add_argument("--g", type=int, default=None, help="datasets per outer step (tiny recipe: 4)")
    ap.add_argument("--r", type=int, default=None, help="students per dataset (tiny recipe: 2)")
    ap.add_argument("--inner-steps", type=int, default=None, help="inner RLOO steps (tiny recipe: 4)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    warnings.filterwarnings("ignore", message="Adapter .* was active which is now deleted")

    import torch
    from safetensors.torch import load_file

    tmp = Path(tempfile.mkdtemp(prefix="bench-engines-"))
    atexit.register(shutil.rmtree, tmp, True)
    model_dir = make_tiny_model(tmp / "model", layers=args.layers, hidden=args.hidden)
    params_m = sum(t.numel() for t in load_file(str(model_dir / "model.safetensors")).values()) / 1e6
    cfg = load_recipe("tiny")
    cfg.device, cfg.threads, cfg.model.dtype = args.device, args.threads, "auto"
    if args.g:
        cfg.outer.g = args.g
    if args.r:
        cfg.outer.r = args.r
    if args.inner_steps:
        cfg.inner.steps = args.inner_steps
    # vLLM sizes its adapter slots (max_loras) by this; the sampling rows put every adapter in one batch
    cfg.inner.students_in_flight = max(args.adapters, cfg.outer.g * cfg.outer.r)
    cuda = args.device != "cpu" and torch.cuda.is_available()
    card = torch.cuda.get_device_name() if cuda else f"CPU, {args.threads or torch.get_num_threads()} torch threads"

    rows = []
    for kind in args.engines.split(","):
        torch.manual_seed(0)
        if kind == "hf":
            from soarlite.engine.hf import HFEngine

            engine = HFEngine(cfg, str(model_dir))
        else:
            from soarlite.engine.vllm import VLLMEngine

            engine = VLLMEngine(cfg, str(model_dir))
        engine.create_adapter(STUDENT)  # the baseline student; it also keeps peft's last adapter alive
        one, per = bench_sampling(engine, args, tmp)
        lock, single = bench_outer(engine, cfg, args)
        rows.append((kind, one, per, lock, single))
        print(f"{kind}: done", file=sys.stderr, flush=True)
        del engine

    o, i = cfg.outer, cfg.inner
    print(f"\n{card}; random Llama {args.layers} layers x {args.hidden} ({params_m:.2f}M params), LoRA rank "
          f"{cfg.model.lora_rank} on {len(cfg.model.target_modules)} modules")
    print(f"sampling: {args.adapters} adapters x {args.prompts * args.samples} sequences x <= {args.new_tokens} tokens;"
          f" outer step: g={o.g} x r={o.r} students, {i.steps} inner steps x {i.batch_size} questions x "
          f"{i.group_size} rollouts x <= {i.max_new_tokens} tokens, then {o.M} reward questions greedy\n")
    print("| engine | one call, tok/s | call per adapter, tok/s | ratio | lockstep, s | one at a time, s | ratio |")
    print("|---|---|---|---|---|---|---|")
    for kind, one, per, lock, single in rows:
        print(f"| {kind} | {one:,.0f} | {per:,.0f} | {one / per:.2f}x "
              f"| {lock:.1f} | {single:.1f} | {single / lock:.2f}x |")


if __name__ == "__main__":
    main()
