"""Per-outer-step metrics to TensorBoard (when installed, `eval.tensorboard`) and Weights & Biases (`eval.wandb`).

The loop already hands every finished step's metrics row to its reporter (`report.outer_end(row, state)`); `track`
wraps the reporter so the same row also goes to the sinks. metrics.jsonl stays the record: these are views of it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

# the scalar metrics of a row worth a curve; lists are logged per dataset (rewards/0, rewards/1, ...)
SCALARS = ("reward_mean", "moving_avg", "teacher_valid_rate", "baseline_acc", "teacher_pg_loss", "teacher_kl",
           "teacher_lr", "peak_mem_mb", "wall_s")


def scalars(row: dict) -> dict[str, float]:
    out = {k: float(row[k]) for k in SCALARS if isinstance(row.get(k), (int, float))}
    out["promoted"] = float(bool(row.get("promoted")))
    for key in ("rewards", "teacher_rewards"):
        for k, v in enumerate(row.get(key) or []):
            out[f"{key}/{k}"] = float(v)
    return out


class TensorBoardSink:
    def __init__(self, log_dir: Path):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(str(log_dir))

    def log(self, row: dict) -> None:
        for k, v in scalars(row).items():
            self.writer.add_scalar(k, v, row["step"])
        self.writer.flush()  # a killed run keeps every finished step

    def close(self) -> None:
        self.writer.close()


class WandbSink:
    def __init__(self, project: str, run_dir: Path, config: dict):
        from soarlite.extras import require

        require("wandb", "wandb")
        import wandb

        # the run folder's name and path make the W&B id, so a resumed run continues the same W&B run
        run_id = "".join(c if c.isalnum() else "-" for c in str(run_dir.resolve()))[-64:]
        self.run = wandb.init(project=project, name=run_dir.name, id=run_id, resume="allow", dir=str(run_dir),
                              config=config)

    def log(self, row: dict) -> None:
        self.run.log(scalars(row), step=row["step"])

    def close(self) -> None:
        self.run.finish()


class Tracked:
    """The reporter, plus sinks that see every finished outer step."""

    def __init__(self, report, sinks: list):
        self._report, self.sinks = report, sinks

    def __getattr__(self, name):
        return getattr(self._report, name)

    def outer_end(self, row: dict, state) -> None:
        self._report.outer_end(row, state)
        for sink in self.sinks:
            sink.log(row)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()


def sinks_for(cfg, run_dir: Path) -> list:
    from soarlite.config import to_dict

    sinks = []
    if cfg.eval.tensorboard and importlib.util.find_spec("tensorboard") is not None:
        sinks.append(TensorBoardSink(run_dir / "tensorboard"))
    if cfg.eval.wandb:
        sinks.append(WandbSink(cfg.eval.wandb, run_dir, to_dict(cfg)))
    return sinks


def track(report, cfg, run_dir: Path):
    """The reporter to hand the loop: itself when no sink is on, else wrapped."""
    sinks = sinks_for(cfg, run_dir)
    return Tracked(report, sinks) if sinks else report
