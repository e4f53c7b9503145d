"""Build the toy world: data, tokenizer, pretrained tiny Llama, and the fail@k hard split; cached by settings.

    python -m soarlite.toy build [--out DIR] [--seed N] [--small]

The hard split is made exactly as the paper makes its own: k answers at temperature 1 for every candidate problem
from the finished base model, keep those with 0 of k right, split 50/50 by seed into hard_train and hard_test.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

# Bumped whenever a change makes the same (settings, seed) build a different world: it invalidates the cache.
WORLD_VERSION = 3

DEFAULT_SETTINGS: dict = {
    # model
    "hidden": 128,
    "layers": 2,
    "heads": 4,  # head_dim = hidden / heads = 32: vLLM's CPU attention refuses 16
    "ffn": 384,
    "vocab_size": 512,  # 259 bytes and specials, the rest merges: the prompts and words become single tokens
    # Pretraining mix by level, per format. The student format covers every level up to the hard one (the hard
    # level is in distribution); its worked steps are sloppy: each step's result is wrong with probability
    # `noise`, so the model's per-step accuracy at temperature 1 is about 1 - noise and long chains compound it.
    # The teacher format is mostly long chains, with the short ones (the stepping stones) at a low rate, and its
    # working is careful (`teacher_noise`; 0 since world "h55t0": no slips, so its errors are the model's own and
    # about 0.8 of the answers it writes are right, against 0.5 with 0.05).
    "student_levels": {str(lv): 1 for lv in range(1, 9)},
    "teacher_levels": {"1": 0.06, "2": 0.06, "3": 0.06, "4": 0.08, "5": 0.1, "6": 0.18, "7": 0.22, "8": 0.24},
    "noise": 0.5,
    "teacher_noise": 0.0,
    # The student-format writer's habit (world.Problem.written_values): on `habit_op` steps it writes the result plus
    # one with probability `habit`, in place of its random slips there. 0: no habit (every world up to d800). Above
    # one half the slip is the mode of every multiplication and even greedy decoding gets a chain with one wrong;
    # stepping stones teach the right product, which Hard-Only never sees. World "h" had 0.6; 0.55 (worlds "h55",
    # "h55t0"; docs/toy-world.md) puts the right product nearer the mode, so fewer stones flip it.
    "habit": 0.55,
    "habit_op": "*",
    "teacher_fraction": 0.3,  # share of pretraining sequences in the teacher format (the rest: student format)
    "pretrain_steps": 2000,  # world "d" of docs/toy-world.md: 1200 learnt each step's mode worse (greedy L=1 0.66 vs 0.81)
    "batch": 64,
    "lr": 3e-3,
    # evaluation and the hard split
    "hard_level": 8,
    "n_hard_candidates": 600,  # world "h55t0": 319 fail@128, 159 / 160
    "fail_k": 128,
    "stone_levels": [1, 2, 3],  # the world's true stepping stones (the oracle probe's arm)
    "easy_levels": [1, 2, 3],
    "n_easy": 64,  # problems per easy level
    "easy_samples": 4,  # temperature-1 samples per easy problem for pass@1
    "n_teacher_samples": 256,
    "level_probe": 32,  # problems per level for the per-level pass@1 table in world.json
    # torch threads. 1 because the build shares two cores with other work, where two spinning threads ran 5x slower;
    # the same settings on another thread count may differ in the last bits.
    "threads": 1,
}

# Seconds to build, for the test suite: a weak model, but its teacher already writes valid pairs most of the time.
SMALL_SETTINGS: dict = {
    **DEFAULT_SETTINGS,
    "hidden": 64,
    "heads": 2,
    "ffn": 128,
    "pretrain_steps": 200,
    "batch": 32,
    "hard_level": 6,
    # the small world keeps the mix, noise, habit and teacher it was tested with before the default moved to worlds
    # "d", "h" and "h55t0"
    "habit": 0.0,
    "teacher_noise": 0.05,
    "student_levels": {str(lv): 1 for lv in range(1, 11)},
    "teacher_levels": {"1": 0.04, "2": 0.04, "3": 0.04, "4": 0.06, "5": 0.08, "6": 0.1, "7": 0.12, "8": 0.16, "9": 0.18,
                       "10": 0.18},
    "noise": 0.4,
    "n_hard_candidates": 12,
    "fail_k": 16,
    "n_easy": 8,
    "easy_samples": 2,
    "n_teacher_samples": 16,
    "level_probe": 0,
}


PRESETS = {"default": DEFAULT_SETTINGS, "small": SMALL_SETTINGS}


def recipe_world(toy_cfg: dict) -> tuple[dict, int]:
    """A recipe's `toy:` mapping -> (the world's settings, its seed): the preset, then the keys the recipe overrides."""
    from soarlite.config import merge

    settings = dict(toy_cfg)
    preset = settings.pop("preset", "default")
    seed = settings.pop("seed", 0)
    return merge(PRESETS[preset], settings), seed


# settings that are probabilities (0 to 1, 0 included): the build and the recipe check both read this
PROBABILITY_SETTINGS = ("noise", "teacher_noise", "habit")


def _check_settings(settings: dict) -> dict:
    unknown = sorted(set(settings) - set(DEFAULT_SETTINGS))
    if unknown:
        raise ValueError(f"unknown toy setting {unknown[0]!r}; allowed: {', '.join(sorted(DEFAULT_SETTINGS))}")
    s = {**DEFAULT_SETTINGS, **settings}
    if s["hidden"] % s["heads"]:
        raise ValueError("toy setting 'hidden' must be a multiple of 'heads'")
    if s["habit_op"] not in ("+", "-", "*"):
        raise ValueError(f"toy setting 'habit_op' must be one of '+', '-', '*', not {s['habit_op']!r}")
    for key in PROBABILITY_SETTINGS:
        if isinstance(s[key], bool) or not isinstance(s[key], (int, float)) or not 0 <= s[key] <= 1:
            raise ValueError(f"toy setting {key!r} is a probability: it must be between 0 and 1, not {s[key]!r}")
    for key, default in DEFAULT_SETTINGS.items():
        if isinstance(default, float) and isinstance(s[key], int) and not isinstance(s[key], bool):
            s[key] = float(s[key])  # 0 and 0.0 are one world, with one hash (and one build)
    for key in ("student_levels", "teacher_levels"):
        s[key] = {str(k): float(v) for k, v in s[key].items()}
    s["stone_levels"] = [int(v) for v in s["stone_levels"]]
    return s


# Settings added after worlds were shipped, with the value that builds those worlds unchanged: at that value a
# setting is left out of the hash, so a world built before it existed keeps its hash (and the shipped one its name).
_LATER_SETTINGS = {"habit": 0.0, "habit_op": "*"}


def settings_hash(settings: dict, seed: int) -> str:
    s = _check_settings(settings)
    s = {k: v for k, v in s.items() if not (k in _LATER_SETTINGS and v == _LATER_SETTINGS[k])}
    blob = json.dumps({"settings": s, "seed": seed, "version": WORLD_VERSION}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _student_tokens(level: int) -> int:
    # about 5 tokens a step plus the boxed answer, with room to spare for a model that rambles
    return 6 * level + 12


def _teacher_tokens(level: int) -> int:
    # the working (5 a step), the question (2-3 a step), the tags and the answer
    return 8 * level + 24


def build(out: Path, *, seed: int = 0, verbose: bool = False, **settings) -> Path:
    """Build the world into `out`, replacing what is there. See the module docstring."""
    return _build(Path(out), seed, settings, verbose, keep_existing=False)


def _build(out: Path, seed: int, settings: dict, verbose: bool, keep_existing: bool) -> Path:
    import torch

    from .model import encode, make_model, pretrain, sample, train_tokenizer
    from .world import TEACHER_PROMPT, check, parse_pair, parse_question, problems, random_problem, student_prompt

    s = _check_settings(settings)
    t0 = time.time()
    log = print if verbose else (lambda *a, **k: None)
    prev_threads, prev_det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(s["threads"])
    torch.use_deterministic_algorithms(True)
    try:
        # Data first, from its own seed streams, so the hard candidates can be kept out of the pretraining text.
        hard_level = s["hard_level"]
        candidates = problems(seed * 1000 + 1, hard_level, s["n_hard_candidates"])
        held_out = {p.question for p in candidates}
        easy = [p for lv in s["easy_levels"] for p in problems(seed * 1000 + 2, lv, s["n_easy"])]

        rng = random.Random(f"toy/pretrain/{seed}")
        mix = {fmt: ([int(k) for k in s[f"{fmt}_levels"]], list(s[f"{fmt}_levels"].values()))
               for fmt in ("teacher", "student")}
        texts: list[str] = []
        while len(texts) < s["pretrain_steps"] * s["batch"]:
            fmt = "teacher" if rng.random() < s["teacher_fraction"] else "student"
            p = random_problem(rng, rng.choices(*mix[fmt])[0])
            if p.question in held_out:
                continue
            texts.append(TEACHER_PROMPT + p.teacher_text(rng, s["teacher_noise"]) if fmt == "teacher"
                         else student_prompt(p.question) + p.student_solution(rng, s["noise"], s["habit"], s["habit_op"]))
        log(f"[toy] {len(texts)} pretraining texts, {time.time() - t0:.1f}s")

        tok = train_tokenizer(texts[:5000] + [TEACHER_PROMPT, student_prompt("")], s["vocab_size"])
        torch.manual_seed(seed)
        model = make_model(tok, hidden=s["hidden"], layers=s["layers"], heads=s["heads"], ffn=s["ffn"],
                           max_positions=512)
        seqs = encode(tok, texts)
        losses = pretrain(model, seqs, steps=s["pretrain_steps"], batch=s["batch"], lr=s["lr"], seed=seed,
                          pad_id=tok.pad_token_id, log_every=100 if verbose else 0)
        t_pre = time.time() - t0
        log(f"[toy] pretrained, loss {losses[-1]:.3f}, {t_pre:.1f}s")

        # Untrained teacher: how often a temperature-1 sample is a valid pair, and how often its answer is right.
        touts = sample(model, tok, [TEACHER_PROMPT] * s["n_teacher_samples"], max_new_tokens=_teacher_tokens(hard_level),
                       seed=seed * 1000 + 3)
        pairs = [parse_pair(t) for t in touts]
        valid = [p for p in pairs if p]
        right, teacher_levels = 0, Counter()
        for q, a in valid:
            prob = parse_question(q)
            if prob is not None:
                teacher_levels[prob.level] += 1
                right += prob.answer == int(a)

        def pass1(probs, n, seed_):
            prompts = [student_prompt(p.question) for p in probs for _ in range(n)]
            outs = sample(model, tok, prompts, max_new_tokens=_student_tokens(max(p.level for p in probs)),
                          seed=seed_)
            return sum(check(o, p.answer) for o, p in zip(outs, [p for p in probs for _ in range(n)])) / len(outs)

        easy_pass1 = pass1(easy, s["easy_samples"], seed * 1000 + 4)
        by_level = {}
        if s["level_probe"]:
            for lv in range(1, hard_level + 1):
                probe = problems(seed * 1000 + 5, lv, s["level_probe"], exclude=held_out)
                by_level[str(lv)] = {"pass1_t1": pass1(probe, 4, seed * 1000 + 6 + lv),
                                     "greedy": _greedy_acc(model, tok, probe, sample, check, student_prompt)}
        log(f"[toy] teacher valid {len(valid)}/{len(touts)}, easy pass@1 {easy_pass1:.3f}, {by_level}")

        # fail@k: k temperature-1 answers per candidate; keep those with none right. Sampled in rounds of at most
        # 32 answers, each round only for the candidates with none right so far: a solved candidate is out whatever
        # its other answers, and every kept one still has k answers, none right.
        k = s["fail_k"]
        n_right = fail_at_k_counts(model, tok, candidates, k, hard_level, seed)
        # n_right counts right answers until a candidate was out (a lower bound of its count of k)
        hard = [p for p, c in zip(candidates, n_right) if c == 0]
        random.Random(f"toy/split/{seed}").shuffle(hard)
        hard_train, hard_test = hard[: len(hard) // 2], hard[len(hard) // 2:]
        log(f"[toy] fail@{k}: {len(hard)}/{len(candidates)}, {time.time() - t0:.1f}s")

        # Write everything into a temporary folder beside `out`, then rename: a killed build leaves no half world.
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        try:
            model.save_pretrained(tmp / "model", safe_serialization=True)
            tok.save_pretrained(tmp / "model")
            for name, rows in [("hard_train", hard_train), ("hard_test", hard_test), ("easy", easy)]:
                with open(tmp / f"{name}.jsonl", "w") as f:
                    f.writelines(json.dumps(p.row()) + "\n" for p in rows)
            stats = {
                "teacher_valid_rate": len(valid) / len(touts),
                "teacher_answer_correct_rate": right / max(1, len(valid)),
                "teacher_levels": {str(lv): c for lv, c in sorted(teacher_levels.items())},
                "easy_pass1": easy_pass1,
                "pass1_by_level": by_level,
                "hard_candidates": len(candidates),
                "fail_at_k": len(hard),
                "fail_k": k,
                "right_before_out_histogram": {str(c): n for c, n in sorted(Counter(n_right).items())},
                "hard_train": len(hard_train),
                "hard_test": len(hard_test),
                # What a run's token limits must allow: the longest teacher output and student solution, by level.
                "max_tokens_by_level": {
                    str(lv): {"teacher_output": max(len(tok(p.teacher_text(), add_special_tokens=False)["input_ids"])
                                                    for p in sample_probs) + 1,
                              "student_solution": max(len(tok(p.student_solution(), add_special_tokens=False)
                                                          ["input_ids"]) for p in sample_probs) + 1}
                    for lv in range(1, hard_level + 1) for sample_probs in [problems(seed * 1000 + 8, lv, 64)]
                },
                "params": sum(p.numel() for p in model.parameters()),
                "final_pretrain_loss": sum(losses[-20:]) / len(losses[-20:]),
                "pretrain_seconds": round(t_pre, 1),
                "build_seconds": round(time.time() - t0, 1),
            }
            world = {"version": WORLD_VERSION, "seed": seed, "settings": s, "teacher_prompt": TEACHER_PROMPT,
                     "student_prompt": student_prompt("{question}"), "stats": stats}
            (tmp / "world.json").write_text(json.dumps(world, indent=1) + "\n")
            if not out.exists():
                os.rename(tmp, out)
            elif keep_existing and (out / "world.json").exists():
                shutil.rmtree(tmp)  # another process built the same world meanwhile: same bytes, keep theirs
            else:
                old = out.with_name(f".{out.name}.old-{os.getpid()}")
                os.rename(out, old)
                os.rename(tmp, out)
                shutil.rmtree(old)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        log(f"[toy] built {out} in {time.time() - t0:.1f}s: {json.dumps(stats)}")
        return out
    finally:
        torch.set_num_threads(prev_threads)
        torch.use_deterministic_algorithms(prev_det)


def _greedy_acc(model, tok, probs, sample, check, student_prompt) -> float:
    outs = sample(model, tok, [student_prompt(p.question) for p in probs], temperature=0,
                  max_new_tokens=_student_tokens(max(p.level for p in probs)), seed=0)
    return sum(check(o, p.answer) for o, p in zip(outs, probs)) / len(probs)


def fail_at_k_counts(model, tok, candidates: list, k: int, level: int, seed: int) -> list[int]:
    """The build's fail@k sampling: k temperature-1 answers per candidate, in rounds of at most 32, each round only for
    the candidates with none right so far (a solved candidate is out whatever its other answers, and every kept one
    still has k answers, none right). Returns right answers per candidate until it was out (a lower bound of its
    count of k). Deterministic for a given model, candidates, seed and torch thread count: the test suite re-runs it
    on the saved model to check the hard split."""
    from .model import sample
    from .world import check, student_prompt

    n_right, alive = [0] * len(candidates), list(range(len(candidates)))
    for r, size in enumerate([min(32, k - j) for j in range(0, k, 32)]):
        prompts = [student_prompt(candidates[i].question) for i in alive for _ in range(size)]
        outs = sample(model, tok, prompts, max_new_tokens=_student_tokens(level), seed=seed * 1000 + 7 + 100 * r)
        for n, i in enumerate(alive):
            n_right[i] += sum(check(o, candidates[i].answer) for o in outs[n * size:(n + 1) * size])
        alive = [i for i in alive if n_right[i] == 0]
    return n_right


def cache_dir(settings: dict, seed: int = 0, cache_root: Path | None = None) -> Path:
    if cache_root is None:
        cache_root = Path(os.environ.get("SOARLITE_CACHE") or Path.home() / ".cache" / "soarlite") / "toy"
    return Path(cache_root) / settings_hash(settings, seed)


# The default world (DEFAULT_SETTINGS, seed 0) ships inside the package: every user gets the world the docs describe,
# and the first run does not build. A build on another CPU may differ in the last bits of the weights, and then in
# which problems are fail@128, so a world is shipped, not rebuilt. MANIFEST.json records its settings hash and the
# sha256 of every file (tests/test_toy.py checks both, and re-runs the fail@128 filter on the shipped model).
SHIPPED = Path(__file__).resolve().parent / "shipped"


def shipped_hash() -> str | None:
    """The settings hash of the shipped world, or None when the package ships none."""
    manifest = SHIPPED / "MANIFEST.json"
    return json.loads(manifest.read_text())["settings_hash"] if manifest.is_file() else None


def file_digests(root: Path) -> dict[str, str]:
    """sha256 of every file under `root` but the manifest, by its path relative to `root`."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != "MANIFEST.json"}


