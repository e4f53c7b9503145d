"""Recipes: one schema for every recipe, validated before any model loads.

A recipe is a YAML file whose keys mirror the dataclasses below. Defaults are the paper's settings
(arXiv 2601.18778, see docs); a recipe states only what it changes. Command-line overrides are dotted
(`inner.steps=5`) and are parsed as YAML scalars, then checked like the file itself.

Nothing here imports torch: `soarlite recipes` and validation must stay instant.
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml


class RecipeError(ValueError):
    """A recipe or an override is wrong. The message is one line naming the key and what is allowed."""


# ----------------------------------------------------------------------------------------------------------------
# Schema. Every field carries its help text in metadata; `soarlite recipes --explain` could print them.


def _f(default, help: str, **kw):
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class ModelConfig:
    base: str = _f("meta-llama/Llama-3.2-3B-Instruct", "base model: a Hub id or a local folder (the toy task brings its own model and ignores this)")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = _f("auto", "compute dtype; auto = bf16 where the card supports it, fp16 on older cards, fp32 on CPU")
    load_in_4bit: bool = _f(False, "load the shared base in 4-bit NF4 (bitsandbytes); adapters stay in full precision")
    lora_rank: int = _f(16, "LoRA rank of every adapter (teacher, baseline student, throwaway students)", min=1)
    lora_alpha: int = _f(32, "LoRA alpha", min=1)
    lora_dropout: float = _f(0.0, "LoRA dropout", min=0.0, max=1.0)
    target_modules: list[str] = _f(["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"], "modules that get LoRA")
    max_seq_len: int = _f(2048, "prompt + completion tokens, at most", min=16)
    gradient_checkpointing: bool = _f(True, "on CUDA: recompute each layer's activations in the backward pass instead of keeping them: far less memory per trained sequence for about a third more compute (a CPU run keeps them: memory is not its limit)")
    gen_batch: int = _f(256, "sequences the transformers engine decodes at once; its KV cache and prefill grow with it (vLLM schedules its own)", min=1)
    use_unsloth: Literal["auto", True, False] = _f("auto", "load the base through unsloth (4-bit, its kernels; with engine: hf and vllm installed, its in-process vLLM samples on the same weights): auto = when installed and on CUDA")


@dataclass
class DataConfig:
    hard_train: str = _f("", "the grounding set: JSONL(.gz) with `problem` and `answer` (fail@k train split; the toy task brings its own)")
    hard_test: str = _f("", "the held-out hard test split (for evaluation and the run summary); may be empty")
    problem_field: str = _f("problem", "field of a row that holds the problem")
    answer_field: str = _f("answer", "field of a row that holds the reference answer")
    source: str = _f("", "what `soarlite filter` filters into the fail@k splits: a JSONL(.gz) file, or hub:math, hub:harp, hub:olympiadbench, hub:math500 (Hugging Face Hub)")


@dataclass
class PromptConfig:
    teacher: str = _f("task", "teacher prompt: 'task' (the task's own; the paper's for math) or a literal text")
    student: str = _f("task", "student prompt: 'task' (the task's own) or a literal text with a {question} slot")


@dataclass
class OuterConfig:
    """The teacher's loop."""

    steps: int = _f(200, "outer steps (teacher updates)", min=0)
    g: int = _f(4, "datasets per outer step (RLOO group of the teacher)", min=2)
    n: int = _f(64, "question-answer pairs per dataset", min=1)
    r: int = _f(4, "students trained per dataset", min=1)
    M: int = _f(64, "reward questions: hard training problems sampled fresh each step, graded greedily", min=1)
    lr: float = _f(1e-5, "teacher AdamW learning rate (cosine decay)", gt=0.0)
    warmup_steps: int = _f(20, "teacher warm-up steps", min=0)
    kl_coef: float = _f(0.001, "KL penalty towards the initial model (base with adapters off)", min=0.0)
    temperature: float = _f(1.0, "teacher sampling temperature", gt=0.0)
    max_new_tokens: int = _f(512, "teacher tokens per question-answer pair", min=1)
    max_sample_rounds: int = _f(8, "rejection-sampling rounds for g*n valid pairs before the step fails loudly", min=1)
    tau: float = _f(0.01, "promotion threshold on the moving average of the mean reward")
    window: int = _f(3, "moving-average window (outer steps)", min=1)
    promote_from: int = _f(0, "first outer step (counted from 0) that may promote; before it the teacher learns against the untrained student, whose rewards still count toward the moving average (0: from the first step, as in the paper)", min=0)
    micro_batch: int = _f(16, "sequences per forward/backward pass of a teacher update", min=1)
    promote: Literal["upper_median", "lower_median"] = _f("upper_median", "which student of the best dataset becomes the baseline: the median by its own gain; of an even number, the upper (default) or the lower one (at r=2 the lower is the worse student)")
    reward: Literal["grounded", "intrinsic"] = _f("grounded", "teacher reward: grounded = the students' gain on hard problems (SOAR); intrinsic = learnability of the questions to the baseline student, mean of (1 - s if s > 0 else 0), s its success rate over inner.group_size samples (the Intrinsic-T baseline)")


