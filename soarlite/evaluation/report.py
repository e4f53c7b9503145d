"""`soarlite report RUN_DIR [RUN_DIR ...]`: a Markdown report and PNG plots of one or more run folders.

Reads only what runs write (config.yaml, metrics.jsonl, state.json, summary.json, eval/*.json), so it works on a
finished run, a running one, or a copy; needs matplotlib (`pip install 'soarlite[report]'`).

    reward.png        mean reward per outer step, the moving average promotion watches, tau, promotions marked
    valid_rate.png    the teacher's valid-output rate per outer step (y axis 0..1)
    memory.png        peak memory per outer step (GPU allocated, or the process's resident set (RAM) on a CPU)
    headline.png      pass@k of the untrained, SOAR's final and the Hard-Only student, with 95% intervals
    pass_at_k.png     pass@k curves of every evaluated method (soarlite eval / baseline) side by side
    questions.png     what the teacher asks, step by step: the share of its questions at each value of the task's
                      difficulty measure (stacked), and the share of its answers that are right (where the task says)

Without matplotlib it still writes report.md (the tables), saying that the plots need the `report` extra. Outer
steps are shown 1-based, as on the screen (metrics.jsonl counts from 0).
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from soarlite import checkpoint
from soarlite.evaluation.passk import read_results
from soarlite.evaluation.summary import summary_markdown
from soarlite.extras import MissingExtra

FIGSIZE, DPI = (8.0, 4.5), 100  # 800 x 450 pixels


class ReportError(ValueError):
    """A folder given to `soarlite report` is not a run folder."""


@dataclass
class Run:
    path: Path
    name: str
    config: dict
    metrics: list[dict]
    promotions: list[int]
    summary: dict | None
    evals: list[dict] = field(default_factory=list)


def load_run(path: Path) -> Run:
    path = Path(path)
    has = {n for n in ("config.yaml", "metrics.jsonl", "eval") if (path / n).exists()}
    if not has:
        raise ReportError(f"{path}: not a run folder (no config.yaml, metrics.jsonl or eval/)")
    config = yaml.safe_load((path / "config.yaml").read_text()) if "config.yaml" in has else {}
    state = json.loads((path / "state.json").read_text()) if (path / "state.json").exists() else {}
    summary = json.loads((path / "summary.json").read_text()) if (path / "summary.json").exists() else None
    metrics = checkpoint.read_jsonl(path / "metrics.jsonl")
    promotions = state.get("promotions") or [m["step"] for m in metrics if m.get("promoted")]
    return Run(path, path.resolve().name, config or {}, metrics, promotions, summary, read_results(path))


def _plt():
    from soarlite.extras import require

    require("matplotlib", "report")
    import matplotlib

    matplotlib.use("Agg")  # files only: no display, and the same pixels everywhere
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=DPI)
    tmp.replace(path)


def plot_rewards(runs: list[Run], path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=FIGSIZE)
    for i, r in enumerate(runs):
        color = f"C{i % 10}"
        steps = [m["step"] + 1 for m in r.metrics]
        ax.plot(steps, [m["reward_mean"] for m in r.metrics], "o-", color=color, alpha=0.35, ms=3,
                label=f"{r.name}: mean reward")
        ax.plot(steps, [m["moving_avg"] if m.get("moving_avg") is not None else float("nan") for m in r.metrics],
                "-", color=color, lw=2, label=f"{r.name}: moving average")
        for j, t in enumerate(r.promotions):
            ax.axvline(t + 1, color=color, ls=":", lw=1.2, label=f"{r.name}: promotion" if j == 0 else None)
        tau = (r.config.get("outer") or {}).get("tau")
        if tau is not None:
            ax.axhline(tau, color=color, ls="--", lw=0.8, alpha=0.6, label=f"{r.name}: tau")
    ax.set(xlabel="outer step", ylabel="reward (student gain on Q_R)", title="Teacher reward")
    _finish(plt, fig, ax, path)


def _finish(plt, fig, ax, path: Path) -> None:
    """What every per-step plot ends with: integer steps, grid, legend, saved and closed."""
    _integer_steps(ax)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def plot_series(runs: list[Run], key: str, ylabel: str, title: str, path: Path, ylim=None) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=FIGSIZE)
    for i, r in enumerate(runs):
        values = [float("nan") if m.get(key) is None else m[key] for m in r.metrics]  # older rows may lack a key
        ax.plot([m["step"] + 1 for m in r.metrics], values, "o-", ms=3, color=f"C{i % 10}", label=r.name)
    ax.set(xlabel="outer step", ylabel=ylabel, title=title)
    if ylim is not None:
        ax.set_ylim(*ylim)  # a fixed scale: a 1% change must not look like a cliff
    _finish(plt, fig, ax, path)


def memory_kind(run: Run) -> str:
    """GPU (allocated) on a CUDA run, else the process's resident RAM (what soar.peak_memory_mb measures)."""
    return "GPU" if run.config.get("device") == "cuda" else "RAM"


