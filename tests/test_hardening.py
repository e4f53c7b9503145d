"""Every bad input and every broken run folder gets one clear line (issue 11), and two runs never write one folder.

The table below is the bad-input table of docs/reliability.md: each case runs the CLI in this process (no model is
loaded: every one is refused before that) and asserts the exit status, that stderr is exactly one line naming the key
or file, and that nothing was written where nothing should be. `python -m pytest tests/test_hardening.py -k table`
prints its pass count.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from soarlite.cli import app
from soarlite.config import load_recipe, to_dict

ROOT = Path(__file__).resolve().parents[1]
FAST = ["outer.steps=1", "outer.g=2", "outer.n=2", "outer.r=1", "outer.M=2", "inner.steps=1", "inner.batch_size=1",
        "inner.group_size=2", "eval.samples=0", "eval.hard_only=false", "threads=1"]


# ------------------------------------------------------------------------------------------------ fixtures on disk
def _safetensors(path: Path, n: int = 2) -> None:
    header = json.dumps({"w": {"dtype": "F32", "shape": [n], "data_offsets": [0, 4 * n]}}).encode()
    path.write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * (4 * n))


def _model(root: Path) -> Path:
    """A folder that passes the model-folder check (config.json); no test here loads it."""
    model = root / "model"
    model.mkdir(exist_ok=True)
    (model / "config.json").write_text("{}")
    return model


def _data(root: Path, rows=None, name: str = "hard.jsonl") -> Path:
    path = root / name
    rows = rows if rows is not None else [{"problem": f"{i}+{i}=?", "answer": str(2 * i)} for i in range(4)]
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def _base(root: Path) -> list[str]:
    """Overrides that make `--recipe tiny` a math-task recipe with a local model and data (loaded by no test)."""
    return ["task=math", f"model.base={_model(root)}", f"data.hard_train={_data(root)}", *FAST]


def _run_folder(root: Path, step: int = 1, finished: bool = False) -> Path:
    """A run folder as a checkpoint leaves it after `step` outer steps (adapters are tiny but well-formed)."""
    run = root / "run"
    run.mkdir()
    from soarlite.config import merge, parse_overrides

    cfg = load_recipe("tiny", _base(root))
    data = merge(to_dict(cfg), parse_overrides([f"outer.steps={max(step, 1)}"]))
    (run / "config.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    (run / "state.json").write_text(json.dumps({"step": step, "history": [], "promotions": [], "wall_s": 1.0}))
    (run / "metrics.jsonl").write_text("".join(json.dumps({"step": t}) + "\n" for t in range(step)))
    (run / "pq.jsonl").write_text("")
    for name in ("teacher", "student"):
        folder = run / "adapters" / name
        folder.mkdir(parents=True)
        (folder / "adapter_config.json").write_text(json.dumps({"r": 8}))
        _safetensors(folder / "adapter_model.safetensors")
    _safetensors(run / "adapters" / "teacher" / "optimizer.safetensors")
    (run / "adapters" / "teacher" / "optimizer.json").write_text(json.dumps({"scheduler_last_epoch": step}))
    if finished:
        (run / "summary.json").write_text("{}")
    return run


def _snapshot(folder: Path) -> dict:
    """Every file under a folder and its bytes, leaving out the lock's own files."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name not in (".lock", ".lock.holder")}


# ------------------------------------------------------------------------------------------------ the table
# Each case: (id, setup(root) -> (args, folder that must not change or appear), exit status, text stderr names).
def _new(override=None, *, extra=(), out="out"):
    def setup(root):
        args = ["run", "--recipe", "tiny", "--out", str(root / out), "--quiet", *_base(root), *extra]
        return args + ([override] if override else []), root / out
    return setup


def _data_case(rows):
    def setup(root):
        data = _data(root, rows, "bad.jsonl")
        return ["run", "--recipe", "tiny", "--out", str(root / "out"), *_base(root), f"data.hard_train={data}"], root / "out"
    return setup


