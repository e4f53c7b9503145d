"""`soarlite report` on a finished tiny run: real PNGs of the expected size and a Markdown report; the metric sinks."""

import importlib.util
import shutil
import struct

import pytest

from soarlite.evaluation.report import DPI, FIGSIZE
from soarlite.tracking import Tracked, scalars

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path) -> tuple[int, int]:
    """Width and height from the IHDR chunk, which a valid PNG has first, right after the signature."""
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_SIGNATURE and head[12:16] == b"IHDR", f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def test_scalars_and_tracked_reporter():
    row = {"step": 3, "reward_mean": 0.5, "moving_avg": None, "teacher_valid_rate": 1, "promoted": True,
           "rewards": [0.25, 0.75], "peak_mem_mb": 10.0, "student_gains": [[0.1]]}
    assert scalars(row) == {"reward_mean": 0.5, "teacher_valid_rate": 1.0, "peak_mem_mb": 10.0, "promoted": 1.0,
                            "rewards/0": 0.25, "rewards/1": 0.75}

    class Sink:
        rows = []

        def log(self, r):
            self.rows.append(r)

    class Report:
        ended = []

        def outer_end(self, r, state):
            self.ended.append(r)

        def phase(self, text):
            return text

    t = Tracked(Report(), [Sink()])
    t.outer_end(row, None)
    assert Report.ended == [row] and Sink.rows == [row] and t.phase("x") == "x"


@pytest.mark.slow
def test_report_of_a_finished_run(tmp_path_factory, tmp_path):
    pytest.importorskip("matplotlib")
    from tests._world import finished_run, invoke, world_cache, world_dir

    cache = world_cache(tmp_path_factory)
    run = tmp_path / "run"
    shutil.copytree(finished_run(tmp_path_factory), run)
    if importlib.util.find_spec("tensorboard") is not None:  # the run logged its steps there as it went
        assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    invoke(cache, "eval", "--run", str(run), "--samples", "2", "--k", "1,2", "-q")
    invoke(cache, "eval", "--run", str(run), "--adapter", "student", "--label", "PS", "--samples", "2", "--k", "1,2",
           "-q")

    r = invoke(cache, "report", str(run))
    out = run / "report"
    assert f"wrote {out / 'report.md'}" in r.stdout
    want = (round(FIGSIZE[0] * DPI), round(FIGSIZE[1] * DPI))
    for name in ("reward.png", "valid_rate.png", "memory.png", "pass_at_k.png"):
        assert png_size(out / name) == want, name
    md = (out / "report.md").read_text()
    assert "| run | tiny | 2 | 2 (steps 1, 2) |" in md
    n_test = len((world_dir(cache) / "hard_test.jsonl").read_text().splitlines())  # as measured by this machine's build
    assert f"| base | {n_test} x 2 |" in md and f"| PS | {n_test} x 2 |" in md
    assert "![reward](reward.png)" in md and "![pass_at_k](pass_at_k.png)" in md
    assert not list(out.glob("*.tmp*"))

    # several runs side by side: one folder of plots, methods labelled by run
    other = tmp_path / "other"
    shutil.copytree(run, other, ignore=shutil.ignore_patterns("report"))
    invoke(cache, "report", str(run), str(other), "--out", str(tmp_path / "both"))
    both = (tmp_path / "both" / "report.md").read_text()
    assert "| run: PS |" in both and "| other: PS |" in both
    assert png_size(tmp_path / "both" / "reward.png") == want

    r = invoke(cache, "report", str(tmp_path / "nothing"), check=False)
    assert r.exit_code == 2 and "not a run folder" in r.stderr


def test_the_teacher_questions_plot(tmp_path):
    """questions.png: the share of the teacher's questions by difficulty over outer steps, from metrics.jsonl."""
    pytest.importorskip("matplotlib")
    import json

    from soarlite.evaluation.report import build, load_run, question_levels

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("name: tiny\n")
    rows = [{"step": t, "teacher_valid_rate": 1.0, "reward_mean": 0.0, "moving_avg": None, "promoted": False,
             "peak_mem_mb": 1.0, "wall_s": 1.0, "rewards": [0.0, 0.0],
             "teacher_questions": {"difficulty": {"1": t, "10": 8 - t, "other": 1},
                                   "answers_right": 0.5 if t else None}} for t in range(3)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert question_levels(load_run(run)) == ["1", "10", "other"]  # numeric order, the unmeasurable last
    out = build([run])
    assert png_size(out / "questions.png") == (round(FIGSIZE[0] * DPI), round(FIGSIZE[1] * DPI))
    assert "![questions](questions.png)" in (out / "report.md").read_text()


def test_what_the_teachers_reward_follows(tmp_path):
    """report.md's reward-signal table: Pearson correlations over datasets, computed from metrics.jsonl by hand."""
    import json

    from soarlite.evaluation.report import build, load_run, reward_signal

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("name: tiny\n")
    # three datasets: mean difficulty 1, 2, 3 (one question each at that level plus an unmeasurable one), rewards
    # 0.3, 0.2, 0.1 (exactly opposite to difficulty), right shares 0.5, 1.0, 0.0
    per_ds = [{"difficulty": {str(k): 1, "other": 1}, "answers_right": a} for k, a in ((1, 0.5), (2, 1.0), (3, 0.0))]
    row = {"step": 0, "teacher_valid_rate": 1.0, "reward_mean": 0.2, "moving_avg": None, "promoted": False,
           "peak_mem_mb": 1.0, "wall_s": 1.0, "rewards": [0.3, 0.2, 0.1], "teacher_rewards": [0.3, 0.2, 0.1],
           "teacher_questions": None, "teacher_questions_by_dataset": per_ds}
    (run / "metrics.jsonl").write_text(json.dumps(row) + "\n")
    sig = reward_signal(load_run(run))
    assert sig["datasets"] == 3
    assert sig["with_difficulty"] == pytest.approx(-1.0)
    assert sig["with_answers_right"] == pytest.approx(0.5)  # right (0.5, 1, 0) against reward (0.3, 0.2, 0.1)
    text = (build([run]) / "report.md").read_text()
    assert "| run | 3 | -1.00 | 0.50 |" in text