def plot_headline(runs: list[Run], path: Path) -> None:
    """pass@k of the untrained, SOAR's final and the Hard-Only student (summary.json), with 95% intervals."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=FIGSIZE)
    n = 0
    for r in runs:
        block = (r.summary or {}).get("pass_at_k")
        if not block:
            continue
        ks = block["ks"]
        for e in block["students"].values():
            ys = [e["pass_at_k"][str(k)] for k in ks]
            lo = [y - e["interval"][str(k)][0] for y, k in zip(ys, ks)]
            hi = [e["interval"][str(k)][1] - y for y, k in zip(ys, ks)]
            label = e["label"] if len(runs) == 1 else f"{r.name}: {e['label']}"
            ax.errorbar([k * (1 + 0.04 * (n % 3 - 1)) for k in ks], ys, yerr=[lo, hi], fmt="o-", capsize=4,
                        color=f"C{n % 10}", label=label)
            n += 1
    ax.set_xscale("log", base=2)
    ks = sorted({k for r in runs for k in ((r.summary or {}).get("pass_at_k") or {}).get("ks", [])})
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set_ylim(0, 1)
    ax.set(xlabel="k", ylabel="pass@k (95% bootstrap interval)",
           title="Hard test split: untrained vs SOAR vs Hard-Only")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def question_levels(run: Run) -> list[str]:
    """The difficulty values the teacher's questions took in a run (metrics teacher_questions), in order."""
    seen = {k for m in run.metrics for k in ((m.get("teacher_questions") or {}).get("difficulty") or {})}
    return sorted(seen, key=lambda k: (k == "other", int(k) if k.lstrip("-").isdigit() else 0, k))


def plot_questions(run: Run, path: Path) -> None:
    """The picture of the method working: over outer steps, the share of the teacher's questions at each difficulty
    (stacked bars), and the share of its answers that are right (a line), from metrics.jsonl's teacher_questions."""
    plt = _plt()
    rows = [m for m in run.metrics if m.get("teacher_questions")]
    levels = question_levels(run)
    steps = [m["step"] + 1 for m in rows]
    fig, ax = plt.subplots(figsize=FIGSIZE)
    bottom = [0.0] * len(rows)
    cmap = plt.get_cmap("viridis")
    for i, level in enumerate(levels):
        shares = []
        for m in rows:
            hist = m["teacher_questions"]["difficulty"]
            shares.append(hist.get(level, 0) / max(1, sum(hist.values())))
        color = "0.7" if level == "other" else cmap(i / max(1, len(levels) - 1))
        ax.bar(steps, shares, bottom=bottom, color=color, width=0.8, label=f"difficulty {level}")
        bottom = [b + v for b, v in zip(bottom, shares)]
    right = [(m["step"] + 1, m["teacher_questions"].get("answers_right")) for m in rows]
    right = [(t, v) for t, v in right if v is not None]
    if right:
        ax.plot([t for t, _ in right], [v for _, v in right], "k.-", label="answers right (share)")
    for j, t in enumerate(run.promotions):  # where the student the teacher's reward is measured against changed
        ax.axvline(t + 1, color="red", ls=":", lw=1.5, zorder=3, label="promotion" if j == 0 else None)
    ax.set_ylim(0, 1.02)
    ax.set(xlabel="outer step", ylabel="share of the teacher's questions", title=f"What the teacher asks: {run.name}")
    _integer_steps(ax)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def _pearson(a: list[float], b: list[float]) -> float | None:
    """statistics.correlation, or None where it is undefined (a constant column)."""
    try:
        return statistics.correlation(a, b)
    except statistics.StatisticsError:
        return None


