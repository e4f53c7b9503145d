"""`soarlite plan` for N Ray workers (issue 13); needs no Ray."""

from __future__ import annotations


def test_plan_time_per_step_for_n_workers():
    """`soarlite plan` spreads the waves over ray.workers: student phases halve from one worker to two (4 datasets,
    4 waves), and more workers than waves do not help. """
    from soarlite import plan
    from soarlite.config import load_recipe
    from soarlite.hardware import resolve_card

    card = resolve_card("h100", detect=False)
    phases = ("student sampling", "student training", "evaluation (greedy)")

    def times(*overrides):
        return plan.make_plan(load_recipe("math", list(overrides)), card).time_s

    local, one, two, many = (times(), times("executor=ray", "ray.workers=1"), times("executor=ray", "ray.workers=2"),
                             times("executor=ray", "ray.workers=16"))
    assert local == one
    for p in phases:
        assert two[p] < 0.6 * one[p]
    assert times("executor=ray", "ray.workers=4") == many  # g = 4 datasets: at most 4 waves
