"""The Task interface: the built-in tasks satisfy it, a recipe names its task, and a task of one's own in one file
(examples/digit_sum_task.py) is graded in the grader's workers and runs the loop without any change to soarlite."""

import json
from pathlib import Path

import pytest

from soarlite import tasks
from soarlite.config import RecipeError, load_recipe
from soarlite.grading import Grader

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = f"{ROOT / 'examples' / 'digit_sum_task.py'}:DigitSumTask"


@pytest.mark.parametrize("name", ["math", "toy"])
def test_builtin_tasks_are_tasks(name):
    task = tasks.load_task(name, {})
    assert isinstance(task, tasks.Task) and task.name == name
    assert tasks.spec_for(name) == tasks.BUILTIN[name]
    assert task.student_prompt("What is 1+1?").count("What is 1+1?") == 1


def test_a_recipe_names_its_task():
    assert load_recipe("math").task == "math" and load_recipe("tiny").task == "toy"
    assert isinstance(tasks.resolve(load_recipe("tiny")), tasks.Task)
    with pytest.raises(RecipeError, match=r"^task: 'nope' is not a task; use one of 'math', 'toy'"):
        tasks.resolve(load_recipe("tiny", ["task=nope"]))
    with pytest.raises(RecipeError, match=r"^task_options.bogus: unknown key; allowed here: preset, seed, hidden"):
        tasks.resolve(load_recipe("tiny", ["task_options.bogus=1"]))
    for bad, line in [("hidden=true", "task_options.hidden: True is not allowed; expected a whole number >= 1"),
                      ("hidden=0", "task_options.hidden: 0 is not allowed; expected a whole number >= 1"),
                      ("lr=-1", "task_options.lr: -1 is not allowed; expected a positive number"),
                      ("seed=-1", "task_options.seed: -1 is not allowed; expected a whole number >= 1 (or 0)"),
                      ("easy_levels=[0]", "task_options.easy_levels: [0] is not allowed; expected a non-empty list"),
                      ("habit=1.5", "task_options.habit: 1.5 is not allowed; expected a probability from 0 to 1"),
                      ("noise=-0.1", "task_options.noise: -0.1 is not allowed; expected a probability from 0 to 1"),
                      ("teacher_noise=true",
                       "task_options.teacher_noise: True is not allowed; expected a probability from 0 to 1")]:
        with pytest.raises(RecipeError) as e:
            tasks.resolve(load_recipe("tiny", [f"task_options.{bad}"]))
        assert str(e.value).startswith(line)
    assert tasks.resolve(load_recipe("tiny", ["task_options.hidden=64", "task_options.seed=0", "task_options.lr=1"]))
    # a probability may be 0: no habit is the world before "h", a careful teacher writes no slips
    assert tasks.resolve(load_recipe("tiny", ["task_options.habit=0", "task_options.teacher_noise=0.0",
                                              "task_options.noise=1"]))
    with pytest.raises(RecipeError, match=r"^task_options: the math task takes no options"):
        tasks.resolve(load_recipe("math", ["task_options.x=1"]))
    with pytest.raises(RecipeError, match=r"^task: 'no/such.py:Task': no file"):
        tasks.resolve(load_recipe("math", ["task=no/such.py:Task"]))


def test_an_old_run_folder_resumes_under_tasks():
    """A config.yaml written before tasks (model.base: toy, toy: settings) reads as the toy task with those options."""
    from soarlite.config import from_dict

    cfg = from_dict({"model": {"base": "toy", "dtype": "float32"}, "data": {"hard_train": "toy"},
                     "prompts": {"teacher": "toy", "student": "toy"}, "toy": {"preset": "small"}})
    assert (cfg.task, cfg.task_options, cfg.prompts.teacher, cfg.prompts.student) == ("toy", {"preset": "small"}, "task", "task")
    assert cfg.model.base == "meta-llama/Llama-3.2-3B-Instruct" and cfg.data.hard_train == ""


def test_math_task_needs_its_grounding_set(tmp_path):
    with pytest.raises(RecipeError, match=r"^data.hard_train: empty"):
        tasks.resolve(load_recipe("math", ["data.hard_train="]))
    with pytest.raises(RecipeError, match=r"^data.hard_train: no file .*soarlite filter"):
        tasks.resolve(load_recipe("math", [f"data.hard_train={tmp_path}/x.jsonl"]), with_data=True)