def _recipe_file(text: bytes | str, name: str = "r.yaml"):
    def setup(root):
        path = root / name
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        return ["run", "--recipe", str(path), "--out", str(root / "out")], root / "out"
    return setup


def _resume(*args, step: int = 1, finished: bool = False, recipe: str | None = None):
    def setup(root):
        run = _run_folder(root, step, finished)
        return ["run", "--resume", str(run), *(["--recipe", recipe] if recipe else []), *args], run
    return setup


def _broken(rel: str, content: bytes | None):
    def setup(root):
        run = _run_folder(root)
        path = run / rel
        if content is None:
            path.unlink()
        else:
            path.write_bytes(content)
        return ["run", "--resume", str(run)], run
    return setup


ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n" for p, c in zip("abcde", "bcdef"))

CASES = [
    # non-finite numbers, for every kind of float key
    ("lr-inf", _new("outer.lr=.inf"), 2, "outer.lr"),
    ("lr-minus-inf", _new("inner.lr=-.inf"), 2, "inner.lr"),
    ("tau-nan", _new("outer.tau=.nan"), 2, "outer.tau"),
    ("temperature-nan", _new("inner.temperature=.nan"), 2, "inner.temperature"),
    ("teacher-temperature-nan", _new("outer.temperature=.NaN"), 2, "outer.temperature"),
    ("grade-timeout-inf", _new("grade_timeout_s=.inf"), 2, "grade_timeout_s"),
    ("kl-inf", _new("outer.kl_coef=.inf"), 2, "outer.kl_coef"),
    ("dropout-nan", _new("model.lora_dropout=.nan"), 2, "model.lora_dropout"),
    ("task-option-nan", _new("task_options.seed=.nan"), 2, "task_options.seed"),
    # names and paths
    ("name-escapes", _new("name=../../escaped"), 2, "name"),
    ("name-slash", _new("name=a/b"), 2, "name"),
    ("name-dotdot", _new("name=.."), 2, "name"),
    ("model-missing", _new("model.base=/no/such/dir"), 2, "model.base"),
    ("model-not-a-model", _new(extra=["model.base=/tmp"]), 2, "model.base"),
    ("data-missing", _new("data.hard_train=/no/such.jsonl"), 2, "data.hard_train"),
    # data rows: strings or finite numbers only, named by file and line
    ("data-answer-false", _data_case([{"problem": "1+1", "answer": False}]), 2, "bad.jsonl:1"),
    ("data-answer-nan", _data_case(['{"problem": "1+1", "answer": NaN}']), 2, "bad.jsonl:1"),
    ("data-answer-inf", _data_case(['{"problem": "1+1", "answer": Infinity}']), 2, "bad.jsonl:1"),
    ("data-problem-list", _data_case([{"problem": "ok", "answer": "2"}, {"problem": ["1+1"], "answer": "2"}]), 2,
     "bad.jsonl:2"),
    ("data-problem-dict", _data_case([{"problem": {"q": 1}, "answer": "2"}]), 2, "bad.jsonl:1"),
    ("data-answer-missing", _data_case([{"problem": "1+1"}]), 2, "bad.jsonl:1"),
    ("data-not-json", _data_case(["{not json"]), 2, "bad.jsonl:1"),
    ("data-row-not-object", _data_case(["[1, 2]"]), 2, "bad.jsonl:1"),
    ("data-empty", _data_case([]), 2, "bad.jsonl"),
    # recipe files
    ("yaml-duplicate-key", _recipe_file("name: a\nname: b\n"), 2, "duplicate key 'name'"),
    ("yaml-duplicate-nested", _recipe_file("outer:\n  lr: 1.0e-3\n  lr: 2.0e-3\n"), 2, "duplicate key 'lr'"),
    ("yaml-alias-bomb", _recipe_file(ALIAS_BOMB), 2, "r.yaml"),
    ("yaml-not-utf8", _recipe_file(b"name: \xff\xfe\n"), 2, "r.yaml"),
    ("yaml-invalid", _recipe_file("outer: [1, 2\n"), 2, "r.yaml"),
    ("yaml-not-mapping", _recipe_file("- a\n- b\n"), 2, "r.yaml"),
    ("yaml-unknown-key", _recipe_file("outr: {}\n"), 2, "outr"),
    ("recipe-is-folder", lambda root: (["run", "--recipe", str(root), "--out", str(root / "out")], root / "out"), 2,
     "--recipe"),
    # --out that cannot be a run folder
    ("out-is-file", lambda root: (_new(out="f")(root)[0], None) if (root / "f").write_text("x") else None, 2, "/f"),
    ("out-under-file", lambda root: (_new(out="f/run")(root)[0], None) if (root / "f").write_text("x") else None, 2,
     "/f"),
    ("out-under-proc", lambda root: (["run", "--recipe", "tiny", "--out", "/proc/soarlite-run", *_base(root)], None), 2,
     "/proc/soarlite-run"),
    ("out-on-sys", lambda root: (["run", "--recipe", "tiny", "--out", "/sys/soarlite/run", *_base(root)], None), 2,
     "/sys/soarlite"),
    # resume: what it cannot honour is refused with the key named
    ("resume-seed", _resume("seed=7"), 2, "seed"),
    ("resume-lora-rank", _resume("model.lora_rank=4"), 2, "model.lora_rank"),
    ("resume-target-modules", _resume("model.target_modules=[q_proj]"), 2, "model.target_modules"),
    ("resume-model", _resume("model.base=meta-llama/Llama-3.2-1B-Instruct"), 2, "model.base"),
    ("resume-g", _resume("outer.g=3"), 2, "outer.g"),
    ("resume-n", _resume("outer.n=3"), 2, "outer.n"),
    ("resume-r", _resume("outer.r=2"), 2, "outer.r"),
    ("resume-outer-lr", _resume("outer.lr=0.1"), 2, "outer.lr"),
    ("resume-inner-lr", _resume("inner.lr=0.1"), 2, "inner.lr"),
    ("resume-warmup", _resume("outer.warmup_steps=5"), 2, "outer.warmup_steps"),
    ("resume-data", _resume("data.hard_test=x.jsonl"), 2, "data.hard_test"),
    ("resume-task-option", _resume("task_options.seed=3"), 2, "task_options"),
    ("resume-shrink-steps", _resume("outer.steps=1", step=3), 2, "outer.steps"),
    ("resume-other-recipe", _resume(recipe="math"), 2, "--recipe"),
    ("resume-no-run", lambda root: (["run", "--resume", str(root)], root), 2, "config.yaml"),
    ("resume-finished", _resume(finished=True), 0, "finished"),
    # resume: every unreadable or corrupt file of a run folder is named
    ("folder-config-not-yaml", _broken("config.yaml", b"outer: [1, 2\n"), 2, "config.yaml"),
    ("folder-config-not-mapping", _broken("config.yaml", b"- 1\n"), 2, "config.yaml"),
    ("folder-config-bad-value", _broken("config.yaml", b"outer: {g: x}\n"), 2, "config.yaml"),
    ("folder-config-not-utf8", _broken("config.yaml", b"\xff\xfe\x00"), 2, "config.yaml"),
    ("folder-config-duplicate", _broken("config.yaml", b"seed: 0\nseed: 1\n"), 2, "config.yaml"),
    ("folder-state-not-json", _broken("state.json", b"{\"step\": 1,"), 2, "state.json"),
    ("folder-state-no-step", _broken("state.json", b"{}"), 2, "state.json"),
    ("folder-state-binary", _broken("state.json", b"\x00\xff\x10"), 2, "state.json"),
    ("folder-metrics-bad-line", _broken("metrics.jsonl", b"{\"step\": 0\n"), 2, "metrics.jsonl"),
    ("folder-metrics-short", _broken("metrics.jsonl", b""), 2, "metrics.jsonl"),
    ("folder-pq-bad-line", _broken("pq.jsonl", b"[1,\n"), 2, "pq.jsonl"),
    ("folder-adapter-truncated", _broken("adapters/teacher/adapter_model.safetensors", b"\x10\x00"), 2,
     "adapter_model.safetensors"),
    ("folder-adapter-missing", _broken("adapters/student/adapter_model.safetensors", None), 2,
     "adapter_model.safetensors"),
    ("folder-adapter-config", _broken("adapters/teacher/adapter_config.json", b"{r: 8"), 2, "adapter_config.json"),
    ("folder-optimizer-garbage", _broken("adapters/teacher/optimizer.safetensors", os.urandom(64)), 2,
     "optimizer.safetensors"),
    ("folder-optimizer-json", _broken("adapters/teacher/optimizer.json", b"nope"), 2, "optimizer.json"),
    # overrides themselves
    ("override-no-equals", _new("outer.steps"), 2, "outer.steps"),
    ("override-empty-key", _new("=3"), 2, "=3"),
    ("override-list-for-int", _new("outer.g=[1]"), 2, "outer.g"),
    ("override-bool-for-int", _new("outer.g=true"), 2, "outer.g"),
]