@dataclass
class InnerConfig:
    """A throwaway student's loop."""

    steps: int = _f(10, "RLOO steps per student", min=1)
    batch_size: int = _f(8, "questions per step", min=1)
    group_size: int = _f(32, "rollouts per question (RLOO group)", min=2)
    lr: float = _f(1e-5, "student AdamW learning rate (cosine decay, no warm-up)", gt=0.0)
    optimizer: Literal["adamw", "sgd"] = _f("adamw", "the students' optimiser: adamw (the paper's; the recipe's top-level `optimizer` picks its form) or sgd (plain SGD: a step in proportion to the gradient, so a batch with one right answer in hundreds moves a student little, where AdamW's normalised step moves it as far as a batch full of them)")
    lr_decay: float = _f(1.0, "each promotion multiplies the students' learning rate by this: students copied from a baseline promoted p times train at lr x lr_decay^p (1.0: the paper's constant rate; a LoRA student at a high rate is pushed past its best by a second inner loop). Hard-Only and the other baselines follow the same schedule, inner loop by inner loop", gt=0.0, max=1.0)
    max_grad_norm: float = _f(0.0, "clip each student's gradient to this L2 norm before a step (0: no clip). With SGD it bounds the step a batch full of learnable questions takes, while a batch with one right answer in hundreds still moves in proportion to its small gradient", min=0.0)
    kl_coef: float = _f(0.001, "KL penalty towards the base model", min=0.0)
    temperature: float = _f(1.0, "student sampling temperature", gt=0.0)
    max_new_tokens: int = _f(1024, "student tokens per rollout (and per greedy answer on reward questions)", min=1)
    micro_batch: int = _f(32, "sequences per forward/backward pass of a student update", min=1)
    students_in_flight: int = _f(0, "students trained at once (lockstep); 0 = all g*r of an outer step", min=0)


@dataclass
class EvalConfig:
    """What the end of a run measures (summary.json)."""

    samples: int = _f(8, "samples per hard test problem for pass@1 at temperature 1 (0 = skip)", min=0)
    hard_only: bool = _f(False, "also train a Hard-Only student (RLOO on the hard train split) with the same student budget")
    tensorboard: bool = _f(True, "log each outer step's metrics to <run>/tensorboard when the tensorboard package is installed")
    wandb: str = _f("", "log each outer step's metrics to this Weights & Biases project (needs wandb and a login); empty = off")


@dataclass
class RayConfig:
    """Student workers on Ray (`executor: ray`; docs/scale-out.md)."""

    address: str = _f("", "Ray cluster to join: 'auto' (the cluster `ray start --head` made), host:6379 or ray://host:10001; empty = start a local one on this machine")
    workers: int = _f(0, "student workers, one engine each; 0 = as many as the cluster holds (GPUs / gpus_per_worker on CUDA, CPUs / cpus_per_worker on a CPU). With inner.students_in_flight 0, a wave is r * ceil(g / workers) students")
    gpus_per_worker: float = _f(1.0, "GPUs per worker on CUDA (a fraction shares a card)", gt=0.0)
    cpus_per_worker: int = _f(1, "CPUs per worker (its torch threads and grader processes on a CPU run)", min=1)
    retries: int = _f(2, "times a wave whose worker was lost is retrained (on a restarted worker) before the run stops", min=0)
    start_timeout_s: float = _f(300.0, "how long to wait for the cluster to place every worker before the run stops", gt=0.0)


