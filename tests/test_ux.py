"""What a new user sees (issue 12): the progress log, the end-of-run table, adapters that load through
AutoPeftModelForCausalLM offline, push to a fake Hub, generate, the fail-fast lines, --version and env, the wheel."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from soarlite import progress
from soarlite.evaluation import summary as summ

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------------ progress
class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


class State:
    promotions = [0]


ROW = {"step": 0, "teacher_valid_rate": 0.5, "rewards": [0.25, 0.0], "reward_mean": 0.125, "moving_avg": None,
       "promoted": True, "baseline_acc": 0.0, "wall_s": 12.0}


def drive(rep: progress.Reporter, clock: Clock) -> None:
    rep.stage("the toy world: its model and hard problems")
    clock.t += 200
    rep.stage("loading the model")
    rep.outer_start(0, 2)
    rep.phase("students s0_0..s3_1 train")
    for i in range(10):
        clock.t += 5
        rep.inner(i, 10)
    rep.inner(10, 10)
    rep.outer_end(ROW, State())
    rep.stage("summary: the students answer the hard test problems")


def test_plain_log_when_not_a_terminal(capsys):
    clock = Clock()
    rep = progress.Reporter(console=Console(file=io.StringIO(), force_terminal=False), clock=clock)
    assert not rep.live_mode and rep.live is None
    with rep:
        drive(rep, clock)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "[0m00s] the toy world: its model and hard problems"
    assert lines[1] == "[3m20s] loading the model"  # the clock of the run, from its start
    assert "[3m20s] step 1/2: students train on the teacher's questions" in lines  # words, not s0_0..s3_1
    inner = [x for x in lines if "inner loop" in x]
    assert 2 <= len(inner) <= 4 and inner[-1].endswith("inner loop 10/10 RLOO steps")  # throttled, and the end
    done = next(x for x in lines if "done:" in x)
    assert "step 1/2 done" in done and "PROMOTED" in done  # 1-based
    assert lines[-1].endswith("] summary: the students answer the hard test problems")  # not "step 2/2: summary"
    assert not any("/0" in x for x in lines)


def test_live_panel_keeps_the_bar_and_redraws_once_a_second():
    clock = Clock()
    out = io.StringIO()
    rep = progress.Reporter(console=Console(file=out, force_terminal=True, width=100), clock=clock)
    assert rep.live_mode and progress.REFRESH_PER_SECOND == 1
    with rep:
        rep.outer_start(0, 4)
        rep.phase("students s0_0..s3_1 train")
        rep.inner(5, 10)
        clock.t += 65
        rep.live.refresh()
        text = out.getvalue()
    assert "[##########          ] 5/10 RLOO steps" in text  # not eaten as markup
    assert "students train on the teacher's questions  (1m05s)" in text  # the phase's own clock
    rep.close()  # idempotent


def test_quiet_on_a_terminal_is_the_plain_log(capsys):
    rep = progress.Reporter(quiet=True, console=Console(file=io.StringIO(), force_terminal=True))
    rep.line("[bold]x[/bold]")
    assert capsys.readouterr().out == "[bold]x[/bold]\n"


# ------------------------------------------------------------------------------------------------ summary
def test_pass_at_k_block_and_table():
    counts = {"untrained": [0, 0, 1, 0], "soar": [2, 0, 1, 0], "hard_only": [0, 0, 1, 1]}
    block = summ.pass_at_k_block(counts, samples=4, problems=4)
    assert block["ks"] == [1, 4]
    s = block["students"]["soar"]
    assert s["pass_at_k"]["1"] == pytest.approx(3 / 16) and s["pass_at_k"]["4"] == pytest.approx(0.5)
    assert s["correct"] == 3 and s["solved"] == 2 and s["counts"] == [2, 0, 1, 0]
    lo, hi = s["interval"]["1"]
    assert 0 <= lo <= 3 / 16 <= hi <= 1
    assert summ.pass_at_k_block(counts, 4, 4) == block  # fixed seed: the same intervals every time
    d = block["soar_minus_hard_only"]["1"]
    assert d["difference"] == pytest.approx(3 / 16 - 2 / 16) and d["interval"][0] <= d["difference"] <= d["interval"][1]
    # a problem both solve equally adds no spread to the paired difference
    assert summ.bootstrap([[0.5] * 5, [0.5] * 5]) == [0.0, 0.0]

    summary = {"outer_steps": 12, "promotions": 2, "promotion_steps": [0, 4], "teacher_valid_rate_first": 1.0,
               "teacher_valid_rate_last": 0.99, "hard_only_steps": 24, "pass_at_k": block, "wall_s": 1501.0}
    table = summ.summary_table(summary, process_s=2320.0)
    head = table.splitlines()[0].split()
    assert head[:2] == ["what", "value"] and "k of N" in table.splitlines()[0]
    assert "2 (outer steps 1, 5)" in table  # 1-based
    assert "3 of 16 (4 problems x 4 samples)" in table and "2 of 4 problems solved in 4 tries" in table
    assert "pass@1: SOAR - Hard-Only (paired)" in table and "+0.0625" in table
    assert "25m 01s" in table and "38m 40s" in table  # the outer steps' time and the process's, each named
    assert "0.1875" in table
    for raw in ("final_hard_acc", "hard_only_acc", "wall_s"):
        assert raw not in table
    assert summ.summary_markdown(summary).startswith("| what | value | k of N | 95% interval |")


# ------------------------------------------------------------------------------------------------ fail fast
def test_unreachable_model_is_one_line(monkeypatch):
    from soarlite.config import RecipeError
    from soarlite.session import check_reachable

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RecipeError, match=r"^model.base: nobody/no-such-model .*HF_HUB_OFFLINE"):
        check_reachable("nobody/no-such-model")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens: no network
    with pytest.raises(RecipeError, match="no network"):
        check_reachable("nobody/no-such-model")


def test_missing_extras_are_one_line(monkeypatch):
    import importlib.util

    from soarlite import runner
    from soarlite.config import load_recipe
    from soarlite.extras import MissingExtra

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda m, *a: None if m in ("torch", "peft") else real(m, *a))
    with pytest.raises(MissingExtra) as e:
        runner.require_extras(load_recipe("tiny"))
    assert str(e.value) == "torch, peft are not installed; install with: pip install 'soarlite[cpu]'"


def test_version_and_env():
    from typer.testing import CliRunner

    from soarlite import __version__
    from soarlite.cli import app

    r = CliRunner().invoke(app, ["--version"])
    assert r.exit_code == 0 and r.stdout.strip() == f"soarlite {__version__}"
    r = CliRunner().invoke(app, ["env"])
    assert r.exit_code == 0
    for name in ("python", "torch", "transformers", "peft", "vllm", "unsloth", "bitsandbytes", "CUDA", "card"):
        assert f"\n{name}:" in "\n" + r.stdout, name


# ------------------------------------------------------------------------------------------------ adapters
@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    from tests._world import finished_run

    return finished_run(tmp_path_factory)


@pytest.mark.slow
def test_adapters_load_through_auto_peft_offline(run_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoTokenizer

    for role in ("student", "teacher"):
        folder = run_dir / "adapters" / role
        conf = json.loads((folder / "adapter_config.json").read_text())
        assert Path(conf["base_model_name_or_path"]).is_dir()  # the toy world's model folder
        card = (folder / "README.md").read_text()
        assert "AutoPeftModelForCausalLM" in card and "recipe: `tiny`" in card and "library_name: peft" in card
        assert (folder / "tokenizer.json").is_file()
    model = AutoPeftModelForCausalLM.from_pretrained(str(run_dir / "adapters" / "student"))
    tok = AutoTokenizer.from_pretrained(str(run_dir / "adapters" / "student"))
    ids = tok("1+1=", return_tensors="pt").input_ids
    assert model(ids).logits.shape[:2] == ids.shape


@pytest.mark.slow
def test_generate(run_dir, tmp_path_factory):
    from tests._world import invoke, world_cache

    cache = world_cache(tmp_path_factory)
    r = invoke(cache, "generate", "--run", str(run_dir), "--adapter", "teacher", "--seed", "1")
    assert "teacher's question:" in r.stdout and "student's answer" in r.stdout and "the student is right:" in r.stdout
    r = invoke(cache, "generate", "--run", str(run_dir), "What is 2+3?")
    assert r.stdout.startswith("student's answer")
    r = invoke(cache, "generate", "--run", str(run_dir), check=False)
    assert r.exit_code == 2 and "give a question" in r.stderr


class FakeHub:
    """The part of huggingface_hub.HfApi that push uses, writing into a local folder instead of the network."""

    root: Path
    calls: list = []

    def __init__(self, endpoint=None, token=None):
        self.endpoint, self.token = endpoint, token

    def create_repo(self, repo_id, private=False, exist_ok=False):
        FakeHub.calls.append(("create", repo_id, private, self.token, self.endpoint))
        (self.root / repo_id).mkdir(parents=True, exist_ok=True)
        return f"{self.endpoint}/{repo_id}"

    def upload_folder(self, repo_id, folder_path, commit_message, ignore_patterns):
        import fnmatch

        FakeHub.calls.append(("upload", repo_id))
        for p in Path(folder_path).iterdir():
            if not any(fnmatch.fnmatch(p.name, pat) for pat in ignore_patterns):
                shutil.copy(p, self.root / repo_id / p.name)


@pytest.mark.slow
def test_push_to_a_fake_hub(run_dir, tmp_path, monkeypatch):
    import huggingface_hub
    from typer.testing import CliRunner

    from soarlite.cli import app

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    FakeHub.root, FakeHub.calls = tmp_path / "hub", []
    monkeypatch.setattr(huggingface_hub, "HfApi", FakeHub)
    r = CliRunner().invoke(app, ["push", str(run), "--repo", "me/soar-tiny"], env={"HF_TOKEN": ""})
    assert r.exit_code == 2 and "HF_TOKEN" in r.stderr and not FakeHub.calls
    r = CliRunner().invoke(app, ["push", str(run), "--repo", "me/soar-tiny", "--endpoint", "http://hub.local"],
                           env={"HF_TOKEN": "hf_x"})
    assert r.exit_code == 0, r.stderr
    assert ("create", "me/soar-tiny", False, "hf_x", "http://hub.local") in FakeHub.calls
    student, teacher = FakeHub.root / "me/soar-tiny", FakeHub.root / "me/soar-tiny-teacher"
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md", "tokenizer.json"} <= {
        p.name for p in student.iterdir()}
    assert not list(teacher.glob("optimizer*"))  # the optimiser state stays home
    assert 'from_pretrained("me/soar-tiny")' in (student / "README.md").read_text()
    assert "pushed http://hub.local/me/soar-tiny-teacher" in r.stdout


# ------------------------------------------------------------------------------------------------ packaging
@pytest.mark.slow
def test_wheel_installs_and_lists_recipes(tmp_path):
    pytest.importorskip("hatchling")
    wheels, target = tmp_path / "wheels", tmp_path / "target"
    subprocess.run([sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-w",
                    str(wheels), "-q"], check=True, timeout=300)
    (wheel,) = wheels.glob("soarlite-*.whl")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target), str(wheel), "-q"],
                   check=True, timeout=300)
    assert (target / "soarlite" / "recipes" / "tiny.yaml").is_file()
    env = {**os.environ, "PYTHONPATH": str(target)}
    r = subprocess.run([sys.executable, "-m", "soarlite", "recipes"], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "tiny" in r.stdout and "math-t4" in r.stdout
    r = subprocess.run([sys.executable, "-c", "import soarlite; print(soarlite.__file__)"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.stdout.strip().startswith(str(target))  # the installed copy, not the checkout

    # the toy world ships inside the wheel: a one-step run from the installed package builds nothing
    shipped = target / "soarlite" / "toy" / "shipped"
    assert (shipped / "model" / "model.safetensors").is_file() and (shipped / "MANIFEST.json").is_file()
    from _world import FAST

    run = tmp_path / "run"
    r = subprocess.run([sys.executable, "-m", "soarlite", "run", "--recipe", "tiny", "--out", str(run), "--quiet",
                        "outer.steps=1", *FAST], cwd=tmp_path, env={**env, "SOARLITE_CACHE": str(tmp_path / "cache")},
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert str(shipped / "model") in r.stdout  # the model the run loaded is the wheel's shipped one
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1 and not (tmp_path / "cache").exists()