def test_a_task_of_ones_own_is_graded_in_the_workers():
    task = tasks.load_task(EXAMPLE, {"digits": 4})
    assert isinstance(task, tasks.Task)
    cfg = load_recipe("tiny", [f"task={EXAMPLE}", "task_options.digits=4", "model.base=somewhere"])
    assert tasks.resolve(cfg).model_dir(cfg) == "somewhere"
    train = task.hard_problems(cfg, "train")
    assert len(train) == 32 and all(len(p.problem.split()[-1].rstrip("?")) == 4 for p in train)
    n = train[0].problem.split()[-1].rstrip("?")
    assert train[0].answer == str(sum(map(int, n)))
    texts = [r"<question>Digits of 45?</question><answer>\boxed{9}</answer>", "no pair"]
    with Grader(workers=1, timeout_s=5.0, task=tasks.spec_for(EXAMPLE), task_options={"digits": 4}) as g:
        assert g.parse_teacher(texts) == [tasks.QA("Digits of 45?", "9"), None]
        assert g.correct([(r"so \boxed{9}", "9"), (r"\boxed{8}", "9"), ("9", "9")]) == [True, False, False]
        assert g.rewards([(r"\boxed{9}", "9"), (r"\boxed{8}", "9")]) == [1.0, 0.0]
    with pytest.raises(RecipeError, match=r"^task_options: unknown option 'x'"):
        tasks.load_task(EXAMPLE, {"x": 1})


@pytest.mark.slow
def test_a_task_of_ones_own_runs_the_loop(tmp_path_factory, tmp_path):
    """One outer step of SOAR with the example task on the small world's model: the loop, the grader workers and
    the summary all go through the task; nothing in soarlite knows about it."""
    from _world import FAST, world_cache, world_dir

    from soarlite import toy

    cache = world_cache(tmp_path_factory)
    model = world_dir(cache) / "model"
    run = tmp_path / "run"
    from _world import soarlite

    # the toy model writes pairs when asked with its own teacher prompt; the example task reads them as integers
    soarlite(cache, "run", "--recipe", "tiny", "--out", str(run), "--quiet", f"task={EXAMPLE}",
             "task_options.digits=2", "task_options.problems=8", f"model.base={model}",
             f"prompts.teacher={toy.TEACHER_PROMPT}", "outer.steps=1", *FAST)
    (row,) = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert row["teacher_valid_rate"] > 0 and len(row["rewards"]) == 2
    assert (run / "adapters" / "teacher" / "adapter_model.safetensors").is_file()


def test_question_profile_counts_what_the_teacher_asks():
    """The per-step histogram by the task's difficulty measure, and the share of right answers (exact values), for the
    whole step and for each dataset, graded in one call."""
    from soarlite.scoring import question_profiles

    class Levels:  # difficulty = number of '+' signs; its own answer = the sum
        def difficulty(self, q):
            return q.count("+") if q[0].isdigit() else None

        def reference_answer(self, q):
            return str(sum(map(int, q.split("+")))) if q[0].isdigit() else None

    class Grader:  # what the workers would say for these plain integers
        calls = 0

        def correct(self, pairs):
            Grader.calls += 1
            return [c == rf"\boxed{{{r}}}" for c, r in pairs]

    pairs = [tasks.QA("1+1", "2"), tasks.QA("1+2+3", "6"), tasks.QA("2+2", "5"), tasks.QA("hello", "1")]
    whole, per_dataset = question_profiles(Levels(), Grader(), [pairs[:2], pairs[2:]])
    assert whole == {"difficulty": {"1": 2, "2": 1, "other": 1}, "answers_right": 2 / 3}
    assert per_dataset == [{"difficulty": {"1": 1, "2": 1}, "answers_right": 1.0},
                           {"difficulty": {"1": 1, "other": 1}, "answers_right": 0.0}]
    assert Grader.calls == 1
    assert question_profiles(tasks.load_task("math"), Grader(), [pairs]) == (None, None)  # math: no difficulty measure