@dataclass
class Config:
    name: str = _f("soar", "run name: the run folder is runs/<name> unless --out says otherwise")
    task: str = _f("math", "the domain (soarlite.tasks): 'math', 'toy', an installed plug-in's name, or 'module:Class' / 'file.py:Class'")
    task_options: dict[str, Any] = _f({}, "the task's own settings (toy: preset, seed and world settings; see soarlite.toy)")
    description: str = _f("", "one line for `soarlite recipes`")
    seed: int = _f(0, "seed of everything random in the run")
    engine: Literal["auto", "hf", "vllm"] = _f("auto", "sampling engine: auto = on a GPU, unsloth's in-process vLLM on the training weights when unsloth and vllm are installed, else vLLM beside the trainer; hf (transformers+peft) on a CPU")
    device: Literal["auto", "cpu", "cuda"] = _f("auto", "where the model runs")
    threads: int = _f(0, "CPU threads for torch; 0 = torch's default", min=0)
    grader_workers: int = _f(0, "processes that grade answers; 0 = one per CPU core this process may use (soarlite.grading.auto_workers)", min=0)
    grade_timeout_s: float = _f(5.0, "hard time limit per graded answer; past it the answer counts as wrong", gt=0.0)
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    prompts: PromptConfig = field(default_factory=PromptConfig)
    outer: OuterConfig = field(default_factory=OuterConfig)
    inner: InnerConfig = field(default_factory=InnerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    # the real-model path (soarlite/preflight.py, soarlite/engine/unsloth.py, soarlite/engine/vllm.py)
    preflight: bool = _f(True, "before step 0, check that one inner loop of a fresh student on the teacher's first questions raises its accuracy on them (stops naming inner.lr / inner.steps when it does not)")
    gpu_memory_utilization: float = _f(0.45, "vLLM's share of the card (gpu_memory_utilization); with unsloth's standby (the shared default on CUDA) unsloth picks its own larger share, since the KV cache is freed while training", gt=0.0, max=0.98)
    optimizer: Literal["adamw", "adamw8bit"] = _f("adamw", "optimiser of every adapter: adamw (torch, 8 bytes of state per parameter) or adamw8bit (bitsandbytes AdamW8bit, about 2 bytes per parameter)")
    # student trainings on Ray (soarlite/executor.py, soarlite/ray_workers.py)
    executor: Literal["local", "ray"] = _f("local", "where the students of a step train: local = this process, wave after wave; ray = Ray workers, one engine each, waves in parallel (see ray.*)")
    ray: RayConfig = field(default_factory=RayConfig)


# ----------------------------------------------------------------------------------------------------------------
# Validation


def _type_name(tp) -> str:
    if typing.get_origin(tp) is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if typing.get_origin(tp) is list:
        return f"list of {typing.get_args(tp)[0].__name__}"
    return getattr(tp, "__name__", str(tp))


# YAML 1.1 reads `1e-5` (no dot) as a string; a user who writes it means the number.
_YAML11_FLOAT_GAP = re.compile(r"[-+]?\d+(\.\d*)?[eE][-+]?\d+")


def _check_value(key: str, value: Any, tp, meta: dict) -> Any:
    origin = typing.get_origin(tp)
    if origin is Literal:
        allowed = typing.get_args(tp)
        if not any(value == a and type(value) is type(a) for a in allowed):  # 1 is not True
            raise RecipeError(f"{key}: {value!r} is not allowed; use one of {', '.join(map(repr, allowed))}")
        return value
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, list) or not all(isinstance(v, item_tp) for v in value):
            raise RecipeError(f"{key}: expected a list of {item_tp.__name__}, got {value!r}")
        return list(value)
    if origin is dict:
        if not isinstance(value, dict):
            raise RecipeError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise RecipeError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise RecipeError(f"{key}: expected an integer, got {value!r}")
    elif tp is float:
        if isinstance(value, str) and _YAML11_FLOAT_GAP.fullmatch(value):
            value = float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RecipeError(f"{key}: expected a number, got {value!r}")
        value = float(value)
        if not math.isfinite(value):
            raise RecipeError(f"{key}: {value!r} is not a finite number; give a plain number such as 1e-5")
    elif tp is str and not isinstance(value, str):
        raise RecipeError(f"{key}: expected a string, got {value!r}")
    if "min" in meta and value < meta["min"]:
        raise RecipeError(f"{key}: {value!r} is too small; it must be >= {meta['min']}")
    if "gt" in meta and value <= meta["gt"]:
        raise RecipeError(f"{key}: {value!r} must be > {meta['gt']}")
    if "max" in meta and value > meta["max"]:
        raise RecipeError(f"{key}: {value!r} is too large; it must be <= {meta['max']}")
    return value


