"""The baselines: the learnability reward (Intrinsic-T), and Hard-Only, PQ, PS, Base-T, Intrinsic-T end to end."""

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from soarlite.engine import Completion
from soarlite.evaluation.baselines import slug
from soarlite.tasks import QA
from soarlite.teacher_rewards import intrinsic


class _Engine:
    """Answers question j right in exactly `right[j]` of its samples."""

    def __init__(self, right: dict[str, int]):
        self.right, self.calls = right, []

    def generate(self, prompts, adapters, params, seed):
        self.calls.append(set(adapters))
        seen: dict[str, int] = {}
        out = []
        for p in prompts:
            i = seen[p] = seen.get(p, -1) + 1
            out.append(Completion([], [], "right" if i < self.right[p] else "wrong"))
        return out


class _Grader:
    def correct(self, pairs):
        return [text == "right" for text, _ in pairs]


def test_learnability_reward():
    cfg = SimpleNamespace(inner=SimpleNamespace(group_size=4, temperature=1.0, max_new_tokens=8))
    world = SimpleNamespace(student_prompt=lambda q: q)
    # s = 0 -> 0 (nothing to learn from), s = 1 -> 0 (nothing left to learn), s = 1/4 -> 3/4, s = 3/4 -> 1/4
    engine = _Engine({"a": 0, "b": 4, "c": 1, "d": 3})
    datasets = [[QA("a", "1"), QA("b", "1")], [QA("c", "1"), QA("d", "1")]]
    assert intrinsic(engine, _Grader(), cfg, world, datasets, gains=[[0.0], [0.0]], seed=0) == [0.0, 0.5]
    assert engine.calls == [{"student"}]  # the baseline student answers, in one call


def test_slug():
    assert slug("PQ (curriculum)") == "pq-curriculum" and slug("Hard-Only") == "hard-only"
    assert slug("Base-T") == "base-t"


# ------------------------------------------------------------------------------------------------ end to end
@pytest.mark.slow
def test_baselines_on_a_finished_tiny_run(tmp_path_factory):
    from tests._world import finished_run, invoke, world_cache, world_dir

    cache = world_cache(tmp_path_factory)
    run = finished_run(tmp_path_factory)
    # the split sizes are what the build measured on this machine (fail@k depends on the model's samples)
    n_train, n_test = (len((world_dir(cache) / f).read_text().splitlines()) for f in ("hard_train.jsonl", "hard_test.jsonl"))
    state = json.loads((run / "state.json").read_text())
    pq = [json.loads(x) for x in (run / "pq.jsonl").read_text().splitlines()]
    assert state["promotions"] == [0, 1] and len(pq) == 8
    ev = ["--samples", "4", "--k", "1,4", "-q"]
    budget = 2 * 2  # SOAR's student budget: inner.steps (2) per promotion (2)

    got = {}
    for method, extra in [("hard-only", []), ("pq", ["--order", "mixed"]), ("ps", []),
                          ("base-teacher", ["--questions", "8"])]:
        r = invoke(cache, "baseline", method, "--run", str(run), *extra, *ev)
        dest = r.stdout.strip().splitlines()[-1].removeprefix("wrote ")
        got[method] = json.loads(Path(dest).read_text())
    labels = {m: g["label"] for m, g in got.items()}
    assert labels == {"hard-only": "Hard-Only", "pq": "PQ (mixed)", "ps": "PS", "base-teacher": "Base-T"}
    for m, g in got.items():
        assert g["samples"] == 4 and list(g["pass_at_k"]) == ["1", "4"] and g["problems"] == n_test
        assert (run / "eval" / f"{slug(g['label'])}.json").is_file()
        if m != "ps":  # the trained ones: one budget, recorded, and the adapter kept
            assert g["student_steps"] == budget and g["student_rollouts"] == budget * 2 * 4
            assert (run / "baselines" / slug(g["label"]) / "adapter_model.safetensors").is_file()
    assert got["hard-only"]["student_questions"] == n_train  # the hard train split of the small world
    assert got["pq"]["student_questions"] == 8 + n_train and got["pq"]["pq_questions"] == 8
    assert got["ps"]["adapter"].endswith("adapters/student")
    base_t = got["base-teacher"]
    assert base_t["student_questions"] == 8 and 0 < base_t["teacher_valid_rate"] <= 1
    assert 1.0 <= base_t["diversity"]["vendi"] <= 8 and base_t["diversity"]["items"] == 8
    assert len((run / "baselines" / "base-t-questions.jsonl").read_text().splitlines()) == 8


@pytest.mark.slow
def test_intrinsic_run_and_refusals(tmp_path_factory, tmp_path):
    from tests._world import FAST, WORLD, invoke, world_cache

    cache = world_cache(tmp_path_factory)
    run = tmp_path / "intrinsic"
    r = invoke(cache, "baseline", "intrinsic", "--recipe", "tiny", "--out", str(run), "--questions", "8",
                 "--samples", "2", "--k", "1,2", "-q", "outer.steps=1", *WORLD, *FAST)
    assert "Intrinsic-T: pass@1" in r.stdout
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["outer"]["reward"] == "intrinsic"
    (row,) = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(row["teacher_rewards"]) == 2 and all(0.0 <= x <= 1.0 for x in row["teacher_rewards"])
    result = json.loads((run / "eval" / "intrinsic-t.json").read_text())
    assert result["label"] == "Intrinsic-T" and result["student_questions"] == 8

    # a run without promotions has no PQ; PS needs a run; an unknown method is named
    r = invoke(cache, "baseline", "pq", "--run", str(run), check=False)
    assert r.exit_code == 2 and f"baseline pq: {run} has no Promotion Questions (0 promotions)" in r.stderr
    r = invoke(cache, "baseline", "ps", "--recipe", "tiny", check=False)
    assert r.exit_code == 2 and "baseline ps: --run DIR" in r.stderr
    r = invoke(cache, "baseline", "nope", "--recipe", "tiny", check=False)
    assert r.exit_code == 2 and "'nope' is not a baseline" in r.stderr
