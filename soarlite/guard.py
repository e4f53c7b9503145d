"""TEMPORARY shim until the hardware split lands (branch engine)."""
from soarlite.gpu import BudgetReached, StepGuard  # noqa