def _build(cls, data: dict, prefix: str = ""):
    if not isinstance(data, dict):
        raise RecipeError(f"{prefix.rstrip('.') or 'recipe'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise RecipeError(f"{prefix}{unknown[0]}: unknown key; allowed here: {', '.join(fields)}")
    kwargs = {}
    for name, value in data.items():
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = _build(tp, value if value is not None else {}, f"{prefix}{name}.")
        else:
            kwargs[name] = _check_value(f"{prefix}{name}", value, tp, dict(fields[name].metadata))
    return cls(**kwargs)


def _check_whole(cfg: Config) -> None:
    """Rules that tie several keys together."""
    # What a task needs (data files, its options) is the task's to check: soarlite.tasks.resolve.
    for key in ("teacher", "student"):  # 'paper' and 'toy' were the names of the task's own prompts before tasks
        if getattr(cfg.prompts, key) in ("paper", "toy"):
            setattr(cfg.prompts, key, "task")
    if cfg.model.lora_alpha <= 0:
        raise RecipeError("model.lora_alpha: must be > 0")
    if not _PLAIN_NAME.fullmatch(cfg.name) or cfg.name in (".", ".."):
        raise RecipeError(f"name: {cfg.name!r} is not a plain name; use letters, digits, '.', '_' and '-' "
                          "(no '/' or '..'); --out picks any folder")
    _check_finite("task_options", cfg.task_options)


_PLAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def _check_finite(key: str, value: Any) -> None:
    """NaN and infinities are refused everywhere, also inside the task's own options."""
    if isinstance(value, float) and not math.isfinite(value):
        raise RecipeError(f"{key}: {value!r} is not a finite number; give a plain number")
    if isinstance(value, dict):
        for k, v in value.items():
            _check_finite(f"{key}.{k}", v)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_finite(f"{key}[{i}]", v)


def _migrate(data: dict) -> dict:
    """A recipe or run folder written before tasks existed (`model.base: toy`, `toy:` settings) in today's terms, so
    that an old run still resumes."""
    if not isinstance(data, dict):
        return data
    model = data.get("model")
    if "toy" not in data and not (isinstance(model, dict) and model.get("base") == "toy"):
        return data
    data = dict(data)
    options = data.pop("toy", None) or {}
    data.setdefault("task", "toy")
    data.setdefault("task_options", options)
    for section, key in (("model", "base"), ("data", "hard_train")):
        if isinstance(data.get(section), dict) and data[section].get(key) == "toy":
            data[section] = {k: v for k, v in data[section].items() if k != key}
    return data


def from_dict(data: dict) -> Config:
    cfg = _build(Config, _migrate(data))
    _check_whole(cfg)
    return cfg


def to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


def differences(old: dict, new: dict, prefix: str = "") -> dict[str, tuple]:
    """{dotted key: (old, new)} for every leaf that differs between two config dicts."""
    out: dict[str, tuple] = {}
    for key in sorted(set(old) | set(new), key=str):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out.update(differences(a, b, f"{prefix}{key}."))
        elif a != b:
            out[f"{prefix}{key}"] = (a, b)
    return out


def parse_overrides(overrides: list[str]) -> dict:
    """`a.b=1 c=x` -> {"a": {"b": 1}, "c": "x"}; values are YAML scalars (so `1e-5` is a number, `true` a bool)."""
    out: dict = {}
    for item in overrides:
        if "=" not in item:
            raise RecipeError(f"{item}: an override is key=value, e.g. inner.steps=5")
        key, raw = item.split("=", 1)
        if not key or any(not part for part in key.split(".")):
            raise RecipeError(f"{item}: an override is key=value, e.g. inner.steps=5")
        try:
            value = load_yaml(raw, key) if raw else ""
        except RecipeError:
            value = raw
        if isinstance(value, dict) or value is None:  # `prompts.teacher=Q: {x}` is a text, not a mapping
            value = raw
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise RecipeError(f"{key}: conflicts with another override")
        node[leaf] = value
    return out


def merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


# ----------------------------------------------------------------------------------------------------------------
# Reading YAML: duplicate keys and alias bombs are refused

MAX_YAML_NODES = 10_000  # a recipe is ~100 nodes; aliases must not expand a few hundred bytes into megabytes


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (YAML would silently keep the last)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            self.flatten_mapping(node)
            seen: set = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                if isinstance(key, (str, int, float, bool)) and key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r} (line {key_node.start_mark.line + 1})", key_node.start_mark)
                seen.add(key) if isinstance(key, (str, int, float, bool)) else None
        return super().construct_mapping(node, deep=deep)


