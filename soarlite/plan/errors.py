"""The planner's errors (both are recipe errors: the CLI prints them as one line and exits 2)."""

from __future__ import annotations

from soarlite.config import RecipeError


class PlanError(RecipeError):
    """The planner cannot work out a figure (an unknown model, say); the message says what to give it."""


class DoesNotFit(RecipeError):
    """`soarlite run` found a card the recipe does not fit; the message names the setting to lower."""
