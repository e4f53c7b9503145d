"""The toy world: generator and formats (exact values), settings, determinism, and the fail@k hard split."""

import json
import random

import pytest

from soarlite import toy
from soarlite.toy.world import Problem, random_problem


def test_generator_exact_values():
    (p,) = toy.problems(0, 3, 1)
    assert p == Problem(12, (("*", 2), ("-", 9), ("-", 8)))
    assert p.question == "12 *2 -9 -8"
    assert p.answer == 7 and p.level == 3
    assert p.row() == {"problem": p.question, "answer": "7", "level": 3}
    assert toy.problems(7, 5, 1)[0] == Problem(10, (("*", 4), ("-", 1), ("*", 2), ("-", 7), ("+", 8)))


def test_formats():
    p = Problem(12, (("*", 2), ("-", 9), ("-", 8)))
    assert p.teacher_text() == "12 *2=24 -9=15 -8=7\n<question>12 *2 -9 -8</question><answer>\\boxed{7}</answer>"
    assert toy.student_prompt(p.question) + p.student_solution() == "Question: 12 *2 -9 -8\nAnswer: *2=24 -9=15 -8=7 \\boxed{7}"
    assert toy.TEACHER_PROMPT.endswith("\n")
    assert toy.parse_pair(p.teacher_text()) == (p.question, "7")
    assert toy.parse_pair("<question>Q</question><answer>\\boxed{x}</answer>") is None
    assert toy.parse_pair("<question>Q</question>") is None
    assert toy.check(p.student_solution(), "7") and toy.check(p.student_solution(), 7)
    assert not toy.check(" \\boxed{6} then \\boxed{7}", "6")
    assert not toy.check("6", "6") and not toy.check("\\boxed{six}", "6")


def test_the_loop_grades_the_formats():
    """The toy task parses the teacher and rewards students with the math task's parsers and checks: both read this
    world's formats, in-process and through the grader's workers."""
    from soarlite.grading import Grader
    from soarlite.tasks import load_task, spec_for
    from soarlite.tasks.math import parse_teacher_output
    from soarlite.tasks.math_answers import REWARD_CORRECT

    p = toy.problems(0, 8, 1)[0]
    qa = parse_teacher_output(p.teacher_text())
    assert (qa.question, qa.answer) == (p.question, str(p.answer))
    task = load_task("toy", {})
    assert task.reward(p.student_solution(), str(p.answer)) == REWARD_CORRECT
    assert task.student_prompt(p.question) == toy.student_prompt(p.question)
    with Grader(workers=1, task=spec_for("toy")) as grader:
        assert grader.rewards([(p.student_solution(), str(p.answer))]) == [REWARD_CORRECT]
        assert grader.correct([(p.student_solution(), str(p.answer + 1))]) == [False]
        (parsed,) = grader.parse_teacher([p.teacher_text()])
        assert (parsed.question, parsed.answer) == (p.question, str(p.answer))


def test_sloppy_writer():
    """Each written step is wrong with probability `noise`, an overshoot, and the chain goes on from what was written."""
    p = toy.problems(0, 8, 1)[0]
    assert p.written_values() == p.values() and p.student_solution(random.Random(0), 0.0) == p.student_solution()
    rng, wrong, steps, right_chains = random.Random(0), 0, 0, 0
    for _ in range(2000):
        vals = p.written_values(rng, 0.5)
        for (op, d), v, w in zip(p.ops, vals, vals[1:]):
            true = v + d if op == "+" else v - d if op == "-" else v * d
            assert 1 <= w - true <= 3 or w == true
            wrong += w != true
            steps += 1
        right_chains += vals[-1] == p.answer
    assert 0.47 < wrong / steps < 0.53
    assert right_chains / 2000 < 0.01  # 0.5^8 = 0.004: a slip is never undone


def test_writer_habit():
    """With a habit, the writer's `habit_op` steps are the result plus exactly one with probability `habit` (and never
    a random slip); its other steps slip as before. At habit 0 the writer draws the same random numbers as without
    the setting, so every world built before it is rebuilt byte for byte."""
    p = toy.Problem(12, (("*", 2), ("-", 9), ("*", 3), ("+", 4)))
    assert p.values() == [12, 24, 15, 45, 49]
    assert p.written_values(random.Random(7), 0.5, 0.0) == p.written_values(random.Random(7), 0.5)
    assert p.written_values(random.Random(7), 0.0, 1.0) == [12, 25, 16, 49, 53]  # every "*" step one over, carried on
    rng, ones, muls = random.Random(0), 0, 0
    for _ in range(4000):
        vals = p.written_values(rng, 0.0, 0.6)
        for (op, d), v, w in zip(p.ops, vals, vals[1:]):
            true = v + d if op == "+" else v - d if op == "-" else v * d
            if op == "*":
                assert w - true in (0, 1)
                ones += w - true
                muls += 1
            else:
                assert w == true  # noise 0: the other steps are exact
    assert 0.57 < ones / muls < 0.63
    p2 = toy.Problem(5, (("+", 3),))
    assert p2.written_values(random.Random(1), 0.0, 1.0, habit_op="+") == [5, 9]