def _check_case(tmp_path, setup, code, names):
    root = tmp_path
    args, folder = setup(root)
    before = _snapshot(folder) if folder is not None else None
    existed = folder is not None and folder.exists()
    r = CliRunner().invoke(app, args)
    assert r.exit_code == code, (r.exit_code, r.stdout, r.stderr, r.exception)
    text = r.stderr if code else r.stdout
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    assert names in lines[0], lines[0]
    assert "Traceback" not in r.stderr + r.stdout
    if folder is not None:
        assert folder.exists() == existed, f"{folder} was created"
        assert _snapshot(folder) == before, "the folder changed"
    for leftover in ("runs", "escaped"):
        assert not (root / leftover).exists()
    return r


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_table(case, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _, setup, code, names = case
    _check_case(tmp_path, setup, code, names)


def test_validate_and_run_refuse_the_same_recipes(tmp_path, monkeypatch):
    """Every new-run case of the table: `validate` refuses it too, with the same line."""
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    checked = 0
    for name, setup, _code, _ in CASES:
        if name.startswith(("resume", "folder", "out-", "recipe-is")):
            continue
        root = tmp_path / name
        root.mkdir()
        args, _ = setup(root)
        i = args.index("--out")
        vargs = ["validate", *args[1:i], *args[i + 2:]]
        vargs = [a for a in vargs if a != "--quiet"]
        v, r = runner.invoke(app, vargs), runner.invoke(app, args)
        assert (v.exit_code, v.stderr) == (r.exit_code, r.stderr), name
        checked += 1
    assert checked >= 30


# ------------------------------------------------------------------------------------------------ fuzz
FLOAT_KEYS = ["outer.lr", "inner.lr", "outer.tau", "outer.kl_coef", "inner.kl_coef", "outer.temperature",
              "inner.temperature", "grade_timeout_s", "model.lora_dropout"]
JUNK = [".nan", ".inf", "-.inf", ".NaN", ".Inf", "[1]", "{a: 1}", "true", "null", "abc", "1e400", "-1e400", "~"]


def test_fuzz_float_overrides(tmp_path):
    """Random junk for every float key: `validate` refuses each with one line naming the key, exit 2."""
    rng = random.Random(11)
    runner = CliRunner()
    for _ in range(40):
        key, junk = rng.choice(FLOAT_KEYS), rng.choice(JUNK)
        r = runner.invoke(app, ["validate", "--recipe", "tiny", f"{key}={junk}"])
        assert r.exit_code == 2, (key, junk, r.stdout)
        assert len(r.stderr.strip().splitlines()) == 1 and key in r.stderr, (key, junk, r.stderr)


def test_fuzz_run_folder_files(tmp_path, monkeypatch):
    """Random bytes (or a random cut) in each file a resume reads: one line naming that file, exit 2, nothing
    written."""
    monkeypatch.chdir(tmp_path)
    rng = random.Random(7)
    files = ["config.yaml", "state.json", "metrics.jsonl", "adapters/teacher/adapter_model.safetensors",
             "adapters/student/adapter_model.safetensors", "adapters/teacher/optimizer.safetensors",
             "adapters/teacher/adapter_config.json", "adapters/teacher/optimizer.json"]
    for i in range(24):
        root = tmp_path / f"f{i}"
        root.mkdir()
        rel = files[i % len(files)]
        run = _run_folder(root)
        good = (run / rel).read_bytes()
        bad = good[: rng.randrange(1, max(2, len(good) - 1))] if i % 2 else bytes(rng.randrange(256) for _ in range(40))
        if rel.endswith(".jsonl"):  # a cut JSONL line may still parse: damage the middle
            bad = good[:3] + b"\x00{" + good[3:]
        (run / rel).write_bytes(bad)
        before = _snapshot(run)
        r = CliRunner().invoke(app, ["run", "--resume", str(run)])
        assert r.exit_code == 2, (rel, bad, r.stdout, r.exception)
        line = r.stderr.strip()
        assert len(line.splitlines()) == 1 and Path(rel).name in line, (rel, line)
        assert _snapshot(run) == before


# ------------------------------------------------------------------------------------------------ resume history
def test_extending_a_run_is_recorded(tmp_path):
    from soarlite import runner
    from soarlite.session import resolve_run

    run = _run_folder(tmp_path, step=1, finished=True)
    cfg, run_dir = resolve_run(None, ["outer.steps=3", "eval.tensorboard=false", "grader_workers=2"], None, str(run))
    runner.prepare_folder(cfg, run_dir, None, True, 2.0)
    entry = json.loads((run / "history.jsonl").read_text())
    assert entry["resumed_at_step"] == 1 and entry["max_hours"] == 2.0
    assert entry["changes"] == {"outer.steps": [1, 3], "eval.tensorboard": [True, False], "grader_workers": [1, 2]}
    assert "cosine schedule is now over 3 steps" in entry["schedule"]
    assert yaml.safe_load((run / "config.yaml").read_text())["outer"]["steps"] == 3


def test_resume_with_the_same_recipe_is_allowed(tmp_path):
    from soarlite.session import resolve_run, resume_changes

    run = _run_folder(tmp_path)
    cfg, _ = resolve_run("tiny", [], None, str(run))
    assert resume_changes(run, cfg, 1, "tiny") == {}


# ------------------------------------------------------------------------------------------------ two processes
HOLD = "import sys, time; from soarlite.lock import hold\nwith hold(sys.argv[1]):\n    print('held', flush=True); time.sleep(60)"


def test_two_processes_cannot_both_run_one_folder(tmp_path):
    """A real second process holds the run folder: a run and a resume into it stop at once, naming its pid and host;
    once it is gone, the folder is free again."""
    import socket

    run = _run_folder(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = _snapshot(run)
        t0 = time.time()
        for args in (["run", "--resume", str(run)], ["run", "--recipe", "tiny", "--out", str(run), *_base(tmp_path)]):
            r = CliRunner().invoke(app, args)
            assert r.exit_code == 2, r.stderr
            line = r.stderr.strip()
            assert len(line.splitlines()) == 1
            if "--resume" in args:
                assert f"in use by pid {holder.pid} on {socket.gethostname()}" in line, line
        assert time.time() - t0 < 10  # at once, not after a wait
        assert _snapshot(run) == before
    finally:
        holder.kill()
        holder.wait()
    from soarlite.lock import hold

    with hold(run):  # released when its process died (an OS lock: no stale lock file blocks anyone)
        pass


def test_lock_is_exclusive_in_one_process_too(tmp_path):
    from soarlite.lock import FolderBusy, hold

    with hold(tmp_path), pytest.raises(FolderBusy, match=f"pid {os.getpid()}"), hold(tmp_path):
        pass


# ------------------------------------------------------------------------------------------------ --debug, errors
def test_debug_shows_the_traceback(tmp_path):
    r = CliRunner().invoke(app, ["--debug", "validate", "--recipe", "tiny", "outer.lr=.nan"])
    assert r.exit_code != 0 and r.exception is not None and "outer.lr" in str(r.exception)


def test_an_unexpected_error_is_one_line(monkeypatch):
    from soarlite import session

    def boom(*a, **k):
        raise KeyError("surprise")

    monkeypatch.setattr(session, "load_config", boom)
    r = CliRunner().invoke(app, ["validate", "--recipe", "tiny"])
    assert r.exit_code == 1
    assert r.stderr.strip().splitlines() == ["error: KeyError: 'surprise' (soarlite --debug ... shows the traceback)"]


def test_disk_full_is_one_line_with_the_resume_command(tmp_path, monkeypatch):
    import errno

    from soarlite import runner

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "run" / ".next" / "x"))

    monkeypatch.setattr(runner, "_run_locked", full)
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(app, ["run", "--recipe", "tiny", "--out", str(tmp_path / "run"), *_base(tmp_path)])
    assert r.exit_code == 1
    (line,) = r.stderr.strip().splitlines()
    assert "No space left on device (the disk is full: free space)" in line
    assert f"soarlite run --resume {tmp_path / 'run'}" in line