def reward_signal(run: Run) -> dict | None:
    """What the teacher's reward follows: over every dataset of the run (metrics teacher_questions_by_dataset), the
    Pearson correlation of a dataset's reward with its mean difficulty and with the share of its answers that are
    right. The teacher's RLOO can only move its questions along what its reward follows: a correlation near 0 with
    difficulty means the reward does not (yet) tell easier from harder datasets. None without per-dataset profiles."""
    difficulty, right, reward = [], [], []
    for m in run.metrics:
        for q, r in zip(m.get("teacher_questions_by_dataset") or [], m.get("teacher_rewards") or m["rewards"]):
            levels = [(int(k), v) for k, v in (q or {}).get("difficulty", {}).items() if k.lstrip("-").isdigit()]
            if not levels or q.get("answers_right") is None:
                continue
            difficulty.append(sum(k * v for k, v in levels) / sum(v for _, v in levels))
            right.append(q["answers_right"])
            reward.append(r)
    if len(reward) < 3:
        return None
    return {"datasets": len(reward), "with_difficulty": _pearson(difficulty, reward),
            "with_answers_right": _pearson(right, reward)}


def plot_pass_at_k(runs: list[Run], path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=FIGSIZE)
    n = 0
    for r in runs:
        for e in r.evals:
            ks = sorted(int(k) for k in e["pass_at_k"])
            ax.plot(ks, [e["pass_at_k"][str(k)] for k in ks], "o-", color=f"C{n % 10}", label=_method(r, runs, e))
            n += 1
    ax.set_xscale("log", base=2)
    all_ks = sorted({int(k) for r in runs for e in r.evals for k in e["pass_at_k"]})
    ax.set_xticks(all_ks, [str(k) for k in all_ks])
    top = max((v for r in runs for e in r.evals for v in e["pass_at_k"].values()), default=0.0)
    ax.set_ylim(0, max(0.05, top * 1.1))  # from zero: the gaps between methods are the point
    ax.set(xlabel="k", ylabel="pass@k", title="pass@k on the hard test split")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def _integer_steps(ax) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _method(run: Run, runs: list[Run], e: dict) -> str:
    return e["label"] if len(runs) == 1 else f"{run.name}: {e['label']}"


def _f(x, digits=3) -> str:
    return "-" if x is None else (f"{x:.{digits}f}" if isinstance(x, float) else str(x))