def test_habit_settings_are_checked_and_keep_old_hashes(tmp_path):
    with pytest.raises(ValueError, match="'habit_op' must be one of"):
        toy.build(tmp_path / "w", habit_op="/")
    with pytest.raises(ValueError, match="'habit' is a probability"):
        toy.build(tmp_path / "w", habit=1.5)
    with pytest.raises(ValueError, match="'noise' is a probability.*not 'high'"):
        toy.build(tmp_path / "w", noise="high")
    assert not (tmp_path / "w").exists()
    # A world built before the setting existed keeps its hash, since at habit 0 the setting is left out of it:
    # world "d800", shipped until world "h", with the hash its manifest recorded (its teacher made slips).
    d800 = {**toy.DEFAULT_SETTINGS, "habit": 0.0, "teacher_noise": 0.05, "n_hard_candidates": 800,
            "teacher_levels": {"1": 0.04, "2": 0.04, "3": 0.04, "4": 0.08, "5": 0.12, "6": 0.2, "7": 0.24, "8": 0.24}}
    assert toy.settings_hash(d800, 0) == "5e8aaf9688618c6e"
    assert toy.settings_hash({**d800, "habit": 0.6}, 0) != "5e8aaf9688618c6e"
    # world "h", shipped until world "h55t0"
    assert toy.settings_hash({**toy.DEFAULT_SETTINGS, "habit": 0.6, "teacher_noise": 0.05}, 0) == "7fd7606c190e2f67"


def test_difficulty_and_parse_question():
    for p in toy.problems(3, 4, 20) + toy.problems(3, 1, 5):
        assert toy.parse_question(p.question) == p
        assert toy.difficulty(p.question) == p.level
    assert toy.difficulty(" 5 +3 *2 ") == 2
    for bad in ["", "5", "5 +", "5 +12", "Start with 5. Add 3.", "5 +3 /2", "x +3", "5" + " +3" * 13]:
        assert toy.difficulty(bad) is None, bad


def test_stepping_stones():
    stones = toy.stepping_stones(0, 30)
    assert stones == toy.stepping_stones(0, 30) and stones != toy.stepping_stones(1, 30)
    assert sorted(p.level for p in stones) == [1] * 10 + [2] * 10 + [3] * 10
    held = {p.question for p in stones[:5]}
    assert not held & {p.question for p in toy.stepping_stones(0, 30, exclude=held)}


def test_generator_determinism_and_range():
    assert toy.problems(3, 4, 50) == toy.problems(3, 4, 50)
    assert toy.problems(3, 4, 50) != toy.problems(4, 4, 50)
    assert len({p.question for p in toy.problems(3, 4, 50)}) == 50
    rng = random.Random(0)
    for _ in range(2000):
        p = random_problem(rng, rng.randint(1, 10))
        assert all(0 <= v <= 99 for v in p.values())
        assert len(set(p.ops)) == p.level  # no (operation, digit) pair twice: the next step is never ambiguous
    held = {p.question for p in toy.problems(0, 2, 10)}
    assert not held & {p.question for p in toy.problems(0, 2, 20, exclude=held)}


def test_unknown_setting_raises(tmp_path):
    with pytest.raises(ValueError, match="'nope'.*allowed:.*hidden"):
        toy.build(tmp_path / "w", nope=1)
    with pytest.raises(ValueError, match="'nope'"):
        toy.ensure_built({"nope": 1}, cache_root=tmp_path)
    assert not (tmp_path / "w").exists()


def test_settings_hash():
    assert toy.settings_hash(toy.SMALL_SETTINGS, 0) == toy.settings_hash(dict(toy.SMALL_SETTINGS), 0)
    assert toy.settings_hash(toy.SMALL_SETTINGS, 0) != toy.settings_hash(toy.SMALL_SETTINGS, 1)
    assert toy.settings_hash({}, 0) == toy.settings_hash(toy.DEFAULT_SETTINGS, 0)
    # a whole number where the setting is a float is the same world: one hash, one build
    assert toy.settings_hash({"teacher_noise": 0}, 0) == toy.settings_hash({"teacher_noise": 0.0}, 0)
    assert toy.settings_hash({"habit": 1}, 0) == toy.settings_hash({"habit": 1.0}, 0)
    assert toy.settings_hash({"habit": 0}, 0) == toy.settings_hash({"habit": 0.0}, 0)


