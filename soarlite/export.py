"""A run's adapters as the Hugging Face ecosystem expects them, and their way to the Hub.

`adapters/student/` and `adapters/teacher/` are PEFT folders written by the loop's checkpoint. `finish_adapters` makes
each of them self-contained: `base_model_name_or_path` in adapter_config.json (the Hub id, or the local model folder,
such as the toy world's), the base model's tokenizer files, and a README.md model card (the recipe, the run's
metrics, how to load it). Then

    from peft import AutoPeftModelForCausalLM
    model = AutoPeftModelForCausalLM.from_pretrained("runs/tiny/adapters/student")

works, offline too when the base is local or cached. The runner calls it at the end of a run (and when --max-hours
stops one); `soarlite push` and `soarlite generate` call it first, so any run folder can be pushed or tried.
Every file is replaced atomically (a temporary name, then a rename); the adapter weights are never touched.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml

from soarlite import checkpoint
from soarlite.evaluation.summary import summary_markdown

ROLES = ("student", "teacher")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
                   "vocab.json", "merges.txt", "added_tokens.json", "chat_template.jinja", "chat_template.json")


class ExportError(ValueError):
    """A run folder without the adapter asked for."""


def is_local(base: str) -> bool:
    return Path(base).expanduser().is_dir()


def adapter_dir(run_dir: Path, role: str) -> Path:
    path = Path(run_dir) / "adapters" / role
    if not (path / "adapter_config.json").is_file():
        raise ExportError(f"{path}: no adapter here (no adapter_config.json); is {run_dir} a run folder with at "
                          "least one finished outer step?")
    return path


def read_config(run_dir: Path) -> dict:
    path = Path(run_dir) / "config.yaml"
    return (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}


def set_base(folder: Path, base: str) -> None:
    """adapter_config.json's base_model_name_or_path (a local folder as an absolute path)."""
    path = folder / "adapter_config.json"
    conf = json.loads(path.read_text())
    conf["base_model_name_or_path"] = str(Path(base).expanduser().resolve()) if is_local(base) else base
    checkpoint.write_json_atomic(path, conf)


def copy_tokenizer(folder: Path, base: str) -> list[str]:
    """The base model's tokenizer files into the adapter folder: copied from a local model folder, else saved from
    the Hugging Face cache (no download: a base that is not cached keeps its tokenizer on the Hub)."""
    if is_local(base):
        copied = []
        for name in TOKENIZER_FILES:
            src = Path(base).expanduser() / name
            if src.is_file():
                tmp = folder / (name + ".tmp")
                shutil.copyfile(src, tmp)
                tmp.replace(folder / name)
                copied.append(name)
        return copied
    try:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(base, local_files_only=True)
    except Exception:  # noqa: BLE001 -- not cached, or transformers missing: the card names the base's own tokenizer
        return []
    return [Path(p).name for p in tok.save_pretrained(str(folder)) if Path(p).is_file()]


def model_card(role: str, cfg: dict, base: str, summary: dict | None, repo: str | None = None) -> str:
    """README.md of one adapter: front matter for the Hub, the recipe, the run's metrics, how to load it."""
    hub_base = None if is_local(base) else base
    front = {"library_name": "peft", "tags": ["soarlite", "soar", "lora", role]}
    if hub_base:
        front["base_model"] = hub_base
        front["pipeline_tag"] = "text-generation"
    where = repo or f"runs/{cfg.get('name', 'RUN')}/adapters/{role}"
    what = ("the student SOAR promoted last: the one that improved on the hard problems" if role == "student" else
            "the teacher: it writes question-answer pairs that make a student improve on hard problems")
    prompts = cfg.get("prompts") or {}
    lines = [
        "---", yaml.safe_dump(front, sort_keys=False).strip(), "---", "",
        f"# soarlite {role} adapter: {cfg.get('name', 'run')}", "",
        f"A LoRA adapter trained by [soarlite](https://pypi.org/project/soarlite/), an implementation of SOAR "
        f"(Sundaram et al., *Teaching Models to Teach Themselves*, arXiv 2601.18778). This is {what}.", "",
        f"- base model: `{base}`" + ("" if hub_base else " (a local folder: load it with that folder present, or "
                                     "edit `base_model_name_or_path` in adapter_config.json)"),
        f"- recipe: `{cfg.get('name', '?')}`, task `{cfg.get('task', '?')}`, seed {cfg.get('seed', '?')}",
        f"- LoRA rank {(cfg.get('model') or {}).get('lora_rank', '?')}, alpha "
        f"{(cfg.get('model') or {}).get('lora_alpha', '?')}", "",
        "## How to load it", "",
        "```python",
        "from peft import AutoPeftModelForCausalLM",
        "from transformers import AutoTokenizer",
        "",
        f'model = AutoPeftModelForCausalLM.from_pretrained("{where}")',
        f'tokenizer = AutoTokenizer.from_pretrained("{where}")',
        "```", "",
        "Or try it from the run folder: `soarlite generate --run RUN_DIR"
        + (' "your question"`' if role == "student" else " --adapter teacher` (the teacher writes a question, the "
           "student answers it)."), "",
    ]
    if role == "student" and prompts.get("student"):
        lines += ["The student was trained with this prompt (`{question}` is the problem):", "", "```",
                  prompts["student"], "```", ""]
    if summary:
        lines += ["## Results of the run", "", summary_markdown(summary), ""]
    lines += ["## The recipe", "", "```yaml", yaml.safe_dump(cfg, sort_keys=False).strip(), "```", ""]
    return "\n".join(lines)