def markdown(runs: list[Run], images: list[str], note: str | None = None) -> str:
    lines = ["# soarlite report", ""]
    for r in runs:  # the headline first: SOAR against the untrained and the Hard-Only student
        if r.summary:
            title = "## The result" if len(runs) == 1 else f"## The result of {r.name}"
            lines += [title, "", summary_markdown(r.summary), ""]
    lines += ["Outer steps count from 1 here and on the screen; metrics.jsonl's `step` counts from 0.", ""]
    if note:
        lines += [note, ""]
    lines += ["| run | recipe | outer steps | promotions | teacher valid (first / last) | reward mean (last) | "
              "peak memory MB | wall s |", "|---|---|---|---|---|---|---|---|"]
    for r in runs:
        m = r.metrics
        valid = f"{_f(m[0]['teacher_valid_rate'], 2)} / {_f(m[-1]['teacher_valid_rate'], 2)}" if m else "-"
        lines.append(
            f"| {r.name} | {r.config.get('name', '-')} | {len(m)} | {len(r.promotions)}"
            f"{' (steps ' + ', '.join(str(t + 1) for t in r.promotions) + ')' if r.promotions else ''} | {valid} | "
            f"{_f(m[-1]['reward_mean'] if m else None)} | {_f(max((x.get('peak_mem_mb') or 0 for x in m), default=None), 0)} {memory_kind(r)} | "
            f"{_f(sum(x.get('wall_s') or 0 for x in m) if m else None, 0)} |")
    signals = [(r, reward_signal(r)) for r in runs]
    signals = [(r, sig) for r, sig in signals if sig]
    if signals:
        lines += ["", "## What the teacher's reward follows", "",
                  "Pearson correlation, over every dataset the teacher wrote, of the dataset's reward with its mean "
                  "difficulty and with the share of its answers that are right. Its RLOO moves the questions only "
                  "along what the reward follows.", "",
                  "| run | datasets | reward ~ mean difficulty | reward ~ answers right |", "|---|---|---|---|"]
        for r, sig in signals:
            lines.append(f"| {r.name} | {sig['datasets']} | {_f(sig['with_difficulty'], 2)} | "
                         f"{_f(sig['with_answers_right'], 2)} |")
    evals = [(r, e) for r in runs for e in r.evals]
    if evals:
        ks = sorted({int(k) for _, e in evals for k in e["pass_at_k"]})
        lines += ["", "## pass@k on the hard test split", "",
                  "| method | problems x samples | " + " | ".join(f"pass@{k}" for k in ks) + " | student steps |",
                  "|---|---|" + "---|" * len(ks) + "---|"]
        for r, e in evals:
            cells = " | ".join(_f(e["pass_at_k"].get(str(k))) for k in ks)
            lines.append(f"| {_method(r, runs, e)} | {e['problems']} x {e['samples']} | {cells} | "
                         f"{_f(e.get('student_steps'))} |")
        div = [(r, e) for r, e in evals if e.get("diversity")]
        if div:
            lines += ["", "## Diversity of the teachers' questions (Vendi score)", "",
                      "| method | questions | Vendi | embedding |", "|---|---|---|---|"]
            for r, e in div:
                d = e["diversity"]
                lines.append(f"| {_method(r, runs, e)} | {d['items']} | {d['vendi']:.2f} | {d['embedder']} |")
    for r in runs:
        if r.summary:
            lines += ["", f"## summary.json of {r.name}", "", "```", json.dumps(r.summary, indent=1), "```"]
    lines += [""] + [f"![{Path(i).stem}]({i})" for i in images]
    return "\n".join(lines) + "\n"


def build(run_dirs: list[str | Path], out: str | Path | None = None) -> Path:
    """Write report.md and the plots into `out` (default: RUN/report for one run, ./report for several)."""
    if not run_dirs:
        raise ReportError("report: name at least one run folder")
    runs = [load_run(Path(d)) for d in run_dirs]
    out = Path(out) if out else (runs[0].path / "report" if len(runs) == 1 else Path("report"))
    out.mkdir(parents=True, exist_ok=True)
    stepped = [r for r in runs if r.metrics]
    images: list[str] = []
    note = None
    try:
        _plt()
    except MissingExtra:
        note = "No plots: they need matplotlib (`pip install 'soarlite[report]'`), then run `soarlite report` again."
    else:
        if any((r.summary or {}).get("pass_at_k") for r in runs):
            plot_headline(runs, out / "headline.png")
            images.append("headline.png")
        if stepped:
            plot_rewards(stepped, out / "reward.png")
            plot_series(stepped, "teacher_valid_rate", "valid outputs / samples", "Teacher valid-output rate",
                        out / "valid_rate.png", ylim=(0, 1.02))
            kinds = sorted({memory_kind(r) for r in stepped})
            what = {"GPU": "GPU memory allocated", "RAM": "process RAM (resident set)"}
            plot_series(stepped, "peak_mem_mb", "MB", "Peak " + " / ".join(what[k] for k in kinds) + " per outer step",
                        out / "memory.png", ylim=(0, None))
            images += ["reward.png", "valid_rate.png", "memory.png"]
            for r in stepped:
                if any(m.get("teacher_questions") for m in r.metrics):
                    name = "questions.png" if len(stepped) == 1 else f"questions-{r.name}.png"
                    plot_questions(r, out / name)
                    images.append(name)
        if any(r.evals for r in runs):
            plot_pass_at_k(runs, out / "pass_at_k.png")
            images.append("pass_at_k.png")
    checkpoint.write_text_atomic(out / "report.md", markdown(runs, images, note))
    return out