def test_small_world_files(toy_world):
    from transformers import AutoTokenizer

    for name in ["model/config.json", "model/model.safetensors", "model/tokenizer.json", "hard_train.jsonl",
                 "hard_test.jsonl", "easy.jsonl", "world.json"]:
        assert (toy_world / name).is_file(), name
    world = json.loads((toy_world / "world.json").read_text())
    stats = world["stats"]
    train, test = (_rows(toy_world / f"hard_{s}.jsonl") for s in ("train", "test"))
    assert train and test and abs(len(train) - len(test)) <= 1
    assert stats["hard_train"] == len(train) and stats["fail_at_k"] == len(train) + len(test)
    assert {r["level"] for r in train + test} == {world["settings"]["hard_level"]}
    assert not {r["problem"] for r in train} & {r["problem"] for r in test}
    tok = AutoTokenizer.from_pretrained(toy_world / "model")
    assert tok.bos_token and tok.eos_token and tok.pad_token
    assert all(toy.difficulty(r["problem"]) == r["level"] for r in train + test)
    text = toy.student_prompt(train[0]["problem"])
    ids = tok(text)["input_ids"]
    assert ids[0] == tok.bos_token_id and tok.decode(ids, skip_special_tokens=True) == text
    assert [tok.convert_ids_to_tokens(i) for i in tok("12")["input_ids"][1:]] == ["1", "2"]  # a token per digit


def test_hard_split_is_fail_at_k(toy_world):
    """The hard split is exactly the candidates the saved model gets none of k right: the build's own fail@k sampling
    (same candidates, seeds, rounds, one torch thread) re-run on the saved weights keeps the same problems.

    Not a fresh draw: fail@k keeps the candidates that were unlucky in k tries, and with a per-problem success rate q
    of a few per mille a fresh draw of k samples finds at least one right answer for about 1-(1-q)^k of them
    (0.3 at q = 0.003, k = 128), so "a new seed gets none right" is false by design, not a bug."""
    kept, candidates = refilter(toy_world)
    rows = _rows(toy_world / "hard_train.jsonl") + _rows(toy_world / "hard_test.jsonl")
    assert {r["problem"] for r in rows} == kept
    assert len(kept) < len(candidates)  # some candidates were solved: the split is a real filter


def test_build_is_deterministic(toy_world, tmp_path):
    """Building again with the same seed (outside the cache) gives identical data files and identical weights."""
    again = toy.build(tmp_path / "again", seed=0, **toy.SMALL_SETTINGS)
    for name in ["hard_train.jsonl", "hard_test.jsonl", "easy.jsonl", "model/model.safetensors",
                 "model/tokenizer.json", "model/config.json"]:
        assert (again / name).read_bytes() == (toy_world / name).read_bytes(), name
    stats = [json.loads((w / "world.json").read_text())["stats"] for w in (toy_world, again)]
    for s in stats:
        s.pop("build_seconds"), s.pop("pretrain_seconds")
    assert stats[0] == stats[1]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left behind


def test_ensure_built_uses_the_cache(toy_world):
    assert toy.ensure_built(toy.SMALL_SETTINGS, seed=0, cache_root=toy_world.parent) == toy_world
    assert toy_world.name == toy.settings_hash(toy.SMALL_SETTINGS, 0)


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_difficulty_of_the_hard_split_and_stones_is_the_level(toy_world):
    world = json.loads((toy_world / "world.json").read_text())
    rows = _rows(toy_world / "hard_train.jsonl") + _rows(toy_world / "hard_test.jsonl")
    assert {toy.difficulty(r["problem"]) for r in rows} == {world["settings"]["hard_level"]}
    assert {toy.difficulty(p.question) for p in toy.stepping_stones(0, 9, world["settings"]["stone_levels"])} == {1, 2, 3}


