"""The loop fails loudly, and leaves a run folder a user can trust, when the teacher never writes a valid pair."""

import json
import subprocess
import sys

from _tiny import make_tiny_model


def test_teacher_that_never_parses_stops_the_step(tmp_path):
    model = make_tiny_model(tmp_path / "model")  # random weights: never writes <question>..</question>
    data = tmp_path / "hard.jsonl"
    data.write_text("".join(json.dumps({"problem": f"{i}+{i}=?", "answer": str(2 * i)}) + "\n" for i in range(4)))
    run = tmp_path / "run"
    r = subprocess.run(
        [sys.executable, "-m", "soarlite", "run", "--recipe", "tiny", "--out", str(run), "--quiet",
         f"model.base={model}", f"data.hard_train={data}", "prompts.teacher=Write a problem: ",
         "prompts.student=Q: {question} A:", "model.target_modules=[q_proj]", "outer.g=2", "outer.n=2",
         "outer.max_sample_rounds=2", "outer.max_new_tokens=8"],
        capture_output=True, text=True, timeout=300,
    )
    assert r.returncode == 1, r.stderr
    assert r.stderr.strip().splitlines()[-1] == (
        "error: the teacher wrote 0 valid question-answer pairs of the 4 needed in 20 samples (2 rounds); "
        "check the teacher prompt, or raise outer.max_sample_rounds")
    assert (run / "config.yaml").exists() and not (run / "state.json").exists()
