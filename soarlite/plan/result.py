"""What the planner returns: the Plan of one recipe on one card."""

from __future__ import annotations

from dataclasses import dataclass, field

from soarlite.config import Config
from soarlite.hardware import Card
from soarlite.plan.footprint import Item
from soarlite.plan.shapes import Shape


@dataclass
class Plan:
    cfg: Config
    shape: Shape
    card: Card | None
    mode: str  # hf | vllm | unsloth | cpu
    dtype: str
    valid_rate: float
    tokens: dict[str, dict[str, float]]  # per outer step: kind -> {generated, trained}
    memory: list[Item]
    allocated: float  # bytes torch's allocator will hand out at the peak (what metrics.jsonl's peak_mem_mb shows)
    needed: float  # bytes of card memory needed (allocated + slack + CUDA context + vLLM's reservation)
    fits: bool | None  # None: no card to check against
    knob: str  # what to lower when it does not fit
    suggestion: str
    time_s: dict[str, float]  # per outer step, by phase
    time_source: str
    notes: list[str] = field(default_factory=list)

    @property
    def step_s(self) -> float:
        return sum(self.time_s.values())

    @property
    def run_s(self) -> float:
        return self.step_s * self.cfg.outer.steps