def _expanded_size(node, memo: dict) -> int:
    """Nodes in the document once every alias is expanded, computed without expanding (aliases share nodes)."""
    key = id(node)
    if key in memo:
        return memo[key]
    memo[key] = MAX_YAML_NODES + 1  # a recursive alias counts as too big
    if isinstance(node, yaml.MappingNode):
        size = 1 + sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
    elif isinstance(node, yaml.SequenceNode):
        size = 1 + sum(_expanded_size(v, memo) for v in node.value)
    else:
        size = 1
    memo[key] = min(size, 10 * MAX_YAML_NODES)
    return memo[key]


def load_yaml(text: str, where: str):
    """One YAML document, strictly: RecipeError naming `where` for bad YAML, duplicate keys or alias bombs."""
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, {}) > MAX_YAML_NODES:
            raise RecipeError(f"{where}: expands to more than {MAX_YAML_NODES:,} values (YAML aliases); write it out")
        return loader.construct_document(node)
    except yaml.YAMLError as e:
        first = str(getattr(e, "problem", None) or e).splitlines()[0]
        line = getattr(getattr(e, "problem_mark", None), "line", None)
        at = f" at line {line + 1}" if line is not None and "line" not in first else ""
        raise RecipeError(f"{where}: not valid YAML ({first}{at})") from None
    except RecursionError:
        raise RecipeError(f"{where}: nested too deeply") from None
    finally:
        loader.dispose()


def read_recipe_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise RecipeError(f"{path}: not UTF-8 text; save the recipe as UTF-8") from None
    except IsADirectoryError:
        raise RecipeError(f"{path}: is a folder, not a recipe file") from None
    except OSError as e:
        raise RecipeError(f"{path}: cannot be read ({e.strerror}); check its permissions") from None


# ----------------------------------------------------------------------------------------------------------------
# Finding recipes


def recipe_dirs() -> list[Path]:
    here = Path(__file__).resolve().parent
    # Installed wheel: recipes ship inside the package. Source checkout / editable install: top-level recipes/.
    return [d for d in (here / "recipes", here.parent / "recipes") if d.is_dir()]


def list_recipes() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for d in recipe_dirs():
        for p in sorted(d.glob("*.yaml")):
            found.setdefault(p.stem, p)
    return found


def recipe_path(name_or_path: str) -> Path:
    p = Path(name_or_path)
    # A name is looked up among the recipes even when a folder called `tiny` happens to sit in the current directory.
    if p.suffix in (".yaml", ".yml") or "/" in name_or_path:
        if not p.is_file():
            raise RecipeError(f"--recipe: no file {name_or_path}")
        return p
    recipes = list_recipes()
    if name_or_path not in recipes:
        raise RecipeError(f"--recipe: no recipe named {name_or_path!r}; known: {', '.join(recipes) or 'none'}")
    return recipes[name_or_path]


def load_recipe(name_or_path: str, overrides: list[str] | None = None) -> Config:
    path = recipe_path(name_or_path)
    data = load_yaml(read_recipe_text(path), str(path)) or {}
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe is a mapping of keys to values")
    data = merge(data, parse_overrides(overrides or []))
    return from_dict(data)


def describe(path: Path) -> str:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError:
        return "(not valid YAML)"
    return str(data.get("description", "")) if isinstance(data, dict) else ""