def ship(world: Path) -> Path:
    """Make the built `world` the shipped one (a developer's step after `soarlite toy build`): copied whole into the
    package with its manifest, replacing the old one only once the copy is complete."""
    meta = json.loads((world / "world.json").read_text())
    tmp = Path(tempfile.mkdtemp(prefix=".shipped.", dir=SHIPPED.parent))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; the package's files are readable by all
    try:
        for name in ("model", "hard_train.jsonl", "hard_test.jsonl", "easy.jsonl", "world.json"):
            src = world / name
            (shutil.copytree if src.is_dir() else shutil.copy2)(src, tmp / name)
        manifest = {"settings_hash": settings_hash(meta["settings"], meta["seed"]), "files": file_digests(tmp)}
        (tmp / "MANIFEST.json").write_text(json.dumps(manifest, indent=1) + "\n")
        if SHIPPED.exists():
            old = SHIPPED.with_name(f".shipped.old-{os.getpid()}")
            os.rename(SHIPPED, old)
            os.rename(tmp, SHIPPED)
            shutil.rmtree(old)
        else:
            os.rename(tmp, SHIPPED)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return SHIPPED


def ensure_built(settings: dict, seed: int = 0, cache_root: Path | None = None) -> Path:
    """The built world for (settings, seed): the shipped one when it is that world, else from the cache when there,
    else built now (once)."""
    if shipped_hash() == settings_hash(settings, seed):
        return SHIPPED
    out = cache_dir(settings, seed, cache_root)
    if not (out / "world.json").exists():
        _build(out, seed, settings, verbose=False, keep_existing=True)
    return out


def main(argv: list[str] | None = None) -> None:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m soarlite.toy", description=__doc__.split("\n")[0])
    ap.add_argument("command", choices=["build", "ship"], help="build: build a world; ship: build (or find in the "
                    "cache) the world and make it the one the package ships")
    ap.add_argument("--out", type=Path, help="build here instead of the cache")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--small", action="store_true", help="the test suite's small world")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=JSON", help="override one setting")
    a = ap.parse_args(argv)
    settings = dict(SMALL_SETTINGS if a.small else DEFAULT_SETTINGS)
    for kv in a.set:
        key, _, val = kv.partition("=")
        settings[key] = json.loads(val)
    out = a.out or cache_dir(settings, a.seed)
    if a.command == "ship" and (out / "world.json").is_file():
        print(ship(out))
        return
    build(out, seed=a.seed, verbose=True, **settings)
    print(ship(out) if a.command == "ship" else out)


if __name__ == "__main__":
    main(sys.argv[1:])