@pytest.mark.slow
def test_probe_runs_on_the_small_world(toy_world):
    """The oracle probe's plumbing on the small world: every arm trains through the inner loop and is counted on every
    hard test problem, with intervals and paired differences. Its effect (stones > Hard-Only) is measured on the
    default world (docs/toy-world.md, docs/toy-probe-d.json): the small world's model (200 pretraining steps) solves
    no level-6 chain whichever arm it gets (0/5 x 16 for both arms before and after the merge), so asserting the
    effect here only tested luck."""
    from soarlite.probe import run_probe

    result = run_probe(toy_world, seeds=[0], steps=PROBE_STEPS, samples=PROBE_SAMPLES, arms=["hard_only", "stones"],
                       overrides=["threads=1"], log=lambda *a: None)
    n_test = len(_rows(toy_world / "hard_test.jsonl"))
    assert [r["arm"] for r in result["runs"]] == ["hard_only", "stones"] and result["hard_test"] == n_test
    for r in result["runs"]:
        assert len(r["counts"]) == n_test and all(0 <= c <= PROBE_SAMPLES for c in r["counts"])
        assert 0 <= r["pass@1"] <= 1 and r["greedy_hard_train"] is not None
    assert [d["diff"] for d in result["diffs"]] == ["stones - hard_only"]
    assert "| stones | 0 |" in result["table"]


PROBE_STEPS, PROBE_SAMPLES = 12, 16


# ------------------------------------------------------------------------------------------------ the shipped world
def test_the_default_world_ships_with_the_package():
    """The tiny recipe's world is inside the package, byte for byte what its manifest records, and found first."""
    from soarlite.toy.build import SHIPPED, file_digests

    manifest = json.loads((SHIPPED / "MANIFEST.json").read_text())
    assert file_digests(SHIPPED) == manifest["files"]
    assert {"model/model.safetensors", "model/tokenizer.json", "hard_train.jsonl", "hard_test.jsonl",
            "world.json"} <= set(manifest["files"])
    assert manifest["settings_hash"] == toy.settings_hash(toy.DEFAULT_SETTINGS, 0)
    assert toy.ensure_built(toy.DEFAULT_SETTINGS, seed=0) == SHIPPED  # no build on first use
    world = json.loads((SHIPPED / "world.json").read_text())
    assert world["version"] == toy.WORLD_VERSION and world["seed"] == 0
    assert len(_rows(SHIPPED / "hard_test.jsonl")) == world["stats"]["hard_test"]


@pytest.mark.slow
def test_the_shipped_hard_split_is_fail_at_128_of_the_shipped_model():
    """The build's own fail@128 filter, re-run on the shipped model with the build's seed: exactly the shipped split
    (the same numerics as the machine that built it; another CPU could flip a rare sample)."""
    from soarlite.toy.build import SHIPPED

    kept, _ = refilter(SHIPPED)
    rows = _rows(SHIPPED / "hard_train.jsonl") + _rows(SHIPPED / "hard_test.jsonl")
    assert {r["problem"] for r in rows} == kept
    world = json.loads((SHIPPED / "world.json").read_text())
    assert world["stats"]["fail_k"] == 128


def refilter(world_dir):
    """The build's own fail@k filter re-run on a built world's saved model (its candidates, seeds, rounds and thread
    count): the set of problems it keeps, and the candidates."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from soarlite.toy.build import fail_at_k_counts

    world = json.loads((world_dir / "world.json").read_text())
    s, seed = world["settings"], world["seed"]
    model = AutoModelForCausalLM.from_pretrained(world_dir / "model")
    tok = AutoTokenizer.from_pretrained(world_dir / "model")
    candidates = toy.problems(seed * 1000 + 1, s["hard_level"], s["n_hard_candidates"])
    threads = torch.get_num_threads()
    torch.set_num_threads(s["threads"])
    try:
        n_right = fail_at_k_counts(model, tok, candidates, s["fail_k"], s["hard_level"], seed)
    finally:
        torch.set_num_threads(threads)
    return {p.question for p, c in zip(candidates, n_right) if c == 0}, candidates


def test_the_teacher_signal_benchmark_reports_mix_and_right_answers(capsys):
    """benchmarks/toy_teacher_signal.py runs against the shipped world and prints, for each rate, the share of short
    chains and of right answers before and after every update (docs/toy-world.md, "A fragile teacher")."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "toy_teacher_signal.py"
    spec = importlib.util.spec_from_file_location("toy_teacher_signal", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.main(["--lrs", "1e-3,1e-2", "--steps", "2", "--measure", "8", "--noise", "0.1", "--right", "1",
                "threads=1", "outer.g=2", "outer.n=2"])
    finals = [line for line in capsys.readouterr().out.splitlines() if line.startswith("outer.lr")]
    assert [line.split(",")[0] for line in finals] == ["outer.lr 0.001", "outer.lr 0.01"]
    for line in finals:
        mix, right = line.split("share of levels <= 3: ")[1].split(" | answers right: ")
        for series in (mix, right):
            values = [float(x) for x in series.split()]
            assert len(values) == 3 and all(0.0 <= v <= 1.0 for v in values)