def finish_adapters(run_dir: Path, base: str | None = None, summary: dict | None = None,
                    repo: str | None = None) -> list[Path]:
    """Make every adapter of a run folder self-contained (base, tokenizer, model card). `base`: the model folder
    or Hub id the run used (default: what the adapter or the recipe says)."""
    run_dir = Path(run_dir)
    cfg = read_config(run_dir)
    if summary is None and (run_dir / "summary.json").is_file():
        summary = json.loads((run_dir / "summary.json").read_text())
    done = []
    for role in ROLES:
        folder = run_dir / "adapters" / role
        if not (folder / "adapter_config.json").is_file():
            continue
        chosen = base or json.loads((folder / "adapter_config.json").read_text()).get("base_model_name_or_path") \
            or (cfg.get("model") or {}).get("base")
        if not chosen:
            raise ExportError(f"{folder}: which base model? give model.base in {run_dir / 'config.yaml'}")
        set_base(folder, chosen)
        copy_tokenizer(folder, chosen)
        name = (repo if role == "student" else f"{repo}-teacher") if repo else None
        checkpoint.write_text_atomic(folder / "README.md", model_card(role, cfg, chosen, summary, name))
        done.append(folder)
    return done


def push(run_dir: Path, repo: str, token: str | None = None, private: bool = False, endpoint: str | None = None,
         roles: tuple[str, ...] = ROLES) -> list[str]:
    """Upload the student to `repo` and the teacher to `repo-teacher` (each a PEFT repository). Returns their URLs."""
    from soarlite.extras import require

    require("huggingface_hub", "cpu")
    from huggingface_hub import HfApi

    run_dir = Path(run_dir)
    for role in roles:
        adapter_dir(run_dir, role)
    api = HfApi(endpoint=endpoint, token=token)
    finish_adapters(run_dir, repo=repo)
    urls = []
    for role in roles:
        name = repo if role == "student" else f"{repo}-teacher"
        url = api.create_repo(name, private=private, exist_ok=True)
        api.upload_folder(repo_id=name, folder_path=str(run_dir / "adapters" / role),
                          commit_message=f"soarlite: the {role} adapter of {run_dir.name}",
                          ignore_patterns=["optimizer*", "*.tmp"])
        urls.append(str(url))
    return urls


# ------------------------------------------------------------------------------------------------ trying it
def generate(run_dir: Path, role: str, question: str | None, temperature: float = 0.0, seed: int = 0,
             max_new_tokens: int | None = None) -> list[tuple[str, str]]:
    """Try a run's adapters: the student (or, with role "teacher" and no question, the teacher writes a question
    and its answer, and the student answers it). Returns (what, text) lines to show."""
    from soarlite.engine import SamplingParams, make_engine
    from soarlite.session import load_config
    from soarlite.tasks import resolve_world

    if role not in ROLES:
        raise ExportError(f"--adapter: {role!r}; use student or teacher")
    if not question and role == "student":
        raise ExportError("give a question to answer, or --adapter teacher to let the teacher write one")
    run_dir = Path(run_dir)
    for r in ROLES:
        adapter_dir(run_dir, r)
    cfg = load_config(None, [], str(run_dir))
    world = resolve_world(cfg, with_data=False)
    engine = make_engine(cfg, world.model_dir)
    for r in ROLES:
        engine.load_adapter(r, str(run_dir / "adapters" / r))
    tokens = max_new_tokens or cfg.inner.max_new_tokens
    out: list[tuple[str, str]] = []
    reference = None
    if not question:  # the teacher writes a question (sampled: its greedy output is always the same one)
        for attempt in range(8):
            text = engine.generate([world.teacher_prompt], ["teacher"],
                                   SamplingParams(max(temperature, 1.0), cfg.outer.max_new_tokens), seed + attempt)[0].text
            qa = world.task.parse_teacher(text)
            if qa is not None:
                break
        else:
            raise ExportError("the teacher wrote no valid question-answer pair in 8 tries; try another --seed")
        question, reference = qa.question, qa.answer
        out += [("teacher's question", question), ("teacher's answer", reference)]
    answerer = role if reference is None else "student"
    text = engine.generate([world.student_prompt(question)], [answerer], SamplingParams(temperature, tokens), seed)[0].text
    out.append((f"{answerer}'s answer", text.strip()))
    if reference is not None:
        out.append(("the student is right", "yes" if world.task.is_correct(text, reference) else "no"))
    return out