# ------------------------------------------------------------------------------------------------ signals
@pytest.mark.parametrize("sig,code", [(signal.SIGTERM, -signal.SIGTERM), (signal.SIGHUP, -signal.SIGHUP),
                                      (signal.SIGINT, 130)])
def test_a_signal_prints_the_resume_command(tmp_path, sig, code):
    """A real run, stopped by a signal while it loads: one line with the resume command, today's exit status."""
    from _tiny import make_tiny_model

    model = make_tiny_model(tmp_path / "m")
    data = _data(tmp_path)
    run = tmp_path / "run"
    args = [sys.executable, "-m", "soarlite", "run", "--recipe", "tiny", "--out", str(run), "--quiet", "task=math",
            f"model.base={model}", f"data.hard_train={data}", "prompts.teacher=Write: ", "prompts.student=Q: {question} A:",
            "model.target_modules=[q_proj]", *FAST,
            "outer.max_sample_rounds=40"]  # a random model writes no valid pair: it samples (bounded) past the signal
    p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert "run folder" in p.stdout.readline()  # the lock is held and config.yaml written
    p.send_signal(sig)
    _, err = p.communicate(timeout=120)
    # SIGINT: exit 130; a SIGINT that lands before the run's own handler is installed ends the process by the signal
    # itself, which a shell reports as the same status 128 + 2 = 130
    assert p.returncode == code or (sig == signal.SIGINT and p.returncode == -signal.SIGINT), err
    assert err.strip().splitlines() == [f"interrupted after step 0; resume with `soarlite run --resume {run}`"]


def test_a_signal_swallowed_in_a_finalizer_prints_nothing_and_still_stops(capsys):
    """A signal that lands inside a finalizer (as one landed in the import system's module-lock callback, under load):
    its exception cannot propagate, and Python would print an "Exception ignored" traceback. The guard keeps stderr
    clean and the run stops at its next check, as an interruption by that signal."""
    import gc

    from soarlite import guard

    class Finalized:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGTERM)  # the handler runs here, inside __del__

    pytests_hook, sys.unraisablehook = sys.unraisablehook, sys.__unraisablehook__  # Python's own: it prints
    try:
        with pytest.raises(guard.Interrupted) as e, guard.signals_raise():
            Finalized()
            gc.collect()
            assert guard.PENDING == [signal.SIGTERM]  # the run went on past the swallowed exception
            guard.check_interrupted()
        assert sys.unraisablehook is sys.__unraisablehook__ and guard.PENDING == []  # both put back
    finally:
        sys.unraisablehook = pytests_hook
    assert e.value.signum == signal.SIGTERM
    assert capsys.readouterr().err == ""
