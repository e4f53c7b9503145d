"""`soarlite report RUN_DIR [RUN_DIR ...]`: a Markdown report and PNG plots of one or more run folders.

Reads only what runs write (config.yaml, metrics.jsonl, state.json, summary.json, eval/*.json), so it works on a
finished run, a running one, or a copy; needs matplotlib (`pip install 'soarlite[report]'`).

    reward.png        mean reward per outer step, the moving average promotion watches, tau, promotions marked
    valid_rate.png    the teacher's valid-output rate per outer step
    memory.png        peak memory per outer step (GPU allocated, or the process's resident set on a CPU)
    pass_at_k.png     pass@k curves of every evaluated method (soarlite eval / baseline) side by side
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from soarlite import checkpoint
from soarlite.evaluation.passk import read_results

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
        steps = [m["step"] for m in r.metrics]
        ax.plot(steps, [m["reward_mean"] for m in r.metrics], "o-", color=color, alpha=0.35, ms=3,
                label=f"{r.name}: mean reward")
        ax.plot(steps, [m["moving_avg"] if m.get("moving_avg") is not None else float("nan") for m in r.metrics],
                "-", color=color, lw=2, label=f"{r.name}: moving average")
        for j, t in enumerate(r.promotions):
            ax.axvline(t, color=color, ls=":", lw=1.2, label=f"{r.name}: promotion" if j == 0 else None)
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


def plot_series(runs: list[Run], key: str, ylabel: str, title: str, path: Path) -> None:
    plt = _plt()
    fig, ax = plt.subplots(figsize=FIGSIZE)
    for i, r in enumerate(runs):
        values = [float("nan") if m.get(key) is None else m[key] for m in r.metrics]  # older rows may lack a key
        ax.plot([m["step"] for m in r.metrics], values, "o-", ms=3, color=f"C{i % 10}", label=r.name)
    ax.set(xlabel="outer step", ylabel=ylabel, title=title)
    _finish(plt, fig, ax, path)


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


def markdown(runs: list[Run], images: list[str]) -> str:
    lines = ["# soarlite report", ""]
    lines += ["| run | recipe | outer steps | promotions | teacher valid (first / last) | reward mean (last) | "
              "peak memory MB | wall s |", "|---|---|---|---|---|---|---|---|"]
    for r in runs:
        m = r.metrics
        valid = f"{_f(m[0]['teacher_valid_rate'], 2)} / {_f(m[-1]['teacher_valid_rate'], 2)}" if m else "-"
        lines.append(
            f"| {r.name} | {r.config.get('name', '-')} | {len(m)} | {len(r.promotions)}"
            f"{' (steps ' + ', '.join(map(str, r.promotions)) + ')' if r.promotions else ''} | {valid} | "
            f"{_f(m[-1]['reward_mean'] if m else None)} | {_f(max((x.get('peak_mem_mb') or 0 for x in m), default=None), 0)} | "
            f"{_f(sum(x.get('wall_s') or 0 for x in m) if m else None, 0)} |")
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
            lines += ["", f"## Summary of {r.name}", "", "```", json.dumps(r.summary, indent=1), "```"]
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
    images = []
    if stepped:
        plot_rewards(stepped, out / "reward.png")
        plot_series(stepped, "teacher_valid_rate", "valid outputs / samples", "Teacher valid-output rate",
                    out / "valid_rate.png")
        plot_series(stepped, "peak_mem_mb", "MB", "Peak memory", out / "memory.png")
        images += ["reward.png", "valid_rate.png", "memory.png"]
    if any(r.evals for r in runs):
        plot_pass_at_k(runs, out / "pass_at_k.png")
        images.append("pass_at_k.png")
    checkpoint.write_text_atomic(out / "report.md", markdown(runs, images))
    return out
